//! The userland measurement event log kept by the agent, and its replay.

use crate::error::VerifyError;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// One userland measurement: `digest` was extended into sha256 PCR `pcr`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// Position in the log: 0, 1, 2, … (a gap or reorder is detected on replay).
    pub seq: u64,
    /// PCR index extended.
    pub pcr: u32,
    /// What kind of measurement (e.g. "binary", "config").
    pub event_type: String,
    /// The sha256 digest extended.
    #[serde(with = "hex::serde")]
    pub digest: [u8; 32],
    /// Human-readable description (not bound by the TPM).
    pub description: String,
}

/// `new = sha256(old ‖ digest)`.
pub fn extend(old: &[u8; 32], digest: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(old);
    h.update(digest);
    h.finalize().into()
}

/// Replay events from all-zero PCRs; returns the final value of every PCR the log touches.
pub fn replay(events: &[Event]) -> BTreeMap<u32, [u8; 32]> {
    let mut out: BTreeMap<u32, [u8; 32]> = BTreeMap::new();
    for e in events {
        let cur = out.entry(e.pcr).or_insert([0u8; 32]);
        *cur = extend(cur, &e.digest);
    }
    out
}

/// Check sequence numbers and that replay reproduces each quoted PCR the log touches,
/// and each PCR in `log_pcrs` (PCRs the log fully describes: with no events they must
/// still be zero, so dropping every event of a PCR is caught). Returns the events replayed.
/// `initial` holds PCR values the firmware log replays to (empty without one); userland
/// events extend on top of them, and every quoted PCR either log touches is checked.
pub fn check_against(
    events: &[Event],
    quoted: &BTreeMap<u32, [u8; 32]>,
    log_pcrs: &[u32],
    initial: &BTreeMap<u32, [u8; 32]>,
) -> Result<usize, VerifyError> {
    for (index, e) in events.iter().enumerate() {
        if u64::try_from(index).ok() != Some(e.seq) {
            return Err(VerifyError::EventLogSequence { index, seq: e.seq });
        }
        if !quoted.contains_key(&e.pcr) {
            return Err(VerifyError::EventLogPcrNotQuoted(e.pcr));
        }
    }
    let mut replayed_all: BTreeMap<u32, [u8; 32]> = initial
        .iter()
        .filter(|(p, _)| quoted.contains_key(p))
        .map(|(p, v)| (*p, *v))
        .collect();
    for e in events {
        let cur = replayed_all.entry(e.pcr).or_insert([0u8; 32]);
        *cur = extend(cur, &e.digest);
    }
    for p in log_pcrs {
        replayed_all.entry(*p).or_insert([0u8; 32]);
    }
    for (pcr, replayed) in replayed_all {
        let q = quoted
            .get(&pcr)
            .ok_or(VerifyError::EventLogPcrNotQuoted(pcr))?;
        if *q != replayed {
            return Err(VerifyError::EventLogReplay {
                pcr,
                replayed: hex::encode(replayed),
                quoted: hex::encode(q),
            });
        }
    }
    Ok(events.len())
}
