//! Access control at the edge (issue 24): every call's identity and role,
//! checked against one table before any handler runs; the core only
//! records who did what.
//!
//! - [`roles`]: the table of which roles may call each RPC
//! - [`credentials`]: reading a call's `authorization` and reason
//!   metadata, making and hashing tokens (the fuzzed part)
//! - [`cert`]: a worker's name from its client certificate's subject
//! - [`layer`]: the tower layer in front of the gRPC service
//! - [`limits`]: connections, long-polls, Work streams, rate per identity
//! - [`worker_calls`]: a worker acts only as itself, on its own leases
//! - [`tokens`]: making a token (`CreateToken`)
//! - [`bootstrap`]: the first admin token, written to the data dir
//!
//! Without `--auth` the layer still runs: every caller is "anonymous" with
//! every role, and the audit trail names them so.

pub mod bootstrap;
pub mod cert;
pub mod credentials;
pub mod layer;
pub mod limits;
pub mod roles;
pub mod tokens;
pub mod worker_calls;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use taskmaster_proto::v1::Role;

/// Who a call comes from, once the layer has checked it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The token's name, or a client certificate's subject CN.
    pub name: Arc<str>,
    pub role: Role,
}

impl Identity {
    /// How audit entries name it: "alice (operator)".
    pub fn shown(&self) -> String {
        format!("{} ({})", self.name, roles::role_name(self.role))
    }
}

/// What the layer learned of a call, in the request's extensions for the
/// handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// None on a master without `--auth`.
    pub identity: Option<Identity>,
}

impl Caller {
    /// The worker name this caller's leases must carry: Some for a
    /// worker's identity only (an admin may act for any worker; without
    /// `--auth` nothing is checked).
    pub fn bound_worker(&self) -> Option<&str> {
        self.identity
            .as_ref()
            .filter(|i| i.role == Role::Worker)
            .map(|i| &*i.name)
    }
}

/// The worker name the caller of `request` is bound to (see
/// [`Caller::bound_worker`]).
pub fn bound_worker(extensions: &http::Extensions) -> Option<Arc<str>> {
    extensions
        .get::<Caller>()
        .and_then(|c| c.bound_worker().map(Arc::from))
}

/// The identity name of the caller of a request (with `--auth`).
pub fn caller_name(extensions: &http::Extensions) -> Option<Arc<str>> {
    extensions
        .get::<Caller>()
        .and_then(|c| c.identity.as_ref().map(|i| Arc::clone(&i.name)))
}

/// The places a call that may wait for work takes under the long-poll
/// limits: what a Work stream's lease calls go through, as unary ones go
/// through the layer.
#[derive(Clone)]
pub struct LongPollGate {
    pub access: Arc<Access>,
    /// The stream's identity (None without `--auth`).
    pub who: Option<Arc<str>>,
}

impl LongPollGate {
    pub fn take(&self) -> Result<limits::LongPoll, tonic::Status> {
        let limits = &self.access.limits;
        self.access.counters.long_poll(limits, self.who.as_ref())
    }
}

/// The master's access settings and what it tracks of tokens in memory.
#[derive(Debug, Default)]
pub struct Access {
    /// `--auth`: every call needs an identity with a role that allows it.
    pub enabled: bool,
    /// The edge limits (flags) and what is counted against them.
    pub limits: limits::EdgeLimits,
    pub counters: limits::Counters,
    /// When each token was last used (wall clock, ms), since this start:
    /// in memory only, so a call never waits on the journal for it.
    last_used: Mutex<HashMap<Arc<str>, u64>>,
}

impl Access {
    pub fn new(enabled: bool, limits: limits::EdgeLimits) -> Access {
        Access {
            enabled,
            limits,
            ..Access::default()
        }
    }

    pub fn note_used(&self, name: &Arc<str>, unix_ms: u64) {
        let mut used = self.last_used.lock();
        // Bounded by the tokens there are: names come from the core's table.
        if let Some(at) = used.get_mut(name) {
            *at = unix_ms;
        } else {
            used.insert(Arc::clone(name), unix_ms);
        }
    }

    /// When the token `name` was last used since this start (0: not).
    pub fn last_used(&self, name: &str) -> u64 {
        self.last_used.lock().get(name).copied().unwrap_or(0)
    }

    /// The identity `token` names on `master`, or why it names none
    /// (never made or revoked, expired).
    pub fn identify_token(
        &self,
        master: &crate::runtime::Master,
        token: &str,
    ) -> Result<Identity, tonic::Status> {
        let Some(found) = master.find_token(&credentials::sha256(token)) else {
            return Err(tonic::Status::unauthenticated(
                "the bearer token is not one this master knows (never made, or revoked)",
            ));
        };
        let now = master.unix_ms();
        if found.expired(now) {
            return Err(tonic::Status::unauthenticated(format!(
                "the token {} expired {} s ago",
                found.name,
                (now - found.expires_unix_ms) / 1000
            )));
        }
        let name: Arc<str> = found.name.into();
        self.note_used(&name, now);
        Ok(Identity {
            name,
            role: found.role,
        })
    }

    pub fn forget(&self, name: &str) {
        self.last_used.lock().remove(name);
    }
}
