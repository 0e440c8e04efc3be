//! The functions behind the fuzz targets in `fuzz/`, kept here so the
//! regression test replays `fuzz/regressions/` through exactly the same
//! code. Each must return normally on any input: a panic is a bug.

use std::path::Path;

use prost::Message;
use taskmaster_master::core::{Core, CoreConfig, spec};
use taskmaster_master::journal::frame;
use taskmaster_proto::journal::Record;
use taskmaster_proto::v1::PipelineSpec;

/// A fuzz target: takes any bytes, must not panic.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name (as in `fuzz/fuzz_targets/` and
/// `fuzz/regressions/<name>/`).
pub const TARGETS: [(&str, Target); 5] = [
    ("auth_metadata", auth_metadata),
    ("journal_frames", journal_frames),
    ("journal_records", journal_records),
    ("pipeline_toml", pipeline_toml),
    ("spec_validate", spec_validate),
];

fn config() -> CoreConfig {
    CoreConfig {
        store_root: "/store".into(),
        store_url: String::new(),
        lease_ms: 1_000,
        max_in_flight: 0,
        admission: Default::default(),
    }
}

/// Journal bytes after the file header, as recovery reads them (format 1
/// frames, format 2 batches): scan, prost decode of each checksum-valid
/// payload, then replay.
pub fn journal_frames(data: &[u8]) {
    let batches = frame::scan_batches(data);
    assert!(batches.valid_len <= data.len());
    let scan = frame::scan(data);
    assert!(scan.valid_len <= data.len());
    let records: Vec<Record> = scan
        .payloads
        .iter()
        .filter_map(|(_, payload)| Record::decode(*payload).ok())
        .collect();
    let _ = replay(records);
}

/// The records of [`seeds`]' journal, for tests.
pub fn seed_journal() -> Vec<Record> {
    seed_records()
}

/// Records with valid frames: `data` is cut into `[u16 LE length][payload]`
/// pieces, each framed with its real checksum, so the fuzzer reaches
/// record decoding and replay without having to forge a CRC.
pub fn journal_records(data: &[u8]) {
    let mut framed = Vec::new();
    let mut rest = data;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let payload = &rest[2..2 + len];
        rest = &rest[2 + len..];
        if !payload.is_empty() {
            frame::encode(payload, &mut framed);
        }
    }
    framed.extend_from_slice(rest); // a torn tail
    let scan = frame::scan(&framed);
    let records = scan
        .payloads
        .iter()
        .map_while(|(_, payload)| Record::decode(*payload).ok());
    let _ = replay(records.collect());
}

/// Replays records into a core as recovery does; a state that recovers
/// and passes its invariants must then answer every read and operation.
/// True if the records recovered into a valid state.
pub fn replay(records: Vec<Record>) -> bool {
    let Ok(mut core) = Core::recover(config(), records, 0) else {
        return false;
    };
    if core.check_invariants().is_err() {
        return false;
    }
    let _ = core.list();
    let _ = core.to_snapshot(1, 0);
    let _ = core.lease("fuzz", 10, false, 1);
    let _ = core.expire(u64::MAX / 4);
    let _ = core.lease("fuzz", 10, true, u64::MAX / 4);
    core.check_invariants()
        .unwrap_or_else(|e| panic!("invariants broken by operations after a replay: {e}"));
    true
}

/// A pipeline file, as `tmctl submit` reads it, then the master's spec
/// validation. Inputs with `/` or `..` (or TOML escapes that could spell
/// them) are skipped: globs must stay inside the file's own folder.
pub fn pipeline_toml(data: &[u8]) {
    let escapes = [&b".."[..], b"/", b"\\u", b"\\U"];
    if escapes
        .iter()
        .any(|e| data.windows(e.len()).any(|w| w == *e))
    {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("pipeline.toml");
    std::fs::write(&path, data).expect("write pipeline file");
    if let Ok(spec) = taskmaster_client::load_pipeline(&path, &[]) {
        let _ = spec::validate(&spec);
    }
}

/// A `PipelineSpec` decoded from bytes as the gRPC layer would, validated,
/// and if valid submitted to a fresh core and leased from.
pub fn spec_validate(data: &[u8]) {
    let Ok(spec) = PipelineSpec::decode(data) else {
        return;
    };
    if spec::validate(&spec).is_err() {
        return;
    }
    let mut core = Core::recover(config(), [Core::init_record("fuzz-token", 0)], 0)
        .expect("a core from an Init record");
    if core.submit("fuzz-1", spec, 0, 0).is_ok() {
        let _ = core.lease("fuzz", 100, false, 0);
        let _ = core.list();
        core.check_invariants()
            .unwrap_or_else(|e| panic!("invariants broken after a valid submit: {e}"));
    }
}

/// A call's credentials as the auth layer reads them (issue 24): the
/// first byte says how many of the next bytes are the `authorization`
/// value, the rest is the `x-taskmaster-reason` value. Both are also
/// parsed alone (any bytes), and the whole input as a client
/// certificate's DER. Whatever is accepted must be within its bounds.
pub fn auth_metadata(data: &[u8]) {
    use taskmaster_master::auth::{cert, credentials};
    use tonic::codegen::http::{HeaderMap, HeaderValue};
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (auth, reason) = rest.split_at(usize::from(n).min(rest.len()));
    if let Ok(token) = credentials::bearer(auth) {
        assert!(!token.is_empty() && token.len() <= credentials::TOKEN_BYTES_MAX);
        assert!(token.bytes().all(|b| b.is_ascii_graphic()));
    }
    if let Ok(text) = credentials::reason(reason) {
        assert!(text.len() <= credentials::REASON_BYTES_MAX);
        assert!(!text.chars().any(char::is_control));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("authorization", auth),
        (credentials::REASON_HEADER, reason),
    ] {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    let _ = credentials::presented(&headers);
    if let Ok(name) = cert::subject_name(data) {
        assert!(taskmaster_master::core::tokens::check_name(&name).is_ok());
    }
}

/// Feeds every file under `dir/<target>/` to that target; returns how many.
pub fn replay_dir(dir: &Path) -> usize {
    let mut count = 0;
    for (name, target) in TARGETS {
        let Ok(entries) = std::fs::read_dir(dir.join(name)) else {
            continue;
        };
        for entry in entries.flatten() {
            let data = std::fs::read(entry.path()).expect("regression input");
            eprintln!("{name}: {}", entry.path().display());
            target(&data);
            count += 1;
        }
    }
    count
}

/// Starting inputs for each target, made from real operations on a core:
/// a journal holding every common record kind, a spec with each feed, and
/// a pipeline file. `write_fuzz_seeds` in t90_faults writes them to
/// `fuzz/seeds/<target>/`.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let records = seed_records();
    let mut framed = Vec::new();
    let mut chunked = Vec::new();
    for rec in &records {
        let payload = rec.encode_to_vec();
        frame::encode(&payload, &mut framed);
        chunked.extend_from_slice(&(payload.len() as u16).to_le_bytes());
        chunked.extend_from_slice(&payload);
    }
    vec![
        ("auth_metadata", SEED_AUTH.to_vec()),
        ("journal_frames", framed),
        ("journal_records", chunked),
        ("spec_validate", seed_spec().encode_to_vec()),
        ("pipeline_toml", SEED_TOML.as_bytes().to_vec()),
    ]
}

/// `authorization: Bearer tm_0123abcd`, reason "ticket #42".
const SEED_AUTH: &[u8] = b"\x12Bearer tm_0123abcdticket %2342";

const SEED_TOML: &str = r#"name = "example"
[params]
ds = 2026-11-21
[[groups]]
name = "extract"
command = ["sh", "extract.sh"]
inputs = ["*.toml"]
unit_bytes = 0
env = { LANG = "C" }
max_attempts = 3
retry_delay = "90s"
max_in_flight = 4
config = { chunk_bytes = 1048576 }
[[groups]]
name = "shuffle"
task = "sort"
after = ["extract"]
partitions = 4
[[groups]]
name = "merge"
task = "merge"
after = ["shuffle"]
gather = true
"#;

fn seed_spec() -> PipelineSpec {
    use taskmaster_proto::v1::{GroupSpec, InputSlice, InputUnit};
    let group = |name: &str, after: &[&str]| GroupSpec {
        name: name.into(),
        task: "exec".into(),
        command: vec!["sh".into(), "-c".into(), "true".into()],
        after: after.iter().map(|s| s.to_string()).collect(),
        max_attempts: 3,
        ..GroupSpec::default()
    };
    let mut first = group("split", &[]);
    first.input_units = vec![InputUnit {
        files: vec!["/in/a".into(), "/in/b".into()],
        slices: vec![InputSlice {
            path: "/in/big".into(),
            start: 0,
            end: 100,
        }],
    }];
    let mut map = group("map", &["split"]);
    map.env.insert("LANG".into(), "C".into());
    let mut shuffle = group("sort", &["map"]);
    shuffle.partitions = 3;
    let mut merge = group("merge", &["sort"]);
    merge.gather = true;
    merge.retry_delay_ms = Some(0);
    PipelineSpec {
        name: "seed".into(),
        params: [("ds".to_string(), "2026-11-21".to_string())].into(),
        groups: vec![first, map, shuffle, merge],
    }
}

/// A journal: init, submit, leases, a commit, a failure, an expiry, a
/// block and a cancel.
fn seed_records() -> Vec<Record> {
    use taskmaster_proto::v1::{CommitItem, LeaseRef, OutputFile, Outputs, commit_item};
    let init = Core::init_record("seed-token", 0);
    let mut core = Core::recover(config(), [init.clone()], 0).expect("core");
    let mut spec = seed_spec();
    spec.groups.truncate(2);
    spec.groups[0].input_units.clear();
    spec.groups[0].inputs = vec!["/in/0".into(), "/in/1".into(), "/in/2".into()];
    let mut records = vec![init];
    records.extend(core.submit("seed-1", spec, 0, 0).expect("submit"));
    let (granted, leases) = core.lease("w1", 3, false, 0).expect("lease");
    records.extend(granted);
    let item = |i: usize, result| CommitItem {
        lease: Some(LeaseRef {
            unit: leases[i].unit.clone(),
            lease_id: leases[i].lease_id,
            config_version: leases[i].config_version,
            incarnation: leases[i].incarnation,
        }),
        result: Some(result),
    };
    let outputs = commit_item::Result::Outputs(Outputs {
        files: vec![OutputFile {
            name: "out".into(),
            size_bytes: 3,
        }],
    });
    let failed = commit_item::Result::Error("boom".into());
    let (committed, _) = core
        .commit("seed-token", &[item(0, outputs), item(1, failed)], 1)
        .expect("commit");
    records.extend(committed);
    records.extend(core.expire(10_000));
    records.extend(core.block("seed-1", true, 10_001).expect("block"));
    records.extend(core.cancel("seed-1", 10_002).expect("cancel"));
    records
}
