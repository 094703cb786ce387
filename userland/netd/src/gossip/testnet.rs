//! A mesh of gossip nodes in one process (feature `fixtures`, for tests and the mesh
//! bench): each node has its own libp2p identity, node key and manifest (with a quote
//! from a software AK), and learns the others' manifests through gossip itself.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use super::{Delivered, GossipConfig, GossipHandle};
use havn_mesh::fixtures::{bytes, key, manifest_for_peer, now_ms, Key};
use havn_mesh::{MeshParams, MeshState};
use havn_proto::mesh::{Role, Topic};
use havn_proto::ComputeClass;
use libp2p::identity::Keypair;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One mesh at a time: two 20-swarm meshes on a 2-core machine measure the machine.
pub static ONE_MESH: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Member {
    pub key: Key,
    pub gossip: GossipHandle,
}

pub fn topics() -> Vec<Topic> {
    vec![
        Topic::Receipt(ComputeClass::S),
        Topic::Verdict(ComputeClass::S),
        Topic::Challenge,
        Topic::Heartbeat,
        Topic::Manifest,
    ]
}

/// Starts `n` execution nodes; see [`start_with`].
pub async fn start(n: usize, validate: bool) -> Vec<Member> {
    start_with(n, validate, |_| (Role::Execution, 0)).await
}

/// Starts `n` nodes, node i with the role and weight `role(i)`; node i dials node i-1
/// and one other earlier node, so the graph is connected without a hub. Returns once
/// every node knows every manifest.
pub async fn start_with(
    n: usize,
    validate: bool,
    role: impl Fn(usize) -> (Role, u64),
) -> Vec<Member> {
    let mut members: Vec<Member> = Vec::new();
    for i in 0..n {
        let k = key(u8::try_from(i + 1).unwrap());
        let identity = Keypair::generate_ed25519();
        let peer = identity.public().to_peer_id().to_bytes();
        let signer = key(u8::try_from(i + 1).unwrap());
        let (r, weight) = role(i);
        let mut cfg = GossipConfig::loopback(topics());
        cfg.validate = validate;
        // As attestd does: a freshly signed manifest (new time, new quote) each time.
        cfg.manifest = Some(Arc::new(move || {
            let m = manifest_for_peer(&signer, &peer, r, ComputeClass::S, weight, now_ms());
            Some(bytes(&m))
        }));
        cfg.manifest_every = Duration::from_secs(10);
        if i > 0 {
            cfg.bootstrap
                .push(members[i - 1].gossip.listening[0].clone());
        }
        if i > 2 {
            let j = (i * 7 + 3) % (i - 1);
            cfg.bootstrap.push(members[j].gossip.listening[0].clone());
        }
        let state = MeshState::new(MeshParams::default(), havn_attest::Policy::default());
        let gossip = GossipHandle::start(cfg, identity, state)
            .await
            .expect("gossip node starts");
        members.push(Member { key: k, gossip });
    }
    if validate {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut known = Vec::new();
            for m in &members {
                known.push(m.gossip.with_state(|s| s.nodes().count()).await.unwrap());
            }
            if known.iter().all(|k| *k == n) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "manifests did not reach every node in 60 s: known counts {known:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    } else {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    // Let the receipt topic's mesh settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Manifests delivered so far are not what the tests count.
    for m in &mut members {
        while m.gossip.delivered.try_recv().is_ok() {}
    }
    members
}

/// Publishes, retrying while the topic has no peers yet.
pub async fn publish(g: &GossipHandle, topic: Topic, b: Vec<u8>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match g.publish(topic, b.clone()).await {
            Ok(()) => return,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("publish failed: {e}"),
        }
    }
}

/// Drains deliveries until `want` receipts that `counts` arrived (or `within`
/// passed), then whatever else arrives in the next second (rejections).
pub async fn collect(
    m: &mut Member,
    want: usize,
    within: Duration,
    counts: impl Fn(&Delivered) -> bool,
) -> Vec<Delivered> {
    let deadline = tokio::time::Instant::now() + within;
    let mut out = Vec::new();
    let mut n = 0;
    while n < want {
        match tokio::time::timeout_at(deadline, m.gossip.delivered.recv()).await {
            Ok(Some(d)) => {
                n += usize::from(counts(&d));
                out.push(d);
            }
            _ => break,
        }
    }
    let settle = tokio::time::Instant::now() + Duration::from_secs(1);
    while let Ok(Some(d)) = tokio::time::timeout_at(settle, m.gossip.delivered.recv()).await {
        out.push(d);
    }
    out
}

/// Resident set size of this process, in KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}
