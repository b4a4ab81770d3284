//! Compiles `proto/` into Rust with tonic; nothing else.
//!
//! `protox` is a pure-Rust protobuf compiler, so a fresh machine needs no
//! system `protoc`. The encoded descriptor set is also written to `OUT_DIR`
//! for gRPC server reflection and the JSON mapping of the admin API.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(["envoy/service/ratelimit/v3/rls.proto"], ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out.join("tollgate_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
