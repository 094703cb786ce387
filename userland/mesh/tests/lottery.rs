//! The sampling lottery: thresholds, verifiable draws, and the 95 %-within-59-jobs
//! claim checked by simulation against the closed form.

use crate::common::{key, receipt, Key, T0};
use ed25519_dalek::Signer;
use havn_mesh::lottery::{self, caught_within, threshold, ticket_digest};
use havn_proto::sign::Signable;
use havn_proto::{ComputeClass, Sig64};

fn ticket(k: &Key, digest: &havn_proto::Hash32) -> Sig64 {
    Sig64(k.sk.sign(&ticket_digest(digest).0).to_bytes())
}

#[test]
fn thresholds_give_the_committee_probability() {
    for n in [1u32, 3, 5, 10, 50] {
        let t = threshold(50_000, n) as f64 / lottery::ONE as f64;
        let committee = 1.0 - (1.0 - t).powi(n as i32);
        assert!(
            (committee - 0.05).abs() < 1e-9,
            "n={n}: committee p {committee}"
        );
    }
    assert_eq!(threshold(0, 5), 0);
    assert_eq!(threshold(50_000, 0), 0);
    assert_eq!(threshold(1_000_000, 5), u64::MAX >> 1);
}

#[test]
fn a_draw_verifies_only_for_its_validator_and_receipt() {
    let v = key(1);
    let other = key(2);
    let node = key(9);
    let t = threshold(1_000_000, 1); // everyone samples: isolate the signature check
    let r = receipt(&node, "job-1", ComputeClass::S, T0, 1)
        .receipt
        .signing_digest();
    let r2 = receipt(&node, "job-2", ComputeClass::S, T0, 1)
        .receipt
        .signing_digest();
    let tk = ticket(&v, &r);
    assert!(lottery::verify_draw(&v.id, &r, &tk, t));
    assert!(
        !lottery::verify_draw(&other.id, &r, &tk, t),
        "another validator's key"
    );
    assert!(!lottery::verify_draw(&v.id, &r2, &tk, t), "another receipt");
    // Deterministic: one ticket per (validator, receipt); no re-rolls.
    assert_eq!(tk, ticket(&v, &r));
}

/// A node that cheats on every job, against a committee of 5 validators each drawing
/// with its own key at the per-validator threshold for p = 5 %: the simulated rates
/// must match the closed form, and the closed form gives ≥ 95 % within 59 jobs.
#[test]
fn a_cheater_on_every_job_is_caught_within_59_jobs_with_probability_at_least_95_percent() {
    const TRIALS: usize = 400;
    const JOBS: usize = 59;
    const N: u32 = 5;
    let p = 0.05;
    let closed = caught_within(p, JOBS as u32);
    assert!(closed >= 0.95, "closed form {closed}");

    let validators: Vec<Key> = (0..N).map(|i| key(100 + i as u8)).collect();
    let t = threshold(50_000, N);
    let cheater = key(7);
    let (mut caught, mut sampled_jobs) = (0usize, 0usize);
    for trial in 0..TRIALS {
        let mut hit = false;
        for j in 0..JOBS {
            let job = format!("t{trial}-j{j}");
            let d = receipt(&cheater, &job, ComputeClass::S, T0, 0xee)
                .receipt
                .signing_digest();
            let s = validators
                .iter()
                .any(|v| lottery::sampled(&ticket(v, &d), t));
            sampled_jobs += usize::from(s);
            hit |= s;
        }
        caught += usize::from(hit);
    }
    let per_job = sampled_jobs as f64 / (TRIALS * JOBS) as f64;
    let sigma_job = (p * (1.0 - p) / (TRIALS * JOBS) as f64).sqrt();
    assert!(
        (per_job - p).abs() < 5.0 * sigma_job,
        "per-job sampling rate {per_job:.4}, expected {p} ± {:.4}",
        5.0 * sigma_job
    );
    let rate = caught as f64 / TRIALS as f64;
    let sigma = (closed * (1.0 - closed) / TRIALS as f64).sqrt();
    assert!(
        (rate - closed).abs() < 5.0 * sigma,
        "caught within {JOBS} jobs in {rate:.3} of trials; closed form {closed:.4} ± {:.3}",
        5.0 * sigma
    );
    eprintln!("caught within {JOBS} jobs: simulated {rate:.3}, closed form {closed:.4}; per-job {per_job:.4}");
}
