//! Human-readable renderings of pipeline status, as `tmctl` prints them.
//! Every function returns text ending in a newline (or nothing), so callers
//! print it with `print!`.

use std::fmt::Write as _;

use crate::view::{FailedUnitView, PipelineView};

/// A table of pipelines: id, name, state, units committed/total.
pub fn pipelines_table(pipelines: &[PipelineView]) -> String {
    let mut rows = vec![vec![
        "ID".to_string(),
        "NAME".into(),
        "STATE".into(),
        "UNITS".into(),
    ]];
    for pipeline in pipelines {
        let (committed, total) = pipeline.units_committed_total();
        rows.push(vec![
            pipeline.id.clone(),
            pipeline.name.clone(),
            pipeline.state.to_string(),
            format!("{committed}/{total}"),
        ]);
    }
    table(&rows)
}

/// One pipeline in full: name, state, params, a row per group, and the
/// failed units with their attempts and last error.
pub fn pipeline_detail(pipeline: &PipelineView) -> String {
    let params = pipeline
        .params
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = String::new();
    let _ = writeln!(out, "pipeline  {}", pipeline.id);
    let _ = writeln!(out, "name      {}", pipeline.name);
    let _ = writeln!(out, "state     {}", pipeline.state);
    let _ = writeln!(out, "params    {params}");
    let _ = writeln!(out, "retries   {}", pipeline.retries);
    out.push('\n');
    let mut rows = vec![
        [
            "GROUP",
            "VERSION",
            "PENDING",
            "LEASED",
            "COMMITTED",
            "FAILED",
            "TOTAL",
            "COMPLETE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for group in &pipeline.groups {
        rows.push(vec![
            group.name.clone(),
            group.config_version.to_string(),
            group.pending.to_string(),
            group.leased.to_string(),
            group.committed.to_string(),
            group.failed.to_string(),
            group.total.to_string(),
            if group.complete { "yes" } else { "no" }.to_string(),
        ]);
    }
    out.push_str(&table(&rows));
    if !pipeline.failed_units.is_empty() {
        out.push_str("\nfailed units:\n");
        out.push_str(&failed_units(&pipeline.failed_units));
    }
    out
}

/// One line per failed unit: `group/unit`, attempts, last error. A
/// multi-line error keeps its lines, indented under the unit.
pub fn failed_units(units: &[FailedUnitView]) -> String {
    let mut out = String::new();
    for unit in units {
        let last_error = unit
            .errors
            .last()
            .map_or("(no error text)", |e| e.trim_end());
        let last_error = last_error.replace('\n', "\n      ");
        let _ = writeln!(
            out,
            "  {}/{}: {} attempts, last error: {last_error}",
            unit.group, unit.unit, unit.attempts
        );
    }
    out
}

/// A one-line summary for progress reports while waiting, e.g.
/// `running  extract 3/10  aggregate 0/0`. Changes exactly when the state
/// or a group's committed/total changes, so callers print it on change.
pub fn progress_line(pipeline: &PipelineView) -> String {
    let mut line = pipeline.state.to_string();
    for group in &pipeline.groups {
        let _ = write!(line, "  {} {}/{}", group.name, group.committed, group.total);
    }
    line.push('\n');
    line
}

/// Left-aligned columns separated by two spaces; the first row is the
/// header. Trailing spaces are trimmed so the output diffs cleanly.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::GroupView;

    fn view() -> PipelineView {
        PipelineView {
            id: "p-1".into(),
            name: "example".into(),
            state: "running",
            params: [("ds".to_string(), "2026-11-21".to_string())].into(),
            groups: vec![GroupView {
                name: "extract".into(),
                config_version: 2,
                complete: false,
                pending: 1,
                leased: 2,
                committed: 3,
                failed: 1,
                total: 7,
            }],
            failed_units: vec![FailedUnitView {
                group: "extract".into(),
                unit: 4,
                attempts: 3,
                errors: vec!["first".into(), "boom\ntrace".into()],
            }],
            retries: 2,
        }
    }

    #[test]
    fn table_lists_units_committed_over_total() {
        let text = pipelines_table(&[view()]);
        assert_eq!(
            text,
            "ID   NAME     STATE    UNITS\np-1  example  running  3/7\n"
        );
    }

    #[test]
    fn detail_shows_params_counts_and_last_error() {
        let text = pipeline_detail(&view());
        assert!(text.contains("params    ds=2026-11-21"), "{text}");
        assert!(
            text.contains("extract  2        1        2       3          1       7      no"),
            "{text}"
        );
        assert!(
            text.contains("extract/4: 3 attempts, last error: boom\n      trace"),
            "{text}"
        );
    }

    #[test]
    fn progress_line_has_state_and_group_counts() {
        assert_eq!(progress_line(&view()), "running  extract 3/7\n");
    }
}
