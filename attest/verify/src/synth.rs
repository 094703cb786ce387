//! Synthetic evidence signed by a software "AK" (for tests, benches and fuzz seeds).
//! Byte-for-byte the same structures a TPM produces for a P-256 ECDSA quote.

use crate::binding::quote_extra_data;
use crate::eventlog::{self, Event};
use crate::verify::{Evidence, PcrValue};
use crate::wire::{self, attr, marshal_pcr_selection_list, PcrSelection};
use p256::ecdsa::{signature::hazmat::PrehashSigner, Signature, SigningKey};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// A software AK.
#[derive(Debug, Clone)]
pub struct SoftAk {
    key: SigningKey,
}

impl SoftAk {
    /// Derive a key from a 32-byte seed (must be a valid scalar; small seeds are).
    pub fn from_seed(seed: [u8; 32]) -> Option<Self> {
        SigningKey::from_bytes(&seed.into())
            .ok()
            .map(|key| Self { key })
    }

    /// TPM2B_PUBLIC of this key with AK attributes.
    pub fn tpm2b_public(&self) -> Vec<u8> {
        let point = self.key.verifying_key().to_encoded_point(false);
        let (x, y) = (
            point.x().map(|v| v.to_vec()).unwrap_or_default(),
            point.y().map(|v| v.to_vec()).unwrap_or_default(),
        );
        let mut t = Vec::new();
        t.extend_from_slice(&wire::ALG_ECC.to_be_bytes());
        t.extend_from_slice(&wire::ALG_SHA256.to_be_bytes());
        let attrs = attr::FIXED_TPM
            | attr::FIXED_PARENT
            | attr::SENSITIVE_DATA_ORIGIN
            | (1 << 6)
            | attr::RESTRICTED
            | attr::SIGN;
        t.extend_from_slice(&attrs.to_be_bytes());
        t.extend_from_slice(&0u16.to_be_bytes());
        t.extend_from_slice(&wire::ALG_NULL.to_be_bytes());
        t.extend_from_slice(&wire::ALG_ECDSA.to_be_bytes());
        t.extend_from_slice(&wire::ALG_SHA256.to_be_bytes());
        t.extend_from_slice(&wire::ECC_NIST_P256.to_be_bytes());
        t.extend_from_slice(&wire::ALG_NULL.to_be_bytes());
        for c in [x, y] {
            t.extend_from_slice(&u16::try_from(c.len()).unwrap_or(0).to_be_bytes());
            t.extend_from_slice(&c);
        }
        let mut out = u16::try_from(t.len()).unwrap_or(0).to_be_bytes().to_vec();
        out.extend_from_slice(&t);
        out
    }

    /// Sign `attest` the way a TPM does (ECDSA over sha256), as a TPMT_SIGNATURE.
    pub fn sign(&self, attest: &[u8]) -> Vec<u8> {
        let sig: Result<Signature, _> = self.key.sign_prehash(&Sha256::digest(attest));
        let Ok(sig) = sig else { return Vec::new() };
        let (r, s) = sig.split_bytes();
        wire::marshal_ecdsa_signature(&wire::EcdsaSignature {
            hash: wire::ALG_SHA256,
            r: r.to_vec(),
            s: s.to_vec(),
        })
    }
}

/// Marshal a quote TPMS_ATTEST.
pub fn attest_bytes(extra: &[u8], sel: &[PcrSelection], pcr_digest: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    a.extend_from_slice(&wire::TPM_GENERATED.to_be_bytes());
    a.extend_from_slice(&wire::ST_ATTEST_QUOTE.to_be_bytes());
    let signer = [0u8; 34];
    a.extend_from_slice(&34u16.to_be_bytes());
    a.extend_from_slice(&signer);
    a.extend_from_slice(&u16::try_from(extra.len()).unwrap_or(0).to_be_bytes());
    a.extend_from_slice(extra);
    a.extend_from_slice(&123_456u64.to_be_bytes());
    a.extend_from_slice(&3u32.to_be_bytes());
    a.extend_from_slice(&0u32.to_be_bytes());
    a.push(1);
    a.extend_from_slice(&0x2023_0101u64.to_be_bytes());
    a.extend_from_slice(&marshal_pcr_selection_list(sel));
    a.extend_from_slice(&u16::try_from(pcr_digest.len()).unwrap_or(0).to_be_bytes());
    a.extend_from_slice(pcr_digest);
    a
}

/// The payload key [`evidence`] binds (synthetic evidence has no real one).
pub const PAYLOAD_KEY: [u8; 32] = [0x50; 32];

/// A realistic evidence bundle: PCRs 0–15, `n_events` userland events spread over PCRs
/// 8–14, binding `node_pubkey` and [`PAYLOAD_KEY`].
pub fn evidence(ak: &SoftAk, nonce: &[u8], node_pubkey: [u8; 32], n_events: usize) -> Evidence {
    let events: Vec<Event> = (0..n_events)
        .map(|i| Event {
            seq: u64::try_from(i).unwrap_or(0),
            pcr: 8 + u32::try_from(i % 7).unwrap_or(0),
            event_type: "binary".into(),
            digest: Sha256::digest(format!("measured binary {i}")).into(),
            description: format!("/usr/bin/component-{i}"),
        })
        .collect();
    let mut pcrs: BTreeMap<u32, [u8; 32]> = (0..16u32)
        .map(|p| (p, Sha256::digest(format!("firmware {p}")).into()))
        .collect();
    for (p, v) in eventlog::replay(&events) {
        pcrs.insert(p, v);
    }
    let sel = [PcrSelection::sha256(
        &pcrs.keys().copied().collect::<Vec<_>>(),
    )];
    let mut h = Sha256::new();
    for v in pcrs.values() {
        h.update(v);
    }
    let attest = attest_bytes(
        &quote_extra_data(nonce, &node_pubkey, &PAYLOAD_KEY),
        &sel,
        &h.finalize(),
    );
    Evidence {
        signature: ak.sign(&attest),
        attest,
        ak_public: ak.tpm2b_public(),
        pcrs: pcrs.into_iter().map(|(k, v)| (k, PcrValue(v))).collect(),
        events,
        node_pubkey,
        payload_pubkey: PAYLOAD_KEY,
        ek_cert_pem: None,
        firmware_log: None,
    }
}
