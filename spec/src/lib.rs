//! What the texts of a pipeline or schedule spec mean, shared by the
//! master (which enforces them), the workers (which read and write the
//! objects a spec names) and the clients (which check a file before they
//! send it): one reading everywhere, so a client's early refusal and the
//! master's final one never disagree.
//!
//! - [`duration`]: `500ms`, `90s`, `7d`.
//! - [`cron`]: a cron expression's logical times in an IANA zone.
//! - [`schedule_rules`]: a schedule's settings (cron, zone, catchup,
//!   overlap, max_active, jitter), parsed and checked.
//! - [`object_url`]: `s3://bucket/key`, and the client of its bucket.
//!
//! Pure but for [`object_url::open_bucket`], which reads the `AWS_*`
//! variables (and contacts nothing).

pub mod cron;
pub mod duration;
pub mod object_url;
pub mod schedule_rules;
