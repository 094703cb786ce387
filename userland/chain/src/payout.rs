//! The payout tree a settlement commits to, built the way PayoutRouter checks it.
//!
//! Leaf: `keccak256(keccak256(abi.encode(receipt, nodeKey, payee, fee)))` (the double
//! hash keeps a 64-byte inner node from passing as a leaf). Inner node: `keccak256` of
//! its two children, smaller first, so a proof is just the siblings, bottom up. Leaves
//! are sorted by hash and an odd node at the end of a level moves up unchanged: every
//! validator that settles the same receipts gets the same root.

use crate::alloy::primitives::{keccak256, Address, B256, U256};
use crate::alloy::sol_types::SolValue;

/// What one settled receipt pays, and to whom.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PayoutLeaf {
    /// The receipt's signing digest.
    pub receipt: B256,
    /// The node key that signed it.
    pub node_key: B256,
    /// The chain account bound to that key in StakeGuard (from its attested manifest).
    pub payee: Address,
    /// The base fee in HAI wei, before the class multiplier.
    pub fee: U256,
}

impl PayoutLeaf {
    /// The leaf hash.
    pub fn hash(&self) -> B256 {
        let inner = keccak256((self.receipt, self.node_key, self.payee, self.fee).abi_encode());
        keccak256(inner)
    }
}

fn parent(a: &B256, b: &B256) -> B256 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(lo.as_slice());
    buf[32..].copy_from_slice(hi.as_slice());
    keccak256(buf)
}

/// A built payout tree.
#[derive(Debug, Clone)]
pub struct PayoutTree {
    leaves: Vec<PayoutLeaf>,
    levels: Vec<Vec<B256>>,
}

impl PayoutTree {
    /// Builds the tree over `leaves` (any order; duplicates of one receipt are dropped,
    /// the first kept).
    pub fn new(mut leaves: Vec<PayoutLeaf>) -> Self {
        leaves.sort_by_key(PayoutLeaf::hash);
        let mut seen = std::collections::BTreeSet::new();
        leaves.retain(|l| seen.insert(l.receipt));
        let mut levels = vec![leaves.iter().map(PayoutLeaf::hash).collect::<Vec<_>>()];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let up = below
                .chunks(2)
                .map(|c| match c {
                    [a, b] => parent(a, b),
                    [a] => *a,
                    _ => B256::ZERO,
                })
                .collect();
            levels.push(up);
        }
        Self { leaves, levels }
    }

    /// The root (zero for an empty tree).
    pub fn root(&self) -> B256 {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or(B256::ZERO)
    }

    /// The leaves, in tree order.
    pub fn leaves(&self) -> &[PayoutLeaf] {
        &self.leaves
    }

    /// The leaf paying `receipt` and its proof (siblings, bottom up).
    pub fn proof(&self, receipt: &B256) -> Option<(PayoutLeaf, Vec<B256>)> {
        let position = self.leaves.iter().position(|l| l.receipt == *receipt)?;
        let mut index = position;
        let mut proof = Vec::new();
        for level in &self.levels[..self.levels.len().saturating_sub(1)] {
            if let Some(sibling) = level.get(index ^ 1) {
                proof.push(*sibling);
            }
            index /= 2;
        }
        Some((self.leaves[position].clone(), proof))
    }
}

/// Checks a proof as PayoutRouter does.
pub fn verify(root: &B256, leaf: &PayoutLeaf, proof: &[B256]) -> bool {
    proof.iter().fold(leaf.hash(), |h, s| parent(&h, s)) == *root
}

/// A payout claim as a file (what validators hand a node, what `havnctl payout claim`
/// submits): the settlement, its certificate, the leaf and its proof.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// Epoch.
    pub epoch: u64,
    /// Class (S, M, L, XL = 0..3).
    pub compute_class: u8,
    /// The settled payout root.
    pub payout_root: B256,
    /// How many receipts the settlement pays.
    pub receipts: u32,
    /// The committee's signatures (65 bytes each, ascending signer order).
    pub certificate: Vec<crate::alloy::primitives::Bytes>,
    /// The leaf claimed.
    pub leaf: PayoutLeaf,
    /// Its proof.
    pub proof: Vec<B256>,
}

impl Claim {
    /// The settlement it names.
    pub fn settlement(&self) -> crate::eip712::Settlement {
        crate::eip712::Settlement {
            epoch: self.epoch,
            computeClass: self.compute_class,
            payoutRoot: self.payout_root,
            receipts: self.receipts,
        }
    }

    /// Whether the proof leads to the root (checked before anything is sent).
    pub fn proves(&self) -> bool {
        verify(&self.payout_root, &self.leaf, &self.proof)
    }
}
