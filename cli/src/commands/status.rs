//! `tmctl status [ID] [--json]`.

use std::process::ExitCode;

use taskmaster_cli::text;
use taskmaster_cli::view::StatusView;
use taskmaster_client::{Client, ClientError};
use taskmaster_proto::v1::MasterStatus;
use tonic::Code;

/// Prints one pipeline (with `id`) or all of them, as text or JSON. The
/// text of all pipelines ends with a line on the master itself; the text
/// of one pipeline ends with a note when the whole master is blocked.
pub async fn run(client: &Client, id: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let text = match id {
        Some(id) => {
            let status = client.status(id).await?;
            let audit_json = super::token::audit_json(&status.audit);
            let audit = super::token::audit_section(&status.audit);
            let view = StatusView::from(status);
            if json {
                let mut value = serde_json::to_value(&view)?;
                if let Some(object) = value.as_object_mut() {
                    object.insert("audit".into(), audit_json);
                }
                serde_json::to_string_pretty(&value)? + "\n"
            } else {
                let mut text = text::pipeline_detail(&view);
                text.push_str(&audit);
                if master_status(client).await?.is_some_and(|m| m.blocked) {
                    text.push_str(&text::master_blocked_note());
                }
                text
            }
        }
        None => {
            let views: Vec<StatusView> = client
                .list()
                .await?
                .into_iter()
                .map(StatusView::from)
                .collect();
            if json {
                serde_json::to_string_pretty(&views)? + "\n"
            } else {
                let mut text = text::pipelines_table(&views);
                if let Some(master) = master_status(client).await? {
                    text.push_str(&text::master_line(&master));
                }
                text
            }
        }
    };
    super::out(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// The master's own status; None from a master too old to report it.
async fn master_status(client: &Client) -> Result<Option<MasterStatus>, ClientError> {
    match client.master_status().await {
        Ok(status) => Ok(Some(status)),
        Err(e) if e.code() == Some(Code::Unimplemented) => Ok(None),
        Err(e) => Err(e),
    }
}
