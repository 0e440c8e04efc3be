//! The attempt's supervisor: a small process between the worker and the
//! command that makes sure nothing the command started outlives its
//! attempt, not even a process that left the command's process group or
//! session (`setsid`, a double fork).
//!
//! [`become_supervisor`] is a `Command::pre_exec` hook. The process std
//! forks for the command becomes the supervisor instead: it makes itself a
//! child subreaper (`PR_SET_CHILD_SUBREAPER`), so that every process
//! orphaned below it is reparented to it rather than to init, and forks
//! again; that second child, in a process group of its own, returns from
//! the hook and std execs it into the command. The supervisor then waits
//! until the command exits or it is told to stop: SIGTERM, which the
//! worker sends when the attempt is cancelled and the kernel sends when the
//! worker's thread dies (`PR_SET_PDEATHSIG`), or SIGINT or SIGHUP, so that
//! an operator's signal cannot skip the clean-up. Then it kills the
//! command's process group and every child it has with SIGKILL, reaps
//! them, and repeats until it has no child left: a killed process's own
//! children are reparented to it, so the loop ends only once the whole
//! tree is gone. Last it exits the way the command did (its exit code, or
//! the same signal with core dumps off), so the worker reads the command's
//! status off the supervisor. It needs no privileges and no cgroup.
//!
//! Its children are read from `/proc/thread-self/children`, or, on a
//! kernel without it, by scanning `/proc/<pid>/stat` for their parent.
//! Without `/proc` only the command's process group is killed, and a line
//! on the command's stderr says so.
//!
//! It runs in a forked copy of the multi-threaded worker and never execs,
//! so everything here is async-signal-safe system calls on stack buffers:
//! no allocation, no locks, no panics (std makes a panic in a forked child
//! abort). Being a fork, it shares the worker's memory copy-on-write: it
//! holds on to the pages the worker changes while the command runs, at
//! most the worker's size when the command started.
//!
//! What it cannot stop: a process started on the command's behalf by
//! something outside the tree (a daemon asked over a socket, `systemd-run
//! --user`, `at`); a descendant that makes itself a subreaper; a command
//! that kills the supervisor first (it runs as the same user). If the
//! supervisor is SIGKILLed, the command dies with it (its
//! `PR_SET_PDEATHSIG`), but what the command had detached survives.

use std::io;

use libc::{c_int, pid_t};

/// The signals that stop the command: see the module docs.
const STOP_SIGNALS: [c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];
/// Longest the supervisor sleeps without a signal before it checks on its
/// children anyway: SIGCHLD wakes it, this is a safety net.
const IDLE_WAIT_MS: i64 = 1_000;
/// How long one round of the clean-up waits for a killed child to exit
/// before it lists its children again.
const KILL_ROUND_WAIT_MS: i64 = 10;
/// The supervisor's name in `ps` and `top` (at most 15 bytes).
const NAME: &[u8] = b"tm-supervisor\0";
/// Highest signal number on Linux (`SIGRTMAX`).
const SIGNAL_MAX: c_int = 64;

/// Turns the process std forked for the command into the command's
/// supervisor (see the module docs). Returns in the command's process,
/// which std then execs, or with an error if the command could not be
/// forked; the supervisor itself never returns.
///
/// `worker` is the worker's process id, read before the fork: if the
/// worker died before the supervisor asked to be told, it gives up.
///
/// # Safety
///
/// Only for a `pre_exec` hook: it must run in a freshly forked child,
/// between fork and exec.
pub(crate) unsafe fn become_supervisor(worker: pid_t) -> io::Result<()> {
    // SAFETY (every block below): async-signal-safe system calls on
    // values on this stack; see the module docs.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
            return Err(io::Error::last_os_error());
        }
        // The worker may have died before the prctl took effect.
        if libc::getppid() != worker {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::prctl(libc::PR_SET_NAME, NAME.as_ptr());
        reset_signal_handlers();
        // Blocked, so they wait for sigtimedwait instead of running the
        // worker's handlers (or killing us before the clean-up).
        let watched = signal_set(&[
            libc::SIGCHLD,
            STOP_SIGNALS[0],
            STOP_SIGNALS[1],
            STOP_SIGNALS[2],
        ]);
        let mut inherited: libc::sigset_t = std::mem::zeroed();
        if libc::sigprocmask(libc::SIG_BLOCK, &watched, &mut inherited) != 0 {
            return Err(io::Error::last_os_error());
        }
        let supervisor = libc::getpid();
        match libc::fork() {
            -1 => Err(io::Error::last_os_error()),
            0 => prepare_command(supervisor, &inherited),
            command => {
                // Among them std's pipe that reports a failed exec, which
                // must close when the command execs, and whatever pipes of
                // other attempts were open in the worker at the fork.
                close_fds_from(3);
                supervise(command, &watched)
            }
        }
    }
}

/// In the command's process, before std execs it: the signal mask it
/// would have had, a process group of its own (so `kill 0` in a script
/// reaches the script's processes, not the supervisor), and death with
/// the supervisor.
unsafe fn prepare_command(supervisor: pid_t, inherited: &libc::sigset_t) -> io::Result<()> {
    // SAFETY: async-signal-safe system calls; `inherited` is a valid set.
    unsafe {
        if libc::sigprocmask(libc::SIG_SETMASK, inherited, std::ptr::null_mut()) != 0
            || libc::setpgid(0, 0) != 0
            || libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0
        {
            return Err(io::Error::last_os_error());
        }
        if libc::getppid() != supervisor {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    Ok(())
}

/// Waits for the command to exit or a stop signal, kills everything left,
/// and exits as the command did (or by the stop signal).
unsafe fn supervise(command: pid_t, watched: &libc::sigset_t) -> ! {
    let mut status = None;
    let mut stop = None;
    while status.is_none() && stop.is_none() {
        // SAFETY: async-signal-safe calls only (here and below).
        status = unsafe { reap_exited(command) };
        if status.is_none() {
            match unsafe { wait_for_signal(watched, IDLE_WAIT_MS) } {
                Some(signal) if STOP_SIGNALS.contains(&signal) => stop = Some(signal),
                _ => {}
            }
        }
    }
    unsafe {
        if stop.is_some() {
            // Not reaped yet, so the group id is still the command's.
            libc::kill(-command, libc::SIGKILL);
        }
        kill_descendants();
        match (stop, status) {
            (Some(signal), _) => die_by(signal),
            (None, Some(status)) => exit_like(status),
            (None, None) => libc::_exit(1),
        }
    }
}

/// Reaps every child that has exited; returns the command's wait status
/// once it is among them. The command's process group is killed before
/// the command is reaped, while its id cannot name another group.
unsafe fn reap_exited(command: pid_t) -> Option<c_int> {
    let mut status = None;
    loop {
        // SAFETY: siginfo_t is plain data; all-zero is a valid value and
        // waitid only writes into it. The rest are plain system calls.
        unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
            if libc::waitid(libc::P_ALL, 0, &mut info, flags) != 0 {
                if errno() == libc::EINTR {
                    continue;
                }
                return status;
            }
            let pid = info.si_pid();
            if pid == 0 {
                return status;
            }
            if pid == command {
                libc::kill(-command, libc::SIGKILL);
            }
            let mut wait_status = 0;
            while libc::waitpid(pid, &mut wait_status, 0) == -1 && errno() == libc::EINTR {}
            if pid == command {
                status = Some(wait_status);
            }
        }
    }
}

/// SIGKILLs every child, reaps, and again, until no child is left.
unsafe fn kill_descendants() {
    // SAFETY: async-signal-safe system calls on stack values.
    unsafe {
        let exited = signal_set(&[libc::SIGCHLD]);
        loop {
            let listed = for_each_child(|pid| {
                libc::kill(pid, libc::SIGKILL);
            });
            loop {
                let mut wait_status = 0;
                match libc::waitpid(-1, &mut wait_status, libc::WNOHANG) {
                    0 => break,
                    -1 if errno() == libc::EINTR => {}
                    // ECHILD: none left, the tree is gone.
                    -1 => return,
                    _ => {}
                }
            }
            if !listed {
                let text = b"taskmaster: cannot list the command's processes in /proc; \
                             processes it moved out of its process group may survive it\n";
                libc::write(2, text.as_ptr().cast(), text.len());
                return;
            }
            wait_for_signal(&exited, KILL_ROUND_WAIT_MS);
        }
    }
}

/// Calls `each` with every child of this process; false when `/proc`
/// could not be read either way.
///
/// # Safety
///
/// Async-signal-safe as long as `each` is.
pub(crate) unsafe fn for_each_child(mut each: impl FnMut(pid_t)) -> bool {
    // SAFETY: as documented; the path is NUL-terminated.
    unsafe {
        read_pid_list(c"/proc/thread-self/children".as_ptr(), &mut each)
            || scan_proc_for_children(libc::getpid(), &mut each)
    }
}

/// Calls `each` with every pid in the space-separated list in `path`.
unsafe fn read_pid_list(path: *const libc::c_char, each: &mut impl FnMut(pid_t)) -> bool {
    // SAFETY: `path` is NUL-terminated (caller); reads go into `buf`.
    unsafe {
        let fd = libc::open(path, libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return false;
        }
        let mut buf = [0u8; 1024];
        let mut pid: Option<pid_t> = None;
        loop {
            let read = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            if read < 0 && errno() == libc::EINTR {
                continue;
            }
            if read <= 0 {
                libc::close(fd);
                if let Some(pid) = pid {
                    each(pid);
                }
                return read == 0;
            }
            for &byte in &buf[..read as usize] {
                if byte.is_ascii_digit() {
                    let digit = pid_t::from(byte - b'0');
                    pid = Some(pid.unwrap_or(0).saturating_mul(10).saturating_add(digit));
                } else if let Some(done) = pid.take() {
                    each(done);
                }
            }
        }
    }
}

/// Calls `each` with every process whose parent is `parent`, found by
/// reading `/proc/<pid>/stat` of every process.
pub(crate) unsafe fn scan_proc_for_children(parent: pid_t, each: &mut impl FnMut(pid_t)) -> bool {
    // SAFETY: async-signal-safe system calls; getdents64 writes at most
    // `buf.len()` bytes into `buf`, and records are read within it.
    unsafe {
        let dir = libc::open(
            c"/proc".as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        if dir < 0 {
            return false;
        }
        let mut buf = [0u8; 4096];
        loop {
            let read = libc::syscall(libc::SYS_getdents64, dir, buf.as_mut_ptr(), buf.len());
            if read <= 0 {
                libc::close(dir);
                return read == 0;
            }
            // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, name.
            let records = &buf[..read as usize];
            let mut at = 0;
            while at + 19 < records.len() {
                let len = usize::from(u16::from_ne_bytes([records[at + 16], records[at + 17]]));
                if len == 0 || at + len > records.len() {
                    break;
                }
                let name = &records[at + 19..at + len];
                let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
                if let Some(pid) = parse_pid(name)
                    && parent_of(pid) == Some(parent)
                {
                    each(pid);
                }
                at += len;
            }
        }
    }
}

/// The parent of `pid`, from `/proc/<pid>/stat` (`pid (comm) state ppid
/// ...`; the name may hold spaces and parentheses, so the last `)` ends it).
unsafe fn parent_of(pid: pid_t) -> Option<pid_t> {
    let mut path = PathBuf64::new();
    path.push(b"/proc/");
    path.push_number(pid);
    path.push(b"/stat");
    let mut buf = [0u8; 512];
    // SAFETY: the path is NUL-terminated; reads go into `buf`.
    let read = unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let read = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        read
    };
    let stat = buf.get(..usize::try_from(read).ok()?)?;
    let after_name = &stat[stat.iter().rposition(|&b| b == b')')? + 1..];
    // " S 1234 ...": skip the space, the state and the space after it.
    let ppid = after_name.get(3..)?;
    let end = ppid.iter().position(|b| !b.is_ascii_digit())?;
    parse_pid(&ppid[..end])
}

/// A positive decimal process id.
fn parse_pid(digits: &[u8]) -> Option<pid_t> {
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits
        .iter()
        .fold(0i64, |n, &d| n * 10 + i64::from(d - b'0'));
    pid_t::try_from(value).ok().filter(|&pid| pid > 0)
}

/// A short NUL-terminated path built on the stack.
struct PathBuf64 {
    bytes: [u8; 64],
    len: usize,
}

impl PathBuf64 {
    fn new() -> Self {
        Self {
            bytes: [0; 64],
            len: 0,
        }
    }

    /// Appends `part`, as much of it as fits before the final NUL.
    fn push(&mut self, part: &[u8]) {
        for &byte in part {
            if self.len + 1 < self.bytes.len() {
                self.bytes[self.len] = byte;
                self.len += 1;
            }
        }
    }

    fn push_number(&mut self, n: pid_t) {
        let mut digits = [0u8; 12];
        let mut start = digits.len();
        let mut n = n.unsigned_abs();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[start..]);
    }

    fn as_ptr(&self) -> *const libc::c_char {
        // Always NUL-terminated: push leaves the last byte zero.
        self.bytes.as_ptr().cast()
    }
}

/// Closes every file descriptor from `first` on.
unsafe fn close_fds_from(first: c_int) {
    // SAFETY: closing descriptors has no memory-safety preconditions.
    unsafe {
        if libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0,
        ) == 0
        {
            return;
        }
        // Kernels before 5.9.
        let mut limit: libc::rlimit = std::mem::zeroed();
        let last = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur.min(65_536) as c_int
        } else {
            1_024
        };
        for fd in first..last {
            libc::close(fd);
        }
    }
}

/// Gives every signal the worker handles its default action again: the
/// worker's handlers (tokio's) would write to the worker's descriptors.
/// SIGCHLD gets its default too even if ignored, since an ignored SIGCHLD
/// would reap children behind the supervisor's back.
unsafe fn reset_signal_handlers() {
    // SAFETY: sigaction on valid, zero-initialised structs.
    unsafe {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        for signal in 1..=SIGNAL_MAX {
            if signal == libc::SIGKILL || signal == libc::SIGSTOP {
                continue;
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            let handled = old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN;
            if handled || signal == libc::SIGCHLD {
                libc::sigaction(signal, &default, std::ptr::null_mut());
            }
        }
    }
}

/// The set of `signals`.
unsafe fn signal_set(signals: &[c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset uses it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// Waits up to `wait_ms` for one of the (blocked) signals in `set`.
unsafe fn wait_for_signal(set: &libc::sigset_t, wait_ms: i64) -> Option<c_int> {
    let timeout = libc::timespec {
        tv_sec: wait_ms / 1_000,
        tv_nsec: (wait_ms % 1_000) * 1_000_000,
    };
    // SAFETY: valid set and timeout; no siginfo is asked for.
    let signal = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &timeout) };
    (signal > 0).then_some(signal)
}

/// Exits with the command's wait `status`: its exit code, or its signal.
unsafe fn exit_like(status: c_int) -> ! {
    // SAFETY: _exit and die_by never return.
    unsafe {
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        if libc::WIFSIGNALED(status) {
            die_by(libc::WTERMSIG(status));
        }
        libc::_exit(1)
    }
}

/// Dies by `signal` (without a core dump), so the worker sees the same
/// "killed by signal N" as the command's; exits 128 + N if it survives.
unsafe fn die_by(signal: c_int) -> ! {
    // SAFETY: async-signal-safe system calls on stack values.
    unsafe {
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(signal, &default, std::ptr::null_mut());
        let only = signal_set(&[signal]);
        libc::sigprocmask(libc::SIG_UNBLOCK, &only, std::ptr::null_mut());
        libc::kill(libc::getpid(), signal);
        libc::_exit(128 + signal)
    }
}

fn errno() -> c_int {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command};

    use super::*;

    fn children_by(list: impl FnOnce(&mut dyn FnMut(pid_t)) -> bool) -> Vec<pid_t> {
        let mut found = Vec::new();
        assert!(list(&mut |pid| found.push(pid)), "could not read /proc");
        found
    }

    fn sleeper() -> Child {
        Command::new("sleep").arg("30").spawn().unwrap()
    }

    #[test]
    fn children_are_found_in_proc_both_ways() {
        let mut child = sleeper();
        let pid = child.id() as pid_t;
        // SAFETY: plain reads of /proc.
        let listed = children_by(|each| unsafe {
            read_pid_list(c"/proc/thread-self/children".as_ptr(), &mut |p| each(p))
        });
        let scanned =
            children_by(|each| unsafe { scan_proc_for_children(libc::getpid(), &mut |p| each(p)) });
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(listed.contains(&pid), "{pid} not in {listed:?}");
        assert!(scanned.contains(&pid), "{pid} not in {scanned:?}");
        // SAFETY: as above.
        assert_eq!(unsafe { parent_of(pid) }, None, "reaped: gone from /proc");
    }

    #[test]
    fn the_parent_is_read_past_a_name_with_parentheses() {
        // SAFETY: plain reads of /proc.
        let me = unsafe { libc::getpid() };
        let parent = unsafe { libc::getppid() };
        assert_eq!(unsafe { parent_of(me) }, Some(parent));
        assert_eq!(parse_pid(b"123"), Some(123));
        for bad in [&b""[..], b"0", b"12a", b"99999999999", b"-1"] {
            assert_eq!(parse_pid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn paths_are_built_on_the_stack_and_cut_to_fit() {
        let mut path = PathBuf64::new();
        path.push(b"/proc/");
        path.push_number(4_194_304);
        path.push(b"/stat");
        assert_eq!(&path.bytes[..path.len], b"/proc/4194304/stat");
        assert_eq!(path.bytes[path.len], 0);
        let mut long = PathBuf64::new();
        long.push(&[b'x'; 100]);
        assert_eq!(long.len, 63);
        assert_eq!(long.bytes[63], 0);
    }
}
