//! Runtime hash as a Merkle commitment over per-node output hashes.
//!
//! leaf_i = sha3(0x00 ‖ node_hash_i) in topological order; inner = sha3(0x01 ‖ l ‖ r);
//! an odd node at a level is promoted unchanged. runtime_hash = sha3("havn-exec/runtime/v1\0"
//! ‖ manifest checksum ‖ seed (u64 LE) ‖ root). An empty DAG has root = sha3(0x02).

use crate::error::{ExecError, Result};
use crate::manifest::{hex, parse_hex32, Checksum};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use sha3::{Digest, Sha3_256};

fn leaf(h: &[u8; 32]) -> [u8; 32] {
    let mut s = Sha3_256::new();
    s.update([0u8]);
    s.update(h);
    s.finalize().into()
}

fn inner(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    let mut s = Sha3_256::new();
    s.update([1u8]);
    s.update(l);
    s.update(r);
    s.finalize().into()
}

/// Merkle root over node hashes.
pub fn merkle_root(node_hashes: &[[u8; 32]]) -> [u8; 32] {
    if node_hashes.is_empty() {
        return Sha3_256::digest([2u8]).into();
    }
    let mut level: Vec<[u8; 32]> = node_hashes.iter().map(leaf).collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|c| if let [l, r] = c { inner(l, r) } else { c[0] })
            .collect();
    }
    level[0]
}

/// Sibling path for leaf `index`: (sibling, sibling_is_left) from the bottom up.
pub fn merkle_path(node_hashes: &[[u8; 32]], mut index: usize) -> Vec<([u8; 32], bool)> {
    let mut level: Vec<[u8; 32]> = node_hashes.iter().map(leaf).collect();
    let mut path = Vec::new();
    while level.len() > 1 {
        let sib = index ^ 1;
        if sib < level.len() {
            path.push((level[sib], sib < index));
        }
        level = level
            .chunks(2)
            .map(|c| if let [l, r] = c { inner(l, r) } else { c[0] })
            .collect();
        index /= 2;
    }
    path
}

/// The sibling sides (`true` = sibling on the left) that leaf `index` of a tree of `n`
/// leaves must have, bottom up: a path of another shape opens another position.
pub fn path_shape(mut index: usize, mut n: usize) -> Vec<bool> {
    let mut out = Vec::new();
    while n > 1 {
        let sib = index ^ 1;
        if sib < n {
            out.push(sib < index);
        }
        index /= 2;
        n = n.div_ceil(2);
    }
    out
}

/// Every level of the tree, leaves first (for taking many paths from one tree).
pub fn merkle_levels(node_hashes: &[[u8; 32]]) -> Vec<Vec<[u8; 32]>> {
    let mut levels = vec![node_hashes.iter().map(leaf).collect::<Vec<_>>()];
    while levels.last().is_some_and(|l| l.len() > 1) {
        let next = levels[levels.len() - 1]
            .chunks(2)
            .map(|c| if let [l, r] = c { inner(l, r) } else { c[0] })
            .collect();
        levels.push(next);
    }
    levels
}

/// The sibling path of leaf `index` from [`merkle_levels`] (equal to [`merkle_path`]).
pub fn path_from_levels(levels: &[Vec<[u8; 32]>], mut index: usize) -> Vec<([u8; 32], bool)> {
    let mut path = Vec::new();
    for level in levels.iter().take(levels.len().saturating_sub(1)) {
        let sib = index ^ 1;
        if let Some(h) = level.get(sib) {
            path.push((*h, sib < index));
        }
        index /= 2;
    }
    path
}

/// The root a leaf's sibling path leads to (the inverse of [`merkle_path`]).
pub fn path_root(node_hash: &[u8; 32], path: &[([u8; 32], bool)]) -> [u8; 32] {
    let mut acc = leaf(node_hash);
    for (sib, left) in path {
        acc = if *left {
            inner(sib, &acc)
        } else {
            inner(&acc, sib)
        };
    }
    acc
}

/// The runtime hash.
pub fn runtime_hash(checksum: &Checksum, seed: u64, root: &[u8; 32]) -> [u8; 32] {
    let mut s = Sha3_256::new();
    s.update(b"havn-exec/runtime/v1\0");
    s.update(checksum);
    s.update(seed.to_le_bytes());
    s.update(root);
    s.finalize().into()
}

/// Everything a validator needs to check one node: the commitment path to the runtime
/// hash and the hashes of the node's inputs (node inputs are themselves leaves; job
/// inputs and weights are pinned by their CIDs in the job and manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeProof {
    pub workflow: String,
    pub manifest_checksum: String,
    pub seed: u64,
    pub node_id: String,
    /// Leaf position (topological order).
    pub index: usize,
    pub leaves: usize,
    pub node_hash: String,
    /// (sibling hex, sibling is on the left).
    pub path: Vec<(String, bool)>,
    pub merkle_root: String,
    pub runtime_hash: String,
    /// (input name, tensor hash hex) in the node's input order.
    pub input_hashes: Vec<(String, String)>,
}

fn h32(s: &str, what: &str) -> Result<[u8; 32]> {
    parse_hex32(s).ok_or_else(|| ExecError::ProofInvalid(format!("{what} is not 64 hex digits")))
}

impl NodeProof {
    /// Checks the proof's internal consistency: leaf → root → runtime hash.
    pub fn check_commitment(&self) -> Result<()> {
        let mut acc = leaf(&h32(&self.node_hash, "node_hash")?);
        for (sib, left) in &self.path {
            let s = h32(sib, "path")?;
            acc = if *left {
                inner(&s, &acc)
            } else {
                inner(&acc, &s)
            };
        }
        let root = h32(&self.merkle_root, "merkle_root")?;
        if acc != root {
            return Err(ExecError::ProofInvalid(
                "Merkle path does not lead to the root".into(),
            ));
        }
        let rh = runtime_hash(
            &h32(&self.manifest_checksum, "manifest_checksum")?,
            self.seed,
            &root,
        );
        if hex(&rh) != self.runtime_hash {
            return Err(ExecError::ProofInvalid(
                "root, checksum and seed do not give the runtime hash".into(),
            ));
        }
        Ok(())
    }
}

/// Verifies a re-computed node output against a proof (commitment and output hash).
pub fn verify_node(proof: &NodeProof, recomputed: &Tensor) -> Result<()> {
    proof.check_commitment()?;
    let got = hex(&recomputed.hash());
    if got != proof.node_hash {
        return Err(ExecError::ProofInvalid(format!(
            "node {} output hashes to {got}, committed {}",
            proof.node_id, proof.node_hash
        )));
    }
    Ok(())
}
