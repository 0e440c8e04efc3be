//! The gRPC contract of taskmaster (`taskmaster.v1`) and the journal record
//! format (`taskmaster.journal.v1`), generated from `proto/` at build time.

pub mod codec;
pub mod compact;
pub mod credentials;
pub mod endpoint;
pub mod limits;
pub mod log_names;

/// Generated code, nested as the protobuf packages are (cross-package
/// references in the generated code rely on it).
pub mod taskmaster {
    pub mod v1 {
        tonic::include_proto!("taskmaster.v1");
    }
    pub mod journal {
        pub mod v1 {
            tonic::include_proto!("taskmaster.journal.v1");
        }
    }
}

/// Messages and the `TaskMaster` service client and server.
pub use taskmaster::v1;

/// Journal records, as framed and checksummed by the master's journal.
pub use taskmaster::journal::v1 as journal;

/// The encoded `FileDescriptorSet` of every file above, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/taskmaster_descriptor.bin"));

impl v1::Lease {
    /// What names this lease in renew, commit and release calls: every
    /// field a master checks (unit, lease id, config version, incarnation).
    pub fn to_ref(&self) -> v1::LeaseRef {
        v1::LeaseRef {
            unit: self.unit.clone(),
            lease_id: self.lease_id,
            config_version: self.config_version,
            incarnation: self.incarnation,
        }
    }
}
