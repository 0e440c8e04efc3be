//! Compiles the `.proto` files with protox (a pure-Rust protobuf compiler),
//! so building needs no system `protoc`, and writes the file descriptor set
//! the master serves through gRPC reflection.
use std::path::PathBuf;

use protox::prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/taskmaster/v1/taskmaster.proto",
        "proto/taskmaster/v1/journal.proto",
        "proto/taskmaster/v1/schedules.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("taskmaster_descriptor.bin"),
        fds.encode_to_vec(),
    )?;
    // Every generated client and server uses the slice codec (src/codec.rs).
    tonic_prost_build::configure()
        .codec_path("crate::codec::SliceCodec")
        .compile_fds(fds)?;
    Ok(())
}
