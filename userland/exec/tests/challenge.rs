//! Challenge material: a finished run rebuilt from its checkpoint directory (computing
//! nothing) gives the proof `run --prove` gives; the validator check binds it to the
//! receipt, and a flipped byte in the node inputs fails verification.

use crate::common::job;
use havn_exec::challenge::{material, material_from_checkpoint, verify_challenge, Expected};
use havn_exec::exec::{preflight, RunOptions};
use havn_exec::workloads::{self, Size};
use havn_exec::{ExecError, Executor};

const NODE: &str = "mel";

#[test]
fn material_from_checkpoint_verifies_and_tampering_fails() {
    let dir = std::env::temp_dir().join(format!("havn-exec-challenge-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let exec = Executor::cpu(2);
    let (reg, j) = job("audio", Size::Tiny, 11);
    let p = preflight(&reg, &j).unwrap();
    // Checkpoints only do not exist yet: nothing to rebuild from.
    assert!(matches!(
        material_from_checkpoint(&exec, &p, &dir, NODE),
        Err(ExecError::Checkpoint(_))
    ));
    let opts = RunOptions {
        checkpoint_dir: Some(dir.clone()),
        keep_node_outputs: true,
        ..RunOptions::default()
    };
    let res = exec.execute(&p, &opts).unwrap();
    let direct = material(&res, &p, NODE).unwrap();
    let (m, rh) = material_from_checkpoint(&exec, &p, &dir, NODE).unwrap();
    assert_eq!(rh, res.runtime_hash);
    assert_eq!(m.proof_json, direct.proof_json, "same bytes as run --prove");
    assert_eq!(m.inputs, direct.inputs);
    assert!(matches!(
        material_from_checkpoint(&exec, &p, &dir, "nosuch"),
        Err(ExecError::UnknownNode { .. })
    ));

    let wl = workloads::build("audio", Size::Tiny).unwrap();
    let expected = Expected {
        workflow: "audio".into(),
        manifest_checksum: res.manifest_checksum,
        seed: 11,
        runtime_hash: res.runtime_hash,
        node_id: NODE.into(),
    };
    let check = |e: &Expected, proof: &[u8], ins: &[u8]| {
        verify_challenge(&Executor::cpu(1), &wl.manifest, &wl.weights, e, proof, ins)
    };
    let proof = check(&expected, &m.proof_json, &m.inputs).unwrap();
    assert_eq!(proof.node_id, NODE);

    // One flipped byte in the node inputs (the last tensor's data).
    let mut bad = m.inputs.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert!(
        matches!(
            check(&expected, &m.proof_json, &bad),
            Err(ExecError::ProofInvalid(_))
        ),
        "tampered inputs must fail verification"
    );
    // A proof for another receipt, seed or node is refused before re-execution.
    let mut other = expected.clone();
    other.runtime_hash[0] ^= 1;
    assert!(matches!(
        check(&other, &m.proof_json, &m.inputs),
        Err(ExecError::ProofInvalid(_))
    ));
    let mut other = expected.clone();
    other.seed = 12;
    assert!(matches!(
        check(&other, &m.proof_json, &m.inputs),
        Err(ExecError::ProofInvalid(_))
    ));
    let mut other = expected.clone();
    other.node_id = "power".into();
    assert!(matches!(
        check(&other, &m.proof_json, &m.inputs),
        Err(ExecError::ProofInvalid(_))
    ));
    // A missing node checkpoint: resume_only refuses to compute it.
    std::fs::remove_file(dir.join("node-00000.safetensors")).unwrap();
    assert!(matches!(
        material_from_checkpoint(&exec, &p, &dir, NODE),
        Err(ExecError::Checkpoint(_))
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_node_of_every_workload_yields_verifiable_material() {
    // Including nodes that take one tensor twice (audio's `im2 = mul(im, im)`).
    let exec = Executor::cpu(2);
    for wf in ["lm", "diffusion", "audio"] {
        let (reg, j) = job(wf, Size::Tiny, 5);
        let p = preflight(&reg, &j).unwrap();
        let opts = RunOptions {
            keep_node_outputs: true,
            ..RunOptions::default()
        };
        let res = exec.execute(&p, &opts).unwrap();
        let wl = workloads::build(wf, Size::Tiny).unwrap();
        for node in &wl.manifest.nodes {
            let m =
                material(&res, &p, &node.id).unwrap_or_else(|e| panic!("{wf}/{}: {e}", node.id));
            let expected = Expected {
                workflow: wf.into(),
                manifest_checksum: res.manifest_checksum,
                seed: 5,
                runtime_hash: res.runtime_hash,
                node_id: node.id.clone(),
            };
            verify_challenge(
                &Executor::cpu(1),
                &wl.manifest,
                &wl.weights,
                &expected,
                &m.proof_json,
                &m.inputs,
            )
            .unwrap_or_else(|e| panic!("{wf}/{}: {e}", node.id));
        }
    }
}
