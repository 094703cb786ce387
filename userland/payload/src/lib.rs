//! Encrypted job payloads. An orchestrator seals a job input to a node's payload key
//! (an X25519 key attestd makes once per boot, keeps sealed by the TPM, and binds into
//! every quote beside the node key), so only that attested machine can open it; only
//! execd opens it, in memory.
//!
//! The envelope (all integers big-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `HAVNENC1` |
//! | 2, 2, 2 | HPKE suite: KEM 0x0020 (DHKEM X25519 HKDF-SHA256), KDF 0x0001 (HKDF-SHA256), AEAD 0x0003 (ChaCha20-Poly1305) |
//! | 32 | the recipient's payload public key (so a node refuses another's before queueing) |
//! | 32 | `enc`, the HPKE encapsulated key |
//! | rest | the AEAD ciphertext and its 16-byte tag |
//!
//! HPKE base mode, `info = "havn/payload/v1" ‖ 0x00 ‖ recipient key`, and the 76-byte
//! header as the AEAD's associated data, so no header byte can change unnoticed.

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

/// The HPKE suite, as RFC 9180 names it.
pub const SUITE: &str = "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305";
/// The envelope's first bytes.
pub const MAGIC: &[u8; 8] = b"HAVNENC1";
/// KEM, KDF and AEAD ids (RFC 9180 §7).
pub const SUITE_IDS: [u16; 3] = [0x0020, 0x0001, 0x0003];
/// Header length: magic, suite, recipient, enc.
pub const HEADER: usize = 8 + 6 + 32 + 32;
/// AEAD tag length.
pub const TAG: usize = 16;
/// Domain of the HPKE `info`.
pub const INFO_TAG: &[u8] = b"havn/payload/v1";

type Kem = X25519HkdfSha256;

/// Why an envelope was not made or not opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The bytes do not start with the envelope magic.
    #[error("not an encrypted payload (no HAVNENC1 header)")]
    NotEnvelope,
    /// A header field is wrong or the envelope is too short.
    #[error("malformed encrypted payload: {0}")]
    Malformed(&'static str),
    /// Sealed to another key: another node's, or this node's from an earlier boot.
    #[error("payload sealed to payload key {sealed_to}, not this node's current key {ours} (another node's, or an earlier boot's: fetch a fresh quote and seal again)")]
    OtherRecipient {
        /// The key the envelope names (hex).
        sealed_to: String,
        /// This node's key (hex).
        ours: String,
    },
    /// The ciphertext or header was altered, or the key does not match.
    #[error("payload authentication failed")]
    Authentication,
    /// A public key that is not a valid X25519 point encoding.
    #[error("invalid payload public key")]
    BadKey,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The parsed header of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The recipient's payload public key.
    pub recipient: [u8; 32],
    /// The encapsulated key.
    pub enc: [u8; 32],
}

/// Whether `bytes` look like an envelope (its magic; nothing else checked).
pub fn is_envelope(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// Parses and checks an envelope's header (magic, suite, length), without opening it.
pub fn header(bytes: &[u8]) -> Result<Header, PayloadError> {
    if !is_envelope(bytes) {
        return Err(PayloadError::NotEnvelope);
    }
    if bytes.len() < HEADER + TAG {
        return Err(PayloadError::Malformed("shorter than its header and tag"));
    }
    for (i, want) in SUITE_IDS.iter().enumerate() {
        let at = 8 + 2 * i;
        let got = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        if got != *want {
            return Err(PayloadError::Malformed(
                "unsupported HPKE suite (want X25519 / HKDF-SHA256 / ChaCha20-Poly1305)",
            ));
        }
    }
    let mut recipient = [0u8; 32];
    recipient.copy_from_slice(&bytes[14..46]);
    let mut enc = [0u8; 32];
    enc.copy_from_slice(&bytes[46..78]);
    Ok(Header { recipient, enc })
}

fn info(recipient: &[u8; 32]) -> Vec<u8> {
    let mut v = Vec::with_capacity(INFO_TAG.len() + 33);
    v.extend_from_slice(INFO_TAG);
    v.push(0);
    v.extend_from_slice(recipient);
    v
}

fn header_bytes(recipient: &[u8; 32], enc: &[u8; 32]) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(MAGIC);
    for (i, id) in SUITE_IDS.iter().enumerate() {
        h[8 + 2 * i..10 + 2 * i].copy_from_slice(&id.to_be_bytes());
    }
    h[14..46].copy_from_slice(recipient);
    h[46..78].copy_from_slice(enc);
    h
}

/// Seals `plaintext` to the payload key `recipient`.
pub fn seal(recipient: &[u8; 32], plaintext: &[u8]) -> Result<Vec<u8>, PayloadError> {
    let pk =
        <Kem as hpke::Kem>::PublicKey::from_bytes(recipient).map_err(|_| PayloadError::BadKey)?;
    let (enc, mut ctx) = hpke::setup_sender::<ChaCha20Poly1305, HkdfSha256, Kem>(
        &OpModeS::Base,
        &pk,
        &info(recipient),
    )
    .map_err(|_| PayloadError::BadKey)?;
    let mut e = [0u8; 32];
    e.copy_from_slice(&enc.to_bytes());
    let h = header_bytes(recipient, &e);
    let ct = ctx
        .seal(plaintext, &h)
        .map_err(|_| PayloadError::Malformed("payload too long to seal"))?;
    let mut out = Vec::with_capacity(HEADER + ct.len());
    out.extend_from_slice(&h);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// A payload key pair (the private half zeroised on drop).
pub struct PayloadKey {
    sk: <Kem as hpke::Kem>::PrivateKey,
    pk: [u8; 32],
}

impl std::fmt::Debug for PayloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PayloadKey({})", hex(&self.pk))
    }
}

impl PayloadKey {
    /// A fresh random key pair (the OS RNG).
    pub fn generate() -> Self {
        let (sk, pk) = Kem::gen_keypair();
        let mut p = [0u8; 32];
        p.copy_from_slice(&pk.to_bytes());
        Self { sk, pk: p }
    }

    /// From the 32 private-key bytes (as [`PayloadKey::secret_bytes`] gave them).
    pub fn from_secret(bytes: &[u8]) -> Result<Self, PayloadError> {
        let sk =
            <Kem as hpke::Kem>::PrivateKey::from_bytes(bytes).map_err(|_| PayloadError::BadKey)?;
        let pk = Kem::sk_to_pk(&sk);
        let mut p = [0u8; 32];
        p.copy_from_slice(&pk.to_bytes());
        Ok(Self { sk, pk: p })
    }

    /// The public key orchestrators seal to.
    pub fn public(&self) -> [u8; 32] {
        self.pk
    }

    /// The private key's bytes, for sealing by the TPM or handing to execd in memory.
    pub fn secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.sk.to_bytes().to_vec())
    }

    /// Opens an envelope sealed to this key; the plaintext is zeroised on drop.
    pub fn open(&self, envelope: &[u8]) -> Result<Zeroizing<Vec<u8>>, PayloadError> {
        let h = header(envelope)?;
        if h.recipient != self.pk {
            return Err(PayloadError::OtherRecipient {
                sealed_to: hex(&h.recipient),
                ours: hex(&self.pk),
            });
        }
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&h.enc)
            .map_err(|_| PayloadError::Authentication)?;
        let mut ctx = hpke::setup_receiver::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeR::Base,
            &self.sk,
            &enc,
            &info(&self.pk),
        )
        .map_err(|_| PayloadError::Authentication)?;
        ctx.open(&envelope[HEADER..], &envelope[..HEADER])
            .map(Zeroizing::new)
            .map_err(|_| PayloadError::Authentication)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_payloads_open_only_with_their_key_and_unaltered() {
        let k = PayloadKey::generate();
        let env = seal(&k.public(), b"the prompt").unwrap();
        assert_eq!(&*k.open(&env).unwrap(), b"the prompt");
        assert_eq!(header(&env).unwrap().recipient, k.public());
        // Another node (or the next boot) cannot open it, and says why.
        let other = PayloadKey::generate();
        assert!(matches!(
            other.open(&env),
            Err(PayloadError::OtherRecipient { .. })
        ));
        // Every single-byte change after the magic fails authentication or the header
        // check; none opens.
        for i in 8..env.len() {
            let mut t = env.clone();
            t[i] ^= 0x01;
            let r = k.open(&t);
            assert!(r.is_err(), "byte {i} flipped and it still opened");
        }
        // A key restored from its secret bytes opens it.
        let back = PayloadKey::from_secret(&k.secret_bytes()).unwrap();
        assert_eq!(back.public(), k.public());
        assert_eq!(&*back.open(&env).unwrap(), b"the prompt");
    }

    #[test]
    fn hostile_envelopes_are_errors_not_panics() {
        let k = PayloadKey::generate();
        assert_eq!(k.open(b"plain text"), Err(PayloadError::NotEnvelope));
        assert!(matches!(
            k.open(b"HAVNENC1short"),
            Err(PayloadError::Malformed(_))
        ));
        let mut env = seal(&k.public(), b"x").unwrap();
        env[9] = 0x21;
        assert!(matches!(k.open(&env), Err(PayloadError::Malformed(_))));
        // Truncated anywhere: an error.
        let env = seal(&k.public(), b"0123456789").unwrap();
        for n in 0..env.len() {
            assert!(k.open(&env[..n]).is_err(), "truncated to {n} opened");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_refused_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let k = PayloadKey::generate();
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend_from_slice(&bytes);
            proptest::prop_assert!(k.open(&bytes).is_err());
            proptest::prop_assert!(k.open(&with_magic).is_err());
        }
    }
}
