//! Benchmarks of the journal's encoder and decoder (issue 6): typical
//! records (LeaseGranted, UnitCommitted with one output file) encoded with
//! prost and framed by `journal::frame::encode` into a reused buffer, in
//! batches of 1 and 100; the records the master writes for a call's run of
//! 100 grants or commits instead (LeasesGranted, UnitsCommitted); and
//! `frame::scan` (with and without the prost decode recovery does) over
//! 100,000 frames.
//!
//! `cargo bench -p taskmaster-master --bench journal`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use prost::Message;
use taskmaster_master::journal::frame;
use taskmaster_proto::journal::{
    LeaseGranted, LeasesGranted, Record, UnitAddr, UnitCommitted, UnitsCommitted, record::Kind,
};
use taskmaster_proto::v1::OutputFile;

const FRAMES: usize = 100_000;

/// Builds a typical record for unit `u`.
type MakeRecord = fn(u32) -> Record;

fn addr(unit: u32) -> Option<UnitAddr> {
    Some(UnitAddr {
        pipeline_id: "wordcount-1a2b3c4d".into(),
        group: 1,
        unit,
    })
}

fn lease_granted(unit: u32) -> Record {
    Record {
        kind: Some(Kind::LeaseGranted(LeaseGranted {
            unit: addr(unit),
            lease_id: 1_000_000 + u64::from(unit),
            worker_id: "worker-01".into(),
            lease_ms: 60_000,
            // A wall-clock time, as a master writes it (7 bytes more).
            granted_unix_ms: 1_767_225_600_000,
        })),
    }
}

fn unit_committed(unit: u32) -> Record {
    Record {
        kind: Some(Kind::UnitCommitted(UnitCommitted {
            unit: addr(unit),
            lease_id: 1_000_000 + u64::from(unit),
            files: vec![OutputFile {
                name: "part-00000".into(),
                size_bytes: 64 << 20,
            }],
        })),
    }
}

/// The one record for grants of units `0..n` in a row.
fn leases_granted(n: u32) -> Record {
    Record {
        kind: Some(Kind::LeasesGranted(LeasesGranted {
            pipeline_id: "wordcount-1a2b3c4d".into(),
            group: 1,
            units: (0..n).collect(),
            first_lease_id: 1_000_000,
            worker_id: "worker-01".into(),
            lease_ms: 60_000,
            // A wall-clock time, as a master writes it (7 bytes more).
            granted_unix_ms: 1_767_225_600_000,
        })),
    }
}

/// The one record for commits of units `0..n` in a row, a file each.
fn units_committed(n: u32) -> Record {
    Record {
        kind: Some(Kind::UnitsCommitted(UnitsCommitted {
            pipeline_id: "wordcount-1a2b3c4d".into(),
            group: 1,
            units: (0..n).collect(),
            lease_ids: (0..n).map(|u| 1_000_000 + u64::from(u)).collect(),
            file_counts: vec![1; n as usize],
            files: (0..n)
                .map(|_| OutputFile {
                    name: "part-00000".into(),
                    size_bytes: 64 << 20,
                })
                .collect(),
        })),
    }
}

/// Frames of `records` as the journal appends them: prost-encoded, then
/// framed (length, crc32, payload).
fn frames(records: &[Record]) -> Vec<u8> {
    let mut buf = Vec::new();
    for rec in records {
        frame::encode(&rec.encode_to_vec(), &mut buf);
    }
    buf
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("journal_encode");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let kinds: [(&str, MakeRecord); 2] = [
        ("lease_granted", lease_granted),
        ("unit_committed", unit_committed),
    ];
    for (name, make) in kinds {
        for batch in [1u32, 100] {
            let records: Vec<Record> = (0..batch).map(make).collect();
            let bytes = frames(&records).len() as u64;
            group.throughput(Throughput::ElementsAndBytes {
                elements: u64::from(batch),
                bytes,
            });
            // As `Journal::append` does: a fresh payload vector per record
            // (`encode_to_vec`), frames into a reused buffer.
            let mut buf = Vec::with_capacity(bytes as usize);
            group.bench_function(format!("{name}/{batch}/encode_to_vec"), |b| {
                b.iter(|| {
                    buf.clear();
                    for rec in black_box(&records) {
                        frame::encode(&rec.encode_to_vec(), &mut buf);
                    }
                    black_box(buf.len())
                })
            });
            // The same with one payload buffer reused across records too.
            let mut payload = Vec::with_capacity(256);
            group.bench_function(format!("{name}/{batch}/reused_payload"), |b| {
                b.iter(|| {
                    buf.clear();
                    for rec in black_box(&records) {
                        payload.clear();
                        rec.encode(&mut payload).unwrap();
                        frame::encode(&payload, &mut buf);
                    }
                    black_box(buf.len())
                })
            });
        }
    }
    let runs: [(&str, MakeRecord); 2] = [
        ("leases_granted", leases_granted),
        ("units_committed", units_committed),
    ];
    for (name, make) in runs {
        let record = make(100);
        let mut buf = Vec::new();
        let bytes = frames(std::slice::from_ref(&record)).len() as u64;
        group.throughput(Throughput::ElementsAndBytes {
            elements: 100,
            bytes,
        });
        group.bench_function(format!("{name}/100_units_one_record"), |b| {
            b.iter(|| {
                buf.clear();
                frame::encode(&black_box(&record).encode_to_vec(), &mut buf);
                black_box(buf.len())
            })
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    // Half grants, half commits, as a journal of leased-then-committed units.
    let records: Vec<Record> = (0..FRAMES as u32 / 2)
        .flat_map(|u| [lease_granted(u), unit_committed(u)])
        .collect();
    let bytes = frames(&records);
    let mut group = c.benchmark_group("journal_decode");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::ElementsAndBytes {
            elements: FRAMES as u64,
            bytes: bytes.len() as u64,
        });
    group.bench_function(format!("scan/{FRAMES}_frames"), |b| {
        b.iter(|| {
            let scan = frame::scan(black_box(&bytes));
            assert_eq!(
                (scan.payloads.len(), scan.tail),
                (FRAMES, frame::Tail::Clean)
            );
            scan.valid_len
        })
    });
    // As recovery reads a journal; the records are dropped untimed (recovery
    // keeps them until it has replayed them). Tens of milliseconds a run.
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    group.bench_function(format!("scan_and_decode/{FRAMES}_frames"), |b| {
        b.iter_batched(
            || (),
            |()| {
                let scan = frame::scan(black_box(&bytes));
                let decoded: Vec<Record> = scan
                    .payloads
                    .iter()
                    .map(|&(_, payload)| Record::decode(payload).unwrap())
                    .collect();
                assert_eq!(decoded.len(), FRAMES);
                decoded
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
