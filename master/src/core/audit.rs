//! The audit trail (issue 24): who made each operator change, when, and
//! why. The runtime journals one [`Kind::Audited`] record beside the
//! records of every operator call ([`Core::audit_records`]); the core keeps
//! the last few per pipeline and for the whole master, in snapshots too,
//! and `GetStatus` shows them.

use std::collections::{HashMap, VecDeque};

use taskmaster_proto::journal::{Audited, Record, record::Kind};
use taskmaster_proto::v1::AuditEntry;

use super::{Core, record};

/// Actions kept per pipeline, newest last.
pub const AUDIT_PER_PIPELINE_MAX: usize = 20;
/// Actions on the whole master (rollbacks, global blocks, tokens) kept.
pub const AUDIT_GLOBAL_MAX: usize = 50;
/// Longest description of an action kept, in bytes.
pub const AUDIT_ACTION_BYTES_MAX: usize = 1024;

/// Who makes a change, and why: what the auth layer learned of a call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actor {
    /// "alice (operator)", or "anonymous" on a master without `--auth`.
    pub name: String,
    /// The caller's `--reason` (empty: none given).
    pub reason: String,
}

/// The recent actions, per pipeline and for the whole master.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    per_pipeline: HashMap<String, VecDeque<AuditEntry>>,
    global: VecDeque<AuditEntry>,
}

impl Audit {
    pub fn apply(&mut self, rec: &Audited) {
        let Some(entry) = &rec.entry else { return };
        let (list, max) = if entry.pipeline_id.is_empty() {
            (&mut self.global, AUDIT_GLOBAL_MAX)
        } else {
            (
                self.per_pipeline
                    .entry(entry.pipeline_id.clone())
                    .or_default(),
                AUDIT_PER_PIPELINE_MAX,
            )
        };
        if list.len() == max {
            list.pop_front();
        }
        list.push_back(entry.clone());
    }

    /// Forgets what deleted pipelines went through, so the trail does not
    /// outgrow the pipelines the master holds.
    pub fn observe(&mut self, rec: &Record) {
        if let Some(Kind::PipelinesDeleted(d)) = &rec.kind {
            for id in &d.pipeline_ids {
                self.per_pipeline.remove(id);
            }
        }
    }

    /// A pipeline's trail: its own actions and the master-wide ones since
    /// `since_unix_ms` (its submission), newest last, at most
    /// [`AUDIT_PER_PIPELINE_MAX`].
    pub fn of_pipeline(&self, pipeline_id: &str, since_unix_ms: u64) -> Vec<AuditEntry> {
        let own = self.per_pipeline.get(pipeline_id).into_iter().flatten();
        let global = self.global.iter().filter(|e| e.unix_ms >= since_unix_ms);
        let mut all: Vec<AuditEntry> = own.chain(global).cloned().collect();
        all.sort_by_key(|e| e.unix_ms);
        let skip = all.len().saturating_sub(AUDIT_PER_PIPELINE_MAX);
        all.split_off(skip)
    }

    pub fn to_entries(&self) -> Vec<AuditEntry> {
        let mut all: Vec<AuditEntry> = self
            .per_pipeline
            .values()
            .flatten()
            .chain(&self.global)
            .cloned()
            .collect();
        all.sort_by_key(|e| e.unix_ms);
        all
    }

    pub fn from_entries(entries: &[AuditEntry]) -> Audit {
        let mut audit = Audit::default();
        for entry in entries {
            audit.apply(&Audited {
                entry: Some(entry.clone()),
            });
        }
        audit
    }
}

impl Core {
    /// The audit records of an operator call by `actor` that made
    /// `records` (already applied): one per change an operator would want
    /// to know of; none for a worker's or a loop's records.
    pub fn audit_records(&self, records: &[Record], actor: &Actor, unix_ms: u64) -> Vec<Record> {
        records
            .iter()
            .filter_map(|rec| self.describe(rec))
            .map(|(pipeline_id, action)| {
                record(Kind::Audited(Audited {
                    entry: Some(AuditEntry {
                        pipeline_id,
                        actor: actor.name.clone(),
                        // A delete of thousands names them all: keep it bounded.
                        action: super::names::truncate(&action, AUDIT_ACTION_BYTES_MAX),
                        reason: actor.reason.clone(),
                        unix_ms,
                    }),
                }))
            })
            .collect()
    }

    /// The pipeline (empty: the whole master) and the words for what an
    /// operator's record did; None for records no operator makes.
    fn describe(&self, rec: &Record) -> Option<(String, String)> {
        let group_name = |pipeline_id: &str, group: u32| -> String {
            self.pipeline_index
                .get(pipeline_id)
                .and_then(|&i| self.pipelines[i as usize].spec.groups.get(group as usize))
                .map_or_else(|| group.to_string(), |g| g.name.clone())
        };
        let described = match rec.kind.as_ref()? {
            Kind::PipelineSubmitted(s) if s.rerun_of.is_empty() => {
                (s.pipeline_id.clone(), "submit".to_string())
            }
            Kind::PipelineSubmitted(s) => {
                (s.pipeline_id.clone(), format!("rerun of {}", s.rerun_of))
            }
            Kind::PipelineCancelled(c) => (c.pipeline_id.clone(), "cancel".to_string()),
            Kind::BlockSet(b) => {
                let what = if b.blocked { "block" } else { "unblock" };
                (b.pipeline_id.clone(), what.to_string())
            }
            Kind::UnitsRetried(r) => {
                let mut what = "retry".to_string();
                if let Some(group) = r.group {
                    what += &format!(" group {}", group_name(&r.pipeline_id, group));
                }
                if let Some(unit) = r.unit {
                    what += &format!(" unit {unit}");
                }
                (r.pipeline_id.clone(), what)
            }
            Kind::GroupCleared(c) => {
                let mut what = format!("clear group {}", group_name(&c.pipeline_id, c.group));
                if c.downstream {
                    what += " and downstream";
                }
                (c.pipeline_id.clone(), what)
            }
            Kind::ConfigChanged(c) => (
                c.pipeline_id.clone(),
                format!(
                    "config change of group {}",
                    group_name(&c.pipeline_id, c.group)
                ),
            ),
            Kind::GroupScaled(s) => (
                s.pipeline_id.clone(),
                format!(
                    "scale group {} by {}",
                    group_name(&s.pipeline_id, s.group),
                    s.split
                ),
            ),
            Kind::PipelinesDeleted(d) => (
                String::new(),
                format!("delete {}", d.pipeline_ids.join(", ")),
            ),
            Kind::ScheduleAdded(a) => (
                String::new(),
                format!("schedule add {}", a.spec.as_ref().map_or("", |s| &s.name)),
            ),
            Kind::ScheduleChanged(c) => (
                String::new(),
                format!(
                    "schedule {} {}",
                    action_word(c.action().as_str_name()),
                    c.name
                ),
            ),
            Kind::BackfillStarted(b) => (
                String::new(),
                format!(
                    "backfill {} of {} ({} logical times)",
                    b.id,
                    b.schedule,
                    b.logicals.len()
                ),
            ),
            Kind::BackfillChanged(c) => (
                String::new(),
                format!(
                    "backfill {} {}",
                    action_word(c.action().as_str_name()),
                    c.id
                ),
            ),
            Kind::TokenCreated(t) => (String::new(), format!("token create {}", t.name)),
            Kind::TokenRevoked(t) => (String::new(), format!("token revoke {}", t.name)),
            _ => return None,
        };
        Some(described)
    }

    /// The audit record of a rollback to `snapshot_id` (journaled after
    /// the rollback is installed; see `Master::rollback`).
    pub fn rollback_audit(snapshot_id: &str, actor: &Actor, unix_ms: u64) -> Record {
        record(Kind::Audited(Audited {
            entry: Some(AuditEntry {
                pipeline_id: String::new(),
                actor: actor.name.clone(),
                action: format!("rollback to {snapshot_id}"),
                reason: actor.reason.clone(),
                unix_ms,
            }),
        }))
    }
}

/// "SCHEDULE_ACTION_PAUSE" as "pause".
fn action_word(name: &str) -> String {
    name.rsplit('_').next().unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use taskmaster_proto::v1::Role;

    use super::*;
    use crate::core::tests::{core, two_groups};
    use crate::core::tokens::Token;

    fn alice() -> Actor {
        Actor {
            name: "alice (operator)".into(),
            reason: "ticket 42".into(),
        }
    }

    #[test]
    fn operator_changes_are_described_and_kept_through_snapshots_and_rollbacks() {
        let mut core = core();
        let submitted = core.submit("p-1", two_groups(2), 500, 0).unwrap();
        let mut audit = core.audit_records(&submitted, &alice(), 1_000);
        let cancelled = core.cancel("p-1", 0).unwrap();
        audit.extend(core.audit_records(&cancelled, &alice(), 2_000));
        let leased = core.lease("w", 1, false, 0);
        assert!(
            core.audit_records(&leased.map(|l| l.0).unwrap_or_default(), &alice(), 3_000)
                .is_empty(),
            "a worker's records are not an operator's"
        );
        for rec in &audit {
            core.apply_checked(rec, 0);
        }
        let token = Token {
            name: "bob".into(),
            role: Role::Viewer,
            sha256: [7; 32],
            created_unix_ms: 1,
            expires_unix_ms: 0,
        };
        let created = core.create_token(&token, 0).unwrap();
        for rec in core.audit_records(&[created], &alice(), 4_000) {
            core.apply_checked(&rec, 0);
        }
        let trail = core.status("p-1").unwrap().audit;
        let actions: Vec<&str> = trail.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["submit", "cancel", "token create bob"]);
        assert!(
            trail
                .iter()
                .all(|e| e.actor == "alice (operator)" && e.reason == "ticket 42")
        );

        let snap = core.to_snapshot(9, 0);
        let loaded = Core::from_snapshot(core.config().clone(), &snap, 0, 0).unwrap();
        assert_eq!(loaded.status("p-1").unwrap().audit, trail);
        assert_eq!(loaded.tokens().find(&[7; 32]), Some(&token));

        // A rollback to a state before the token keeps the token and the trail.
        let before = crate::core::tests::core();
        let (rolled, _) = core.rolled_back(before, 0);
        assert_eq!(rolled.tokens().find(&[7; 32]), Some(&token));
        assert_eq!(rolled.audit.to_entries().len(), 3);
    }

    #[test]
    fn schedule_changes_are_audited_master_wide() {
        use taskmaster_proto::v1::{ScheduleAction, ScheduleSpec};
        let mut core = core();
        let spec = ScheduleSpec {
            name: "nightly".into(),
            cron: "30 2 * * *".into(),
            timezone: "UTC".into(),
            pipeline: Some(two_groups(1)),
            ..Default::default()
        };
        let mut records = core.add_schedule(spec, 1_000, 0).unwrap();
        records.extend(
            core.change_schedule("nightly", ScheduleAction::Pause, 0)
                .unwrap(),
        );
        let audited = core.audit_records(&records, &alice(), 2_000);
        let actions: Vec<String> = audited
            .iter()
            .map(|rec| match &rec.kind {
                Some(Kind::Audited(a)) => a.entry.clone().unwrap().action,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(actions, ["schedule add nightly", "schedule pause nightly"]);
    }

    #[test]
    fn a_revoked_token_is_gone_and_names_are_checked() {
        let mut core = core();
        let token = |name: &str| Token {
            name: name.into(),
            role: Role::Worker,
            sha256: [1; 32],
            created_unix_ms: 1,
            expires_unix_ms: 5,
        };
        assert!(core.create_token(&token("w 1"), 0).is_err());
        core.create_token(&token("w1"), 0).unwrap();
        assert!(core.create_token(&token("w1"), 0).is_err(), "twice");
        assert!(core.tokens().find(&[1; 32]).unwrap().expired(5));
        assert!(!core.tokens().find(&[1; 32]).unwrap().expired(4));
        core.revoke_token("w1", 0).unwrap();
        assert_eq!(core.tokens().find(&[1; 32]), None);
        assert!(core.revoke_token("w1", 0).is_err());
    }
}
