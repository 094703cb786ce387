//! Standard gossipsub: an independent implementation (js-libp2p with
//! @libp2p/gossipsub, `tests/interop/sub.mjs`, installed by `scripts/setup`) joins a
//! Havn node over TCP + noise + yamux, subscribes to `/havn/1/receipt/S` and reads the
//! receipts it publishes, byte for byte.

use havn_mesh::fixtures::{bytes, key, now_ms, receipt};
use havn_mesh::{MeshParams, MeshState};
use havn_netd::gossip::{GossipConfig, GossipHandle};
use havn_proto::mesh::Topic;
use havn_proto::ComputeClass::S;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_independent_gossipsub_implementation_reads_our_receipts() {
    let dir = interop_dir();
    if !havn_testkit::require_tool("node", "the js-libp2p interop peer runs on Node.js") {
        return;
    }
    if !dir.join("node_modules/@libp2p/gossipsub").exists() {
        let why =
            "js-libp2p is not installed (scripts/setup runs npm ci in userland/netd/tests/interop)";
        assert!(std::env::var_os("CI").is_none(), "{why}");
        havn_testkit::note_skip(why);
        return;
    }
    let _one = havn_netd::gossip::testnet::ONE_MESH.lock().await;
    let cfg = GossipConfig::loopback(vec![Topic::Receipt(S), Topic::Manifest]);
    let identity = libp2p::identity::Keypair::generate_ed25519();
    let state = MeshState::new(MeshParams::default(), havn_attest::Policy::default());
    let g = GossipHandle::start(cfg, identity, state).await.unwrap();
    let addr = format!("{}/p2p/{}", g.listening[0], g.peer_id);
    let mut child = Command::new("node")
        .arg(dir.join("sub.mjs"))
        .arg(&addr)
        .arg(Topic::Receipt(S).name())
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start node");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let k = key(3);
    let mut sent = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        assert!(
            Instant::now() < deadline,
            "the js-libp2p peer read nothing in 60 s"
        );
        let b = bytes(&receipt(
            &k,
            &format!("interop-{}", sent.len()),
            S,
            now_ms(),
            1,
        ));
        if g.publish(Topic::Receipt(S), b.clone()).await.is_ok() {
            sent.push(hex::encode(&b));
        }
        match tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
            Ok(Some(line)) if line.starts_with("MESSAGE ") => break line[8..].to_string(),
            Ok(Some(line)) if line == "TIMEOUT" => panic!("the js-libp2p peer timed out"),
            Ok(Some(line)) => eprintln!("js: {line}"),
            Ok(None) => panic!("the js-libp2p peer exited"),
            Err(_) => {}
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        sent.contains(&got),
        "js read bytes we never published: {got}"
    );
}
