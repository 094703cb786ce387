//! Havn's chain client: what netd, havnctl and the tests use to talk to the chain over
//! JSON-RPC (alloy providers). The network-free parts (ABI, EIP-712, payout trees, the
//! signing policy) are `havn-chain`, re-exported here; attestd links only that.
//!
//! - [`contracts`]: callable bindings generated from the committed artifacts.
//! - [`Chain`]: one account's view of the contracts; every transaction is simulated
//!   first (a revert comes back by name, [`ChainError::Reverted`]) and waits for its
//!   receipt.
//! - [`deploy`]: deploying the four contracts.
//! - `devnet` (feature): a local anvil with the contracts deployed.

pub mod client;
pub mod contracts;
pub mod deploy;
#[cfg(feature = "devnet")]
pub mod devnet;

pub use alloy;
pub use client::{Chain, Role};
pub use havn_chain::{
    class_index, eip712, floor_hai, hai, multiplier_tenths, payout, policy, revert, tx, vote,
    Deployment, DeploymentError, FEE_WEI_PER_GAS, HAI_WEI,
};

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
    #[error(transparent)]
    Deployment(#[from] DeploymentError),
}

impl From<alloy::contract::Error> for ChainError {
    fn from(e: alloy::contract::Error) -> Self {
        match e.as_revert_data() {
            Some(d) => ChainError::Reverted(revert::Revert::decode(&d)),
            None => ChainError::Transport(e.to_string()),
        }
    }
}

impl From<alloy::transports::TransportError> for ChainError {
    fn from(e: alloy::transports::TransportError) -> Self {
        ChainError::from(alloy::contract::Error::from(e))
    }
}

impl From<alloy::providers::PendingTransactionError> for ChainError {
    fn from(e: alloy::providers::PendingTransactionError) -> Self {
        ChainError::Transport(e.to_string())
    }
}
