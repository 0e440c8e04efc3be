//! A remote store end to end, on a real S3-compatible server on loopback
//! (moto): `taskmaster serve --store s3://bkt/pfx`, a worker and tmctl all
//! reach it through the `AWS_*` variables. Inputs are listed from the bucket
//! and cut into units (byte slices of an object included), outputs are
//! uploaded (a multipart one among them) and named by URL, and the objects
//! of an attempt whose lease expired are swept.
//!
//! Needs `moto[server]` (`python3 -m pip install 'moto[server]'`, which
//! .ci/run does); without it the test prints why and passes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use taskmaster_client::Client;
use taskmaster_proto::v1::*;
use taskmaster_tests::moto::Moto;
use taskmaster_tests::*;

const BUCKET: &str = "bkt";
/// Bytes of the output big enough to go up as a multipart upload.
const BIG_OUTPUT_BYTES: u64 = 12 * 1024 * 1024;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The folder with the pipeline: `count` reads `s3://bkt/in/*.txt` in
/// 16-byte units and writes a word count (unit 0 also a 12 MiB file in a
/// subfolder); `label` runs after it, one unit per `count` unit.
fn pipeline(dir: &Path) -> PathBuf {
    write_file(
        &dir.join("count.sh"),
        format!(
            "cat $TM_INPUTS | wc -w | tr -d ' ' > \"$TM_OUTPUT_DIR/words\"\n\
             if [ \"$TM_UNIT\" = 0 ]; then\n\
               mkdir \"$TM_OUTPUT_DIR/extra\"\n\
               head -c {BIG_OUTPUT_BYTES} /dev/zero > \"$TM_OUTPUT_DIR/extra/big.bin\"\n\
             fi\n"
        ),
    );
    write_file(
        &dir.join("label.sh"),
        "for f in $TM_INPUTS; do case \"$f\" in */words) n=$(cat \"$f\");; esac; done\n\
         echo \"unit=$TM_UNIT words=$n\" > \"$TM_OUTPUT_DIR/label\"\n",
    );
    let file = dir.join("pipeline.toml");
    write_file(
        &file,
        r#"
name = "s3words"
[[groups]]
name = "count"
command = ["sh", "count.sh"]
inputs = ["s3://bkt/in/*.txt"]
unit_bytes = 16
[[groups]]
name = "label"
command = ["sh", "label.sh"]
after = ["count"]
"#,
    );
    file
}

/// The input objects. a.txt and b.txt (10 bytes) make unit 0; big.txt
/// (49 bytes) is cut into 4 slices of 12-13 bytes, which own its lines
/// "one two three", "four five", "six seven eight nine" and "ten".
const INPUTS: &[(&str, &str)] = &[
    ("in/a.txt", "a b c\n"),
    ("in/b.txt", "d e\n"),
    (
        "in/big.txt",
        "one two three\nfour five\nsix seven eight nine\nten\n",
    ),
    ("in/skip.csv", "not matched by the pattern\n"),
];
/// The word count of each `count` unit, in unit order.
const WORDS: &[&str] = &["5\n", "3\n", "2\n", "4\n", "1\n"];

async fn get(s3: &Arc<dyn ObjectStore>, url: &str) -> Result<Vec<u8>, object_store::Error> {
    let key = url
        .strip_prefix(&format!("s3://{BUCKET}/"))
        .unwrap_or_else(|| panic!("{url} is not in s3://{BUCKET}"));
    let got = s3.get(&ObjectPath::parse(key).unwrap()).await?;
    Ok(got.bytes().await?.to_vec())
}

#[test]
fn t35_a_two_stage_pipeline_runs_on_an_s3_store() {
    let tmp = tempfile::tempdir().unwrap();
    let moto = match Moto::start(tmp.path()) {
        Ok(moto) => moto,
        Err(why) => {
            println!("t35 skipped: no S3 server to test against: {why}");
            return;
        }
    };
    moto.create_bucket(BUCKET);
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let rt = runtime();
    let s3 = moto.bucket(BUCKET);
    rt.block_on(async {
        for (key, text) in INPUTS {
            let payload = PutPayload::from(text.as_bytes().to_vec());
            s3.put(&ObjectPath::parse(key).unwrap(), payload)
                .await
                .unwrap();
        }
    });
    let data = tmp.path().join("data");
    let master = MasterProcess::start_env(
        &data,
        "127.0.0.1:0",
        1_500,
        &["--store", "s3://bkt/pfx/"],
        &env,
    );
    let url = master.url();
    let out = tmctl_env(
        &url,
        &[
            "submit",
            pipeline(&tmp.path().join("job")).to_str().unwrap(),
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "submit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string();

    let abandoned = rt.block_on(abandon_an_attempt(&url, &s3));

    let _worker = WorkerProcess::start_env(&url, 2, tmp.path(), &env);
    wait_until("the pipeline to succeed", Duration::from_secs(120), || {
        let status = status_json(&url, &id);
        assert_ne!(status["state"], "failed", "{status}");
        (status["state"] == "succeeded").then_some(())
    });

    let counts = committed_outputs(&url, &id, "count");
    let words = |group: &str, urls: &[String]| -> Vec<String> {
        let words = urls.iter().filter(|u| u.ends_with(&format!("/{group}")));
        let text = |url: &String| String::from_utf8(rt.block_on(get(&s3, url)).unwrap()).unwrap();
        words.map(text).collect()
    };
    for (unit, count) in counts.iter().filter(|u| u.ends_with("/words")).enumerate() {
        assert!(
            count.starts_with(&format!("s3://bkt/pfx/{id}/count/{unit}/")),
            "{count}"
        );
    }
    assert_eq!(words("words", &counts), WORDS);
    let labels = committed_outputs(&url, &id, "label");
    assert_eq!(labels.len(), WORDS.len(), "{labels:?}");
    // A `label` unit is made as a `count` unit commits, so their numbers
    // differ: compare the counts they carried over.
    let mut carried = Vec::new();
    for (unit, (label, text)) in labels.iter().zip(words("label", &labels)).enumerate() {
        assert!(
            label.starts_with(&format!("s3://bkt/pfx/{id}/label/{unit}/")),
            "{label}"
        );
        let rest = text
            .strip_prefix(&format!("unit={unit} words="))
            .unwrap_or_else(|| panic!("{label}: {text:?}"));
        carried.push(rest.to_string());
    }
    carried.sort();
    let mut want: Vec<&str> = WORDS.to_vec();
    want.sort();
    assert_eq!(carried, want);
    let big = counts
        .iter()
        .find(|u| u.ends_with("/extra/big.bin"))
        .expect("the big output");
    let big_bytes = rt.block_on(get(&s3, big)).unwrap();
    assert_eq!(big_bytes.len() as u64, BIG_OUTPUT_BYTES);
    assert!(big_bytes.iter().all(|&b| b == 0));

    // The sweep runs every lease time (1.5 s); committed objects stay.
    wait_until(
        "the abandoned attempt's object to be swept",
        Duration::from_secs(30),
        || {
            let gone = rt.block_on(s3.head(&abandoned));
            matches!(gone, Err(object_store::Error::NotFound { .. })).then_some(())
        },
    );
    for output in counts.iter().chain(&labels) {
        rt.block_on(get(&s3, output))
            .unwrap_or_else(|e| panic!("{output} is gone: {e}"));
    }
}

/// As a worker would: leases a `count` unit, uploads an object under the
/// attempt's prefix, lets the lease expire and has its commit refused.
/// Returns the object's key, for the sweep to delete.
async fn abandon_an_attempt(url: &str, s3: &Arc<dyn ObjectStore>) -> ObjectPath {
    let client = Client::connect(url).await.unwrap();
    let request = LeaseRequest {
        worker_id: "abandoner".into(),
        max_units: 1,
        wait_ms: 10_000,
        compact: false,
        worker_slots: 0,
    };
    let lease = client
        .raw()
        .lease(request)
        .await
        .unwrap()
        .into_inner()
        .leases
        .remove(0);
    assert_eq!(lease.store_url, "s3://bkt/pfx");
    assert!(lease.store_root.is_empty(), "{lease:?}");
    assert!(
        lease
            .inputs
            .iter()
            .chain(lease.input_slices.iter().map(|s| &s.path))
            .all(|i| i.starts_with("s3://bkt/in/"))
    );
    let key = ObjectPath::parse(format!("pfx/{}left-behind", lease.output_prefix)).unwrap();
    s3.put(&key, PutPayload::from_static(b"never committed"))
        .await
        .unwrap();

    // Not renewed: the lease runs out and the unit goes back to pending.
    let lease_ref = LeaseRef {
        unit: lease.unit.clone(),
        lease_id: lease.lease_id,
        config_version: lease.config_version,
        incarnation: lease.incarnation,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let request = GetStatusRequest {
            pipeline_id: lease_ref.unit.as_ref().unwrap().pipeline_id.clone(),
        };
        let status = client.raw().get_status(request).await.unwrap().into_inner();
        if status.retries >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let files = vec![OutputFile {
        name: "left-behind".into(),
        size_bytes: 15,
    }];
    let commit = CommitRequest {
        server_token: lease.server_token.clone(),
        items: vec![CommitItem {
            lease: Some(lease_ref),
            result: Some(commit_item::Result::Outputs(Outputs { files })),
        }],
        lease_next: None,
    };
    let result = client
        .raw()
        .commit(commit)
        .await
        .unwrap()
        .into_inner()
        .results
        .remove(0);
    assert_ne!(
        result.code, 0,
        "a commit after expiry is refused: {result:?}"
    );
    key
}
