//! Signing domains: every signature covers `sha3-256(tag ‖ 0x00 ‖ postcard(value))`,
//! with a distinct tag per message kind, so bytes signed as one kind can never be
//! replayed as another.

use crate::bytes::Hash32;
use crate::types::{CapabilityManifest, Heartbeat, Receipt, SelfAudit};
use serde::Serialize;
use sha3::{Digest, Sha3_256};

/// What a signature is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    /// A [`Receipt`].
    Receipt,
    /// A [`Heartbeat`].
    Heartbeat,
    /// A [`CapabilityManifest`].
    Capabilities,
    /// A validator's [`crate::mesh::Verdict`].
    Verdict,
    /// A [`crate::mesh::MeshManifest`].
    MeshManifest,
    /// A [`crate::mesh::Challenge`].
    Challenge,
    /// An [`crate::mesh::EpochSettlement`].
    Settlement,
    /// A validator's sampling lottery ticket over a receipt digest.
    Lottery,
    /// A self-audit proof-of-software record.
    SelfAudit,
    /// The TPM quote's extraData binding (nonce ‖ node key).
    QuoteBinding,
    /// A workflow manifest checksum.
    Manifest,
}

impl Domain {
    /// The domain tag.
    pub const fn tag(self) -> &'static [u8] {
        match self {
            Self::Receipt => b"havn/receipt/v1",
            Self::Heartbeat => b"havn/heartbeat/v2",
            Self::Capabilities => b"havn/capabilities/v1",
            Self::Verdict => b"havn/verdict/v2",
            Self::MeshManifest => b"havn/mesh-manifest/v1",
            Self::Challenge => b"havn/challenge/v1",
            Self::Settlement => b"havn/settlement/v1",
            Self::Lottery => b"havn/lottery/v1",
            Self::SelfAudit => b"havn/self-audit/v1",
            Self::QuoteBinding => b"havn/quote/v2",
            Self::Manifest => b"havn/manifest/v1",
        }
    }

    /// `sha3-256(tag ‖ 0x00 ‖ bytes)`.
    pub fn digest(self, bytes: &[u8]) -> Hash32 {
        tagged_digest(self.tag(), bytes)
    }

    /// The digest of a value's canonical postcard encoding.
    pub fn digest_value<T: Serialize + ?Sized>(self, value: &T) -> Result<Hash32, postcard::Error> {
        Ok(self.digest(&postcard::to_stdvec(value)?))
    }
}

/// The one signing rule: `sha3-256(tag ‖ 0x00 ‖ bytes)`.
pub fn tagged_digest(tag: &[u8], bytes: &[u8]) -> Hash32 {
    let mut h = Sha3_256::new();
    h.update(tag);
    h.update([0u8]);
    h.update(bytes);
    Hash32(h.finalize().into())
}

/// Values that are signed under a fixed domain.
pub trait Signable: Serialize {
    /// Their domain.
    const DOMAIN: Domain;

    /// The digest a signature covers.
    fn signing_digest(&self) -> Hash32 {
        // Serialising these bounded types into a Vec cannot fail.
        Self::DOMAIN
            .digest_value(self)
            .unwrap_or_else(|_| Self::DOMAIN.digest(&[]))
    }
}

impl Signable for Receipt {
    const DOMAIN: Domain = Domain::Receipt;
}
impl Signable for Heartbeat {
    const DOMAIN: Domain = Domain::Heartbeat;
}
impl Signable for CapabilityManifest {
    const DOMAIN: Domain = Domain::Capabilities;
}
impl Signable for SelfAudit {
    const DOMAIN: Domain = Domain::SelfAudit;
}

/// The quote's qualifying data:
/// `sha3-256("havn/quote/v2" ‖ 0x00 ‖ nonce ‖ node key ‖ payload key)`: a verified
/// quote vouches for both the node's signing key and the X25519 key its job payloads
/// are sealed to.
pub fn quote_binding(nonce: &[u8], node_key: &[u8; 32], payload_key: &[u8; 32]) -> Hash32 {
    let mut buf = Vec::with_capacity(nonce.len().saturating_add(64));
    buf.extend_from_slice(nonce);
    buf.extend_from_slice(node_key);
    buf.extend_from_slice(payload_key);
    Domain::QuoteBinding.digest(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_distinct() {
        let all = [
            Domain::Receipt,
            Domain::Heartbeat,
            Domain::Capabilities,
            Domain::Verdict,
            Domain::MeshManifest,
            Domain::Challenge,
            Domain::Settlement,
            Domain::Lottery,
            Domain::SelfAudit,
            Domain::QuoteBinding,
            Domain::Manifest,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.tag(), b.tag());
                assert_ne!(a.digest(b"x"), b.digest(b"x"), "{a:?} vs {b:?}");
            }
        }
    }
}
