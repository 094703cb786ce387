//! Each stage of the validation chain, with real signatures and quotes: what passes,
//! what each rejection is, and what gossipsub and the peer score are told.

use crate::common::*;
use havn_mesh::evidence::verify_equivocation;
use havn_mesh::{Action, Penalty, Rejection};
use havn_proto::mesh::{Role, SignedVerdict, Verdict, VerdictMessage, VerdictOutcome};
use havn_proto::sign::Signable;
use havn_proto::ComputeClass::{self, M, S};

fn setup() -> (Key, Key, havn_mesh::MeshState) {
    let exec = key(1);
    let val = key(2);
    let st = state_knowing(&[
        manifest(&exec, Role::Execution, S, 0, T0),
        manifest(&val, Role::Validator, S, 5_000, T0),
    ]);
    (exec, val, st)
}

fn rejected(r: Result<impl std::fmt::Debug, Rejection>) -> Rejection {
    r.expect_err("should have been refused")
}

#[test]
fn a_valid_receipt_is_verified_and_a_replay_is_ignored_without_penalty() {
    let (exec, _, mut st) = setup();
    let r = receipt(&exec, "job-1", S, T0 + 1_000, 1);
    let v = st.on_receipt(S, &bytes(&r), T0 + 2_000).expect("verified");
    assert_eq!(v.digest(), r.receipt.signing_digest());
    let e = rejected(st.on_receipt(S, &bytes(&r), T0 + 3_000));
    assert_eq!(e, Rejection::Duplicate);
    assert_eq!((e.action(), e.penalty()), (Action::Ignore, Penalty::None));
    assert_eq!(st.node(&exec.id).unwrap().receipts_verified, 1);
}

#[test]
fn malformed_oversized_and_misfiled_receipts_are_rejected_with_a_penalty() {
    let (exec, _, mut st) = setup();
    let good = bytes(&receipt(&exec, "job-1", S, T0, 1));
    let cases: Vec<(&str, Vec<u8>, ComputeClass, &str)> = vec![
        ("garbage", vec![0xff; 40], S, "undecodable"),
        ("empty", vec![], S, "undecodable"),
        (
            "trailing byte",
            [good.clone(), vec![0]].concat(),
            S,
            "undecodable",
        ),
        ("oversized", vec![0; 2048], S, "too_large"),
        (
            "truncated",
            good[..good.len() - 3].to_vec(),
            S,
            "undecodable",
        ),
        (
            "class S receipt on the M topic",
            good.clone(),
            M,
            "wrong_topic",
        ),
    ];
    for (what, b, class, label) in cases {
        let e = rejected(st.on_receipt(class, &b, T0));
        assert_eq!(e.label(), label, "{what}: {e}");
        assert_eq!(
            (e.action(), e.penalty()),
            (Action::Reject, Penalty::Invalid),
            "{what}"
        );
    }
}

#[test]
fn receipts_outside_the_epoch_window_are_ignored_without_penalty() {
    let (exec, _, mut st) = setup();
    let now = T0 + 10 * 60_000;
    let old = receipt(&exec, "old", S, T0, 1);
    let e = rejected(st.on_receipt(S, &bytes(&old), now));
    assert!(matches!(e, Rejection::TooOld { .. }), "{e}");
    assert_eq!((e.action(), e.penalty()), (Action::Ignore, Penalty::None));
    let future = receipt(&exec, "future", S, now + 60_000, 1);
    let e = rejected(st.on_receipt(S, &bytes(&future), now));
    assert!(matches!(e, Rejection::FromTheFuture { .. }), "{e}");
    assert_eq!(e.action(), Action::Ignore);
    // Two epochs back is still inside the default window.
    let late = receipt(&exec, "late", S, now - 2 * 60_000, 1);
    st.on_receipt(S, &bytes(&late), now)
        .expect("late but in the window");
}

#[test]
fn unknown_nodes_are_ignored_and_quarantined_nodes_rejected() {
    let (exec, _, mut st) = setup();
    let stranger = key(9);
    let e = rejected(st.on_receipt(S, &bytes(&receipt(&stranger, "j", S, T0, 1)), T0));
    assert_eq!(e, Rejection::UnknownNode(stranger.id));
    assert_eq!((e.action(), e.penalty()), (Action::Ignore, Penalty::None));
    st.set_quarantined(&exec.id, true);
    let e = rejected(st.on_receipt(S, &bytes(&receipt(&exec, "j", S, T0, 1)), T0));
    assert_eq!(e, Rejection::Quarantined(exec.id));
    assert_eq!(e.action(), Action::Reject);
    st.set_quarantined(&exec.id, false);
    st.on_receipt(S, &bytes(&receipt(&exec, "j", S, T0, 1)), T0)
        .expect("live again");
}

#[test]
fn a_forged_signature_is_rejected_and_never_frames_the_node_as_equivocating() {
    let (exec, _, mut st) = setup();
    let first = receipt(&exec, "job-1", S, T0, 1);
    st.on_receipt(S, &bytes(&first), T0).unwrap();
    // Someone else signs a different result for the same job under exec's name.
    let mut forged = receipt(&key(9), "job-1", S, T0, 2);
    forged.receipt.node = exec.id;
    let e = rejected(st.on_receipt(S, &bytes(&forged), T0));
    assert_eq!(e, Rejection::BadSignature);
    assert!(st.equivocations.is_empty());
}

#[test]
fn two_signed_results_for_one_job_are_rejected_and_kept_as_evidence() {
    let (exec, _, mut st) = setup();
    st.on_receipt(S, &bytes(&receipt(&exec, "job-1", S, T0, 1)), T0)
        .unwrap();
    let e = rejected(st.on_receipt(S, &bytes(&receipt(&exec, "job-1", S, T0, 2)), T0));
    let Rejection::Equivocation(ev) = &e else {
        panic!("expected equivocation, got {e}");
    };
    // Dropped unforwarded, but the forwarder is not penalised: it may have seen the
    // other half first. The signer answers for it through the evidence.
    assert_eq!((e.action(), e.penalty()), (Action::Ignore, Penalty::None));
    verify_equivocation(ev).expect("the evidence verifies offline");
    assert_eq!(st.equivocations.len(), 1);
    // The same result with other run measurements is not an equivocation.
    let mut again = receipt(&exec, "job-1", S, T0, 1);
    again.receipt.latency_ms += 5;
    assert!(
        verify_equivocation(&havn_proto::mesh::EquivocationEvidence {
            first: receipt(&exec, "job-1", S, T0, 1),
            second: again,
        })
        .is_err()
    );
}

#[test]
fn a_batch_names_exactly_the_bad_signatures() {
    let (exec, _, mut st) = setup();
    let mut msgs: Vec<Vec<u8>> = (0..16)
        .map(|i| bytes(&receipt(&exec, &format!("job-{i}"), S, T0, 1)))
        .collect();
    let mut bad = receipt(&exec, "job-7", S, T0, 1);
    bad.signature.0[5] ^= 1;
    msgs[7] = bytes(&bad);
    let input: Vec<(ComputeClass, &[u8])> = msgs.iter().map(|m| (S, m.as_slice())).collect();
    let out = st.on_receipts(&input, T0);
    for (i, r) in out.iter().enumerate() {
        if i == 7 {
            assert_eq!(r.as_ref().unwrap_err(), &Rejection::BadSignature);
        } else {
            assert!(r.is_ok(), "receipt {i}: {:?}", r.as_ref().err());
        }
    }
}

#[test]
fn manifests_must_carry_a_quote_bound_to_them() {
    let exec = key(1);
    let mut st = state_knowing(&[]);
    let m = manifest(&exec, Role::Execution, S, 0, T0);
    // A quote made for another manifest (another nonce) does not bind this one.
    let mut other = manifest(&exec, Role::Execution, S, 0, T0 + 1);
    other.manifest = m.manifest.clone();
    other.signature = m.signature;
    let e = rejected(st.on_manifest(&bytes(&other), T0));
    assert!(matches!(e, Rejection::BadQuote(_)), "{e}");
    // A tampered quote fails verification.
    let mut tampered = m.clone();
    let last = tampered.quote.attest.len() - 1;
    tampered.quote.attest[last] ^= 1;
    let e = rejected(st.on_manifest(&bytes(&tampered), T0));
    assert!(matches!(e, Rejection::BadQuote(_)), "{e}");
    assert_eq!(e.action(), Action::Reject);
    // A manifest whose role was changed after signing.
    let mut promoted = m.clone();
    promoted.manifest.role = Role::Validator;
    assert_eq!(
        rejected(st.on_manifest(&bytes(&promoted), T0)),
        Rejection::BadSignature
    );
    let v = st.on_manifest(&bytes(&m), T0).expect("accepted");
    assert_eq!(st.node_of_peer(&v.get().manifest.peer_id), Some(exec.id));
    assert_eq!(
        rejected(st.on_manifest(&bytes(&m), T0)),
        Rejection::Duplicate
    );
    let older = manifest(&exec, Role::Execution, S, 0, T0 - 1);
    assert_eq!(
        rejected(st.on_manifest(&bytes(&older), T0)),
        Rejection::StaleManifest
    );
}

fn verdict(v: &Key, node: &Key, rh: u8, outcome: VerdictOutcome) -> SignedVerdict {
    let r = receipt(node, "job-1", S, T0, rh);
    let verdict = Verdict {
        validator: v.id,
        receipt_digest: r.receipt.signing_digest(),
        node: node.id,
        compute_class: S,
        epoch: T0 / 60_000,
        outcome,
        first_divergent: (outcome == VerdictOutcome::Reject).then_some(3),
    };
    SignedVerdict {
        signature: sign(v, &verdict),
        verdict,
    }
}

#[test]
fn verdicts_come_only_from_validators_of_the_class_and_only_once() {
    let (exec, val, mut st) = setup();
    let ok = verdict(&val, &exec, 1, VerdictOutcome::Confirm);
    st.on_verdict(S, &bytes(&VerdictMessage::Verdict(ok.clone())), T0)
        .expect("accepted");
    assert_eq!(
        rejected(st.on_verdict(S, &bytes(&VerdictMessage::Verdict(ok)), T0)),
        Rejection::Duplicate
    );
    let flip = verdict(&val, &exec, 1, VerdictOutcome::Reject);
    let e = rejected(st.on_verdict(S, &bytes(&VerdictMessage::Verdict(flip)), T0));
    assert_eq!(e, Rejection::DoubleVerdict(val.id));
    assert_eq!((e.action(), e.penalty()), (Action::Ignore, Penalty::None));
    // An execution node cannot vote.
    let by_exec = verdict(&exec, &exec, 2, VerdictOutcome::Confirm);
    let e = rejected(st.on_verdict(S, &bytes(&VerdictMessage::Verdict(by_exec)), T0));
    assert_eq!(e, Rejection::NotOnCommittee(exec.id));
}

#[test]
fn a_challenge_with_consistent_openings_passes_and_a_bent_path_does_not() {
    let (exec, val, mut st) = setup();
    let c = challenge(&val, &exec, S);
    st.on_challenge(&bytes(&c), T0).expect("accepted");
    let mut bent = c.clone();
    bent.challenge.divergent.path[0].1 ^= true;
    bent.signature = sign(&val, &bent.challenge);
    let e = rejected(st.on_challenge(&bytes(&bent), T0));
    assert!(matches!(e, Rejection::BadChallenge(_)), "{e}");
    let mut same = c.clone();
    same.challenge.recomputed = same.challenge.divergent.hash;
    same.signature = sign(&val, &same.challenge);
    assert!(matches!(
        rejected(st.on_challenge(&bytes(&same), T0)),
        Rejection::BadChallenge(_)
    ));
    let by_exec = challenge(&exec, &exec, S);
    assert_eq!(
        rejected(st.on_challenge(&bytes(&by_exec), T0)),
        Rejection::NotOnCommittee(exec.id)
    );
}
