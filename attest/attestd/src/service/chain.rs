//! The node's chain key: a secp256k1 key attestd generates once and keeps sealed by the
//! TPM to the same PCR policy as the node key (never on disk in plain text, never in
//! netd). attestd signs with it only what its policy allows (`havn_chain::policy`): a
//! compromised netd can bond to the configured owner, claim, vote and challenge, never
//! move stake or tokens out. Quorum votes (EIP-712) are a validator's only, recorded
//! before they are signed, once per subject (`mesh-records.log`).

use super::Service;
use havn_chain::alloy::primitives::{Address, Bytes};
use havn_chain::alloy::signers::local::PrivateKeySigner;
use havn_chain::eip712;
use havn_chain::policy::Policy;
use havn_chain::tx::Call;
use havn_proto::chain::{ChainSignature, ChainTx, ChainVote};
use havn_proto::ipc::{NetdAttestResponse, RemoteError};

/// The sealed secret that holds the chain key.
pub const CHAIN_KEY_SECRET: &str = "chain-key";

/// The chain side of attestd's state.
pub(super) struct ChainSigning {
    /// The signing policy, when `[chain]` is configured.
    pub policy: Option<Policy>,
    /// The key, once unsealed (with the node key).
    pub key: Option<PrivateKeySigner>,
}

/// Reads the deployment and the owner named in `[chain]`.
pub(super) fn policy(cfg: &havn_config::NodeConfig) -> Result<Option<Policy>, String> {
    let Some(c) = &cfg.chain else {
        return Ok(None);
    };
    let deployment = havn_chain::Deployment::load(&c.deployment).map_err(|e| e.to_string())?;
    let owner: Address = c
        .owner
        .parse()
        .map_err(|e| format!("chain.owner {}: {e}", c.owner))?;
    Ok(Some(Policy {
        deployment,
        owner,
        validator: cfg.node.role == havn_config::NodeRole::Validator,
    }))
}

fn signature(
    key: &PrivateKeySigner,
    sig: &havn_chain::alloy::primitives::Signature,
) -> NetdAttestResponse {
    NetdAttestResponse::Chain(Box::new(ChainSignature {
        signer: key.address().into_array(),
        signature: heapless::Vec::from_slice(&sig.as_bytes()).unwrap_or_default(),
    }))
}

impl Service {
    /// Unseals the chain key, or makes and seals one on first boot.
    pub(super) fn load_or_create_chain_key(&mut self) {
        if self.chain.key.is_some() {
            return;
        }
        let key = match self.agent.unseal_secret(CHAIN_KEY_SECRET) {
            Ok(Some(bytes)) => havn_chain::tx::key_from_bytes(&bytes),
            Ok(None) => {
                let (key, bytes) = havn_chain::tx::generate_key();
                let bytes = zeroize::Zeroizing::new(bytes);
                match self.agent.seal_secret(CHAIN_KEY_SECRET, bytes.as_slice()) {
                    Ok(()) => {
                        tracing::info!(account = %key.address(), "chain key made and sealed by the TPM");
                        Ok(key)
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        match key {
            Ok(k) => {
                tracing::info!(account = %k.address(), "chain key unsealed");
                self.chain.key = Some(k);
            }
            Err(e) => tracing::error!(error = %e, "chain key unavailable: no chain signing"),
        }
    }

    /// The node's chain account (zero until the key is unsealed).
    pub(super) fn chain_account(&self) -> [u8; 20] {
        self.chain
            .key
            .as_ref()
            .map(|k| k.address().into_array())
            .unwrap_or_default()
    }

    /// Signs `tx` if the policy allows it.
    pub(super) fn chain_tx(&mut self, tx: ChainTx) -> NetdAttestResponse {
        if let Err(reason) = self.gate() {
            tracing::warn!(%reason, "chain transaction refused: gate closed");
            return NetdAttestResponse::Error(RemoteError::GateClosed);
        }
        let (Some(policy), Some(key)) = (self.chain.policy.as_ref(), self.chain.key.as_ref())
        else {
            tracing::warn!("chain transaction refused: no [chain] configured or no chain key");
            return NetdAttestResponse::Error(RemoteError::NotPermitted);
        };
        let to = Address::from(tx.to);
        let kind = match policy.check(tx.chain_id, to, true, &tx.input) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, %to, "chain transaction refused by the signing policy");
                return NetdAttestResponse::Error(RemoteError::ChainPolicy);
            }
        };
        let call = Call {
            chain_id: tx.chain_id,
            nonce: tx.nonce,
            gas_limit: tx.gas_limit,
            max_fee_per_gas: tx.max_fee_per_gas,
            max_priority_fee_per_gas: tx.max_priority_fee_per_gas,
            to,
            input: Bytes::copy_from_slice(&tx.input),
        };
        match call.sign(key) {
            Ok(sig) => {
                tracing::info!(kind = kind.as_str(), %to, nonce = tx.nonce, "chain transaction signed");
                signature(key, &sig)
            }
            Err(e) => {
                tracing::error!(error = %e, "chain signing failed");
                NetdAttestResponse::Error(RemoteError::Internal)
            }
        }
    }

    /// Signs a quorum message (a validator only; once per subject, ever).
    pub(super) fn chain_vote(&mut self, vote: ChainVote) -> NetdAttestResponse {
        if let Err(reason) = self.gate() {
            tracing::warn!(%reason, "chain vote refused: gate closed");
            return NetdAttestResponse::Error(RemoteError::GateClosed);
        }
        let (Some(policy), Some(key)) = (self.chain.policy, self.chain.key.clone()) else {
            return NetdAttestResponse::Error(RemoteError::NotPermitted);
        };
        if !policy.validator {
            tracing::warn!("chain vote refused: not a validator");
            return NetdAttestResponse::Error(RemoteError::NotPermitted);
        }
        let domain = eip712::domain(policy.deployment.chain_id, policy.deployment.stake_guard);
        let subject = havn_chain::vote::subject(&vote);
        let digest = havn_chain::vote::digest(&vote, &domain);
        if let Err(e) = self
            .mesh
            .records
            .check_and_record(&subject, digest.as_slice())
        {
            tracing::warn!(error = %e, "chain vote refused: a different vote on this subject was signed");
            return NetdAttestResponse::Error(RemoteError::AlreadySigned);
        }
        match eip712::sign_digest(&key, &digest) {
            Ok(q) => NetdAttestResponse::Chain(Box::new(ChainSignature {
                signer: q.signer.into_array(),
                signature: heapless::Vec::from_slice(&q.signature).unwrap_or_default(),
            })),
            Err(e) => {
                tracing::error!(error = %e, "chain vote signing failed");
                NetdAttestResponse::Error(RemoteError::Internal)
            }
        }
    }
}
