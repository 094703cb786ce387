//! Receipts published anywhere in a 20-node mesh reach every other node, validated.

use havn_mesh::fixtures::{bytes, now_ms, receipt};
use havn_netd::gossip::testnet::{collect, publish, start};
use havn_netd::gossip::Delivered;
use havn_proto::mesh::Topic;
use havn_proto::sign::Signable;
use havn_proto::ComputeClass::S;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_reach_all_20_nodes_validated() {
    let _one = havn_netd::gossip::testnet::ONE_MESH.lock().await;
    const N: usize = 20;
    const PER_NODE: usize = 3;
    let mut mesh = start(N, true).await;
    let mut sent_at = HashMap::new();
    for (i, m) in mesh.iter().enumerate() {
        for j in 0..PER_NODE {
            let r = receipt(&m.key, &format!("n{i}-j{j}"), S, now_ms(), 1);
            sent_at.insert(r.receipt.signing_digest(), Instant::now());
            publish(&m.gossip, Topic::Receipt(S), bytes(&r)).await;
        }
    }
    let mut latencies = Vec::new();
    for (i, m) in mesh.iter_mut().enumerate() {
        let want = (N - 1) * PER_NODE;
        let got = collect(m, want, Duration::from_secs(30), |d| {
            matches!(d, Delivered::Receipt(..))
        })
        .await;
        let mut digests = HashSet::new();
        for d in &got {
            match d {
                Delivered::Receipt(v, at) => {
                    digests.insert(v.digest());
                    latencies.push(at.duration_since(sent_at[&v.digest()]));
                }
                Delivered::Rejected {
                    rejection, topic, ..
                } if topic.starts_with("/havn/1/receipt/") => {
                    panic!("node {i} rejected an honest receipt: {rejection}")
                }
                _ => {}
            }
        }
        assert_eq!(
            digests.len(),
            want,
            "node {i} got {} of {want} receipts",
            digests.len()
        );
    }
    latencies.sort();
    let p = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    eprintln!(
        "{N} nodes, {} deliveries: p50 {:?}, p99 {:?}",
        latencies.len(),
        p(0.5),
        p(0.99)
    );
}
