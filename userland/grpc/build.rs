//! Compiles `proto/havn/v1/intake.proto` with protox (no `protoc` binary) and
//! generates the tonic server and client (no transport: netd serves it over its own
//! rustls + hyper connections, havnctl dials it the same way).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/havn/v1/intake.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("intake_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
