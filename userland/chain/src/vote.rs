//! A validator's chain vote (`havn_proto::chain::ChainVote`) as the contracts read it:
//! its EIP-712 digest, and the subject it is one vote on. attestd signs and records by
//! these; netd checks gossiped votes and groups them by these.

use havn_proto::chain::ChainVote;

use crate::alloy::primitives::{B256, U256};
use crate::alloy::sol_types::Eip712Domain;
use crate::eip712::{signing_hash, Adjudication, Quarantine, Release, Settlement};

/// The settlement a vote names, if it is one.
pub fn settlement(v: &ChainVote) -> Option<Settlement> {
    match v {
        ChainVote::Settlement {
            epoch,
            compute_class,
            payout_root,
            receipts,
        } => Some(Settlement {
            epoch: *epoch,
            computeClass: compute_class.index(),
            payoutRoot: B256::from(payout_root.0),
            receipts: *receipts,
        }),
        _ => None,
    }
}

/// The digest a validator signs for `v` in `domain`.
pub fn digest(v: &ChainVote, domain: &Eip712Domain) -> B256 {
    match v {
        ChainVote::Settlement { .. } => settlement(v)
            .map(|s| signing_hash(&s, domain))
            .unwrap_or_default(),
        ChainVote::Quarantine { node, epoch } => signing_hash(
            &Quarantine {
                nodeKey: B256::from(node.0 .0),
                epoch: *epoch,
            },
            domain,
        ),
        ChainVote::Release { node, epoch } => signing_hash(
            &Release {
                nodeKey: B256::from(node.0 .0),
                epoch: *epoch,
            },
            domain,
        ),
        ChainVote::Adjudication {
            challenge_id,
            receipt,
            upheld,
        } => signing_hash(
            &Adjudication {
                challengeId: U256::from_be_bytes(challenge_id.0),
                receipt: B256::from(receipt.0),
                upheld: *upheld,
            },
            domain,
        ),
    }
}

/// What `v` is one vote on: a class and epoch's settlement, a node's quarantine or
/// release at an epoch, a challenge's outcome (both outcomes share the subject).
pub fn subject(v: &ChainVote) -> Vec<u8> {
    match v {
        ChainVote::Settlement {
            epoch,
            compute_class,
            ..
        } => [
            b"chain-settlement\0".as_slice(),
            &[compute_class.index()],
            &epoch.to_le_bytes(),
        ]
        .concat(),
        ChainVote::Quarantine { node, epoch } => [
            b"chain-quarantine\0".as_slice(),
            &node.0 .0,
            &epoch.to_le_bytes(),
        ]
        .concat(),
        ChainVote::Release { node, epoch } => [
            b"chain-release\0".as_slice(),
            &node.0 .0,
            &epoch.to_le_bytes(),
        ]
        .concat(),
        ChainVote::Adjudication { challenge_id, .. } => {
            [b"chain-adjudication\0".as_slice(), &challenge_id.0].concat()
        }
    }
}
