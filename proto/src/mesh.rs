//! The validator mesh's gossip messages: topics, their size limits, and the signed
//! bodies that travel on them (postcard, bounded like every wire type).
//!
//! Receipts ([`crate::SignedReceipt`]) and heartbeats ([`crate::SignedHeartbeat`])
//! travel as they are; the types here are what only the mesh needs: the manifest that
//! binds a node's libp2p peer id to its attested node key, validators' verdicts and
//! challenges, epoch settlements and their quorum certificates, and the evidence that
//! slashing and quarantine act on. Tensors and proofs never ride gossip.

use crate::bytes::{Hash32, Sig64};
use crate::sign::{Domain, Signable};
use crate::types::{ComputeClass, NodeId, QuoteEvidence, SignedReceipt};
use serde::{Deserialize, Serialize};

/// Longest libp2p peer id (the multihash of an ed25519 public key is 38 bytes).
pub const MAX_PEER_ID: usize = 64;
/// Most validators in one committee.
pub const MAX_COMMITTEE: usize = 64;
/// Longest Merkle path (a tree of up to 2^32 leaves).
pub const MAX_PATH: usize = 32;
/// Most DAG-node commitments a challenge carries (the divergent node and its parents).
pub const MAX_CHALLENGE_OPENINGS: usize = 8;

/// What a node does in the mesh.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, postcard_schema::Schema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs jobs and gossips their receipts.
    Execution,
    /// Validates gossip, samples, re-executes, challenges and signs verdicts and
    /// epoch settlements.
    Validator,
}

/// A gossipsub topic. Receipts and verdicts are segmented by compute class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// `/havn/1/receipt/{class}`: [`crate::SignedReceipt`].
    Receipt(ComputeClass),
    /// `/havn/1/verdict/{class}`: [`VerdictMessage`].
    Verdict(ComputeClass),
    /// `/havn/1/challenge`: [`SignedChallenge`].
    Challenge,
    /// `/havn/1/heartbeat`: [`crate::SignedHeartbeat`].
    Heartbeat,
    /// `/havn/1/manifest`: [`SignedMeshManifest`].
    Manifest,
}

impl Topic {
    /// Every topic.
    pub const ALL: [Topic; 11] = [
        Topic::Receipt(ComputeClass::S),
        Topic::Receipt(ComputeClass::M),
        Topic::Receipt(ComputeClass::L),
        Topic::Receipt(ComputeClass::XL),
        Topic::Verdict(ComputeClass::S),
        Topic::Verdict(ComputeClass::M),
        Topic::Verdict(ComputeClass::L),
        Topic::Verdict(ComputeClass::XL),
        Topic::Challenge,
        Topic::Heartbeat,
        Topic::Manifest,
    ];

    /// The topic string other implementations subscribe to.
    pub const fn name(self) -> &'static str {
        use ComputeClass::*;
        match self {
            Topic::Receipt(S) => "/havn/1/receipt/S",
            Topic::Receipt(M) => "/havn/1/receipt/M",
            Topic::Receipt(L) => "/havn/1/receipt/L",
            Topic::Receipt(XL) => "/havn/1/receipt/XL",
            Topic::Verdict(S) => "/havn/1/verdict/S",
            Topic::Verdict(M) => "/havn/1/verdict/M",
            Topic::Verdict(L) => "/havn/1/verdict/L",
            Topic::Verdict(XL) => "/havn/1/verdict/XL",
            Topic::Challenge => "/havn/1/challenge",
            Topic::Heartbeat => "/havn/1/heartbeat",
            Topic::Manifest => "/havn/1/manifest",
        }
    }

    /// The topic a string names, if any.
    pub fn parse(s: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The largest message accepted on the topic, in bytes: a bound above the largest
    /// well-formed message, checked before decoding.
    pub const fn max_size(self) -> usize {
        match self {
            Topic::Receipt(_) => 1024,
            Topic::Verdict(_) => 1024,
            Topic::Challenge => 4096,
            Topic::Heartbeat => 256,
            // A manifest carries a TPM quote with its measurement log.
            Topic::Manifest => 64 * 1024,
        }
    }
}

/// What a node announces on `/havn/1/manifest`: its libp2p peer id, node key, role,
/// compute class and weight, signed by the node key (which only attestd holds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct MeshManifest {
    /// The attested node key.
    pub node: NodeId,
    /// The libp2p peer id (its multihash bytes) the node gossips from.
    pub peer_id: heapless::Vec<u8, MAX_PEER_ID>,
    /// Execution node or validator.
    pub role: Role,
    /// The class it serves (an execution node) or validates (a validator).
    pub compute_class: ComputeClass,
    /// Voting weight in the mesh's own certificates: 1 per validator. Stake weighting
    /// happens on chain, where StakeGuard counts bonded stake behind chain-key votes.
    pub weight: u64,
    /// The node's chain account (bound to this node key in StakeGuard).
    pub chain_account: crate::chain::Account,
    /// attestd's clock when it signed, Unix ms.
    pub unix_ms: u64,
}

/// A [`MeshManifest`] with the node key's signature and a TPM quote whose nonce is the
/// manifest's signing digest: the quote binds the node key (in extraData) to this
/// manifest, so one message proves who the peer is and what software it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct SignedMeshManifest {
    /// The manifest.
    pub manifest: MeshManifest,
    /// Node-key signature over [`Domain::MeshManifest`].
    pub signature: Sig64,
    /// The quote, with nonce = `manifest.signing_digest()`.
    pub quote: Box<QuoteEvidence>,
}

/// A validator's outcome on a receipt.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, postcard_schema::Schema,
)]
#[serde(rename_all = "snake_case")]
pub enum VerdictOutcome {
    /// Re-execution gave the committed result.
    Confirm,
    /// Re-execution diverged at `first_divergent`: stake at risk.
    Reject,
    /// Could not decide (e.g. inputs unavailable).
    Abstain,
}

/// A validator's verdict, assembled by its attestd from its execd's re-execution
/// result (netd cannot forge one) and signed under slashing protection: never two
/// different verdicts for one receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct Verdict {
    /// Who votes.
    pub validator: NodeId,
    /// The judged receipt's signing digest.
    pub receipt_digest: Hash32,
    /// The node that signed the receipt.
    pub node: NodeId,
    /// Its class.
    pub compute_class: ComputeClass,
    /// Its epoch.
    pub epoch: u64,
    /// Outcome.
    pub outcome: VerdictOutcome,
    /// The first DAG node whose output diverged (a rejection), by leaf index.
    pub first_divergent: Option<u32>,
}

/// A [`Verdict`] with the validator's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct SignedVerdict {
    /// The verdict.
    pub verdict: Verdict,
    /// Signature over [`Domain::Verdict`].
    pub signature: Sig64,
}

/// One DAG node's output commitment opened against a receipt's Merkle root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct Opening {
    /// Leaf index (topological order).
    pub index: u32,
    /// The committed output hash.
    pub hash: Hash32,
    /// Its sibling path: (sibling, sibling is on the left), bottom up.
    pub path: heapless::Vec<(Hash32, bool), MAX_PATH>,
}

/// A challenge: the challenger re-executed the receipt's job and names the first DAG
/// node whose output diverged. Its parents' openings are what the challenger's run
/// agreed with; the committee re-executes only that node from them. One message, no
/// bisection rounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct Challenge {
    /// Who challenges.
    pub challenger: NodeId,
    /// The receipt challenged, as the node signed it.
    pub receipt: SignedReceipt,
    /// The Merkle root under the receipt's runtime hash.
    pub merkle_root: Hash32,
    /// Leaves in the tree.
    pub leaves: u32,
    /// The divergent node's commitment, as the executing node made it.
    pub divergent: Opening,
    /// The output hash the challenger's re-execution gave for that node.
    pub recomputed: Hash32,
    /// The divergent node's parents' commitments (which the challenger's run matched).
    pub parents: heapless::Vec<Opening, MAX_CHALLENGE_OPENINGS>,
    /// The challenge's epoch.
    pub epoch: u64,
}

/// A [`Challenge`] with the challenger's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct SignedChallenge {
    /// The challenge.
    pub challenge: Challenge,
    /// Signature over [`Domain::Challenge`].
    pub signature: Sig64,
}

/// One committee member: a validator's node key and its voting weight.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, postcard_schema::Schema,
)]
pub struct CommitteeMember {
    /// The validator.
    pub node: NodeId,
    /// Its weight (bonded stake).
    pub weight: u64,
}

/// What a committee settles for one class and epoch: the receipts confirmed or left
/// unchallenged in the window (a Merkle root over their signing digests, sorted), and
/// liveness (a Merkle root over `sha3(node ‖ live)` for every known node, sorted by
/// node, so a node's absence can be proved as well as its presence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct EpochSettlement {
    /// Compute class.
    pub compute_class: ComputeClass,
    /// Epoch number.
    pub epoch: u64,
    /// Root over the settled receipts' digests.
    pub receipts_root: Hash32,
    /// How many receipts.
    pub receipt_count: u32,
    /// Root over the liveness leaves.
    pub liveness_root: Hash32,
    /// How many liveness leaves.
    pub liveness_count: u32,
    /// The committee that signs (its [`committee_root`]).
    pub committee_root: Hash32,
}

/// A validator's signature on an [`EpochSettlement`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct SettlementVote {
    /// The settlement.
    pub settlement: EpochSettlement,
    /// Who signs.
    pub validator: NodeId,
    /// Signature over [`Domain::Settlement`].
    pub signature: Sig64,
}

/// A settlement with signatures from committee members holding ≥ 2/3 of its weight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct SettlementCertificate {
    /// The settlement.
    pub settlement: EpochSettlement,
    /// The committee, in the order its root commits to.
    pub committee: heapless::Vec<CommitteeMember, MAX_COMMITTEE>,
    /// (committee index, signature), by increasing index.
    pub signatures: heapless::Vec<(u16, Sig64), MAX_COMMITTEE>,
}

/// A receipt's position in a settlement's receipts tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct InclusionProof {
    /// Leaf index (receipt digests sorted ascending).
    pub index: u32,
    /// Sibling path.
    pub path: heapless::Vec<(Hash32, bool), MAX_PATH>,
}

/// Two receipts one node signed for the same job with different results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct EquivocationEvidence {
    /// The first receipt seen.
    pub first: SignedReceipt,
    /// The conflicting one.
    pub second: SignedReceipt,
}

/// A challenge upheld by committee members holding ≥ 2/3 of its weight: what
/// slashing acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct SlashingEvidence {
    /// The challenge.
    pub challenge: SignedChallenge,
    /// The committee that judged it.
    pub committee: heapless::Vec<CommitteeMember, MAX_COMMITTEE>,
    /// Its members' `Reject` verdicts naming the challenged node.
    pub upholding: heapless::Vec<SignedVerdict, MAX_COMMITTEE>,
}

/// Consecutive certified epochs in which a node was not live: what quarantine acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct QuarantineEvidence {
    /// The node.
    pub node: NodeId,
    /// For each epoch: its certificate and the proof of the leaf `(node, not live)`.
    pub epochs: heapless::Vec<(SettlementCertificate, InclusionProof), 3>,
}

/// What travels on `/havn/1/verdict/{class}`.
#[allow(clippy::large_enum_variant)] // bounded; decoded one at a time
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub enum VerdictMessage {
    /// A verdict on one receipt.
    Verdict(SignedVerdict),
    /// A vote on an epoch settlement.
    Vote(SettlementVote),
    /// A validator's chain-key signature on a quorum message (a settlement's payout
    /// root, a quarantine, a challenge's outcome), gossiped so that any validator can
    /// assemble the certificate the contracts check.
    ChainVote(Box<ChainVoteMessage>),
}

/// See [`VerdictMessage::ChainVote`]. Receivers check that `signature` recovers to
/// `signer` over the EIP-712 digest of `vote` and that `signer` is the chain account
/// `validator`'s attested manifest names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct ChainVoteMessage {
    /// The validator (mesh identity).
    pub validator: NodeId,
    /// What it votes for.
    pub vote: crate::chain::ChainVote,
    /// Its chain account and signature.
    pub signature: crate::chain::ChainSignature,
}

/// The root a committee list commits to: the Merkle root over
/// `sha3("havn/committee/v1" ‖ 0 ‖ node ‖ weight LE)` in list order.
pub fn committee_root(committee: &[CommitteeMember]) -> Hash32 {
    let leaves: Vec<[u8; 32]> = committee
        .iter()
        .map(|m| {
            let mut b = [0u8; 40];
            let (k, w) = b.split_at_mut(32);
            k.copy_from_slice(&m.node.0 .0);
            w.copy_from_slice(&m.weight.to_le_bytes());
            crate::sign::tagged_digest(b"havn/committee/v1", &b).0
        })
        .collect();
    Hash32(crate::merkle::merkle_root(&leaves))
}

/// A liveness leaf: `sha3("havn/liveness/v1" ‖ 0 ‖ node ‖ live)`.
pub fn liveness_leaf(node: &NodeId, live: bool) -> Hash32 {
    let mut b = [0u8; 33];
    let (k, l) = b.split_at_mut(32);
    k.copy_from_slice(&node.0 .0);
    l.fill(u8::from(live));
    crate::sign::tagged_digest(b"havn/liveness/v1", &b)
}

impl Signable for MeshManifest {
    const DOMAIN: Domain = Domain::MeshManifest;
}
impl Signable for Verdict {
    const DOMAIN: Domain = Domain::Verdict;
}
impl Signable for Challenge {
    const DOMAIN: Domain = Domain::Challenge;
}
impl Signable for EpochSettlement {
    const DOMAIN: Domain = Domain::Settlement;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_round_trip_and_are_distinct() {
        for t in Topic::ALL {
            assert_eq!(Topic::parse(t.name()), Some(t), "{t:?}");
        }
        assert_eq!(Topic::parse("/havn/1/receipt/s"), None);
        assert_eq!(Topic::parse("havn/receipts/S/v1"), None);
    }
}
