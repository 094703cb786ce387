//! attestd's mesh signing over a real swtpm: the manifest (its quote bound to the
//! manifest itself), lottery tickets, verdicts assembled from a re-execution, and
//! settlement votes — one verdict per receipt and one vote per epoch, across restarts.
use havn_mesh::fixtures::{bytes, key, now_ms, receipt};
use havn_mesh::{lottery, sig, MeshParams, MeshState};
use havn_proto::ipc::{
    ExecdRequest, ExecdResponse, NetdAttestRequest, NetdAttestResponse, Reexecution, RemoteError,
};
use havn_proto::mesh::{EpochSettlement, Role, VerdictOutcome};
use havn_proto::sign::Signable;
use havn_proto::{ComputeClass, Hash32, SignedReceipt};

mod common;
use common::*;

fn booted(role: &str) -> Booted {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let extra = format!("role = \"{role}\"\ncompute_class = \"S\"");
    boot_in_with(&extra, dir, &state, 0)
}

fn reexecuted(
    b: &mut Booted,
    r: &SignedReceipt,
    runtime_hash: Hash32,
    first: Option<u32>,
) -> ExecdResponse {
    b.svc
        .handle_execd(ExecdRequest::Reexecuted(Box::new(Reexecution {
            receipt: r.clone(),
            runtime_hash,
            first_divergent: first,
            challenge: None,
        })))
}

#[test]
fn a_validator_signs_one_verdict_per_receipt_from_its_reexecution_across_restarts() {
    let mut b = booted("validator");
    let exec = key(9);
    let r = receipt(&exec, "job-1", ComputeClass::S, now_ms(), 0x33);
    let confirm = match reexecuted(&mut b, &r, r.receipt.runtime_hash, None) {
        ExecdResponse::Verdict(j) => j.verdict,
        other => panic!("verdict: {other:?}"),
    };
    assert_eq!(confirm.verdict.outcome, VerdictOutcome::Confirm);
    assert_eq!(confirm.verdict.receipt_digest, r.receipt.signing_digest());
    assert_eq!(confirm.verdict.validator, b.node);
    assert!(sig::verify(&b.node, &confirm.verdict, &confirm.signature));
    // Asked again with the same result: the same verdict, byte for byte.
    assert_eq!(
        reexecuted(&mut b, &r, r.receipt.runtime_hash, None),
        ExecdResponse::Verdict(Box::new(havn_proto::ipc::Judgement {
            verdict: confirm.clone(),
            challenge: None
        }))
    );
    // A second, different verdict on the same receipt is refused.
    assert_eq!(
        reexecuted(&mut b, &r, Hash32([0x44; 32]), Some(2)),
        ExecdResponse::Error(RemoteError::AlreadySigned)
    );
    // Across a restart, with only the record on disk.
    drop(std::mem::replace(&mut b.svc, start(&b.cfg).0));
    assert_eq!(
        reexecuted(&mut b, &r, Hash32([0x44; 32]), Some(2)),
        ExecdResponse::Error(RemoteError::AlreadySigned),
        "a restart must not forget the verdict"
    );
    assert_eq!(
        reexecuted(&mut b, &r, r.receipt.runtime_hash, None),
        ExecdResponse::Verdict(Box::new(havn_proto::ipc::Judgement {
            verdict: confirm,
            challenge: None
        }))
    );
    // A mismatch names the divergent node; without one it abstains.
    let r2 = receipt(&exec, "job-2", ComputeClass::S, now_ms(), 0x33);
    match reexecuted(&mut b, &r2, Hash32([0x45; 32]), Some(4)) {
        ExecdResponse::Verdict(j) => {
            assert_eq!(j.verdict.verdict.outcome, VerdictOutcome::Reject);
            assert_eq!(j.verdict.verdict.first_divergent, Some(4));
        }
        other => panic!("reject: {other:?}"),
    }
    let r3 = receipt(&exec, "job-3", ComputeClass::S, now_ms(), 0x33);
    match reexecuted(&mut b, &r3, Hash32([0x45; 32]), None) {
        ExecdResponse::Verdict(j) => {
            assert_eq!(j.verdict.verdict.outcome, VerdictOutcome::Abstain)
        }
        other => panic!("abstain: {other:?}"),
    }
    // A receipt whose signature does not verify gets no verdict at all.
    let mut forged = receipt(&exec, "job-4", ComputeClass::S, now_ms(), 0x33);
    forged.signature.0[0] ^= 1;
    assert_eq!(
        reexecuted(&mut b, &forged, forged.receipt.runtime_hash, None),
        ExecdResponse::Error(RemoteError::NotPermitted)
    );
    // Nor does one of another class.
    let m = receipt(&exec, "job-5", ComputeClass::M, now_ms(), 0x33);
    assert_eq!(
        reexecuted(&mut b, &m, m.receipt.runtime_hash, None),
        ExecdResponse::Error(RemoteError::NotPermitted)
    );
}

fn settlement(epoch: u64, root: u8) -> EpochSettlement {
    EpochSettlement {
        compute_class: ComputeClass::S,
        epoch,
        receipts_root: Hash32([root; 32]),
        receipt_count: 3,
        liveness_root: Hash32([0; 32]),
        liveness_count: 0,
        committee_root: Hash32([1; 32]),
    }
}

#[test]
fn a_validator_votes_once_per_epoch_across_restarts() {
    let mut b = booted("validator");
    let vote = |b: &mut Booted, s: EpochSettlement| {
        b.svc.handle_netd(NetdAttestRequest::Vote(Box::new(s)))
    };
    let first = match vote(&mut b, settlement(7, 1)) {
        NetdAttestResponse::Vote(v) => *v,
        other => panic!("vote: {other:?}"),
    };
    assert!(sig::verify(&b.node, &first.settlement, &first.signature));
    assert_eq!(
        vote(&mut b, settlement(7, 2)),
        NetdAttestResponse::Error(RemoteError::AlreadySigned)
    );
    drop(std::mem::replace(&mut b.svc, start(&b.cfg).0));
    assert_eq!(
        vote(&mut b, settlement(7, 2)),
        NetdAttestResponse::Error(RemoteError::AlreadySigned),
        "a restart must not forget the vote"
    );
    assert_eq!(
        vote(&mut b, settlement(7, 1)),
        NetdAttestResponse::Vote(Box::new(first))
    );
    assert!(matches!(
        vote(&mut b, settlement(8, 2)),
        NetdAttestResponse::Vote(_)
    ));
    let mut other_class = settlement(9, 1);
    other_class.compute_class = ComputeClass::L;
    assert_eq!(
        vote(&mut b, other_class),
        NetdAttestResponse::Error(RemoteError::NotPermitted)
    );
}

#[test]
fn an_execution_node_neither_votes_nor_draws_nor_judges() {
    let mut b = booted("execution");
    assert_eq!(
        b.svc
            .handle_netd(NetdAttestRequest::Vote(Box::new(settlement(1, 1)))),
        NetdAttestResponse::Error(RemoteError::NotPermitted)
    );
    assert_eq!(
        b.svc.handle_netd(NetdAttestRequest::Lottery {
            receipt_digest: Hash32([3; 32])
        }),
        NetdAttestResponse::Error(RemoteError::NotPermitted)
    );
    let r = receipt(&key(9), "job-1", ComputeClass::S, now_ms(), 0x33);
    assert_eq!(
        reexecuted(&mut b, &r, r.receipt.runtime_hash, None),
        ExecdResponse::Error(RemoteError::NotPermitted)
    );
}

#[test]
fn the_manifest_quote_binds_the_manifest_and_a_peer_verifies_it() {
    let mut b = booted("validator");
    let peer = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20, 0x77];
    let m = match b.svc.handle_netd(NetdAttestRequest::MeshManifest {
        peer_id: heapless::Vec::from_slice(&peer).unwrap(),
    }) {
        NetdAttestResponse::MeshManifest(m) => *m,
        other => panic!("manifest: {other:?}"),
    };
    assert_eq!(m.manifest.node, b.node);
    assert_eq!(m.manifest.role, Role::Validator);
    assert_eq!(m.manifest.weight, 1, "one validator, one vote in the mesh");
    assert_ne!(
        m.manifest.chain_account, [0; 20],
        "the manifest names the chain account"
    );
    assert_eq!(m.quote.nonce, m.manifest.signing_digest());
    // Another node's view accepts it: the swtpm quote verifies and binds this manifest.
    let mut view = MeshState::new(MeshParams::default(), havn_attest::Policy::default());
    let v = view
        .on_manifest(&bytes(&m), now_ms())
        .expect("a peer accepts the manifest");
    assert_eq!(view.node_of_peer(&peer), Some(b.node));
    assert_eq!(v.get().manifest.compute_class, ComputeClass::S);
    // The lottery ticket is the node key's, checkable by anyone.
    let d = Hash32([5; 32]);
    match b
        .svc
        .handle_netd(NetdAttestRequest::Lottery { receipt_digest: d })
    {
        NetdAttestResponse::Ticket(t) => {
            assert!(lottery::verify_draw(&b.node, &d, &t, u64::MAX >> 1));
        }
        other => panic!("ticket: {other:?}"),
    }
}

#[test]
fn a_challenge_is_signed_only_with_a_rejection_naming_its_node_and_openings_that_hold() {
    let mut b = booted("validator");
    let exec = key(9);
    // fixtures::challenge: a 5-leaf DAG, node 3 divergent, node 1 its parent.
    let c = havn_mesh::fixtures::challenge(&key(1), &exec, ComputeClass::S).challenge;
    let r = c.receipt.clone();
    let ask = |b: &mut Booted, first: u32, c: havn_proto::mesh::Challenge| {
        b.svc
            .handle_execd(ExecdRequest::Reexecuted(Box::new(Reexecution {
                receipt: r.clone(),
                runtime_hash: Hash32([0x99; 32]),
                first_divergent: Some(first),
                challenge: Some(c),
            })))
    };
    // Naming another node than the challenge opens: refused, nothing recorded.
    assert_eq!(
        ask(&mut b, 2, c.clone()),
        ExecdResponse::Error(RemoteError::BadRequest)
    );
    let mut bent = c.clone();
    bent.divergent.path[0].1 ^= true;
    assert_eq!(
        ask(&mut b, 3, bent),
        ExecdResponse::Error(RemoteError::BadRequest)
    );
    match ask(&mut b, 3, c) {
        ExecdResponse::Verdict(j) => {
            let ch = j
                .challenge
                .expect("the challenge is signed with the rejection");
            assert_eq!(
                ch.challenge.challenger, b.node,
                "attestd names itself the challenger"
            );
            assert!(sig::verify(&b.node, &ch.challenge, &ch.signature));
            assert_eq!(j.verdict.verdict.outcome, VerdictOutcome::Reject);
            // What the committee checks of it holds.
            havn_mesh::state::check_openings(&ch.challenge).unwrap();
        }
        other => panic!("challenge: {other:?}"),
    }
}
