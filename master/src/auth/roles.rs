//! The one table of who may call what: every RPC the master serves,
//! by its full gRPC path, and the roles allowed to call it. An RPC
//! missing from it is refused to everyone (deny by default), and the test
//! below fails until it is added. Health and reflection are open: they
//! tell nothing a port scan would not.

use taskmaster_proto::v1::Role;

/// The worker calls: a worker's identity, only for its own leases (the
/// service checks `worker_id` and lease holders), or an admin.
const WORKER: &[Role] = &[Role::Worker, Role::Admin];
/// Every read.
const READ: &[Role] = &[Role::Viewer, Role::Operator, Role::Admin];
/// Submitting and every operator action.
const OPERATE: &[Role] = &[Role::Operator, Role::Admin];
/// Tokens and rollback.
const ADMIN: &[Role] = &[Role::Admin];

/// Each RPC, by its full gRPC path, and the roles it allows. Every
/// service the master serves is here (the test below reads them from the
/// descriptor), except the open ones.
pub const TABLE: &[(&str, &[Role])] = &[
    ("/taskmaster.v1.TaskMaster/Submit", OPERATE),
    ("/taskmaster.v1.TaskMaster/GetStatus", READ),
    ("/taskmaster.v1.TaskMaster/ListPipelines", READ),
    ("/taskmaster.v1.TaskMaster/ListOutputs", READ),
    ("/taskmaster.v1.TaskMaster/ReadLogs", READ),
    ("/taskmaster.v1.TaskMaster/Lease", WORKER),
    ("/taskmaster.v1.TaskMaster/Renew", WORKER),
    ("/taskmaster.v1.TaskMaster/Commit", WORKER),
    ("/taskmaster.v1.TaskMaster/Release", WORKER),
    ("/taskmaster.v1.TaskMaster/ListInputs", WORKER),
    ("/taskmaster.v1.TaskMaster/Work", WORKER),
    ("/taskmaster.v1.TaskMaster/Cancel", OPERATE),
    ("/taskmaster.v1.TaskMaster/DeletePipelines", OPERATE),
    ("/taskmaster.v1.TaskMaster/Block", OPERATE),
    ("/taskmaster.v1.TaskMaster/Retry", OPERATE),
    ("/taskmaster.v1.TaskMaster/Rerun", OPERATE),
    ("/taskmaster.v1.TaskMaster/Clear", OPERATE),
    ("/taskmaster.v1.TaskMaster/ChangeConfig", OPERATE),
    ("/taskmaster.v1.TaskMaster/Scale", OPERATE),
    ("/taskmaster.v1.TaskMaster/ListWorkers", READ),
    ("/taskmaster.v1.TaskMaster/GetMasterStatus", READ),
    ("/taskmaster.v1.TaskMaster/TakeSnapshot", OPERATE),
    ("/taskmaster.v1.TaskMaster/ListSnapshots", READ),
    ("/taskmaster.v1.TaskMaster/Rollback", ADMIN),
    ("/taskmaster.v1.TaskMaster/CreateToken", ADMIN),
    ("/taskmaster.v1.TaskMaster/ListTokens", ADMIN),
    ("/taskmaster.v1.TaskMaster/RevokeToken", ADMIN),
    ("/taskmaster.v1.Schedules/AddSchedule", OPERATE),
    ("/taskmaster.v1.Schedules/ListSchedules", READ),
    ("/taskmaster.v1.Schedules/ChangeSchedule", OPERATE),
    ("/taskmaster.v1.Schedules/TriggerSchedule", OPERATE),
    ("/taskmaster.v1.Schedules/ListRuns", READ),
    ("/taskmaster.v1.Schedules/Backfill", OPERATE),
    ("/taskmaster.v1.Schedules/ListBackfills", READ),
    ("/taskmaster.v1.Schedules/ChangeBackfill", OPERATE),
    ("/taskmaster.v1.Schedules/ListPublished", READ),
];

/// Services anyone may call: health checks and reflection.
const OPEN_SERVICES: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// What a call to `path` needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Nothing: health and reflection.
    Nothing,
    /// One of these roles.
    OneOf(&'static [Role]),
    /// No such RPC in the table: refused.
    Unknown,
}

pub fn needs(path: &str) -> Needs {
    if OPEN_SERVICES.iter().any(|s| path.starts_with(s)) {
        return Needs::Nothing;
    }
    TABLE
        .iter()
        .find(|(name, _)| *name == path)
        .map_or(Needs::Unknown, |(_, roles)| Needs::OneOf(roles))
}

/// Whether `path` is one of a worker's calls (lease, renew, commit,
/// release, inputs, the Work stream): bounded by the worker's leases, so
/// not counted against the rate per identity.
pub fn is_worker_call(path: &str) -> bool {
    matches!(needs(path), Needs::OneOf(roles) if roles == WORKER)
}

/// Whether `identity` may call `path`, whose entry in the table is
/// `roles` (None: not in it, so refused to everyone).
pub fn allow(
    identity: &super::Identity,
    path: &str,
    roles: Option<&[Role]>,
) -> Result<(), tonic::Status> {
    let method = method(path);
    let Some(roles) = roles else {
        return Err(tonic::Status::permission_denied(format!(
            "{method} is not in the master's role table: refused to everyone"
        )));
    };
    if !roles.contains(&identity.role) {
        let allowed: Vec<&str> = roles.iter().map(|r| role_name(*r)).collect();
        return Err(tonic::Status::permission_denied(format!(
            "{} may not call {method}: it needs the role {}",
            identity.shown(),
            allowed.join(" or ")
        )));
    }
    Ok(())
}

/// The RPC's method name, for messages ("Submit").
pub fn method(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Unspecified => "none",
        Role::Worker => "worker",
        Role::Viewer => "viewer",
        Role::Operator => "operator",
        Role::Admin => "admin",
    }
}

pub fn role_by_name(name: &str) -> Option<Role> {
    [Role::Worker, Role::Viewer, Role::Operator, Role::Admin]
        .into_iter()
        .find(|r| role_name(*r) == name)
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    /// Every RPC the master's descriptor (generated from the .proto
    /// files, served for reflection) declares, as full gRPC paths.
    fn declared_rpcs() -> Vec<String> {
        let set = prost_types::FileDescriptorSet::decode(taskmaster_proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set decodes");
        let mut paths = Vec::new();
        for file in &set.file {
            for service in &file.service {
                for method in &service.method {
                    paths.push(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
        paths
    }

    #[test]
    fn every_rpc_declared_has_an_entry_and_no_entry_is_stale() {
        let declared = declared_rpcs();
        assert!(declared.len() > 20, "{declared:?}");
        let missing: Vec<&String> = declared
            .iter()
            .filter(|m| !TABLE.iter().any(|(path, _)| path == m))
            .collect();
        assert!(
            missing.is_empty(),
            "RPCs with no entry in auth/roles.rs TABLE (deny by default refuses them to \
             everyone until they get one): {missing:?}"
        );
        for (path, roles) in TABLE {
            assert!(declared.iter().any(|m| m == path), "{path} is no RPC");
            assert!(
                roles.contains(&Role::Admin),
                "admin may call everything: {path}"
            );
        }
    }

    #[test]
    fn roles_get_what_they_are_for() {
        let allows = |role: Role, method: &str| match needs(&format!(
            "/taskmaster.v1.TaskMaster/{method}"
        )) {
            Needs::OneOf(roles) => roles.contains(&role),
            other => panic!("{method}: {other:?}"),
        };
        assert!(allows(Role::Worker, "Commit") && !allows(Role::Worker, "Rollback"));
        assert!(!allows(Role::Worker, "GetStatus") && !allows(Role::Worker, "Submit"));
        assert!(allows(Role::Viewer, "GetStatus") && !allows(Role::Viewer, "Submit"));
        assert!(!allows(Role::Viewer, "Lease"));
        assert!(allows(Role::Operator, "Retry") && allows(Role::Operator, "ListPipelines"));
        assert!(!allows(Role::Operator, "Rollback") && !allows(Role::Operator, "CreateToken"));
        assert!(allows(Role::Admin, "Rollback") && allows(Role::Admin, "Lease"));
        assert_eq!(needs("/grpc.health.v1.Health/Check"), Needs::Nothing);
        assert_eq!(needs("/taskmaster.v1.TaskMaster/Nope"), Needs::Unknown);
        assert_eq!(needs("/other.Service/Submit"), Needs::Unknown);
    }

    #[test]
    fn role_names_round_trip() {
        for role in [Role::Worker, Role::Viewer, Role::Operator, Role::Admin] {
            assert_eq!(role_by_name(role_name(role)), Some(role));
        }
        assert_eq!(role_by_name("root"), None);
    }
}
