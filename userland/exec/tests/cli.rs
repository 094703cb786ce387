//! `havnctl run` logic: outputs file, CID, report, input overrides, proofs.

use havn_exec::cli::{parse_input_arg, run_workflow, verify_node_from_files, RunRequest};
use havn_exec::tensor::{load_safetensors, save_safetensors};
use havn_exec::workloads::Size;
use havn_exec::{BackendKind, ExecError, Tensor};
use havn_proto::Cid;

fn req(out: &std::path::Path) -> RunRequest {
    RunRequest {
        workflow: "audio".into(),
        size: Size::Tiny,
        inputs: vec![],
        seed: 3,
        threads: 2,
        backend: BackendKind::Cpu,
        out: out.to_path_buf(),
        prove: vec!["mel".into()],
        checkpoint: true,
    }
}

#[test]
fn run_writes_outputs_with_matching_cid_and_proofs() {
    let dir = std::env::temp_dir().join(format!("havn-exec-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rep = run_workflow(&req(&dir)).unwrap();
    let bytes = std::fs::read(dir.join("outputs.safetensors")).unwrap();
    assert_eq!(Cid::of_bytes(&bytes).to_string(), rep.outputs_cid);
    assert_eq!(load_safetensors(&bytes, "o").unwrap().len(), 3);
    assert_eq!(rep.runtime_hash.len(), 64);
    // Re-running resumes from the checkpoint and reports the same hash.
    let again = run_workflow(&req(&dir)).unwrap();
    assert_eq!(again.runtime_hash, rep.runtime_hash);
    assert!(again.nodes.iter().all(|n| n.resumed));
    // Validator path from the written files.
    let proof = dir.join("proof-mel.json");
    let ins = dir.join("proof-mel.inputs.safetensors");
    verify_node_from_files("audio", Size::Tiny, &proof, &ins, BackendKind::Cpu, 1).unwrap();
    // Tampered proof is refused.
    let mut p: serde_json::Value = serde_json::from_slice(&std::fs::read(&proof).unwrap()).unwrap();
    p["node_hash"] = serde_json::Value::String("00".repeat(32));
    let bad = dir.join("bad-proof.json");
    std::fs::write(&bad, serde_json::to_vec(&p).unwrap()).unwrap();
    assert!(matches!(
        verify_node_from_files("audio", Size::Tiny, &bad, &ins, BackendKind::Cpu, 1),
        Err(ExecError::ProofInvalid(_))
    ));
    // An input override changes the result.
    let wave = dir.join("wave.safetensors");
    std::fs::write(
        &wave,
        save_safetensors(&[(
            "waveform".into(),
            Tensor::f32(vec![512], vec![0.25; 512]).unwrap(),
        )])
        .unwrap(),
    )
    .unwrap();
    let mut r2 = req(&dir.join("o2"));
    r2.inputs = vec![parse_input_arg(&format!("waveform={}", wave.display())).unwrap()];
    let rep2 = run_workflow(&r2).unwrap();
    assert_ne!(rep2.runtime_hash, rep.runtime_hash);
    assert!(parse_input_arg("novalue").is_err());
    let mut r3 = req(&dir.join("o3"));
    r3.inputs = vec![("nosuch".into(), wave)];
    assert!(matches!(
        run_workflow(&r3),
        Err(ExecError::UnknownReference { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}
