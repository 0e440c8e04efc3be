//! `tmctl token create|list|revoke`: the bearer tokens of a master started
//! with `--auth` (admin only), and the audit trail `tmctl status ID`
//! prints.

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Subcommand;
use taskmaster_cli::text::utc_time;
use taskmaster_master::auth::roles::{role_by_name, role_name};
use taskmaster_proto::v1::{AuditEntry, Role};

use super::Connection;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a token; prints it alone on the last line of stdout, the only
    /// time it is shown (the master keeps only its hash).
    #[command(after_help = "Examples:\n  \
        tmctl token create --role operator --name alice --expires 90d\n  \
        tmctl token create --role worker --name worker-7 > worker-7.token\n  \
        taskmaster-worker --worker-id worker-7 --token-file worker-7.token")]
    Create {
        /// worker (lease and commit its own units; its name is the
        /// worker's --worker-id), viewer (every read), operator (submit
        /// and every operator action, and reads), or admin (tokens,
        /// rollback, everything).
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Who or what it is for: letters, digits, '.', '_', '-'.
        #[arg(long)]
        name: String,
        /// How long it lasts (90s, 30m, 12h, 7d); forever if not given.
        #[arg(long, value_name = "DURATION", value_parser = parse_expiry)]
        expires: Option<u64>,
    },
    /// Every token: name, role, when it expires and was last used (since
    /// the master started).
    List,
    /// Revoke a token by name: calls with it are refused from now on.
    Revoke {
        /// The token's name.
        name: String,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    role_by_name(text)
        .ok_or_else(|| format!("{text:?} is no role: worker, viewer, operator or admin"))
}

fn parse_expiry(text: &str) -> Result<u64, String> {
    use taskmaster_spec::duration::{UP_TO_DAYS, parse_ms};
    match parse_ms(text, UP_TO_DAYS) {
        Some(ms) if ms >= 1_000 => Ok(ms),
        Some(_) => Err(format!("{text:?}: a token lasts at least 1s")),
        None => Err(format!(
            "{text:?} is not a duration like 90s, 30m, 12h or 7d"
        )),
    }
}

pub async fn run(connection: &Connection, command: TokenCommand) -> anyhow::Result<ExitCode> {
    let client = connection.client().await?;
    let text = match command {
        TokenCommand::Create {
            role,
            name,
            expires,
        } => {
            let made = client
                .create_token(&name, role, expires.unwrap_or(0))
                .await?;
            let info = made.info.unwrap_or_default();
            let expiry = match info.expires_unix_ms {
                0 => "never expires".to_string(),
                ms => format!("expires {}", utc_time(ms)),
            };
            super::err_out(&format!(
                "token {} ({}, {expiry}): shown once, keep it in a file only its user can read\n",
                info.name,
                role_name(role)
            ));
            format!("{}\n", made.token)
        }
        TokenCommand::List => tokens_table(&client.list_tokens().await?),
        TokenCommand::Revoke { name } => {
            client.revoke_token(&name).await?;
            format!("revoked token {name}\n")
        }
    };
    super::out(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn tokens_table(tokens: &[taskmaster_proto::v1::TokenInfo]) -> String {
    let when = |ms: u64, none: &str| match ms {
        0 => none.to_string(),
        ms => utc_time(ms),
    };
    let mut out = format!(
        "{:<24}  {:<8}  {:<20}  {:<20}\n",
        "NAME", "ROLE", "EXPIRES", "LAST USED"
    );
    for t in tokens {
        let role = Role::try_from(t.role).map_or("?", role_name);
        let _ = writeln!(
            out,
            "{:<24}  {:<8}  {:<20}  {:<20}",
            t.name,
            role,
            when(t.expires_unix_ms, "never"),
            when(t.last_used_unix_ms, "-")
        );
    }
    out
}

/// The "audit" section of `tmctl status ID`: who changed the pipeline (or
/// the whole master) lately, when, and why; empty if no one did.
pub fn audit_section(entries: &[AuditEntry]) -> String {
    if entries.is_empty() {
        return String::new();
    }
    let mut out = String::from("\naudit (newest last)\n");
    for e in entries {
        let scope = if e.pipeline_id.is_empty() {
            " [master]"
        } else {
            ""
        };
        let _ = write!(
            out,
            "  {}  {}  {}{scope}",
            utc_time(e.unix_ms),
            e.actor,
            e.action
        );
        if !e.reason.is_empty() {
            let _ = write!(out, "  reason: {}", e.reason);
        }
        out.push('\n');
    }
    out
}

/// The audit trail in `tmctl status ID --json`: an array of objects,
/// newest last (`pipeline_id` empty for master-wide actions).
pub fn audit_json(entries: &[AuditEntry]) -> serde_json::Value {
    entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "unix_ms": e.unix_ms,
                "actor": e.actor,
                "action": e.action,
                "reason": e.reason,
                "pipeline_id": e.pipeline_id,
            })
        })
        .collect()
}
