//! `Prove`: execd keeps a finished job's checkpoints and answers with a node's proof
//! and input tensors in the artifact store; they verify against the signed runtime
//! hash, unknown jobs/nodes are refused, tampered inputs fail, retention is bounded.

use havn_exec::challenge::Expected;
use havn_exec::cli::{verify_challenge_files, verify_node_from_files, ChallengeCheck};
use havn_exec::workloads::{self, Size};
use havn_exec::{BackendKind, ExecError};
use havn_execd::Engine;
use havn_ipc::{Client, PeerPolicy, Server};
use havn_proto::ipc::*;
use havn_proto::*;
use std::path::{Path, PathBuf};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("havn-execd-test-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(state: &Path) -> havn_config::NodeConfig {
    let text = format!(
        r#"
[node]
state_dir = "{}"
[tpm]
tcti = "swtpm:host=127.0.0.1,port=1"
[execd]
backend = "cpu"
threads = 2
[netd]
listen = "127.0.0.1:0"
tls_cert = "/nonexistent/node.pem"
tls_key = "/nonexistent/node.key"
client_ca = "/nonexistent/ca.pem"
"#,
        state.display()
    );
    havn_config::NodeConfig::parse(&text, Path::new("test.toml")).unwrap()
}

/// Stands in for havn-attestd: opens the gate and "signs" whatever execd reports.
fn attestd() -> Client<ExecdAttestd> {
    let (a, b) = havn_ipc::socketpair().unwrap();
    std::thread::spawn(move || {
        let Ok(mut s) = Server::<ExecdAttestd>::accept(b, PeerPolicy::any()) else {
            return;
        };
        while let Ok(r) = s.recv() {
            let resp = match r.msg {
                ExecdRequest::Gate { .. } => ExecdResponse::GateOpen,
                ExecdRequest::Report(j) => ExecdResponse::Receipt(SignedReceipt {
                    receipt: Receipt {
                        workflow_id: j.workflow_id,
                        job_id: j.job_id,
                        runtime_hash: j.runtime_hash,
                        outputs_cid: j.outputs_cid,
                        inputs_cid: j.inputs_cid,
                        latency_ms: j.latency_ms,
                        energy_estimate_mj: j.energy_estimate_mj,
                        manifest_checksum: j.manifest_checksum,
                        seed: j.seed,
                        gas: j.gas,
                        backend: j.backend,
                        compute_class: j.compute_class,
                        node: NodeId(PubKey32([7; 32])),
                        submitter: j.submitter,
                        signed_unix_ms: 1,
                    },
                    signature: Sig64([9; 64]),
                }),
                ExecdRequest::Capabilities(_) => ExecdResponse::Ack,
                ExecdRequest::Reexecuted(_) => ExecdResponse::Error(RemoteError::NotPermitted),
                ExecdRequest::PayloadKey => ExecdResponse::Error(RemoteError::NotYetAvailable),
            };
            if s.reply(&resp).is_err() {
                return;
            }
        }
    });
    Client::connect(a, PeerPolicy::any()).unwrap()
}

fn run(engine: &mut Engine, at: &mut Client<ExecdAttestd>, job_id: &str, seed: u64) -> Receipt {
    match run_with(engine, at, job_id, seed, 60_000) {
        NetdExecResponse::Done { receipt, .. } => receipt.receipt,
        other => panic!("run {job_id}: {other:?}"),
    }
}

fn run_with(
    engine: &mut Engine,
    at: &mut Client<ExecdAttestd>,
    job_id: &str,
    seed: u64,
    timeout_ms: u32,
) -> NetdExecResponse {
    let w = engine
        .workflow_refs()
        .into_iter()
        .find(|w| w.id.as_str() == "audio")
        .unwrap();
    let payload = JobPayload {
        job_id: bounded(job_id),
        workflow: w,
        inputs: heapless::Vec::new(),
        compute_class: ComputeClass::S,
        timeout_ms,
        seed,
        privacy: PrivacyFlags::default(),
    };
    engine.handle(
        NetdExecRequest::Run {
            ticket_id: 1,
            payload,
            submitter: bounded("orchestrator"),
        },
        at,
    )
}

#[test]
fn a_job_past_its_timeout_is_cancelled_and_fails_with_that_reason() {
    let state = tmpdir("timeout");
    let cfg = config(&state);
    let mut engine = Engine::open(&cfg).unwrap();
    let mut at = attestd();
    // 0 ms: the deadline has passed before the first node (deterministic).
    match run_with(&mut engine, &mut at, "late-1", 3, 0) {
        NetdExecResponse::Failed { error, reason, .. } => {
            assert_eq!(error, RemoteError::ExecutionFailed);
            assert!(
                reason.contains("timeout_ms of 0 ms was exceeded"),
                "{reason}"
            );
        }
        other => panic!("a job past its timeout must not finish: {other:?}"),
    }
    // The same job with time to run finishes (the cancelled run left nothing wrong).
    let r = run(&mut engine, &mut at, "late-1", 3);
    assert_eq!(r.job_id.as_str(), "late-1");
}

fn prove(
    engine: &mut Engine,
    at: &mut Client<ExecdAttestd>,
    job: &str,
    node: &str,
) -> NetdExecResponse {
    engine.handle(
        NetdExecRequest::Prove {
            job_id: bounded(job),
            node_id: bounded(node),
            submitter: bounded("orchestrator"),
        },
        at,
    )
}

fn refused(r: NetdExecResponse) -> RemoteError {
    match r {
        NetdExecResponse::Refused { error, .. } => error,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn prove_serves_verifiable_material_for_finished_jobs() {
    let state = tmpdir("prove");
    let cfg = config(&state);
    let mut engine = Engine::open(&cfg).unwrap();
    let mut at = attestd();
    let receipt = run(&mut engine, &mut at, "job-a", 5);

    // The checkpoint moved to the retained area; nothing left in checkpoints/.
    let execd = cfg.daemon_state("execd");
    assert_eq!(
        std::fs::read_dir(execd.join("checkpoints"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(execd.join("retained")).unwrap().count(),
        1
    );

    let (proof_cid, inputs_cid, rh) = match prove(&mut engine, &mut at, "job-a", "mel") {
        NetdExecResponse::Proof {
            proof_cid,
            inputs_cid,
            runtime_hash,
        } => (proof_cid, inputs_cid, runtime_hash),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        rh, receipt.runtime_hash,
        "the proof commits to the signed hash"
    );
    let artifacts = state.join("artifacts");
    let proof_file = artifacts.join(proof_cid.to_string());
    let inputs_file = artifacts.join(inputs_cid.to_string());
    for (cid, f) in [(proof_cid, &proof_file), (inputs_cid, &inputs_file)] {
        assert!(
            cid.verify(&std::fs::read(f).unwrap()),
            "{} is content addressed",
            f.display()
        );
    }
    // The existing validator path reads it as-is…
    let p = verify_node_from_files(
        "audio",
        Size::Small,
        &proof_file,
        &inputs_file,
        BackendKind::Cpu,
        2,
    )
    .unwrap();
    assert_eq!(p.runtime_hash, receipt.runtime_hash.to_hex());
    // …and so does the challenge check bound to the receipt.
    let expected = Expected {
        workflow: "audio".into(),
        manifest_checksum: receipt.manifest_checksum.0,
        seed: receipt.seed,
        runtime_hash: receipt.runtime_hash.0,
        node_id: "mel".into(),
    };
    let check = |inputs: &Path| {
        verify_challenge_files(&ChallengeCheck {
            size: Size::Small,
            expected: &expected,
            proof_file: &proof_file,
            inputs_file: inputs,
            backend: BackendKind::Cpu,
            threads: 2,
        })
    };
    check(&inputs_file).unwrap();

    // One flipped byte in the node inputs fails verification.
    let mut bytes = std::fs::read(&inputs_file).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    let tampered = state.join("tampered.safetensors");
    std::fs::write(&tampered, &bytes).unwrap();
    assert!(matches!(check(&tampered), Err(ExecError::ProofInvalid(_))));
    assert!(matches!(
        verify_node_from_files(
            "audio",
            Size::Small,
            &proof_file,
            &tampered,
            BackendKind::Cpu,
            2
        ),
        Err(ExecError::ProofInvalid(_))
    ));

    // Asking again gives the same content-addressed files.
    match prove(&mut engine, &mut at, "job-a", "mel") {
        NetdExecResponse::Proof { proof_cid: p2, .. } => assert_eq!(p2, proof_cid),
        other => panic!("{other:?}"),
    }
    // Unknown job, unknown node, bad ids.
    assert_eq!(
        refused(prove(&mut engine, &mut at, "job-zzz", "mel")),
        RemoteError::UnknownJob
    );
    assert_eq!(
        refused(prove(&mut engine, &mut at, "job-a", "nosuch")),
        RemoteError::UnknownNode
    );
    assert_eq!(
        refused(prove(&mut engine, &mut at, "job-a", "../x/y")),
        RemoteError::BadRequest
    );
    assert_eq!(
        refused(prove(&mut engine, &mut at, "", "mel")),
        RemoteError::BadRequest
    );

    // Retention is bounded: with room for 2, the oldest of 3 jobs is dropped.
    engine.set_retention(2);
    run(&mut engine, &mut at, "job-b", 6);
    run(&mut engine, &mut at, "job-c", 7);
    assert_eq!(
        std::fs::read_dir(execd.join("retained")).unwrap().count(),
        2
    );
    assert_eq!(
        refused(prove(&mut engine, &mut at, "job-a", "mel")),
        RemoteError::UnknownJob
    );
    assert!(matches!(
        prove(&mut engine, &mut at, "job-c", "frames"),
        NetdExecResponse::Proof { .. }
    ));
    // A restarted execd still answers for retained jobs.
    drop(engine);
    let mut engine = Engine::open(&cfg).unwrap();
    assert!(matches!(
        prove(&mut engine, &mut at, "job-b", "power"),
        NetdExecResponse::Proof { .. }
    ));
    let _ = workloads::NAMES;
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn a_full_disk_is_storage_full_without_paths_and_the_job_runs_again_under_its_id() {
    if !havn_testkit::require_root("mounts a small tmpfs under execd's state") {
        return;
    }
    let disk = havn_testkit::SmallDisk::mount(8 << 20);
    let state = disk.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let cfg = config(&state);
    let mut engine = Engine::open(&cfg).unwrap();
    let mut at = attestd();
    disk.fill();
    match run_with(&mut engine, &mut at, "full-1", 5, 60_000) {
        NetdExecResponse::Failed { error, reason, .. } => {
            assert_eq!(error, RemoteError::StorageFull, "{reason}");
            assert!(
                !reason.contains(&disk.path().display().to_string()) && !reason.contains("/"),
                "no server path in the client-visible reason: {reason}"
            );
        }
        other => panic!("a full disk must refuse: {other:?}"),
    }
    disk.free();
    let r = run(&mut engine, &mut at, "full-1", 5);
    assert_eq!(r.job_id.as_str(), "full-1");
}
