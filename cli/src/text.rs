//! Human-readable renderings of pipeline status, the master, its workers
//! and snapshots, as `tmctl` prints them. Every rendering returns text
//! ending in a newline (or nothing), so callers print it with `print!`;
//! the small formatters ([`human_bytes`], [`utc_time`], [`count`]) return
//! a fragment of a line.

use std::borrow::Cow;
use std::fmt::Write as _;

use taskmaster_proto::v1::{GroupSpec, MasterStatus, PipelineSpec, SnapshotInfo, WorkerInfo};

use crate::view::{FailedUnitView, PipelineView, SliceView, StatusView};

/// `text` safe to print to a terminal: control characters other than
/// newline and tab (escape sequences, carriage returns, NULs, backspaces)
/// and the Unicode controls that reorder text (bidi overrides) are shown
/// escaped (`\u{1b}`), so what a task or a client wrote into an error
/// text, a parameter or a note cannot move the cursor, recolour or hide
/// what the operator reads. Unchanged text is borrowed.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    let hostile = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(hostile) {
        return Cow::Borrowed(text);
    }
    let mut safe = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if hostile(c) {
            safe.extend(c.escape_default());
        } else {
            safe.push(c);
        }
    }
    Cow::Owned(safe)
}

/// A table of pipelines: id, name, state, units committed/total. A
/// pipeline whose leasing is blocked has `(blocked)` after its state.
pub fn pipelines_table(pipelines: &[StatusView]) -> String {
    let mut rows = vec![vec![
        "ID".to_string(),
        "NAME".into(),
        "STATE".into(),
        "UNITS".into(),
    ]];
    for status in pipelines {
        let pipeline = &status.pipeline;
        let (committed, total) = pipeline.units_committed_total();
        rows.push(vec![
            pipeline.id.clone(),
            pipeline.name.clone(),
            if status.blocked {
                format!("{} (blocked)", pipeline.state)
            } else {
                pipeline.state.to_string()
            },
            format!("{committed}/{total}"),
        ]);
    }
    table(&rows)
}

/// One pipeline in full: name, state (and whether it is blocked, and what
/// it re-runs), params, a row per group, and the failed units (see
/// [`failed_units`]).
pub fn pipeline_detail(status: &StatusView) -> String {
    let pipeline = &status.pipeline;
    let params = pipeline
        .params
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = String::new();
    let _ = writeln!(out, "pipeline  {}", pipeline.id);
    let _ = writeln!(out, "name      {}", pipeline.name);
    match status.finished_unix_ms {
        Some(ms) => {
            let _ = writeln!(
                out,
                "state     {} (finished {})",
                pipeline.state,
                utc_time(ms)
            );
        }
        None => {
            let _ = writeln!(out, "state     {}", pipeline.state);
        }
    }
    if status.blocked {
        let _ = writeln!(
            out,
            "blocked   yes: no leases for this pipeline until `tmctl unblock --pipeline {}`",
            pipeline.id
        );
    }
    if let Some(original) = &status.rerun_of {
        let _ = writeln!(out, "rerun of  {original}");
    }
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
        out.push_str(&failed_units(&pipeline.failed_units, Some(&pipeline.id)));
    }
    out
}

/// Each failed unit: `group/unit` and its attempts in all, what it read,
/// and its kept errors labelled by attempt, the worker that ran it and
/// for how long, the earlier ones on one line each and the last in full;
/// then, given the pipeline's id, the command that shows the last
/// attempt's logs:
///
/// ```text
///   extract/4: failed after 3 attempts
///     inputs: /data/a.csv, /data/b.csv (2 in all)
///     attempt 2 (worker w-1, 2.3 s): `sh` failed with exit status: 3; stderr tail: … bad row
///     attempt 3 (worker w-2, 1 min 5 s): `sh` failed with exit status: 3; stderr tail:
///       bad row
///     logs: tmctl logs p-1 --group extract --unit 4 --attempt 3
/// ```
///
/// The worker or duration of an error an older master kept is `unknown`.
pub fn failed_units(units: &[FailedUnitView], logs_of: Option<&str>) -> String {
    let mut out = String::new();
    for unit in units {
        let _ = writeln!(
            out,
            "  {}/{}: failed after {}",
            unit.group,
            unit.unit,
            count(unit.attempts.into(), "attempt")
        );
        let _ = writeln!(out, "    inputs: {}", inputs_line(unit));
        let Some((last, earlier)) = unit.errors.split_last() else {
            out.push_str("    (no error text)\n");
            continue;
        };
        let number = |i: usize| unit.error_attempts.get(i).copied().filter(|&n| n > 0);
        let attempt = |i: usize| {
            let n = number(i).map_or_else(|| "?".to_string(), |n| n.to_string());
            let worker = match unit.error_workers.get(i) {
                Some(Some(worker)) => worker.as_str(),
                _ => "unknown",
            };
            let took = match unit.error_durations_ms.get(i) {
                Some(&Some(ms)) => human_duration(ms),
                _ => "duration unknown".to_string(),
            };
            format!("attempt {n} (worker {worker}, {took})")
        };
        for (i, error) in earlier.iter().enumerate() {
            let _ = writeln!(out, "    {}: {}", attempt(i), one_line(error));
        }
        let last_text = last.trim_end().replace('\n', "\n      ");
        let _ = writeln!(out, "    {}: {last_text}", attempt(earlier.len()));
        if let Some(id) = logs_of {
            let which =
                number(earlier.len()).map_or_else(String::new, |n| format!(" --attempt {n}"));
            let _ = writeln!(
                out,
                "    logs: tmctl logs {id} --group {} --unit {}{which}",
                unit.group, unit.unit
            );
        }
    }
    out
}

/// How long something ran, to a useful precision: `850 ms`, `2.3 s`,
/// `4 min 5 s`, `2 h 3 min`.
pub fn human_duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {} s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{} h {} min", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// A failed unit's first inputs and how many it reads in all.
fn inputs_line(unit: &FailedUnitView) -> String {
    let slice = |s: &SliceView| format!("{} (bytes {} to {})", s.path, s.start, s.end);
    let shown: Vec<String> = unit
        .inputs
        .iter()
        .cloned()
        .chain(unit.input_slices.iter().map(slice))
        .collect();
    if shown.is_empty() {
        return "none".to_string();
    }
    let total = match unit.inputs_total {
        Some(total) if total > shown.len() as u64 => {
            format!(" and {} more", total - shown.len() as u64)
        }
        Some(_) => String::new(),
        None => " and more (too many upstream units to count)".to_string(),
    };
    format!("{}{total}", shown.join(", "))
}

/// An error text on one line: its first line and, when it has more, its
/// last (an exec task's error is its exit status, then the tail of its
/// stderr, whose last line usually says what went wrong).
fn one_line(error: &str) -> String {
    let mut lines = error.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("(no error text)");
    match lines.next_back() {
        Some(last) => format!("{first} … {last}"),
        None => first.to_string(),
    }
}

/// What a pipeline starts with, for `tmctl submit`: its groups and the
/// units of each first group, e.g. `3 groups, 67 units in extract`. The
/// other groups' units come from their upstream groups' outputs.
pub fn submit_summary(spec: &PipelineSpec) -> String {
    let first: Vec<String> = spec
        .groups
        .iter()
        .filter(|group| group.after.is_empty())
        .map(|group| format!("{} in {}", count(first_units(group), "unit"), group.name))
        .collect();
    let mut line = count(spec.groups.len() as u64, "group");
    if !first.is_empty() {
        line.push_str(", ");
        line.push_str(&first.join(", "));
    }
    line.push('\n');
    line
}

/// The units a first group starts with, as the master makes them: one per
/// sized input unit, or per input path, or one reading nothing.
fn first_units(group: &GroupSpec) -> u64 {
    match (group.input_units.len(), group.inputs.len()) {
        (0, 0) => 1,
        (0, paths) => paths as u64,
        (units, _) => units as u64,
    }
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

/// One line on the master itself: blocked or not, leases in flight (and
/// the limit), the journal's size and records since the last snapshot,
/// and the snapshots kept on disk.
pub fn master_line(master: &MasterStatus) -> String {
    let blocked = if master.blocked {
        "BLOCKED (no pipeline gets leases until `tmctl unblock`)"
    } else {
        "not blocked"
    };
    let in_flight = if master.max_in_flight > 0 {
        format!("{}/{}", master.leases_in_flight, master.max_in_flight)
    } else {
        master.leases_in_flight.to_string()
    };
    format!(
        "master: {blocked}, {in_flight} {} in flight, journal {} ({} since the last snapshot), {} ({})\n",
        plural(master.leases_in_flight, "lease"),
        human_bytes(master.journal_bytes),
        count(master.journal_records, "record"),
        count(master.snapshots, "snapshot"),
        human_bytes(master.snapshot_bytes),
    )
}

/// The note the one-pipeline view ends with while the whole master is
/// blocked (the pipeline's own `blocked` does not show that).
pub fn master_blocked_note() -> String {
    "master    BLOCKED: no pipeline gets leases until `tmctl unblock`\n".to_string()
}

/// A table of workers: id, whether it is alive (it called within the
/// master's liveness window), its slots (`?` when it did not say: a worker
/// built before it would), the units it runs now (leases held), when it
/// last called, and its leases as `pipeline/group/unit#lease`.
pub fn workers_table(workers: &[WorkerInfo]) -> String {
    let mut rows = vec![
        ["WORKER", "ALIVE", "SLOTS", "BUSY", "SEEN", "LEASES"]
            .map(String::from)
            .to_vec(),
    ];
    for worker in workers {
        let leases: Vec<String> = worker
            .leases
            .iter()
            .map(|lease| {
                let unit = lease.unit.clone().unwrap_or_default();
                format!(
                    "{}/{}/{}#{}",
                    unit.pipeline_id, unit.group, unit.unit, lease.lease_id
                )
            })
            .collect();
        rows.push(vec![
            worker.worker_id.clone(),
            if worker.alive { "yes" } else { "no" }.to_string(),
            match worker.worker_slots {
                0 => "?".to_string(),
                slots => slots.to_string(),
            },
            worker.leases_held.to_string(),
            ago(worker.last_seen_ms_ago),
            if leases.is_empty() {
                "-".to_string()
            } else if worker.leases_held > leases.len() as u64 {
                format!(
                    "{} (+{} more)",
                    leases.join(","),
                    worker.leases_held - leases.len() as u64
                )
            } else {
                leases.join(",")
            },
        ]);
    }
    table(&rows)
}

/// A table of snapshots, oldest first: id, when taken (UTC), the journal
/// position it stands for, its size and its note.
pub fn snapshots_table(snapshots: &[SnapshotInfo]) -> String {
    let mut rows = vec![
        ["ID", "TAKEN", "POSITION", "SIZE", "NOTE"]
            .map(String::from)
            .to_vec(),
    ];
    for snapshot in snapshots {
        rows.push(vec![
            snapshot.snapshot_id.clone(),
            utc_time(snapshot.taken_unix_ms),
            snapshot.journal_position.to_string(),
            human_bytes(snapshot.size_bytes),
            snapshot.note.clone(),
        ]);
    }
    table(&rows)
}

/// Bytes in the largest binary unit that keeps the number at least 1:
/// `512 B`, `1.5 KiB`, `12.0 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn utc_time(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 >= 0.
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// `n` and the noun, plural unless `n` is 1: `1 unit`, `3 units`.
pub fn count(n: u64, noun: &str) -> String {
    format!("{n} {}", plural(n, noun))
}

fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        noun.to_string()
    } else {
        format!("{noun}s")
    }
}

/// A duration in the past, coarsely: `250ms ago`, `12s ago`, `3m ago`.
fn ago(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms ago"),
        1_000..120_000 => format!("{}s ago", ms / 1000),
        _ => format!("{}m ago", ms / 60_000),
    }
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
                error_attempts: vec![2, 3],
                error_workers: vec![Some("w-1".into()), Some("w-2".into())],
                error_durations_ms: vec![Some(2_345), Some(65_000)],
                inputs: vec!["/in/a.csv".into()],
                inputs_total: Some(1),
                ..FailedUnitView::default()
            }],
            retries: 2,
        }
    }

    fn status() -> StatusView {
        StatusView {
            pipeline: view(),
            ..StatusView::default()
        }
    }

    #[test]
    fn table_lists_units_committed_over_total() {
        let text = pipelines_table(&[status()]);
        assert_eq!(
            text,
            "ID   NAME     STATE    UNITS\np-1  example  running  3/7\n"
        );
    }

    #[test]
    fn detail_shows_params_counts_and_last_error() {
        let text = pipeline_detail(&status());
        assert!(text.contains("params    ds=2026-11-21"), "{text}");
        assert!(
            text.contains("extract  2        1        2       3          1       7      no"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "failed units:\n  \
                 extract/4: failed after 3 attempts\n    \
                 inputs: /in/a.csv\n    \
                 attempt 2 (worker w-1, 2.3 s): first\n    \
                 attempt 3 (worker w-2, 1 min 5 s): boom\n      trace\n    \
                 logs: tmctl logs p-1 --group extract --unit 4 --attempt 3\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn failed_units_say_attempt_counts_and_inputs_consistently() {
        let one = FailedUnitView {
            group: "g".into(),
            unit: 0,
            attempts: 1,
            errors: vec!["`sh` failed with exit status: 3; stderr tail:\nline 1\nbad row\n".into()],
            error_attempts: vec![1],
            error_workers: vec![Some("host-1-ab12".into())],
            error_durations_ms: vec![Some(850)],
            inputs: (0..5).map(|i| format!("/in/{i}")).collect(),
            inputs_total: Some(200),
            ..FailedUnitView::default()
        };
        let text = failed_units(std::slice::from_ref(&one), None);
        assert_eq!(
            text,
            "  g/0: failed after 1 attempt\n    \
             inputs: /in/0, /in/1, /in/2, /in/3, /in/4 and 195 more\n    \
             attempt 1 (worker host-1-ab12, 850 ms): `sh` failed with exit status: 3; stderr tail:\n      line 1\n      bad row\n"
        );
        // After a retry: attempts count them all, errors say which they were,
        // earlier ones on one line; an older master's errors have no number,
        // worker or duration (or the worker only, for a lease it granted
        // before it kept grant times).
        let retried = FailedUnitView {
            attempts: 4,
            errors: vec![one.errors[0].clone(), "exit 9".into()],
            error_attempts: vec![0, 4],
            error_workers: vec![None, Some("w-9".into())],
            error_durations_ms: vec![None, None],
            inputs: Vec::new(),
            input_slices: vec![SliceView {
                path: "/in/big".into(),
                start: 0,
                end: 64,
            }],
            inputs_total: None,
            ..one
        };
        let text = failed_units(std::slice::from_ref(&retried), Some("p-1"));
        assert_eq!(
            text,
            "  g/0: failed after 4 attempts\n    \
             inputs: /in/big (bytes 0 to 64) and more (too many upstream units to count)\n    \
             attempt ? (worker unknown, duration unknown): `sh` failed with exit status: 3; stderr tail: … bad row\n    \
             attempt 4 (worker w-9, duration unknown): exit 9\n    \
             logs: tmctl logs p-1 --group g --unit 0 --attempt 4\n"
        );
        // Errors of a reply with no workers at all (an older master).
        let older = FailedUnitView {
            error_workers: Vec::new(),
            error_durations_ms: Vec::new(),
            ..retried
        };
        assert!(
            failed_units(&[older], None)
                .contains("attempt 4 (worker unknown, duration unknown): exit 9\n"),
        );
    }

    #[test]
    fn durations_are_shown_to_a_useful_precision() {
        let cases = [
            (0, "0 ms"),
            (999, "999 ms"),
            (1_000, "1.0 s"),
            (2_345, "2.3 s"),
            (65_000, "1 min 5 s"),
            (3_599_999, "59 min 59 s"),
            (7_380_000, "2 h 3 min"),
        ];
        for (ms, text) in cases {
            assert_eq!(human_duration(ms), text);
        }
    }

    #[test]
    fn blocked_pipeline_and_rerun_are_shown() {
        let mut pipeline = status();
        pipeline.blocked = true;
        pipeline.rerun_of = Some("p-0".into());
        assert_eq!(
            pipelines_table(std::slice::from_ref(&pipeline)),
            "ID   NAME     STATE              UNITS\np-1  example  running (blocked)  3/7\n"
        );
        let text = pipeline_detail(&pipeline);
        assert!(
            text.contains(
                "blocked   yes: no leases for this pipeline until `tmctl unblock --pipeline p-1`\n"
            ),
            "{text}"
        );
        assert!(text.contains("rerun of  p-0\n"), "{text}");
        let plain = pipeline_detail(&status());
        assert!(
            !plain.contains("blocked") && !plain.contains("rerun") && !plain.contains("finished"),
            "{plain}"
        );
        pipeline.finished_unix_ms = Some(951_782_400_000);
        let text = pipeline_detail(&pipeline);
        assert!(text.contains("(finished 2000-02-29T00:00:00Z)\n"), "{text}");
    }

    #[test]
    fn master_line_says_blocked_leases_journal_and_snapshots() {
        let mut master = MasterStatus {
            blocked: false,
            leases_in_flight: 1,
            journal_bytes: 1536,
            journal_records: 14,
            snapshots: 2,
            snapshot_bytes: 500,
            ..MasterStatus::default()
        };
        assert_eq!(
            master_line(&master),
            "master: not blocked, 1 lease in flight, journal 1.5 KiB (14 records since the last \
             snapshot), 2 snapshots (500 B)\n"
        );
        master.blocked = true;
        master.max_in_flight = 8;
        master.leases_in_flight = 3;
        master.journal_records = 1;
        master.snapshots = 1;
        let line = master_line(&master);
        assert!(
            line.starts_with("master: BLOCKED (no pipeline gets leases until `tmctl unblock`), 3/8 leases in flight,"),
            "{line}"
        );
        assert!(
            line.contains("(1 record since") && line.contains(", 1 snapshot ("),
            "{line}"
        );
    }

    #[test]
    fn terminal_safe_escapes_what_could_drive_a_terminal() {
        assert!(matches!(terminal_safe("plain\ttext\n"), Cow::Borrowed(_)));
        assert_eq!(
            terminal_safe("red \u{1b}[31mX\r\0 \u{202e}abc\n"),
            "red \\u{1b}[31mX\\r\\u{0} \\u{202e}abc\n"
        );
    }

    #[test]
    fn workers_table_lists_slots_and_leases() {
        use taskmaster_proto::v1::{LeaseRef, UnitRef};
        let lease = |unit, lease_id| LeaseRef {
            unit: Some(UnitRef {
                pipeline_id: "p-1".into(),
                group: "map".into(),
                unit,
            }),
            lease_id,
            config_version: 1,
            incarnation: 0,
        };
        let workers = [
            WorkerInfo {
                worker_id: "host-12-ab".into(),
                slots: 2,
                leases: vec![lease(0, 7), lease(3, 9)],
                last_seen_ms_ago: 1500,
                leases_held: 2,
                worker_slots: 4,
                alive: true,
            },
            WorkerInfo {
                worker_id: "idle".into(),
                slots: 2,
                leases: Vec::new(),
                last_seen_ms_ago: 20,
                leases_held: 0,
                worker_slots: 0,
                alive: true,
            },
            WorkerInfo {
                worker_id: "killed".into(),
                slots: 8,
                leases: vec![lease(5, 11)],
                last_seen_ms_ago: 150_000,
                leases_held: 1,
                worker_slots: 8,
                alive: false,
            },
        ];
        // SLOTS is what the worker runs at once, not what it last asked for.
        assert_eq!(
            workers_table(&workers),
            "WORKER      ALIVE  SLOTS  BUSY  SEEN      LEASES\n\
             host-12-ab  yes    4      2     1s ago    p-1/map/0#7,p-1/map/3#9\n\
             idle        yes    ?      0     20ms ago  -\n\
             killed      no     8      1     2m ago    p-1/map/5#11\n"
        );
    }

    #[test]
    fn snapshots_table_has_time_position_size_and_note() {
        let snapshots = [SnapshotInfo {
            snapshot_id: "snap-000001".into(),
            note: "before the backfill".into(),
            taken_unix_ms: 1_795_255_200_000,
            journal_position: 42,
            size_bytes: 2048,
        }];
        assert_eq!(
            snapshots_table(&snapshots),
            "ID           TAKEN                 POSITION  SIZE     NOTE\n\
             snap-000001  2026-11-21T10:00:00Z  42        2.0 KiB  before the backfill\n"
        );
    }

    #[test]
    fn times_and_sizes() {
        assert_eq!(utc_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_time(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc_time(1_709_251_199_999), "2024-02-29T23:59:59Z");
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 + 512 * 1024), "5.5 MiB");
        assert_eq!(count(1, "unit"), "1 unit");
        assert_eq!(count(0, "unit"), "0 units");
    }

    #[test]
    fn submit_summary_counts_groups_and_first_units() {
        use taskmaster_proto::v1::InputUnit;
        let group = |name: &str, units: usize, after: &[&str]| GroupSpec {
            name: name.into(),
            input_units: vec![InputUnit::default(); units],
            after: after.iter().map(|a| a.to_string()).collect(),
            ..GroupSpec::default()
        };
        let spec = PipelineSpec {
            groups: vec![
                group("extract", 200, &[]),
                group("lookup", 1, &[]),
                group("aggregate", 0, &["extract"]),
                group("setup", 0, &[]),
            ],
            ..PipelineSpec::default()
        };
        assert_eq!(
            submit_summary(&spec),
            "4 groups, 200 units in extract, 1 unit in lookup, 1 unit in setup\n"
        );
    }

    #[test]
    fn progress_line_has_state_and_group_counts() {
        assert_eq!(progress_line(&view()), "running  extract 3/7\n");
    }
}
