//! Quote verification: evidence in, typed verdict out.

use crate::binding::quote_extra_data;
use crate::error::{ParseError, VerifyError};
use crate::eventlog::{self, Event};
use crate::golden::GoldenManifest;
use crate::wire::{self, attr, ClockInfo, EccPublic, QuoteInfo};
use p256::ecdsa::{signature::hazmat::PrehashVerifier, Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use x509_cert::Certificate;

/// Everything a node sends a verifier. Byte fields are the TPM's marshalled structures.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Evidence {
    /// `TPMS_ATTEST` bytes the AK signed.
    #[serde(with = "hex::serde")]
    pub attest: Vec<u8>,
    /// `TPMT_SIGNATURE` bytes.
    #[serde(with = "hex::serde")]
    pub signature: Vec<u8>,
    /// The AK's `TPM2B_PUBLIC`.
    #[serde(with = "hex::serde")]
    pub ak_public: Vec<u8>,
    /// sha256 PCR values, by index, as read with the quote.
    pub pcrs: BTreeMap<u32, PcrValue>,
    /// The userland event log.
    pub events: Vec<Event>,
    /// The node's ed25519 public key bound into extraData.
    #[serde(with = "hex::serde")]
    pub node_pubkey: [u8; 32],
    /// The node's per-boot X25519 payload key, bound into extraData beside it.
    #[serde(with = "hex::serde")]
    pub payload_pubkey: [u8; 32],
    /// The EK certificate (PEM), if the node has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ek_cert_pem: Option<String>,
    /// The TCG firmware event log (crypto-agile binary), if the platform has one.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "hex_opt")]
    pub firmware_log: Option<Vec<u8>>,
}

mod hex_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&hex::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|h| hex::decode(h).map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// A 32-byte sha256 PCR value (hex in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PcrValue(#[serde(with = "hex::serde")] pub [u8; 32]);

impl Evidence {
    /// Converts the wire form (what netd relays and mesh manifests carry) into the
    /// verifier's evidence.
    pub fn from_wire(q: &havn_proto::QuoteEvidence) -> Self {
        Self {
            attest: q.attest.to_vec(),
            signature: q.signature.to_vec(),
            ak_public: q.ak_public.to_vec(),
            pcrs: q
                .pcrs
                .iter()
                .map(|p| (u32::from(p.index), PcrValue(p.value.0)))
                .collect(),
            events: q
                .events
                .iter()
                .map(|e| Event {
                    seq: e.seq,
                    pcr: u32::from(e.pcr),
                    event_type: e.event_type.to_string(),
                    digest: e.digest.0,
                    description: e.description.to_string(),
                })
                .collect(),
            node_pubkey: q.node.0 .0,
            payload_pubkey: q.payload_key.0,
            ek_cert_pem: q.ek_cert.as_ref().map(|der| pem("CERTIFICATE", der)),
            firmware_log: None,
        }
    }

    /// The wire form of this evidence for `nonce` (the inverse of [`Self::from_wire`]
    /// for evidence without an EK certificate or firmware log); `None` when a field is
    /// over the wire's bounds.
    pub fn to_wire(&self, nonce: havn_proto::Hash32) -> Option<havn_proto::QuoteEvidence> {
        let mut pcrs = heapless::Vec::new();
        for (i, v) in &self.pcrs {
            pcrs.push(havn_proto::PcrValue {
                index: u8::try_from(*i).ok()?,
                value: havn_proto::Hash32(v.0),
            })
            .ok()?;
        }
        let mut events = heapless::Vec::new();
        for e in &self.events {
            events
                .push(havn_proto::MeasurementEvent {
                    seq: e.seq,
                    pcr: u8::try_from(e.pcr).ok()?,
                    event_type: heapless::String::try_from(e.event_type.as_str()).ok()?,
                    digest: havn_proto::Hash32(e.digest),
                    description: heapless::String::try_from(e.description.as_str()).ok()?,
                })
                .ok()?;
        }
        Some(havn_proto::QuoteEvidence {
            nonce,
            node: havn_proto::NodeId(havn_proto::PubKey32(self.node_pubkey)),
            payload_key: havn_proto::PubKey32(self.payload_pubkey),
            attest: heapless::Vec::from_slice(&self.attest).ok()?,
            signature: heapless::Vec::from_slice(&self.signature).ok()?,
            ak_public: heapless::Vec::from_slice(&self.ak_public).ok()?,
            pcrs,
            events,
            ek_cert: None,
        })
    }

    /// Parse from JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ParseError> {
        serde_json::from_slice(bytes).map_err(|e| ParseError::Json {
            what: "evidence",
            msg: e.to_string(),
        })
    }
}

/// What the verifier checks beyond the quote itself.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Golden manifest to compare with.
    pub golden: Option<GoldenManifest>,
    /// Vendor CAs the EK certificate must chain to (if set, an EK cert is required).
    pub ek_cas: Option<Vec<Certificate>>,
    /// The AK name this node enrolled with (if known): a different AK is rejected.
    pub enrolled_ak_name: Option<Vec<u8>>,
    /// PCRs the userland event log fully describes (see [`eventlog::check_against`]);
    /// the golden manifest's `log_pcrs` are added to these.
    pub log_pcrs: Vec<u32>,
}

/// A verified quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The AK's TPM name (`0x000b ‖ sha256(TPMT_PUBLIC)`).
    pub ak_name: Vec<u8>,
    /// The node key the quote vouches for.
    pub node_pubkey: [u8; 32],
    /// The payload key (X25519) the quote vouches for: seal job inputs to it.
    pub payload_pubkey: [u8; 32],
    /// Quoted sha256 PCR values.
    pub pcrs: BTreeMap<u32, [u8; 32]>,
    /// The TPM's clock and reboot counters at quote time.
    pub clock: ClockInfo,
    /// TPM firmware version.
    pub firmware_version: u64,
    /// Userland events replayed against the quote.
    pub events_replayed: usize,
    /// Firmware log events replayed (0 without a firmware log).
    pub firmware_events: usize,
    /// Issuer of the EK certificate, if it was checked.
    pub ek_issuer: Option<String>,
    /// Golden-manifest mismatches whose policy is "warn".
    pub warnings: Vec<VerifyError>,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VALID node={} ak={} pcrs={:?} events={} firmware_events={} resets={} restarts={} ek={} warnings={}",
            hex::encode(self.node_pubkey),
            hex::encode(&self.ak_name),
            self.pcrs.keys().collect::<Vec<_>>(),
            self.events_replayed,
            self.firmware_events,
            self.clock.reset_count,
            self.clock.restart_count,
            self.ek_issuer.as_deref().unwrap_or("unchecked"),
            self.warnings.len()
        )
    }
}

/// Check an AK public: ECC P-256, ECDSA-SHA256 (or unset), restricted signing,
/// fixedTPM, fixedParent, sensitiveDataOrigin, not decrypt. Returns the verifying key.
pub fn check_ak(ak: &EccPublic) -> Result<VerifyingKey, VerifyError> {
    if ak.curve != wire::ECC_NIST_P256 {
        return Err(VerifyError::AkNotP256(ak.curve));
    }
    let need: [(u32, &'static str); 5] = [
        (attr::FIXED_TPM, "fixedTPM not set"),
        (attr::FIXED_PARENT, "fixedParent not set"),
        (attr::SENSITIVE_DATA_ORIGIN, "sensitiveDataOrigin not set"),
        (attr::RESTRICTED, "restricted not set"),
        (attr::SIGN, "sign not set"),
    ];
    for (bit, problem) in need {
        if ak.attributes & bit == 0 {
            return Err(VerifyError::AkAttributes {
                attributes: ak.attributes,
                problem,
            });
        }
    }
    if ak.attributes & attr::DECRYPT != 0 {
        return Err(VerifyError::AkAttributes {
            attributes: ak.attributes,
            problem: "decrypt set",
        });
    }
    match ak.scheme {
        (wire::ALG_ECDSA, wire::ALG_SHA256) | (wire::ALG_NULL, _) => {}
        (s, h) => return Err(VerifyError::AkScheme(s, h)),
    }
    let (x, y) = match (wire::pad32(&ak.x), wire::pad32(&ak.y)) {
        (Some(x), Some(y)) => (x, y),
        _ => return Err(VerifyError::AkPoint),
    };
    let point = p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
    VerifyingKey::from_encoded_point(&point).map_err(|_| VerifyError::AkPoint)
}

/// Verify the AK's ECDSA signature over sha256(attest).
pub fn check_signature(
    key: &VerifyingKey,
    attest: &[u8],
    sig_bytes: &[u8],
) -> Result<(), VerifyError> {
    let sig = wire::parse_ecdsa_signature(sig_bytes)?;
    if sig.hash != wire::ALG_SHA256 {
        return Err(VerifyError::SignatureHash(sig.hash));
    }
    let (r, s) = match (wire::pad32(&sig.r), wire::pad32(&sig.s)) {
        (Some(r), Some(s)) => (r, s),
        _ => return Err(VerifyError::SignatureMalformed),
    };
    let sig = Signature::from_scalars(r, s).map_err(|_| VerifyError::SignatureMalformed)?;
    let digest = Sha256::digest(attest);
    key.verify_prehash(&digest, &sig)
        .map_err(|_| VerifyError::BadSignature)
}

/// Check the quoted selection is exactly the supplied sha256 PCRs and that they hash to pcrDigest.
pub fn check_pcrs(q: &QuoteInfo, pcrs: &BTreeMap<u32, [u8; 32]>) -> Result<(), VerifyError> {
    let [sel] = q.pcr_select.as_slice() else {
        return Err(VerifyError::PcrBank);
    };
    if sel.hash != wire::ALG_SHA256 {
        return Err(VerifyError::PcrBank);
    }
    let supplied: Vec<u32> = pcrs.keys().copied().collect();
    if sel.pcrs != supplied {
        return Err(VerifyError::PcrSelectionMismatch {
            quoted: sel.pcrs.clone(),
            supplied,
        });
    }
    let mut h = Sha256::new();
    for v in pcrs.values() {
        h.update(v);
    }
    let digest: [u8; 32] = h.finalize().into();
    if digest.as_slice() != q.pcr_digest.as_slice() {
        return Err(VerifyError::PcrDigestMismatch);
    }
    Ok(())
}

/// Verify a quote: structure, extraData binding of (nonce, node key), AK attributes and
/// signature, PCR digest, event-log replay, golden manifest and (if configured) EK cert.
pub fn verify_quote(ev: &Evidence, nonce: &[u8], policy: &Policy) -> Result<Verdict, VerifyError> {
    if nonce.len() < 8 || nonce.len() > 64 {
        return Err(VerifyError::BadNonce(nonce.len()));
    }
    let q = wire::parse_quote_attest(&ev.attest)?;
    let ak = wire::parse_ecc_public(&ev.ak_public)?;
    let key = check_ak(&ak)?;
    let ak_name = ak
        .name()
        .ok_or(VerifyError::Parse(ParseError::Unsupported {
            what: "TPMT_PUBLIC.nameAlg",
            value: u32::from(ak.name_alg),
        }))?;
    if let Some(enrolled) = &policy.enrolled_ak_name {
        if *enrolled != ak_name {
            return Err(VerifyError::AkNotEnrolled);
        }
    }
    check_signature(&key, &ev.attest, &ev.signature)?;
    if q.extra_data.as_slice()
        != quote_extra_data(nonce, &ev.node_pubkey, &ev.payload_pubkey).as_slice()
    {
        return Err(VerifyError::ExtraDataMismatch);
    }
    let pcrs: BTreeMap<u32, [u8; 32]> = ev.pcrs.iter().map(|(k, v)| (*k, v.0)).collect();
    check_pcrs(&q, &pcrs)?;
    let mut log_pcrs = policy.log_pcrs.clone();
    if let Some(g) = &policy.golden {
        log_pcrs.extend(g.log_pcrs.iter().copied());
    }
    let (firmware, firmware_events) = match &ev.firmware_log {
        Some(log) => {
            let events = crate::tcg::parse_tcg_log(log)?;
            let mut values = crate::tcg::replay_tcg(&events)?;
            // PCRs 0–7 belong to firmware (PC Client spec): the log describes them fully,
            // so one with no events must still be zero.
            for p in 0..8 {
                values.entry(p).or_insert([0u8; 32]);
            }
            (values, events.len())
        }
        None => (BTreeMap::new(), 0),
    };
    let events_replayed = eventlog::check_against(&ev.events, &pcrs, &log_pcrs, &firmware)?;
    let warnings = match &policy.golden {
        Some(g) => g.check(&pcrs, &ev.events)?,
        None => Vec::new(),
    };
    let ek_issuer = match &policy.ek_cas {
        Some(cas) => {
            let pem = ev.ek_cert_pem.as_ref().ok_or(VerifyError::EkCertMissing)?;
            let cert = crate::ekcert::parse_cert(pem.as_bytes())?;
            Some(crate::ekcert::verify_ek_cert(&cert, cas)?)
        }
        None => None,
    };
    Ok(Verdict {
        ak_name,
        node_pubkey: ev.node_pubkey,
        payload_pubkey: ev.payload_pubkey,
        pcrs,
        clock: q.clock_info,
        firmware_version: q.firmware_version,
        events_replayed,
        firmware_events,
        ek_issuer,
        warnings,
    })
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}
