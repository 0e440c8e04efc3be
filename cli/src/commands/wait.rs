//! Following a pipeline to its end: `tmctl wait ID`, and `--wait` on
//! `submit`, `retry` and `rerun`. Progress goes to stderr; the exit code
//! says how the pipeline ended.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use taskmaster_cli::text;
use taskmaster_cli::view::PipelineView;
use taskmaster_client::Client;
use taskmaster_proto::v1::{PipelineState, PipelineStatus};

/// Default interval between polls while waiting, in milliseconds.
pub const POLL_MS_DEFAULT: u64 = 500;

/// `--wait` and `--poll-ms`, for commands that start work.
#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// Wait until the pipeline finishes, reporting progress on stderr;
    /// exit 0 if it succeeded, 1 if it failed or was cancelled.
    #[arg(long)]
    pub wait: bool,
    /// How often to poll the master while waiting, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = POLL_MS_DEFAULT, requires = "wait")]
    pub poll_ms: u64,
}

impl WaitArgs {
    /// The poll interval when waiting was asked for.
    pub fn poll(&self) -> Option<Duration> {
        self.wait.then(|| Duration::from_millis(self.poll_ms))
    }
}

/// Polls pipeline `id` every `poll` until it has finished, printing a
/// progress line on stderr whenever it changes, then how it ended (and
/// its failed units). Exit code 0 if it succeeded, 1 if it failed or was
/// cancelled; errors (no such pipeline, no master) are the caller's.
///
/// On a terminal, shows the same bars as `tmctl watch` instead of lines.
pub async fn follow(client: &Client, id: &str, poll: Duration) -> anyhow::Result<ExitCode> {
    if std::io::stderr().is_terminal() {
        return super::watch::run(client, id, poll).await;
    }
    let started = Instant::now();
    let mut last_line = String::new();
    let status = client
        .wait_with(id, poll, |status| {
            let line = text::progress_line(&PipelineView::from(status.clone()));
            if line != last_line {
                super::err_out(&format!("[{:>4}s] {line}", started.elapsed().as_secs()));
                last_line = line;
            }
        })
        .await?;
    Ok(ended(id, status))
}

/// Says on stderr how pipeline `id` ended (and its failed units); exit
/// code 0 if it succeeded, 1 otherwise.
pub fn ended(id: &str, status: PipelineStatus) -> ExitCode {
    let succeeded = status.state() == PipelineState::Succeeded;
    let view = PipelineView::from(status);
    super::err_out(&format!("pipeline {id} {}\n", view.state));
    if succeeded {
        return ExitCode::SUCCESS;
    }
    if !view.failed_units.is_empty() {
        super::err_out(&format!(
            "failed units:\n{}",
            text::failed_units(&view.failed_units, Some(id))
        ));
    }
    ExitCode::from(super::EXIT_PIPELINE_FAILED)
}
