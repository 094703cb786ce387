//! Havn's chain client.
//!
//! Stake, quarantine, slashing and payouts live in three contracts on an EVM chain
//! (`chain/contracts`): **StakeGuard** (bonds, the node-key binding, quarantine,
//! slashing, and the validator quorum the others trust), **Adjudicator** (challenges
//! with a bond at risk) and **PayoutRouter** (each settled receipt paid once). This
//! crate holds their bindings ([`contracts`]), the EIP-712 messages validators sign
//! with their chain keys ([`eip712`]), the payout Merkle tree the settlement commits to
//! ([`payout`]), a typed view of reverts ([`revert`]) and, behind the `devnet` feature,
//! a local anvil with the contracts deployed ([`devnet`]).

#[cfg(feature = "client")]
pub mod client;
pub mod contracts;
pub mod deploy;
pub mod eip712;
pub mod payout;
pub mod policy;
pub mod revert;
pub mod tx;

#[cfg(feature = "devnet")]
pub mod devnet;

pub use alloy;
#[cfg(feature = "client")]
pub use client::{Chain, Role};
pub use deploy::Deployment;

use alloy::primitives::U256;

/// One HAI in wei (18 decimals).
pub const HAI_WEI: u128 = 1_000_000_000_000_000_000;

/// `n` whole HAI as a token amount.
pub fn hai(n: u64) -> U256 {
    U256::from(n) * U256::from(HAI_WEI)
}

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

/// What can go wrong talking to the chain.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The chain answered the call with a revert; the contract's error, by name.
    #[error("reverted: {0}")]
    Reverted(revert::Revert),
    /// The chain could not be reached or answered nonsense.
    #[error("chain unreachable: {0}")]
    Transport(String),
    /// The transaction was mined but failed.
    #[error("transaction {0} failed on chain")]
    Failed(alloy::primitives::TxHash),
    /// A deployment file that cannot be read.
    #[error("deployment file {path}: {why}")]
    Deployment {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
}

#[cfg(feature = "client")]
impl From<alloy::contract::Error> for ChainError {
    fn from(e: alloy::contract::Error) -> Self {
        match revert::Revert::from_contract_error(&e) {
            Some(r) => ChainError::Reverted(r),
            None => ChainError::Transport(e.to_string()),
        }
    }
}

#[cfg(feature = "client")]
impl From<alloy::transports::TransportError> for ChainError {
    fn from(e: alloy::transports::TransportError) -> Self {
        ChainError::from(alloy::contract::Error::from(e))
    }
}

#[cfg(feature = "client")]
impl From<alloy::providers::PendingTransactionError> for ChainError {
    fn from(e: alloy::providers::PendingTransactionError) -> Self {
        ChainError::Transport(e.to_string())
    }
}
