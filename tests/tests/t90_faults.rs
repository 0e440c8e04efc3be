//! Exactly-once under failure: the fault-injection suite (see FAULTS.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use taskmaster_client::{Client, ClientError};
use taskmaster_master::journal::frame;
use taskmaster_proto::compact::parse_attempt_dir_name;
use taskmaster_proto::v1::task_master_client::TaskMasterClient;
use taskmaster_proto::v1::*;
use taskmaster_tests::faults::procs::{MasterSpec, TmpfsNamespace};
use taskmaster_tests::faults::{self, Profile};
use taskmaster_tests::*;
use tonic::Code;

#[test]
fn t90_short_profile() {
    let profile = Profile::short(faults::seed_from_env());
    assert_short_profile_clean(&profile);
}

/// The short profile with TLS, client certificates and `--auth` on: the
/// workers known by their certificates, the harness and tmctl by an
/// operator token, the proxy passing TLS through. The same faults and the
/// same checks.
#[test]
fn t90_short_profile_secure() {
    let profile = Profile::short_secure(faults::seed_from_env());
    let report = assert_short_profile_clean(&profile);
    assert!(report.secure, "{report}");
    // The harness read the master's state as it went, with its token.
    assert!(report.counts.refreshes > 0, "{report}");
}

/// Runs a short profile and checks it is clean and that every kind of
/// fault really fired.
fn assert_short_profile_clean(profile: &Profile) -> faults::Report {
    let report = faults::run(profile);
    println!("{report}");
    report.assert_clean();
    let c = &report.counts;
    // The fail points must really fire (the binaries were built with them).
    assert!(
        c.worker_failpoint_aborts > 0,
        "worker-before-commit never fired: {report}"
    );
    for (fp, n) in &c.master_failpoint_aborts {
        assert!(*n > 0, "{} never fired", fp.name());
    }
    assert_eq!(
        c.master_failpoint_aborts.len(),
        3,
        "every journal fail point fires: {report}"
    );
    assert!(
        report.verified.executions > report.verified.units,
        "attempts were repeated"
    );
    // A copy of the data dir was restored, abandoning the lineage since.
    assert_eq!(c.restores, u64::from(profile.restores), "{report}");
    assert!(c.dead_incarnations > 0, "{report}");
    // The wide gather ran (its inputs paged: else the run is not clean),
    // and counted every input once.
    assert!(report.wide_inputs > 0, "{report}");
    assert_eq!(report.verified.wide_inputs_counted, report.wide_inputs);
    assert!(report.elapsed < Duration::from_secs(120));
    report
}

#[test]
#[ignore = "long: cargo test -p taskmaster-tests --release --test t90_faults -- --ignored long_profile --nocapture"]
fn long_profile() {
    let profile = Profile::long(faults::seed_from_env());
    eprintln!("{profile:?}");
    let report = faults::run(&profile);
    println!("{report}");
    report.assert_clean();
}

// ---------------------------------------------------------------------------
// Helpers for the scenarios below: hand-made specs, leases and commits.

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A pipeline of one exec group with `inputs` (absolute, need not exist).
fn pipeline(name: &str, inputs: Vec<String>) -> PipelineSpec {
    PipelineSpec {
        name: name.into(),
        groups: vec![GroupSpec {
            name: "g".into(),
            task: "exec".into(),
            command: vec!["true".into()],
            inputs,
            max_attempts: 5,
            ..GroupSpec::default()
        }],
        ..PipelineSpec::default()
    }
}

fn inputs(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("/in/{i}")).collect()
}

async fn lease(client: &Client, max_units: u32) -> Result<Vec<Lease>, tonic::Status> {
    let request = LeaseRequest {
        worker_id: "hand".into(),
        max_units,
        wait_ms: 0,
        // The compact form, as the stock worker asks for it.
        compact: true,
        worker_slots: 0,
    };
    let reply = client.raw().lease(request).await?.into_inner();
    taskmaster_proto::compact::expand(reply.leases, &reply.lease_groups)
        .map_err(|e| tonic::Status::internal(e.to_string()))
}

/// Writes `name` under the lease's attempt prefix (when it is a plain
/// name) and builds the commit naming it.
fn output(lease: &Lease, name: &str) -> CommitItem {
    if !name.contains(['/', '\0']) {
        let dir = Path::new(&lease.store_root).join(&lease.output_prefix);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), "payload").unwrap();
    }
    CommitItem {
        lease: Some(LeaseRef {
            unit: lease.unit.clone(),
            lease_id: lease.lease_id,
            config_version: lease.config_version,
            incarnation: lease.incarnation,
        }),
        result: Some(commit_item::Result::Outputs(Outputs {
            files: vec![OutputFile {
                name: name.into(),
                size_bytes: 7,
            }],
        })),
    }
}

/// The per-item status of a one-item commit, or the call's status.
async fn commit(
    client: &Client,
    lease: &Lease,
    item: CommitItem,
) -> Result<ItemStatus, tonic::Status> {
    let request = CommitRequest {
        server_token: lease.server_token.clone(),
        items: vec![item],
        lease_next: None,
    };
    Ok(client
        .raw()
        .commit(request)
        .await?
        .into_inner()
        .results
        .remove(0))
}

/// Unit -> committed lease of group `g`.
async fn committed(client: &Client, id: &str) -> BTreeMap<u32, u64> {
    let units = client.outputs(id, "g").await.unwrap();
    units.iter().map(|u| (u.unit, u.lease_id)).collect()
}

async fn pipeline_ids(client: &Client) -> BTreeSet<String> {
    let list = client.list().await.unwrap();
    list.into_iter().map(|p| p.pipeline_id).collect()
}

fn code_of(result: &Result<String, ClientError>) -> Option<Code> {
    result.as_ref().err().and_then(ClientError::code)
}

/// A master spec on a fresh port in `dir`, logs in `dir/logs`.
fn master_spec(dir: &Path, data_dir: PathBuf, lease_ms: u64) -> MasterSpec {
    let log_dir = dir.join("logs");
    std::fs::create_dir_all(&log_dir).unwrap();
    MasterSpec {
        data_dir,
        listen: format!("127.0.0.1:{}", free_port()),
        lease_ms,
        store: None,
        wrapper: Vec::new(),
        log_dir,
        extra_args: Vec::new(),
        tls: false,
    }
}

// ---------------------------------------------------------------------------
// Disk full: the journal's data dir on a tiny tmpfs in a mount namespace.

/// Writes zeros to `path` until the file system is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let mut written = 0;
    for chunk in [64 * 1024, 4096, 512, 1] {
        let zeros = vec![0u8; chunk];
        while file.write_all(&zeros).is_ok() {
            written += chunk as u64;
        }
    }
    written
}

#[test]
fn t90_disk_full_refuses_changes_and_recovers_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let Some(ns) = TmpfsNamespace::new(&tmp.path().join("tmpfs"), "4m", &logs) else {
        eprintln!("skipped: this machine does not allow `unshare -m` and a tmpfs mount");
        return;
    };
    let store = tmp.path().join("store");
    let mut spec = master_spec(tmp.path(), ns.dir.join("data"), 60_000);
    spec.store = Some(store.clone());
    spec.wrapper = ns.wrapper();
    let mut master = spec.start(None, 0).unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime();
    let client = rt.block_on(Client::connect(&master.url())).unwrap();

    // Acknowledged before the disk fills: a pipeline, two leases, one commit.
    let a = rt
        .block_on(client.submit(pipeline("a", inputs(3))))
        .unwrap();
    let leases = rt.block_on(lease(&client, 2)).unwrap();
    assert_eq!(leases.len(), 2);
    let ok = rt
        .block_on(commit(&client, &leases[0], output(&leases[0], "out")))
        .unwrap();
    assert_eq!(ok.code, 0, "{ok:?}");
    let mut acked_ids = BTreeSet::from([a.clone()]);
    let acked_commits = rt.block_on(committed(&client, &a));

    // Fill the tmpfs. A few changes may still fit in the journal's last
    // page; they are acknowledged, so they must last. Then: refused.
    let filler = ns.outside(&ns.dir.join("filler"));
    let filled = fill(&filler);
    assert!(filled > 0);
    let mut refused = None;
    for i in 0..200 {
        match rt.block_on(client.submit(pipeline(&format!("fill{i}"), inputs(50)))) {
            Ok(id) => {
                acked_ids.insert(id);
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("a change is refused once the disk is full");
    eprintln!(
        "filled {filled} bytes; {} submissions still fit, then: {refused}",
        acked_ids.len() - 1
    );
    assert_eq!(refused.code(), Some(Code::ResourceExhausted), "{refused}");
    // Every kind of change is refused while full, and none shows.
    let b = rt.block_on(client.submit(pipeline("b", inputs(1))));
    assert_eq!(code_of(&b), Some(Code::ResourceExhausted), "{b:?}");
    let more = rt.block_on(lease(&client, 1)).unwrap_err();
    assert_eq!(more.code(), Code::ResourceExhausted, "{more:?}");
    let late = rt.block_on(commit(&client, &leases[1], output(&leases[1], "out")));
    let late = late
        .map(|item| item.code)
        .unwrap_or_else(|s| s.code() as i32);
    assert_eq!(late, Code::ResourceExhausted as i32);
    if let Ok(ids) = rt.block_on(client.list()) {
        let ids: BTreeSet<String> = ids.into_iter().map(|p| p.pipeline_id).collect();
        assert_eq!(
            ids, acked_ids,
            "only acknowledged submissions are visible while full"
        );
    }
    if let Ok(units) = rt.block_on(client.outputs(&a, "g")) {
        assert_eq!(
            units.len(),
            1,
            "the refused commit is not visible: {units:?}"
        );
    }

    // Space returns: the master accepts changes again, by itself.
    std::fs::remove_file(&filler).unwrap();
    let b = wait_until(
        "the master to accept changes again",
        Duration::from_secs(30),
        || rt.block_on(client.submit(pipeline("b", inputs(1)))).ok(),
    );
    acked_ids.insert(b);
    assert_eq!(
        rt.block_on(pipeline_ids(&client)),
        acked_ids,
        "state intact, nothing refused shows up"
    );
    assert_eq!(rt.block_on(committed(&client, &a)), acked_commits);
    // The lease granted before the disk filled still commits.
    let ok = rt
        .block_on(commit(&client, &leases[1], output(&leases[1], "out")))
        .unwrap();
    assert_eq!(ok.code, 0, "{ok:?}");
    let acked_commits = rt.block_on(committed(&client, &a));
    assert_eq!(acked_commits.len(), 2);

    // And all of it is on disk: a crash and restart show the same.
    master.proc.kill();
    let master = spec.start(None, 1).unwrap_or_else(|e| panic!("{e}"));
    let client = rt.block_on(Client::connect(&master.url())).unwrap();
    assert_eq!(rt.block_on(pipeline_ids(&client)), acked_ids);
    assert_eq!(rt.block_on(committed(&client, &a)), acked_commits);
    let log = std::fs::read_to_string(logs.join("master-0.log")).unwrap_or_default();
    assert!(
        log.contains("disk full"),
        "the master said why it refused: {log}"
    );
}

// ---------------------------------------------------------------------------
// A journal torn or corrupted after a crash.

/// A journal file as written: its bytes, each record's frame [start, end)
/// and the last batch's [start, end) in the file.
struct JournalBytes {
    bytes: Vec<u8>,
    frames: Vec<(usize, usize)>,
    last_batch: (usize, usize),
}

fn journal_bytes(path: &Path) -> JournalBytes {
    /// Magic and base sequence number before the first batch (journal/file.rs).
    const FILE_HEADER_BYTES: usize = 16;
    let bytes = std::fs::read(path).unwrap();
    // Batches of frames, then zeros written ahead.
    let scan = frame::scan_batches_from(&bytes, FILE_HEADER_BYTES);
    assert_eq!(scan.tail, frame::Tail::Clean);
    let frames = scan
        .payloads
        .iter()
        .map(|&(start, payload)| (start, start + frame::HEADER_BYTES + payload.len()))
        .collect();
    // A format 3 batch ends in a copy of its header: its frames' length
    // first, 20 bytes before its end, and a header as long before them.
    let end = scan.valid_len;
    let len = u32::from_le_bytes(bytes[end - 20..end - 16].try_into().unwrap()) as usize;
    let start = end - 2 * frame::BATCH_HEADER_BYTES - len;
    JournalBytes {
        bytes,
        frames,
        last_batch: (start, end),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The state a client can see: pipelines with their counts and blocked
/// flag, and the committed lease per unit.
fn visible_state(url: &str, id: &str) -> (String, BTreeMap<u32, u64>) {
    let rt = runtime();
    let client = rt.block_on(Client::connect(url)).unwrap();
    let status = rt.block_on(client.status(id)).unwrap();
    (
        format!("{:?} blocked={}", status.groups, status.blocked),
        rt.block_on(committed(&client, id)),
    )
}

#[test]
fn t90_torn_journal_tail_keeps_the_acknowledged_prefix_and_corruption_is_refused() {
    let seed = faults::seed_from_env();
    let mut rng = StdRng::seed_from_u64(seed);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let spec = master_spec(tmp.path(), data.clone(), 60_000);
    let mut master = spec.start(None, 0).unwrap_or_else(|e| panic!("{e}"));
    let rt = runtime();
    let client = rt.block_on(Client::connect(&master.url())).unwrap();
    let id = rt.block_on(client.submit(spec_named("torn"))).unwrap();
    let leases = rt.block_on(lease(&client, 3)).unwrap();
    for l in &leases[..2] {
        let ok = rt.block_on(commit(&client, l, output(l, "out"))).unwrap();
        assert_eq!(ok.code, 0);
    }
    let before_last = visible_state(&master.url(), &id);
    // The last record: a block of the pipeline.
    rt.block_on(client.block(Some(&id), true)).unwrap();
    let after_last = visible_state(&master.url(), &id);
    assert_ne!(before_last, after_last);
    master.proc.kill();

    let journal = data.join("journal.log");
    let JournalBytes {
        bytes,
        frames,
        last_batch,
    } = journal_bytes(&journal);
    let (last_start, last_end) = *frames.last().unwrap();
    // A copy of the data dir with the journal as `bytes`, in `torn-{n}`.
    let copy = |n: u32, bytes: &[u8]| {
        let dir = tmp.path().join(format!("torn-{n}"));
        copy_dir(&data, &dir);
        std::fs::write(dir.join("journal.log"), bytes).unwrap();
        master_spec(tmp.path(), dir, 60_000)
    };
    // A write that crashed before its sync: cut inside the last record (a
    // file that grew with the write), or, in the zeros written ahead (the
    // file's length kept), one of its sectors never written. The block's
    // batch lies in one sector, so for that it is written as if it held
    // the block record many times, over three sectors, the second zeros.
    let mut torn: Vec<(String, Vec<u8>)> = (0..4)
        .map(|_| {
            let cut = rng.random_range(last_start + 1..last_end);
            (format!("cut at {cut}"), bytes[..cut].to_vec())
        })
        .collect();
    let mut long = Vec::new();
    while long.len() < 3 * 512 {
        long.extend_from_slice(&bytes[last_start..last_end]);
    }
    let mut zeroed = bytes[..last_batch.0].to_vec();
    frame::encode_batch(&long, last_batch.0 as u64, &mut zeroed).unwrap();
    let second_sector = (last_batch.0 / 512 + 1) * 512;
    assert!(
        zeroed.len() > second_sector + 512,
        "{last_start}..{last_end}"
    );
    zeroed[second_sector..second_sector + 512].fill(0);
    zeroed.extend_from_slice(&bytes[last_batch.1..]);
    torn.push((format!("zeros at {second_sector}"), zeroed));
    for (round, (how, journal)) in (0..).zip(torn) {
        let spec = copy(round, &journal);
        let mut m = spec
            .start(None, 10 + round)
            .unwrap_or_else(|e| panic!("{how}: {e}"));
        assert_eq!(
            visible_state(&m.url(), &id),
            before_last,
            "{how} of {last_start}..{last_end}"
        );
        let log = m.proc.log_text();
        assert!(
            log.contains("truncated") && log.contains("never acknowledged"),
            "{how}: {log}"
        );
        // New records go after the kept prefix, and last.
        let c = rt.block_on(Client::connect(&m.url())).unwrap();
        rt.block_on(c.block(Some(&id), true)).unwrap();
        m.proc.kill();
        let m = spec
            .start(None, 20 + round)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(visible_state(&m.url(), &id), after_last, "{how}");
    }

    // A byte flipped in a record with records after it: refuse to start.
    assert!(frames.len() >= 4, "{frames:?}");
    for round in 0..4 {
        let (start, end) = frames[rng.random_range(1..frames.len() - 1)];
        let at = rng.random_range(start..end);
        let mut damaged = bytes.clone();
        damaged[at] ^= rng.random_range(1..=255u8);
        let spec = copy(30 + round, &damaged);
        let err = match spec.start(None, 30 + round) {
            Ok(_) => panic!("a master started on a journal with byte {at} flipped"),
            Err(e) => e,
        };
        let status = err.status.expect("the master exits by itself");
        assert!(!status.success(), "exit status {status}");
        assert!(
            err.log.contains("corrupt"),
            "byte {at} flipped: {}",
            err.log
        );
    }

    // A bit flipped in the last record, acknowledged (its block answered)
    // and written whole: not a torn write, so refused, naming the batch's
    // offset and the cut that would drop it; the operator's cut does.
    for round in 0..2 {
        let at = rng.random_range(last_start + frame::HEADER_BYTES..last_end);
        let mut damaged = bytes.clone();
        damaged[at] ^= 1 << rng.random_range(0..8);
        let spec = copy(40 + round, &damaged);
        let err = match spec.start(None, 40 + round) {
            Ok(_) => panic!("a master started on a journal with a bit of byte {at} flipped"),
            Err(e) => e,
        };
        assert!(!err.status.expect("exits by itself").success());
        let offset = last_batch.0;
        for needed in [
            format!("corrupt at byte {offset}"),
            "may have been acknowledged".into(),
            format!("truncate -s {offset} "),
        ] {
            assert!(err.log.contains(&needed), "{needed:?}: {}", err.log);
        }
        let dir = tmp.path().join(format!("torn-{}", 40 + round));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("journal.log"))
            .unwrap();
        file.set_len(offset as u64).unwrap();
        let m = spec
            .start(None, 50 + round)
            .unwrap_or_else(|e| panic!("after the cut: {e}"));
        assert_eq!(visible_state(&m.url(), &id), before_last, "bit of {at}");
    }
}

/// A master that dies during the compaction after a snapshot (its new
/// file written, before or after the rename) recovers every acknowledged
/// commit, removes a leftover copy, and goes on to finish the work.
#[test]
fn t90_a_master_killed_mid_compaction_recovers_what_it_acknowledged() {
    use taskmaster_tests::faults::procs::{FailPoint, aborted};
    let rt = runtime();
    for (n, point) in (0..).zip(FailPoint::COMPACTION) {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let spec = master_spec(tmp.path(), data.clone(), 60_000);
        let mut master = spec
            .start(Some((point, 100)), 10 * n)
            .unwrap_or_else(|e| panic!("{e}"));
        let client = rt.block_on(Client::connect(&master.url())).unwrap();
        let id = rt
            .block_on(client.submit(pipeline("compacted", inputs(6))))
            .unwrap();
        let first = rt.block_on(lease(&client, 3)).unwrap();
        for l in &first {
            let ok = rt.block_on(commit(&client, l, output(l, "out"))).unwrap();
            assert_eq!(ok.code, 0);
        }
        let acknowledged = visible_state(&master.url(), &id);
        // The snapshot itself is durable before its compaction starts, so
        // its reply may come back or be lost to the abort.
        let _ = rt.block_on(client.snapshot("then a crash"));
        let status = master
            .proc
            .wait_exit(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{} never fired", point.name()));
        assert!(aborted(status), "{}: exit status {status}", point.name());

        let master = spec
            .start(None, 10 * n + 1)
            .unwrap_or_else(|e| panic!("after {}: {e}", point.name()));
        assert_eq!(
            visible_state(&master.url(), &id),
            acknowledged,
            "after {}",
            point.name()
        );
        assert!(
            !data.join("journal.compacting").exists(),
            "after {}: a leftover compaction copy",
            point.name()
        );
        let client = rt.block_on(Client::connect(&master.url())).unwrap();
        let rest = rt.block_on(lease(&client, 6)).unwrap();
        assert_eq!(rest.len(), 3, "after {}", point.name());
        for l in &rest {
            let ok = rt.block_on(commit(&client, l, output(l, "out"))).unwrap();
            assert_eq!(ok.code, 0, "after {}: {}", point.name(), ok.message);
        }
        let status = rt.block_on(client.status(&id)).unwrap();
        assert_eq!(
            status.state(),
            PipelineState::Succeeded,
            "after {}",
            point.name()
        );
        assert_eq!(rt.block_on(committed(&client, &id)).len(), 6);
    }
}

fn spec_named(name: &str) -> PipelineSpec {
    pipeline(name, inputs(3))
}

// ---------------------------------------------------------------------------
// Bad input and abuse.

#[test]
fn t90_oversized_and_malformed_requests_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", 60_000);
    let rt = runtime();
    let client = rt.block_on(Client::connect(&master.url())).unwrap();

    // More than 16 MiB in one message: refused before it is decoded.
    let mut raw = rt
        .block_on(TaskMasterClient::connect(master.url()))
        .unwrap()
        .max_encoding_message_size(64 << 20)
        .max_decoding_message_size(64 << 20);
    let long = format!("/{}", "a".repeat(4000));
    let huge = pipeline("huge", vec![long; 4500]);
    let request = SubmitRequest { spec: Some(huge) };
    assert!(prost::Message::encoded_len(&request) > 16 << 20);
    let err = rt.block_on(raw.submit(request)).unwrap_err();
    assert!(
        matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{err:?}"
    );
    assert!(
        err.message().contains("too large") || err.message().contains("limit"),
        "{err:?}"
    );

    // 100,001 inputs: one over the limit. 100,000 is fine.
    let over = rt.block_on(client.submit(pipeline("over", inputs(100_001))));
    assert_eq!(code_of(&over), Some(Code::InvalidArgument), "{over:?}");
    assert!(format!("{over:?}").contains("100000"), "{over:?}");
    let at_limit = rt.block_on(client.submit(pipeline("limit", inputs(100_000))));
    assert!(at_limit.is_ok(), "{at_limit:?}");

    // Names that would escape a path, absolute paths, NUL.
    let bad_names = ["a..b", "..", "../etc", "/abs", "a/b", "nul\0x", ""];
    for name in bad_names {
        let r = rt.block_on(client.submit(pipeline(name, inputs(1))));
        assert_eq!(
            code_of(&r),
            Some(Code::InvalidArgument),
            "pipeline name {name:?}: {r:?}"
        );
        let mut s = pipeline("ok", inputs(1));
        s.groups[0].name = name.into();
        let r = rt.block_on(client.submit(s));
        assert_eq!(
            code_of(&r),
            Some(Code::InvalidArgument),
            "group name {name:?}: {r:?}"
        );
    }
    for input in ["relative/x", "/in/nul\0x"] {
        let r = rt.block_on(client.submit(pipeline("ok", vec![input.into()])));
        assert_eq!(
            code_of(&r),
            Some(Code::InvalidArgument),
            "input {input:?}: {r:?}"
        );
    }
    let mut s = pipeline("ok", inputs(1));
    s.params.insert("x".into(), "nul\0".into());
    let r = rt.block_on(client.submit(s));
    assert_eq!(code_of(&r), Some(Code::InvalidArgument), "{r:?}");
    // Only the one good submission exists; the master still answers.
    assert_eq!(rt.block_on(pipeline_ids(&client)).len(), 1);
}

#[test]
fn t90_commits_naming_paths_outside_the_attempt_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", 60_000);
    let rt = runtime();
    let client = rt.block_on(Client::connect(&master.url())).unwrap();
    let id = rt
        .block_on(client.submit(pipeline("names", inputs(1))))
        .unwrap();
    let leases = rt.block_on(lease(&client, 1)).unwrap();
    let l = &leases[0];
    let passwd = std::fs::metadata("/etc/passwd")
        .ok()
        .map(|m| (m.len(), m.modified().ok()));
    let before = list_tree(tmp.path());
    for name in [
        "../x",
        "/etc/passwd",
        "a\0b",
        "a/../../x",
        "../../../../../tmp/x",
        "./x",
        "a//b",
    ] {
        let answer = rt.block_on(commit(&client, l, output(l, name)));
        let code = answer
            .map(|item| item.code)
            .unwrap_or_else(|s| s.code() as i32);
        assert_eq!(code, Code::InvalidArgument as i32, "output name {name:?}");
    }
    assert!(
        rt.block_on(committed(&client, &id)).is_empty(),
        "nothing committed"
    );
    assert_eq!(list_tree(tmp.path()), before, "nothing written anywhere");
    let passwd_after = std::fs::metadata("/etc/passwd")
        .ok()
        .map(|m| (m.len(), m.modified().ok()));
    assert_eq!(passwd, passwd_after);
    // The lease is still good for a proper commit.
    let ok = rt.block_on(commit(&client, l, output(l, "out"))).unwrap();
    assert_eq!(ok.code, 0, "{ok:?}");
    assert_eq!(rt.block_on(committed(&client, &id)).len(), 1);
}

/// Every path under `dir`, with its size (symlinks not followed).
fn list_tree(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else if !entry.file_name().to_string_lossy().ends_with(".log") {
                out.insert(entry.path(), meta.len());
            }
        }
    }
    out
}

#[test]
fn t90_symlinks_out_of_the_store_fail_the_attempt_and_touch_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("target"), "precious\n").unwrap();
    let job = tmp.path().join("job");
    std::fs::create_dir_all(job.join("data")).unwrap();
    std::fs::write(job.join("data/in.txt"), "x\n").unwrap();
    let pipeline = job.join("pipeline.toml");
    std::fs::write(
        &pipeline,
        format!(
            r#"name = "links"
[[groups]]
name = "g"
command = ["sh", "-c", "ln -s \"$OUTSIDE/target\" \"$TM_OUTPUT_DIR/file\"; ln -s \"$OUTSIDE\" \"$TM_OUTPUT_DIR/dir\"; echo ok > \"$TM_OUTPUT_DIR/real\""]
inputs = ["data/*.txt"]
unit_bytes = 0
max_attempts = 1
env = {{ OUTSIDE = {:?} }}
"#,
            outside.display().to_string()
        ),
    )
    .unwrap();
    let master = MasterProcess::start(&tmp.path().join("data"), "127.0.0.1:0", 1_000);
    let url = master.url();
    let _worker = WorkerProcess::start(&url, 1, tmp.path());
    let out = tmctl_ok(&url, &["submit", pipeline.to_str().unwrap()]);
    let id = out.lines().last().unwrap().trim().to_string();
    let status = wait_until("the unit to fail", Duration::from_secs(30), || {
        let status = status_json(&url, &id);
        (status["state"] == "failed").then_some(status)
    });
    let errors = status["failed_units"][0]["errors"].to_string();
    assert!(errors.contains("symlink"), "{status}");
    assert!(tmctl_ok(&url, &["outputs", &id, "--group", "g"]).is_empty());
    // The master's sweep removes the failed attempt's directory, links and
    // all, without following them. (The unit's `logs` directory, the
    // attempts' stdout and stderr, is no attempt and stays.)
    let unit = tmp.path().join("data/store").join(&id).join("g/0");
    wait_until(
        "the failed attempt to be swept",
        Duration::from_secs(30),
        || {
            let attempts = std::fs::read_dir(&unit)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter(|e| {
                            let name = e.file_name();
                            parse_attempt_dir_name(&name.to_string_lossy()).is_some()
                        })
                        .count()
                })
                .unwrap_or(0);
            (attempts == 0).then_some(())
        },
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("target")).unwrap(),
        "precious\n"
    );
    let names: Vec<_> = std::fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("target")]);
}

// ---------------------------------------------------------------------------
// Fuzzing: seeds and regressions.

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every input the fuzzers found interesting enough to keep (crashes
/// included, once fixed) and the seeds, through the same functions.
#[test]
fn t90_fuzz_regressions_and_seeds_do_not_panic() {
    for (name, data) in taskmaster_tests::fuzzing::seeds() {
        eprintln!("seed for {name}: {} bytes", data.len());
        let target = taskmaster_tests::fuzzing::TARGETS
            .iter()
            .find(|t| t.0 == name)
            .unwrap()
            .1;
        target(&data);
    }
    // The journal seed is a valid journal: the fuzzer starts from a state
    // that recovers, and mutates from there.
    assert!(taskmaster_tests::fuzzing::replay(
        taskmaster_tests::fuzzing::seed_journal()
    ));
    let replayed = taskmaster_tests::fuzzing::replay_dir(&fuzz_dir().join("regressions"));
    eprintln!("{replayed} regression inputs replayed");
}

/// Writes the seeds to fuzz/seeds/<target>/seed (run by hand).
#[test]
#[ignore = "writes fuzz/seeds; run by hand when the record format changes"]
fn write_fuzz_seeds() {
    for (name, data) in taskmaster_tests::fuzzing::seeds() {
        let dir = fuzz_dir().join("seeds").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("seed"), data).unwrap();
    }
}
