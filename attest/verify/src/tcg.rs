//! The TCG PC Client firmware event log (crypto-agile format, as in
//! `/sys/kernel/security/tpm0/binary_bios_measurements`) and its sha256 replay.
//!
//! Layout (little-endian): a first `TCG_PCClientPCREvent` in SHA-1 format whose data is
//! the `Spec ID Event03` header listing every digest algorithm and its size, then
//! `TCG_PCR_EVENT2` records: pcrIndex u32, eventType u32, `TPML_DIGEST_VALUES`
//! {count u32, {algId u16, digest}…}, eventSize u32, event bytes.

use crate::error::ParseError;
use crate::eventlog::extend;
use std::collections::BTreeMap;

/// `EV_NO_ACTION`: informational, never extended.
pub const EV_NO_ACTION: u32 = 3;
const SPEC_ID: &[u8] = b"Spec ID Event03\0";
const STARTUP_LOCALITY: &[u8] = b"StartupLocality\0";
const MAX_ALGS: u32 = 16;
const MAX_EVENT: u32 = 1 << 20;

/// One firmware event (its sha256 digest, if the log carries that bank).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcgEvent {
    /// PCR index.
    pub pcr: u32,
    /// TCG event type.
    pub event_type: u32,
    /// The sha256 digest extended.
    pub sha256: Option<[u8; 32]>,
    /// Event data.
    pub data: Vec<u8>,
}

struct Le<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Le<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ParseError> {
        let end = self.pos.checked_add(n).ok_or(ParseError::Truncated {
            what,
            offset: self.pos,
        })?;
        let s = self.b.get(self.pos..end).ok_or(ParseError::Truncated {
            what,
            offset: self.pos,
        })?;
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, ParseError> {
        let s: [u8; 4] = self
            .take(4, what)?
            .try_into()
            .map_err(|_| ParseError::Truncated {
                what,
                offset: self.pos,
            })?;
        Ok(u32::from_le_bytes(s))
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, ParseError> {
        let s: [u8; 2] = self
            .take(2, what)?
            .try_into()
            .map_err(|_| ParseError::Truncated {
                what,
                offset: self.pos,
            })?;
        Ok(u16::from_le_bytes(s))
    }
    fn sized(&mut self, what: &'static str) -> Result<&'a [u8], ParseError> {
        let n = self.u32(what)?;
        if n > MAX_EVENT {
            return Err(ParseError::TooLong {
                what,
                len: usize::try_from(n).unwrap_or(usize::MAX),
                max: 1 << 20,
            });
        }
        self.take(usize::try_from(n).unwrap_or(usize::MAX), what)
    }
}

/// Parse a crypto-agile firmware event log.
pub fn parse_tcg_log(bytes: &[u8]) -> Result<Vec<TcgEvent>, ParseError> {
    let mut r = Le { b: bytes, pos: 0 };
    // Header event (SHA-1 format).
    let _pcr = r.u32("TCG header.pcrIndex")?;
    let ty = r.u32("TCG header.eventType")?;
    if ty != EV_NO_ACTION {
        return Err(ParseError::BadValue {
            what: "TCG header.eventType",
            value: ty,
        });
    }
    r.take(20, "TCG header.digest")?;
    let spec = r.sized("TCG header.event")?;
    let mut s = Le { b: spec, pos: 0 };
    if s.take(16, "SpecIdEvent.signature")? != SPEC_ID {
        return Err(ParseError::BadValue {
            what: "SpecIdEvent.signature",
            value: 0,
        });
    }
    s.take(8, "SpecIdEvent.version")?;
    let n_algs = s.u32("SpecIdEvent.numberOfAlgorithms")?;
    if n_algs > MAX_ALGS {
        return Err(ParseError::TooMany {
            what: "SpecIdEvent.numberOfAlgorithms",
            count: n_algs,
            max: MAX_ALGS,
        });
    }
    let mut sizes: BTreeMap<u16, u16> = BTreeMap::new();
    for _ in 0..n_algs {
        let alg = s.u16("SpecIdEvent.algorithmId")?;
        let size = s.u16("SpecIdEvent.digestSize")?;
        if size > 64 {
            return Err(ParseError::TooLong {
                what: "SpecIdEvent.digestSize",
                len: usize::from(size),
                max: 64,
            });
        }
        sizes.insert(alg, size);
    }
    let mut events = Vec::new();
    while r.pos < bytes.len() {
        let pcr = r.u32("TCG_PCR_EVENT2.pcrIndex")?;
        if pcr > 31 {
            return Err(ParseError::BadValue {
                what: "TCG_PCR_EVENT2.pcrIndex",
                value: pcr,
            });
        }
        let event_type = r.u32("TCG_PCR_EVENT2.eventType")?;
        let count = r.u32("TPML_DIGEST_VALUES.count")?;
        if count > MAX_ALGS {
            return Err(ParseError::TooMany {
                what: "TPML_DIGEST_VALUES.count",
                count,
                max: MAX_ALGS,
            });
        }
        let mut sha256 = None;
        for _ in 0..count {
            let alg = r.u16("TPMT_HA.hashAlg")?;
            let size = *sizes.get(&alg).ok_or(ParseError::Unsupported {
                what: "TPMT_HA.hashAlg (not in Spec ID header)",
                value: u32::from(alg),
            })?;
            let d = r.take(usize::from(size), "TPMT_HA.digest")?;
            if alg == crate::wire::ALG_SHA256 {
                sha256 = Some(d.try_into().map_err(|_| ParseError::Hex {
                    what: "sha256 digest",
                })?);
            }
        }
        let data = r.sized("TCG_PCR_EVENT2.event")?.to_vec();
        events.push(TcgEvent {
            pcr,
            event_type,
            sha256,
            data,
        });
    }
    Ok(events)
}

/// Replay the sha256 bank: final value of each PCR the log touches. Honors the
/// StartupLocality event (PCR 0 starts at `0…0 ‖ locality`). Events without a sha256
/// digest are an error (the log does not cover the bank we quote).
pub fn replay_tcg(events: &[TcgEvent]) -> Result<BTreeMap<u32, [u8; 32]>, ParseError> {
    let mut out: BTreeMap<u32, [u8; 32]> = BTreeMap::new();
    for e in events {
        if e.event_type == EV_NO_ACTION {
            if e.pcr == 0
                && e.data.len() == STARTUP_LOCALITY.len() + 1
                && e.data.starts_with(STARTUP_LOCALITY)
            {
                let mut init = [0u8; 32];
                if let (Some(last), Some(loc)) = (init.last_mut(), e.data.last()) {
                    *last = *loc;
                }
                out.insert(0, init);
            }
            continue;
        }
        let d = e.sha256.ok_or(ParseError::Unsupported {
            what: "firmware event without sha256 digest",
            value: e.pcr,
        })?;
        let cur = out.entry(e.pcr).or_insert([0u8; 32]);
        *cur = extend(cur, &d);
    }
    Ok(out)
}

/// Build a crypto-agile log with a sha256 bank (for tests and tools).
pub fn build_tcg_log(events: &[TcgEvent]) -> Vec<u8> {
    let mut spec = SPEC_ID.to_vec();
    spec.extend_from_slice(&0u32.to_le_bytes()); // platformClass
    spec.extend_from_slice(&[0, 2, 0, 2]); // minor, major, errata, uintnSize
    spec.extend_from_slice(&1u32.to_le_bytes());
    spec.extend_from_slice(&crate::wire::ALG_SHA256.to_le_bytes());
    spec.extend_from_slice(&32u16.to_le_bytes());
    spec.push(0); // vendorInfoSize
    let mut out = Vec::new();
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&EV_NO_ACTION.to_le_bytes());
    out.extend_from_slice(&[0u8; 20]);
    out.extend_from_slice(&u32::try_from(spec.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&spec);
    for e in events {
        out.extend_from_slice(&e.pcr.to_le_bytes());
        out.extend_from_slice(&e.event_type.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&crate::wire::ALG_SHA256.to_le_bytes());
        out.extend_from_slice(&e.sha256.unwrap_or([0u8; 32]));
        out.extend_from_slice(&u32::try_from(e.data.len()).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&e.data);
    }
    out
}
