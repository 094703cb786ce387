//! Gossip validation as a chain of types (Lighthouse's `attestation_verification.rs`
//! is the model). A message climbs one stage at a time, and only a [`Verified`] value,
//! which nothing outside this module can build, reaches sampling, quorum or storage:
//!
//! 1. size (before decoding), decode (no trailing bytes), class matches topic → Reject;
//! 2. epoch window → Ignore;
//! 3. seen cache: the same receipt again → Ignore (honest-but-late, never penalised);
//! 4. unknown node → Ignore and fetch its manifest; quarantined → Reject;
//! 5. signature (batched over what is queued) → Reject;
//! 6. the same job with a different result → dropped unforwarded, and the two signed
//!    receipts are kept as equivocation evidence. This comes after the signature check
//!    so that a forged second receipt can never frame an honest node; and gossipsub is
//!    told Ignore, not Reject, so an honest peer that forwarded the other half first is
//!    not penalised (the signer answers for it through the evidence).
//!
//! Every [`Rejection`] maps to an [`Action`] and a [`Penalty`] in matches with no
//! wildcard, so a new rejection cannot be added without deciding both.

use crate::params::MeshParams;
use crate::sig;
use crate::MeshState;
use havn_proto::mesh::{EquivocationEvidence, Role, Topic};
use havn_proto::sign::Signable;
use havn_proto::{ComputeClass, Hash32, NodeId};
use serde::de::DeserializeOwned;

/// What gossipsub is told about a message that failed a check (one that passed every
/// check is a [`Verified`] value, and gossipsub is told Accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Drop, do not forward, do not penalise the peer.
    Ignore,
    /// Drop, do not forward, and penalise the peer (gossipsub's invalid-message score).
    Reject,
}

/// The application-specific score change for the peer that sent a rejected message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Penalty {
    /// None: the peer may be honest (late, or not yet told).
    None,
    /// The peer sent something no honest peer sends: one such message outweighs all
    /// positive score.
    Invalid,
}

/// Why a message was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Larger than the topic's bound (checked before decoding).
    #[error("{len} bytes is over the topic's {max}")]
    TooLarge {
        /// Size.
        len: usize,
        /// Bound.
        max: usize,
    },
    /// Not a canonical postcard encoding of the topic's type.
    #[error("undecodable: {0}")]
    Undecodable(String),
    /// A receipt or verdict of one class on another class's topic.
    #[error("a class {got:?} message on {topic}")]
    WrongTopic {
        /// The message's class.
        got: ComputeClass,
        /// The topic it came on.
        topic: &'static str,
    },
    /// Signed in an epoch before the window.
    #[error("epoch {epoch} is before the window (now epoch {now})")]
    TooOld {
        /// Its epoch.
        epoch: u64,
        /// The current epoch.
        now: u64,
    },
    /// Signed further in the future than clock skew explains.
    #[error("signed {ahead_ms} ms in the future")]
    FromTheFuture {
        /// How far ahead.
        ahead_ms: u64,
    },
    /// Seen before, identical.
    #[error("already seen")]
    Duplicate,
    /// The signer has no verified manifest here yet.
    #[error("node {0} is unknown here: its manifest is needed")]
    UnknownNode(NodeId),
    /// The signer is quarantined.
    #[error("node {0} is quarantined")]
    Quarantined(NodeId),
    /// The signature does not verify.
    #[error("the signature does not verify")]
    BadSignature,
    /// The node signed two different results for one job (evidence kept).
    #[error("equivocation: node signed two results for one job")]
    Equivocation(Box<EquivocationEvidence>),
    /// A verdict, vote or challenge from a node that is not a validator of the class.
    #[error("{0} is not a validator of this class")]
    NotOnCommittee(NodeId),
    /// A validator signed two different verdicts for one receipt.
    #[error("validator {0} signed two verdicts for one receipt")]
    DoubleVerdict(NodeId),
    /// A manifest whose quote does not bind its node key, or fails verification.
    #[error("quote: {0}")]
    BadQuote(String),
    /// A manifest older than the one on record.
    #[error("an older manifest than the one on record")]
    StaleManifest,
    /// A challenge whose proofs do not hold together.
    #[error("challenge: {0}")]
    BadChallenge(String),
    /// The seen cache is full for the window (a flood): dropped unforwarded.
    #[error("seen cache full")]
    Overloaded,
}

impl Rejection {
    /// What gossipsub is told. No wildcard: a new rejection must be decided here.
    pub fn action(&self) -> Action {
        match self {
            Rejection::TooLarge { .. }
            | Rejection::Undecodable(_)
            | Rejection::WrongTopic { .. }
            | Rejection::Quarantined(_)
            | Rejection::BadSignature
            | Rejection::NotOnCommittee(_)
            | Rejection::BadQuote(_)
            | Rejection::BadChallenge(_) => Action::Reject,
            // Not forwarded, but not a gossipsub Reject either: that would charge the
            // invalid-message penalty to an honest forwarder that saw the other half of
            // the equivocation first. The signer answers for it through the evidence.
            Rejection::Equivocation(_)
            | Rejection::DoubleVerdict(_)
            | Rejection::TooOld { .. }
            | Rejection::FromTheFuture { .. }
            | Rejection::Duplicate
            | Rejection::UnknownNode(_)
            | Rejection::StaleManifest
            | Rejection::Overloaded => Action::Ignore,
        }
    }

    /// The peer penalty. No wildcard.
    pub fn penalty(&self) -> Penalty {
        match self {
            Rejection::TooLarge { .. }
            | Rejection::Undecodable(_)
            | Rejection::WrongTopic { .. }
            | Rejection::BadSignature
            | Rejection::NotOnCommittee(_)
            | Rejection::BadQuote(_)
            | Rejection::BadChallenge(_) => Penalty::Invalid,
            // An honest forwarder may have accepted the other half of an equivocation
            // first: the signer answers for it (evidence), not the forwarder.
            Rejection::Equivocation(_)
            | Rejection::DoubleVerdict(_)
            // A forwarder may not know of the quarantine yet.
            | Rejection::Quarantined(_)
            | Rejection::TooOld { .. }
            | Rejection::FromTheFuture { .. }
            | Rejection::Duplicate
            | Rejection::UnknownNode(_)
            | Rejection::StaleManifest
            | Rejection::Overloaded => Penalty::None,
        }
    }

    /// A short stable label for metrics (`reason="..."`).
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::TooLarge { .. } => "too_large",
            Rejection::Undecodable(_) => "undecodable",
            Rejection::WrongTopic { .. } => "wrong_topic",
            Rejection::TooOld { .. } => "too_old",
            Rejection::FromTheFuture { .. } => "from_the_future",
            Rejection::Duplicate => "duplicate",
            Rejection::UnknownNode(_) => "unknown_node",
            Rejection::Quarantined(_) => "quarantined",
            Rejection::BadSignature => "bad_signature",
            Rejection::Equivocation(_) => "equivocation",
            Rejection::NotOnCommittee(_) => "not_on_committee",
            Rejection::DoubleVerdict(_) => "double_verdict",
            Rejection::BadQuote(_) => "bad_quote",
            Rejection::StaleManifest => "stale_manifest",
            Rejection::BadChallenge(_) => "bad_challenge",
            Rejection::Overloaded => "overloaded",
        }
    }
}

/// A message that passed every check. Only this module builds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified<T> {
    value: T,
    digest: Hash32,
}

impl<T> Verified<T> {
    pub(crate) fn new(value: T, digest: Hash32) -> Self {
        Self { value, digest }
    }

    /// The value.
    pub fn get(&self) -> &T {
        &self.value
    }

    /// The signing digest of its signed body (a receipt's digest for a receipt).
    pub fn digest(&self) -> Hash32 {
        self.digest
    }

    /// The value, leaving the verified world.
    pub fn into_inner(self) -> T {
        self.value
    }
}

/// Stage 1: the size bound, then a canonical postcard decoding with nothing left over.
pub fn decode<T: DeserializeOwned>(topic: Topic, bytes: &[u8]) -> Result<T, Rejection> {
    let max = topic.max_size();
    if bytes.len() > max {
        return Err(Rejection::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(Rejection::Undecodable(format!(
            "{} trailing bytes",
            rest.len()
        ))),
        Err(e) => Err(Rejection::Undecodable(e.to_string())),
    }
}

/// Stage 1 for class-segmented topics: the message's class must be the topic's.
pub fn class_matches(topic: Topic, got: ComputeClass) -> Result<(), Rejection> {
    match topic {
        Topic::Receipt(c) | Topic::Verdict(c) if c == got => Ok(()),
        _ => Err(Rejection::WrongTopic {
            got,
            topic: topic.name(),
        }),
    }
}

/// Stage 2: a message signed at `signed_ms` is in the window at `now_ms`.
pub fn in_window(params: &MeshParams, signed_ms: u64, now_ms: u64) -> Result<u64, Rejection> {
    let epoch = params.epoch_of(signed_ms);
    let now = params.epoch_of(now_ms);
    if signed_ms > now_ms.saturating_add(params.future_skew_ms) {
        return Err(Rejection::FromTheFuture {
            ahead_ms: signed_ms.saturating_sub(now_ms),
        });
    }
    if epoch.saturating_add(params.past_epochs) < now {
        return Err(Rejection::TooOld { epoch, now });
    }
    Ok(epoch)
}

/// Stage 2 for messages that name their epoch (verdicts, votes, challenges): one epoch
/// more of slack than receipts get, since they follow the receipts they judge.
pub fn epoch_in_window(params: &MeshParams, epoch: u64, now_ms: u64) -> Result<(), Rejection> {
    let now = params.epoch_of(now_ms);
    if epoch.saturating_add(params.past_epochs.saturating_add(1)) < now {
        return Err(Rejection::TooOld { epoch, now });
    }
    Ok(())
}

/// Stage 4: the signer is known and not quarantined.
pub fn known_node(state: &MeshState, node: &NodeId) -> Result<(), Rejection> {
    match state.node(node) {
        None => Err(Rejection::UnknownNode(*node)),
        Some(k) if k.quarantined => Err(Rejection::Quarantined(*node)),
        Some(_) => Ok(()),
    }
}

/// Stage 4 for validators' messages: a known validator of `class`.
pub fn known_validator(
    state: &MeshState,
    node: &NodeId,
    class: ComputeClass,
) -> Result<(), Rejection> {
    known_node(state, node)?;
    match state.node(node) {
        Some(k) if k.manifest.role == Role::Validator && k.manifest.compute_class == class => {
            Ok(())
        }
        _ => Err(Rejection::NotOnCommittee(*node)),
    }
}

/// Stage 5 for one message.
pub fn signature<T: Signable>(
    node: &NodeId,
    value: &T,
    sig: &havn_proto::Sig64,
) -> Result<Hash32, Rejection> {
    let digest = value.signing_digest();
    if sig::verify_digest(node, &digest, sig) {
        Ok(digest)
    } else {
        Err(Rejection::BadSignature)
    }
}
