//! The worker's configuration, its defaults and its limits.

use std::time::Duration;

/// Where the worker looks for the master when told nothing else.
pub const DEFAULT_MASTER_URL: &str = "http://127.0.0.1:7070";
/// Most units one worker runs at once (and asks for in one lease call).
pub const SLOTS_MAX: u32 = 1024;
/// Default long-poll bound of a lease call.
pub const LEASE_WAIT_MS_DEFAULT: u32 = 10_000;
/// Longest long-poll a worker asks for.
pub const LEASE_WAIT_MS_MAX: u32 = 60_000;
/// Default time in-flight units get to finish after a shutdown request.
pub const GRACE_MS_DEFAULT: u64 = 30_000;
/// Longest grace period accepted (a day).
pub const GRACE_MS_MAX: u64 = 24 * 60 * 60 * 1000;
/// Longest worker id; it travels in every lease call and shows in logs.
pub const WORKER_ID_BYTES_MAX: usize = 128;
pub use taskmaster_proto::endpoint::ClientTls;
use taskmaster_proto::endpoint::master_url;
pub use taskmaster_proto::limits::MESSAGE_BYTES_MAX;

pub use crate::logs::{LOG_BYTES_MAX_DEFAULT, LOG_BYTES_MAX_LIMIT};

/// How a worker runs: which master, how many units at once, and timings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerConfig {
    /// The master's gRPC address, e.g. `http://127.0.0.1:7070`.
    pub master_url: String,
    /// Units run at once; also the most units asked for per lease call.
    pub slots: u32,
    /// This worker's name in the master's lease records and logs; unique per
    /// process so two workers on one host can be told apart.
    pub worker_id: String,
    /// How long the master may hold a lease call open when no work is
    /// ready (long-poll), so idle workers do not busy-poll.
    pub lease_wait_ms: u32,
    /// After a shutdown request, how long in-flight units may run and commit
    /// before they are cancelled and their leases released.
    pub grace_ms: u64,
    /// How lease, renew, commit and release reach the master.
    pub calls: Calls,
    /// TLS to the master (its CA, and this worker's certificate when the
    /// master requires one); None for plain http.
    pub tls: Option<ClientTls>,
    /// The bearer token sent on every call, for a master started with
    /// `--auth` (a `worker` token named as `worker_id`); none otherwise.
    pub credentials: taskmaster_proto::credentials::Credentials,
    /// Bytes of each of an attempt's stdout and stderr kept in its log in
    /// the store: the first half and the last half (see [`crate::logs`]);
    /// 0 keeps no logs.
    pub log_bytes_max: u64,
}

/// How the worker's calls to the master travel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Calls {
    /// As messages on one long-lived `Work` stream: a quarter to two
    /// fifths less of the master's CPU a unit than unary calls when units
    /// are small (BENCHMARKS.md, "Why the code is shaped so: the stock
    /// worker on the `Work` stream"). Against a master without the stream
    /// (UNIMPLEMENTED), the calls are unary.
    #[default]
    Stream,
    /// One unary gRPC call each, e.g. through a proxy that does not pass
    /// long-lived HTTP/2 streams.
    Unary,
}

impl WorkerConfig {
    /// The defaults, with this master URL.
    pub fn new(master_url: impl Into<String>) -> Self {
        Self {
            master_url: master_url.into(),
            slots: default_slots(),
            worker_id: default_worker_id(),
            lease_wait_ms: LEASE_WAIT_MS_DEFAULT,
            grace_ms: GRACE_MS_DEFAULT,
            calls: Calls::default(),
            tls: None,
            credentials: Default::default(),
            log_bytes_max: LOG_BYTES_MAX_DEFAULT,
        }
    }

    /// Checks every field against its limits, with an error saying which
    /// one is wrong and why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.slots == 0 || self.slots > SLOTS_MAX {
            return Err(ConfigError::Slots(self.slots));
        }
        master_url(&self.master_url, self.tls.is_some()).map_err(|e| ConfigError::MasterUrl {
            url: self.master_url.clone(),
            reason: e.to_string(),
        })?;
        let id = &self.worker_id;
        if id.is_empty() || id.len() > WORKER_ID_BYTES_MAX || id.chars().any(char::is_control) {
            return Err(ConfigError::WorkerId(id.clone()));
        }
        if self.lease_wait_ms > LEASE_WAIT_MS_MAX {
            return Err(ConfigError::LeaseWait(self.lease_wait_ms));
        }
        if self.grace_ms > GRACE_MS_MAX {
            return Err(ConfigError::Grace(self.grace_ms));
        }
        if self.log_bytes_max > LOG_BYTES_MAX_LIMIT {
            return Err(ConfigError::LogBytes(self.log_bytes_max));
        }
        Ok(())
    }

    /// `grace_ms` as a duration.
    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_ms)
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self::new(DEFAULT_MASTER_URL)
    }
}

/// A configuration value out of bounds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("slots must be between 1 and {SLOTS_MAX}, got {0}")]
    Slots(u32),
    #[error("invalid master URL {url:?}: {reason}")]
    MasterUrl { url: String, reason: String },
    #[error(
        "worker id must be 1 to {WORKER_ID_BYTES_MAX} bytes without control characters, got {0:?}"
    )]
    WorkerId(String),
    #[error("lease wait must be at most {LEASE_WAIT_MS_MAX} ms, got {0}")]
    LeaseWait(u32),
    #[error("grace period must be at most {GRACE_MS_MAX} ms, got {0}")]
    Grace(u64),
    #[error("the log cap must be at most {LOG_BYTES_MAX_LIMIT} bytes per stream, got {0}")]
    LogBytes(u64),
}

/// One slot per CPU the process may use (1 if that is unknown).
pub fn default_slots() -> u32 {
    std::thread::available_parallelism()
        .map_or(1, |n| u32::try_from(n.get()).unwrap_or(SLOTS_MAX))
        .min(SLOTS_MAX)
}

/// `<hostname>-<pid>-<4 random hex digits>`: the host says where it runs,
/// the pid which process, and the random part tells apart a restarted
/// process that got the same pid (e.g. pid 1 in containers).
pub fn default_worker_id() -> String {
    format!(
        "{}-{}-{:04x}",
        hostname(),
        std::process::id(),
        rand::random::<u16>()
    )
}

/// The host's name from the usual places, or `worker`; reduced to
/// characters that read well in logs.
fn hostname() -> String {
    let found = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .chain(std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .find(|name| !name.is_empty());
    let name: String = found
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .take(64)
        .collect();
    if name.is_empty() {
        "worker".to_string()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = WorkerConfig::default();
        config.validate().unwrap();
        assert!(config.slots >= 1);
        assert_eq!(config.lease_wait_ms, 10_000);
        assert_eq!(config.grace_ms, 30_000);
        assert_eq!(config.calls, Calls::Stream);
        assert_eq!(config.log_bytes_max, 1024 * 1024);
    }

    #[test]
    fn default_worker_id_has_host_pid_and_random_suffix() {
        let id = default_worker_id();
        let parts: Vec<&str> = id.rsplitn(3, '-').collect();
        assert_eq!(parts.len(), 3, "{id}");
        assert_eq!(parts[0].len(), 4);
        assert!(parts[0].chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        assert_eq!(parts[1], std::process::id().to_string());
        assert!(!parts[2].is_empty());
    }

    /// The worker takes the same address forms as tmctl (issue 27, item 9).
    #[test]
    fn a_bare_host_and_port_is_a_master_address_as_for_tmctl() {
        for addr in [
            "127.0.0.1:7070",
            "http://127.0.0.1:7070",
            "[::1]:7070",
            "m.example:1",
        ] {
            let config = WorkerConfig::new(addr);
            assert_eq!(config.validate(), Ok(()), "{addr}");
        }
    }

    #[test]
    fn bad_values_are_refused_with_the_field_named() {
        let good = WorkerConfig::default();
        let cases = [
            (
                WorkerConfig {
                    slots: 0,
                    ..good.clone()
                },
                "slots must be between 1 and 1024, got 0",
            ),
            (
                WorkerConfig {
                    master_url: "https://m:1".into(),
                    ..good.clone()
                },
                "https:// needs the master's CA (--tls-ca)",
            ),
            (
                WorkerConfig {
                    master_url: "not a url".into(),
                    ..good.clone()
                },
                "no path or spaces",
            ),
            (
                WorkerConfig {
                    master_url: "m".into(),
                    ..good.clone()
                },
                "names no host and port",
            ),
            (
                WorkerConfig {
                    worker_id: String::new(),
                    ..good.clone()
                },
                "worker id",
            ),
            (
                WorkerConfig {
                    lease_wait_ms: 60_001,
                    ..good.clone()
                },
                "lease wait",
            ),
            (
                WorkerConfig {
                    grace_ms: u64::MAX,
                    ..good.clone()
                },
                "grace period",
            ),
            (
                WorkerConfig {
                    log_bytes_max: LOG_BYTES_MAX_LIMIT + 1,
                    ..good.clone()
                },
                "the log cap must be at most",
            ),
        ];
        for (config, expected) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(expected), "{err:?} lacks {expected:?}");
        }
    }
}
