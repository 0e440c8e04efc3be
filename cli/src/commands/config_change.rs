//! The `KEY=VALUE` arguments of `tmctl config`, read into the
//! `GroupConfigChange` the master applies. Parsed before connecting, so a
//! typo is reported without touching the master.

use std::collections::HashSet;

use taskmaster_client::pipeline_file::parse_duration_ms;
use taskmaster_proto::v1::GroupConfigChange;

/// The keys `tmctl config` accepts, as its error messages list them.
pub const VALID_KEYS: &str =
    "command, env.NAME, config.KEY, max_attempts, retry_delay, max_in_flight";

/// Help text for the keys, shown by `tmctl config --help`.
pub const KEYS_HELP: &str = r#"Keys:
  command=CMD          the program and arguments: a JSON array, e.g. '["sh","-c","exit 0"]',
                       or else words split on whitespace
  env.NAME=VALUE       set an environment variable of the task (empty VALUE removes it)
  config.KEY=VALUE     set a task setting (empty VALUE removes it)
  max_attempts=N       attempts per unit, the first included (at least 1)
  retry_delay=D        base delay before a retry: 500ms, 90s, 2m, 1h, or 0 for at once
  max_in_flight=N      units of the group leased at once, at most (0: no limit)

Leases granted under the old config can no longer commit; their units run
again under the new one."#;

/// Reads `KEY=VALUE` arguments into one change. Each key may be given
/// once; an unknown key is an error naming the valid ones.
pub fn parse_changes(args: &[String]) -> anyhow::Result<GroupConfigChange> {
    let mut change = GroupConfigChange::default();
    let mut seen = HashSet::new();
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            anyhow::bail!("expected KEY=VALUE, got `{arg}` (valid keys: {VALID_KEYS})");
        };
        let key = key.trim();
        if !seen.insert(key.to_string()) {
            anyhow::bail!("`{key}` is given twice");
        }
        apply(&mut change, key, value)?;
    }
    if seen.is_empty() {
        anyhow::bail!("nothing to change: give at least one KEY=VALUE ({VALID_KEYS})");
    }
    Ok(change)
}

/// Sets one key of `change`.
fn apply(change: &mut GroupConfigChange, key: &str, value: &str) -> anyhow::Result<()> {
    if let Some(name) = key.strip_prefix("env.") {
        change.env.insert(map_key(key, name)?, value.to_string());
        return Ok(());
    }
    if let Some(name) = key.strip_prefix("config.") {
        change.config.insert(map_key(key, name)?, value.to_string());
        return Ok(());
    }
    match key {
        "command" => {
            change.command = parse_command(value)?;
            change.set_command = true;
        }
        "max_attempts" => {
            let attempts = parse_number(key, value)?;
            // 0 would mean "the master's default" on the wire.
            if attempts == 0 {
                anyhow::bail!(
                    "`max_attempts` counts attempts, the first included, and must be at least 1"
                );
            }
            change.max_attempts = Some(attempts);
        }
        "retries" => anyhow::bail!(
            "`retries` is not accepted: it would be read as retries after the first attempt, but \
             it meant attempts here before; write max_attempts=N (attempts, the first included)"
        ),
        "retry_delay" => change.retry_delay_ms = Some(parse_duration_ms(value)?),
        "max_in_flight" => change.max_in_flight = Some(parse_number(key, value)?),
        _ => anyhow::bail!("unknown config key `{key}`; valid keys: {VALID_KEYS}"),
    }
    Ok(())
}

/// The NAME of `env.NAME` or `config.KEY`, which must not be empty.
fn map_key(key: &str, name: &str) -> anyhow::Result<String> {
    if name.trim().is_empty() {
        anyhow::bail!("`{key}` needs a name after the dot, e.g. `env.LANG=C`");
    }
    Ok(name.to_string())
}

/// A command as a JSON array of strings, or else words split on
/// whitespace. It must name a program.
fn parse_command(value: &str) -> anyhow::Result<Vec<String>> {
    let command: Vec<String> = if value.trim_start().starts_with('[') {
        serde_json::from_str(value).map_err(|e| {
            anyhow::anyhow!("`command` looks like a JSON array but is not an array of strings: {e}")
        })?
    } else {
        value.split_whitespace().map(str::to_string).collect()
    };
    if command.first().is_none_or(String::is_empty) {
        anyhow::bail!(
            "`command` needs at least a program, e.g. command='[\"sh\",\"-c\",\"exit 0\"]'"
        );
    }
    Ok(command)
}

fn parse_number(key: &str, value: &str) -> anyhow::Result<u32> {
    value
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("`{key}` must be a whole number, not `{value}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<GroupConfigChange> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        parse_changes(&args)
    }

    #[test]
    fn every_key_sets_its_field() {
        let change = parse(&[
            r#"command=["sh", "-c", "echo a b > out"]"#,
            "env.GREETING=hello world",
            "env.OLD=",
            "config.chunk_bytes=1024",
            "max_attempts=5",
            "retry_delay=90s",
            "max_in_flight=2",
        ])
        .unwrap();
        assert!(change.set_command);
        assert_eq!(change.command, ["sh", "-c", "echo a b > out"]);
        assert_eq!(change.env["GREETING"], "hello world");
        assert_eq!(change.env["OLD"], "", "empty removes");
        assert_eq!(change.config["chunk_bytes"], "1024");
        assert_eq!(change.max_attempts, Some(5));
        assert_eq!(change.retry_delay_ms, Some(90_000));
        assert_eq!(change.max_in_flight, Some(2));
    }

    #[test]
    fn unset_keys_stay_unset() {
        let change = parse(&["retry_delay=0"]).unwrap();
        assert_eq!(change.retry_delay_ms, Some(0));
        assert!(!change.set_command && change.command.is_empty());
        assert!(change.env.is_empty() && change.config.is_empty());
        assert_eq!((change.max_attempts, change.max_in_flight), (None, None));
    }

    #[test]
    fn a_command_that_is_not_json_is_split_on_whitespace() {
        let change = parse(&["command=python3  agg.py --fast"]).unwrap();
        assert_eq!(change.command, ["python3", "agg.py", "--fast"]);
    }

    #[test]
    fn unknown_key_lists_the_valid_ones() {
        let message = parse(&["timeout=5s"]).unwrap_err().to_string();
        assert_eq!(
            message,
            "unknown config key `timeout`; valid keys: command, env.NAME, config.KEY, max_attempts, \
             retry_delay, max_in_flight"
        );
    }

    #[test]
    fn bad_values_are_refused_with_the_reason() {
        let cases = [
            ("max_attempts", "must be at least 1", "max_attempts=0"),
            ("max_attempts", "whole number", "max_attempts=many"),
            ("retries", "write max_attempts=N", "retries=3"),
            ("max_in_flight", "whole number", "max_in_flight=-1"),
            ("retry_delay", "e.g. `500ms`", "retry_delay=90"),
            ("command", "array of strings", r#"command=["sh", 1]"#),
            ("command", "at least a program", "command=   "),
            ("command", "at least a program", "command=[]"),
            ("env", "name after the dot", "env.=x"),
            ("no =", "expected KEY=VALUE", "max_attempts"),
        ];
        for (what, expected, arg) in cases {
            let message = parse(&[arg]).unwrap_err().to_string();
            assert!(message.contains(expected), "{what}: {message}");
        }
        let message = parse(&["max_attempts=2", "max_attempts=3"])
            .unwrap_err()
            .to_string();
        assert!(message.contains("given twice"), "{message}");
        let message = parse(&[]).unwrap_err().to_string();
        assert!(message.contains("nothing to change"), "{message}");
    }
}
