//! Encrypted job inputs on a real node: `havnctl submit --encrypt` verifies a fresh
//! quote (golden manifest and vendor CA), seals the chat request to the payload key the
//! quote binds, and the node answers it; netd's state, the uploads, execd's retained
//! jobs and checkpoints, and every daemon's log hold no plaintext. A tampered
//! envelope fails its job with "payload authentication failed"; one sealed to another
//! key is refused before queueing.

use crate::chat::{chat_node, store, submit_request};
use crate::harness::stderr;
use serde_json::Value;

const MARKER: &str = "zebra-quartz-7731";

#[test]
fn a_sealed_chat_request_is_answered_and_its_plaintext_stays_in_execds_memory() {
    if !crate::harness::need_root() {
        return;
    }
    let Some(store) = store() else { return };
    let mut node = chat_node(&store);
    let request = format!(
        r#"{{"messages":[{{"role":"user","content":"Reply with one word. The code is {MARKER}."}}],"max_tokens":6}}"#
    );
    let receipt = node.p("sealed.receipt.json");
    let o = submit_request(
        &node,
        "sealed.json",
        request.as_bytes(),
        "sealed-1",
        "120",
        &[
            "--encrypt",
            "--golden",
            &node.p("golden.json"),
            "--ek-ca",
            &node.p("vendor-ca.pem"),
            "--receipt-out",
            &receipt,
        ],
    );
    assert!(
        o.status.success(),
        "sealed chat job failed: {}\n{}",
        stderr(&o),
        node.log()
    );
    let err = stderr(&o);
    assert!(err.contains("quote verified"), "{err}");
    let uploaded = err
        .lines()
        .find_map(|l| l.split(" (sealed) as ").nth(1))
        .unwrap_or_else(|| panic!("no sealed upload in: {err}"))
        .trim()
        .to_string();
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&receipt).unwrap()).unwrap();
    // The receipt commits to the ciphertext the orchestrator uploaded, and verifies
    // against the node's quote like any other.
    assert_eq!(r["receipt"]["inputs_cid"], uploaded.as_str());
    node.fetch_quote(&"cd".repeat(32), "evidence");
    let v = node.verify("verify-receipt", &receipt, &[]);
    assert!(v.status.success(), "{}", stderr(&v));

    // No plaintext anywhere the node writes (outputs, the model's answer, are the
    // orchestrator's to protect with redact_outputs and are skipped), nor in the logs.
    let state = node.path("state");
    let hits = havn_testkit::files_containing(&state, MARKER.as_bytes(), "artifacts");
    assert!(hits.is_empty(), "plaintext on disk: {hits:?}");
    assert!(
        !node.log().contains(MARKER),
        "plaintext in the daemons' log"
    );

    // The payload key the quote binds, to seal test envelopes to.
    node.fetch_quote(&"ab".repeat(32), "ev-sealed");
    let ev: Value =
        serde_json::from_slice(&std::fs::read(node.path("ev-sealed/evidence.json")).unwrap())
            .unwrap();
    let mut pk = [0u8; 32];
    hex::decode_to_slice(ev["payload_pubkey"].as_str().unwrap(), &mut pk).unwrap();
    assert_ne!(pk, [0; 32]);

    // Private both ways: the request sealed to the node, the outputs sealed to us. The
    // node serves only the envelope the receipt names; opened with our key, it is
    // exactly what re-executing the request here gives.
    let okey = node.p("orchestrator-output.key");
    let opub = crate::harness::havnctl_ok(&["keygen", "--out", &okey]);
    let receipt2 = node.p("sealed2.receipt.json");
    let o = submit_request(
        &node,
        "sealed2.json",
        request.as_bytes(),
        "sealed-out",
        "120",
        &[
            "--encrypt",
            "--output-key",
            opub.trim(),
            "--seed",
            "5",
            "--receipt-out",
            &receipt2,
        ],
    );
    assert!(o.status.success(), "{}\n{}", stderr(&o), node.log());
    let r2: Value = serde_json::from_str(&std::fs::read_to_string(&receipt2).unwrap()).unwrap();
    let out_cid = r2["receipt"]["outputs_cid"].as_str().unwrap().to_string();
    let env_file = node.p("outputs.sealed");
    let g = node.ctl(
        "orchestrator",
        &["get", &format!("/artifact/{out_cid}"), "--out", &env_file],
    );
    assert!(g.status.success(), "{}", stderr(&g));
    let env = std::fs::read(&env_file).unwrap();
    assert!(
        havn_payload::is_envelope(&env),
        "the served outputs are sealed"
    );
    let plain = node.p("outputs.plain");
    let o = crate::harness::havnctl(&["open", &env_file, "--key", &okey, "--out", &plain]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(node.path("request.json"), request.as_bytes()).unwrap();
    let re: Value = serde_json::from_str(
        crate::harness::havnctl_ok(&[
            "run",
            "chat",
            "--store",
            &store,
            "--request",
            &node.p("request.json"),
            "--seed",
            "5",
            "--out",
            &node.p("reexec-sealed"),
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    assert_eq!(
        re["outputs_cid"].as_str().unwrap(),
        havn_proto::Cid::of_bytes(&std::fs::read(&plain).unwrap()).to_string(),
        "the opened outputs are what re-execution gives"
    );
    assert_eq!(re["runtime_hash"], r2["receipt"]["runtime_hash"]);
    let hits = havn_testkit::files_containing(&state, MARKER.as_bytes(), "artifacts");
    assert!(hits.is_empty(), "plaintext on disk: {hits:?}");

    // Tampered ciphertext: the job fails with the reason, nothing decrypted is kept.
    let mut env = havn_payload::seal(&pk, request.as_bytes()).unwrap();
    let last = env.len() - 1;
    env[last] ^= 1;
    let o = submit_request(&node, "tampered.env", &env, "sealed-2", "60", &[]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("payload authentication failed"),
        "{}",
        stderr(&o)
    );

    // Sealed to another key (another node's or an earlier boot's): refused at intake.
    let other = havn_payload::PayloadKey::generate();
    let env = havn_payload::seal(&other.public(), request.as_bytes()).unwrap();
    let o = submit_request(&node, "other.env", &env, "sealed-3", "60", &[]);
    assert!(
        !o.status.success()
            && stderr(&o).contains("422")
            && stderr(&o).contains("not this node's current key"),
        "{}",
        stderr(&o)
    );
    node.stop();
}
