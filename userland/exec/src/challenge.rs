//! Challenge material for one DAG node: what a node serves (its Merkle proof and the
//! node's input tensors) and what a validator checks before re-executing the node.
//!
//! Node side: [`material_from_checkpoint`] rebuilds a finished run from the checkpoint
//! directory it left behind (computing nothing: [`RunOptions::resume_only`]) and cuts
//! the proof for one node. Validator side: [`verify_challenge`] binds the proof to what
//! the validator expects (the signed receipt's workflow, manifest, seed and runtime
//! hash, and the node it chose), checks weight inputs against its own copy of the
//! weights, then re-executes the node and verifies it against the commitment.

use crate::error::{ExecError, Result};
use crate::exec::{Executor, PreparedJob, RunOptions, RunResult};
use crate::manifest::{hex, Checksum, Manifest};
use crate::merkle::NodeProof;
use crate::tensor::{load_safetensors, save_safetensors, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

/// The bytes a node serves for a challenge of one DAG node.
#[derive(Debug, Clone)]
pub struct ChallengeMaterial {
    /// The proof.
    pub proof: NodeProof,
    /// The proof as pretty JSON: exactly what `havnctl run --prove` writes and
    /// [`crate::cli::verify_node_from_files`] reads.
    pub proof_json: Vec<u8>,
    /// The node's input tensors (safetensors), by input name.
    pub inputs: Vec<u8>,
}

/// Cuts the challenge material for `node_id` out of a run that kept its node outputs.
pub fn material(res: &RunResult, job: &PreparedJob, node_id: &str) -> Result<ChallengeMaterial> {
    let proof = res.prove(node_id)?;
    let mut ins = res.inputs_of(job, node_id)?;
    // A node may take one tensor twice (e.g. `mul(x, x)`); safetensors names must be
    // unique (a duplicate panics inside the safetensors crate).
    let mut seen = std::collections::HashSet::new();
    ins.retain(|(n, _)| seen.insert(n.clone()));
    Ok(ChallengeMaterial {
        proof_json: serde_json::to_vec_pretty(&proof)?,
        inputs: save_safetensors(&ins)?,
        proof,
    })
}

/// Rebuilds a finished run from its checkpoint directory `dir` (every node must be
/// there; nothing is computed) and cuts the challenge material for `node_id`. Also
/// returns the run's runtime hash, which the caller compares with the signed one.
pub fn material_from_checkpoint(
    exec: &Executor,
    job: &PreparedJob,
    dir: &Path,
    node_id: &str,
) -> Result<(ChallengeMaterial, [u8; 32])> {
    if !job.manifest.nodes.iter().any(|n| n.id == node_id) {
        return Err(ExecError::UnknownNode {
            node: node_id.into(),
        });
    }
    let opts = RunOptions {
        checkpoint_dir: Some(dir.to_path_buf()),
        keep_node_outputs: true,
        resume_only: true,
        ..RunOptions::default()
    };
    let res = exec.execute(job, &opts)?;
    Ok((material(&res, job, node_id)?, res.runtime_hash))
}

/// What a validator expects of a served proof: from the signed receipt and its own
/// choice of node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Receipt's workflow id.
    pub workflow: String,
    /// Receipt's manifest checksum.
    pub manifest_checksum: Checksum,
    /// Receipt's seed.
    pub seed: u64,
    /// Receipt's runtime hash.
    pub runtime_hash: [u8; 32],
    /// The node the validator challenged.
    pub node_id: String,
}

fn mismatch(what: &str, got: &str, want: &str) -> ExecError {
    ExecError::ProofInvalid(format!("proof {what} is {got}, expected {want}"))
}

/// Validator path for served challenge material: binds `proof_json` to `expected`,
/// checks weight inputs against `weights` (the validator's own copy), re-executes the
/// node from `inputs` (safetensors) and verifies its output against the commitment.
pub fn verify_challenge(
    exec: &Executor,
    manifest: &Manifest,
    weights: &[u8],
    expected: &Expected,
    proof_json: &[u8],
    inputs: &[u8],
) -> Result<NodeProof> {
    let proof: NodeProof = serde_json::from_slice(proof_json)?;
    if proof.node_id != expected.node_id {
        return Err(mismatch("node", &proof.node_id, &expected.node_id));
    }
    if proof.workflow != expected.workflow {
        return Err(mismatch("workflow", &proof.workflow, &expected.workflow));
    }
    let want_sum = hex(&expected.manifest_checksum);
    if proof.manifest_checksum != want_sum {
        return Err(mismatch(
            "manifest checksum",
            &proof.manifest_checksum,
            &want_sum,
        ));
    }
    if hex(&manifest.checksum()) != want_sum {
        return Err(ExecError::ProofInvalid(format!(
            "the receipt's manifest {want_sum} is not this validator's {} workflow",
            expected.workflow
        )));
    }
    if proof.seed != expected.seed {
        return Err(mismatch(
            "seed",
            &proof.seed.to_string(),
            &expected.seed.to_string(),
        ));
    }
    let want_rh = hex(&expected.runtime_hash);
    if proof.runtime_hash != want_rh {
        return Err(mismatch("runtime_hash", &proof.runtime_hash, &want_rh));
    }
    // Weights are public: the node may not substitute its own.
    let own: BTreeMap<String, Tensor> = load_safetensors(weights, "weights")?.into_iter().collect();
    for (name, h) in &proof.input_hashes {
        if let Some(w) = own.get(name) {
            if &hex(&w.hash()) != h {
                return Err(ExecError::ProofInvalid(format!(
                    "weight {name} in the proof is not the manifest's"
                )));
            }
        }
    }
    let inputs: BTreeMap<String, Tensor> = load_safetensors(inputs, "node inputs")?
        .into_iter()
        .collect();
    exec.reexecute_and_verify(manifest, &proof, &inputs)?;
    Ok(proof)
}
