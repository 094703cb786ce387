//! Epoch settlements and their quorum certificates: building a settlement from what a
//! validator confirmed, collecting votes until ≥ 2/3 of the committee's weight signed,
//! checking a certificate offline, and proving a receipt's (or a node's liveness
//! leaf's) place in one.

use crate::sig;
use havn_proto::merkle;
use havn_proto::mesh::{
    committee_root, liveness_leaf, CommitteeMember, EpochSettlement, InclusionProof,
    SettlementCertificate, MAX_COMMITTEE, MAX_PATH,
};
use havn_proto::sign::Signable;
use havn_proto::{ComputeClass, Hash32, NodeId, Sig64};
use std::collections::BTreeMap;

/// Why a certificate does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettleError {
    /// The committee listed is not the one the settlement commits to.
    #[error("the committee does not match the settlement's committee root")]
    CommitteeMismatch,
    /// The committee is not the one the verifier expects.
    #[error("the settlement's committee root {got} is not the expected {want}")]
    UnexpectedCommittee {
        /// In the certificate.
        got: Hash32,
        /// Expected.
        want: Hash32,
    },
    /// A committee with no weight.
    #[error("the committee has no weight")]
    EmptyCommittee,
    /// A signature names no committee member.
    #[error("signature {0} names no committee member")]
    UnknownSigner(u16),
    /// Signer indices must increase (each member counted once).
    #[error("signer indices are not strictly increasing at {0}")]
    OutOfOrder(u16),
    /// A signature does not verify.
    #[error("committee member {0}'s signature does not verify")]
    BadSignature(u16),
    /// Not enough weight signed.
    #[error("signed weight {signed} of {total} is under two thirds")]
    NoQuorum {
        /// Signed.
        signed: u128,
        /// Total.
        total: u128,
    },
    /// A vote for another settlement, or from outside the committee.
    #[error("the vote is not for this settlement by a committee member")]
    ForeignVote,
}

/// Whether `signed` is at least two thirds of `total` (exact, in integers).
pub fn has_quorum(signed: u128, total: u128) -> bool {
    total > 0 && signed.saturating_mul(3) >= total.saturating_mul(2)
}

fn total_weight(committee: &[CommitteeMember]) -> u128 {
    committee.iter().map(|m| u128::from(m.weight)).sum()
}

fn leaves(h: &[Hash32]) -> Vec<[u8; 32]> {
    h.iter().map(|x| x.0).collect()
}

/// The liveness leaves of a set, in node order.
fn liveness_leaves(liveness: &BTreeMap<NodeId, bool>) -> Vec<[u8; 32]> {
    liveness
        .iter()
        .map(|(n, l)| liveness_leaf(n, *l).0)
        .collect()
}

/// Builds the settlement: receipts (digests; sorted and deduplicated here), the
/// liveness of every known node, and the committee that will sign.
pub fn build(
    class: ComputeClass,
    epoch: u64,
    receipts: &[Hash32],
    liveness: &BTreeMap<NodeId, bool>,
    committee: &[CommitteeMember],
) -> (EpochSettlement, Vec<Hash32>) {
    let mut sorted = receipts.to_vec();
    sorted.sort();
    sorted.dedup();
    let s = EpochSettlement {
        compute_class: class,
        epoch,
        receipts_root: Hash32(merkle::merkle_root(&leaves(&sorted))),
        receipt_count: u32::try_from(sorted.len()).unwrap_or(u32::MAX),
        liveness_root: Hash32(merkle::merkle_root(&liveness_leaves(liveness))),
        liveness_count: u32::try_from(liveness.len()).unwrap_or(u32::MAX),
        committee_root: committee_root(committee),
    };
    (s, sorted)
}

fn proof(values: &[[u8; 32]], index: usize) -> Option<InclusionProof> {
    let mut path = heapless::Vec::<(Hash32, bool), MAX_PATH>::new();
    for (h, l) in merkle::merkle_path(values, index) {
        path.push((Hash32(h), l)).ok()?;
    }
    Some(InclusionProof {
        index: u32::try_from(index).ok()?,
        path,
    })
}

/// A receipt's inclusion proof in the sorted receipts a settlement was built from.
pub fn inclusion_proof(sorted: &[Hash32], digest: &Hash32) -> Option<InclusionProof> {
    let i = sorted.binary_search(digest).ok()?;
    proof(&leaves(sorted), i)
}

fn verify_leaf(root: &Hash32, count: u32, leaf: &Hash32, p: &InclusionProof) -> bool {
    let path: Vec<([u8; 32], bool)> = p.path.iter().map(|(h, l)| (h.0, *l)).collect();
    match (usize::try_from(p.index), usize::try_from(count)) {
        (Ok(i), Ok(n)) => merkle::verify_path(&root.0, &leaf.0, i, n, &path),
        _ => false,
    }
}

/// Whether `proof` places the receipt digest in the settlement.
pub fn verify_inclusion(s: &EpochSettlement, digest: &Hash32, proof: &InclusionProof) -> bool {
    verify_leaf(&s.receipts_root, s.receipt_count, digest, proof)
}

/// A node's liveness leaf and its proof.
pub fn liveness_proof(
    liveness: &BTreeMap<NodeId, bool>,
    node: &NodeId,
) -> Option<(bool, InclusionProof)> {
    let i = liveness.keys().position(|n| n == node)?;
    let live = *liveness.get(node)?;
    Some((live, proof(&liveness_leaves(liveness), i)?))
}

/// Whether `proof` shows the node's liveness leaf `(node, live)` in the settlement.
pub fn verify_liveness(
    s: &EpochSettlement,
    node: &NodeId,
    live: bool,
    proof: &InclusionProof,
) -> bool {
    verify_leaf(
        &s.liveness_root,
        s.liveness_count,
        &liveness_leaf(node, live),
        proof,
    )
}

/// Votes on one settlement, until they form a certificate.
#[derive(Debug, Clone)]
pub struct Quorum {
    settlement: EpochSettlement,
    committee: Vec<CommitteeMember>,
    votes: BTreeMap<u16, Sig64>,
}

impl Quorum {
    /// Collects votes on `settlement` from `committee` (whose root it must commit to).
    pub fn new(
        settlement: EpochSettlement,
        committee: Vec<CommitteeMember>,
    ) -> Result<Self, SettleError> {
        if committee_root(&committee) != settlement.committee_root
            || committee.len() > MAX_COMMITTEE
        {
            return Err(SettleError::CommitteeMismatch);
        }
        Ok(Self {
            settlement,
            committee,
            votes: BTreeMap::new(),
        })
    }

    /// The settlement voted on.
    pub fn settlement(&self) -> &EpochSettlement {
        &self.settlement
    }

    /// Adds a vote; returns the certificate once the votes hold ≥ 2/3 of the weight.
    pub fn add(
        &mut self,
        settlement: &EpochSettlement,
        validator: &NodeId,
        signature: &Sig64,
    ) -> Result<Option<SettlementCertificate>, SettleError> {
        if *settlement != self.settlement {
            return Err(SettleError::ForeignVote);
        }
        let idx = self
            .committee
            .iter()
            .position(|m| m.node == *validator)
            .and_then(|i| u16::try_from(i).ok())
            .ok_or(SettleError::ForeignVote)?;
        if !sig::verify(validator, settlement, signature) {
            return Err(SettleError::BadSignature(idx));
        }
        self.votes.insert(idx, *signature);
        Ok(self.certificate())
    }

    /// The certificate, if the votes so far hold a quorum.
    pub fn certificate(&self) -> Option<SettlementCertificate> {
        let signed: u128 = self
            .votes
            .keys()
            .filter_map(|i| self.committee.get(usize::from(*i)))
            .map(|m| u128::from(m.weight))
            .sum();
        if !has_quorum(signed, total_weight(&self.committee)) {
            return None;
        }
        Some(SettlementCertificate {
            settlement: self.settlement.clone(),
            committee: heapless::Vec::from_slice(&self.committee).ok()?,
            signatures: self.votes.iter().map(|(i, s)| (*i, *s)).collect(),
        })
    }
}

/// Checks a certificate offline: the committee is the one committed to (and, when
/// given, the one expected), every signature is a distinct member's over the
/// settlement, and the signers hold ≥ 2/3 of the weight. Returns the signed weight.
pub fn verify_certificate(
    cert: &SettlementCertificate,
    expected_committee: Option<&Hash32>,
) -> Result<u128, SettleError> {
    let s = &cert.settlement;
    if committee_root(&cert.committee) != s.committee_root {
        return Err(SettleError::CommitteeMismatch);
    }
    if let Some(want) = expected_committee {
        if *want != s.committee_root {
            return Err(SettleError::UnexpectedCommittee {
                got: s.committee_root,
                want: *want,
            });
        }
    }
    let total = total_weight(&cert.committee);
    if total == 0 {
        return Err(SettleError::EmptyCommittee);
    }
    let digest = s.signing_digest();
    let mut items = Vec::with_capacity(cert.signatures.len());
    let mut last: Option<u16> = None;
    let mut signed: u128 = 0;
    for (i, sig) in &cert.signatures {
        if last.is_some_and(|l| *i <= l) {
            return Err(SettleError::OutOfOrder(*i));
        }
        last = Some(*i);
        let m = cert
            .committee
            .get(usize::from(*i))
            .ok_or(SettleError::UnknownSigner(*i))?;
        signed = signed.saturating_add(u128::from(m.weight));
        items.push(sig::Item {
            node: m.node,
            digest,
            sig: *sig,
        });
    }
    if let Some(bad) = sig::verify_batch(&items)
        .iter()
        .zip(&cert.signatures)
        .find(|(ok, _)| !**ok)
    {
        return Err(SettleError::BadSignature(bad.1 .0));
    }
    if !has_quorum(signed, total) {
        return Err(SettleError::NoQuorum { signed, total });
    }
    Ok(signed)
}
