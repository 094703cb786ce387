//! Merkle proofs verify; a flipped bit anywhere is caught; single-node re-execution.

use crate::common::{job, run_workload};
use havn_exec::exec::{preflight, RunOptions};
use havn_exec::exec::{Job, PreparedJob, RunResult};
use havn_exec::merkle::{merkle_path, merkle_root};
use havn_exec::tensor::Data;
use havn_exec::workloads::Size;
use havn_exec::{verify_node, ExecError, Executor};
use std::collections::BTreeMap;

/// A tiny preset run on 2 CPU threads, keeping every node's outputs (what proofs
/// and single-node re-execution need).
fn run_keeping_node_outputs(workflow: &str, seed: u64) -> (Executor, Job, PreparedJob, RunResult) {
    let exec = Executor::cpu(2);
    let (reg, j) = job(workflow, Size::Tiny, seed);
    let p = preflight(&reg, &j).unwrap();
    let r = exec
        .execute(
            &p,
            &RunOptions {
                keep_node_outputs: true,
                ..Default::default()
            },
        )
        .unwrap();
    (exec, j, p, r)
}

#[test]
fn every_node_proof_verifies_and_bitflips_fail() {
    let (_, _, _, r) = run_keeping_node_outputs("diffusion", 5);
    for id in &r.node_ids {
        let proof = r.prove(id).unwrap();
        let out = &r.node_outputs[id];
        verify_node(&proof, out).unwrap();
        // Flip one bit of the output.
        let mut bad = out.clone();
        if let Data::F32(v) = &mut bad.data {
            v[0] = f32::from_bits(v[0].to_bits() ^ 1);
        }
        assert!(
            matches!(verify_node(&proof, &bad), Err(ExecError::ProofInvalid(_))),
            "{id}: flipped output bit accepted"
        );
    }
    // Tamper with the proof itself: path, root, runtime hash, seed.
    let proof = r.prove(&r.node_ids[3]).unwrap();
    let out = &r.node_outputs[&r.node_ids[3]];
    let flip = |s: &str| -> String {
        let mut c: Vec<char> = s.chars().collect();
        c[0] = if c[0] == '0' { '1' } else { '0' };
        c.into_iter().collect()
    };
    let mut p1 = proof.clone();
    p1.path[0].0 = flip(&p1.path[0].0);
    let mut p2 = proof.clone();
    p2.merkle_root = flip(&p2.merkle_root);
    let mut p3 = proof.clone();
    p3.runtime_hash = flip(&p3.runtime_hash);
    let mut p4 = proof.clone();
    p4.seed ^= 1;
    for (what, p) in [
        ("path", p1),
        ("root", p2),
        ("runtime hash", p3),
        ("seed", p4),
    ] {
        assert!(verify_node(&p, out).is_err(), "tampered {what} accepted");
    }
}

#[test]
fn merkle_paths_for_all_sizes() {
    for n in 1..20usize {
        let leaves: Vec<[u8; 32]> = (0..n).map(|i| [i as u8; 32]).collect();
        let root = merkle_root(&leaves);
        for i in 0..n {
            let mut acc = {
                use sha3::Digest;
                let mut h = sha3::Sha3_256::new();
                h.update([0u8]);
                h.update(leaves[i]);
                <[u8; 32]>::from(h.finalize())
            };
            for (sib, left) in merkle_path(&leaves, i) {
                use sha3::Digest;
                let mut h = sha3::Sha3_256::new();
                h.update([1u8]);
                if left {
                    h.update(sib);
                    h.update(acc);
                } else {
                    h.update(acc);
                    h.update(sib);
                }
                acc = h.finalize().into();
            }
            assert_eq!(acc, root, "n={n} i={i}");
        }
    }
}

#[test]
fn validator_reexecutes_single_nodes() {
    let (exec, j, p, r) = run_keeping_node_outputs("lm", 9);
    // One node of every op kind in the LM.
    let mut seen = std::collections::BTreeSet::new();
    for (id, st) in r.node_ids.iter().zip(&r.nodes) {
        if !seen.insert(st.op.clone()) {
            continue;
        }
        let proof = r.prove(id).unwrap();
        let ins: BTreeMap<_, _> = r.inputs_of(&p, id).unwrap().into_iter().collect();
        let v = Executor::cpu(3);
        let out = v.reexecute_and_verify(&j.manifest, &proof, &ins).unwrap();
        assert_eq!(out.hash(), r.node_outputs[id].hash());
    }
    assert!(seen.len() >= 10, "ops covered: {seen:?}");
    // A tampered input is refused before execution.
    let id = r.node_ids.iter().find(|i| i.ends_with(".q")).unwrap();
    let proof = r.prove(id).unwrap();
    let mut ins: BTreeMap<_, _> = r.inputs_of(&p, id).unwrap().into_iter().collect();
    let first = ins.keys().next().unwrap().clone();
    if let Data::F32(v) = &mut ins.get_mut(&first).unwrap().data {
        v[1] += 1.0;
    }
    assert!(matches!(
        exec.reexecute_and_verify(&j.manifest, &proof, &ins),
        Err(ExecError::ProofInvalid(_))
    ));
}

#[test]
fn runtime_hash_commits_to_every_node() {
    let a = run_workload(&Executor::cpu(1), "audio", 1, &RunOptions::default());
    let mut hashes = a.node_hashes.clone();
    hashes[2][0] ^= 1;
    assert_ne!(merkle_root(&hashes), a.merkle_root);
}
