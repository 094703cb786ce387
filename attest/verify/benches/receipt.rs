//! Receipt verification throughput per core vs raw ed25519, single and batch.
//! `cargo bench -p havn-attest --bench receipt` (single thread = one core).
//!
//! - single: what `havnctl verify-receipt` does per receipt once the quote is checked:
//!   decode the node key, `signing_digest()` (sha3-256 over the domain tag and the
//!   receipt's postcard bytes), ed25519 `verify_strict`; next to a raw `verify_strict`
//!   of a 32-byte message with a pre-decoded key.
//! - batch: N receipts (digests + key decoding + one `verify_batch`) next to N raw
//!   single verifies. `verify_batch` is not the strict check (it accepts small-order
//!   components that `verify_strict` rejects), so it is a throughput figure, not a
//!   drop-in replacement.
//!
//! Env: BENCH_SECS (seconds per pair, default 2), BENCH_BATCH (N, default 64).
//! Prints `metric,value` CSV and `BENCH name value unit baseline ratio` lines.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use havn_proto::sign::Signable;
use havn_proto::{
    bounded, Backend, Cid, ComputeClass, Hash32, NodeId, PubKey32, Receipt, Sig64, SignedReceipt,
};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Items per wall second of `f`, which handles `per_call` items per call.
fn rate(mut f: impl FnMut(), per_call: usize, min: Duration) -> f64 {
    for _ in 0..10 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < min {
        for _ in 0..10 {
            f();
        }
        n += 10;
    }
    (n as f64 * per_call as f64) / start.elapsed().as_secs_f64()
}

fn receipt(i: u64, key: &SigningKey) -> SignedReceipt {
    let job = format!("job-{i:08}-0123456789abcdef");
    let receipt = Receipt {
        workflow_id: bounded("diffusion"),
        job_id: bounded(&job),
        runtime_hash: Hash32([i as u8; 32]),
        outputs_cid: Cid::of_bytes(job.as_bytes()),
        inputs_cid: Cid::of_bytes(b""),
        latency_ms: 1234 + i,
        energy_estimate_mj: 5678,
        manifest_checksum: Hash32([0x5a; 32]),
        seed: i,
        gas: 9_876_543_210,
        backend: Backend::Cpu,
        compute_class: ComputeClass::S,
        node: NodeId(PubKey32(key.verifying_key().to_bytes())),
        submitter: bounded("orchestrator"),
        signed_unix_ms: 1,
    };
    let signature = Sig64(key.sign(&receipt.signing_digest().0).to_bytes());
    SignedReceipt { receipt, signature }
}

/// The check `havnctl verify-receipt` makes on the receipt itself.
fn verify_receipt(s: &SignedReceipt) -> bool {
    let Ok(vk) = VerifyingKey::from_bytes(&s.receipt.node.0 .0) else {
        return false;
    };
    let digest = s.receipt.signing_digest();
    vk.verify_strict(&digest.0, &Signature::from_bytes(&s.signature.0))
        .is_ok()
}

fn verify_receipts_batch(rs: &[SignedReceipt]) -> bool {
    let digests: Vec<Hash32> = rs.iter().map(|s| s.receipt.signing_digest()).collect();
    let msgs: Vec<&[u8]> = digests.iter().map(|d| &d.0[..]).collect();
    let sigs: Vec<Signature> = rs
        .iter()
        .map(|s| Signature::from_bytes(&s.signature.0))
        .collect();
    let Ok(keys) = rs
        .iter()
        .map(|s| VerifyingKey::from_bytes(&s.receipt.node.0 .0))
        .collect::<Result<Vec<_>, _>>()
    else {
        return false;
    };
    ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok()
}

fn main() {
    let env = |k: &str, d: f64| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let min = Duration::from_secs_f64(env("BENCH_SECS", 2.0));
    let batch = env("BENCH_BATCH", 64.0) as usize;
    let nodes: Vec<SigningKey> = (1..=4u8)
        .map(|i| SigningKey::from_bytes(&[i; 32]))
        .collect();
    let rs: Vec<SignedReceipt> = (0..batch as u64)
        .map(|i| receipt(i, &nodes[i as usize % nodes.len()]))
        .collect();
    let one = &rs[0];
    assert!(rs.iter().all(verify_receipt), "receipts verify");
    assert!(verify_receipts_batch(&rs), "batch verifies");
    let mut bad = rs.clone();
    bad[batch / 2].receipt.gas += 1;
    assert!(!verify_receipt(&bad[batch / 2]) && !verify_receipts_batch(&bad));

    // Raw baseline: a 32-byte message, key decoded once.
    let raw: Vec<(VerifyingKey, [u8; 32], Signature)> = (0..batch)
        .map(|i| {
            let k = &nodes[i % nodes.len()];
            let msg = [i as u8; 32];
            (k.verifying_key(), msg, k.sign(&msg))
        })
        .collect();
    let (vk0, msg0, sig0) = raw[0];

    // Interleave rounds so background load hits both alike; keep each one's best round.
    let round = min / 5;
    let (mut single, mut raw1, mut batched, mut rawn) = (0f64, 0f64, 0f64, 0f64);
    for _ in 0..5 {
        single = single.max(rate(
            || {
                black_box(verify_receipt(black_box(one)));
            },
            1,
            round,
        ));
        raw1 = raw1.max(rate(
            || {
                black_box(vk0.verify_strict(black_box(&msg0), &sig0).is_ok());
            },
            1,
            round,
        ));
        batched = batched.max(rate(
            || {
                black_box(verify_receipts_batch(black_box(&rs)));
            },
            batch,
            round,
        ));
        rawn = rawn.max(rate(
            || {
                for (vk, m, s) in black_box(&raw) {
                    black_box(vk.verify_strict(m, s).is_ok());
                }
            },
            batch,
            round,
        ));
    }
    println!("metric,value");
    println!("receipt_verify_per_s_per_core,{single:.0}");
    println!("ed25519_verify_per_s_per_core,{raw1:.0}");
    println!("ratio_receipt_over_raw,{:.3}", single / raw1);
    println!("batch_size,{batch}");
    println!("receipt_batch_verify_per_s_per_core,{batched:.0}");
    println!("ed25519_n_single_per_s_per_core,{rawn:.0}");
    println!("ratio_batch_over_n_single,{:.3}", batched / rawn);
    println!(
        "BENCH receipt_verify {single:.0} verify/s {raw1:.0} {:.3}",
        single / raw1
    );
    println!(
        "BENCH receipt_verify_batch{batch} {batched:.0} verify/s {rawn:.0} {:.3}",
        batched / rawn
    );
}
