//! Gossip benchmark: receipt propagation through an in-process libp2p mesh with
//! havn-mesh validation, beside the same mesh with no validation in the same run;
//! and receipt-to-settlement latency (three validators build, sign and gossip votes
//! until each holds a quorum certificate).
//!
//! Usage: havn-mesh-bench [--nodes 20,50] [--receipts N]
//! Prints `BENCH name value unit baseline ratio` lines for scripts/bench.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use clap::Parser;
use havn_mesh::fixtures::{bytes, now_ms, receipt, sign};
use havn_mesh::settle::{self, Quorum};
use havn_netd::gossip::testnet::{publish, start_with, Member};
use havn_netd::gossip::Delivered;
use havn_proto::mesh::{Role, SettlementVote, Topic, VerdictMessage};
use havn_proto::sign::Signable;
use havn_proto::ComputeClass::S;
use havn_proto::Hash32;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(about = "Receipt gossip and settlement latency, validated vs unvalidated mesh")]
struct Args {
    /// Mesh sizes to measure, comma separated.
    #[arg(long, default_value = "20,50", value_delimiter = ',')]
    nodes: Vec<usize>,
    /// Receipts each execution node publishes.
    #[arg(long, default_value_t = 4)]
    receipts: usize,
}

const VALIDATORS: usize = 3;

fn pct(v: &[Duration], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3
}

/// Publishes every execution node's receipts, paced, and gathers one latency per
/// (receipt, receiving node). Returns the latencies and the receipts' digests.
async fn propagate(mesh: &mut [Member], per_node: usize) -> (Vec<Duration>, Vec<Hash32>, Instant) {
    let mut sent: HashMap<Hash32, Instant> = HashMap::new();
    let mut wire: HashMap<Vec<u8>, Hash32> = HashMap::new();
    let mut last = Instant::now();
    for j in 0..per_node {
        for (i, m) in mesh.iter().enumerate().skip(VALIDATORS) {
            let r = receipt(&m.key, &format!("b{i}-{j}-{}", now_ms()), S, now_ms(), 1);
            let b = bytes(&r);
            let d = r.receipt.signing_digest();
            last = Instant::now();
            sent.insert(d, last);
            wire.insert(b.clone(), d);
            publish(&m.gossip, Topic::Receipt(S), b).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let total = sent.len();
    let mut lat = Vec::new();
    for (i, m) in mesh.iter_mut().enumerate() {
        let own = if i >= VALIDATORS { per_node } else { 0 };
        let want = total - own;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut got = 0;
        while got < want {
            match tokio::time::timeout_at(deadline, m.gossip.delivered.recv()).await {
                Ok(Some(Delivered::Receipt(v, at))) => {
                    if let Some(t) = sent.get(&v.digest()) {
                        lat.push(at.duration_since(*t));
                        got += 1;
                    }
                }
                Ok(Some(Delivered::Unvalidated(_, b, at))) => {
                    if let Some(t) = wire.get(&b).and_then(|d| sent.get(d)) {
                        lat.push(at.duration_since(*t));
                        got += 1;
                    }
                }
                Ok(Some(_)) => {}
                _ => {
                    eprintln!("node {i}: {got} of {want} receipts within 60 s");
                    break;
                }
            }
        }
    }
    lat.sort();
    (lat, sent.keys().copied().collect(), last)
}

/// The validators build the settlement, vote over gossip, and each collects votes
/// until it holds a certificate. Returns the time from `since` to the last certificate.
async fn settle_epoch(
    mesh: &mut [Member],
    receipts: &[Hash32],
    since: Instant,
) -> Option<Duration> {
    let committee = mesh[0].gossip.with_state(|s| s.committee(S)).await.ok()?;
    let epoch = now_ms() / havn_mesh::MeshParams::default().epoch_ms;
    let (settlement, _) = settle::build(S, epoch, receipts, &BTreeMap::new(), &committee);
    let mut quorums = Vec::new();
    for v in mesh.iter().take(VALIDATORS) {
        let vote = SettlementVote {
            settlement: settlement.clone(),
            validator: v.key.id,
            signature: sign(&v.key, &settlement),
        };
        let mut q = Quorum::new(settlement.clone(), committee.clone()).ok()?;
        q.add(&settlement, &v.key.id, &vote.signature).ok()?;
        quorums.push(q);
        publish(
            &v.gossip,
            Topic::Verdict(S),
            bytes(&VerdictMessage::Vote(vote)),
        )
        .await;
    }
    let mut done = Instant::now();
    for (i, v) in mesh.iter_mut().take(VALIDATORS).enumerate() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while quorums[i].certificate().is_none() {
            match tokio::time::timeout_at(deadline, v.gossip.delivered.recv()).await {
                Ok(Some(Delivered::Verdict(m))) => {
                    if let VerdictMessage::Vote(vote) = m.get() {
                        let _ = quorums[i].add(&vote.settlement, &vote.validator, &vote.signature);
                        if quorums[i].certificate().is_some() {
                            done = done.max(Instant::now());
                        }
                    }
                }
                Ok(Some(_)) => {}
                _ => return None,
            }
        }
    }
    Some(done.duration_since(since))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    for &n in &args.nodes {
        let role = |i: usize| {
            if i < VALIDATORS {
                (Role::Validator, 1)
            } else {
                (Role::Execution, 0)
            }
        };
        // The baseline first: the same mesh and workload with validation off.
        let mut plain = start_with(n, false, role).await;
        let (base, _, _) = propagate(&mut plain, args.receipts).await;
        drop(plain);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut mesh = start_with(n, true, role).await;
        let (lat, digests, last) = propagate(&mut mesh, args.receipts).await;
        let settled = settle_epoch(&mut mesh, &digests, last).await;
        drop(mesh);
        let deliveries = (n - VALIDATORS) * args.receipts * (n - 1);
        eprintln!(
            "n={n}: validated {} deliveries (want about {deliveries}), unvalidated {}",
            lat.len(),
            base.len()
        );
        for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
            let (a, b) = (pct(&lat, q), pct(&base, q));
            println!(
                "BENCH gossip_receipt_{name}_n{n} {a:.1} ms {b:.1} {:.2}",
                a / b
            );
        }
        if let Some(s) = settled {
            let s = s.as_secs_f64() * 1e3;
            let b = pct(&lat, 0.99);
            println!(
                "BENCH receipt_to_settlement_n{n} {s:.1} ms {b:.1} {:.2}",
                s / b
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
