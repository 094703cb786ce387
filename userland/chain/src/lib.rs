//! Havn's chain side with no network code (attestd links this; the JSON-RPC client is
//! `havn-chain-client`).
//!
//! Stake, quarantine, slashing and payouts live in three contracts on an EVM chain
//! (`chain/contracts`): **StakeGuard** (bonds, the node-key binding, quarantine,
//! slashing, and the validator quorum the others trust), **Adjudicator** (challenges
//! with a bond at risk) and **PayoutRouter** (each settled receipt paid once). This
//! crate holds their ABI ([`contracts`]), the EIP-712 messages validators sign with
//! their chain keys ([`eip712`]), the payout Merkle tree a settlement commits to
//! ([`payout`]), the node key's signing policy ([`policy`]), the one transaction type a
//! node signs ([`tx`]) and reverts by name ([`revert`]).

pub mod contracts;
pub mod deploy;
pub mod eip712;
pub mod payout;
pub mod policy;
pub mod revert;
pub mod tx;
pub mod vote;

/// The alloy pieces this crate is built on, under the facade's paths.
pub mod alloy {
    pub use alloy_consensus as consensus;
    pub use alloy_primitives as primitives;
    pub use alloy_primitives::hex;
    pub use alloy_sol_types as sol_types;
    pub use alloy_sol_types::sol;
    /// Signers.
    pub mod signers {
        pub use alloy_signer::*;
        pub use alloy_signer_local as local;
    }
}
pub use deploy::{Deployment, DeploymentError};

use crate::alloy::primitives::U256;

/// One HAI in wei (18 decimals).
pub const HAI_WEI: u128 = 1_000_000_000_000_000_000;

/// `n` whole HAI as a token amount.
pub fn hai(n: u64) -> U256 {
    U256::from(n) * U256::from(HAI_WEI)
}

/// The dev-chain fee schedule: a receipt's base fee is its gas × this many HAI wei
/// (1 µHAI per gas unit), before the class multiplier. Validators build payout leaves
/// with it, so every validator of a committee must use the same.
pub const FEE_WEI_PER_GAS: u64 = 1_000_000_000_000;

/// Compute classes as the contracts number them (S, M, L, XL = 0..3).
pub fn class_index(class: &str) -> Option<u8> {
    match class {
        "S" => Some(0),
        "M" => Some(1),
        "L" => Some(2),
        "XL" => Some(3),
        _ => None,
    }
}

/// The collateral floor of a class in whole HAI, as StakeGuard enforces it.
pub fn floor_hai(class: u8) -> Option<u64> {
    [2_000, 5_000, 9_000, 18_000]
        .get(usize::from(class))
        .copied()
}

/// The fee multiplier of a class in tenths, as PayoutRouter applies it.
pub fn multiplier_tenths(class: u8) -> Option<u64> {
    [10, 15, 25, 40].get(usize::from(class)).copied()
}
