//! The sampling lottery: each validator decides on its own, verifiably, whether it
//! samples a receipt, and the executing node cannot grind the outcome.
//!
//! A validator's ticket for a receipt is its node key's ed25519 signature over
//! `Domain::Lottery(receipt digest)`. ed25519 signatures are deterministic, so a
//! validator has exactly one ticket per receipt; the executing node cannot compute it
//! (it lacks the validator's key), so choosing its seed, latency or job id does not
//! help it. The validator samples when `sha3(ticket)`'s top 63 bits fall below its
//! threshold; anyone with the validator's public key checks a claimed draw.
//!
//! Thresholds are tuned so the *committee* samples a job with probability p: each of n
//! validators draws with q where `1 - (1 - q)^n = p`. q is found in 63-bit fixed point
//! by bisection, in integers, so every validator computes the same threshold.

use havn_proto::sign::Domain;
use havn_proto::{Hash32, NodeId, Sig64};
use sha3::{Digest, Sha3_256};

/// 1.0 in the lottery's Q63 fixed point.
pub const ONE: u128 = 1 << 63;

/// The digest a validator signs to draw for `receipt_digest`.
pub fn ticket_digest(receipt_digest: &Hash32) -> Hash32 {
    Domain::Lottery.digest(&receipt_digest.0)
}

/// A ticket's draw in [0, 2^63).
pub fn draw(ticket: &Sig64) -> u64 {
    let h: [u8; 32] = Sha3_256::digest(ticket.0).into();
    let mut top = [0u8; 8];
    top.copy_from_slice(h.get(..8).unwrap_or(&[0u8; 8]));
    u64::from_be_bytes(top) >> 1
}

fn pow_q63(x: u128, n: u32) -> u128 {
    let mut r = ONE;
    for _ in 0..n {
        r = r.saturating_mul(x) >> 63;
    }
    r
}

/// Each validator's threshold so that a committee of `n` samples a job with
/// probability `p_ppm` / 10^6.
pub fn threshold(p_ppm: u32, n: u32) -> u64 {
    if n == 0 || p_ppm == 0 {
        return 0;
    }
    if p_ppm >= 1_000_000 {
        return u64::MAX >> 1;
    }
    // target = 1 - p; find the largest t with (1 - t)^n >= target.
    let target = ONE.saturating_sub(ONE.saturating_mul(u128::from(p_ppm)) / 1_000_000);
    let (mut lo, mut hi) = (0u128, ONE);
    while lo < hi {
        let mid = lo.saturating_add(hi).saturating_add(1) / 2;
        if pow_q63(ONE.saturating_sub(mid), n) >= target {
            lo = mid;
        } else {
            hi = mid.saturating_sub(1);
        }
    }
    u64::try_from(lo).unwrap_or(u64::MAX >> 1)
}

/// Whether a validator with `ticket` samples (for a threshold from [`threshold`]).
pub fn sampled(ticket: &Sig64, threshold: u64) -> bool {
    draw(ticket) < threshold
}

/// Checks a claimed draw: the ticket is `validator`'s signature for this receipt and
/// falls under the threshold.
pub fn verify_draw(
    validator: &NodeId,
    receipt_digest: &Hash32,
    ticket: &Sig64,
    threshold: u64,
) -> bool {
    crate::sig::verify_digest(validator, &ticket_digest(receipt_digest), ticket)
        && sampled(ticket, threshold)
}

/// The closed form: the probability that a node cheating on every job is sampled at
/// least once within `jobs` jobs, when each job is sampled with probability `p`.
pub fn caught_within(p: f64, jobs: u32) -> f64 {
    1.0 - (1.0 - p).powi(i32::try_from(jobs).unwrap_or(i32::MAX))
}
