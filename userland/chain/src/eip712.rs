//! The messages validators sign with their chain keys (EIP-712, domain "Havn" v1 bound
//! to the chain id and the StakeGuard address), and quorum certificates as StakeGuard
//! checks them: 65-byte `r ‖ s ‖ v` signatures, low `s`, signers in ascending address
//! order, each an active validator, together ≥ 2/3 of active validator stake.
//!
//! Why secp256k1 and not the mesh's ed25519: the EVM checks secp256k1 natively
//! (`ecrecover`, 3,000 gas) and has no ed25519 precompile; a contract-side ed25519
//! check costs on the order of a million gas per signature. Each validator's chain
//! account is bound to its attested node key in StakeGuard (see `bond`), so a chain
//! signature speaks for the same attested machine as its mesh signature.

use crate::alloy::primitives::{Address, Bytes, B256};
use crate::alloy::signers::local::PrivateKeySigner;
use crate::alloy::signers::SignerSync;
use crate::alloy::sol;
use crate::alloy::sol_types::{eip712_domain, Eip712Domain, SolStruct};

sol! {
    /// A committee's settlement of one epoch of one compute class: the root of the
    /// payout tree ([`crate::payout`]) and how many receipts it pays.
    #[derive(Debug, PartialEq, Eq)]
    struct Settlement {
        uint64 epoch;
        uint8 computeClass;
        bytes32 payoutRoot;
        uint32 receipts;
    }

    /// A node quarantined from `epoch` on (missed heartbeats).
    #[derive(Debug, PartialEq, Eq)]
    struct Quarantine {
        bytes32 nodeKey;
        uint64 epoch;
    }

    /// A quarantine lifted at `epoch`.
    #[derive(Debug, PartialEq, Eq)]
    struct Release {
        bytes32 nodeKey;
        uint64 epoch;
    }

    /// The committee's outcome of an on-chain challenge.
    #[derive(Debug, PartialEq, Eq)]
    struct Adjudication {
        uint256 challengeId;
        bytes32 receipt;
        bool upheld;
    }
}

/// The EIP-712 domain every Havn quorum message is signed in.
pub fn domain(chain_id: u64, stake_guard: Address) -> Eip712Domain {
    eip712_domain! {
        name: "Havn",
        version: "1",
        chain_id: chain_id,
        verifying_contract: stake_guard,
    }
}

/// The digest a validator signs for `msg`.
pub fn signing_hash<T: SolStruct>(msg: &T, domain: &Eip712Domain) -> B256 {
    msg.eip712_signing_hash(domain)
}

/// One validator's signature, as StakeGuard reads it (65 bytes, `v` 27 or 28).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumSignature {
    /// The validator's chain account.
    pub signer: Address,
    /// `r ‖ s ‖ v`.
    pub signature: [u8; 65],
}

/// Signs `digest` with a local key (tests, the demo's validators; a node signs through
/// attestd instead).
pub fn sign_digest(key: &PrivateKeySigner, digest: &B256) -> Result<QuorumSignature, String> {
    let sig = key.sign_hash_sync(digest).map_err(|e| e.to_string())?;
    Ok(QuorumSignature {
        signer: key.address(),
        signature: sig.as_bytes(),
    })
}

/// Who signed `digest`, if `signature` is a well-formed low-`s` signature.
pub fn recover(digest: &B256, signature: &[u8; 65]) -> Option<Address> {
    let sig = crate::alloy::primitives::Signature::from_raw_array(signature).ok()?;
    if sig.normalize_s().is_some() {
        return None;
    }
    sig.recover_address_from_prehash(digest).ok()
}

/// A certificate as the contracts take it: signatures sorted by signer, one per signer.
pub fn certificate(mut sigs: Vec<QuorumSignature>) -> Vec<Bytes> {
    sigs.sort_by_key(|s| s.signer);
    sigs.dedup_by_key(|s| s.signer);
    sigs.into_iter()
        .map(|s| Bytes::copy_from_slice(&s.signature))
        .collect()
}
