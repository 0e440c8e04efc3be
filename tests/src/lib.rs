//! Helpers for end-to-end tests that run the real binaries: start a master
//! on 127.0.0.1, start workers, run tmctl. Every process is killed when its
//! handle drops, so a failing test leaves nothing running.
//!
//! - [`proxy`]: a fault-injecting TCP proxy (dropped connections, delayed
//!   chunks, lost replies) between workers and the master.
//! - [`faults`]: the fault-injection harness behind `t90_faults`: real
//!   processes, a seeded schedule of kills, pauses and master crashes, and
//!   the exactly-once invariants checked after each run.
//! - [`in_process`]: the real master served in-process (with a real
//!   worker, or a hand-driven one), for tests that do not kill it.
//! - [`moto`]: a moto S3 server on loopback, for the remote store's tests.
//! - [`fuzzing`]: the functions the fuzz targets in `fuzz/` call, shared
//!   with the regression test that replays `fuzz/regressions/`.

pub mod certs;
pub mod faults;
pub mod fuzzing;
pub mod in_process;
pub mod moto;
pub mod proxy;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Where the built binaries are: `TASKMASTER_BIN_DIR`, or the target dir
/// this test binary runs from (`cargo test --workspace` builds them there).
pub fn bin(name: &str) -> PathBuf {
    let dir = match std::env::var_os("TASKMASTER_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().expect("current exe");
            exe.parent()
                .and_then(Path::parent)
                .expect("target dir")
                .to_path_buf()
        }
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace` (or `cargo build --bins`) first",
        path.display()
    );
    path
}

/// A real `taskmaster serve` process.
pub struct MasterProcess {
    child: Child,
    pub addr: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl MasterProcess {
    /// Starts a master and waits until it listens. `listen` may use port 0.
    pub fn start(data_dir: &Path, listen: &str, lease_ms: u64) -> MasterProcess {
        MasterProcess::start_with(data_dir, listen, lease_ms, &[])
    }

    /// [`MasterProcess::start`] with more `taskmaster serve` arguments,
    /// e.g. `["--max-in-flight", "2"]`.
    pub fn start_with(
        data_dir: &Path,
        listen: &str,
        lease_ms: u64,
        extra_args: &[&str],
    ) -> MasterProcess {
        let log = data_dir.with_extension(format!("master-{}.log", unique()));
        let mut child = Command::new(bin("taskmaster"))
            .args([
                "serve",
                "--listen",
                listen,
                "--lease-ms",
                &lease_ms.to_string(),
            ])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("master log"))
            .spawn()
            .expect("spawn taskmaster");
        let stdout = child.stdout.take().expect("stdout");
        let addr = wait_for_line(stdout, "taskmaster listening on ", Duration::from_secs(30))
            .unwrap_or_else(|| panic!("master did not start; log:\n{}", read(&log)));
        MasterProcess {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
            log,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Whether the process has ended (by itself: an armed fail point).
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        read(&self.log)
    }
}

impl Drop for MasterProcess {
    fn drop(&mut self) {
        self.kill();
        // Workers make committed outputs read-only; without this a test's
        // TempDir could not remove them when the tests run as a user.
        taskmaster_worker::outputs::make_dirs_writable(&self.data_dir);
    }
}

/// `<dir>/worker-tmp`, created: the TMPDIR of the workers tests start, so
/// what a killed worker leaves goes away with the test's directory.
pub fn worker_tmpdir(dir: &Path) -> PathBuf {
    let tmp = dir.join("worker-tmp");
    std::fs::create_dir_all(&tmp).expect("worker TMPDIR");
    tmp
}

/// A real `taskmaster-worker` process.
pub struct WorkerProcess {
    child: Child,
    pub log: PathBuf,
}

impl WorkerProcess {
    pub fn start(master_url: &str, slots: u32, log_dir: &Path) -> WorkerProcess {
        WorkerProcess::start_env(master_url, slots, log_dir, &[])
    }

    /// [`WorkerProcess::start`], as a worker should be run: held by file
    /// permissions. When the tests run as root, the worker process loses
    /// the capabilities that override them (from its bounding set, so its
    /// tasks cannot regain them either); otherwise it starts as usual.
    pub fn start_unprivileged(master_url: &str, slots: u32, log_dir: &Path) -> WorkerProcess {
        use std::os::unix::process::CommandExt;
        let mut command = worker_command(master_url, slots, log_dir, &[]);
        // SAFETY: prctl is async-signal-safe; it fails harmlessly (EPERM)
        // for a process that does not hold the capabilities.
        unsafe {
            command.pre_exec(|| {
                for cap in [CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER] {
                    libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
                }
                Ok(())
            });
        }
        WorkerProcess::spawn(command, log_dir)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (TERM, STOP, CONT, KILL) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name} failed");
    }

    /// Waits for the process to exit, up to `timeout`; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn log_text(&self) -> String {
        read(&self.log)
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tmctl --master URL ARGS...` to completion.
pub fn tmctl(master_url: &str, args: &[&str]) -> Output {
    Command::new(bin("tmctl"))
        .arg("--master")
        .arg(master_url)
        .args(args)
        .output()
        .expect("run tmctl")
}

/// stdout of a tmctl call that must succeed.
pub fn tmctl_ok(master_url: &str, args: &[&str]) -> String {
    succeeded(args, tmctl(master_url, args))
}

/// The stdout of `out`, from `tmctl ARGS`, which must have succeeded.
pub fn succeeded(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "tmctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// stderr of a tmctl call that must fail with exit code 2 (bad input or a
/// call the master refused); stdout must be empty.
pub fn tmctl_err(master_url: &str, args: &[&str]) -> String {
    let out = tmctl(master_url, args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "tmctl {args:?} should fail with exit 2: {stdout}{stderr}"
    );
    assert!(stdout.is_empty(), "tmctl {args:?} printed {stdout:?}");
    stderr
}

/// `tmctl status ID --json`, parsed.
pub fn status_json(master_url: &str, pipeline_id: &str) -> serde_json::Value {
    serde_json::from_str(&tmctl_ok(master_url, &["status", pipeline_id, "--json"]))
        .expect("status JSON")
}

/// Polls `check` every 20 ms until it returns Some, or panics after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free port on 127.0.0.1, for a master that must come back on the same
/// address after a restart.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Reads `stdout` on a thread until a line starts with `prefix`; returns
/// the rest of that line, or None after `timeout` or when `stdout` closes.
pub fn wait_for_line(
    stdout: impl std::io::Read + Send + 'static,
    prefix: &str,
    timeout: Duration,
) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    let prefix = prefix.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix(&prefix) {
                let _ = tx.send(rest.trim().to_string());
            }
        }
    });
    rx.recv_timeout(timeout).ok()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes `bytes` to `path`, creating its parent folders.
pub fn write_file(path: &Path, bytes: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().expect("a parent folder")).expect("create folders");
    std::fs::write(path, bytes).expect("write file");
}

/// Runs `tmctl --master URL ARGS...` to completion, like [`tmctl`], but
/// kills it and panics (with what it printed so far) after `timeout`, so a
/// `submit --wait` on a pipeline that never ends cannot hang a test.
pub fn tmctl_within(master_url: &str, args: &[&str], timeout: Duration) -> Output {
    let mut child = Command::new(bin("tmctl"))
        .arg("--master")
        .arg(master_url)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tmctl");
    // Drained on threads: a full pipe would stall tmctl and so the wait.
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = std::io::Read::read_to_end(&mut pipe, &mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for tmctl") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = stderr.join().unwrap_or_default();
            panic!(
                "tmctl {args:?} did not finish within {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout thread"),
        stderr: stderr.join().expect("stderr thread"),
    }
}

/// `tmctl submit FILE --wait` bounded by `timeout`: returns the pipeline
/// id (the last line of stdout) and tmctl's exit code (0 succeeded, 1
/// failed or cancelled).
pub fn submit_wait(master_url: &str, file: &Path, timeout: Duration) -> (String, Option<i32>) {
    let file = file.to_str().expect("UTF-8 path");
    let out = tmctl_within(
        master_url,
        &["submit", file, "--wait", "--poll-ms", "50"],
        timeout,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout.lines().last().unwrap_or_default().trim().to_string();
    assert!(
        !id.is_empty(),
        "tmctl submit {file} printed no id: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (id, out.status.code())
}

/// `tmctl outputs ID --group GROUP`: the group's committed output paths,
/// in unit order.
pub fn committed_outputs(master_url: &str, pipeline_id: &str, group: &str) -> Vec<String> {
    tmctl_ok(master_url, &["outputs", pipeline_id, "--group", group])
        .lines()
        .map(str::to_string)
        .collect()
}

/// The group named `name` in a `tmctl status --json` object.
pub fn group_in<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["groups"]
        .as_array()
        .and_then(|groups| groups.iter().find(|g| g["name"] == name))
        .unwrap_or_else(|| panic!("no group {name:?} in {status}"))
}

impl MasterProcess {
    /// [`MasterProcess::start_with`] with extra environment variables, e.g.
    /// the `AWS_*` settings of a remote store.
    pub fn start_env(
        data_dir: &Path,
        listen: &str,
        lease_ms: u64,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> MasterProcess {
        let log = data_dir.with_extension(format!("master-{}.log", unique()));
        let mut child = Command::new(bin("taskmaster"))
            .args(["serve", "--listen", listen])
            .args(["--lease-ms", &lease_ms.to_string()])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra_args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("master log"))
            .spawn()
            .expect("spawn taskmaster");
        let stdout = child.stdout.take().expect("stdout");
        let addr = wait_for_line(stdout, "taskmaster listening on ", Duration::from_secs(30))
            .unwrap_or_else(|| panic!("master did not start; log:\n{}", read(&log)));
        MasterProcess {
            child,
            addr,
            data_dir: data_dir.to_path_buf(),
            log,
        }
    }
}

impl WorkerProcess {
    /// [`WorkerProcess::start`] with extra environment variables.
    pub fn start_env(
        master_url: &str,
        slots: u32,
        log_dir: &Path,
        env: &[(&str, &str)],
    ) -> WorkerProcess {
        let command = worker_command(master_url, slots, log_dir, env);
        WorkerProcess::spawn(command, log_dir)
    }

    fn spawn(mut command: Command, log_dir: &Path) -> WorkerProcess {
        let log = log_dir.join(format!("worker-{}.log", unique()));
        let child = command
            .stderr(std::fs::File::create(&log).expect("worker log"))
            .spawn()
            .expect("spawn taskmaster-worker");
        WorkerProcess { child, log }
    }
}

/// Linux capabilities that override file permissions.
const CAP_DAC_OVERRIDE: libc::c_ulong = 1;
const CAP_DAC_READ_SEARCH: libc::c_ulong = 2;
const CAP_FOWNER: libc::c_ulong = 3;

/// The `taskmaster-worker` command line the tests start workers with.
fn worker_command(master_url: &str, slots: u32, log_dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(bin("taskmaster-worker"));
    command
        .args(["--master", master_url, "--slots", &slots.to_string()])
        // A worker killed mid-attempt leaves its scratch dir behind:
        // keep it in the test's directory, not the machine's /tmp.
        .env("TMPDIR", worker_tmpdir(log_dir))
        .envs(env.iter().copied())
        .stdout(Stdio::null());
    command
}

/// [`tmctl`] with extra environment variables (`tmctl submit` lists
/// `s3://` inputs with the `AWS_*` settings).
pub fn tmctl_env(master_url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(bin("tmctl"))
        .arg("--master")
        .arg(master_url)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run tmctl")
}
