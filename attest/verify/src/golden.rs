//! Golden measurement manifests: expected PCR values and event digests, each
//! either enforced (a mismatch rejects the quote) or warned about.

use crate::error::{ParseError, VerifyError};
use crate::eventlog::Event;
use std::collections::BTreeMap;

/// What a mismatch does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Reject the quote.
    Enforce,
    /// Accept, and report a warning.
    Warn,
}

/// An expected sha256 PCR value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GoldenPcr {
    /// Expected value.
    #[serde(with = "hex::serde")]
    pub sha256: [u8; 32],
    /// Mismatch policy.
    pub policy: Policy,
}

/// An event digest that must appear in a PCR's event log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GoldenEvent {
    /// PCR it is extended into.
    pub pcr: u32,
    /// Expected digest.
    #[serde(with = "hex::serde")]
    pub digest: [u8; 32],
    /// What it is.
    #[serde(default)]
    pub description: String,
    /// Missing-event policy.
    pub policy: Policy,
}

/// A golden measurement manifest, e.g.
/// `{"pcrs": {"7": {"sha256": "…", "policy": "enforce"}}, "events": [{"pcr": 14, "digest": "…", "policy": "warn"}], "log_pcrs": [14, 15]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoldenManifest {
    /// Expected PCR values by index.
    #[serde(default)]
    pub pcrs: BTreeMap<u32, GoldenPcr>,
    /// Expected event digests.
    #[serde(default)]
    pub events: Vec<GoldenEvent>,
    /// PCRs the userland event log fully describes (a PCR with no events must be zero).
    #[serde(default)]
    pub log_pcrs: Vec<u32>,
}

impl GoldenManifest {
    /// Parse from JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ParseError> {
        serde_json::from_slice(bytes).map_err(|e| ParseError::Json {
            what: "golden manifest",
            msg: e.to_string(),
        })
    }

    /// Compare; an enforced mismatch is an error, warned ones are returned.
    pub fn check(
        &self,
        quoted: &BTreeMap<u32, [u8; 32]>,
        events: &[Event],
    ) -> Result<Vec<VerifyError>, VerifyError> {
        let mut warnings = Vec::new();
        let mut report = |policy: Policy, e: VerifyError| match policy {
            Policy::Enforce => Err(e),
            Policy::Warn => {
                warnings.push(e);
                Ok(())
            }
        };
        for (pcr, g) in &self.pcrs {
            match quoted.get(pcr) {
                None => report(g.policy, VerifyError::GoldenPcrNotQuoted(*pcr))?,
                Some(v) if *v != g.sha256 => report(
                    g.policy,
                    VerifyError::GoldenPcr {
                        pcr: *pcr,
                        actual: hex::encode(v),
                        expected: hex::encode(g.sha256),
                    },
                )?,
                Some(_) => {}
            }
        }
        for g in &self.events {
            if !events
                .iter()
                .any(|e| e.pcr == g.pcr && e.digest == g.digest)
            {
                report(
                    g.policy,
                    VerifyError::GoldenEventMissing {
                        pcr: g.pcr,
                        digest: hex::encode(g.digest),
                        description: g.description.clone(),
                    },
                )?;
            }
        }
        Ok(warnings)
    }
}
