//! The operator commands: `wait`, `retry`, `rerun`, `clear`, `cancel`,
//! `delete`, `block`, `unblock`, `config`, `scale`, `workers`, `snapshot`,
//! `snapshots` and `rollback`. Each makes one call to the master (journaled
//! there before it answers) and prints what changed; a refusal is the
//! master's message and code, e.g. `error: the master is not blocked
//! (FAILED_PRECONDITION)`. `wait`, and `retry` and `rerun` with `--wait`,
//! then follow the pipeline to its end.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Subcommand;
use taskmaster_cli::text::{self, count};
use taskmaster_cli::view::state_name;
use taskmaster_client::{Client, parse_param};
use taskmaster_proto::v1::{PipelineRollback, PipelineState, RollbackPreview};

use super::config_change::{self, KEYS_HELP};
use super::wait::{self, POLL_MS_DEFAULT, WaitArgs};

#[derive(Debug, Subcommand)]
pub enum Operate {
    /// Wait until a pipeline finishes, reporting progress on stderr.
    ///
    /// Exits 0 if it succeeded, 1 if it failed (its failed units are
    /// printed) or was cancelled, 2 if it cannot be watched (no such
    /// pipeline, no master): the codes of `submit --wait`.
    Wait {
        /// The pipeline id.
        id: String,
        /// How often to poll the master, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = POLL_MS_DEFAULT)]
        poll_ms: u64,
    },
    /// Re-run failed units with exactly the same inputs and parameters;
    /// prints how many.
    ///
    /// Each failed unit gets a fresh set of attempts. Fix the cause first
    /// (or change the group's config with `tmctl config`). Refused when no
    /// unit there has failed.
    Retry {
        /// The pipeline id.
        id: String,
        /// Only the failed units of this group.
        #[arg(long, short)]
        group: Option<String>,
        /// Only this unit of the group.
        #[arg(long, short, requires = "group")]
        unit: Option<u32>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Start a new run of a finished or failed pipeline with the same
    /// parameters (or some changed with --param); prints the new pipeline
    /// id alone on the last line of stdout.
    Rerun {
        /// The pipeline to run again.
        id: String,
        /// Change a parameter of the pipeline for the new run (repeatable);
        /// a name the pipeline does not have is refused.
        #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Reset a committed group (and, with --downstream, what depends on
    /// it) to run again.
    ///
    /// Its outputs are committed again under new lease ids, under the
    /// same unit numbers (a gather downstream stays unit 0); the outputs
    /// it replaces are deleted by the master's sweep (within a lease time,
    /// at most a minute), as nothing can read them any more. Refused
    /// without --downstream when downstream groups already read it.
    Clear {
        /// The pipeline id.
        id: String,
        /// The group to reset.
        #[arg(long, short)]
        group: String,
        /// Also reset every group downstream of it (their units derived
        /// from the reset outputs are dropped and derived again).
        #[arg(long)]
        downstream: bool,
    },
    /// Cancel a pipeline: no more leases, and commits of leases already
    /// out are refused.
    Cancel {
        /// The pipeline id.
        id: String,
    },
    /// Make the master forget finished pipelines: status, outputs list,
    /// memory, snapshots.
    ///
    /// Their committed outputs stay in the store (outputs of attempts that
    /// never committed are deleted). Refused, deleting none, while one of
    /// them has not finished. `taskmaster serve --retain-finished` does
    /// this by itself.
    Delete {
        /// The pipeline ids.
        #[arg(
            required_unless_present = "all_finished",
            conflicts_with = "all_finished"
        )]
        ids: Vec<String>,
        /// Every pipeline that has finished (succeeded, failed or
        /// cancelled) when the command runs.
        #[arg(long)]
        all_finished: bool,
    },
    /// Stop handing out leases, for the whole master or one pipeline.
    ///
    /// Units already leased keep running and may commit.
    Block {
        /// Block only this pipeline.
        #[arg(long, value_name = "ID")]
        pipeline: Option<String>,
    },
    /// Resume handing out leases after `tmctl block`.
    Unblock {
        /// Unblock only this pipeline.
        #[arg(long, value_name = "ID")]
        pipeline: Option<String>,
    },
    /// Change a group's config (KEY=VALUE ...); prints its new config
    /// version.
    #[command(after_long_help = KEYS_HELP)]
    Config {
        /// The pipeline id.
        id: String,
        /// The group to change.
        #[arg(long, short)]
        group: String,
        /// The changes, e.g. max_attempts=5 retry_delay=30s env.LANG=C.
        #[arg(value_name = "KEY=VALUE", required = true)]
        changes: Vec<String>,
    },
    /// Split each pending unit of a first group into up to K units.
    Scale {
        /// The pipeline id.
        id: String,
        /// The group to split.
        #[arg(long, short)]
        group: String,
        /// Units to split each pending unit into, at most (2 to 1000).
        #[arg(long, value_name = "K")]
        split: u32,
    },
    /// List the workers: whether each is alive, its slots, the units it
    /// runs now, when it last called, and its leases
    /// (pipeline/group/unit#lease).
    ///
    /// A worker is alive while it calls: within a lease time (and 5 s)
    /// when busy, within 65 s when it is waiting for work. One that stopped
    /// (killed, cut off) is listed as not alive for 10 minutes after its
    /// last call, or while it holds leases, then forgotten.
    Workers,
    /// Record a snapshot of the whole state; prints its id as the last
    /// word.
    Snapshot {
        /// A note to remember it by, shown by `tmctl snapshots`.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// List the snapshots: id, time, journal position, size, note.
    Snapshots,
    /// Restore the state of a snapshot, for the whole master, after
    /// showing what it undoes and asking.
    ///
    /// Pipelines submitted since the snapshot disappear (their committed
    /// outputs stay in the store, listed), pipelines deleted since come
    /// back, states go back, units committed since run again, and every
    /// lease out now can no longer commit. Schedules are not rolled back.
    /// Asks on the terminal first; with stdin not a terminal, it prints
    /// what it would undo and refuses unless --yes.
    Rollback {
        /// The snapshot id, as `tmctl snapshots` lists it.
        snapshot: String,
        /// Roll back without asking.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs one operator command against the master `connection` names.
pub async fn run(connection: &super::Connection, command: Operate) -> anyhow::Result<ExitCode> {
    // Read the arguments before connecting: a typo is reported as such
    // even when no master is running.
    let change = match &command {
        Operate::Config { changes, .. } => Some(config_change::parse_changes(changes)?),
        _ => None,
    };
    let client = connection.client().await?;
    // The pipeline to follow once the text is printed, and how often.
    let mut follow = None;
    let text = match command {
        Operate::Wait { id, poll_ms } => {
            follow = Some((id, std::time::Duration::from_millis(poll_ms)));
            String::new()
        }
        Operate::Retry {
            id,
            group,
            unit,
            wait,
        } => {
            let retried = client.retry(&id, group.as_deref(), unit).await?;
            let text = format!(
                "retried {} of {id} (same inputs and parameters)\n",
                count(retried, "failed unit")
            );
            follow = wait.poll().map(|poll| (id, poll));
            text
        }
        Operate::Rerun { id, params, wait } => {
            let new_id = client.rerun_with_params(&id, &params).await?;
            follow = wait.poll().map(|poll| (new_id.clone(), poll));
            format!("{new_id}\n")
        }
        Operate::Clear {
            id,
            group,
            downstream,
        } => {
            let changed = client.clear(&id, &group, downstream).await?;
            format!(
                "cleared group {group} of {id}: {} reset to run again, {} dropped downstream\n",
                count(changed.units_reset, "unit"),
                count(changed.units_dropped, "unit"),
            )
        }
        Operate::Cancel { id } => {
            client.cancel(&id).await?;
            format!("cancelled {id}\n")
        }
        Operate::Delete { ids, all_finished } => delete(&client, ids, all_finished).await?,
        Operate::Block { pipeline } => block(&client, pipeline.as_deref(), true).await?,
        Operate::Unblock { pipeline } => block(&client, pipeline.as_deref(), false).await?,
        Operate::Config { id, group, .. } => {
            let change = change.expect("parsed above");
            let changed = client.change_config(&id, &group, change).await?;
            let mut line = format!(
                "group {group} of {id} is at config version {}",
                changed.config_version
            );
            if changed.units_requeued > 0 {
                line.push_str(&format!(
                    "; {} leased under the old config went back to pending",
                    count(changed.units_requeued, "unit")
                ));
            }
            line + "\n"
        }
        Operate::Scale { id, group, split } => {
            let changed = client.scale(&id, &group, split).await?;
            format!(
                "split {} of group {group} into {}\n",
                count(changed.units_split, "unit"),
                count(changed.units_added, "unit"),
            )
        }
        Operate::Workers => text::workers_table(&client.workers().await?),
        Operate::Snapshot { note } => {
            let info = client.snapshot(&note).await?;
            // The id is the last word, for scripts.
            format!(
                "snapshot at journal position {} ({}): {}\n",
                info.journal_position,
                text::human_bytes(info.size_bytes),
                info.snapshot_id
            )
        }
        Operate::Snapshots => text::snapshots_table(&client.snapshots().await?),
        Operate::Rollback { snapshot, yes } => match rollback(&client, &snapshot, yes).await? {
            Some(text) => text,
            None => return Ok(ExitCode::FAILURE),
        },
    };
    super::out(&text)?;
    match follow {
        Some((id, poll)) => wait::follow(&client, &id, poll).await,
        None => Ok(ExitCode::SUCCESS),
    }
}

async fn delete(client: &Client, ids: Vec<String>, all_finished: bool) -> anyhow::Result<String> {
    let ids = if all_finished {
        let finished: Vec<String> = client
            .list()
            .await?
            .into_iter()
            .filter(|p| {
                matches!(
                    p.state(),
                    PipelineState::Succeeded | PipelineState::Failed | PipelineState::Cancelled
                )
            })
            .map(|p| p.pipeline_id)
            .collect();
        if finished.is_empty() {
            return Ok("no finished pipeline to delete\n".into());
        }
        finished
    } else {
        ids
    };
    let swept = client.delete_pipelines(&ids).await?;
    Ok(format!(
        "deleted {}; swept {} of attempts that never committed; committed outputs stay in the store\n",
        ids.join(", "),
        count(swept, "output dir"),
    ))
}

async fn block(client: &Client, pipeline: Option<&str>, blocked: bool) -> anyhow::Result<String> {
    client.block(pipeline, blocked).await?;
    let what = match pipeline {
        Some(id) => format!("pipeline {id}"),
        None => "the whole master".to_string(),
    };
    Ok(if blocked {
        format!("blocked leasing for {what}\n")
    } else {
        format!("unblocked leasing for {what}\n")
    })
}

/// Shows what a rollback to `snapshot` would undo, asks (unless `yes`),
/// then rolls back; returns what it undid, or None when the operator said
/// no. Refused, changing nothing, when it cannot ask (stdin is not a
/// terminal) and `yes` is not given.
async fn rollback(client: &Client, snapshot: &str, yes: bool) -> anyhow::Result<Option<String>> {
    let preview = client.rollback_undoing(snapshot, true).await?;
    super::out(&rollback_text(&preview))?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "not rolled back: stdin is not a terminal to confirm on; pass --yes to roll back without asking"
            );
        }
        if !confirmed(&format!("roll back the whole master to {snapshot}? [y/N] ")).await? {
            super::err_out("not rolled back; nothing changed\n");
            return Ok(None);
        }
    }
    let undone = client.rollback_undoing(snapshot, false).await?;
    Ok(Some(format!(
        "rolled back to {snapshot}; {} out can no longer commit\n{}",
        count(undone.leases_invalidated, "lease"),
        outputs_left_text(&undone),
    )))
}

/// Asks `question` on stderr and reads the answer from the terminal: yes
/// only for `y` or `yes`.
async fn confirmed(question: &str) -> anyhow::Result<bool> {
    super::err_out(question);
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await??;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// What a rollback would undo, pipeline by pipeline.
fn rollback_text(preview: &RollbackPreview) -> String {
    let mut text = format!(
        "rollback to {} (taken {}, journal position {}) would undo:\n",
        preview.snapshot_id,
        text::utc_time(preview.snapshot_taken_unix_ms),
        preview.snapshot_journal_position,
    );
    let state = |s: i32| state_name(PipelineState::try_from(s).unwrap_or_default());
    let listed = |text: &mut String, what: &str, n: u64| {
        if n > 0 {
            text.push_str(&format!("  {} {what}:\n", count(n, "pipeline")));
        }
    };
    let of =
        |kind: fn(&PipelineRollback) -> bool| preview.pipelines.iter().filter(move |p| kind(p));
    listed(
        &mut text,
        "submitted since the snapshot disappear",
        preview.pipelines_dropped,
    );
    for p in of(is_dropped) {
        text.push_str(&format!(
            "    {} ({}): {} now; its {} ({}) stay in the store under {}/\n",
            p.pipeline_id,
            p.name,
            state(p.state_now),
            count(p.units_to_run_again, "committed unit"),
            count(p.committed_files_left, "file"),
            p.pipeline_id,
        ));
    }
    listed(
        &mut text,
        "deleted since the snapshot come back",
        preview.pipelines_restored,
    );
    for p in of(is_restored) {
        text.push_str(&format!(
            "    {} ({}): {}\n",
            p.pipeline_id,
            p.name,
            state(p.state_after)
        ));
    }
    listed(&mut text, "go back", preview.pipelines_changed);
    for p in of(|p| !is_dropped(p) && !is_restored(p)) {
        text.push_str(&format!(
            "    {} ({}): {} -> {}, {} run again\n",
            p.pipeline_id,
            p.name,
            state(p.state_now),
            state(p.state_after),
            count(p.units_to_run_again, "committed unit"),
        ));
    }
    let shown = preview.pipelines.len() as u64;
    let total = preview.pipelines_dropped + preview.pipelines_restored + preview.pipelines_changed;
    if shown < total {
        text.push_str(&format!("    ({} more not listed)\n", total - shown));
    }
    if total == 0 {
        text.push_str("  no pipeline changes\n");
    }
    text.push_str(&format!(
        "  {} in all run again or disappear; {} out now can no longer commit; schedules are not rolled back\n",
        count(preview.units_to_run_again, "committed unit"),
        count(preview.leases_invalidated, "lease"),
    ));
    text
}

/// Where the dropped pipelines' outputs were left, after a rollback.
fn outputs_left_text(undone: &RollbackPreview) -> String {
    undone
        .pipelines
        .iter()
        .filter(|p| is_dropped(p) && p.committed_files_left > 0)
        .map(|p| {
            format!(
                "dropped {}: {} left in the store under {}/ (no longer referenced; delete them by hand when no one reads them)\n",
                p.pipeline_id,
                count(p.committed_files_left, "committed output file"),
                p.pipeline_id,
            )
        })
        .collect()
}

/// A pipeline submitted after the snapshot: the rollback drops it.
fn is_dropped(p: &PipelineRollback) -> bool {
    p.state_after == PipelineState::Unspecified as i32
}

/// A pipeline deleted since the snapshot: the rollback brings it back.
fn is_restored(p: &PipelineRollback) -> bool {
    p.state_now == PipelineState::Unspecified as i32
}
