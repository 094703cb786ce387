//! POST /job/accept admission checks, the job lifecycle, and the read endpoints.

use crate::common::*;
use havn_proto::{ComputeClass, SignedReceipt};
use serde_json::{json, Value};
use std::time::Duration;

async fn post(c: &mut havn_netd::client::Conn, v: &Value) -> (u16, Value, Option<String>) {
    let r = c
        .post("/job/accept", serde_json::to_vec(v).unwrap())
        .await
        .unwrap();
    let ra = r
        .headers
        .get("retry-after")
        .map(|h| h.to_str().unwrap().to_string());
    (r.status, r.json().unwrap_or(Value::Null), ra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_job_runs_to_a_signed_receipt() {
    let node = start_node(Cfg::default(), ComputeClass::M, Duration::ZERO).await;
    let mut c = node.orchestrator().await;
    let (s, v, _) = post(&mut c, &job("j1")).await;
    assert_eq!(s, 200, "{v}");
    let t = v["ticket_id"].as_u64().unwrap();
    assert!(v["eta_seconds"].as_u64().unwrap() >= 1);
    let st = wait_terminal(&mut c, t).await;
    assert_eq!(st["state"], "done");
    assert_eq!(st["job_id"], "j1");
    let r = c.get("/receipt/j1").await.unwrap();
    assert_eq!(r.status, 200);
    let rec: SignedReceipt = r.json().unwrap();
    assert_eq!(rec.receipt.job_id.as_str(), "j1");

    // Idempotent duplicate: same ticket, no second run.
    let (s, v, _) = post(&mut c, &job("j1")).await;
    assert_eq!((s, v["ticket_id"].as_u64()), (200, Some(t)));
    // Same id, different payload: conflict naming job_id.
    let mut other = job("j1");
    other["seed"] = json!(8);
    let (s, v, _) = post(&mut c, &other).await;
    assert_eq!((s, v["field"].as_str()), (409, Some("job_id")), "{v}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(node.log.lock().unwrap().runs.len(), 1);

    // A failing job reports its reason.
    let (_, v, _) = post(&mut c, &job("fail-1")).await;
    let st = wait_terminal(&mut c, v["ticket_id"].as_u64().unwrap()).await;
    assert!(
        st["state"]["failed"]["reason"]
            .as_str()
            .unwrap()
            .contains("boom"),
        "{st}"
    );
    assert_eq!(c.get("/receipt/fail-1").await.unwrap().status, 404);

    // Read endpoints.
    let h: Value = c.get("/health").await.unwrap().json().unwrap();
    assert_eq!(h["status"], "ok");
    assert_eq!(h["compute_class"], "M");
    assert_eq!(
        c.get("/metrics").await.unwrap().status,
        403,
        "metrics are for operators"
    );
    let m = node.operator_metrics().await;
    for needle in [
        "havn_netd_jobs_accepted_total 2",
        "havn_netd_jobs_completed_total 1",
        "havn_netd_jobs_failed_total 1",
        "havn_netd_queue_depth 0",
        "havn_netd_admission_latency_seconds_count 3",
        "havn_netd_job_latency_seconds_bucket{le=\"+Inf\"} 1",
    ] {
        assert!(m.contains(needle), "missing {needle} in\n{m}");
    }
    let nonce = "ab".repeat(32);
    let r = c
        .get(&format!("/attest/quote?nonce={nonce}"))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let q: Value = r.json().unwrap();
    assert_eq!(q["nonce"], nonce.as_str());
    let r = c.get("/attest/quote?nonce=xyz").await.unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json::<Value>().unwrap()["field"], "nonce");
    assert_eq!(c.get("/job/999").await.unwrap().status, 404);
    assert_eq!(c.get("/job/abc").await.unwrap().status, 400);

    // A job id under which the node already signed another result: 409 naming the id.
    let (_, v, _) = post(&mut c, &job("spent-1")).await;
    wait_terminal(&mut c, v["ticket_id"].as_u64().unwrap()).await;
    let r = c.get("/receipt/spent-1").await.unwrap();
    let body: Value = r.json().unwrap();
    assert_eq!(
        (r.status, body["field"].as_str()),
        (409, Some("job_id")),
        "{body}"
    );
    assert!(
        body["error"].as_str().unwrap().contains("\"spent-1\""),
        "{body}"
    );

    // attestd out of disk space: the job waits and is signed once space is back.
    let (_, v, _) = post(&mut c, &job("diskfull-1")).await;
    let st = wait_terminal(&mut c, v["ticket_id"].as_u64().unwrap()).await;
    assert_eq!(st["state"], "done", "{st}");
    assert_eq!(c.get("/receipt/diskfull-1").await.unwrap().status, 200);
    assert_eq!(c.get("/nope").await.unwrap().status, 404);
    assert_eq!(c.get("/job/accept").await.unwrap().status, 405);
    // heartbeat_ms = 100: attestd has been asked to sign heartbeats by now.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(HEARTBEATS.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refusal_has_its_status_and_field() {
    let node = start_node(Cfg::default(), ComputeClass::S, Duration::ZERO).await;
    let mut c = node.orchestrator().await;

    // 400: malformed JSON names the field.
    let mut bad = job("b1");
    bad["workflow"]["checksum"] = json!("zz");
    let (s, v, _) = post(&mut c, &bad).await;
    assert_eq!(
        (s, v["field"].as_str()),
        (400, Some("workflow.checksum")),
        "{v}"
    );
    let mut missing = job("b2");
    missing.as_object_mut().unwrap().remove("timeout_ms");
    let (s, v, _) = post(&mut c, &missing).await;
    assert_eq!((s, v["field"].as_str()), (400, Some("timeout_ms")), "{v}");
    let mut class = job("b3");
    class["compute_class"] = json!("Q");
    let (s, v, _) = post(&mut c, &class).await;
    assert_eq!(
        (s, v["field"].as_str()),
        (400, Some("compute_class")),
        "{v}"
    );
    let r = c.post("/job/accept", b"{not json".to_vec()).await.unwrap();
    assert_eq!(r.status, 400);
    assert!(r.json::<Value>().unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("line 1"));
    let r = c.post("/job/accept", Vec::new()).await.unwrap();
    assert_eq!(r.status, 400);
    // A truncated body names no field (it used to say "?").
    for body in [
        &br#"{"job_id":"t1","workflow":"#[..],
        br#"{"job_id":"t1""#,
        br#"{"job_id":"#,
        br#"{"job_id":"t1","workflow":{"id":"lm""#,
        br#"{"#,
    ] {
        let r = c.post("/job/accept", body.to_vec()).await.unwrap();
        assert_eq!(r.status, 400);
        let v = r.json::<Value>().unwrap();
        assert!(
            !v["field"].as_str().unwrap_or("").contains('?'),
            "{}: {v}",
            String::from_utf8_lossy(body)
        );
    }

    // 413: over max_body_bytes (4096).
    let mut big = job("b4");
    big["pad"] = json!("x".repeat(5000));
    let (s, v, _) = post(&mut c, &big).await;
    assert_eq!(s, 413, "{v}");

    // 404: unknown workflow. 409: checksum. 409: class above the node's (S).
    let mut wf = job("b5");
    wf["workflow"]["id"] = json!("diffusion");
    let (s, v, _) = post(&mut c, &wf).await;
    assert_eq!((s, v["field"].as_str()), (404, Some("workflow.id")), "{v}");
    let mut sum = job("b6");
    sum["workflow"]["checksum"] = json!("22".repeat(32));
    let (s, v, _) = post(&mut c, &sum).await;
    assert_eq!(
        (s, v["field"].as_str()),
        (409, Some("workflow.checksum")),
        "{v}"
    );
    let mut m = job("b7");
    m["compute_class"] = json!("M");
    let (s, v, _) = post(&mut c, &m).await;
    assert_eq!(
        (s, v["field"].as_str()),
        (409, Some("compute_class")),
        "{v}"
    );
    assert!(v["error"].as_str().unwrap().contains("exceeds"), "{v}");
    // 400: a job id outside the grammar (it would name URL paths and files).
    for id in ["", "../x", "a b", "x/y", &"j".repeat(65)] {
        let (s, v, _) = post(&mut c, &job(id)).await;
        assert_eq!(
            (s, v["field"].as_str()),
            (400, Some("job_id")),
            "{id:?}: {v}"
        );
    }
    // 422: privacy flags the node cannot honour as given are refused, not ignored: an
    // enclave job without a sealed input, outputs to seal without a key to seal to, a
    // key without the flag.
    let key = "11".repeat(32);
    for (privacy, field) in [
        (json!({"enclave": true}), "privacy.enclave"),
        (json!({"redact_outputs": true}), "privacy.output_key"),
        (json!({"output_key": key}), "privacy.redact_outputs"),
    ] {
        let mut p = job("b9");
        p["privacy"] = privacy;
        let (s, v, _) = post(&mut c, &p).await;
        assert_eq!((s, v["field"].as_str()), (422, Some(field)), "{v}");
    }
    // Nothing was queued by any refusal.
    assert!(node.log.lock().unwrap().runs.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_is_429_with_retry_after() {
    let cfg = Cfg {
        queue: 2,
        ..Cfg::default()
    };
    // execd takes 3 s per job: the first job runs, the queue fills.
    let node = start_node(cfg, ComputeClass::S, Duration::from_secs(3)).await;
    let mut c = node.orchestrator().await;
    assert_eq!(post(&mut c, &job("q1")).await.0, 200);
    assert_eq!(post(&mut c, &job("q2")).await.0, 200);
    let (s, v, ra) = post(&mut c, &job("q3")).await;
    assert_eq!(s, 429, "{v}");
    let secs: u64 = ra.expect("Retry-After").parse().unwrap();
    assert!(secs >= 1);
    // A duplicate of an accepted job still gets its ticket when the queue is full.
    let (s, v, _) = post(&mut c, &job("q1")).await;
    assert_eq!((s, v["ticket_id"].as_u64()), (200, Some(1)));
    // Once a 3 s job has finished, Retry-After is the backlog's drain time at the
    // measured rate: two jobs ahead at ~3 s each, not one second.
    wait_terminal(&mut c, 1).await;
    assert_eq!(post(&mut c, &job("q3")).await.0, 200);
    let (s, _, ra) = post(&mut c, &job("q4")).await;
    assert_eq!(s, 429);
    let secs: u64 = ra.expect("Retry-After").parse().unwrap();
    assert!(
        (5..=8).contains(&secs),
        "Retry-After {secs} for two 3 s jobs ahead"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_heartbeats_are_posted_over_mtls() {
    use http_body_util::BodyExt;
    // A small mTLS receiver (same CA) standing in for an orchestrator endpoint.
    let p = &pki().0;
    let cfg = havn_netd::tls::server_config(
        p.node.cert.as_bytes(),
        p.node.key.as_bytes(),
        p.ca.cert.as_bytes(),
    );
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg.unwrap()));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let b = req.into_body().collect().await?.to_bytes();
                            let _ = tx.send(b.to_vec());
                            Ok::<_, hyper::Error>(hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::new(),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    let cfg = Cfg {
        endpoints: vec![format!("https://127.0.0.1:{port}/heartbeat")],
        ..Cfg::default()
    };
    let _node = start_node(cfg, ComputeClass::S, Duration::ZERO).await;
    let body = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no heartbeat POST within 5 s")
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert!(v["heartbeat"]["seq"].as_u64().unwrap() >= 1, "{v}");
    assert_eq!(v["signature"].as_str().unwrap().len(), 128, "{v}");
}

/// A TPM that stops answering must not hang orchestrators: a quote request waits
/// `attestd_wait`, then gets 504 with Retry-After; requests behind the hung call get
/// the same; once attestd answers again, quotes work and each answer is the one for
/// its own request (the late answer to the hung call was not handed to the next).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_attestd_is_a_timely_504_and_the_channel_stays_in_step() {
    let opts = havn_netd::StartOptions {
        attestd_wait: Duration::from_millis(300),
        heartbeats: false,
        ..havn_netd::StartOptions::default()
    };
    let node = start_node_with(Cfg::default(), ComputeClass::S, Duration::ZERO, opts).await;
    let mut c = node.orchestrator().await;
    let t0 = std::time::Instant::now();
    let r = c
        .get(&format!("/attest/quote?nonce={}", HANG_NONCE.to_hex()))
        .await
        .unwrap();
    let waited = t0.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        r.text().contains("did not answer within 300 ms"),
        "{}",
        r.text()
    );
    assert!(
        waited < HANG_FOR - Duration::from_millis(500),
        "answered after {waited:?}, not after the 300 ms wait"
    );
    // Behind the hung call: also a timely 504, not a queue that grows.
    let ok_nonce = "ab".repeat(32);
    let r = c
        .get(&format!("/attest/quote?nonce={ok_nonce}"))
        .await
        .unwrap();
    assert_eq!(r.status, 504, "{}", r.text());
    // attestd answers again: the next quote is for the nonce it was asked for.
    tokio::time::sleep(HANG_FOR).await;
    let r = c
        .get(&format!("/attest/quote?nonce={ok_nonce}"))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let q: Value = r.json().unwrap();
    assert_eq!(q["nonce"], ok_nonce.as_str());
}

/// `GET /job/{t}?wait=S` answers when the job finishes, not after S seconds and not
/// at once; without a change it answers after S with the state then; bad waits are
/// 400 naming `wait`; an unknown ticket is 404 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_long_poll_answers_when_the_job_finishes() {
    let node = start_node(Cfg::default(), ComputeClass::S, Duration::from_millis(400)).await;
    let mut c = node.orchestrator().await;
    let (s, v, _) = post(&mut c, &job("lp-1")).await;
    assert_eq!(s, 200, "{v}");
    let t = v["ticket_id"].as_u64().unwrap();
    let t0 = std::time::Instant::now();
    let r = c.get(&format!("/job/{t}?wait=10")).await.unwrap();
    let took = t0.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    let st: Value = r.json().unwrap();
    assert_eq!(st["state"], "done", "{st}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "answered after {took:?}: should be when the 400 ms job finished"
    );
    // Already terminal: at once.
    let t0 = std::time::Instant::now();
    let r = c.get(&format!("/job/{t}?wait=10")).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(t0.elapsed() < Duration::from_secs(1));
    // A job that outlasts the wait (three 400 ms jobs ahead of it): its state
    // after ~1 s.
    let mut last = 0;
    for i in 2..=5 {
        let (_, v, _) = post(&mut c, &job(&format!("lp-{i}"))).await;
        last = v["ticket_id"].as_u64().unwrap();
    }
    let t0 = std::time::Instant::now();
    let st: Value = c
        .get(&format!("/job/{last}?wait=1"))
        .await
        .unwrap()
        .json()
        .unwrap();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "answered after {took:?}, before the 1 s wait was over"
    );
    assert!(
        st["state"] == "queued" || st["state"] == "running",
        "lp-5 waits for three 400 ms jobs: {st}"
    );
    for bad in ["0", "61", "x", ""] {
        let r = c.get(&format!("/job/{t}?wait={bad}")).await.unwrap();
        assert_eq!(r.status, 400, "wait={bad}");
        assert_eq!(r.json::<Value>().unwrap()["field"], "wait");
    }
    let t0 = std::time::Instant::now();
    assert_eq!(c.get("/job/99999?wait=10").await.unwrap().status, 404);
    assert!(t0.elapsed() < Duration::from_secs(1));
}

/// Writes `head` and then `body` over a raw mTLS stream, waits for the response, and
/// returns its status line and the time it took.
async fn raw_request(node: &Node, head: &str, body: &[u8]) -> (String, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = orchestrator()
        .connect_raw("127.0.0.1", node.running.local_addr.port())
        .await
        .unwrap();
    let t = std::time::Instant::now();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    s.flush().await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf))
        .await
        .expect("no response within 20 s")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    (
        text.lines().next().unwrap_or_default().to_string(),
        t.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_completes_gets_408_and_a_wrong_content_type_415() {
    let opts = havn_netd::StartOptions {
        body_deadline: Duration::from_millis(500),
        ..havn_netd::StartOptions::default()
    };
    let node = start_node_with(Cfg::default(), ComputeClass::M, Duration::ZERO, opts).await;
    // Content-Length 1000 with 10 bytes sent: answered at the deadline (0.5 s plus a
    // second per 64 KiB of the body limit), not held open.
    let head = "POST /job/accept HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
    let (status, took) = raw_request(&node, head, b"{\"job_id\":").await;
    assert!(status.contains(" 408 "), "{status}");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(10),
        "answered after {took:?}"
    );
    let body = serde_json::to_vec(&job("typed")).unwrap();
    let head = format!(
        "POST /job/accept HTTP/1.1\r\nHost: node\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (status, _) = raw_request(&node, &head, &body).await;
    assert!(status.contains(" 415 "), "{status}");
    // The same body as JSON (parameters allowed) is accepted.
    let head = head.replace("text/plain", "application/json; charset=utf-8");
    let (status, _) = raw_request(&node, &head, &body).await;
    assert!(status.contains(" 200 "), "{status}");
}

/// `/capabilities` and `/attest/audit` are what attestd already signed: a stalled TPM
/// (a quote hanging in attestd) does not delay them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_data_is_served_while_the_tpm_stalls() {
    let opts = havn_netd::StartOptions {
        attestd_wait: Duration::from_secs(5),
        heartbeats: false,
        ..havn_netd::StartOptions::default()
    };
    let node = start_node_with(Cfg::default(), ComputeClass::S, Duration::ZERO, opts).await;
    let mut c = node.orchestrator().await;
    for path in ["/capabilities", "/attest/audit"] {
        assert_eq!(c.get(path).await.unwrap().status, 200, "{path}");
    }
    let port = node.running.local_addr.port();
    let hang = tokio::spawn(async move {
        let mut v = orchestrator().connect("127.0.0.1", port).await.unwrap();
        v.get(&format!("/attest/quote?nonce={}", HANG_NONCE.to_hex()))
            .await
            .unwrap()
            .status
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    for path in ["/capabilities", "/attest/audit"] {
        let t = std::time::Instant::now();
        let r = c.get(path).await.unwrap();
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert!(
            t.elapsed() < Duration::from_millis(1000),
            "{path} waited {:?} behind the stalled TPM",
            t.elapsed()
        );
    }
    assert_eq!(hang.await.unwrap(), 200, "the slow quote still completes");
}
