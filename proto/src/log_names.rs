//! Where task logs live in the store, and how their objects are named:
//! written by workers, read and deleted by the master.
//!
//! An attempt's logs sit beside its outputs, in a `logs` directory of the
//! unit's: `<pipeline>/<group>/<unit>/logs/attempt-<N>.<attempt dir>.<kind>`,
//! where `N` is the attempt's number (`TM_ATTEMPT`), `<attempt dir>` the
//! name of the attempt's output directory (`<lease id>-<incarnation as 16
//! hex digits>`, see [`crate::compact::attempt_dir_name`]), and `<kind>` is
//! `stdout`, `stderr`, or `end` (written once both logs are complete; it
//! holds how the attempt ended). The attempt directory's name makes the
//! logs of attempts of two lineages (a master on a copy of a data dir)
//! distinct even when their numbers and lease ids are equal.
//!
//! `logs` is not an attempt directory's name, so the sweep of dead attempts
//! never looks inside it: the logs of failed and abandoned attempts stay
//! until their pipeline is deleted.

use crate::compact::{attempt_dir_name, parse_attempt_dir_name};

/// The directory of a unit's logs, under the unit's directory.
pub const LOGS_DIR: &str = "logs";

/// Which object of an attempt's logs a name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogKind {
    Stdout,
    Stderr,
    /// Present once the attempt's logs are complete.
    End,
}

impl LogKind {
    /// The name's suffix.
    pub fn suffix(self) -> &'static str {
        match self {
            LogKind::Stdout => "stdout",
            LogKind::Stderr => "stderr",
            LogKind::End => "end",
        }
    }

    fn from_suffix(suffix: &str) -> Option<LogKind> {
        match suffix {
            "stdout" => Some(LogKind::Stdout),
            "stderr" => Some(LogKind::Stderr),
            "end" => Some(LogKind::End),
            _ => None,
        }
    }
}

/// One attempt whose logs are named: its number, lease id and the
/// incarnation that granted the lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogAttempt {
    pub attempt: u32,
    pub lease_id: u64,
    pub incarnation: u64,
}

impl LogAttempt {
    /// The file (object) name of this attempt's `kind` log in the unit's
    /// [`LOGS_DIR`].
    pub fn file_name(&self, kind: LogKind) -> String {
        format!(
            "attempt-{}.{}.{}",
            self.attempt,
            attempt_dir_name(self.lease_id, self.incarnation),
            kind.suffix()
        )
    }
}

/// The attempt and kind a file name in a [`LOGS_DIR`] names; None for any
/// other name.
pub fn parse_log_file_name(name: &str) -> Option<(LogAttempt, LogKind)> {
    let rest = name.strip_prefix("attempt-")?;
    let mut parts = rest.split('.');
    let number = parts.next()?;
    let dir = parts.next()?;
    let kind = LogKind::from_suffix(parts.next()?)?;
    if parts.next().is_some() {
        return None;
    }
    let attempt: u32 = number.parse().ok()?;
    let (lease_id, incarnation) = parse_attempt_dir_name(dir)?;
    let parsed = LogAttempt {
        attempt,
        lease_id,
        incarnation,
    };
    // One spelling per attempt (no leading zeros, no `+`).
    (parsed.file_name(kind) == name).then_some((parsed, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_others_are_refused() {
        let attempt = LogAttempt {
            attempt: 3,
            lease_id: 17,
            incarnation: 0xab,
        };
        let name = attempt.file_name(LogKind::Stderr);
        assert_eq!(name, "attempt-3.17-00000000000000ab.stderr");
        assert_eq!(parse_log_file_name(&name), Some((attempt, LogKind::Stderr)));
        for bad in [
            "attempt-03.17-00000000000000ab.stderr",
            "attempt-3.17-00000000000000ab.log",
            "attempt-3.17-ab.stdout",
            "attempt-3.17-00000000000000ab.stdout.x",
            "3.17-00000000000000ab.stdout",
            "attempt-x.17.end",
        ] {
            assert_eq!(parse_log_file_name(bad), None, "{bad}");
        }
        let old = LogAttempt {
            attempt: 1,
            lease_id: 9,
            incarnation: 0,
        };
        assert_eq!(
            parse_log_file_name("attempt-1.9.end"),
            Some((old, LogKind::End))
        );
    }
}
