//! What netd asks attestd to sign with the node's sealed chain key (secp256k1): an
//! EIP-1559 call to a Havn contract, which attestd checks against its signing policy
//! (`havn_chain::policy`), or an EIP-712 quorum message (a validator only).

use serde::{Deserialize, Serialize};

use crate::{ComputeClass, Hash32, NodeId};

/// A chain account (20 bytes).
pub type Account = [u8; 20];

/// Longest calldata attestd signs (a claim with a 30-level proof and 64 signatures).
pub const MAX_CALLDATA: usize = 8192;

/// An unsigned EIP-1559 call with no value and no access list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct ChainTx {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The account's nonce.
    pub nonce: u64,
    /// Gas limit.
    pub gas_limit: u64,
    /// Max fee per gas (wei).
    pub max_fee_per_gas: u128,
    /// Max priority fee per gas (wei).
    pub max_priority_fee_per_gas: u128,
    /// The contract called.
    pub to: Account,
    /// Calldata.
    pub input: heapless::Vec<u8, MAX_CALLDATA>,
}

/// A quorum message a validator signs with its chain key (EIP-712, domain "Havn" v1 of
/// the configured deployment). One per kind and subject, ever: never two settlements
/// for one class and epoch, never both outcomes of one challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub enum ChainVote {
    /// An epoch's payout root for a class.
    Settlement {
        /// Epoch.
        epoch: u64,
        /// Class.
        compute_class: ComputeClass,
        /// keccak Merkle root over the payout leaves.
        payout_root: Hash32,
        /// How many receipts it pays.
        receipts: u32,
    },
    /// A node quarantined from `epoch` on.
    Quarantine {
        /// The node.
        node: NodeId,
        /// Epoch.
        epoch: u64,
    },
    /// A quarantine lifted at `epoch`.
    Release {
        /// The node.
        node: NodeId,
        /// Epoch.
        epoch: u64,
    },
    /// The outcome of on-chain challenge `challenge_id`.
    Adjudication {
        /// The Adjudicator's challenge id (uint256, big-endian).
        challenge_id: Hash32,
        /// The challenged receipt.
        receipt: Hash32,
        /// Upheld or rejected.
        upheld: bool,
    },
}

/// A chain-key signature (`r ‖ s ‖ v`, `v` 27 or 28) and the account that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct ChainSignature {
    /// The node's chain account.
    pub signer: Account,
    /// 65 bytes.
    pub signature: heapless::Vec<u8, 65>,
}
