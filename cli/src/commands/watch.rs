//! `tmctl watch ID`: the pipeline's progress until it ends, one bar per
//! group redrawn in place on a terminal, a line per group whose counts
//! changed otherwise (the demo's [`Progress`], so `tmctl demo`, `watch`
//! and `submit --wait` on a terminal look alike). Ends with the pipeline's
//! final state and its failed units; exit 0 only if it succeeded.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use taskmaster_cli::demo::progress::Progress;
use taskmaster_cli::view::PipelineView;
use taskmaster_client::Client;

/// Follows pipeline `id`, polling every `poll`, drawing its progress on
/// stderr; then says how it ended (see [`super::wait::ended`]).
pub async fn run(client: &Client, id: &str, poll: Duration) -> anyhow::Result<ExitCode> {
    let mut progress = Progress::new(std::io::stderr().is_terminal());
    let started = Instant::now();
    let status = client
        .wait_with(id, poll, |status| {
            let drawn = progress.update(&PipelineView::from(status.clone()), started.elapsed());
            // Written as is: the bars move the cursor with escape
            // sequences, and the names in them are the master's checked
            // names (no control characters).
            let mut stderr = std::io::stderr().lock();
            let _ = stderr.write_all(drawn.as_bytes());
            let _ = stderr.flush();
        })
        .await?;
    Ok(super::wait::ended(id, status))
}
