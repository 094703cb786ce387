//! Client roles from the certificate's identity (`[netd.roles]`): who may submit,
//! and whose jobs, receipts, outputs and metrics a client may read.

use crate::common::*;
use havn_proto::ComputeClass;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_reads_only_what_its_role_allows() {
    // "operator" is configured as a second orchestrator (and not an operator), so one
    // dev PKI gives two orchestrators, a validator, and the node's own certificate.
    let cfg = Cfg {
        roles: Some(
            "orchestrators = [\"orchestrator\", \"operator\"]\nvalidators = [\"validator\"]\noperators = []"
                .into(),
        ),
        ..Cfg::default()
    };
    let node = start_node(cfg, ComputeClass::M, Duration::ZERO).await;
    let port = node.running.local_addr.port();
    let mut alice = orchestrator().connect("127.0.0.1", port).await.unwrap();
    let mut bob = operator().connect("127.0.0.1", port).await.unwrap();
    let mut val = validator().connect("127.0.0.1", port).await.unwrap();
    let mut own = client_as(&pki().0.node)
        .connect("127.0.0.1", port)
        .await
        .unwrap();

    let body = serde_json::to_vec(&job("alice-1")).unwrap();
    let r = alice.post("/job/accept", body.clone()).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let ticket = r.json::<serde_json::Value>().unwrap()["ticket_id"]
        .as_u64()
        .unwrap();
    let st = wait_terminal(&mut alice, ticket).await;
    assert_eq!(st["state"], "done", "{st}");
    let receipt: havn_proto::SignedReceipt =
        alice.get("/receipt/alice-1").await.unwrap().json().unwrap();
    let outputs = format!("/artifact/{}", receipt.receipt.outputs_cid);

    // Bob, another orchestrator: not Alice's job, receipt or outputs.
    for path in [
        format!("/job/{ticket}"),
        "/receipt/alice-1?submitter=orchestrator".into(),
        outputs.clone(),
    ] {
        let r = bob.get(&path).await.unwrap();
        assert_eq!(r.status, 403, "bob {path}: {}", r.text());
        let e: serde_json::Value = r.json().unwrap();
        assert!(
            e["error"].as_str().unwrap().contains("\"operator\""),
            "the refusal names the client: {e}"
        );
    }
    // Job ids are scoped per submitter: "alice-1" from Bob names Bob's job (none yet),
    // and Bob may use the id for his own job without touching Alice's.
    assert_eq!(bob.get("/receipt/alice-1").await.unwrap().status, 404);
    let r = bob.post("/job/accept", body.clone()).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let bobs = r.json::<serde_json::Value>().unwrap()["ticket_id"]
        .as_u64()
        .unwrap();
    assert_ne!(bobs, ticket);
    assert_eq!(wait_terminal(&mut bob, bobs).await["state"], "done");
    let his: havn_proto::SignedReceipt = bob.get("/receipt/alice-1").await.unwrap().json().unwrap();
    assert_eq!(his.receipt.submitter.as_str(), "operator");
    let hers: havn_proto::SignedReceipt =
        alice.get("/receipt/alice-1").await.unwrap().json().unwrap();
    assert_eq!(hers, receipt, "Alice's receipt is untouched");
    // The validator reads everything but may not submit; with two submitters of one
    // id it names whose.
    let r = val.get("/receipt/alice-1").await.unwrap();
    assert_eq!(r.status, 409, "{}", r.text());
    let v: havn_proto::SignedReceipt = val
        .get("/receipt/alice-1?submitter=orchestrator")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v, receipt);
    // The parameter is percent-decoded ("%65" is "e"); a bad escape is named.
    let r = val
        .get("/receipt/alice-1?submitter=orch%65strator")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = val.get("/receipt/alice-1?submitter=%zz").await.unwrap();
    assert_eq!(
        (
            r.status,
            r.json::<serde_json::Value>().unwrap()["field"].clone()
        ),
        (400, "submitter".into())
    );
    // (The stand-in execd stores no outputs file: an allowed read of it is a 404.)
    for path in [format!("/job/{ticket}"), outputs.clone()] {
        let s = val.get(&path).await.unwrap().status;
        assert!(
            s == 200 || (s == 404 && path == outputs),
            "validator {path}: {s}"
        );
    }
    assert_eq!(val.post("/job/accept", body).await.unwrap().status, 403);
    // Alice reads her own outputs; nobody here is an operator, so no metrics.
    assert_eq!(
        alice.get(&outputs).await.unwrap().status,
        404,
        "allowed (no file)"
    );
    for c in [&mut alice, &mut bob, &mut val] {
        assert_eq!(c.get("/metrics").await.unwrap().status, 403);
    }
    // The node's own certificate (it has clientAuth, for heartbeats) holds no role.
    assert_eq!(own.get("/receipt/alice-1").await.unwrap().status, 403);
    assert_eq!(
        own.post("/job/accept", serde_json::to_vec(&job("x")).unwrap())
            .await
            .unwrap()
            .status,
        403
    );
    // Public attestation data is for any client of the CA.
    assert_eq!(own.get("/health").await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_submitter_and_the_job_totals_survive_a_restart() {
    use havn_netd::wal;
    let roles = "orchestrators = [\"orchestrator\", \"operator\"]\noperators = []";
    let cfg = || Cfg {
        roles: Some(roles.into()),
        ..Cfg::default()
    };
    let node = start_node(cfg(), ComputeClass::M, Duration::ZERO).await;
    let state = node.state_dir.clone();
    let mut alice = node.orchestrator().await;
    let r = alice
        .post("/job/accept", serde_json::to_vec(&job("owned-1")).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let t = r.json::<serde_json::Value>().unwrap()["ticket_id"]
        .as_u64()
        .unwrap();
    wait_terminal(&mut alice, t).await;
    drop(alice);
    drop(node);
    let rep = wal::replay(&state.join("netd").join(wal::WAL_FILE)).unwrap();
    let rep_state = state.clone();
    assert_eq!(rep.snapshot.jobs[&t].owner.as_deref(), Some("orchestrator"));
    // A restarted netd on the same log still knows whose job it is.
    let again = start_node(
        Cfg {
            state_dir: Some(state),
            ..cfg()
        },
        ComputeClass::M,
        Duration::ZERO,
    )
    .await;
    let port = again.running.local_addr.port();
    let mut alice = orchestrator().connect("127.0.0.1", port).await.unwrap();
    let mut bob = operator().connect("127.0.0.1", port).await.unwrap();
    assert_eq!(alice.get("/receipt/owned-1").await.unwrap().status, 200);
    assert_eq!(
        bob.get("/receipt/owned-1?submitter=orchestrator")
            .await
            .unwrap()
            .status,
        403
    );
    // (Bob's own "owned-1" does not exist: the id is scoped per submitter.)
    assert_eq!(bob.get("/receipt/owned-1").await.unwrap().status, 404);
    // The job totals the log can rebuild survive the restart (metrics are for operators).
    drop(again);
    let state = rep_state;
    let third = start_node(
        Cfg {
            state_dir: Some(state),
            ..Cfg::default()
        },
        ComputeClass::M,
        Duration::ZERO,
    )
    .await;
    let m = third.operator_metrics().await;
    for needle in [
        "havn_netd_jobs_accepted_total 1",
        "havn_netd_jobs_completed_total 1",
    ] {
        assert!(m.contains(needle), "missing {needle} after a restart:\n{m}");
    }
}
