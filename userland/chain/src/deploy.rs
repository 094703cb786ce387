//! Where the contracts live: deployed once per chain, recorded in a small JSON file that
//! nodes and havnctl read (`[chain] deployment = "…"`).

use std::path::Path;

use crate::alloy::primitives::Address;

/// A deployment file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[error("deployment file {path}: {why}")]
pub struct DeploymentError {
    /// The file.
    pub path: String,
    /// What is wrong.
    pub why: String,
}

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
    /// Reads a deployment file.
    pub fn load(path: &Path) -> Result<Self, DeploymentError> {
        let err = |why: String| DeploymentError {
            path: path.display().to_string(),
            why,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| err(e.to_string()))
    }

    /// Writes a deployment file.
    pub fn save(&self, path: &Path) -> Result<(), DeploymentError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| DeploymentError {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        std::fs::write(path, text + "\n").map_err(|e| DeploymentError {
            path: path.display().to_string(),
            why: e.to_string(),
        })
    }
}
