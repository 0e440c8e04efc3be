//! The command of an `exec` attempt, run under a supervisor (see
//! [`crate::supervisor`]), and the threads that drain its output pipes.
//!
//! Commands are usually shell scripts: the program we start forks more
//! processes, and some of them may leave its process group or session
//! (`setsid`, daemons). When an attempt ends (the command exited, or the
//! attempt was cancelled) every one of them is killed before the worker
//! lists the outputs, so nothing keeps writing to the attempt's output
//! directory after the commit or holds our pipes open. The supervisor
//! does the killing, because only it (a child subreaper) can find the
//! processes that left the group. We see the attempt as over only when the
//! supervisor has exited, and it exits only once the whole tree is gone.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::task_log::{Stream, TaskLog};

/// Longest line logged or kept in the stderr tail; longer lines are split,
/// so a child printing without newlines cannot grow our memory.
pub const LINE_BYTES_MAX: usize = 4 * 1024;
/// Lines of stderr kept for the error text of a failed run.
pub const STDERR_TAIL_LINES: usize = 20;
/// Bytes of stderr kept for the error text of a failed run.
pub const STDERR_TAIL_BYTES_MAX: usize = 4 * 1024;
/// How long a supervisor asked to stop may take to kill the command's
/// processes before it is SIGKILLed itself (it takes milliseconds unless a
/// process cannot die, e.g. stuck in uninterruptible I/O).
pub const SUPERVISOR_STOP_WAIT_MS: u64 = 5_000;

/// A pidfd for `pid` (a child not yet reaped, so the pid is still its),
/// or `None` if the kernel cannot make one.
fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: the kernel just made `fd`, and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A spawned command's supervisor, leader of its own process group (so a
/// terminal's Ctrl-C meant for the worker does not reach it), not yet
/// reaped. Its exit status is the command's.
pub struct SupervisedChild {
    /// `None` once reaped.
    child: Option<Child>,
    /// The supervisor's process id.
    pid: libc::pid_t,
    /// A pidfd of the supervisor (Linux 5.3+), readable once it exits, so
    /// its exit is waited for as an event; `None` where the kernel has no
    /// pidfd_open (then [`Self::wait_exited`] sleeps and looks).
    pidfd: Option<OwnedFd>,
}

impl SupervisedChild {
    /// Spawns `command` under a new supervisor. The supervisor stops the
    /// command if the thread that spawned it dies first (the worker was
    /// SIGKILLed): a shell loop must not run on with nobody to reap it.
    pub fn spawn(command: &mut Command) -> io::Result<Self> {
        // SAFETY: getpid is async-signal-safe; it runs before the fork.
        let worker = unsafe { libc::getpid() };
        // SAFETY: become_supervisor is written for a pre_exec hook: only
        // async-signal-safe system calls between fork and exec.
        unsafe {
            command.pre_exec(move || crate::supervisor::become_supervisor(worker));
        }
        let child = command.process_group(0).spawn()?;
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        Ok(Self {
            child: Some(child),
            pid,
            pidfd: pidfd_open(pid),
        })
    }

    /// Waits up to `timeout` for the supervisor to exit (at once when it
    /// does: the pidfd becomes readable); true if it has. A command that
    /// ends is noticed in microseconds, not at the next look.
    pub fn wait_exited(&self, timeout: Duration) -> io::Result<bool> {
        if self.has_exited()? {
            return Ok(true);
        }
        match &self.pidfd {
            Some(fd) => {
                let mut poll = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
                // SAFETY: one valid pollfd; the fd lives as long as `self`.
                let rc = unsafe { libc::poll(&mut poll, 1, ms) };
                if rc < 0 {
                    let err = io::Error::last_os_error();
                    if err.kind() != io::ErrorKind::Interrupted {
                        return Err(err);
                    }
                }
            }
            None => thread::sleep(timeout),
        }
        self.has_exited()
    }

    /// The command's stdout and stderr pipes (once; `None` afterwards).
    pub fn take_pipes(&mut self) -> (Option<ChildStdout>, Option<ChildStderr>) {
        let child = self.child.as_mut().expect("not reaped");
        (child.stdout.take(), child.stderr.take())
    }

    /// True once the supervisor has exited, which it does only after the
    /// command and everything it started are gone. Does not reap it
    /// (`WNOWAIT`), so its pid cannot be reused until [`Self::reap`].
    pub fn has_exited(&self) -> io::Result<bool> {
        if self.child.is_none() {
            return Ok(true);
        }
        loop {
            // SAFETY: siginfo_t is plain data; all-zero is a valid value and
            // waitid only writes into it.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
            // SAFETY: `info` is a valid, writable siginfo_t.
            let rc = unsafe { libc::waitid(libc::P_PID, self.pid as libc::id_t, &mut info, flags) };
            if rc == 0 {
                // With WNOHANG, si_pid stays 0 while the child still runs.
                // SAFETY: waitid filled `info` (or left it zeroed).
                return Ok(unsafe { info.si_pid() } != 0);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Stops the command: asks the supervisor (SIGTERM) to kill every
    /// process of the attempt, and waits until it has exited. A
    /// supervisor that takes longer than [`SUPERVISOR_STOP_WAIT_MS`] is
    /// SIGKILLed (its command dies with it; see [`crate::supervisor`]).
    /// Returns at once when the supervisor has exited already.
    pub fn stop(&self) {
        if self.has_exited().unwrap_or(true) {
            return;
        }
        // SAFETY: kill has no memory-safety preconditions. The supervisor
        // is not reaped, so its pid still names it.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_millis(SUPERVISOR_STOP_WAIT_MS);
        while Instant::now() < deadline {
            // At once on a pidfd; where there is none, a look every 10 ms.
            let left = deadline.saturating_duration_since(Instant::now());
            if self
                .wait_exited(left.min(Duration::from_millis(10)))
                .unwrap_or(true)
            {
                return;
            }
        }
        tracing::warn!(
            pid = self.pid,
            "the command's supervisor did not finish killing its processes within \
             {SUPERVISOR_STOP_WAIT_MS} ms; killing it"
        );
        // SAFETY: as above.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
    }

    /// Waits for the supervisor to exit and reaps it; its status is the
    /// command's (or the stop signal's, if it was stopped).
    pub fn reap(mut self) -> io::Result<ExitStatus> {
        let mut child = self.child.take().expect("reaped once");
        child.wait()
    }
}

impl Drop for SupervisedChild {
    /// An early return must not leave the command running unsupervised.
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

/// The last lines of the child's stderr, for the error text.
#[derive(Debug, Default)]
pub struct Tail {
    lines: VecDeque<String>,
}

impl Tail {
    fn push(&mut self, line: &[u8]) {
        if self.lines.len() == STDERR_TAIL_LINES {
            self.lines.pop_front();
        }
        self.lines
            .push_back(String::from_utf8_lossy(line).into_owned());
    }

    /// The kept lines joined by newlines, cut to the last 4 KiB.
    pub fn render(&self) -> String {
        let text = Vec::from(self.lines.clone()).join("\n");
        let mut start = text.len().saturating_sub(STDERR_TAIL_BYTES_MAX);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_string()
    }
}

/// The threads reading the child's stdout and stderr. Reading both at once
/// matters: a child blocked on a full stderr pipe while we wait on stdout (or
/// on its exit) would never finish.
pub struct Drains {
    /// Each drain thread sends once when its pipe closes.
    done: mpsc::Receiver<()>,
    running: usize,
    /// Stderr's last lines; shared with the stderr thread.
    tail: Arc<Mutex<Tail>>,
}

impl Drains {
    /// Starts a thread per pipe; lines are logged at debug level, and the
    /// bytes as they come go to the attempt's `log` (see [`crate::logs`]).
    pub fn start(child: &mut SupervisedChild, log: &TaskLog) -> io::Result<Self> {
        let (stdout, stderr) = child.take_pipes();
        let stdout = stdout.map(|pipe| Tee::new(pipe, log, Stream::Stdout));
        let stderr = stderr.map(|pipe| Tee::new(pipe, log, Stream::Stderr));
        let tail = Arc::new(Mutex::new(Tail::default()));
        let (done_tx, done) = mpsc::channel();
        let mut running = 0;
        if let Some(stdout) = stdout {
            let done_tx = done_tx.clone();
            spawn_drain(
                "stdout",
                stdout,
                move |line| log_line("stdout", line),
                done_tx,
            )?;
            running += 1;
        }
        if let Some(stderr) = stderr {
            let tail_writer = tail.clone();
            let on_line = move |line: &[u8]| {
                log_line("stderr", line);
                tail_writer.lock().push(line);
            };
            spawn_drain("stderr", stderr, on_line, done_tx)?;
            running += 1;
        }
        Ok(Self {
            done,
            running,
            tail,
        })
    }

    /// Waits up to `wait` for both pipes to close, then returns the stderr
    /// tail. Once the supervisor has exited only a process that escaped it
    /// (see [`crate::supervisor`]) can hold the pipes open, maybe forever;
    /// then we stop waiting and leave its thread behind.
    pub fn finish(mut self, wait: Duration) -> String {
        let deadline = Instant::now() + wait;
        while self.running > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.done.recv_timeout(left) {
                Ok(()) => self.running -= 1,
                Err(_) => {
                    tracing::warn!(
                        "a process that escaped the command's supervisor holds its output pipes open; not waiting for it"
                    );
                    break;
                }
            }
        }
        self.tail.lock().render()
    }
}

/// A pipe whose bytes are copied to the attempt's log as they are read,
/// before they are cut into lines: the log keeps them exactly.
struct Tee<R> {
    pipe: R,
    log: TaskLog,
    stream: Stream,
}

impl<R> Tee<R> {
    fn new(pipe: R, log: &TaskLog, stream: Stream) -> Self {
        Self {
            pipe,
            log: log.clone(),
            stream,
        }
    }
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.pipe.read(buf)?;
        self.log.write(self.stream, &buf[..read]);
        Ok(read)
    }
}

fn log_line(stream: &'static str, line: &[u8]) {
    tracing::debug!(stream, "{}", String::from_utf8_lossy(line));
}

/// Spawns a thread calling `on_line` for each line of `pipe`, inside the
/// caller's tracing span (so the lines carry the unit's fields).
fn spawn_drain(
    name: &str,
    pipe: impl Read + Send + 'static,
    on_line: impl FnMut(&[u8]) + Send + 'static,
    done_tx: mpsc::Sender<()>,
) -> io::Result<()> {
    let span = tracing::Span::current();
    thread::Builder::new()
        .name(format!("exec-{name}"))
        .spawn(move || {
            let _entered = span.enter();
            if let Err(err) = for_each_line(pipe, on_line) {
                tracing::debug!(%err, "reading the command's output failed");
            }
            let _ = done_tx.send(());
        })?;
    Ok(())
}

/// Calls `on_line` with each line (without its newline) of `reader`, lines
/// longer than [`LINE_BYTES_MAX`] being split.
pub fn for_each_line(reader: impl Read, mut on_line: impl FnMut(&[u8])) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(8 * 1024, reader);
    let mut line = Vec::with_capacity(256);
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        if buf.is_empty() {
            if !line.is_empty() {
                on_line(&line);
            }
            return Ok(());
        }
        let room = LINE_BYTES_MAX - line.len();
        let window = &buf[..buf.len().min(room)];
        if let Some(newline) = window.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&window[..newline]);
            reader.consume(newline + 1);
            on_line(&line);
            line.clear();
        } else {
            let taken = window.len();
            line.extend_from_slice(window);
            reader.consume(taken);
            if line.len() == LINE_BYTES_MAX {
                on_line(&line);
                line.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(input: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        for_each_line(input, |line| lines.push(line.to_vec())).unwrap();
        lines
    }

    #[test]
    fn splits_lines_and_keeps_a_last_unterminated_one() {
        assert_eq!(
            lines_of(b"a\nbb\n\nccc"),
            vec![b"a".to_vec(), b"bb".to_vec(), vec![], b"ccc".to_vec()]
        );
        assert!(lines_of(b"").is_empty());
    }

    #[test]
    fn long_lines_are_split_at_the_limit() {
        let input = vec![b'x'; LINE_BYTES_MAX * 2 + 10];
        let lengths: Vec<usize> = lines_of(&input).iter().map(Vec::len).collect();
        assert_eq!(lengths, vec![LINE_BYTES_MAX, LINE_BYTES_MAX, 10]);
    }

    #[test]
    fn tail_keeps_the_last_lines_and_bytes() {
        let mut tail = Tail::default();
        for i in 0..100 {
            tail.push(format!("line {i}").as_bytes());
        }
        let text = tail.render();
        assert!(text.starts_with("line 80\n"), "{text}");
        assert!(text.ends_with("line 99"), "{text}");

        let mut tail = Tail::default();
        for _ in 0..STDERR_TAIL_LINES {
            tail.push(&[b'y'; LINE_BYTES_MAX]);
        }
        assert_eq!(tail.render().len(), STDERR_TAIL_BYTES_MAX);
    }
}
