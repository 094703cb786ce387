//! Encrypted inputs at intake: netd reads only an envelope's header (never holds the
//! key), refuses one sealed to another node's (or boot's) key before queueing, and
//! takes a `privacy.enclave` job only with sealed inputs.

use crate::common::*;
use havn_proto::ComputeClass;
use serde_json::{json, Value};
use std::time::Duration;

async fn upload(c: &mut havn_netd::client::Conn, bytes: Vec<u8>) -> String {
    let r = c.post("/artifact", bytes).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json::<Value>().unwrap()["cid"]
        .as_str()
        .unwrap()
        .to_string()
}

fn with_input(id: &str, cid: &str, enclave: bool) -> Value {
    let mut j = job(id);
    j["inputs"] = json!([{"name": "inputs", "cid": cid, "location": "inline"}]);
    j["privacy"] = json!({"enclave": enclave});
    j
}

async fn post(c: &mut havn_netd::client::Conn, v: &Value) -> (u16, Value) {
    let r = c
        .post("/job/accept", serde_json::to_vec(v).unwrap())
        .await
        .unwrap();
    (r.status, r.json().unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_inputs_are_checked_at_intake_and_netd_keeps_only_ciphertext() {
    let node = start_node(Cfg::default(), ComputeClass::M, Duration::ZERO).await;
    let mut c = node.orchestrator().await;
    let secret = b"the-plaintext-marker-5e1f".to_vec();

    // Sealed to this node's payload key (as the quote binds it): accepted and run.
    let ours = havn_payload::seal(&payload_key().public(), &secret).unwrap();
    let cid = upload(&mut c, ours.clone()).await;
    let (s, v) = post(&mut c, &with_input("enc-1", &cid, true)).await;
    assert_eq!(s, 200, "{v}");
    let st = wait_terminal(&mut c, v["ticket_id"].as_u64().unwrap()).await;
    assert_eq!(st["state"], "done", "{st}");

    // Sealed to another key (another node's, or an earlier boot's): refused before
    // queueing, naming the input, with or without the enclave flag.
    let other = havn_payload::PayloadKey::generate();
    let theirs = havn_payload::seal(&other.public(), &secret).unwrap();
    let cid2 = upload(&mut c, theirs).await;
    for enclave in [true, false] {
        let (s, v) = post(&mut c, &with_input("enc-2", &cid2, enclave)).await;
        assert_eq!(
            (s, v["field"].as_str()),
            (422, Some("inputs[0].cid")),
            "{v}"
        );
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("not this node's current key"),
            "{v}"
        );
    }
    // The enclave flag with a plain input: refused, saying how to seal it.
    let plain = upload(&mut c, b"plain bytes".to_vec()).await;
    let (s, v) = post(&mut c, &with_input("enc-3", &plain, true)).await;
    assert_eq!(
        (s, v["field"].as_str()),
        (422, Some("inputs[0].cid")),
        "{v}"
    );
    assert!(v["error"].as_str().unwrap().contains("--encrypt"), "{v}");
    // A malformed envelope header: 400 naming the input.
    let mut bad = ours.clone();
    bad[9] = 0x77;
    let cid4 = upload(&mut c, bad).await;
    let (s, v) = post(&mut c, &with_input("enc-4", &cid4, true)).await;
    assert_eq!(
        (s, v["field"].as_str()),
        (400, Some("inputs[0].cid")),
        "{v}"
    );

    // Only enc-1 ran; netd's whole state holds no plaintext (the upload is the
    // envelope, byte for byte).
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(node.log.lock().unwrap().runs.len(), 1);
    assert_eq!(
        std::fs::read(node.state_dir.join("uploads").join(&cid)).unwrap(),
        ours
    );
    let hits = havn_testkit::files_containing(&node.state_dir, &secret, "");
    assert!(hits.is_empty(), "plaintext found in netd's state: {hits:?}");
}
