//! Validation of a submitted pipeline spec, and the DAG derived from it.

use std::collections::HashMap;

use taskmaster_proto::v1::{GroupSpec, PipelineSpec};

use super::limits::*;
use super::names::{check_name, shown};

/// How a group's units are made from its upstream groups' outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// A first group: units from the spec's inputs.
    Inputs,
    /// One unit per committed upstream unit, created as each commits.
    PerUnit,
    /// `partitions` units, created once every upstream group is complete;
    /// unit r reads `part-r` of every upstream output.
    Shuffle { partitions: u32 },
    /// One unit reading every upstream output, created once they are complete.
    Gather,
}

impl Feed {
    /// Barrier groups wait for their upstream groups to complete.
    pub fn is_barrier(self) -> bool {
        matches!(self, Feed::Shuffle { .. } | Feed::Gather)
    }
}

/// The wiring of one group, derived from a valid spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupWiring {
    pub feed: Feed,
    /// Indices of the groups listed in `after`.
    pub upstream: Vec<u32>,
    /// Indices of the groups that list this one in `after`.
    pub downstream: Vec<u32>,
    /// Attempts a unit gets before it is failed.
    pub max_attempts: u32,
    /// Partitions this group's units must write, because a downstream
    /// group shuffles them (0: none).
    pub write_partitions: u32,
}

/// Checks everything about a spec that does not depend on the master's state
/// and returns each group's wiring, in spec order.
pub fn validate(spec: &PipelineSpec) -> Result<Vec<GroupWiring>, String> {
    check_name("pipeline name", &spec.name)?;
    check_vars("parameter", &spec.params)?;
    if spec.groups.is_empty() {
        return Err("pipeline has no groups".into());
    }
    if spec.groups.len() > GROUPS_PER_PIPELINE_MAX {
        return Err(format!(
            "pipeline has {} groups; at most {GROUPS_PER_PIPELINE_MAX} are allowed",
            spec.groups.len()
        ));
    }
    let mut index = HashMap::new();
    for (i, group) in spec.groups.iter().enumerate() {
        check_name("group name", &group.name)?;
        if index.insert(group.name.as_str(), i as u32).is_some() {
            return Err(format!("group name {:?} is used twice", group.name));
        }
    }
    let mut wiring = Vec::with_capacity(spec.groups.len());
    for group in &spec.groups {
        check_group(group)?;
        check_settings_bytes(group, &spec.params)?;
        wiring.push(GroupWiring {
            feed: feed_of(group)?,
            upstream: upstream_of(group, &index)?,
            downstream: Vec::new(),
            max_attempts: match group.max_attempts {
                0 => ATTEMPTS_DEFAULT,
                n => n,
            },
            write_partitions: 0,
        });
    }
    for i in 0..wiring.len() {
        for up in wiring[i].upstream.clone() {
            wiring[up as usize].downstream.push(i as u32);
            if let Feed::Shuffle { partitions } = wiring[i].feed {
                set_write_partitions(spec, &mut wiring, up as usize, partitions)?;
            }
        }
    }
    check_acyclic(spec, &wiring)?;
    Ok(wiring)
}

fn feed_of(group: &GroupSpec) -> Result<Feed, String> {
    let name = &group.name;
    let feed = match (group.after.is_empty(), group.partitions, group.gather) {
        (true, 0, false) => Feed::Inputs,
        (true, _, _) => {
            return Err(format!(
                "group {name:?} sets partitions or gather but has no after: only a group reading upstream outputs can shuffle or gather them"
            ));
        }
        (false, 0, false) => Feed::PerUnit,
        (false, 0, true) => Feed::Gather,
        (false, partitions, false) => Feed::Shuffle { partitions },
        (false, _, true) => {
            return Err(format!("group {name:?} sets both partitions and gather"));
        }
    };
    if group.partitions > PARTITIONS_MAX {
        return Err(format!(
            "group {name:?}: partitions above the limit of {PARTITIONS_MAX}"
        ));
    }
    Ok(feed)
}

/// An upstream group writes one set of partitions, so every group that
/// shuffles it must ask for the same number.
fn set_write_partitions(
    spec: &PipelineSpec,
    wiring: &mut [GroupWiring],
    up: usize,
    partitions: u32,
) -> Result<(), String> {
    let current = wiring[up].write_partitions;
    if current != 0 && current != partitions {
        return Err(format!(
            "group {:?} is shuffled into both {current} and {partitions} partitions",
            spec.groups[up].name
        ));
    }
    wiring[up].write_partitions = partitions;
    Ok(())
}

fn upstream_of(group: &GroupSpec, index: &HashMap<&str, u32>) -> Result<Vec<u32>, String> {
    let mut upstream: Vec<u32> = Vec::with_capacity(group.after.len());
    for name in &group.after {
        let Some(&i) = index.get(name.as_str()) else {
            return Err(format!(
                "group {:?} runs after {}, which is not a group of this pipeline",
                group.name,
                shown(name)
            ));
        };
        if upstream.contains(&i) {
            return Err(format!(
                "group {:?} lists {} twice in after",
                group.name,
                shown(name)
            ));
        }
        upstream.push(i);
    }
    Ok(upstream)
}

fn check_group(group: &GroupSpec) -> Result<(), String> {
    let name = &group.name;
    if group.task.is_empty() {
        return Err(format!("group {name:?} has no task"));
    }
    check_name("task name", &group.task)?;
    if group.task == "exec" && group.command.is_empty() {
        return Err(format!("group {name:?} runs exec but has no command"));
    }
    if group.command.len() > COMMAND_ARGS_MAX {
        return Err(format!(
            "group {name:?}: command has more than {COMMAND_ARGS_MAX} arguments"
        ));
    }
    if let Some(arg) = group
        .command
        .iter()
        .find(|a| a.len() > TEXT_BYTES_MAX || a.contains('\0'))
    {
        return Err(format!(
            "group {name:?}: command argument {:?}... is longer than {TEXT_BYTES_MAX} bytes or contains NUL",
            super::names::truncate(arg, 40)
        ));
    }
    if group.workdir.len() > TEXT_BYTES_MAX || group.workdir.contains('\0') {
        return Err(format!(
            "group {name:?}: workdir is too long or contains NUL"
        ));
    }
    if !group.inputs.is_empty() && !group.after.is_empty() {
        return Err(format!(
            "group {name:?} has both inputs and after: only a first group reads inputs"
        ));
    }
    if group.inputs.len() > INPUTS_PER_GROUP_MAX {
        return Err(format!(
            "group {name:?} has {} inputs; at most {INPUTS_PER_GROUP_MAX} are allowed",
            group.inputs.len()
        ));
    }
    check_input_units(group)?;
    if group.max_attempts > ATTEMPTS_MAX {
        return Err(format!(
            "group {name:?}: retries is above the limit of {ATTEMPTS_MAX}"
        ));
    }
    check_vars("environment variable", &group.env)?;
    check_timeout(group)?;
    check_task_settings(name, &group.config)
}

/// A timeout, when set, is between [`TIMEOUT_MS_MIN`] and
/// [`TIMEOUT_MS_MAX`].
fn check_timeout(group: &GroupSpec) -> Result<(), String> {
    match group.timeout_ms {
        Some(ms) if !(TIMEOUT_MS_MIN..=TIMEOUT_MS_MAX).contains(&ms) => Err(format!(
            "group {:?}: timeout of {ms} ms is outside 1 s to 7 days ({TIMEOUT_MS_MIN} to \
             {TIMEOUT_MS_MAX} ms)",
            group.name
        )),
        _ => Ok(()),
    }
}

/// Task settings: keys are the task's to define, so any short printable
/// name; bounded in number and size like every other map.
fn check_task_settings(
    group: &str,
    config: &std::collections::HashMap<String, String>,
) -> Result<(), String> {
    if config.len() > VARS_MAX {
        return Err(format!(
            "group {group:?} has more than {VARS_MAX} task settings"
        ));
    }
    for (key, value) in config {
        if key.is_empty() || key.len() > NAME_BYTES_MAX || key.chars().any(char::is_control) {
            return Err(format!(
                "group {group:?}: task setting name {:?} must be 1 to {NAME_BYTES_MAX} printable bytes",
                super::names::truncate(key, 80)
            ));
        }
        if value.len() > TEXT_BYTES_MAX || value.contains('\0') {
            return Err(format!(
                "group {group:?}: task setting {} is longer than {TEXT_BYTES_MAX} bytes or contains NUL",
                shown(key)
            ));
        }
    }
    Ok(())
}

/// Every lease of a group carries its settings and the pipeline's
/// parameters: together they stay under [`SETTINGS_BYTES_MAX`], so a
/// lease always fits in a reply (see `REPLY_LEASE_BYTES_MAX`).
fn check_settings_bytes(
    group: &GroupSpec,
    params: &std::collections::HashMap<String, String>,
) -> Result<(), String> {
    let pairs = |m: &std::collections::HashMap<String, String>| -> usize {
        m.iter().map(|(k, v)| k.len() + v.len()).sum()
    };
    let bytes = group.command.iter().map(String::len).sum::<usize>()
        + group.workdir.len()
        + pairs(&group.env)
        + pairs(&group.config)
        + pairs(params);
    if bytes > SETTINGS_BYTES_MAX {
        return Err(format!(
            "group {:?}: its command, workdir, environment and task settings with the \
             pipeline's parameters come to {bytes} bytes; at most {SETTINGS_BYTES_MAX} \
             (every lease carries them)",
            group.name
        ));
    }
    Ok(())
}

fn check_input_units(group: &GroupSpec) -> Result<(), String> {
    let name = &group.name;
    if !group.input_units.is_empty() && !group.inputs.is_empty() {
        return Err(format!("group {name:?} has both inputs and input_units"));
    }
    if !group.input_units.is_empty() && !group.after.is_empty() {
        return Err(format!("group {name:?} has both input_units and after"));
    }
    if group.input_units.len() > INPUTS_PER_GROUP_MAX {
        return Err(format!(
            "group {name:?} has {} input units; at most {INPUTS_PER_GROUP_MAX} are allowed",
            group.input_units.len()
        ));
    }
    let slices = group.input_units.iter().flat_map(|u| &u.slices);
    for slice in slices {
        check_input_path(name, &slice.path)?;
        if slice.start >= slice.end {
            return Err(format!(
                "group {name:?}: input slice of {:?} is empty or reversed",
                slice.path
            ));
        }
    }
    for unit in &group.input_units {
        if unit.files.len() + unit.slices.len() > FILES_PER_UNIT_MAX {
            return Err(format!(
                "group {name:?}: a unit has more than {FILES_PER_UNIT_MAX} inputs"
            ));
        }
    }
    let mut files = group
        .inputs
        .iter()
        .chain(group.input_units.iter().flat_map(|u| &u.files));
    files.try_for_each(|path| check_input_path(name, path))
}

/// An input is an absolute path on the workers' file system, or the URL of
/// an object in an S3-compatible store (`s3://bucket/key`), which workers
/// download first.
fn check_input_path(group: &str, path: &str) -> Result<(), String> {
    let object_url = path
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(bucket, key)| !bucket.is_empty() && !key.is_empty());
    let located = path.starts_with('/') || object_url;
    if !located || path.len() > TEXT_BYTES_MAX || path.contains('\0') {
        return Err(format!(
            "group {group:?}: input {:?} must be an absolute path or an s3://bucket/key URL \
             of at most {TEXT_BYTES_MAX} bytes",
            super::names::truncate(path, 80)
        ));
    }
    Ok(())
}

fn check_vars(what: &str, vars: &std::collections::HashMap<String, String>) -> Result<(), String> {
    if vars.len() > VARS_MAX {
        return Err(format!("more than {VARS_MAX} {what}s"));
    }
    for (key, value) in vars {
        if key.is_empty()
            || key.len() > NAME_BYTES_MAX
            || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(format!(
                "{what} name {} must be 1 to {NAME_BYTES_MAX} letters, digits or '_'",
                shown(key)
            ));
        }
        if value.len() > TEXT_BYTES_MAX || value.contains('\0') {
            return Err(format!(
                "{what} {key:?} is longer than {TEXT_BYTES_MAX} bytes or contains NUL"
            ));
        }
    }
    Ok(())
}

/// Groups that never reach in-degree zero form (or hang off) a cycle.
fn check_acyclic(spec: &PipelineSpec, wiring: &[GroupWiring]) -> Result<(), String> {
    let order = topo_order(wiring);
    if order.len() == wiring.len() {
        return Ok(());
    }
    let stuck: Vec<&str> = (0..wiring.len() as u32)
        .filter(|i| !order.contains(i))
        .map(|i| spec.groups[i as usize].name.as_str())
        .collect();
    Err(format!(
        "groups form a cycle through after: {}",
        stuck.join(", ")
    ))
}

/// Kahn's algorithm: the groups in an order where each comes after its
/// upstream groups. Groups on (or behind) a cycle are left out.
pub fn topo_order(wiring: &[GroupWiring]) -> Vec<u32> {
    let mut in_degree: Vec<usize> = wiring.iter().map(|w| w.upstream.len()).collect();
    let mut ready: Vec<u32> = (0..wiring.len() as u32)
        .filter(|&i| in_degree[i as usize] == 0)
        .collect();
    ready.reverse();
    let mut order = Vec::with_capacity(wiring.len());
    while let Some(i) = ready.pop() {
        order.push(i);
        for &down in &wiring[i as usize].downstream {
            in_degree[down as usize] -= 1;
            if in_degree[down as usize] == 0 {
                ready.push(down);
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, after: &[&str]) -> GroupSpec {
        GroupSpec {
            name: name.into(),
            task: "exec".into(),
            command: vec!["true".into()],
            after: after.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn spec(groups: Vec<GroupSpec>) -> PipelineSpec {
        PipelineSpec {
            name: "p".into(),
            groups,
            ..Default::default()
        }
    }

    #[test]
    fn wiring_follows_after() {
        let w = validate(&spec(vec![
            group("a", &[]),
            group("b", &["a"]),
            group("c", &["a", "b"]),
        ]))
        .unwrap();
        assert_eq!(w[0].downstream, vec![1, 2]);
        assert_eq!(w[2].upstream, vec![0, 1]);
        assert_eq!(w[1].max_attempts, ATTEMPTS_DEFAULT);
        assert_eq!((w[0].feed, w[1].feed), (Feed::Inputs, Feed::PerUnit));
    }

    #[test]
    fn a_timeout_is_between_a_second_and_a_week() {
        let with = |timeout_ms| {
            let mut s = spec(vec![group("a", &[])]);
            s.groups[0].timeout_ms = timeout_ms;
            validate(&s)
        };
        for fine in [
            None,
            Some(TIMEOUT_MS_MIN),
            Some(1_800_000),
            Some(TIMEOUT_MS_MAX),
        ] {
            assert!(with(fine).is_ok(), "{fine:?} refused");
        }
        for bad in [0, TIMEOUT_MS_MIN - 1, TIMEOUT_MS_MAX + 1, u64::MAX] {
            let err = with(Some(bad)).unwrap_err();
            assert!(
                err.contains(&format!(
                    "group \"a\": timeout of {bad} ms is outside 1 s to 7 days"
                )),
                "{err}"
            );
        }
    }

    #[test]
    fn shuffles_set_the_partitions_upstream_writes() {
        let mut s = spec(vec![
            group("a", &[]),
            group("b", &["a"]),
            group("c", &["b"]),
        ]);
        s.groups[1].partitions = 4;
        s.groups[2].gather = true;
        let w = validate(&s).unwrap();
        assert_eq!(w[1].feed, Feed::Shuffle { partitions: 4 });
        assert_eq!(w[2].feed, Feed::Gather);
        assert_eq!((w[0].write_partitions, w[1].write_partitions), (4, 0));
        let mut clash = spec(vec![
            group("a", &[]),
            group("b", &["a"]),
            group("c", &["a"]),
        ]);
        clash.groups[1].partitions = 2;
        clash.groups[2].partitions = 3;
        assert!(
            validate(&clash)
                .unwrap_err()
                .contains("both 2 and 3 partitions")
        );
        let mut both = spec(vec![group("a", &[]), group("b", &["a"])]);
        both.groups[1].partitions = 2;
        both.groups[1].gather = true;
        assert!(
            validate(&both)
                .unwrap_err()
                .contains("both partitions and gather")
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let cases = [
            (
                spec(vec![group("a", &["zz"])]),
                "not a group of this pipeline",
            ),
            (spec(vec![group("a", &["b"]), group("b", &["a"])]), "cycle"),
            (spec(vec![group("a", &["a"])]), "cycle"),
            (spec(vec![group("a", &[]), group("a", &[])]), "used twice"),
            (spec(vec![group("", &[])]), "group name is empty"),
            (spec(vec![group("x/y", &[])]), "path separator"),
            (spec(vec![]), "no groups"),
        ];
        for (spec, want) in cases {
            let err = validate(&spec).unwrap_err();
            assert!(err.contains(want), "{err:?} lacks {want:?}");
        }
        let mut relative = spec(vec![group("a", &[])]);
        relative.groups[0].inputs = vec!["data/x.csv".into()];
        assert!(validate(&relative).unwrap_err().contains("absolute path"));
        relative.groups[0].inputs = vec!["s3://bucket/".into()];
        assert!(validate(&relative).unwrap_err().contains("s3://bucket/key"));
        relative.groups[0].inputs = vec!["s3://bucket/in/x.csv".into()];
        assert!(validate(&relative).is_ok());
    }
}
