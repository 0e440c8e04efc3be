//! The invariants checked after a fault run, from the master's state (read
//! with `tmctl status --json` and `tmctl outputs`), the output files, the
//! exec log and the workers' logs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use taskmaster_proto::compact::parse_attempt_dir_name;

use super::workload::{Batch, GROUPS, Workload, read_exec_log};
use crate::tmctl_ok;

/// A unit: pipeline id, group, unit index.
pub type UnitKey = (String, String, u32);

/// What the harness saw acknowledged during the run.
#[derive(Debug, Default, Clone)]
pub struct Acked {
    /// Pipeline ids `tmctl submit` printed.
    pub submissions: BTreeSet<String>,
    /// Committed lease per unit, as read from the master during the run.
    pub commits: BTreeMap<UnitKey, u64>,
}

/// What the final check found.
#[derive(Debug, Default, Clone)]
pub struct Verified {
    pub pipelines: usize,
    pub units: u64,
    pub executions: u64,
    /// Units with more than one committed output set, or none.
    pub duplicated: u64,
    pub lost: u64,
    /// Committed leases older than a later attempt of the same unit.
    pub stale_commits: u64,
    /// Attempt directories in the store that were never committed.
    pub uncommitted_attempt_dirs: u64,
    /// Commits the workers logged as acknowledged, all checked.
    pub worker_acked_commits: u64,
    pub worker_refused_commits: u64,
    pub worker_lost_leases: u64,
    pub worker_abandoned_commits: u64,
    pub violations: Vec<String>,
}

impl Verified {
    fn violation(&mut self, text: String) {
        if self.violations.len() < 200 {
            self.violations.push(text);
        }
    }
}

/// Checks every pipeline the master at `url` knows.
pub fn verify(
    url: &str,
    store: &Path,
    workload: &Workload,
    acked: &Acked,
    worker_logs: &[PathBuf],
) -> Verified {
    let mut v = Verified::default();
    let statuses: Value =
        serde_json::from_str(&tmctl_ok(url, &["status", "--json"])).expect("status JSON");
    let statuses = statuses.as_array().cloned().unwrap_or_default();
    v.pipelines = statuses.len();
    let mut committed: BTreeMap<UnitKey, u64> = BTreeMap::new();
    for status in &statuses {
        check_pipeline(url, store, workload, status, &mut committed, &mut v);
    }
    let ids: BTreeSet<&str> = statuses.iter().filter_map(|s| s["id"].as_str()).collect();
    for id in &acked.submissions {
        if !ids.contains(id.as_str()) {
            v.violation(format!("acknowledged submission {id} is gone"));
        }
    }
    for (key, lease) in &acked.commits {
        match committed.get(key) {
            Some(now) if now == lease => {}
            now => v.violation(format!(
                "commit of {key:?} by lease {lease} was seen acknowledged, now {now:?}"
            )),
        }
    }
    check_executions(workload, &committed, &mut v);
    check_worker_logs(worker_logs, &committed, &mut v);
    v.uncommitted_attempt_dirs = count_uncommitted(store, &committed);
    v
}

/// One pipeline: finished, one output set per unit, each written by its
/// committing attempt, and the right values all the way to the sum.
fn check_pipeline(
    url: &str,
    store: &Path,
    workload: &Workload,
    status: &Value,
    committed: &mut BTreeMap<UnitKey, u64>,
    v: &mut Verified,
) {
    let id = status["id"].as_str().unwrap_or_default().to_string();
    if status["state"] != "succeeded" {
        v.violation(format!(
            "pipeline {id} is {}: {}",
            status["state"], status["failed_units"]
        ));
    }
    let batch = status["params"]["batch"]
        .as_str()
        .and_then(|b| b.parse::<u32>().ok())
        .and_then(|b| workload.batches.get(&b));
    let Some(batch) = batch else {
        v.violation(format!("pipeline {id} has no known batch: {status}"));
        return;
    };
    let n = batch.gen_values.len() as u64;
    let mut lines: BTreeMap<&str, BTreeMap<u32, (String, Vec<String>)>> = BTreeMap::new();
    for (g, group) in GROUPS.iter().enumerate() {
        let expected_total = if *group == "sum" { 1 } else { n };
        let counts = &status["groups"][g];
        if counts["total"] != expected_total || counts["committed"] != expected_total {
            v.violation(format!(
                "pipeline {id} group {group}: {counts}, expected {expected_total} committed"
            ));
        }
        v.units += expected_total;
        let outputs = tmctl_ok(url, &["outputs", &id, "--group", group]);
        let units = read_outputs(store, &id, group, &outputs, committed, v);
        for unit in 0..expected_total as u32 {
            if !units.contains_key(&unit) {
                v.lost += 1;
                v.violation(format!("{id} {group} unit {unit} has no committed output"));
            }
        }
        lines.insert(group, units);
    }
    check_values(&id, batch, &lines, v);
}

/// Reads the committed outputs listed by `tmctl outputs`: unit -> (path,
/// fields of its file after the lease id). Checks each file names the
/// committing lease.
fn read_outputs(
    store: &Path,
    id: &str,
    group: &str,
    listed: &str,
    committed: &mut BTreeMap<UnitKey, u64>,
    v: &mut Verified,
) -> BTreeMap<u32, (String, Vec<String>)> {
    let mut units = BTreeMap::new();
    for path in listed.lines() {
        let parts: Vec<&str> = Path::new(path)
            .strip_prefix(store)
            .map(|rel| rel.to_str().unwrap_or_default().split('/').collect())
            .unwrap_or_default();
        let parsed = match parts[..] {
            [p, g, unit, lease, "value"] if p == id && g == group => {
                let lease_id = parse_attempt_dir_name(lease).map(|(id, _)| id);
                unit.parse::<u32>().ok().zip(lease_id)
            }
            _ => None,
        };
        let Some((unit, lease)) = parsed else {
            v.violation(format!("{id} {group}: unexpected committed path {path}"));
            continue;
        };
        let key = (id.to_string(), group.to_string(), unit);
        if committed.insert(key, lease).is_some() || units.contains_key(&unit) {
            v.duplicated += 1;
            v.violation(format!(
                "{id} {group} unit {unit} has more than one committed output set"
            ));
        }
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let fields: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        if fields.first().map(String::as_str) != Some(lease.to_string().as_str()) {
            v.violation(format!(
                "{path} was committed by lease {lease} but written by {:?}",
                fields.first()
            ));
            continue;
        }
        units.insert(unit, (path.to_string(), fields[1..].to_vec()));
    }
    units
}

/// gen read each input once and computed f; double read each committed gen
/// output once and doubled it; sum saw every double output and the total.
fn check_values(
    id: &str,
    batch: &Batch,
    lines: &BTreeMap<&str, BTreeMap<u32, (String, Vec<String>)>>,
    v: &mut Verified,
) {
    let empty = BTreeMap::new();
    let group = |name: &str| lines.get(name).unwrap_or(&empty);
    let mut inputs_seen = BTreeSet::new();
    let mut gen_value_by_path = BTreeMap::new();
    for (unit, (path, f)) in group("gen") {
        let expected = f.first().and_then(|input| batch.gen_values.get(input));
        let value = f.get(1).and_then(|x| x.parse::<u64>().ok());
        if expected.is_none() || value != expected.copied() || !inputs_seen.insert(f[0].clone()) {
            v.violation(format!(
                "{id} gen unit {unit}: {f:?} (expected {expected:?}, input once)"
            ));
        }
        gen_value_by_path.insert(path.clone(), value.unwrap_or(0));
    }
    let mut gen_read = BTreeSet::new();
    for (unit, (_, f)) in group("double") {
        let upstream = f.first().and_then(|p| gen_value_by_path.get(p));
        let value = f.get(1).and_then(|x| x.parse::<u64>().ok());
        let once = f.first().is_some_and(|p| gen_read.insert(p.clone()));
        if upstream.is_none() || value != upstream.map(|x| 2 * x) || !once {
            v.violation(format!(
                "{id} double unit {unit} read {:?}, which is not a committed gen output read once, or wrote {value:?}",
                f.first()
            ));
        }
    }
    let n = batch.gen_values.len().to_string();
    let expected = batch.expected_sum.to_string();
    if let Some((_, f)) = group("sum").get(&0)
        && (f.first() != Some(&n) || f.get(1) != Some(&expected))
    {
        v.violation(format!("{id} sum wrote {f:?}, expected [{n}, {expected}]"));
    }
}

/// Every committed lease is the newest attempt of its unit (a zombie's
/// late commit was never accepted) and really ran; counts executions.
fn check_executions(workload: &Workload, committed: &BTreeMap<UnitKey, u64>, v: &mut Verified) {
    let (executions, bad) = read_exec_log(&workload.exec_log);
    if !bad.is_empty() {
        v.violation(format!(
            "exec log has {} unreadable lines, e.g. {:?}",
            bad.len(),
            bad[0]
        ));
    }
    v.executions = executions.len() as u64;
    let mut newest: BTreeMap<UnitKey, u64> = BTreeMap::new();
    let mut ran = BTreeSet::new();
    for e in &executions {
        let key = (e.pipeline.clone(), e.group.clone(), e.unit);
        ran.insert((key.clone(), e.lease));
        let entry = newest.entry(key).or_insert(0);
        *entry = (*entry).max(e.lease);
    }
    for (key, lease) in committed {
        if !ran.contains(&(key.clone(), *lease)) {
            v.violation(format!("{key:?}: committed lease {lease} never ran"));
        }
        if let Some(&newest) = newest.get(key)
            && newest != *lease
        {
            v.stale_commits += 1;
            v.violation(format!(
                "{key:?}: committed lease {lease}, but lease {newest} ran later (a stale commit was accepted)"
            ));
        }
    }
}

/// No process panicked (a panic in a thread that does not end the process
/// would go unseen otherwise).
pub fn check_panics(log_dir: &Path, v: &mut Verified) {
    for entry in std::fs::read_dir(log_dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("panicked")) {
            v.violation(format!("{}: {line}", entry.path().display()));
        }
    }
}

/// Commits the workers were told succeeded must be the committed ones.
fn check_worker_logs(logs: &[PathBuf], committed: &BTreeMap<UnitKey, u64>, v: &mut Verified) {
    for log in logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        for line in text.lines() {
            if line.contains("master refused the commit") {
                v.worker_refused_commits += 1;
            } else if line.contains("lease lost: dropping") {
                v.worker_lost_leases += 1;
            } else if line.contains("gave up committing") {
                v.worker_abandoned_commits += 1;
            } else if line.ends_with(": committed")
                && let Some((key, lease)) = unit_span(line)
            {
                v.worker_acked_commits += 1;
                if committed.get(&key) != Some(&lease) {
                    v.violation(format!(
                        "worker log {}: commit of {key:?} by lease {lease} was acknowledged, but the master has {:?}",
                        log.display(),
                        committed.get(&key)
                    ));
                }
            }
        }
    }
}

/// The unit and lease of a worker log line's `unit{...}` span.
fn unit_span(line: &str) -> Option<(UnitKey, u64)> {
    let start = line.find("unit{")? + "unit{".len();
    let fields = &line[start..start + line[start..].find('}')?];
    let mut map = BTreeMap::new();
    for field in fields.split(' ') {
        let (k, val) = field.split_once('=')?;
        map.insert(k, val);
    }
    let key = (
        map.get("pipeline")?.to_string(),
        map.get("group")?.to_string(),
        map.get("unit")?.parse().ok()?,
    );
    Some((key, map.get("lease_id")?.parse().ok()?))
}

/// Attempt directories `store/pipeline/group/unit/lease` not committed.
fn count_uncommitted(store: &Path, committed: &BTreeMap<UnitKey, u64>) -> u64 {
    let dirs = |p: &Path| -> Vec<(String, PathBuf)> {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut count = 0;
    for (pipeline, p) in dirs(store) {
        for (group, g) in dirs(&p) {
            for (unit, u) in dirs(&g) {
                for (lease, _) in dirs(&u) {
                    let key = (
                        pipeline.clone(),
                        group.clone(),
                        unit.parse().unwrap_or(u32::MAX),
                    );
                    let lease_id = parse_attempt_dir_name(&lease).map(|(id, _)| id);
                    if lease_id.is_none() || committed.get(&key).copied() != lease_id {
                        count += 1;
                    }
                }
            }
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_span_reads_the_worker_log_format() {
        let line = "2026-11-22T02:38:00.123456Z  INFO unit{pipeline=faults-1a2b3c4d group=gen unit=3 lease_id=17}: taskmaster_worker::unit: committed";
        assert_eq!(
            unit_span(line),
            Some((("faults-1a2b3c4d".into(), "gen".into(), 3), 17))
        );
    }
}
