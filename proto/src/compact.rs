//! The compact form of leases (`LeaseRequest.compact`, `LeaseNext.compact`):
//! what the leases of one group share comes once per reply, as a
//! [`LeaseGroup`], and [`expand`] rebuilds the full [`Lease`]s from it.
//!
//! A full lease repeats about six strings of its group (pipeline and group
//! names, server token, store root, task, output prefix); building,
//! encoding, decoding and freeing them was about a fifth of the master's
//! instructions in a batched run (BENCHMARKS.md, "Why the code is shaped
//! so: compact leases").

use thiserror::Error;

use crate::v1::{InputSlice, Lease, LeaseGroup, UnitRef};

/// A compact reply that does not hold together.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CompactError {
    #[error("lease {lease_id} names lease group {index}, but the reply has {groups}")]
    NoSuchGroup {
        lease_id: u64,
        index: u32,
        groups: usize,
    },
}

/// The store-relative prefix an attempt writes under:
/// `<pipeline_id>/<group>/<unit>/<attempt dir>/` (see [`attempt_dir_name`]).
/// It holds the lease id and the granting master's incarnation, so names
/// under it can never collide with another attempt's, not even one of a
/// master started on a copy of the data dir.
pub fn output_prefix(
    pipeline_id: &str,
    group: &str,
    unit: u32,
    lease_id: u64,
    incarnation: u64,
) -> String {
    // Built by hand: `format!` grew the string several times and cost a
    // tenth of the master's instructions in a batched run (BENCHMARKS.md,
    // "Why the code is shaped so: output prefixes built by hand").
    let mut prefix = String::with_capacity(pipeline_id.len() + group.len() + 51);
    for part in [pipeline_id, "/", group, "/"] {
        prefix.push_str(part);
    }
    push_decimal(&mut prefix, unit.into());
    prefix.push('/');
    push_attempt_dir_name(&mut prefix, lease_id, incarnation);
    prefix.push('/');
    prefix
}

/// The directory of one attempt under its unit's: `<lease id>-<incarnation
/// as 16 lower-case hex digits>`, or just `<lease id>` for incarnation 0
/// (leases granted before masters had incarnations).
pub fn attempt_dir_name(lease_id: u64, incarnation: u64) -> String {
    let mut name = String::with_capacity(37);
    push_attempt_dir_name(&mut name, lease_id, incarnation);
    name
}

fn push_attempt_dir_name(out: &mut String, lease_id: u64, incarnation: u64) {
    push_decimal(out, lease_id);
    if incarnation != 0 {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        out.push('-');
        for shift in (0..16).rev() {
            out.push(HEX[((incarnation >> (shift * 4)) & 0xf) as usize] as char);
        }
    }
}

/// The (lease id, incarnation) an attempt directory's name stands for;
/// None for any other name (only the exact spelling of
/// [`attempt_dir_name`] parses, so a stray directory is never taken for
/// an attempt's).
pub fn parse_attempt_dir_name(name: &str) -> Option<(u64, u64)> {
    let (lease, incarnation) = match name.split_once('-') {
        Some((lease, hex))
            if hex.len() == 16
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            (lease, u64::from_str_radix(hex, 16).ok()?)
        }
        Some(_) => return None,
        None => (name, 0),
    };
    let lease_id: u64 = lease.parse().ok()?;
    (attempt_dir_name(lease_id, incarnation) == name).then_some((lease_id, incarnation))
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20]; // u64::MAX has 20
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[start..]).expect("ASCII digits"));
}

/// Full leases from a reply's `leases` and `lease_groups`. Leases that are
/// already full (`lease_group` 0; the master sends a lone lease so even
/// when asked for the compact form) pass unchanged, so a client may call
/// it on any reply.
pub fn expand(leases: Vec<Lease>, groups: &[LeaseGroup]) -> Result<Vec<Lease>, CompactError> {
    leases
        .into_iter()
        .map(|lease| expand_one(lease, groups))
        .collect()
}

/// The group a compact lease names in its reply's `groups`; `None` for a
/// full lease. For a client that needs only part of a lease (say, what a
/// commit names) and so does not [`expand`] it.
pub fn group_in<'a>(
    lease: &Lease,
    groups: &'a [LeaseGroup],
) -> Result<Option<&'a LeaseGroup>, CompactError> {
    if lease.lease_group == 0 {
        return Ok(None);
    }
    (lease.lease_group as usize)
        .checked_sub(1)
        .and_then(|i| groups.get(i))
        .map(Some)
        .ok_or(CompactError::NoSuchGroup {
            lease_id: lease.lease_id,
            index: lease.lease_group,
            groups: groups.len(),
        })
}

fn expand_one(lease: Lease, groups: &[LeaseGroup]) -> Result<Lease, CompactError> {
    Ok(match group_in(&lease, groups)? {
        Some(group) => LeaseOwn::of_compact(lease).into_full(group.clone()),
        None => lease,
    })
}

/// What a lease holds of its own, apart from its group's settings: all
/// that a compact lease carries.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseOwn {
    pub unit: u32,
    pub lease_id: u64,
    pub inputs: Vec<String>,
    pub input_slices: Vec<InputSlice>,
    pub attempt: u32,
    /// The inputs were too large to send: the worker lists them (`ListInputs`).
    pub inputs_paged: bool,
}

impl LeaseOwn {
    /// The compact lease, naming its group by `lease_group` (1-based
    /// index in the reply's `lease_groups`).
    pub fn into_compact(self, lease_group: u32) -> Lease {
        Lease {
            unit: Some(UnitRef {
                unit: self.unit,
                ..UnitRef::default()
            }),
            lease_id: self.lease_id,
            inputs: self.inputs,
            input_slices: self.input_slices,
            attempt: self.attempt,
            lease_group,
            inputs_paged: self.inputs_paged,
            ..Lease::default()
        }
    }

    /// The full lease, with its `group`'s settings. The master builds its
    /// full leases so too, so the two forms cannot drift apart.
    pub fn into_full(self, group: LeaseGroup) -> Lease {
        // Every field, so that a new one cannot be forgotten here.
        let LeaseGroup {
            pipeline_id,
            group,
            lease_ms,
            config_version,
            server_token,
            store_root,
            store_url,
            task,
            command,
            workdir,
            env,
            params,
            partitions,
            config,
            incarnation,
            timeout_ms,
        } = group;
        Lease {
            output_prefix: output_prefix(
                &pipeline_id,
                &group,
                self.unit,
                self.lease_id,
                incarnation,
            ),
            unit: Some(UnitRef {
                pipeline_id,
                group,
                unit: self.unit,
            }),
            lease_id: self.lease_id,
            lease_ms,
            config_version,
            server_token,
            store_root,
            store_url,
            task,
            command,
            workdir,
            env,
            params,
            inputs: self.inputs,
            input_slices: self.input_slices,
            attempt: self.attempt,
            partitions,
            config,
            lease_group: 0,
            incarnation,
            inputs_paged: self.inputs_paged,
            timeout_ms,
        }
    }

    /// A compact lease's own fields (the rest are its group's).
    fn of_compact(lease: Lease) -> LeaseOwn {
        LeaseOwn {
            unit: lease.unit.map_or(0, |u| u.unit),
            lease_id: lease.lease_id,
            inputs: lease.inputs,
            input_slices: lease.input_slices,
            attempt: lease.attempt,
            inputs_paged: lease.inputs_paged,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_prefixes_spell_every_number_in_full() {
        assert_eq!(output_prefix("p-1", "a", 0, 0, 0), "p-1/a/0/0/");
        assert_eq!(output_prefix("p", "g", 10, 909, 0), "p/g/10/909/");
        assert_eq!(
            output_prefix("wc-0badcafe", "map", u32::MAX, u64::MAX, u64::MAX),
            "wc-0badcafe/map/4294967295/18446744073709551615-ffffffffffffffff/"
        );
        assert_eq!(
            output_prefix("p", "g", 1, 7, 0xab),
            "p/g/1/7-00000000000000ab/"
        );
    }

    #[test]
    fn attempt_dir_names_parse_back_and_nothing_else_does() {
        for (lease, incarnation) in [(0, 0), (7, 0), (7, 1), (u64::MAX, 0x0123_4567_89ab_cdef)] {
            let name = attempt_dir_name(lease, incarnation);
            assert_eq!(parse_attempt_dir_name(&name), Some((lease, incarnation)));
        }
        for bad in [
            "",
            "x",
            "07",
            "7-",
            "7-ab",
            "7-00000000000000AB",
            "7-000000000000000g",
            "7-0000000000000000",
            "-0000000000000001",
            "+7",
            "7-00000000000000ab-1",
        ] {
            assert_eq!(parse_attempt_dir_name(bad), None, "{bad:?} parsed");
        }
    }

    /// The part of a full lease its group shares: what [`expand`] puts back.
    fn group_of(lease: &Lease) -> LeaseGroup {
        let unit = lease.unit.as_ref();
        LeaseGroup {
            pipeline_id: unit.map(|u| u.pipeline_id.clone()).unwrap_or_default(),
            group: unit.map(|u| u.group.clone()).unwrap_or_default(),
            lease_ms: lease.lease_ms,
            config_version: lease.config_version,
            server_token: lease.server_token.clone(),
            store_root: lease.store_root.clone(),
            store_url: lease.store_url.clone(),
            task: lease.task.clone(),
            command: lease.command.clone(),
            workdir: lease.workdir.clone(),
            env: lease.env.clone(),
            params: lease.params.clone(),
            partitions: lease.partitions,
            config: lease.config.clone(),
            incarnation: lease.incarnation,
            timeout_ms: lease.timeout_ms,
        }
    }

    fn full_lease(unit: u32, lease_id: u64) -> Lease {
        Lease {
            unit: Some(UnitRef {
                pipeline_id: "p-1".into(),
                group: "map".into(),
                unit,
            }),
            lease_id,
            lease_ms: 30_000,
            config_version: 3,
            server_token: "token".into(),
            output_prefix: output_prefix("p-1", "map", unit, lease_id, 0x5eed),
            store_root: "/store".into(),
            store_url: String::new(),
            task: "wordcount".into(),
            command: vec!["run".into(), "--fast".into()],
            workdir: "/work".into(),
            env: [("A".to_string(), "1".to_string())].into(),
            params: [("day".to_string(), "2026-12-03".to_string())].into(),
            inputs: vec![format!("/in/{unit}")],
            input_slices: Vec::new(),
            attempt: 2,
            partitions: 4,
            config: [("k".to_string(), "v".to_string())].into(),
            lease_group: 0,
            incarnation: 0x5eed,
            inputs_paged: false,
            // Set, so that a group that lost it would fail the round trip.
            timeout_ms: Some(90_000),
        }
    }

    /// The compact form of `lease`: only its own fields, and a group.
    fn compact(lease: &Lease, lease_group: u32) -> Lease {
        Lease {
            unit: Some(UnitRef {
                unit: lease.unit.as_ref().unwrap().unit,
                ..UnitRef::default()
            }),
            lease_id: lease.lease_id,
            inputs: lease.inputs.clone(),
            input_slices: lease.input_slices.clone(),
            attempt: lease.attempt,
            lease_group,
            ..Lease::default()
        }
    }

    #[test]
    fn expanding_gives_back_the_full_leases() {
        let full = vec![full_lease(0, 7), full_lease(5, 8)];
        let groups = vec![group_of(&full[0])];
        let compacted = full.iter().map(|l| compact(l, 1)).collect();
        assert_eq!(expand(compacted, &groups).unwrap(), full);
    }

    #[test]
    fn full_leases_pass_unchanged() {
        let full = vec![full_lease(1, 9)];
        assert_eq!(expand(full.clone(), &[]).unwrap(), full);
    }

    #[test]
    fn a_group_index_past_the_reply_is_refused() {
        let lease = compact(&full_lease(0, 7), 2);
        let groups = vec![group_of(&full_lease(0, 7))];
        let err = expand(vec![lease], &groups).unwrap_err();
        assert_eq!(
            err,
            CompactError::NoSuchGroup {
                lease_id: 7,
                index: 2,
                groups: 1
            }
        );
        assert!(err.to_string().contains("lease group 2"), "{err}");
    }
}
