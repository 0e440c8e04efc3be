//! A moto S3 server on 127.0.0.1 for tests of the remote store, killed on
//! drop (the same harness as `t35_object_store`'s, shared). Needs
//! `moto[server]` (`python3 -m pip install 'moto[server]'`, which .ci/run
//! does); [`Moto::start`] says why it could not start, and tests skip.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;

use crate::free_port;

pub struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    /// Starts moto and waits until it answers; `Err` says why it could not.
    pub fn start(log_dir: &Path) -> Result<Moto, String> {
        let port = free_port();
        let log = log_dir.join("moto.log");
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("cannot run python3: {e}"))?;
        let mut moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = moto.child.try_wait() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("moto exited ({status}): {}", log.trim()));
            }
            if http(port, "GET", "/").is_ok_and(|status| status == 200) {
                return Ok(moto);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("moto did not answer within 60 s".into())
    }

    /// Creates `bucket` (moto does not check credentials).
    pub fn create_bucket(&self, bucket: &str) {
        let status = http(self.port, "PUT", &format!("/{bucket}")).expect("create the bucket");
        assert_eq!(status, 200, "creating bucket {bucket}");
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `AWS_*` variables every process gets.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// The test's own client of `bucket`.
    pub fn bucket(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        let store = AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_bucket_name(bucket)
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .with_region("us-east-1")
            .build()
            .expect("an S3 client");
        Arc::new(store)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One bodyless HTTP/1.1 request to moto; returns the status code.
fn http(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    let status = reply.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    status.ok_or_else(|| std::io::Error::other(format!("not HTTP: {reply:.80}")))
}
