//! The master's own resource use, read from Linux's `/proc/self`: peak
//! resident memory (`VmHWM` in `/proc/self/status`) and CPU time (`utime`
//! plus `stime` in `/proc/self/stat`). Operators and `tmctl bench` read
//! them through `GetMasterStatus`. Where `/proc` is missing (not Linux)
//! both read as zero.

/// Clock ticks per second of the times in `/proc/<pid>/stat`. The kernel
/// reports them in `USER_HZ`, which is 100 on every architecture Linux
/// still supports, whatever the kernel's internal tick rate.
const USER_HZ: f64 = 100.0;

/// Peak resident set size of this process in bytes (0 if unknown).
pub fn rss_peak_bytes() -> u64 {
    status_kb_field("VmHWM:")
}

/// Resident set size of this process now, in bytes (0 if unknown).
pub fn rss_bytes() -> u64 {
    status_kb_field("VmRSS:")
}

fn status_kb_field(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|text| parse_kb_field(&text, field))
        .unwrap_or(0)
}

/// CPU seconds this process has used, user plus system (0 if unknown).
pub fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|text| parse_cpu_ticks(&text))
        .map_or(0.0, |ticks| ticks as f64 / USER_HZ)
}

/// CPU time the calling thread has used (zero if unknown).
pub fn thread_cpu() -> std::time::Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill in.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// A line such as `VmHWM:   1636 kB` of `/proc/<pid>/status`, in bytes.
fn parse_kb_field(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let mut words = line[field.len()..].split_whitespace();
    let amount: u64 = words.next()?.parse().ok()?;
    match words.next()? {
        "kB" => amount.checked_mul(1024),
        _ => None,
    }
}

/// `utime + stime` (fields 14 and 15) of `/proc/<pid>/stat`, in ticks.
/// The second field, the command name in parentheses, may itself hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is index 0, so field N is N - 3.
    let mut fields = after_name.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn thread_cpu_counts_this_threads_work_only() {
        // Spins until this thread's clock says 20 ms: a spin timed by the
        // wall clock got under 5 ms of CPU on a machine loaded 5x over.
        let began = thread_cpu();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while thread_cpu() - began < std::time::Duration::from_millis(20) {
            assert!(
                std::time::Instant::now() < deadline,
                "no 20 ms of CPU in 30 s"
            );
            for _ in 0..1_000 {
                std::hint::black_box(0u64.wrapping_add(1));
            }
        }
        let spent = thread_cpu() - began;
        // Another thread's own clock starts near zero, not at ours.
        let other = std::thread::spawn(thread_cpu).join().unwrap();
        assert!(other < spent, "{other:?} against {spent:?}");
    }

    #[test]
    fn vm_hwm_is_read_in_bytes() {
        let status =
            "Name:\ttaskmaster\nVmPeak:\t  123456 kB\nVmHWM:\t    1636 kB\nVmRSS:\t    1500 kB\n";
        assert_eq!(parse_kb_field(status, "VmHWM:"), Some(1636 * 1024));
        assert_eq!(parse_kb_field(status, "VmRSS:"), Some(1500 * 1024));
    }

    #[test]
    fn vm_hwm_missing_or_odd_is_none() {
        let hwm = |status| parse_kb_field(status, "VmHWM:");
        assert_eq!(hwm("Name:\tx\nVmRSS:\t 1 kB\n"), None);
        assert_eq!(hwm("VmHWM:\t 12 MB\n"), None);
        assert_eq!(hwm("VmHWM:\n"), None);
        assert_eq!(hwm("VmHWM:\t lots kB\n"), None);
    }

    #[test]
    fn cpu_ticks_are_utime_plus_stime() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
        // majflt cmajflt utime stime cutime cstime ...
        let stat = "4242 (taskmaster) S 1 4242 4242 0 -1 4194560 900 0 3 0 250 75 7 9 20 0 4 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
    }

    #[test]
    fn cpu_ticks_survive_a_name_with_spaces_and_parens() {
        let stat = "7 (a b) (c)) R 1 7 7 0 -1 0 0 0 0 0 11 22 0 0 20 0 1 0";
        assert_eq!(parse_cpu_ticks(stat), Some(33));
    }

    #[test]
    fn cpu_ticks_of_a_short_or_broken_line_are_none() {
        assert_eq!(parse_cpu_ticks("1 (x) S 1 2 3"), None);
        assert_eq!(parse_cpu_ticks("no parens here"), None);
        assert_eq!(parse_cpu_ticks("1 (x) S 1 1 1 0 -1 0 0 0 0 0 u s"), None);
    }

    #[test]
    fn this_process_reads_something_on_linux() {
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(rss_peak_bytes() > 0);
            assert!(cpu_seconds() >= 0.0);
        }
    }
}
