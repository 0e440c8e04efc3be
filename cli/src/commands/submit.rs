//! `tmctl submit FILE [--param K=V]... [--wait]`.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use taskmaster_cli::text;
use taskmaster_client::Client;
use taskmaster_proto::v1::PipelineSpec;

/// Reads the pipeline file at `file` and sets `params` in it. Each must be
/// declared in the file's `[params]`: a name it does not declare is far
/// more often misspelt than meant, and would reach the tasks unnoticed.
pub async fn load(file: &Path, params: &[(String, String)]) -> anyhow::Result<PipelineSpec> {
    let mut spec = taskmaster_client::load_pipeline_async(file.to_path_buf(), Vec::new()).await?;
    let mut undeclared: Vec<&str> = params
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !spec.params.contains_key(*name))
        .collect();
    if !undeclared.is_empty() {
        undeclared.sort_unstable();
        undeclared.dedup();
        let mut declared: Vec<&str> = spec.params.keys().map(String::as_str).collect();
        declared.sort_unstable();
        let declared = if declared.is_empty() {
            "declares none".to_string()
        } else {
            format!("declares {}", declared.join(", "))
        };
        anyhow::bail!(
            "--param {}: not a parameter of {} ({declared}); add it under [params] to pass it",
            undeclared.join(", "),
            file.display(),
        );
    }
    for (name, value) in params {
        spec.params.insert(name.clone(), value.clone());
    }
    Ok(spec)
}

/// Submits `spec` and prints its id; with `wait` (the poll interval),
/// follows the pipeline to its end and sets the exit code from it.
pub async fn run(
    client: &Client,
    spec: PipelineSpec,
    wait: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let summary = text::submit_summary(&spec);
    let id = client.submit(spec).await?;
    super::err_out(&summary);
    // Printed at once and nothing else goes to stdout, so the id is the
    // last line of stdout whatever happens while waiting.
    super::out(&format!("{id}\n"))?;
    match wait {
        Some(poll) => super::wait::follow(client, &id, poll).await,
        None => Ok(ExitCode::SUCCESS),
    }
}
