//! Two real nodes (havn-init, the three daemons, each its own swtpm) joined by gossip
//! on loopback: the execution node's receipt, signed by its attestd, reaches the
//! validator's netd through libp2p and passes validation there (its manifest's swtpm
//! quote included); `havnctl mesh status` and the metrics show it.
use crate::harness::{free_port, need_root, Node};
use havn_system_tests::mesh_demo::{configure, status};
use serde_json::Value;
use std::time::{Duration, Instant};

#[test]
fn a_receipt_gossips_from_an_execution_node_to_a_validator() {
    if !need_root() {
        return;
    }
    let (pv, pe) = (free_port(), free_port());
    let mut validator = Node::prepare();
    configure(&validator, "validator", pv, &[], 60_000, false);
    validator.start();
    let mut exec = Node::prepare();
    configure(&exec, "execution", pe, &[pv], 60_000, false);
    exec.start();

    // Both know both manifests (each verified the other's swtpm quote).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (v, e) = (status(&validator), status(&exec));
        let known = |s: &Option<Value>| {
            s.as_ref()
                .and_then(|s| s["known_nodes"].as_u64())
                .unwrap_or(0)
        };
        if known(&v) == 2 && known(&e) == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "manifests not exchanged in 60 s: validator {v:?}, execution {e:?}\nvalidator log:\n{}\nexecution log:\n{}",
            validator.log(),
            exec.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let (_, receipt) = exec.submit("lm", 7, "mesh-job-1");
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        let v = status(&validator).expect("validator mesh status");
        if v["receipts_verified"].as_u64().unwrap_or(0) >= 1 {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "the receipt did not reach the validator in 60 s: {v}\nexecution log:\n{}",
            exec.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(seen["class"], "S");
    assert!(
        seen["peers"].as_array().is_some_and(|p| !p.is_empty()),
        "{seen}"
    );
    assert_eq!(receipt["receipt"]["job_id"], "mesh-job-1");

    // The execution node counts what it published; the validator, what it verified.
    let m = exec.ctl("operator", &["get", "/metrics"]);
    let text = String::from_utf8_lossy(&m.stdout);
    let published = text
        .lines()
        .find_map(|l| l.strip_prefix("havn_gossip_published_total "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(published >= 1, "metrics:\n{text}");
    // An orchestrator may not read the mesh status.
    let o = exec.ctl("orchestrator", &["mesh", "status"]);
    assert!(!o.status.success());
}

/// The demo-mesh flow, headless: 3 validators, 3 execution nodes (one cheating), real
/// processes; the cheater is caught with slashing evidence, every honest receipt is in
/// a certified settlement, and `havnctl verify-settlement` accepts each certificate and
/// refuses it with a signature removed.
#[test]
fn the_mesh_catches_the_cheater_and_settles_every_honest_receipt() {
    if !need_root() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let opts = havn_system_tests::mesh_demo::Options {
        out: out.path().to_path_buf(),
        jobs: 3,
        ..Default::default()
    };
    let o = havn_system_tests::mesh_demo::run(&opts);
    assert!(
        o.passed,
        "{:?}\nsummary: {}",
        o.problems,
        serde_json::to_string_pretty(&o.summary).unwrap()
    );
    let cheater = o.summary["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"].as_str().unwrap().ends_with("cheater"))
        .unwrap();
    assert_eq!(cheater["caught"], true);
    assert!(cheater["evidence"]["upheld_by"].as_u64().unwrap() >= 2);
    assert!(out.path().join("mesh-summary.json").exists());
}
