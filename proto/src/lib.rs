//! Havn wire and IPC message types, framing and signing domains.
//!
//! Everything that crosses a process or network boundary is defined here, once:
//! bounded with `heapless` (no unbounded `Vec`/`String` on the wire), encoded with
//! postcard (canonical for a given value), framed with a hard [`frame::MAX_FRAME`]
//! checked before any allocation, and signed over domain-separated sha3-256 digests.
//!
//! This crate depends on no other workspace crate.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::arithmetic_side_effects
    )
)]

pub mod bytes;
pub mod chain;
pub mod chat;
pub mod cid;
pub mod frame;
pub mod ipc;
pub mod media;
pub mod merkle;
pub mod mesh;
pub mod sign;
pub mod telemetry;
pub mod types;
pub mod vectors;

pub use bytes::{Hash32, PubKey32, Sig64};
pub use cid::Cid;
pub use frame::{WireError, MAX_FRAME, PROTOCOL_VERSION};
pub use types::*;
