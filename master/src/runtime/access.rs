//! The runtime's side of access control (issue 24): tokens, the checks
//! the auth layer and the worker calls make against the state, and the
//! audit record journaled beside every operator change.

use taskmaster_proto::journal::Record;
use taskmaster_proto::v1::LeaseRef;

use super::actor;
use super::{Master, MasterError};
use crate::core::Core;
use crate::core::audit::Actor;
use crate::core::tokens::Token;

impl Master {
    /// The token whose SHA-256 is `sha256`, expired or not.
    pub fn find_token(&self, sha256: &[u8; 32]) -> Option<Token> {
        self.state.lock().core.tokens().find(sha256).cloned()
    }

    /// The monotonic clock, as the master reads it (rate limits).
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The wall clock, as the master reads it (token expiry, audit times).
    pub fn unix_ms(&self) -> u64 {
        self.clock.unix_ms()
    }

    pub async fn create_token(&self, token: Token) -> Result<(), MasterError> {
        self.mutate(|core, now| Ok((vec![core.create_token(&token, now)?], ())))
            .await
    }

    pub async fn revoke_token(&self, name: &str) -> Result<(), MasterError> {
        self.mutate(|core, now| Ok((vec![core.revoke_token(name, now)?], ())))
            .await
    }

    pub async fn tokens(&self) -> Result<Vec<Token>, MasterError> {
        self.read(|core| Ok(core.tokens().iter().cloned().collect()))
            .await
    }

    /// See [`Core::lease_of_another`]. A check against the state as it is
    /// now: a lease id is granted once, to one worker, so the answer for a
    /// current lease cannot change before the call that follows.
    pub fn lease_of_another<'a>(
        &self,
        refs: impl IntoIterator<Item = Option<&'a LeaseRef>>,
        worker: &str,
    ) -> Option<String> {
        self.state.lock().core.lease_of_another(refs, worker)
    }

    /// Journals who rolled back to `snapshot_id`. A rollback writes a
    /// snapshot rather than records, so its audit record follows it (a
    /// crash between the two loses the record, not the rollback).
    pub async fn audit_rollback(
        &self,
        snapshot_id: &str,
        actor: &Actor,
    ) -> Result<(), MasterError> {
        let unix_ms = self.clock.unix_ms();
        self.mutate(|core, now| {
            let rec = Core::rollback_audit(snapshot_id, actor, unix_ms);
            core.apply_checked(&rec, now);
            Ok((vec![rec], ()))
        })
        .await
    }
}

/// Adds to `records` (already applied to `core`) the audit records of the
/// call in progress, when it is an operator's: journaled in the same append
/// as the change. Nothing outside a call (background loops).
pub(super) fn audit_in_scope(
    core: &mut Core,
    records: &mut Vec<Record>,
    now_ms: u64,
    clock: &dyn crate::clock::Clock,
) {
    let audited = actor::current(|actor| {
        if records.is_empty() {
            return Vec::new();
        }
        core.audit_records(records, actor, clock.unix_ms())
    });
    for rec in audited.into_iter().flatten() {
        core.apply_checked(&rec, now_ms);
        records.push(rec);
    }
}

impl Master {
    /// Sets the admission limits (`--max-pipelines` and the like); the
    /// states a rollback or rebuild installs keep them (they are config).
    pub fn set_admission(&self, admission: crate::core::admission::Admission) {
        self.state.lock().core.set_admission(admission);
    }
}
