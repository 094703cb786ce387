//! The evidence directory `havnctl attest quote` writes and `havnctl verify-quote` reads:
//! tpm2-tools files (`quote.msg`, `quote.sig`, `quote.pcrs`, `quote.qual`, `ak.pub`,
//! `ak.pem`) plus `evidence.json` (event log, node key, nonce, EK certificate) and,
//! where the platform has one, `firmware_log.bin` (TCG crypto-agile event log).

use crate::error::ParseError;
use crate::eventlog::Event;
use crate::tpm2_files;
use crate::verify::{Evidence, PcrValue};
use crate::wire::{self, ALG_SHA256};
use std::collections::BTreeMap;
use std::path::Path;

/// `evidence.json`: what the tpm2-tools files do not carry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EvidenceJson {
    /// The verifier nonce the quote was made for (hex).
    #[serde(with = "hex::serde")]
    pub nonce: Vec<u8>,
    /// Node ed25519 public key.
    #[serde(with = "hex::serde")]
    pub node_pubkey: [u8; 32],
    /// The node's per-boot X25519 payload key (bound into the quote beside the node key).
    #[serde(with = "hex::serde")]
    pub payload_pubkey: [u8; 32],
    /// Userland event log.
    pub events: Vec<Event>,
    /// EK certificate PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ek_cert_pem: Option<String>,
}

/// A reading problem: I/O or a malformed file.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// A file could not be read or written.
    #[error("{file}: {err}")]
    Io {
        /// File name.
        file: String,
        /// Cause.
        err: std::io::Error,
    },
    /// A file is malformed.
    #[error("{file}: {err}")]
    Parse {
        /// File name.
        file: String,
        /// Cause.
        err: ParseError,
    },
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, DirError> {
    std::fs::read(dir.join(name)).map_err(|err| DirError::Io {
        file: name.into(),
        err,
    })
}

/// Write an evidence directory.
pub fn write_dir(
    dir: &Path,
    ev: &Evidence,
    ak_pem: &str,
    nonce: &[u8],
    extra_data: &[u8],
) -> Result<(), DirError> {
    let w = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes).map_err(|err| DirError::Io {
            file: name.into(),
            err,
        })
    };
    std::fs::create_dir_all(dir).map_err(|err| DirError::Io {
        file: dir.display().to_string(),
        err,
    })?;
    let sel = [wire::PcrSelection::sha256(
        &ev.pcrs.keys().copied().collect::<Vec<_>>(),
    )];
    let values: Vec<Vec<u8>> = ev.pcrs.values().map(|v| v.0.to_vec()).collect();
    w("quote.msg", &ev.attest)?;
    w("quote.sig", &ev.signature)?;
    w("quote.pcrs", &tpm2_files::write_pcrs_file(&sel, &values))?;
    w("quote.qual", extra_data)?;
    w("ak.pub", &ev.ak_public)?;
    w("ak.pem", ak_pem.as_bytes())?;
    if let Some(log) = &ev.firmware_log {
        w("firmware_log.bin", log)?;
    }
    let j = EvidenceJson {
        nonce: nonce.to_vec(),
        node_pubkey: ev.node_pubkey,
        payload_pubkey: ev.payload_pubkey,
        events: ev.events.clone(),
        ek_cert_pem: ev.ek_cert_pem.clone(),
    };
    let text = serde_json::to_vec_pretty(&j).map_err(|e| DirError::Parse {
        file: "evidence.json".into(),
        err: ParseError::Json {
            what: "evidence",
            msg: e.to_string(),
        },
    })?;
    w("evidence.json", &text)
}

/// Read an evidence directory back into [`Evidence`] (PCR values from `quote.pcrs`).
pub fn read_dir(dir: &Path) -> Result<(Evidence, EvidenceJson), DirError> {
    let perr = |file: &str| {
        let file = file.to_string();
        move |err| DirError::Parse { file, err }
    };
    let j: EvidenceJson =
        serde_json::from_slice(&read(dir, "evidence.json")?).map_err(|e| DirError::Parse {
            file: "evidence.json".into(),
            err: ParseError::Json {
                what: "evidence",
                msg: e.to_string(),
            },
        })?;
    let (sel, values) =
        tpm2_files::parse_pcrs_file(&read(dir, "quote.pcrs")?).map_err(perr("quote.pcrs"))?;
    let mut pcrs = BTreeMap::new();
    let mut it = values.into_iter();
    for s in &sel {
        for p in &s.pcrs {
            let v = it
                .next()
                .ok_or(ParseError::Truncated {
                    what: "pcrs values",
                    offset: 0,
                })
                .map_err(perr("quote.pcrs"))?;
            if s.hash == ALG_SHA256 {
                let v: [u8; 32] = v
                    .as_slice()
                    .try_into()
                    .map_err(|_| ParseError::Hex { what: "PCR value" })
                    .map_err(perr("quote.pcrs"))?;
                pcrs.insert(*p, PcrValue(v));
            }
        }
    }
    let ev = Evidence {
        attest: read(dir, "quote.msg")?,
        signature: read(dir, "quote.sig")?,
        ak_public: read(dir, "ak.pub")?,
        pcrs,
        events: j.events.clone(),
        node_pubkey: j.node_pubkey,
        payload_pubkey: j.payload_pubkey,
        ek_cert_pem: j.ek_cert_pem.clone(),
        firmware_log: match std::fs::read(dir.join("firmware_log.bin")) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => {
                return Err(DirError::Io {
                    file: "firmware_log.bin".into(),
                    err,
                })
            }
        },
    };
    Ok((ev, j))
}
