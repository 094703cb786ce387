//! Runtime hash as a Merkle commitment over per-node output hashes.
//!
//! The tree and the runtime hash are [`havn_proto::merkle`]'s, over the node hashes in
//! topological order: leaf_i = sha3(0x00 ‖ node_hash_i); inner = sha3(0x01 ‖ l ‖ r); an
//! odd node is promoted; runtime_hash = sha3("havn-exec/runtime/v1\0" ‖ manifest checksum
//! ‖ seed (u64 LE) ‖ root); an empty DAG has root = sha3(0x02).

use crate::error::{ExecError, Result};
use crate::manifest::{hex, parse_hex32};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

pub use havn_proto::merkle::{
    inner, leaf, merkle_levels, merkle_path, merkle_root, path_from_levels, path_root, path_shape,
    runtime_hash,
};

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
        let path = self
            .path
            .iter()
            .map(|(sib, left)| Ok((h32(sib, "path")?, *left)))
            .collect::<Result<Vec<_>>>()?;
        let acc = path_root(&h32(&self.node_hash, "node_hash")?, &path);
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
