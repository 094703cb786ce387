//! Verifier integration tests (pure Rust, no TPM): synthetic quotes, parsers under
//! random bytes, golden manifests, tpm2-tools file formats.

mod fuzzish;
mod synthetic;
