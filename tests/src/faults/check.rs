//! The invariants checked after a fault run, from the master's state (read
//! with `tmctl status --json` and `tmctl outputs`), the output files, the
//! exec log and the workers' logs.
//!
//! An attempt is named by its lease id *and* the incarnation of the master
//! that granted it: a master restored from a copy of its data dir reissues
//! lease ids the abandoned lineage already granted. The restored lineage is
//! the one that survives ([`Lineages`]); nothing of the abandoned one may
//! ever be committed.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::Value;

use taskmaster_proto::compact::parse_attempt_dir_name;

use super::access::Reach;
use super::workload::{
    Batch, GROUPS, TICK_NAME, WIDE_NAME, Wide, Workload, is_tick_run, read_exec_log,
};

/// A unit: pipeline id, group, unit index.
pub type UnitKey = (String, String, u32);

/// An attempt: lease id and the incarnation that granted it.
pub type Attempt = (u64, u64);

/// What the harness saw acknowledged during the run.
#[derive(Debug, Default, Clone)]
pub struct Acked {
    /// Pipeline ids `tmctl submit` printed.
    pub submissions: BTreeSet<String>,
    /// Committed attempt per unit, as read from the master during the run.
    pub commits: BTreeMap<UnitKey, Attempt>,
}

/// The incarnations of every master start, by lineage.
#[derive(Debug, Default, Clone)]
pub struct Lineages {
    /// Starts of the lineage that survives: those on the data dir the last
    /// restore copied (up to the copy) and every start after it.
    pub surviving: BTreeSet<u64>,
    /// Starts of lineages a restore abandoned (after their copy point).
    pub dead: BTreeSet<u64>,
    /// Surviving starts from before a restored copy point: both lineages
    /// held their leases, so either may have acknowledged their commits.
    pub shared: BTreeSet<u64>,
}

/// Byte ranges of worker logs whose `committed` lines are not checked:
/// from a copy to (a while after) its restore, the abandoned lineage
/// acknowledged commits that the restored master legitimately never had.
pub type LogSkips = BTreeMap<PathBuf, Vec<Range<u64>>>;

/// What the final check compares the master's state with.
pub struct Expected<'a> {
    pub workload: &'a Workload,
    pub acked: &'a Acked,
    pub lineages: &'a Lineages,
    pub worker_logs: &'a [PathBuf],
    pub log_skips: &'a LogSkips,
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
    /// Attempt directories of abandoned lineages: expected leftovers (no
    /// master sweeps another lineage's attempts), never committed.
    pub dead_lineage_attempt_dirs: u64,
    /// Commits of the surviving master naming an attempt of another
    /// lineage (must stay 0).
    pub foreign_commits: u64,
    /// Commits refused whose lease an abandoned lineage granted.
    pub worker_fenced_refusals: u64,
    /// `committed` lines not checked: an abandoned lineage acknowledged them.
    pub worker_acks_of_dead_lineages: u64,
    /// The wide gather's input count as it wrote it (0: no wide pipeline).
    pub wide_inputs_counted: u64,
    /// Times a worker listed a lease's inputs with `ListInputs`.
    pub paged_input_listings: u64,
    /// The tick schedule's logical times, each run once, without a gap.
    pub schedule_logicals: u64,
    /// Its published partitions: each the output of one succeeded run.
    pub schedule_partitions: u64,
    /// Partitions an abandoned lineage published whose logical time the
    /// survivor has not run to success yet (its run replaces them then).
    pub schedule_partitions_awaiting_rerun: u64,
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

/// Checks every pipeline the master `master` reaches knows.
pub fn verify(master: &Reach, store: &Path, e: &Expected) -> Verified {
    let mut v = Verified::default();
    let statuses: Value =
        serde_json::from_str(&master.tmctl_ok(&["status", "--json"])).expect("status JSON");
    let statuses = statuses.as_array().cloned().unwrap_or_default();
    v.pipelines = statuses.len();
    // Batch units (checked against the exec log), then every unit.
    let mut committed: BTreeMap<UnitKey, Attempt> = BTreeMap::new();
    let mut wide_committed: BTreeMap<UnitKey, Attempt> = BTreeMap::new();
    for status in &statuses {
        if status["id"].as_str().is_some_and(is_tick_run) {
            v.pipelines -= 1; // the schedule's runs: `check_schedule`
            continue;
        }
        if status["name"] == WIDE_NAME {
            let out = &mut wide_committed;
            check_wide(
                master,
                store,
                e.workload.wide.as_ref(),
                e.lineages,
                status,
                out,
                &mut v,
            );
        } else {
            check_pipeline(master, store, e, status, &mut committed, &mut v);
        }
    }
    let mut all_committed = committed.clone();
    all_committed.extend(wide_committed);
    let ids: BTreeSet<&str> = statuses.iter().filter_map(|s| s["id"].as_str()).collect();
    for id in &e.acked.submissions {
        if !ids.contains(id.as_str()) {
            v.violation(format!("acknowledged submission {id} is gone"));
        }
    }
    for (key, attempt) in &e.acked.commits {
        match all_committed.get(key) {
            Some(now) if now == attempt => {}
            now => v.violation(format!(
                "commit of {key:?} by attempt {attempt:?} was seen acknowledged, now {now:?}"
            )),
        }
    }
    check_executions(e.workload, e.lineages, &committed, &mut v);
    check_worker_logs(e, &all_committed, &mut v);
    let (uncommitted, dead) = count_uncommitted(store, e.lineages, &all_committed);
    v.uncommitted_attempt_dirs = uncommitted;
    v.dead_lineage_attempt_dirs = dead;
    v
}

/// The attempt of a committed path `<store>/<pipeline>/<group>/<unit>/<attempt>/<name>`
/// in pipeline `id`, group `group`: (unit, attempt, attempt dir, file name).
fn committed_path<'a>(
    store: &Path,
    path: &'a str,
    id: &str,
    group: &str,
) -> Option<(u32, Attempt, &'a str, &'a str)> {
    let rel: &'a str = Path::new(path).strip_prefix(store).ok()?.to_str()?;
    let parts: Vec<&'a str> = rel.split('/').collect();
    match parts[..] {
        [p, g, unit, dir, name] if p == id && g == group => {
            Some((unit.parse().ok()?, parse_attempt_dir_name(dir)?, dir, name))
        }
        _ => None,
    }
}

/// A committed attempt must come from a start of the surviving lineage.
fn check_lineage(key: &UnitKey, attempt: Attempt, lineages: &Lineages, v: &mut Verified) {
    if lineages.surviving.contains(&attempt.1) {
        return;
    }
    v.foreign_commits += 1;
    let whose = if lineages.dead.contains(&attempt.1) {
        "an abandoned lineage"
    } else {
        "no recorded start"
    };
    v.violation(format!(
        "{key:?}: committed attempt {attempt:?} was granted by incarnation {:016x}, of {whose}",
        attempt.1
    ));
}

/// The wide pipeline: succeeded, each `many` unit committed once with all
/// its files, and the gather counted every input exactly once; every
/// committed attempt of the surviving lineage.
fn check_wide(
    master: &Reach,
    store: &Path,
    wide: Option<&Wide>,
    lineages: &Lineages,
    status: &Value,
    committed: &mut BTreeMap<UnitKey, Attempt>,
    v: &mut Verified,
) {
    let id = status["id"].as_str().unwrap_or_default().to_string();
    let Some(wide) = wide else {
        v.violation(format!(
            "wide pipeline {id} was never submitted by the harness"
        ));
        return;
    };
    if status["state"] != "succeeded" {
        v.violation(format!(
            "wide pipeline {id} is {}: {}",
            status["state"], status["failed_units"]
        ));
    }
    v.units += wide.total_units();
    let mut files_per_unit: BTreeMap<u32, u64> = BTreeMap::new();
    let mut value = None;
    for (group, units) in [("many", wide.units), ("count", 1)] {
        let listed = master.tmctl_ok(&["outputs", &id, "--group", group]);
        for path in listed.lines() {
            let Some((unit, attempt, dir, name)) = committed_path(store, path, &id, group) else {
                v.violation(format!("{id} {group}: unexpected committed path {path}"));
                continue;
            };
            let key = (id.clone(), group.to_string(), unit);
            if committed
                .insert(key.clone(), attempt)
                .is_some_and(|a| a != attempt)
            {
                v.duplicated += 1;
                v.violation(format!("{key:?} has more than one committed attempt"));
            }
            check_lineage(&key, attempt, lineages, v);
            *files_per_unit.entry(unit).or_default() += u64::from(group == "many");
            if group == "count" && name == "value" {
                value = Some((dir.to_string(), path.to_string()));
            }
        }
        let found = (0..units)
            .filter(|u| committed.contains_key(&(id.clone(), group.to_string(), *u)))
            .count();
        if found != units as usize {
            v.lost += units as u64 - found as u64;
            v.violation(format!("{id} {group}: {found} of {units} units committed"));
        }
    }
    for unit in 0..wide.units {
        let files = files_per_unit.get(&unit).copied().unwrap_or(0);
        if files != u64::from(wide.files) {
            v.violation(format!(
                "{id} many unit {unit}: {files} committed files, expected {}",
                wide.files
            ));
        }
    }
    let Some((dir, path)) = value else {
        v.violation(format!("{id}: the gather committed no `value`"));
        return;
    };
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let f: Vec<&str> = text.split_whitespace().collect();
    let expected = wide.inputs().to_string();
    v.wide_inputs_counted = f.get(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    if f.len() != 3 || f[0] != dir || f[1] != expected || f[2] != expected {
        v.violation(format!(
            "{path}: the gather wrote {f:?}, expected [{dir}, {expected}, {expected}] (every input once)"
        ));
    }
}

/// One pipeline: finished, one output set per unit, each written by its
/// committing attempt, and the right values all the way to the sum.
fn check_pipeline(
    master: &Reach,
    store: &Path,
    e: &Expected,
    status: &Value,
    committed: &mut BTreeMap<UnitKey, Attempt>,
    v: &mut Verified,
) {
    let workload = e.workload;
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
        let outputs = master.tmctl_ok(&["outputs", &id, "--group", group]);
        let units = read_outputs(store, &id, group, &outputs, e.lineages, committed, v);
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
/// fields of its file after the attempt name). Checks each file names the
/// committing attempt, of the surviving lineage.
fn read_outputs(
    store: &Path,
    id: &str,
    group: &str,
    listed: &str,
    lineages: &Lineages,
    committed: &mut BTreeMap<UnitKey, Attempt>,
    v: &mut Verified,
) -> BTreeMap<u32, (String, Vec<String>)> {
    let mut units = BTreeMap::new();
    for path in listed.lines() {
        let parsed = committed_path(store, path, id, group).filter(|p| p.3 == "value");
        let Some((unit, attempt, dir, _)) = parsed else {
            v.violation(format!("{id} {group}: unexpected committed path {path}"));
            continue;
        };
        let key = (id.to_string(), group.to_string(), unit);
        check_lineage(&key, attempt, lineages, v);
        if committed.insert(key, attempt).is_some() || units.contains_key(&unit) {
            v.duplicated += 1;
            v.violation(format!(
                "{id} {group} unit {unit} has more than one committed output set"
            ));
        }
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let fields: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        if fields.first().map(String::as_str) != Some(dir) {
            v.violation(format!(
                "{path} was committed by attempt {dir} but written by {:?}",
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

/// Every committed attempt is the newest of its unit in the surviving
/// lineage (a zombie's late commit was never accepted; lease ids grow only
/// within one lineage, and abandoned lineages reissued them) and really
/// ran; counts executions.
fn check_executions(
    workload: &Workload,
    lineages: &Lineages,
    committed: &BTreeMap<UnitKey, Attempt>,
    v: &mut Verified,
) {
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
        ran.insert((key.clone(), (e.lease, e.incarnation)));
        if lineages.surviving.contains(&e.incarnation) {
            let entry = newest.entry(key).or_insert(0);
            *entry = (*entry).max(e.lease);
        }
    }
    for (key, attempt) in committed {
        if !ran.contains(&(key.clone(), *attempt)) {
            v.violation(format!("{key:?}: committed attempt {attempt:?} never ran"));
        }
        if let Some(&newest) = newest.get(key)
            && newest != attempt.0
        {
            v.stale_commits += 1;
            v.violation(format!(
                "{key:?}: committed attempt {attempt:?}, but lease {newest} of the same lineage ran later (a stale commit was accepted)"
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

/// Commits the workers were told succeeded must be the committed ones,
/// except those an abandoned lineage may have acknowledged: of its own
/// incarnations, or of shared ones logged in `log_skips`.
fn check_worker_logs(e: &Expected, committed: &BTreeMap<UnitKey, Attempt>, v: &mut Verified) {
    for log in e.worker_logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let skips = e.log_skips.get(log).map(Vec::as_slice).unwrap_or_default();
        let mut offset = 0u64;
        for line in text.lines() {
            let skipped = skips.iter().any(|r| r.contains(&offset));
            offset += line.len() as u64 + 1;
            if line.contains("master refused the commit") {
                v.worker_refused_commits += 1;
                let dead = unit_span(line)
                    .and_then(|(_, _, incarnation)| incarnation)
                    .is_some_and(|i| e.lineages.dead.contains(&i));
                v.worker_fenced_refusals += u64::from(dead);
            } else if line.contains("lease lost: dropping") {
                v.worker_lost_leases += 1;
            } else if line.contains("gave up committing") {
                v.worker_abandoned_commits += 1;
            } else if line.contains("listed the unit's inputs") {
                v.paged_input_listings += 1;
            } else if line.ends_with(": committed")
                && let Some((key, lease, incarnation)) = unit_span(line)
                && !is_tick_run(&key.0)
            {
                v.worker_acked_commits += 1;
                let lineages = e.lineages;
                let dead = incarnation.is_some_and(|i| lineages.dead.contains(&i));
                let shared = incarnation.is_none_or(|i| lineages.shared.contains(&i));
                if dead || (skipped && shared) {
                    v.worker_acks_of_dead_lineages += 1;
                    continue;
                }
                let now = committed.get(&key);
                let same =
                    now.is_some_and(|&(l, i)| l == lease && incarnation.is_none_or(|x| x == i));
                if !same {
                    v.violation(format!(
                        "worker log {}: commit of {key:?} by lease {lease} (incarnation {incarnation:x?}) was acknowledged, but the master has {now:?}",
                        log.display(),
                    ));
                }
            }
        }
    }
}

/// The tick schedule after the run: every logical time from its first
/// run to its last ran exactly once (no duplicate, no gap: `catchup =
/// "all"` through every crash, restore and fail point), and each published
/// partition names a succeeded run of its logical time whose output is
/// that time.
pub fn check_schedule(master: &Reach, v: &mut Verified) {
    master.tmctl_ok(&["schedule", "pause", TICK_NAME]);
    let runs: Value =
        serde_json::from_str(&master.tmctl_ok(&["runs", TICK_NAME, "--json", "--limit", "0"]))
            .expect("runs JSON");
    // The publisher writes within about a second of a run's success; on a
    // loaded machine later. Wait (30 s at most) until every succeeded run
    // has a partition, so a late one is not silently left unchecked.
    let succeeded: BTreeSet<String> = runs
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["state"] == "succeeded")
        .filter_map(|r| r["pipeline_id"].as_str().map(str::to_string))
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let text = master.tmctl_ok(&["published", TICK_NAME, "--json"]);
        let published: Value = serde_json::from_str(&text).expect("published JSON");
        let named: BTreeSet<&str> = published
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["pipeline_id"].as_str())
            .collect();
        if succeeded.iter().all(|id| named.contains(id.as_str())) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let mut by_time: BTreeMap<i64, Vec<&Value>> = BTreeMap::new();
    for run in runs.as_array().into_iter().flatten() {
        if run["trigger"] != "schedule" {
            continue;
        }
        let logical = run["logical"].as_str().unwrap_or_default();
        match logical.parse::<jiff::Timestamp>() {
            Ok(t) => by_time.entry(t.as_second()).or_default().push(run),
            Err(e) => v.violation(format!("tick run with a bad logical time {logical:?}: {e}")),
        }
    }
    v.schedule_logicals = by_time.len() as u64;
    if by_time.len() < 2 {
        v.violation(format!(
            "the tick schedule ran {} logical time(s)",
            by_time.len()
        ));
        return;
    }
    for (t, runs) in &by_time {
        if runs.len() > 1 {
            v.violation(format!("tick logical time {t} ran {} times", runs.len()));
        }
        if runs[0]["pipeline_id"].as_str().is_none_or(str::is_empty) {
            v.violation(format!(
                "tick logical time {t} was passed over: {}",
                runs[0]
            ));
        }
    }
    let (first, last) = (
        *by_time.keys().next().unwrap(),
        *by_time.keys().last().unwrap(),
    );
    for t in (first..=last).step_by(2) {
        if !by_time.contains_key(&t) {
            v.violation(format!("tick logical time {t} never ran"));
        }
    }
    let published: Value =
        serde_json::from_str(&master.tmctl_ok(&["published", TICK_NAME, "--json"]))
            .expect("published JSON");
    let partition_times: BTreeSet<i64> = published
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["logical"].as_str()?.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_second())
        .collect();
    for (t, runs) in &by_time {
        if runs[0]["state"] == "succeeded" && !partition_times.contains(t) {
            v.violation(format!(
                "tick logical time {t} succeeded but was never published"
            ));
        }
    }
    for partition in published.as_array().into_iter().flatten() {
        v.schedule_partitions += 1;
        let logical = partition["logical"].as_str().unwrap_or_default();
        let Some(t) = logical
            .parse::<jiff::Timestamp>()
            .ok()
            .map(|t| t.as_second())
        else {
            v.violation(format!("a partition with a bad logical time: {partition}"));
            continue;
        };
        let run = by_time.get(&t).map(|runs| runs[0]);
        let succeeded = run.is_some_and(|r| r["state"] == "succeeded");
        if !succeeded {
            // Published by a lineage a restore abandoned; the survivor's
            // run of that time has not succeeded (yet).
            v.schedule_partitions_awaiting_rerun += 1;
            continue;
        }
        let run = run.expect("checked");
        if partition["pipeline_id"] != run["pipeline_id"] {
            v.violation(format!(
                "partition {logical} names {} but its succeeded run is {}",
                partition["pipeline_id"], run["pipeline_id"]
            ));
        }
        let paths = partition["outputs"]["tick"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if paths.len() != 1 {
            v.violation(format!("partition {logical} has {} outputs", paths.len()));
        }
        for path in paths {
            let written =
                std::fs::read_to_string(path.as_str().unwrap_or_default()).unwrap_or_default();
            if written.trim() != logical {
                v.violation(format!(
                    "partition {logical} points at output {path} holding {:?}",
                    written.trim()
                ));
            }
        }
    }
}

/// The unit, lease id and (if logged) incarnation of a worker log line's
/// `unit{...}` span.
fn unit_span(line: &str) -> Option<(UnitKey, u64, Option<u64>)> {
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
    let incarnation = match map.get("incarnation") {
        Some(hex) => Some(u64::from_str_radix(hex, 16).ok()?),
        None => None,
    };
    Some((key, map.get("lease_id")?.parse().ok()?, incarnation))
}

/// Attempt directories `store/pipeline/group/unit/<lease>-<incarnation>`
/// not committed: (of the surviving lineage, of abandoned ones). Other
/// names (the unit's `logs`) are no attempts.
fn count_uncommitted(
    store: &Path,
    lineages: &Lineages,
    committed: &BTreeMap<UnitKey, Attempt>,
) -> (u64, u64) {
    let dirs = |p: &Path| -> Vec<(String, PathBuf)> {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (mut own, mut dead) = (0, 0);
    for (pipeline, p) in dirs(store) {
        if is_tick_run(&pipeline) || pipeline == "published" {
            continue;
        }
        for (group, g) in dirs(&p) {
            for (unit, u) in dirs(&g) {
                for (name, _) in dirs(&u) {
                    let Some(attempt) = parse_attempt_dir_name(&name) else {
                        continue;
                    };
                    let key = (
                        pipeline.clone(),
                        group.clone(),
                        unit.parse().unwrap_or(u32::MAX),
                    );
                    if committed.get(&key) == Some(&attempt) {
                        continue;
                    }
                    if lineages.dead.contains(&attempt.1) {
                        dead += 1;
                    } else {
                        own += 1;
                    }
                }
            }
        }
    }
    (own, dead)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_span_reads_the_worker_log_format() {
        let line = "2026-11-22T02:38:00.123456Z  INFO unit{pipeline=faults-1a2b3c4d group=gen unit=3 lease_id=17}: taskmaster_worker::unit: committed";
        assert_eq!(
            unit_span(line),
            Some((("faults-1a2b3c4d".into(), "gen".into(), 3), 17, None))
        );
        let line = "2026-12-07T09:38:00.123456Z  INFO unit{pipeline=faults-1a2b3c4d group=gen unit=3 lease_id=17 incarnation=00c1e93c9d124a45}: taskmaster_worker::unit: committed";
        assert_eq!(
            unit_span(line),
            Some((
                ("faults-1a2b3c4d".into(), "gen".into(), 3),
                17,
                Some(0x00c1_e93c_9d12_4a45)
            ))
        );
    }
}
