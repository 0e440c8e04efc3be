//! A bench run's result: [`BenchReport`], printed as one JSON object
//! (`--json`, stable keys for scripts) or as a readable report.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::Serialize;
use taskmaster_proto::v1::MasterStatus;

use super::disk::DiskPeak;
use super::{BenchOptions, MergedLog};

/// What a run measured. Rates are over the wall time; the master's CPU
/// and journal syncs are deltas over the run (not since it started).
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Units committed (all of them, or the run failed).
    pub units: u64,
    pub batch: u32,
    pub clients: u32,
    /// The worker calls went over `Work` streams, not unary calls.
    pub stream: bool,
    /// Each commit call also leased the next batch.
    pub lease_on_commit: bool,
    /// Leases came in the compact form.
    pub compact_leases: bool,
    /// The master served TLS with `--auth`, every client with its token
    /// (`--secure`).
    pub secure: bool,
    /// Committed units per second.
    pub units_per_s: f64,
    /// Leased units per second, up to the last lease granted.
    pub leased_units_per_s: f64,
    /// From the clients' start to the last commit acknowledged.
    pub wall_s: f64,
    pub commit_p50_us: u32,
    pub commit_p99_us: u32,
    pub commit_max_us: u32,
    pub commit_calls: usize,
    pub lease_p50_us: u32,
    pub lease_p99_us: u32,
    pub lease_max_us: u32,
    /// Lease calls that returned leases (empty long-polls are not timed).
    pub lease_calls: usize,
    /// With `--rate` only: from each batch's turn to its commit's answer.
    /// Unlike `commit_*`, a call that waited for its client's previous one
    /// counts from when it was due, so that wait is in it too.
    pub turn_p50_us: Option<u32>,
    pub turn_p99_us: Option<u32>,
    pub turn_max_us: Option<u32>,
    /// With `--rate` only: turns that came while their client was still
    /// busy, and so were never sent (the load the figures leave out).
    pub turns_skipped: Option<u64>,
    /// Renew latencies, with `--renew` only.
    pub renew_p50_us: Option<u32>,
    pub renew_p99_us: Option<u32>,
    /// The master process's peak resident memory.
    pub master_rss_bytes: u64,
    /// CPU seconds the master used during the run.
    pub master_cpu_s: f64,
    /// Journal syncs (fdatasync) the master issued during the run.
    pub journal_syncs: u64,
    pub journal_syncs_per_s: f64,
    /// CPU seconds the bench's own process (the clients) used.
    pub client_cpu_s: f64,
    /// The `--rate` asked for, in units per second.
    pub offered_rate: Option<f64>,
    /// Pipelines the units were submitted as.
    pub pipelines: usize,
    /// Leases of other pipelines' units the clients released.
    pub foreign_released: u64,
    /// Which master was measured.
    pub master: String,
    /// Units submitted: all of them are committed unless `--pending-only`.
    pub units_submitted: u64,
    /// Seconds the submit calls took, and the units they submitted per second.
    pub submit_s: f64,
    pub submitted_units_per_s: f64,
    /// The master's resident memory just before the submit and just after
    /// it (every unit pending), and the growth per unit.
    pub rss_before_submit_bytes: u64,
    pub rss_pending_bytes: u64,
    pub bytes_per_pending_unit: f64,
    /// Largest journal plus snapshots on disk during the run, and its
    /// largest ratio to the newest snapshot (the state's size); `None`
    /// when no snapshot was taken during the run.
    pub disk_peak_bytes: u64,
    pub disk_peak_per_state: Option<f64>,
    /// With `--restart`: the recovery after a crash at the end.
    pub recovery: Option<Recovery>,
}

/// The submit's cost, for [`Inputs`].
#[derive(Debug, Clone, Copy)]
pub struct Submitted {
    pub submit_s: f64,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
}

/// A crash and restart of the master after the run (`--restart`).
#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    /// From starting the new process until it listened.
    pub recovery_ms: f64,
    /// The data dir at the crash: journal, snapshots and store.
    pub data_dir_bytes: u64,
    /// Journal records replayed on top of the newest snapshot.
    pub journal_records: u64,
    /// Size of the snapshot recovery started from (0: none).
    pub snapshot_bytes: u64,
    /// Resident memory of the recovered master.
    pub rss_bytes: u64,
}

/// What [`build`] computes the report from.
pub struct Inputs<'a> {
    pub options: &'a BenchOptions,
    pub pipelines: usize,
    pub log: MergedLog,
    pub start: Instant,
    /// From the start until every client had stopped.
    pub ran_for: Duration,
    pub before: &'a MasterStatus,
    pub after: &'a MasterStatus,
    pub client_cpu_s: f64,
    pub master: String,
    pub submitted: Submitted,
    pub disk: DiskPeak,
}

pub fn build(inputs: Inputs<'_>) -> BenchReport {
    let Inputs {
        options,
        log,
        start,
        ran_for,
        before,
        after,
        ..
    } = inputs;
    let since_start = |at: Option<Instant>| at.map_or(ran_for, |t| t - start).as_secs_f64();
    let wall_s = since_start(log.last_commit);
    let lease_s = since_start(log.last_lease);
    let journal_syncs = after.journal_syncs.saturating_sub(before.journal_syncs);
    let renewed = options.renew.then_some(log.renew);
    let paced = options.rate.is_some().then_some(log.turn);
    BenchReport {
        units: log.committed,
        batch: options.batch,
        clients: options.clients,
        stream: options.stream,
        lease_on_commit: options.lease_on_commit,
        compact_leases: !options.full_leases,
        secure: options.secure,
        units_per_s: per_second(log.committed as f64, wall_s),
        leased_units_per_s: per_second(log.leased as f64, lease_s),
        wall_s,
        commit_p50_us: log.commit.p50_us,
        commit_p99_us: log.commit.p99_us,
        commit_max_us: log.commit.max_us,
        commit_calls: log.commit.count,
        lease_p50_us: log.lease.p50_us,
        lease_p99_us: log.lease.p99_us,
        lease_max_us: log.lease.max_us,
        lease_calls: log.lease.count,
        turn_p50_us: paced.map(|s| s.p50_us),
        turn_p99_us: paced.map(|s| s.p99_us),
        turn_max_us: paced.map(|s| s.max_us),
        turns_skipped: options.rate.map(|_| log.turns_skipped),
        renew_p50_us: renewed.map(|s| s.p50_us),
        renew_p99_us: renewed.map(|s| s.p99_us),
        master_rss_bytes: after.rss_peak_bytes,
        master_cpu_s: (after.cpu_seconds - before.cpu_seconds).max(0.0),
        journal_syncs,
        journal_syncs_per_s: per_second(journal_syncs as f64, ran_for.as_secs_f64()),
        client_cpu_s: inputs.client_cpu_s,
        offered_rate: options.rate,
        pipelines: inputs.pipelines,
        foreign_released: log.foreign_released,
        master: inputs.master,
        units_submitted: options.units,
        submit_s: inputs.submitted.submit_s,
        submitted_units_per_s: per_second(options.units as f64, inputs.submitted.submit_s),
        rss_before_submit_bytes: inputs.submitted.rss_before_bytes,
        rss_pending_bytes: inputs.submitted.rss_after_bytes,
        bytes_per_pending_unit: inputs
            .submitted
            .rss_after_bytes
            .saturating_sub(inputs.submitted.rss_before_bytes)
            as f64
            / options.units as f64,
        disk_peak_bytes: inputs.disk.peak_bytes,
        disk_peak_per_state: inputs.disk.peak_per_state,
        recovery: None,
    }
}

fn per_second(count: f64, seconds: f64) -> f64 {
    if seconds > 0.0 { count / seconds } else { 0.0 }
}

impl BenchReport {
    /// The readable report, one figure per line.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let pace = match self.offered_rate {
            Some(rate) => format!("offered {rate:.0} units/s"),
            None => "closed loop, as fast as the master answers".into(),
        };
        let _ = if self.units > 0 {
            writeln!(
                out,
                "bench: {} units, batch {}, {} clients{}{}{}{}, {pace}",
                self.units,
                self.batch,
                self.clients,
                if self.stream { " on Work streams" } else { "" },
                if self.lease_on_commit {
                    ", each commit leasing the next"
                } else {
                    ""
                },
                if self.compact_leases {
                    ""
                } else {
                    ", full leases"
                },
                if self.secure {
                    ", over TLS with tokens"
                } else {
                    ""
                }
            )
        } else {
            writeln!(
                out,
                "bench: {} units submitted and left pending",
                self.units_submitted
            )
        };
        let _ = writeln!(out, "master: {}", self.master);
        let _ = writeln!(
            out,
            "  submit      {} units in {:.2} s ({:.0} units/s); master RSS {:.1} MiB before, {:.1} MiB with them pending: {:.0} B per pending unit",
            self.units_submitted,
            self.submit_s,
            self.submitted_units_per_s,
            mib(self.rss_before_submit_bytes),
            mib(self.rss_pending_bytes),
            self.bytes_per_pending_unit
        );
        if self.units > 0 {
            self.text_run(&mut out);
        }
        match self.disk_peak_per_state {
            Some(ratio) => {
                let _ = writeln!(
                    out,
                    "  disk        journal + snapshots at most {:.1} MiB, {ratio:.2}x the newest snapshot",
                    mib(self.disk_peak_bytes)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  disk        journal + snapshots at most {:.1} MiB (no snapshot taken)",
                    mib(self.disk_peak_bytes)
                );
            }
        }
        if let Some(r) = &self.recovery {
            let _ = writeln!(
                out,
                "  recovery    {:.0} ms after SIGKILL: snapshot {:.1} MiB + {} journal records (data dir {:.1} MiB); RSS {:.1} MiB after",
                r.recovery_ms,
                mib(r.snapshot_bytes),
                r.journal_records,
                mib(r.data_dir_bytes),
                mib(r.rss_bytes)
            );
        }
        let _ = if self.units > 0 {
            writeln!(
                out,
                "  verified    {} units in {} pipeline{}, each committed exactly once{}",
                self.units,
                self.pipelines,
                plural(self.pipelines),
                self.recovery
                    .as_ref()
                    .map_or("", |_| ", before and after the restart")
            )
        } else {
            writeln!(
                out,
                "  verified    {} units in {} pipeline{}, all pending{}",
                self.units_submitted,
                self.pipelines,
                plural(self.pipelines),
                self.recovery
                    .as_ref()
                    .map_or("", |_| ", before and after the restart")
            )
        };
        out
    }

    /// The lease/commit part of the report.
    fn text_run(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "  throughput  {:.0} units/s committed, {:.0} units/s leased ({:.2} s)",
            self.units_per_s, self.leased_units_per_s, self.wall_s
        );
        let _ = writeln!(
            out,
            "  commit      p50 {}  p99 {}  max {}  ({} calls)",
            ms(self.commit_p50_us),
            ms(self.commit_p99_us),
            ms(self.commit_max_us),
            self.commit_calls
        );
        let _ = writeln!(
            out,
            "  lease       p50 {}  p99 {}  max {}  ({} calls)",
            ms(self.lease_p50_us),
            ms(self.lease_p99_us),
            ms(self.lease_max_us),
            self.lease_calls
        );
        if let (Some(p50), Some(p99), Some(max), Some(skipped)) = (
            self.turn_p50_us,
            self.turn_p99_us,
            self.turn_max_us,
            self.turns_skipped,
        ) {
            let _ = writeln!(
                out,
                "  on time     p50 {}  p99 {}  max {}  from each turn (its due time when the previous call held it up) to its commit's answer; {skipped} turns skipped",
                ms(p50),
                ms(p99),
                ms(max)
            );
        }
        if let (Some(p50), Some(p99)) = (self.renew_p50_us, self.renew_p99_us) {
            let _ = writeln!(out, "  renew       p50 {}  p99 {}", ms(p50), ms(p99));
        }
        let cores = |cpu_s: f64| per_second(cpu_s, self.wall_s);
        let _ = writeln!(
            out,
            "  master      peak RSS {:.1} MiB, {:.2} CPU s during the run ({:.2} cores)",
            self.master_rss_bytes as f64 / (1024.0 * 1024.0),
            self.master_cpu_s,
            cores(self.master_cpu_s)
        );
        let _ = writeln!(
            out,
            "  journal     {} syncs during the run ({:.0}/s, {:.1} units committed per sync)",
            self.journal_syncs,
            self.journal_syncs_per_s,
            per_second(self.units as f64, self.journal_syncs as f64)
        );
        let _ = writeln!(
            out,
            "  clients     {:.2} CPU s ({:.2} cores) in this process",
            self.client_cpu_s,
            cores(self.client_cpu_s)
        );
        if self.foreign_released > 0 {
            let _ = writeln!(
                out,
                "  warning     {} leases of other pipelines were given back: the figures include that work",
                self.foreign_released
            );
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Microseconds as milliseconds with three decimals: `1.234 ms`.
fn ms(us: u32) -> String {
    format!("{:.3} ms", f64::from(us) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stats::Summary;

    fn sample() -> BenchReport {
        sample_at(None)
    }

    /// A report of a run offered `rate` units/s (`None`: closed loop).
    fn sample_at(rate: Option<f64>) -> BenchReport {
        let options = BenchOptions {
            units: 1000,
            batch: 10,
            clients: 4,
            renew: false,
            rate,
            master: None,
            master_binary: None,
            pending_only: false,
            restart: false,
            full_leases: false,
            stream: false,
            lease_on_commit: false,
            secure: false,
        };
        let start = Instant::now();
        let log = MergedLog {
            lease: Summary {
                count: 100,
                p50_us: 300,
                p99_us: 900,
                max_us: 1200,
            },
            commit: Summary {
                count: 100,
                p50_us: 400,
                p99_us: 1500,
                max_us: 2000,
            },
            turn: Summary {
                count: 100,
                p50_us: 500,
                p99_us: 2500,
                max_us: 3000,
            },
            turns_skipped: 3,
            leased: 1000,
            committed: 1000,
            last_lease: Some(start + Duration::from_millis(400)),
            last_commit: Some(start + Duration::from_millis(500)),
            ..MergedLog::default()
        };
        let before = MasterStatus {
            journal_syncs: 10,
            cpu_seconds: 1.0,
            ..MasterStatus::default()
        };
        let after = MasterStatus {
            journal_syncs: 110,
            cpu_seconds: 1.5,
            rss_peak_bytes: 64 << 20,
            ..MasterStatus::default()
        };
        build(Inputs {
            options: &options,
            pipelines: 1,
            log,
            start,
            ran_for: Duration::from_millis(1000),
            before: &before,
            after: &after,
            client_cpu_s: 0.25,
            master: "test".into(),
            submitted: Submitted {
                submit_s: 0.1,
                rss_before_bytes: 10_000_000,
                rss_after_bytes: 10_200_000,
            },
            disk: DiskPeak {
                peak_bytes: 3 << 20,
                peak_per_state: Some(2.5),
                snapshots: 1,
            },
        })
    }

    #[test]
    fn rates_are_over_the_time_to_the_last_answer() {
        let report = sample();
        assert_eq!(report.wall_s, 0.5);
        assert_eq!(report.units_per_s, 2000.0);
        assert_eq!(report.leased_units_per_s, 2500.0);
        assert_eq!(report.journal_syncs, 100);
        assert_eq!(report.journal_syncs_per_s, 100.0);
        assert_eq!(report.master_cpu_s, 0.5);
        assert_eq!(report.renew_p50_us, None);
        assert_eq!(report.bytes_per_pending_unit, 200.0);
        assert_eq!(report.submitted_units_per_s, 10_000.0);
    }

    #[test]
    fn json_has_the_documented_keys() {
        let json = serde_json::to_value(sample()).unwrap();
        for key in [
            "units_per_s",
            "commit_p50_us",
            "commit_p99_us",
            "commit_max_us",
            "lease_p50_us",
            "lease_p99_us",
            "master_rss_bytes",
            "master_cpu_s",
            "journal_syncs",
            "units",
            "batch",
            "clients",
            "wall_s",
        ] {
            assert!(json.get(key).is_some(), "missing {key} in {json}");
        }
    }

    #[test]
    fn text_shows_each_figure() {
        let text = sample().text();
        assert!(text.contains("2000 units/s committed"), "{text}");
        assert!(text.contains("p99 1.500 ms"), "{text}");
        assert!(text.contains("peak RSS 64.0 MiB"), "{text}");
        assert!(text.contains("100 syncs"), "{text}");
        assert!(!text.contains("renew"), "{text}");
        assert!(text.contains("200 B per pending unit"), "{text}");
        assert!(text.contains("2.50x the newest snapshot"), "{text}");
    }

    #[test]
    fn only_a_paced_run_reports_its_turns() {
        let closed = sample();
        assert_eq!((closed.turn_p99_us, closed.turns_skipped), (None, None));
        assert!(!closed.text().contains("on time"));

        let paced = sample_at(Some(2000.0));
        let json = serde_json::to_value(&paced).unwrap();
        assert_eq!(json["turn_p99_us"], 2500, "{json}");
        assert_eq!(json["turns_skipped"], 3, "{json}");
        let text = paced.text();
        assert!(
            text.contains("on time     p50 0.500 ms  p99 2.500 ms  max 3.000 ms"),
            "{text}"
        );
        assert!(text.contains("3 turns skipped"), "{text}");
    }
}
