//! A real `taskmaster` process for one bench run: started from the binary
//! next to `tmctl`, on a fresh temporary data dir and a free loopback port,
//! killed and its data dir removed at the end.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use super::BenchError;
use super::secure::MasterTls;

/// How long the master may take to start listening (recovery of an empty
/// data dir takes milliseconds, of millions of units seconds; a loaded
/// machine may be slow).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The line the master prints on stdout once it accepts connections.
const LISTENING_PREFIX: &str = "taskmaster listening on ";

/// Environment variables of `taskmaster serve` that would change the
/// master under test; the bench sets what it needs with flags (TLS and
/// `--auth` only with `--secure`, so a plain run is plain whatever the
/// shell exports).
const MASTER_ENV: [&str; 9] = [
    "TASKMASTER_DATA_DIR",
    "TASKMASTER_LISTEN",
    "TASKMASTER_LEASE_MS",
    "TASKMASTER_MAX_IN_FLIGHT",
    "TASKMASTER_STORE",
    "TASKMASTER_TLS_CERT",
    "TASKMASTER_TLS_KEY",
    "TASKMASTER_CLIENT_CA",
    "TASKMASTER_AUTH",
];

/// A running master process and the data dir it owns.
pub struct LocalMaster {
    /// Killed by [`LocalMaster::stop`], or on drop if the bench panics.
    child: Child,
    /// `http://127.0.0.1:<port>`.
    url: String,
    /// To start it again on the same data dir.
    binary: PathBuf,
    /// Removed on drop, after the process is gone.
    data_dir: tempfile::TempDir,
    /// With `--secure`: the certificate files it serves TLS with (and
    /// `--auth`).
    tls: Option<MasterTls>,
}

impl LocalMaster {
    /// The `taskmaster` binary beside the running executable (cargo puts
    /// both binaries of the workspace in the same directory).
    pub fn binary_beside_current_exe() -> Result<PathBuf, BenchError> {
        let exe = std::env::current_exe().map_err(|e| BenchError::MasterStart {
            what: format!("cannot find the running executable: {e}"),
        })?;
        Ok(exe.with_file_name("taskmaster"))
    }

    /// Starts `binary serve` on a new temporary data dir and port 0 (with
    /// `tls`: serving TLS with its files, and `--auth`), and waits until it
    /// says it is listening.
    pub async fn start(binary: &Path, tls: Option<MasterTls>) -> Result<LocalMaster, BenchError> {
        if !binary.is_file() {
            return Err(BenchError::MasterMissing {
                path: binary.display().to_string(),
            });
        }
        let data_dir = tempfile::Builder::new()
            .prefix("taskmaster-bench-")
            .tempdir()
            .map_err(|e| BenchError::MasterStart {
                what: format!("cannot create a temporary data dir: {e}"),
            })?;
        let (child, addr) = spawn(binary, data_dir.path(), tls.as_ref()).await?;
        Ok(LocalMaster {
            child,
            binary: binary.to_path_buf(),
            url: url(&addr, tls.is_some()),
            data_dir,
            tls,
        })
    }

    /// The data dir (where `--auth` writes the first admin token).
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The certificate files, when it serves TLS.
    pub fn tls(&self) -> Option<&MasterTls> {
        self.tls.as_ref()
    }

    /// Kills the master (SIGKILL: no clean shutdown, as in a crash) and
    /// starts it again on the same data dir; returns how long the new
    /// process took from its start until it listened, which is the time
    /// it spent recovering the state. The URL changes (a new port).
    pub async fn crash_and_restart(&mut self) -> Result<Duration, BenchError> {
        self.child
            .kill()
            .await
            .map_err(|e| BenchError::MasterStart {
                what: format!("cannot kill the master to restart it: {e}"),
            })?;
        let started = Instant::now();
        let (child, addr) = spawn(&self.binary, self.data_dir.path(), self.tls.as_ref()).await?;
        let took = started.elapsed();
        self.child = child;
        self.url = url(&addr, self.tls.is_some());
        Ok(took)
    }

    /// Bytes under the data dir (journal, snapshots, the local store).
    pub fn data_dir_bytes(&self) -> u64 {
        dir_bytes(self.data_dir.path())
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The process id, for attaching a profiler during a run.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Kills the master, waits for it to exit, then removes its data dir.
    /// Its journal is thrown away, so there is nothing to shut down
    /// gracefully.
    pub async fn stop(mut self) {
        if let Err(e) = self.child.kill().await {
            tracing::warn!(error = %e, "could not kill the bench's master");
        }
        // `self.data_dir` is removed as `self` drops here.
    }
}

/// The URL of a master listening at `addr`.
fn url(addr: &str, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{addr}")
}

/// Spawns `binary serve` on `data_dir` and port 0 (TLS and `--auth` with
/// `tls`); returns the process once it says it is listening, and its
/// address.
async fn spawn(
    binary: &Path,
    data_dir: &Path,
    tls: Option<&MasterTls>,
) -> Result<(Child, String), BenchError> {
    let mut command = Command::new(binary);
    command
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .args(tls.map(MasterTls::serve_args).unwrap_or_default())
        // Info lines per pipeline would only clutter the report.
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for name in MASTER_ENV {
        command.env_remove(name);
    }
    let mut child = command.spawn().map_err(|e| BenchError::MasterStart {
        what: format!("cannot run {}: {e}", binary.display()),
    })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let waited = tokio::time::timeout(START_TIMEOUT, listening_addr(stdout)).await;
    let failed = match waited {
        Ok(Ok(addr)) => return Ok((child, addr)),
        Ok(Err(what)) => what,
        Err(_) => format!("it did not listen within {} s", START_TIMEOUT.as_secs()),
    };
    let _ = child.kill().await;
    Err(BenchError::MasterStart { what: failed })
}

/// Total size of the files under `dir` (0 for what cannot be read).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&entry.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Reads the master's stdout until its "listening" line; returns the
/// address. Keeps draining stdout afterwards so the master never blocks
/// on a full pipe.
async fn listening_addr(stdout: ChildStdout) -> Result<String, String> {
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                if let Some(addr) = line.strip_prefix(LISTENING_PREFIX) {
                    let addr = addr.trim().to_string();
                    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                    return Ok(addr);
                }
            }
            Ok(None) => return Err("it exited before listening (its stderr is above)".into()),
            Err(e) => return Err(format!("cannot read its stdout: {e}")),
        }
    }
}
