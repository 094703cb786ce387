//! Pure-Rust verifier for TPM quotes, event logs and golden manifests (no libtss2, no tokio).
//!
//! Validators use [`verify_quote`] on an [`Evidence`] bundle; it returns a [`Verdict`] or
//! the first failed check as a [`VerifyError`] variant. All parsers take attacker bytes
//! and never panic (fuzzed in `fuzz/`, proptested in `tests/`).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]
#![deny(missing_docs)]

pub mod binding;
pub mod credential;
pub mod ekcert;
pub mod error;
pub mod eventlog;
pub mod evidence_dir;
pub mod golden;
pub mod synth;
pub mod tcg;
pub mod tpm2_files;
pub mod verify;
pub mod wire;

pub use binding::{domain_digest, policy_pcr_digest, quote_extra_data};
pub use error::{ParseError, VerifyError};
pub use eventlog::Event;
pub use golden::{GoldenManifest, Policy as GoldenPolicy};
pub use verify::{verify_quote, Evidence, PcrValue, Policy, Verdict};
pub use wire::{ClockInfo, PcrSelection};
