//! `tmctl status [ID] [--json]`.

use std::process::ExitCode;

use taskmaster_client::Client;
use taskmaster_client::text;
use taskmaster_client::view::PipelineView;

/// Prints one pipeline (with `id`) or all of them, as text or JSON.
pub async fn run(client: &Client, id: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let text = match id {
        Some(id) => {
            let view = PipelineView::from(client.status(id).await?);
            if json {
                serde_json::to_string_pretty(&view)? + "\n"
            } else {
                text::pipeline_detail(&view)
            }
        }
        None => {
            let views: Vec<PipelineView> = client
                .list()
                .await?
                .into_iter()
                .map(PipelineView::from)
                .collect();
            if json {
                serde_json::to_string_pretty(&views)? + "\n"
            } else {
                text::pipelines_table(&views)
            }
        }
    };
    super::out(&text)?;
    Ok(ExitCode::SUCCESS)
}
