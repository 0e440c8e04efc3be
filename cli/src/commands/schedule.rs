//! `tmctl schedule …`, `tmctl runs` and `tmctl backfill …`: pipelines the
//! master runs on a cron schedule, their run history, and backfills.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::json;
use taskmaster_cli::text::utc_time;
use taskmaster_client::{Client, load_schedule_async};
use taskmaster_master::http::schedules::{info_json, run_json};
use taskmaster_proto::v1::{
    BackfillAction, BackfillInfo, BackfillRequest, ScheduleAction, ScheduleInfo,
};

use super::{Connection, EXIT_PIPELINE_FAILED, out};

/// The `[schedule]` table, shown by `tmctl schedule add --help`.
const SCHEDULE_TABLE_HELP: &str = r#"A schedule is a pipeline file with a [schedule] table:
  name = "nightly"
  [schedule]
  cron = "30 2 * * *"              # 5 fields, or 6 with seconds first
  timezone = "America/New_York"    # IANA name; default UTC
  catchup = "all"                  # all | latest | none: logical times missed while the
                                   # master was down or the schedule paused
  overlap = "skip"                 # skip | queue | allow: when max_active runs are unfinished
  max_active = 1                   # runs of this schedule at once
  jitter = "0s"                    # a stable per-schedule offset within this window
  webhook = "https://hooks.example/tm"   # optional: a JSON notice when a run fails
  notify_success = false           # optional: also when one succeeds
  sla = "3h"                       # optional: notice when a run has not succeeded this
                                   # long after its logical time
  publish = ["aggregate"]          # optional: groups whose outputs each succeeded run
                                   # publishes (tmctl published), replacing the same
                                   # logical time's earlier partition
  [[groups]]
  ...                              # as for `tmctl submit`

Each run gets the parameters ds (YYYY-MM-DD of its logical time, in the zone), ts
(RFC 3339), data_interval_start and data_interval_end: TM_PARAM_DS, TM_PARAM_TS,
TM_PARAM_DATA_INTERVAL_START and TM_PARAM_DATA_INTERVAL_END for exec tasks.
Inputs are resolved when the schedule is added: every run reads the same files (a task
picks its day's data with TM_PARAM_DS)."#;

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Register a schedule from a pipeline file with a [schedule] table;
    /// prints its name on the last line.
    #[command(after_help = SCHEDULE_TABLE_HELP)]
    Add {
        file: PathBuf,
        /// Override or add a pipeline parameter, KEY=VALUE (repeatable).
        #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
        params: Vec<String>,
    },
    /// Every schedule: its cron, zone, last and next logical time.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Stop firing; logical times missed meanwhile are caught up on resume
    /// as the schedule's `catchup` says.
    Pause {
        name: String,
    },
    Resume {
        name: String,
    },
    /// Remove a schedule; its pipelines stay.
    Remove {
        name: String,
    },
    /// A manual run for one logical time (default: the latest due one);
    /// prints the run's pipeline id on the last line.
    Trigger {
        name: String,
        /// The logical time: RFC 3339, the zone's wall clock
        /// (2026-12-07T02:30:00) or a date (its midnight).
        #[arg(long)]
        at: Option<String>,
    },
}

/// `tmctl runs NAME`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// The schedule.
    name: String,
    /// Newest runs only, this many (0: up to 10,000).
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[arg(long)]
    json: bool,
}

/// `tmctl published NAME`.
#[derive(Debug, Args)]
pub struct PublishedArgs {
    /// The schedule.
    name: String,
    /// Only partitions of logical times on this date (YYYY-MM-DD).
    #[arg(long)]
    at: Option<String>,
    #[arg(long)]
    json: bool,
}

pub async fn published(connection: &Connection, args: PublishedArgs) -> anyhow::Result<ExitCode> {
    let client = connection.client().await?;
    let partitions = client.published(&args.name, args.at.as_deref()).await?;
    if args.json {
        let rows: Vec<_> = partitions
            .iter()
            .map(|p| {
                let outputs: serde_json::Map<String, serde_json::Value> = p
                    .groups
                    .iter()
                    .map(|g| (g.group.clone(), json!(g.paths)))
                    .collect();
                json!({
                    "schedule": p.schedule,
                    "logical": p.logical,
                    "ds": p.ds,
                    "pipeline_id": p.pipeline_id,
                    "published_unix_ms": p.published_unix_ms,
                    "manifest": p.manifest,
                    "outputs": outputs,
                })
            })
            .collect();
        out(&format!("{}\n", serde_json::to_string_pretty(&rows)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = format!(
        "{:<26} {:<32} {:>6}  {}\n",
        "LOGICAL", "RUN", "FILES", "MANIFEST"
    );
    for p in &partitions {
        let files: usize = p.groups.iter().map(|g| g.paths.len()).sum();
        text.push_str(&format!(
            "{:<26} {:<32} {:>6}  {}\n",
            p.logical, p.pipeline_id, files, p.manifest
        ));
    }
    out(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// `tmctl backfill NAME --from DATE --to DATE`, or a change of a running
/// backfill.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BackfillArgs {
    #[command(subcommand)]
    change: Option<BackfillCommand>,
    /// The schedule to backfill.
    #[arg(required = true)]
    name: Option<String>,
    /// First date (YYYY-MM-DD) or wall-clock time, in the schedule's zone.
    #[arg(long, required = true)]
    from: Option<String>,
    /// Last date (inclusive: to the end of that day) or wall-clock time.
    #[arg(long, required = true)]
    to: Option<String>,
    /// Runs at once.
    #[arg(long, default_value_t = 1)]
    max_active: u32,
    /// Newest logical time first.
    #[arg(long)]
    reverse: bool,
    /// One attempt per unit: failures are reported, not retried away.
    #[arg(long)]
    no_retries: bool,
    /// Only list the logical times that would run.
    #[arg(long)]
    dry_run: bool,
    /// Wait until every run finished, showing progress; exit 1 if one
    /// failed.
    #[arg(long)]
    wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum BackfillCommand {
    /// Change how many runs of a backfill run at once.
    Set {
        id: String,
        #[arg(long)]
        max_active: u32,
    },
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    Cancel {
        id: String,
    },
    /// Every backfill and its progress.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub async fn schedule(
    connection: &Connection,
    command: ScheduleCommand,
) -> anyhow::Result<ExitCode> {
    if let ScheduleCommand::Add { file, params } = &command {
        // The file is checked before connecting, as `submit` does.
        let params = params
            .iter()
            .map(|p| taskmaster_client::parse_param(p))
            .collect::<Result<Vec<_>, _>>()?;
        let spec = load_schedule_async(file.clone(), params).await?;
        let client = connection.client().await?;
        let info = client.add_schedule(spec).await?;
        out(&format!("next run: {}\n", next_text(&info)))?;
        out(&format!("{}\n", schedule_name(&info)))?;
        return Ok(ExitCode::SUCCESS);
    }
    let client = connection.client().await?;
    let action = |action, name: &str| (action, name.to_string());
    let (action, name) = match command {
        ScheduleCommand::Add { .. } => unreachable!("handled above"),
        ScheduleCommand::List { json } => return list(&client, json).await,
        ScheduleCommand::Trigger { name, at } => {
            let run = client
                .trigger_schedule(&name, at.as_deref().unwrap_or(""))
                .await?;
            out(&format!(
                "run of {} for {}\n{}\n",
                name, run.logical, run.pipeline_id
            ))?;
            return Ok(ExitCode::SUCCESS);
        }
        ScheduleCommand::Pause { name } => action(ScheduleAction::Pause, &name),
        ScheduleCommand::Resume { name } => action(ScheduleAction::Resume, &name),
        ScheduleCommand::Remove { name } => action(ScheduleAction::Remove, &name),
    };
    let info = client.change_schedule(&name, action).await?;
    let text = match action {
        ScheduleAction::Pause => format!("schedule {name} paused\n"),
        ScheduleAction::Resume => {
            format!("schedule {name} resumed; next run: {}\n", next_text(&info))
        }
        _ => format!("schedule {name} removed; its pipelines stay\n"),
    };
    out(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn schedule_name(info: &ScheduleInfo) -> &str {
    info.spec.as_ref().map_or("", |s| s.name.as_str())
}

fn next_text(info: &ScheduleInfo) -> String {
    if info.next_logical.is_empty() {
        return "none (the expression never fires again)".into();
    }
    format!(
        "{} (fires {})",
        info.next_logical,
        utc_time(info.next_fire_unix_ms)
    )
}

async fn list(client: &Client, json: bool) -> anyhow::Result<ExitCode> {
    let schedules = client.list_schedules().await?;
    if json {
        let rows: Vec<_> = schedules.iter().map(info_json).collect();
        out(&format!("{}\n", serde_json::to_string_pretty(&rows)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = format!(
        "{:<24} {:<16} {:<20} {:<7} {:>6}  {:<26} {}\n",
        "NAME", "CRON", "ZONE", "STATE", "ACTIVE", "LAST", "NEXT"
    );
    for info in &schedules {
        let spec = info.spec.clone().unwrap_or_default();
        let zone = if spec.timezone.is_empty() {
            "UTC".into()
        } else {
            spec.timezone
        };
        text.push_str(&format!(
            "{:<24} {:<16} {:<20} {:<7} {:>6}  {:<26} {}\n",
            spec.name,
            spec.cron,
            zone,
            if info.paused { "paused" } else { "active" },
            info.active_runs,
            if info.last_logical.is_empty() {
                "-"
            } else {
                &info.last_logical
            },
            if info.next_logical.is_empty() {
                "-"
            } else {
                &info.next_logical
            },
        ));
    }
    out(&text)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn runs(connection: &Connection, args: RunsArgs) -> anyhow::Result<ExitCode> {
    let client = connection.client().await?;
    let runs = client.schedule_runs(&args.name, args.limit).await?;
    if args.json {
        let rows: Vec<_> = runs.iter().map(run_json).collect();
        out(&format!("{}\n", serde_json::to_string_pretty(&rows)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = format!(
        "{:<26} {:<9} {:<10} {:<20} {:<20} {}\n",
        "LOGICAL", "TRIGGER", "STATE", "STARTED", "ENDED", "PIPELINE / NOTE"
    );
    for run in &runs {
        let ended = if run.finished_unix_ms == 0 {
            "-".to_string()
        } else {
            utc_time(run.finished_unix_ms)
        };
        let what = if run.pipeline_id.is_empty() {
            &run.note
        } else {
            &run.pipeline_id
        };
        text.push_str(&format!(
            "{:<26} {:<9} {:<10} {:<20} {:<20} {}\n",
            run.logical,
            run.trigger,
            run.state,
            utc_time(run.fired_unix_ms),
            ended,
            what
        ));
    }
    out(&text)?;
    Ok(ExitCode::SUCCESS)
}

pub async fn backfill(connection: &Connection, args: BackfillArgs) -> anyhow::Result<ExitCode> {
    let client = connection.client().await?;
    if let Some(change) = args.change {
        return change_backfill(&client, change).await;
    }
    let request = BackfillRequest {
        schedule: args.name.unwrap_or_default(),
        from: args.from.unwrap_or_default(),
        to: args.to.unwrap_or_default(),
        max_active: args.max_active,
        reverse: args.reverse,
        no_retries: args.no_retries,
        dry_run: args.dry_run,
    };
    let reply = client.backfill(request.clone()).await?;
    if args.dry_run {
        let mut text = String::new();
        for logical in &reply.logicals {
            text.push_str(&format!("{logical}\n"));
        }
        text.push_str(&format!(
            "{} run(s) would run (dry run: nothing started)\n",
            reply.logicals.len()
        ));
        out(&text)?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(info) = reply.backfill else {
        out("nothing to run: every logical time in the range already succeeded\n")?;
        return Ok(ExitCode::SUCCESS);
    };
    out(&format!(
        "backfill of {}: {} run(s), {} at a time\n",
        info.schedule, info.total, info.max_active
    ))?;
    if args.wait {
        let done = wait_backfill(&client, &info.id).await?;
        out(&format!("{}\n", info.id))?;
        let code = if done.failed == 0 && !done.cancelled {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_PIPELINE_FAILED)
        };
        return Ok(code);
    }
    out(&format!("{}\n", info.id))?;
    Ok(ExitCode::SUCCESS)
}

/// Polls a backfill until it finished, printing a progress line to stderr
/// at each change.
async fn wait_backfill(client: &Client, id: &str) -> anyhow::Result<BackfillInfo> {
    let mut last = String::new();
    loop {
        let info = client
            .list_backfills()
            .await?
            .into_iter()
            .find(|b| b.id == id)
            .ok_or_else(|| anyhow::anyhow!("backfill {id} is gone"))?;
        let line = progress(&info);
        if line != last {
            eprintln!("{line}");
            last = line;
        }
        if info.finished {
            return Ok(info);
        }
        tokio::time::sleep(Duration::from_millis(super::wait::POLL_MS_DEFAULT)).await;
    }
}

fn progress(b: &BackfillInfo) -> String {
    format!(
        "{}: {}/{} succeeded, {} failed, {} running{}{}",
        b.id,
        b.succeeded,
        b.total,
        b.failed,
        b.running,
        if b.paused { ", paused" } else { "" },
        if b.cancelled { ", cancelled" } else { "" }
    )
}

async fn change_backfill(client: &Client, change: BackfillCommand) -> anyhow::Result<ExitCode> {
    let (id, action, max_active) = match change {
        BackfillCommand::List { json } => {
            let backfills = client.list_backfills().await?;
            if json {
                let rows: Vec<_> = backfills.iter().map(backfill_json).collect();
                out(&format!("{}\n", serde_json::to_string_pretty(&rows)?))?;
            } else {
                let lines: String = backfills.iter().map(|b| progress(b) + "\n").collect();
                out(&lines)?;
            }
            return Ok(ExitCode::SUCCESS);
        }
        BackfillCommand::Set { id, max_active } => (id, BackfillAction::Set, max_active),
        BackfillCommand::Pause { id } => (id, BackfillAction::Pause, 0),
        BackfillCommand::Resume { id } => (id, BackfillAction::Resume, 0),
        BackfillCommand::Cancel { id } => (id, BackfillAction::Cancel, 0),
    };
    let info = client.change_backfill(&id, action, max_active).await?;
    out(&format!("{}\n", progress(&info)))?;
    Ok(ExitCode::SUCCESS)
}

fn backfill_json(b: &BackfillInfo) -> serde_json::Value {
    json!({
        "id": b.id,
        "schedule": b.schedule,
        "max_active": b.max_active,
        "reverse": b.reverse,
        "no_retries": b.no_retries,
        "paused": b.paused,
        "cancelled": b.cancelled,
        "total": b.total,
        "fired": b.fired,
        "running": b.running,
        "succeeded": b.succeeded,
        "failed": b.failed,
        "finished": b.finished,
        "created_unix_ms": b.created_unix_ms,
    })
}
