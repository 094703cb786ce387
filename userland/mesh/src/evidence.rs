//! Checking the evidence that slashing and quarantine act on, offline and by anyone:
//! an equivocation (two signed receipts for one job), an upheld challenge (slashing),
//! and consecutive certified non-live epochs (quarantine).

use crate::settle::{self, has_quorum};
use crate::sig;
use crate::state::check_openings;
use havn_proto::mesh::{
    committee_root, EquivocationEvidence, QuarantineEvidence, SlashingEvidence, VerdictOutcome,
};
use havn_proto::sign::Signable;
use havn_proto::Hash32;
use std::collections::BTreeSet;

/// Why evidence does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvidenceError(pub String);

fn fail<T>(s: impl Into<String>) -> Result<T, EvidenceError> {
    Err(EvidenceError(s.into()))
}

/// Two receipts, both signed by one node, for one (submitter, job), stating different
/// results.
pub fn verify_equivocation(e: &EquivocationEvidence) -> Result<(), EvidenceError> {
    let (a, b) = (&e.first.receipt, &e.second.receipt);
    if a.node != b.node || a.submitter != b.submitter || a.job_id != b.job_id {
        return fail("the receipts are not for one job of one node");
    }
    if a.same_result(b) {
        return fail("the receipts state the same result");
    }
    if !sig::verify(&a.node, a, &e.first.signature) || !sig::verify(&b.node, b, &e.second.signature)
    {
        return fail("a receipt's signature does not verify");
    }
    Ok(())
}

/// An upheld challenge: the challenge and its receipt are signed, its openings hold,
/// and distinct committee members holding ≥ 2/3 of the committee's weight signed
/// `Reject` verdicts naming the challenged node.
pub fn verify_slashing(
    e: &SlashingEvidence,
    expected_committee: Option<&Hash32>,
) -> Result<(), EvidenceError> {
    let c = &e.challenge.challenge;
    let root = committee_root(&e.committee);
    if let Some(want) = expected_committee {
        if *want != root {
            return fail("not the expected committee");
        }
    }
    if !e.committee.iter().any(|m| m.node == c.challenger) {
        return fail("the challenger is not on the committee");
    }
    if !sig::verify(&c.challenger, c, &e.challenge.signature) {
        return fail("the challenge's signature does not verify");
    }
    let r = &c.receipt;
    if !sig::verify(&r.receipt.node, &r.receipt, &r.signature) {
        return fail("the receipt's signature does not verify");
    }
    check_openings(c).map_err(EvidenceError)?;
    let digest = r.receipt.signing_digest();
    let mut voters = BTreeSet::new();
    let mut signed: u128 = 0;
    for v in &e.upholding {
        let b = &v.verdict;
        let Some(m) = e.committee.iter().find(|m| m.node == b.validator) else {
            return fail(format!(
                "verdict by {} who is not on the committee",
                b.validator.0
            ));
        };
        if b.receipt_digest != digest
            || b.outcome != VerdictOutcome::Reject
            || b.first_divergent != Some(c.divergent.index)
        {
            return fail(format!(
                "{}'s verdict does not uphold this challenge",
                b.validator.0
            ));
        }
        if !sig::verify(&b.validator, b, &v.signature) {
            return fail(format!(
                "{}'s verdict signature does not verify",
                b.validator.0
            ));
        }
        if voters.insert(b.validator) {
            signed = signed.saturating_add(u128::from(m.weight));
        }
    }
    let total: u128 = e.committee.iter().map(|m| u128::from(m.weight)).sum();
    if !has_quorum(signed, total) {
        return fail(format!(
            "upheld by weight {signed} of {total}: under two thirds"
        ));
    }
    Ok(())
}

/// Quarantine: certified settlements for consecutive epochs, each proving the leaf
/// `(node, not live)`.
pub fn verify_quarantine(
    e: &QuarantineEvidence,
    expected_committee: Option<&Hash32>,
    quarantine_after: usize,
) -> Result<(), EvidenceError> {
    if e.epochs.len() < quarantine_after || e.epochs.is_empty() {
        return fail(format!(
            "{} epochs of evidence; quarantine needs {quarantine_after}",
            e.epochs.len()
        ));
    }
    let mut prev: Option<u64> = None;
    for (cert, proof) in &e.epochs {
        let s = &cert.settlement;
        if prev.is_some_and(|p| p.saturating_add(1) != s.epoch) {
            return fail(format!(
                "epoch {} does not follow the previous one",
                s.epoch
            ));
        }
        prev = Some(s.epoch);
        settle::verify_certificate(cert, expected_committee)
            .map_err(|err| EvidenceError(format!("epoch {}: {err}", s.epoch)))?;
        if !settle::verify_liveness(s, &e.node, false, proof) {
            return fail(format!("epoch {}: no proof the node was not live", s.epoch));
        }
    }
    Ok(())
}
