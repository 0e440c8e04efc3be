use std::io::Read;

use object_store::PutPayload;
use object_store::memory::InMemory;

use super::*;
use crate::lines::open_slice;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Stores with an in-memory bucket `b` holding `objects`.
async fn stores(objects: &[(&str, &[u8])]) -> (Stores, Arc<dyn ObjectStore>) {
    let memory: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    for (key, data) in objects {
        let payload = PutPayload::from(data.to_vec());
        memory.put(&ObjectPath::from(*key), payload).await.unwrap();
    }
    let stores = Stores::default();
    stores.insert("b", Arc::clone(&memory));
    (stores, memory)
}

/// The bytes of the lines `slice` owns.
fn owned(slice: &InputSlice) -> Vec<u8> {
    let (mut reader, _) = open_slice(slice).unwrap();
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).unwrap();
    bytes
}

#[test]
fn a_remote_slice_owns_the_same_lines_as_the_whole_file() {
    let long_line = "x".repeat(200 * 1024);
    let text = format!("ab\ncde\n\nfghij\n{long_line}\nk\nlast-without-newline");
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    std::fs::write(&whole, &text).unwrap();
    let len = text.len() as u64;
    let rt = runtime();
    let (stores, _) = rt.block_on(stores(&[("in/t.txt", text.as_bytes())]));
    let object = stores.object("s3://b/in/t.txt").unwrap();
    let cuts = [
        0,
        1,
        2,
        3,
        4,
        7,
        8,
        9,
        14,
        15,
        100,
        70_000,
        len - 30,
        len - 21,
        len - 1,
        len,
    ];
    for (i, &start) in cuts.iter().enumerate() {
        for &end in &cuts[i..] {
            let dest = dir.path().join(format!("copy-{start}-{end}"));
            let local = rt
                .block_on(object.download_slice(
                    &local_slice(&whole, start, end),
                    &dest,
                    &CancelToken::new(),
                ))
                .unwrap();
            let want = owned(&local_slice(&whole, start, end));
            assert_eq!(owned(&local), want, "slice [{start}, {end})");
            // Only what the slice can need is downloaded: from the byte
            // before it to the end of the line holding its last byte.
            let from = start.saturating_sub(1);
            let needed = match text
                .as_bytes()
                .get(end.saturating_sub(1).max(from) as usize..)
            {
                _ if start >= len || start >= end => 0,
                Some(rest) => {
                    rest.iter()
                        .position(|&b| b == b'\n')
                        .map_or(len, |i| end.saturating_sub(1).max(from) + i as u64 + 1)
                        - from
                }
                None => len - from,
            };
            let copied = std::fs::metadata(&dest).unwrap().len();
            assert_eq!(copied, needed, "[{start}, {end})");
        }
    }
}

#[test]
fn staging_downloads_inputs_and_uploads_outputs_under_the_prefix() {
    let rt = runtime();
    let (stores, memory) = rt.block_on(stores(&[
        ("in/a.txt", b"alpha\n"),
        ("in/b.txt", b"one\ntwo\nthree\n"),
    ]));
    let lease = Lease {
        store_url: "s3://b/pfx".into(),
        output_prefix: "p-1/g/0/7/".into(),
        ..Lease::default()
    };
    let mut unit = UnitContext {
        lease_id: 7,
        inputs: vec!["s3://b/in/a.txt".into(), "/local/kept".into()],
        input_slices: vec![local_slice(Path::new("s3://b/in/b.txt"), 1, 5)],
        ..UnitContext::default()
    };
    let staging = rt
        .block_on(Staging::prepare(&stores, &lease, &mut unit))
        .unwrap();
    assert_eq!(unit.inputs[0].file_name().unwrap(), "a.txt");
    assert_eq!(std::fs::read(&unit.inputs[0]).unwrap(), b"alpha\n");
    assert_eq!(unit.inputs[1], PathBuf::from("/local/kept"));
    assert_eq!(owned(&unit.input_slices[0]), b"two\n");

    crate::outputs::prepare_output_dir(&unit.output_dir).unwrap();
    std::fs::create_dir(unit.output_dir.join("sub")).unwrap();
    std::fs::write(unit.output_dir.join("sub/out.txt"), b"result").unwrap();
    let files = crate::outputs::collect_outputs(&unit.output_dir).unwrap();
    rt.block_on(staging.upload(&unit.output_dir, &files, &unit.cancel))
        .unwrap();
    let key = ObjectPath::from("pfx/p-1/g/0/7/sub/out.txt");
    let got = rt.block_on(async { memory.get(&key).await.unwrap().bytes().await.unwrap() });
    assert_eq!(&got[..], b"result");

    let scratch = unit.output_dir.parent().unwrap().to_path_buf();
    drop(staging);
    assert!(
        !scratch.exists(),
        "local copies are removed with the staging"
    );
}

#[test]
fn a_missing_object_fails_with_its_url() {
    let rt = runtime();
    let (stores, _) = rt.block_on(stores(&[]));
    let mut unit = UnitContext {
        inputs: vec!["s3://b/in/missing.txt".into()],
        ..UnitContext::default()
    };
    let err = rt
        .block_on(Staging::prepare(&stores, &Lease::default(), &mut unit))
        .err()
        .unwrap();
    assert!(
        err.message()
            .contains("cannot download s3://b/in/missing.txt"),
        "{err}"
    );
}

#[test]
fn a_local_store_and_local_inputs_stage_nothing() {
    let rt = runtime();
    let stores = Stores::default();
    let mut unit = UnitContext {
        inputs: vec!["/data/a".into()],
        output_dir: "/store/p/g/0/1".into(),
        ..UnitContext::default()
    };
    let before = unit.clone();
    let staging = rt
        .block_on(Staging::prepare(&stores, &Lease::default(), &mut unit))
        .unwrap();
    assert_eq!(
        (unit.inputs, unit.output_dir),
        (before.inputs, before.output_dir)
    );
    assert!(
        staging._scratch.path().is_none(),
        "no scratch directory made"
    );
}
