//! GET /job/{job_id}/proof/{node_id}: relayed to execd over the channel the dispatcher
//! uses (a proof request waits for the running job, no deadlock), the artifacts are
//! served content addressed, and errors are JSON with the right status.

use crate::common::*;
use havn_netd::client::{fetch_artifact, fetch_challenge, ClientError};
use havn_proto::{ComputeClass, SignedReceipt};
use serde_json::Value;
use std::time::Duration;

async fn submit(c: &mut havn_netd::client::Conn, id: &str) -> u64 {
    let r = c
        .post("/job/accept", serde_json::to_vec(&job(id)).unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json::<Value>().unwrap()["ticket_id"].as_u64().unwrap()
}

async fn get(node: &Node, path: &str) -> (u16, Value) {
    let mut conn = validator()
        .connect("127.0.0.1", node.running.local_addr.port())
        .await
        .unwrap();
    let r = conn.get(path).await.unwrap();
    (r.status, r.json::<Value>().unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proof_route_serves_challenge_material() {
    let node = start_node(Cfg::default(), ComputeClass::M, Duration::from_millis(300)).await;
    let mut c = node.orchestrator().await;
    let t = submit(&mut c, "p1").await;
    assert_eq!(wait_terminal(&mut c, t).await["state"], "done");
    let receipt: SignedReceipt = c.get("/receipt/p1").await.unwrap().json().unwrap();

    // p2 keeps execd busy for 300 ms: the proof request queues behind it on the
    // shared channel and is answered once p2's Run returns.
    let t2 = submit(&mut c, "p2").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut v = node.orchestrator().await;
    let node_id = PROVABLE_NODES[1];
    let ch = fetch_challenge(&mut v, "p1", node_id, Some("orchestrator"))
        .await
        .unwrap();
    assert_eq!(ch.body.runtime_hash, receipt.receipt.runtime_hash);
    let (proof, inputs) = proof_bytes("p1", node_id);
    assert_eq!((&ch.proof[..], &ch.inputs[..]), (&proof[..], &inputs[..]));
    assert_eq!(wait_terminal(&mut c, t2).await["state"], "done");
    {
        let log = node.log.lock().unwrap();
        let p2_run = log.runs.iter().find(|(j, _)| j == "p2").unwrap().1;
        let prove = log.proves.last().unwrap();
        assert_eq!((prove.0.as_str(), prove.1.as_str()), ("p1", node_id));
        assert!(
            prove.2 >= p2_run,
            "the proof went through the same channel after p2"
        );
    }

    // Errors (as a validator): unknown job / node (404), bad ids (400), wrong method
    // (405). An orchestrator names only its own jobs: an unknown one is 404 too.
    let (s, b) = get(&node, "/job/nope/proof/n1").await;
    assert_eq!((s, b["field"].as_str()), (404, Some("job_id")), "{b}");
    assert_eq!(v.get("/job/nope/proof/n1").await.unwrap().status, 404);
    let (s, b) = get(&node, "/job/p1/proof/nosuch").await;
    assert_eq!((s, b["field"].as_str()), (404, Some("node_id")), "{b}");
    let (s, b) = get(&node, "/job/p1/proof/bad%2Fid").await;
    assert_eq!((s, b["field"].as_str()), (400, Some("node_id")), "{b}");
    let (s, b) = get(&node, &format!("/job/{}/proof/n1", "j".repeat(65))).await;
    assert_eq!((s, b["field"].as_str()), (400, Some("job_id")), "{b}");
    let r = v.post("/job/p1/proof/n1", b"{}".to_vec()).await.unwrap();
    assert_eq!(r.status, 405);
    assert!(matches!(
        fetch_challenge(&mut v, "p1", "nosuch", None).await,
        Err(ClientError::Status { status: 404, .. })
    ));
    assert!(matches!(
        fetch_challenge(&mut v, "p1", "a/b", None).await,
        Err(ClientError::Invalid(_))
    ));

    // A stored artifact that no longer matches its CID is never served.
    let path = node
        .state_dir
        .join("artifacts")
        .join(ch.body.inputs_cid.to_string());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        fetch_artifact(&mut v, &ch.body.inputs_cid).await,
        Err(ClientError::Status { status: 500, .. })
    ));
}
