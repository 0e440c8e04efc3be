//! Real processes for the fault harness: masters that restart on the same
//! data dir and port (optionally inside another mount namespace, and with a
//! fail point armed through FAILPOINTS) and workers with an identity and
//! optional fail points. Every process is killed when its handle drops.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{bin, wait_for_line};

/// How long a master may take to print that it listens.
const MASTER_START_WAIT: Duration = Duration::from_secs(30);

/// A child process, SIGKILLed and reaped on drop.
pub struct Proc {
    child: Child,
    exited: Option<ExitStatus>,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Proc {
    fn spawn(command: &mut Command, log: &Path) -> Proc {
        let stderr = std::fs::File::create(log).expect("process log");
        let child = command
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {command:?}: {e}"));
        Proc {
            child,
            exited: None,
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` (libc::SIGSTOP, ...); false if the process is gone.
    pub fn signal(&self, signal: i32) -> bool {
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet
        // while `exited` is None, so the pid cannot have been reused.
        self.exited.is_none() && unsafe { libc::kill(self.pid(), signal) } == 0
    }

    /// The exit status, if the process has exited (stopped is not exited).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, then reap. Works on stopped processes too.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.exited() {
            return status;
        }
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for a killed child");
        self.exited = Some(status);
        status
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// True if the process died of SIGABRT: a `return` fail point fired
/// (`std::process::abort`).
pub fn aborted(status: ExitStatus) -> bool {
    status.signal() == Some(libc::SIGABRT)
}

/// The master's fail points around the journal write and its compaction
/// (master/src/journal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailPoint {
    BeforeWrite,
    BeforeSync,
    AfterSync,
    /// The compaction's new file written, not yet synced.
    CompactionCopied,
    CompactionBeforeRename,
    /// Renamed over the journal, the directory not yet synced.
    CompactionAfterRename,
}

impl FailPoint {
    /// Around every journal write: the random schedule arms these.
    pub const ALL: [FailPoint; 3] = [
        FailPoint::BeforeWrite,
        FailPoint::BeforeSync,
        FailPoint::AfterSync,
    ];

    /// Fire only while a snapshot's compaction runs.
    pub const COMPACTION: [FailPoint; 3] = [
        FailPoint::CompactionCopied,
        FailPoint::CompactionBeforeRename,
        FailPoint::CompactionAfterRename,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FailPoint::BeforeWrite => "journal-before-write",
            FailPoint::BeforeSync => "journal-before-sync",
            FailPoint::AfterSync => "journal-after-sync",
            FailPoint::CompactionCopied => "journal-compaction-copied",
            FailPoint::CompactionBeforeRename => "journal-compaction-before-rename",
            FailPoint::CompactionAfterRename => "journal-compaction-after-rename",
        }
    }
}

/// How to start a master, again and again, on the same data dir and port.
#[derive(Debug, Clone)]
pub struct MasterSpec {
    pub data_dir: PathBuf,
    /// A fixed `127.0.0.1:PORT`, so workers and the proxy find it again.
    pub listen: String,
    pub lease_ms: u64,
    /// `--store`, when outputs must live outside the data dir.
    pub store: Option<PathBuf>,
    /// A program (and its arguments) that runs `taskmaster`, e.g.
    /// `nsenter -t PID -m --` to start it in another mount namespace.
    pub wrapper: Vec<OsString>,
    /// Folder for the logs, one per start.
    pub log_dir: PathBuf,
    /// More `taskmaster serve` arguments, e.g. TLS and `--auth`
    /// (`access::Security::master_args`).
    pub extra_args: Vec<OsString>,
    /// It serves TLS: its URL is `https://`.
    pub tls: bool,
}

/// A running master.
pub struct Master {
    pub proc: Proc,
    pub addr: String,
    /// The fail point armed in this master, and its chance in percent.
    pub armed: Option<(FailPoint, u32)>,
    pub started: Instant,
    /// It serves TLS.
    pub tls: bool,
}

impl Master {
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }
}

/// A master that did not come up.
#[derive(Debug)]
pub struct StartError {
    /// How it exited (None: it never said it listens, and was killed).
    pub status: Option<ExitStatus>,
    pub log: String,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "master exited ({status}); log:\n{}", self.log),
            None => write!(f, "master did not start in time; log:\n{}", self.log),
        }
    }
}

impl MasterSpec {
    /// Starts a master, with `armed` as its FAILPOINTS; `n` numbers its log.
    pub fn start(&self, armed: Option<(FailPoint, u32)>, n: u32) -> Result<Master, StartError> {
        let failpoints = armed.map(|(point, percent)| format!("{}={percent}%return", point.name()));
        let log = self.log_dir.join(format!("master-{n}.log"));
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin("taskmaster"));
                c
            }
            None => Command::new(bin("taskmaster")),
        };
        command
            .args(["serve", "--listen", &self.listen])
            .args(["--lease-ms", &self.lease_ms.to_string()])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra_args)
            .stdout(Stdio::piped())
            .env_remove("FAILPOINTS");
        if let Some(store) = &self.store {
            command.arg("--store").arg(store);
        }
        if let Some(failpoints) = failpoints {
            command.env("FAILPOINTS", failpoints);
        }
        let mut proc = Proc::spawn(&mut command, &log);
        let stdout = proc.child.stdout.take().expect("master stdout");
        match wait_for_line(stdout, "taskmaster listening on ", MASTER_START_WAIT) {
            Some(addr) => Ok(Master {
                proc,
                addr,
                armed,
                started: Instant::now(),
                tls: self.tls,
            }),
            None => {
                let status = proc.wait_exit(Duration::from_secs(5));
                proc.kill();
                Err(StartError {
                    status,
                    log: proc.log_text(),
                })
            }
        }
    }
}

/// Starts `taskmaster-worker` against `master_url`, named `id` (which its
/// exec tasks see as FAULT_WORKER), with `failpoints` as FAILPOINTS and
/// `env` added (TLS files, for a secure run).
pub fn start_worker(
    master_url: &str,
    slots: u32,
    id: &str,
    failpoints: Option<&str>,
    log: &Path,
    env: &[(OsString, OsString)],
) -> Proc {
    let mut command = Command::new(bin("taskmaster-worker"));
    command
        .args(["--master", master_url, "--slots", &slots.to_string()])
        .args(["--worker-id", id])
        // Killed workers leave their scratch dirs behind: keep them in the
        // run's own directory, not the machine's /tmp.
        .env(
            "TMPDIR",
            crate::worker_tmpdir(log.parent().expect("a log file's dir")),
        )
        .env("FAULT_WORKER", id)
        .env_remove("FAILPOINTS")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null());
    if let Some(failpoints) = failpoints {
        command.env("FAILPOINTS", failpoints);
    }
    Proc::spawn(&mut command, log)
}

/// A mount namespace with a small tmpfs at `dir`, kept alive by a sleeping
/// process; `nsenter -t PID -m` starts programs inside it, and the test
/// reaches the tmpfs through `/proc/PID/root/DIR`. Gone when dropped.
pub struct TmpfsNamespace {
    holder: Proc,
    pub dir: PathBuf,
}

impl TmpfsNamespace {
    /// None if mount namespaces or tmpfs mounts are not allowed here.
    pub fn new(dir: &Path, size: &str, log_dir: &Path) -> Option<TmpfsNamespace> {
        std::fs::create_dir_all(dir).ok()?;
        let script =
            r#"mount -t tmpfs -o "size=$2" tmpfs "$1" || exit 97; echo mounted; exec sleep 100000"#;
        let mut command = Command::new("unshare");
        command
            .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
            .arg(dir)
            .arg(size)
            .stdout(Stdio::piped());
        let mut holder = Proc::spawn(&mut command, &log_dir.join("tmpfs-namespace.log"));
        let stdout = holder.child.stdout.take()?;
        wait_for_line(stdout, "mounted", Duration::from_secs(10))?;
        Some(TmpfsNamespace {
            holder,
            dir: dir.to_path_buf(),
        })
    }

    /// `path` (inside the tmpfs, as the namespace sees it) as the test
    /// process reaches it.
    pub fn outside(&self, path: &Path) -> PathBuf {
        let relative = path.strip_prefix("/").unwrap_or(path);
        PathBuf::from(format!("/proc/{}/root", self.holder.pid())).join(relative)
    }

    /// The wrapper that runs a program inside the namespace.
    pub fn wrapper(&self) -> Vec<OsString> {
        ["nsenter", "-t", &self.holder.pid().to_string(), "-m", "--"]
            .iter()
            .map(OsString::from)
            .collect()
    }
}
