//! Replies that must stay sendable: a shuffle whose leases are each
//! megabytes gets fewer leases per reply (never none), and a gather whose
//! input list is over the inline limit is paged (`ListInputs`).

use prost::Message as _;
use taskmaster_proto::v1::*;

use super::Core;
use super::limits::{LEASE_INPUT_BYTES_MAX, MESSAGE_BYTES_MAX, REPLY_LEASE_BYTES_MAX};
use super::tests::{core, done};

/// Names at the 64-byte limit, so every path is long.
const LONG: &str = "a-very-long-name-at-the-limit-of-sixty-four-bytes-0123456789abcd";

/// A first group of `units` units, each committing `files` files, and a
/// downstream group wired by `wire`.
fn upstream_then(units: usize, wire: impl FnOnce(&mut GroupSpec)) -> PipelineSpec {
    let mut first = GroupSpec {
        name: LONG.into(),
        task: "exec".into(),
        command: vec!["true".into()],
        inputs: (0..units).map(|i| format!("/in/{i}")).collect(),
        ..Default::default()
    };
    first.retry_delay_ms = Some(0);
    let mut down = GroupSpec {
        name: "down".into(),
        task: "exec".into(),
        command: vec!["true".into()],
        after: vec![LONG.into()],
        ..Default::default()
    };
    wire(&mut down);
    PipelineSpec {
        name: "p".into(),
        groups: vec![first, down],
        ..Default::default()
    }
}

/// Leases and commits every unit of the first group with `names`
/// outputs, leasing no more than it has left (the downstream group's units
/// appear once it is done).
fn commit_first_group(core: &mut Core, units: usize, names: &[String]) {
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut left = units;
    while left > 0 {
        let (_, leases) = core.lease("w", left.min(1000), false, 0).unwrap();
        assert!(!leases.is_empty());
        left -= leases.len();
        let items: Vec<CommitItem> = leases.iter().map(|l| done(l, &names)).collect();
        let (_, results) = core.commit("tok", &items, 0).unwrap();
        assert!(results.iter().all(Result::is_ok));
    }
}

#[test]
fn a_shuffle_of_large_leases_sends_as_many_as_fit_and_the_rest_next_time() {
    let mut core = core();
    let id = LONG;
    let spec = upstream_then(3000, |g| g.partitions = 64);
    core.submit(id, spec, 0, 0).unwrap();
    let parts: Vec<String> = (0..64).map(|r| format!("part-{r:05}")).collect();
    commit_first_group(&mut core, 3000, &parts);
    for compact in [false, true] {
        let (_, first) = core.lease("w", 64, compact, 0).unwrap();
        let reply = LeaseResponse {
            leases: first.leases.clone(),
            lease_groups: first.groups.clone(),
        };
        let bytes = reply.encoded_len();
        assert!(
            !first.is_empty() && first.len() < 64,
            "{} leases",
            first.len()
        );
        assert!(bytes <= REPLY_LEASE_BYTES_MAX, "{bytes} bytes");
        // Each lease holds one partition of each of the 3,000 upstream units.
        let expanded = taskmaster_proto::compact::expand(first.leases, &first.groups).unwrap();
        assert!(
            expanded
                .iter()
                .all(|l| l.inputs.len() == 3000 && !l.inputs_paged)
        );
        core.check_invariants().unwrap();
    }
    let mut granted = 0;
    loop {
        let (_, more) = core.lease("w", 64, true, 0).unwrap();
        if more.is_empty() {
            break;
        }
        granted += more.len();
    }
    let status = core.status(id).unwrap();
    assert_eq!(
        status.groups[1].counts.unwrap().leased,
        64,
        "every partition leased in the end"
    );
    assert!(granted > 0);
}

#[test]
fn a_gather_over_too_many_inputs_pages_them_and_lists_them_all() {
    let mut core = core();
    // Attempt directories then carry an incarnation: counted too.
    core.start(0x5eed, 0, 0).unwrap();
    let id = LONG;
    core.submit(id, upstream_then(2000, |g| g.gather = true), 0, 0)
        .unwrap();
    let names: Vec<String> = (0..16).map(|i| format!("{LONG}-{i:02}")).collect();
    commit_first_group(&mut core, 2000, &names);
    let (_, leases) = core.lease("w", 10, false, 0).unwrap();
    assert_eq!(leases.len(), 1, "{:?}", core.status(id).unwrap());
    let lease = &leases[0];
    assert!(lease.inputs_paged && lease.inputs.is_empty());
    assert!(
        lease.encoded_len() < 64 * 1024,
        "{} bytes",
        lease.encoded_len()
    );

    let (expected, _) = core.inputs_of(0, 1, &super::model::UnitSource::Gather);
    let bytes: usize = expected.iter().map(String::len).sum();
    assert!(bytes > LEASE_INPUT_BYTES_MAX);
    let counted = core.input_bytes(0, 1, &super::model::UnitSource::Gather);
    assert_eq!(
        counted, bytes,
        "counted without building the paths, to the byte"
    );
    let mut listed = Vec::new();
    let mut cursor = 0;
    let mut pages = 0;
    loop {
        let page = core
            .list_inputs("tok", &lease.to_ref(), cursor, 0, 0)
            .unwrap()
            .unwrap();
        assert!(page.encoded_len() < MESSAGE_BYTES_MAX / 2);
        listed.extend(page.inputs);
        pages += 1;
        if page.next_cursor == 0 {
            break;
        }
        cursor = page.next_cursor;
    }
    assert_eq!(listed, expected, "every input, in order, once");
    assert!(pages >= 4, "{pages} pages");

    // A small limit pages too; only the lease's holder may list.
    let page = core
        .list_inputs("tok", &lease.to_ref(), 5, 3, 0)
        .unwrap()
        .unwrap();
    assert_eq!(
        (page.inputs.as_slice(), page.next_cursor),
        (&expected[5..8], 8)
    );
    let mut stale = lease.to_ref();
    stale.lease_id += 1;
    assert!(core.list_inputs("tok", &stale, 0, 0, 0).unwrap().is_err());
    assert!(core.list_inputs("other", &lease.to_ref(), 0, 0, 0).is_err());
}

#[test]
fn settings_that_would_swell_every_lease_are_refused_at_submit_and_config() {
    let mut core = core();
    let mut spec = upstream_then(1, |_| {});
    spec.groups[0].config = (0..64)
        .map(|i| (format!("k{i}"), "v".repeat(4096)))
        .collect();
    spec.groups[0].command = vec!["x".repeat(4096); 200];
    let err = core.submit("p-1", spec, 0, 0).unwrap_err();
    assert!(
        err.to_string().contains("every lease carries them"),
        "{err}"
    );

    core.submit("p-2", upstream_then(1, |_| {}), 0, 0).unwrap();
    let change = GroupConfigChange {
        config: [("k".repeat(65), "v".into())].into(),
        ..Default::default()
    };
    let err = core.change_config("p-2", LONG, change, 0).unwrap_err();
    assert!(err.to_string().contains("task setting name"), "{err}");
}
