//! The node's ed25519 key (seed held in zeroizing memory) and signing.

use crate::records::{NotSafe, RecordStore, Recorded};
use ed25519_dalek::{Signer, SigningKey};
use zeroize::Zeroizing;

/// The unsealed node signing key. Its seed is wiped on drop.
pub struct NodeKey {
    key: SigningKey,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeKey({})", hex::encode(self.public()))
    }
}

impl NodeKey {
    pub(crate) fn from_seed(seed: &Zeroizing<[u8; 32]>) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The secret seed, for tests that check it never crosses the TPM bus in the
    /// clear (only with the `testing` feature).
    #[cfg(feature = "testing")]
    pub fn seed_for_tests(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The ed25519 public key.
    pub fn public(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Sign `sha3-256(domain_tag ‖ 0x00 ‖ bytes)` (see [`havn_attest::domain_digest`]).
    pub fn sign(&self, domain_tag: &[u8], bytes: &[u8]) -> [u8; 64] {
        self.key
            .sign(&havn_attest::domain_digest(domain_tag, bytes))
            .to_bytes()
    }

    /// A Standard Webhooks `v1a` signature: Ed25519 over `content` itself, as that
    /// scheme defines it (`{id}.{timestamp}.{body}`). Every other node signature is over
    /// a 32-byte domain digest; webhook content is longer than 32 bytes by construction
    /// (attestd checks its shape), so the two can never be confused.
    pub fn sign_webhook(&self, content: &[u8]) -> Option<[u8; 64]> {
        (content.len() > 32).then(|| self.key.sign(content).to_bytes())
    }

    /// Slashing-protected signing, the one path every receipt signature takes: record
    /// `receipt` for `job_id` durably, refusing a different receipt for a job already
    /// signed, then sign `receipt` under `domain_tag`.
    pub fn sign_receipt(
        &self,
        store: &mut RecordStore,
        domain_tag: &[u8],
        job_id: &[u8],
        receipt: &[u8],
    ) -> Result<([u8; 64], Recorded), NotSafe> {
        let rec = store.check_and_record(job_id, receipt)?;
        Ok((self.sign(domain_tag, receipt), rec))
    }
}

/// Verify a node signature made by [`NodeKey::sign`].
pub fn verify_node_signature(
    public: &[u8; 32],
    domain_tag: &[u8],
    bytes: &[u8],
    sig: &[u8; 64],
) -> bool {
    let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(public) else {
        return false;
    };
    vk.verify_strict(
        &havn_attest::domain_digest(domain_tag, bytes),
        &ed25519_dalek::Signature::from_bytes(sig),
    )
    .is_ok()
}
