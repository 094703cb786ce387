//! Havn system tests: one test binary. They run the real binaries of the workspace
//! (build them first: `cargo build --workspace`, which `scripts/test` does).
mod chat;
mod deps;
mod diffusion;
use havn_system_tests::harness;
mod mesh;
mod node;
mod sealed;
mod settlement;
mod signed;
mod stake;
mod transcribe;
