//! A 20-node mesh where 4 peers (20 %) send forged, oversized, malformed, replayed
//! and equivocating receipts while the honest 16 publish theirs: no invalid message is
//! accepted (so none is forwarded), every valid receipt reaches every honest node, the
//! attackers end up graylisted by the honest peers they sent to, and memory stays
//! bounded.

use havn_mesh::fixtures::{bytes, now_ms, receipt, sign};
use havn_mesh::Rejection;
use havn_netd::gossip::testnet::{collect, publish, rss_kib, start};
use havn_netd::gossip::{Delivered, GRAYLIST_THRESHOLD};
use havn_proto::mesh::Topic;
use havn_proto::sign::Signable;
use havn_proto::ComputeClass::S;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byzantine_fifth_of_the_mesh_is_contained() {
    let _one = havn_netd::gossip::testnet::ONE_MESH.lock().await;
    const N: usize = 20;
    const BYZ: usize = 4;
    const HONEST_EACH: usize = 3;
    const ROUNDS: usize = 40;
    let mut mesh = start(N, true).await;
    let rss_before = rss_kib();
    let (attackers, honest) = mesh.split_at_mut(BYZ);
    let now = now_ms();
    let mut invalid = HashSet::new();
    let mut sent = 0usize;
    for (a, att) in attackers.iter().enumerate() {
        let victim = &honest[a].key;
        for r in 0..ROUNDS {
            // Forged: a result in an honest node's name, signed by the attacker.
            let mut forged = receipt(&att.key, &format!("forged-{a}-{r}"), S, now, 9);
            forged.receipt.node = victim.id;
            invalid.insert(forged.receipt.signing_digest());
            let _ = att
                .gossip
                .publish_unchecked(Topic::Receipt(S), bytes(&forged))
                .await;
            // Oversized and malformed.
            let _ = att
                .gossip
                .publish_unchecked(Topic::Receipt(S), vec![r as u8; 1400])
                .await;
            let _ = att
                .gossip
                .publish_unchecked(Topic::Receipt(S), vec![0xff, r as u8, 7])
                .await;
            // Replayed from an old epoch (a valid signature, outside the window).
            let old = receipt(&att.key, &format!("old-{a}-{r}"), S, now - 3_600_000, 1);
            invalid.insert(old.receipt.signing_digest());
            let _ = att
                .gossip
                .publish_unchecked(Topic::Receipt(S), bytes(&old))
                .await;
            // Equivocating: the attacker's own key, two results for one job.
            let one = receipt(&att.key, &format!("eq-{a}-{r}"), S, now, 1);
            let two = receipt(&att.key, &format!("eq-{a}-{r}"), S, now, 2);
            let _ = att
                .gossip
                .publish_unchecked(Topic::Receipt(S), bytes(&one))
                .await;
            let _ = att
                .gossip
                .publish_unchecked(Topic::Receipt(S), bytes(&two))
                .await;
            sent += 6;
        }
        // A forged signature over a valid-looking body.
        let mut bent = receipt(&att.key, &format!("bent-{a}"), S, now, 1);
        bent.signature = sign(victim, &bent.receipt);
        invalid.insert(bent.receipt.signing_digest());
        let _ = att
            .gossip
            .publish_unchecked(Topic::Receipt(S), bytes(&bent))
            .await;
    }
    let mut valid = HashSet::new();
    for (i, h) in honest.iter().enumerate() {
        for j in 0..HONEST_EACH {
            let r = receipt(&h.key, &format!("honest-{i}-{j}"), S, now_ms(), 1);
            valid.insert(r.receipt.signing_digest());
            publish(&h.gossip, Topic::Receipt(S), bytes(&r)).await;
        }
    }
    let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut equivocations = 0;
    for (i, h) in honest.iter_mut().enumerate() {
        let want = (N - BYZ - 1) * HONEST_EACH;
        let got = collect(
            h,
            want,
            Duration::from_secs(30),
            |d| matches!(d, Delivered::Receipt(v, _) if valid.contains(&v.digest())),
        )
        .await;
        let mut honest_seen = HashSet::new();
        for d in &got {
            match d {
                Delivered::Receipt(v, _) => {
                    assert!(
                        !invalid.contains(&v.digest()),
                        "honest node {i} accepted an invalid receipt {:?}",
                        v.get().receipt.job_id
                    );
                    if valid.contains(&v.digest()) {
                        honest_seen.insert(v.digest());
                    }
                }
                Delivered::Rejected { rejection, .. } => {
                    *reasons.entry(rejection.label()).or_default() += 1;
                    if let Rejection::Equivocation(ev) = rejection {
                        havn_mesh::evidence::verify_equivocation(ev).expect("evidence verifies");
                        equivocations += 1;
                    }
                }
                _ => {}
            }
        }
        assert_eq!(
            honest_seen.len(),
            want,
            "honest node {i} got {} of {want} valid receipts",
            honest_seen.len()
        );
    }
    // Each attacker is graylisted by the honest peers it sent to directly.
    let mut graylisted = 0;
    let mut connected = 0;
    for att in attackers.iter() {
        for h in honest.iter() {
            if let Ok(Some(score)) = h.gossip.score(att.gossip.peer_id).await {
                if h.gossip
                    .status()
                    .await
                    .unwrap()
                    .peers
                    .iter()
                    .any(|p| p.peer_id == att.gossip.peer_id.to_string())
                {
                    connected += 1;
                    if score < GRAYLIST_THRESHOLD {
                        graylisted += 1;
                    }
                }
            }
        }
    }
    // No honest peer is below the graylist threshold at any honest node.
    for h in honest.iter() {
        for other in honest.iter() {
            if let Ok(Some(s)) = h.gossip.score(other.gossip.peer_id).await {
                assert!(
                    s > GRAYLIST_THRESHOLD,
                    "an honest peer was graylisted: score {s}"
                );
            }
        }
    }
    let rss_after = rss_kib();
    eprintln!(
        "byzantine: {sent} attack messages from {BYZ} peers; drops by reason at honest nodes {reasons:?}; \
         {equivocations} equivocations kept as evidence; attackers graylisted at {graylisted} of {connected} \
         honest connections; RSS {rss_before} KiB -> {rss_after} KiB"
    );
    assert!(connected > 0, "no attacker was connected to an honest node");
    assert_eq!(
        graylisted, connected,
        "every attacker connection is graylisted"
    );
    assert!(reasons.get("bad_signature").copied().unwrap_or(0) > 0);
    assert!(reasons.get("too_large").copied().unwrap_or(0) > 0);
    assert!(reasons.get("undecodable").copied().unwrap_or(0) > 0);
    assert!(reasons.get("too_old").copied().unwrap_or(0) > 0);
    assert!(equivocations > 0);
    assert!(
        rss_after.saturating_sub(rss_before) < 256 * 1024,
        "memory grew by {} KiB under the flood",
        rss_after.saturating_sub(rss_before)
    );
}
