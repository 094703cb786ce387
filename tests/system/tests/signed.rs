//! Records the node signs for validators beyond receipts, fetched from a real node:
//! the self-audit (proof-of-software: every running daemon still hashes to its boot
//! measurement) and the capability manifest attestd assembles from execd's report.
use crate::harness::*;
use havn_attest_agent::verify_node_signature;
use havn_proto::sign::{Domain, Signable};
use havn_proto::{Hash32, SignedCapabilityManifest, SignedSelfAudit};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

const NONCE: &str = "c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3c3";

/// `havnctl get PATH` as a validator, retried while the node answers an error (the
/// first self-audit runs a few seconds after the set starts).
fn get_json(node: &Node, path: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let o = node.ctl("validator", &["get", path]);
        if o.status.success() {
            return serde_json::from_slice(&o.stdout).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "GET {path}: {}\nlog:\n{}",
            stderr(&o),
            node.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn node_key(node: &Node) -> [u8; 32] {
    let h = get_json(node, "/health", Duration::from_secs(5));
    Hash32::from_hex(h["node"].as_str().unwrap()).unwrap().0
}

fn verifies<T: Signable>(key: &[u8; 32], domain: Domain, value: &T, sig: &[u8; 64]) -> bool {
    verify_node_signature(key, domain.tag(), &postcard::to_stdvec(value).unwrap(), sig)
}

fn sha256_file(p: &std::path::Path) -> Hash32 {
    Hash32(Sha256::digest(std::fs::read(p).unwrap()).into())
}

#[test]
fn self_audit_and_capability_manifest_are_signed_by_the_node_key() {
    if !need_root() {
        return;
    }
    let mut node = Node::prepare();
    node.start();
    let key = node_key(&node);

    // Self-audit: one entry per running daemon, the digest of the very file it runs.
    let j = get_json(&node, "/attest/audit", Duration::from_secs(30));
    let signed: SignedSelfAudit = serde_json::from_value(j).unwrap();
    let a = &signed.audit;
    assert_eq!(a.node.0 .0, key, "signed by this node's key");
    assert!(
        verifies(&key, Domain::SelfAudit, a, &signed.signature.0),
        "self-audit signature does not verify over the SelfAudit domain digest"
    );
    assert_eq!(
        a.signing_digest(),
        Domain::SelfAudit.digest_value(a).unwrap()
    );
    let names: Vec<&str> = a.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, DAEMONS, "{names:?}");
    for e in &a.entries {
        assert_eq!(e.pid as i32, node.daemon_pid(&e.name), "{}", e.name);
        assert_eq!(
            e.digest,
            sha256_file(&node.path(&format!("bin/{}", e.name))),
            "{}",
            e.name
        );
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        a.unix_ms <= now_ms && now_ms - a.unix_ms < 120_000,
        "{}",
        a.unix_ms
    );
    // The userland PCR it carries is the one a fresh quote shows (nothing was
    // measured since boot).
    let q = get_json(
        &node,
        &format!("/attest/quote?nonce={NONCE}"),
        Duration::from_secs(5),
    );
    let quote: havn_proto::QuoteEvidence = serde_json::from_value(q).unwrap();
    let quoted = quote
        .pcrs
        .iter()
        .find(|p| p.index == 14)
        .expect("PCR 14 quoted");
    assert_eq!(a.userland_pcr, *quoted);
    // Negative: one altered digest (or another domain) does not verify.
    let mut forged = a.clone();
    forged.entries[2].digest = Hash32([0x66; 32]);
    assert!(!verifies(
        &key,
        Domain::SelfAudit,
        &forged,
        &signed.signature.0
    ));
    assert!(!verifies(&key, Domain::Heartbeat, a, &signed.signature.0));

    // Capability manifest: assembled and signed by attestd, relayed by netd.
    let j = get_json(&node, "/capabilities", Duration::from_secs(10));
    let caps: SignedCapabilityManifest = serde_json::from_value(j).unwrap();
    let m = &caps.manifest;
    assert_eq!(m.node.0 .0, key);
    assert!(
        verifies(&key, Domain::Capabilities, m, &caps.signature.0),
        "capability manifest signature does not verify"
    );
    assert_ne!(m.chain_account, [0; 20], "the sealed chain key's account");
    let health = get_json(&node, "/health", Duration::from_secs(5));
    assert_eq!(
        serde_json::to_value(m.compute_class).unwrap(),
        health["compute_class"]
    );
    for wf in ["lm", "audio"] {
        let w = m
            .workflows
            .iter()
            .find(|w| w.id == wf)
            .unwrap_or_else(|| panic!("{wf} not in the manifest"));
        assert_eq!(w.checksum.to_hex(), workflow_checksum(wf));
    }
    let mut inflated = m.clone();
    inflated.chain_account[0] ^= 1;
    assert!(!verifies(
        &key,
        Domain::Capabilities,
        &inflated,
        &caps.signature.0
    ));

    // The validator CLI checks both against a verified quote from the same node (and
    // the golden manifest), and refuses altered copies.
    node.fetch_quote(NONCE, "evidence");
    for (path, file, kind) in [
        ("/attest/audit", "audit.json", "self-audit"),
        ("/capabilities", "caps.json", "capability manifest"),
    ] {
        let out = node.p(file);
        let o = node.ctl("validator", &["get", path, "--out", &out]);
        assert!(o.status.success(), "{}", stderr(&o));
        let ok = node.verify(
            "verify-signed",
            &out,
            &[
                "--golden",
                &node.p("golden.json"),
                "--ca",
                &node.p("vendor-ca.pem"),
            ],
        );
        assert!(ok.status.success(), "{kind} rejected: {}", stderr(&ok));
        assert!(
            String::from_utf8_lossy(&ok.stdout).starts_with(&format!("VALID {kind}")),
            "{}",
            stderr(&ok)
        );
        let mut v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
        match kind {
            "self-audit" => v["audit"]["unix_ms"] = Value::from(1u64),
            _ => v["manifest"]["cpu_cores"] = Value::from(9_999u64),
        }
        let bad_path = node.p(&format!("tampered-{file}"));
        std::fs::write(&bad_path, serde_json::to_vec(&v).unwrap()).unwrap();
        let bad = node.verify("verify-signed", &bad_path, &[]);
        assert!(!bad.status.success(), "altered {kind} accepted");
        assert!(stderr(&bad).contains("signature"), "{}", stderr(&bad));
    }
    node.stop();
}
