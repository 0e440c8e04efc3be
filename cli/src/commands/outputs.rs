//! `tmctl outputs ID --group G`.

use std::process::ExitCode;

use taskmaster_client::Client;

/// Prints every committed output of the group, one per line: absolute
/// paths for a local store, `s3://bucket/...` URLs for a remote one.
pub async fn run(client: &Client, id: &str, group: &str) -> anyhow::Result<ExitCode> {
    let paths = client.output_paths(id, group).await?;
    let mut text = String::new();
    for path in paths {
        text.push_str(&path);
        text.push('\n');
    }
    super::out(&text)?;
    Ok(ExitCode::SUCCESS)
}
