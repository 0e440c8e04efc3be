//! Validation of a submitted pipeline spec, and the DAG derived from it.

use std::collections::HashMap;

use taskmaster_proto::v1::{GroupSpec, PipelineSpec};

use super::limits::*;
use super::names::check_name;

/// The wiring of one group, derived from a valid spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupWiring {
    /// Indices of the groups listed in `after`.
    pub upstream: Vec<u32>,
    /// Indices of the groups that list this one in `after`.
    pub downstream: Vec<u32>,
    /// Attempts a unit gets before it is failed.
    pub max_attempts: u32,
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
        wiring.push(GroupWiring {
            upstream: upstream_of(group, &index)?,
            downstream: Vec::new(),
            max_attempts: match group.max_attempts {
                0 => ATTEMPTS_DEFAULT,
                n => n,
            },
        });
    }
    for i in 0..wiring.len() {
        for up in wiring[i].upstream.clone() {
            wiring[up as usize].downstream.push(i as u32);
        }
    }
    check_acyclic(spec, &wiring)?;
    Ok(wiring)
}

fn upstream_of(group: &GroupSpec, index: &HashMap<&str, u32>) -> Result<Vec<u32>, String> {
    let mut upstream: Vec<u32> = Vec::with_capacity(group.after.len());
    for name in &group.after {
        let Some(&i) = index.get(name.as_str()) else {
            return Err(format!(
                "group {:?} runs after {name:?}, which is not a group of this pipeline",
                group.name
            ));
        };
        if upstream.contains(&i) {
            return Err(format!(
                "group {:?} lists {name:?} twice in after",
                group.name
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
    for input in &group.inputs {
        if !input.starts_with('/') || input.len() > TEXT_BYTES_MAX || input.contains('\0') {
            return Err(format!(
                "group {name:?}: input {:?} must be an absolute path of at most {TEXT_BYTES_MAX} bytes",
                super::names::truncate(input, 80)
            ));
        }
    }
    if group.max_attempts > ATTEMPTS_MAX {
        return Err(format!(
            "group {name:?}: retries is above the limit of {ATTEMPTS_MAX}"
        ));
    }
    check_vars("environment variable", &group.env)
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
                "{what} name {key:?} must be 1 to {NAME_BYTES_MAX} letters, digits or '_'"
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

/// Kahn's algorithm: if some groups never reach in-degree zero, they form
/// (or hang off) a cycle; name one of them.
fn check_acyclic(spec: &PipelineSpec, wiring: &[GroupWiring]) -> Result<(), String> {
    let mut in_degree: Vec<usize> = wiring.iter().map(|w| w.upstream.len()).collect();
    let mut ready: Vec<usize> = (0..wiring.len()).filter(|&i| in_degree[i] == 0).collect();
    let mut seen = 0;
    while let Some(i) = ready.pop() {
        seen += 1;
        for &down in &wiring[i].downstream {
            in_degree[down as usize] -= 1;
            if in_degree[down as usize] == 0 {
                ready.push(down as usize);
            }
        }
    }
    if seen == wiring.len() {
        return Ok(());
    }
    let stuck: Vec<&str> = (0..wiring.len())
        .filter(|&i| in_degree[i] > 0)
        .map(|i| spec.groups[i].name.as_str())
        .collect();
    Err(format!(
        "groups form a cycle through after: {}",
        stuck.join(", ")
    ))
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
    }
}
