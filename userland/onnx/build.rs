//! Compiles the vendored `proto/onnx/onnx.proto` (ONNX 1.23's, Apache-2.0) with protox
//! (no `protoc` binary) into prost messages.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/onnx/onnx.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
