//! `tmctl submit FILE [--param K=V]... [--wait]`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use taskmaster_client::Client;
use taskmaster_client::text;
use taskmaster_client::view::PipelineView;
use taskmaster_proto::v1::{PipelineSpec, PipelineState};

/// Submits `spec` and prints its id; with `wait` (the poll interval),
/// follows the pipeline to its end and sets the exit code from it.
pub async fn run(
    client: &Client,
    spec: PipelineSpec,
    wait: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let id = client.submit(spec).await?;
    // Printed at once and nothing else goes to stdout, so the id is the
    // last line of stdout whatever happens while waiting.
    super::out(&format!("{id}\n"))?;
    let Some(poll) = wait else {
        return Ok(ExitCode::SUCCESS);
    };
    let started = Instant::now();
    let mut last_line = String::new();
    let status = client
        .wait_with(&id, poll, |status| {
            let line = text::progress_line(&PipelineView::from(status.clone()));
            if line != last_line {
                super::err_out(&format!("[{:>4}s] {line}", started.elapsed().as_secs()));
                last_line = line;
            }
        })
        .await?;
    let succeeded = status.state() == PipelineState::Succeeded;
    let view = PipelineView::from(status);
    eprintln!("pipeline {id} {}", view.state);
    if succeeded {
        return Ok(ExitCode::SUCCESS);
    }
    if !view.failed_units.is_empty() {
        eprint!("failed units:\n{}", text::failed_units(&view.failed_units));
    }
    Ok(ExitCode::from(super::EXIT_PIPELINE_FAILED))
}
