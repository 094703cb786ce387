//! The validator mesh's logic that needs no network: gossip validation as a chain of
//! types ([`validate`]), the sampling lottery ([`lottery`]), liveness ([`liveness`]),
//! settlement and quorum arithmetic ([`settle`]), and the evidence that slashing and
//! quarantine act on ([`evidence`]). havn-netd wires it to libp2p; havnctl verifies
//! settlements with it offline. Every input here is attacker bytes: nothing panics.
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

pub mod bundle;
pub mod evidence;
#[cfg(feature = "fixtures")]
pub mod fixtures;
pub mod liveness;
pub mod lottery;
pub mod params;
pub mod settle;
pub mod sig;
pub mod state;
pub mod validate;

pub use params::MeshParams;
pub use state::MeshState;
pub use validate::{Action, Penalty, Rejection, Verified};
