//! `havn.v1.Intake` over gRPC on the REST port: the same admission, the same refusals
//! (mapped to status codes with the field named), the same roles and the same TLS
//! verifier; and an independent client (Python grpcio) drives it all.

use crate::common::*;
use havn_grpc::v1 as pb;
use havn_netd::grpc_client::{Channel, GrpcClient};
use havn_proto::{ComputeClass, Receipt};
use std::time::Duration;
use tonic::Code;

fn grpc_as(pair: &havn_netd::pki::Pair) -> GrpcClient {
    let p = &pki().0;
    GrpcClient::from_pem(
        p.ca.cert.as_bytes(),
        Some((pair.cert.as_bytes(), pair.key.as_bytes())),
    )
    .unwrap()
}

async fn intake(
    node: &Node,
    pair: &havn_netd::pki::Pair,
) -> pb::intake_client::IntakeClient<Channel> {
    grpc_as(pair)
        .intake("127.0.0.1", node.running.local_addr.port())
        .await
        .expect("gRPC connects over mTLS with ALPN h2")
}

fn job(id: &str) -> pb::AcceptJobRequest {
    pb::AcceptJobRequest {
        job_id: id.into(),
        workflow: Some(pb::WorkflowRef {
            id: "lm".into(),
            checksum: LM_SUM.into(),
        }),
        inputs: vec![],
        compute_class: pb::ComputeClass::S as i32,
        timeout_ms: 60_000,
        seed: 7,
        privacy: None,
    }
}

/// The code, the `havn-field` metadata and the message of a refusal.
fn refusal<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (Code, Option<String>, String) {
    let s = r.expect_err("refused");
    let field = s
        .metadata()
        .get("havn-field")
        .map(|v| v.to_str().unwrap().to_string());
    (s.code(), field, s.message().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_accepted_over_grpc_runs_to_its_receipt_and_watch_sees_every_state() {
    let node = start_node(Cfg::default(), ComputeClass::M, Duration::from_millis(300)).await;
    let p = &pki().0;
    let mut c = intake(&node, &p.orchestrator).await;
    let t = c
        .accept_job(job("g1"))
        .await
        .expect("accepted")
        .into_inner();
    assert!(t.ticket_id >= 1 && t.eta_seconds >= 1, "{t:?}");

    let mut stream = c
        .watch_job(pb::WatchJobRequest {
            ticket_id: t.ticket_id,
            max_wait_seconds: 30,
        })
        .await
        .expect("watch")
        .into_inner();
    let mut states = Vec::new();
    while let Some(s) = stream.message().await.expect("stream") {
        assert_eq!((s.ticket_id, s.job_id.as_str()), (t.ticket_id, "g1"));
        states.push(pb::JobState::try_from(s.state).unwrap());
    }
    assert_eq!(
        states.last(),
        Some(&pb::JobState::Done),
        "the stream ends at done: {states:?}"
    );
    assert!(
        states.contains(&pb::JobState::Running),
        "a 300 ms job is seen running: {states:?}"
    );
    let s = c
        .get_job(pb::GetJobRequest {
            ticket_id: t.ticket_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(pb::JobState::try_from(s.state).unwrap(), pb::JobState::Done);

    // The receipt: the fields decode from the exact signed bytes, which are the ones
    // REST serves.
    let r = c
        .get_receipt(pb::GetReceiptRequest {
            job_id: "g1".into(),
            submitter: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let decoded: Receipt = postcard::from_bytes(&r.signed_bytes).expect("signed bytes decode");
    assert_eq!(decoded.job_id.as_str(), r.job_id);
    assert_eq!(decoded.runtime_hash.to_hex(), r.runtime_hash);
    assert_eq!(decoded.outputs_cid.to_string(), r.outputs_cid);
    let rest: havn_proto::SignedReceipt = node
        .orchestrator()
        .await
        .get("/receipt/g1")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(rest.receipt, decoded, "gRPC and REST serve one receipt");
    assert_eq!(rest.signature.0.to_vec(), r.signature);

    // Idempotent duplicate: the same ticket; the same id with another payload:
    // ALREADY_EXISTS naming job_id, as REST's 409.
    let again = c.accept_job(job("g1")).await.unwrap().into_inner();
    assert_eq!(again.ticket_id, t.ticket_id);
    let mut other = job("g1");
    other.seed = 8;
    let (code, field, _) = refusal(c.accept_job(other).await);
    assert_eq!(
        (code, field.as_deref()),
        (Code::AlreadyExists, Some("job_id"))
    );
    // A job submitted over REST is visible over gRPC and the other way round.
    assert_eq!(node.log.lock().unwrap().runs.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_invalid_argument_naming_the_field_and_queue_nothing() {
    let node = start_node(Cfg::default(), ComputeClass::M, Duration::ZERO).await;
    let p = &pki().0;
    let mut c = intake(&node, &p.orchestrator).await;
    type Mutation = Box<dyn Fn(&mut pb::AcceptJobRequest)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("compute_class", Box::new(|j| j.compute_class = 0)),
        ("compute_class", Box::new(|j| j.compute_class = 9)),
        ("job_id", Box::new(|j| j.job_id = String::new())),
        ("job_id", Box::new(|j| j.job_id = "x".repeat(65))),
        ("job_id", Box::new(|j| j.job_id = "../etc".into())),
        ("workflow", Box::new(|j| j.workflow = None)),
        (
            "workflow.checksum",
            Box::new(|j| j.workflow.as_mut().unwrap().checksum = "zz".into()),
        ),
        (
            "inputs[0].cid",
            Box::new(|j| {
                j.inputs.push(pb::InputArtifact {
                    name: "a".into(),
                    cid: "not-a-cid".into(),
                    location: None,
                })
            }),
        ),
        ("timeout_ms", Box::new(|j| j.timeout_ms = 0)),
        (
            "request",
            Box::new(|j| {
                j.workflow.as_mut().unwrap().id = "w".repeat(8000);
            }),
        ),
    ];
    for (field, mutate) in cases {
        let mut j = job("bad");
        mutate(&mut j);
        let (code, f, msg) = refusal(c.accept_job(j).await);
        assert_eq!(
            (code, f.as_deref()),
            (Code::InvalidArgument, Some(field)),
            "{msg}"
        );
        assert!(msg.starts_with(field), "the message names the field: {msg}");
    }
    // REST's other refusals keep their meaning: an unknown workflow is NOT_FOUND, a
    // class above the node's FAILED_PRECONDITION, an input never uploaded NOT_FOUND
    // naming the input.
    let mut j = job("w");
    j.workflow.as_mut().unwrap().id = "nope".into();
    let (code, f, _) = refusal(c.accept_job(j).await);
    assert_eq!((code, f.as_deref()), (Code::NotFound, Some("workflow.id")));
    let mut j = job("xl");
    j.compute_class = pb::ComputeClass::Xl as i32;
    let (code, f, _) = refusal(c.accept_job(j).await);
    assert_eq!(
        (code, f.as_deref()),
        (Code::FailedPrecondition, Some("compute_class"))
    );
    let mut j = job("in");
    j.inputs.push(pb::InputArtifact {
        name: "a".into(),
        cid: havn_proto::Cid::of_bytes(b"never uploaded").to_string(),
        location: None,
    });
    let (code, f, _) = refusal(c.accept_job(j).await);
    assert_eq!(
        (code, f.as_deref()),
        (Code::NotFound, Some("inputs[0].cid"))
    );
    let (code, f, _) = refusal(c.get_job(pb::GetJobRequest { ticket_id: 99 }).await);
    assert_eq!((code, f.as_deref()), (Code::NotFound, Some("ticket_id")));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(node.log.lock().unwrap().runs.is_empty(), "nothing ran");
    let m = node.operator_metrics().await;
    assert!(
        m.contains("havn_netd_jobs_rejected_total{status=\"400\"} 10"),
        "the ten malformed requests are counted as REST's 400s:\n{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_queue_limits_and_the_tls_verifier_are_rests() {
    let cfg = Cfg {
        queue: 2,
        ..Cfg::default()
    };
    let node = start_node(cfg, ComputeClass::S, Duration::from_secs(3)).await;
    let p = &pki().0;
    // A validator may not submit.
    let mut v = intake(&node, &p.validator).await;
    let (code, _, msg) = refusal(v.accept_job(job("v1")).await);
    assert_eq!(code, Code::PermissionDenied, "{msg}");
    // Queue full: RESOURCE_EXHAUSTED with a retry hint in seconds.
    let mut c = intake(&node, &p.orchestrator).await;
    c.accept_job(job("q1")).await.expect("queued");
    c.accept_job(job("q2")).await.expect("queued");
    let s = c.accept_job(job("q3")).await.expect_err("queue full");
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    let secs: u64 = s
        .metadata()
        .get("retry-after")
        .expect("retry-after")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(secs >= 1);
    v.get_job(pb::GetJobRequest { ticket_id: 1 })
        .await
        .expect("validators read every job");
    // The one TLS verifier: no client certificate, an expired one, or one of another
    // CA is refused at the handshake, as on REST.
    let port = node.running.local_addr.port();
    let none = GrpcClient::from_pem(p.ca.cert.as_bytes(), None).unwrap();
    for (what, client) in [
        ("no certificate", none),
        ("expired", grpc_as(&p.expired)),
        ("foreign CA", grpc_as(&p.foreign)),
    ] {
        let r = match client.intake("127.0.0.1", port).await {
            Err(e) => Err(e.to_string()),
            Ok(mut c) => c
                .get_job(pb::GetJobRequest { ticket_id: 1 })
                .await
                .map_err(|s| s.to_string()),
        };
        assert!(r.is_err(), "{what}: a gRPC call went through: {r:?}");
    }
    // Health is SERVING: the node key is unsealed.
    let ch = grpc_as(&p.operator)
        .channel("127.0.0.1", port)
        .await
        .unwrap();
    let mut h = tonic_health::pb::health_client::HealthClient::with_origin(
        ch,
        "https://127.0.0.1".parse().unwrap(),
    );
    for service in ["", havn_grpc::SERVICE] {
        let r = h
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_upload_in_chunks_and_are_bounded() {
    let node = start_node(Cfg::default(), ComputeClass::M, Duration::ZERO).await;
    let p = &pki().0;
    let mut c = intake(&node, &p.orchestrator).await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let chunks: Vec<pb::ArtifactChunk> = data
        .chunks(64 << 10)
        .map(|d| pb::ArtifactChunk { data: d.to_vec() })
        .collect();
    let a = c
        .upload_artifact(tokio_stream_iter(chunks))
        .await
        .expect("upload")
        .into_inner();
    assert_eq!(a.cid, havn_proto::Cid::of_bytes(&data).to_string());
    assert_eq!(a.size, data.len() as u64);
    // The same bytes over REST: the same CID, stored once.
    let stored = node.state_dir.join("uploads").join(&a.cid);
    assert_eq!(std::fs::read(&stored).unwrap(), data);
    // Empty and over 8 MiB are refused.
    let (code, _, _) = refusal(c.upload_artifact(tokio_stream_iter(vec![])).await);
    assert_eq!(code, Code::InvalidArgument);
    let big: Vec<pb::ArtifactChunk> = (0..9)
        .map(|_| pb::ArtifactChunk {
            data: vec![1; 1 << 20],
        })
        .collect();
    let (code, f, msg) = refusal(c.upload_artifact(tokio_stream_iter(big)).await);
    assert_eq!(
        (code, f.as_deref()),
        (Code::InvalidArgument, Some("data")),
        "{msg}"
    );
    // A validator may not upload.
    let mut v = intake(&node, &p.validator).await;
    let (code, _, _) = refusal(
        v.upload_artifact(tokio_stream_iter(vec![pb::ArtifactChunk { data: vec![1] }]))
            .await,
    );
    assert_eq!(code, Code::PermissionDenied);
}

fn tokio_stream_iter(
    v: Vec<pb::ArtifactChunk>,
) -> impl tonic::codegen::tokio_stream::Stream<Item = pb::ArtifactChunk> + Send + 'static {
    tonic::codegen::tokio_stream::iter(v)
}

/// The test command's independent client: Python grpcio, its stubs generated from the
/// contract file by grpcio-tools, over the same mTLS certificates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_drives_the_api_health_reflection_and_refusals() {
    let have = std::process::Command::new("python3")
        .args([
            "-c",
            "import grpc, grpc_tools, grpc_health, grpc_reflection",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !havn_testkit::require(
        have,
        "python3 grpcio (tests/py/requirements.txt)",
        "the independent gRPC client; scripts/setup installs it",
    ) {
        return;
    }
    let node = start_node(Cfg::default(), ComputeClass::M, Duration::from_millis(200)).await;
    let dir = &pki().1;
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let proto = here.join("../grpc/proto/havn/v1/intake.proto");
    let addr = format!("127.0.0.1:{}", node.running.local_addr.port());
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(here.join("tests/py/grpc_client.py"))
        .args(["--addr", &addr, "--checksum", LM_SUM, "--job-id", "py-1"])
        .arg("--proto")
        .arg(&proto)
        .arg("--ca")
        .arg(dir.join("ca.pem"))
        .arg("--cert")
        .arg(dir.join("orchestrator.pem"))
        .arg("--key")
        .arg(dir.join("orchestrator.key"));
    // The node runs on this runtime: the client waits on a blocking thread.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the grpcio client failed:\n{stderr}\n{stdout}"
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(
        v["states"].as_array().and_then(|s| s.last()),
        Some(&"JOB_STATE_DONE".into()),
        "{v}"
    );
    assert_eq!(v["refusal"]["field"], "compute_class", "{v}");
    assert_eq!(v["no_client_cert"], "UNAVAILABLE", "{v}");
    // What the Python client saw is what netd stored: the receipt's signed bytes and
    // the uploaded bytes.
    let rest: havn_proto::SignedReceipt = node
        .orchestrator()
        .await
        .get("/receipt/py-1")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        v["receipt"]["runtime_hash"],
        rest.receipt.runtime_hash.to_hex()
    );
    let cid = v["upload_cid"].as_str().unwrap();
    assert!(node.state_dir.join("uploads").join(cid).is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_closes_intake_on_both_apis_and_health_turns_not_serving() {
    let node = start_node(Cfg::default(), ComputeClass::M, Duration::ZERO).await;
    let p = &pki().0;
    let port = node.running.local_addr.port();
    let mut c = intake(&node, &p.orchestrator).await;
    c.accept_job(job("before"))
        .await
        .expect("accepted while serving");
    node.running.drain(Duration::from_millis(200)).await;
    let s = c
        .accept_job(job("after"))
        .await
        .expect_err("refused while draining");
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    assert!(s.metadata().get("retry-after").is_some());
    let r = node
        .orchestrator()
        .await
        .post(
            "/job/accept",
            serde_json::to_vec(&crate::common::job("after-rest")).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.headers.get("retry-after").is_some());
    let h: serde_json::Value = node
        .orchestrator()
        .await
        .get("/health")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(h["status"], "draining");
    let ch = grpc_as(&p.operator)
        .channel("127.0.0.1", port)
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::with_origin(
        ch,
        "https://127.0.0.1".parse().unwrap(),
    );
    let not_serving = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;
    let end = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let st = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: havn_grpc::SERVICE.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        if st == not_serving {
            break;
        }
        assert!(std::time::Instant::now() < end, "health still {st}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_self_audit_turns_health_not_serving_and_raises_an_alert() {
    use std::sync::atomic::Ordering;
    let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let recipient = havn_payload::PayloadKey::generate();
    let node = start_node(
        Cfg {
            audit_failing: Some(failing.clone()),
            // An endpoint nobody listens on: the alert stays queued, sealed.
            extra: Some(format!(
                "[alerts]\n[[alerts.endpoints]]\nname = \"ops\"\nurl = \"https://127.0.0.1:9/x\"\npublic_key = \"{}\"\n",
                hex::encode(recipient.public())
            )),
            ..Cfg::default()
        },
        ComputeClass::M,
        Duration::ZERO,
    )
    .await;
    let p = &pki().0;
    let ch = grpc_as(&p.operator)
        .channel("127.0.0.1", node.running.local_addr.port())
        .await
        .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::with_origin(
        ch,
        "https://127.0.0.1".parse().unwrap(),
    );
    use tonic_health::pb::health_check_response::ServingStatus;
    let status = |h: &mut tonic_health::pb::health_client::HealthClient<Channel>| {
        let mut h = h.clone();
        async move {
            h.check(tonic_health::pb::HealthCheckRequest {
                service: havn_grpc::SERVICE.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status
        }
    };
    let wait_for = |want: ServingStatus| {
        let mut h = health.clone();
        async move {
            let end = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let st = status(&mut h).await;
                if st == want as i32 {
                    return;
                }
                assert!(
                    std::time::Instant::now() < end,
                    "health {st}, want {want:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    wait_for(ServingStatus::Serving).await;
    failing.store(true, Ordering::Relaxed);
    wait_for(ServingStatus::NotServing).await;
    // The alert is queued for the endpoint, sealed: its kind is netd's label, the
    // details are inside the envelope.
    let queue = node.state_dir.join("netd/alerts/ops");
    let end = std::time::Instant::now() + Duration::from_secs(5);
    let queued = loop {
        let files: Vec<_> = std::fs::read_dir(&queue)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        if let Some(f) = files.first() {
            break std::fs::read_to_string(f).unwrap();
        }
        assert!(std::time::Instant::now() < end, "no alert queued");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(queued.contains("attestation.self_audit_failed"), "{queued}");
    let m = node.operator_metrics().await;
    assert!(m.contains("havn_netd_alerts_raised_total 1"), "{m}");
    // A good audit again: SERVING again.
    failing.store(false, Ordering::Relaxed);
    wait_for(ServingStatus::Serving).await;
}
