//! Compiles host/proto/*.proto with protox (pure Rust: no protoc needed) and generates the
//! tonic servers and clients of the wfctl plugin bridge. The descriptor set is kept too, so
//! GetContractRegistry can hand it out.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "workflow/plugin/external/iac.proto",
        "workflow/plugin/v1/plugin.proto",
        "plugin/grpc_controller.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed=proto/{f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("wfctl_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
