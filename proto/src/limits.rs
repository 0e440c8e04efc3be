//! Limits that both sides of the protocol must agree on: a worker that
//! allowed more than its master accepts would have its commits refused.

/// gRPC message size limit, both directions, on every side.
pub const MESSAGE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Output files one attempt may commit.
pub const OUTPUT_FILES_MAX: usize = 10_000;
