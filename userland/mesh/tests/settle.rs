//! Settlements, quorum certificates, inclusion proofs, and the slashing and
//! quarantine evidence built on them.

use crate::common::*;
use havn_mesh::evidence::{verify_quarantine, verify_slashing};
use havn_mesh::liveness::QuarantineTracker;
use havn_mesh::settle::{self, Quorum, SettleError};
use havn_mesh::MeshParams;
use havn_proto::mesh::{
    CommitteeMember, EpochSettlement, SettlementCertificate, SignedVerdict, SlashingEvidence,
    Verdict, VerdictOutcome,
};
use havn_proto::sign::Signable;
use havn_proto::ComputeClass::S;
use havn_proto::{Hash32, NodeId};
use std::collections::BTreeMap;

fn committee(keys: &[Key], weights: &[u64]) -> Vec<CommitteeMember> {
    keys.iter()
        .zip(weights)
        .map(|(k, w)| CommitteeMember {
            node: k.id,
            weight: *w,
        })
        .collect()
}

fn certify(
    keys: &[Key],
    members: &[CommitteeMember],
    s: &EpochSettlement,
    signers: &[usize],
) -> Option<SettlementCertificate> {
    let mut q = Quorum::new(s.clone(), members.to_vec()).unwrap();
    let mut cert = None;
    for &i in signers {
        cert = q.add(s, &keys[i].id, &sign(&keys[i], s)).unwrap();
    }
    cert
}

#[test]
fn a_certificate_forms_at_two_thirds_of_the_weight_and_verifies_offline() {
    let vals: Vec<Key> = (0..4).map(|i| key(20 + i)).collect();
    let members = committee(&vals, &[2_000, 5_000, 9_000, 2_000]); // total 18 000
    let receipts: Vec<Hash32> = (0..7u8).map(|i| Hash32([i; 32])).collect();
    let (s, sorted) = settle::build(S, 5, &receipts, &BTreeMap::new(), &members);
    // 9 000 + 2 000 = 11 000 < 12 000: no certificate yet; + 2 000 = 13 000: one.
    assert!(certify(&vals, &members, &s, &[2, 3]).is_none());
    let cert = certify(&vals, &members, &s, &[2, 3, 0]).expect("quorum");
    assert_eq!(
        settle::verify_certificate(&cert, Some(&s.committee_root)),
        Ok(13_000)
    );

    for d in &receipts {
        let p = settle::inclusion_proof(&sorted, d).unwrap();
        assert!(settle::verify_inclusion(&cert.settlement, d, &p));
    }
    let p0 = settle::inclusion_proof(&sorted, &receipts[0]).unwrap();
    assert!(
        !settle::verify_inclusion(&cert.settlement, &Hash32([9; 32]), &p0),
        "an absent receipt"
    );

    // A signature removed: under quorum.
    let mut removed = cert.clone();
    removed.signatures.pop();
    assert!(matches!(
        settle::verify_certificate(&removed, None),
        Err(SettleError::NoQuorum { .. })
    ));
    // A signature altered.
    let mut bad = cert.clone();
    bad.signatures[0].1 .0[9] ^= 1;
    assert!(matches!(
        settle::verify_certificate(&bad, None),
        Err(SettleError::BadSignature(_))
    ));
    // One member counted twice.
    let mut twice = removed.clone();
    let first = twice.signatures[0];
    twice.signatures.insert(0, first).unwrap();
    assert!(matches!(
        settle::verify_certificate(&twice, None),
        Err(SettleError::OutOfOrder(_))
    ));
    // Weights inflated after signing.
    let mut heavier = removed.clone();
    heavier.committee[0].weight = 1_000_000;
    assert_eq!(
        settle::verify_certificate(&heavier, None),
        Err(SettleError::CommitteeMismatch)
    );
    // Another committee than the verifier expects.
    assert!(matches!(
        settle::verify_certificate(&cert, Some(&Hash32([1; 32]))),
        Err(SettleError::UnexpectedCommittee { .. })
    ));
    // A vote from outside the committee, or for another settlement.
    let mut q = Quorum::new(s.clone(), members.clone()).unwrap();
    let outsider = key(99);
    assert_eq!(
        q.add(&s, &outsider.id, &sign(&outsider, &s)),
        Err(SettleError::ForeignVote)
    );
    let mut other = s.clone();
    other.receipt_count += 1;
    assert_eq!(
        q.add(&other, &vals[0].id, &sign(&vals[0], &other)),
        Err(SettleError::ForeignVote)
    );
}

#[test]
fn three_certified_non_live_epochs_make_quarantine_evidence() {
    let params = MeshParams::default();
    let vals: Vec<Key> = (0..3).map(|i| key(30 + i)).collect();
    let members = committee(&vals, &[1, 1, 1]);
    let (up, down) = (key(40).id, key(41).id);
    let mut tracker = QuarantineTracker::default();
    let mut found = Vec::new();
    for epoch in 10..13 {
        let live: BTreeMap<NodeId, bool> = [(up, true), (down, false)].into();
        let (s, _) = settle::build(S, epoch, &[], &live, &members);
        let cert = certify(&vals, &members, &s, &[0, 1]).unwrap();
        let (ev, _) = tracker.observe(&params, &cert, &live);
        found.extend(ev);
    }
    assert_eq!(
        found.len(),
        1,
        "only the silent node, once its run reaches 3"
    );
    let ev = &found[0];
    assert_eq!(ev.node, down);
    verify_quarantine(ev, Some(&havn_proto::mesh::committee_root(&members)), 3).expect("verifies");
    let mut short = ev.clone();
    short.epochs.pop();
    assert!(
        verify_quarantine(&short, None, 3).is_err(),
        "two epochs are not enough"
    );
    let mut framed = ev.clone();
    framed.node = up;
    assert!(
        verify_quarantine(&framed, None, 3).is_err(),
        "a live node cannot be framed"
    );
}

#[test]
fn slashing_needs_two_thirds_of_the_committee_upholding_the_challenge() {
    let vals: Vec<Key> = (0..3).map(|i| key(50 + i)).collect();
    let members = committee(&vals, &[1, 1, 1]);
    let cheater = key(60);
    let c = challenge(&vals[0], &cheater, S);
    let digest = c.challenge.receipt.receipt.signing_digest();
    let uphold = |k: &Key, outcome| {
        let verdict = Verdict {
            validator: k.id,
            receipt_digest: digest,
            node: cheater.id,
            compute_class: S,
            epoch: 1,
            outcome,
            first_divergent: Some(3),
        };
        SignedVerdict {
            signature: sign(k, &verdict),
            verdict,
        }
    };
    let mut ev = SlashingEvidence {
        challenge: c,
        committee: members.iter().copied().collect(),
        upholding: [
            uphold(&vals[0], VerdictOutcome::Reject),
            uphold(&vals[1], VerdictOutcome::Reject),
        ]
        .into_iter()
        .collect(),
    };
    verify_slashing(&ev, None).expect("2 of 3 uphold");
    let mut once = ev.clone();
    once.upholding[1] = once.upholding[0].clone();
    assert!(
        verify_slashing(&once, None).is_err(),
        "one validator counted twice"
    );
    ev.upholding[1] = uphold(&vals[1], VerdictOutcome::Confirm);
    assert!(
        verify_slashing(&ev, None).is_err(),
        "a confirmation does not uphold"
    );
}
