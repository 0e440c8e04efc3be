//! Limits on everything that comes from the network or a file, checked at
//! the edge (TigerBeetle style: every queue, list and name has a bound).

/// Longest pipeline, group, parameter or worker name, in bytes.
pub const NAME_BYTES_MAX: usize = 64;
/// Task groups in one pipeline.
pub const GROUPS_PER_PIPELINE_MAX: usize = 64;
/// Units a first group may start with (one per input file).
pub const INPUTS_PER_GROUP_MAX: usize = 100_000;
/// Partitions a shuffle may have.
pub const PARTITIONS_MAX: u32 = 100_000;
/// Input files and slices one first-group unit may read.
pub const FILES_PER_UNIT_MAX: usize = 100_000;
/// Units one group may hold in total.
pub const UNITS_PER_GROUP_MAX: usize = 1_000_000;
/// Longest input path, output name, command argument or parameter value.
pub const TEXT_BYTES_MAX: usize = 4096;
/// Longest part of an output name between '/'s (Linux's NAME_MAX).
pub const PATH_COMPONENT_BYTES_MAX: usize = 255;
/// Arguments in one command.
pub const COMMAND_ARGS_MAX: usize = 256;
/// Parameters or environment variables of one pipeline or group.
pub const VARS_MAX: usize = 64;
/// Attempts a unit may be given; the default when a group says nothing.
pub const ATTEMPTS_MAX: u32 = 100;
pub const ATTEMPTS_DEFAULT: u32 = 3;
/// Leases one lease call may ask for, items in one commit/renew/release call.
pub const BATCH_ITEMS_MAX: usize = 1000;
/// Output files one attempt may commit; the message size limit (shared
/// with workers and clients).
pub use taskmaster_proto::limits::{MESSAGE_BYTES_MAX, OUTPUT_FILES_MAX};
/// Error texts kept per unit (the latest), and the bytes kept of each.
pub const ERRORS_KEPT_PER_UNIT: usize = 5;
pub const ERROR_BYTES_MAX: usize = 4096;
/// Longest a lease call may wait for work (long-poll bound).
pub const LEASE_WAIT_MS_MAX: u32 = 60_000;
/// The leases of one reply, encoded, at most (one lease always goes, and
/// one lease is far smaller than this: see `LEASE_INPUT_BYTES_MAX`). Half
/// the message limit, leaving room for a commit's results beside them.
pub const REPLY_LEASE_BYTES_MAX: usize = MESSAGE_BYTES_MAX / 2;
/// A unit's input paths sent inline in its lease, at most; past this the
/// lease says `inputs_paged` and the worker lists them with `ListInputs`.
/// With a group's settings (bounded by `SETTINGS_BYTES_MAX`) a lease stays
/// well under `REPLY_LEASE_BYTES_MAX`.
pub const LEASE_INPUT_BYTES_MAX: usize = 4 * 1024 * 1024;
/// A group's command, environment and task settings with its pipeline's
/// parameters, in bytes, at most: every lease of the group carries them.
pub const SETTINGS_BYTES_MAX: usize = 1024 * 1024;
/// A page of a list call (pipelines, outputs), in bytes, about: one entry
/// past it is not added (a page always holds at least one).
pub const PAGE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Pipelines in one `ListPipelines` page, at most.
pub const PIPELINES_PAGE_MAX: usize = 1000;
/// Workers in one `ListWorkers` page, at most.
pub const WORKERS_PAGE_MAX: usize = 1000;
/// Output paths in one `ListOutputs` page, at most.
pub const OUTPUT_PATHS_PAGE_MAX: usize = 10_000;
/// Inputs in one `ListInputs` page, at most, and their bytes.
pub const INPUTS_PAGE_MAX: usize = 10_000;
pub const INPUTS_PAGE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Base delay between a unit's attempts when its group sets none: batch
/// pipelines want a few minutes, so a flaky dependency can recover.
pub const RETRY_DELAY_MS_DEFAULT: u64 = 120_000;
/// Longest delay between attempts, however many have failed.
pub const RETRY_DELAY_MS_MAX: u64 = 3_600_000;
/// A group's `timeout_ms`, when set, at least and at most: a second
/// (shorter would fail attempts that spend it starting up) and a week.
pub const TIMEOUT_MS_MIN: u64 = 1_000;
pub const TIMEOUT_MS_MAX: u64 = 7 * 24 * 3_600_000;
/// Workers remembered for `ListWorkers` (the least recently seen go first).
pub const WORKERS_REMEMBERED_MAX: usize = 10_000;
