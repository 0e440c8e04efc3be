//! A pipeline file's `[schedule]` table: the pipeline runs once per logical
//! time of a cron expression, fired by the master (`tmctl schedule add`).
//!
//! ```toml
//! [schedule]
//! cron = "30 2 * * *"              # 5 fields, or 6 with seconds first
//! timezone = "America/New_York"    # IANA name; default UTC
//! catchup = "all"                  # all | latest | none
//! overlap = "skip"                 # skip | queue | allow
//! max_active = 1                   # runs of this schedule at once
//! jitter = "0s"                    # a stable per-schedule offset within this window
//! ```
//!
//! The settings are checked here with the master's own rules, so a mistake
//! is reported with the line it is on.

use std::path::Path;

use serde::Deserialize;
use taskmaster_proto::v1::{PipelineSpec, ScheduleSpec};
use taskmaster_spec::schedule_rules::Rules;
use toml::Spanned;

use super::{PipelineFileError, parse_duration_ms};

/// The `[schedule]` table, exactly as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScheduleToml {
    /// The schedule's name; default: the pipeline's.
    name: Option<String>,
    cron: Spanned<String>,
    timezone: Option<Spanned<String>>,
    catchup: Option<Spanned<String>>,
    overlap: Option<Spanned<String>>,
    max_active: Option<Spanned<u32>>,
    jitter: Option<Spanned<String>>,
    /// A URL posted a JSON notice when a run fails (or succeeds, with
    /// `notify_success`, or misses its `sla`).
    webhook: Option<String>,
    #[serde(default)]
    notify_success: bool,
    sla: Option<Spanned<String>>,
    /// Groups whose committed outputs each succeeded run publishes.
    #[serde(default)]
    publish: Vec<String>,
}

/// The schedule a file's `[schedule]` table and pipeline describe.
pub(super) fn schedule_spec(
    path: &Path,
    text: &str,
    table: ScheduleToml,
    pipeline: PipelineSpec,
) -> Result<ScheduleSpec, PipelineFileError> {
    let at_line = |span: std::ops::Range<usize>, message: String| PipelineFileError::Invalid {
        path: path.to_path_buf(),
        message: format!("line {}: [schedule] {message}", line_of(text, span.start)),
    };
    let duration = |value: &Option<Spanned<String>>, key: &str| -> Result<u64, PipelineFileError> {
        match value {
            None => Ok(0),
            Some(v) => parse_duration_ms(v.get_ref())
                .map_err(|e| at_line(v.span(), format!("`{key}`: {e}"))),
        }
    };
    let text_of = |v: &Option<Spanned<String>>| v.as_ref().map(|v| v.get_ref().clone());
    let spec = ScheduleSpec {
        name: table.name.clone().unwrap_or_else(|| pipeline.name.clone()),
        cron: table.cron.get_ref().clone(),
        timezone: text_of(&table.timezone).unwrap_or_default(),
        catchup: text_of(&table.catchup).unwrap_or_default(),
        overlap: text_of(&table.overlap).unwrap_or_default(),
        max_active: table.max_active.as_ref().map_or(0, |v| *v.get_ref()),
        jitter_ms: duration(&table.jitter, "jitter")?,
        webhook: table.webhook.clone().unwrap_or_default(),
        notify_success: table.notify_success,
        sla_ms: duration(&table.sla, "sla")?,
        publish: table.publish.clone(),
        pipeline: Some(pipeline),
    };
    if let Err(message) = Rules::parse(&spec) {
        // The master's message names the setting; point at its line.
        let span = if message.starts_with("time zone") {
            table.timezone.as_ref().map(Spanned::span)
        } else if message.starts_with("catchup") {
            table.catchup.as_ref().map(Spanned::span)
        } else if message.starts_with("overlap") {
            table.overlap.as_ref().map(Spanned::span)
        } else if message.starts_with("max_active") {
            table.max_active.as_ref().map(Spanned::span)
        } else if message.starts_with("jitter") {
            table.jitter.as_ref().map(Spanned::span)
        } else {
            None
        };
        return Err(at_line(span.unwrap_or(table.cron.span()), message));
    }
    Ok(spec)
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline_file::load_schedule;

    fn file(dir: &Path, schedule: &str) -> std::path::PathBuf {
        std::fs::write(dir.join("in.txt"), "x").unwrap();
        let path = dir.join("p.toml");
        let text = format!(
            "name = \"nightly\"\n[params]\nregion = \"eu\"\n[schedule]\n{schedule}\n[[groups]]\nname = \"a\"\ncommand = [\"true\"]\ninputs = [\"in.txt\"]\n"
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_schedule_table_becomes_a_schedule_of_the_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(
            dir.path(),
            "cron = \"30 2 * * *\"\ntimezone = \"America/New_York\"\ncatchup = \"latest\"\noverlap = \"queue\"\nmax_active = 2\njitter = \"90s\"",
        );
        let spec = load_schedule(&path, &[("region".into(), "us".into())]).unwrap();
        assert_eq!(spec.name, "nightly");
        assert_eq!(spec.cron, "30 2 * * *");
        assert_eq!(spec.timezone, "America/New_York");
        assert_eq!(
            (spec.catchup.as_str(), spec.overlap.as_str()),
            ("latest", "queue")
        );
        assert_eq!((spec.max_active, spec.jitter_ms), (2, 90_000));
        let pipeline = spec.pipeline.unwrap();
        assert_eq!(pipeline.params["region"], "us");
        assert_eq!(pipeline.groups.len(), 1);
    }

    #[test]
    fn mistakes_name_the_setting_and_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (
                "cron = \"61 * * * *\"",
                "line 5: [schedule] cron expression",
            ),
            (
                "cron = \"0 * * * *\"\ntimezone = \"Mars/Base\"",
                "line 6: [schedule] time zone",
            ),
            (
                "cron = \"0 * * * *\"\ncatchup = \"some\"",
                "line 6: [schedule] catchup",
            ),
            (
                "cron = \"0 * * * *\"\njitter = \"soon\"",
                "line 6: [schedule] `jitter`",
            ),
            (
                "cron = \"0 * * * *\"\nevery = \"day\"",
                "unknown field `every`",
            ),
        ];
        for (table, says) in cases {
            let err = load_schedule(&file(dir.path(), table), &[])
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{err:?} should say {says:?}");
        }
        let path = dir.path().join("plain.toml");
        std::fs::write(
            &path,
            "name = \"x\"\n[[groups]]\nname = \"a\"\ncommand = [\"true\"]\ninputs = [\"in.txt\"]\n",
        )
        .unwrap();
        let err = load_schedule(&path, &[]).unwrap_err().to_string();
        assert!(err.contains("no [schedule] table"), "{err}");
    }
}
