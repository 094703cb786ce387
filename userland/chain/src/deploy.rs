//! Where the contracts live: deployed once per chain, recorded in a small JSON file that
//! nodes and havnctl read (`[chain] deployment = "…"`).

use std::path::Path;

use alloy::primitives::Address;

use crate::ChainError;

/// The four contracts' addresses on one chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// The chain id (EIP-155), part of every signed transaction and quorum message.
    pub chain_id: u64,
    /// The HAI token.
    pub hai: Address,
    /// StakeGuard.
    pub stake_guard: Address,
    /// Adjudicator.
    pub adjudicator: Address,
    /// PayoutRouter.
    pub payout_router: Address,
}

impl Deployment {
    /// Deploys HAI, StakeGuard (with `unbonding_delay_s`), Adjudicator and PayoutRouter
    /// from `provider`'s wallet, and wires the Adjudicator into StakeGuard.
    #[cfg(feature = "client")]
    pub async fn deploy(
        provider: &alloy::providers::DynProvider,
        unbonding_delay_s: u64,
    ) -> Result<Self, ChainError> {
        use crate::contracts::{Adjudicator, PayoutRouter, StakeGuard, HAI};
        use alloy::providers::Provider;
        let chain_id = provider.get_chain_id().await?;
        let hai = HAI::deploy(provider.clone()).await?;
        let guard = StakeGuard::deploy(provider.clone(), *hai.address(), unbonding_delay_s).await?;
        let adjudicator = Adjudicator::deploy(provider.clone(), *guard.address()).await?;
        let router = PayoutRouter::deploy(provider.clone(), *guard.address()).await?;
        crate::client::confirm(guard.setAdjudicator(*adjudicator.address())).await?;
        Ok(Self {
            chain_id,
            hai: *hai.address(),
            stake_guard: *guard.address(),
            adjudicator: *adjudicator.address(),
            payout_router: *router.address(),
        })
    }

    /// Reads a deployment file.
    pub fn load(path: &Path) -> Result<Self, ChainError> {
        let err = |why: String| ChainError::Deployment {
            path: path.display().to_string(),
            why,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| err(e.to_string()))
    }

    /// Writes a deployment file.
    pub fn save(&self, path: &Path) -> Result<(), ChainError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| ChainError::Deployment {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        std::fs::write(path, text + "\n").map_err(|e| ChainError::Deployment {
            path: path.display().to_string(),
            why: e.to_string(),
        })
    }
}
