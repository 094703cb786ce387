//! The input artifacts of the `diffusion` and `transcribe` workflows, checked here once
//! so that netd refuses a bad one at intake (400 naming the field, nothing queued)
//! without linking the model code, and execd and validators agree on the rules.

use crate::chat::RequestError;
use serde::{Deserialize, Serialize};

/// Side of the square height field the diffusion model makes.
pub const DIFFUSION_SIZE: u32 = 128;
/// Most sampler steps a diffusion job may ask for.
pub const MAX_STEPS: u32 = 8;
/// Largest diffusion request artifact, in bytes.
pub const MAX_DIFFUSION_REQUEST_BYTES: usize = 4096;

fn bad(field: &str, reason: impl Into<String>) -> RequestError {
    RequestError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// A `diffusion` job's request (its input artifact, JSON; absent = the defaults).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffusionRequest {
    /// Sampler steps, 1..=8 (the model is distilled for one).
    #[serde(default = "one")]
    pub steps: u32,
    /// Terrain difficulty label, 1..=100.
    #[serde(default = "fifty")]
    pub difficulty: u32,
    /// Must be 128 (the model's native size).
    #[serde(default = "size")]
    pub width: u32,
    /// Must be 128.
    #[serde(default = "size")]
    pub height: u32,
}

fn one() -> u32 {
    1
}
fn fifty() -> u32 {
    50
}
fn size() -> u32 {
    DIFFUSION_SIZE
}

impl Default for DiffusionRequest {
    fn default() -> Self {
        DiffusionRequest {
            steps: 1,
            difficulty: 50,
            width: DIFFUSION_SIZE,
            height: DIFFUSION_SIZE,
        }
    }
}

impl DiffusionRequest {
    /// Parses and validates request JSON (unknown fields refused).
    pub fn from_json(bytes: &[u8]) -> Result<Self, RequestError> {
        if bytes.len() > MAX_DIFFUSION_REQUEST_BYTES {
            return Err(bad(
                "request",
                format!(
                    "{} bytes (limit {MAX_DIFFUSION_REQUEST_BYTES})",
                    bytes.len()
                ),
            ));
        }
        let r: DiffusionRequest = serde_json::from_slice(bytes)
            .map_err(|e| bad("request", format!("invalid JSON: {e}")))?;
        r.validate()?;
        Ok(r)
    }

    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), RequestError> {
        if !(1..=MAX_STEPS).contains(&self.steps) {
            return Err(bad(
                "steps",
                format!("{} is outside 1..={MAX_STEPS}", self.steps),
            ));
        }
        if !(1..=100).contains(&self.difficulty) {
            return Err(bad(
                "difficulty",
                format!("{} is outside 1..=100", self.difficulty),
            ));
        }
        for (f, v) in [("width", self.width), ("height", self.height)] {
            if v != DIFFUSION_SIZE {
                return Err(bad(
                    f,
                    format!(
                        "{v}: the model makes {DIFFUSION_SIZE}×{DIFFUSION_SIZE} height fields only"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Canonical JSON (struct order, compact).
    pub fn canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Sample rate a `transcribe` WAV must have.
pub const WAV_RATE: u32 = 16_000;
/// Longest clip, in seconds.
pub const WAV_MAX_SECONDS: u32 = 30;

/// What a WAV header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavInfo {
    pub channels: u16,
    pub sample_rate: u32,
    pub bits: u16,
    /// 1 = PCM, 3 = IEEE float (WAVE_FORMAT_EXTENSIBLE resolved to its subformat).
    pub format: u16,
    pub samples: u64,
}

fn u16le(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32le(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Reads a RIFF/WAVE header (the `fmt ` and `data` chunks) and checks it is what
/// `transcribe` takes: 16 kHz, mono, 16-bit PCM or 32-bit float, at most 30 s. The
/// error names the field (`channels`, `sample_rate`, `bits_per_sample`, `format`,
/// `duration`, or `wav` for a malformed file).
pub fn check_wav(b: &[u8]) -> Result<WavInfo, RequestError> {
    let wav = |r: &str| bad("wav", r.to_string());
    if b.get(0..4) != Some(b"RIFF") || b.get(8..12) != Some(b"WAVE") {
        return Err(wav("not a RIFF/WAVE file"));
    }
    let mut at = 12usize;
    let mut fmt = None;
    let mut data = None;
    while fmt.is_none() || data.is_none() {
        // Every offset is checked: a hostile length ends the walk, never wraps.
        let (Some(id), Some(len)) = (
            b.get(at..at.saturating_add(4)),
            u32le(b, at.saturating_add(4)),
        ) else {
            break;
        };
        let len = len as usize;
        let body = at.saturating_add(8);
        if id == b"fmt " {
            let field = |off: usize| body.checked_add(off);
            let (Some(f0), Some(ch), Some(sr), Some(bps)) = (
                field(0).and_then(|o| u16le(b, o)),
                field(2).and_then(|o| u16le(b, o)),
                field(4).and_then(|o| u32le(b, o)),
                field(14).and_then(|o| u16le(b, o)),
            ) else {
                return Err(wav("truncated fmt chunk"));
            };
            if len < 16 {
                return Err(wav("truncated fmt chunk"));
            }
            // WAVE_FORMAT_EXTENSIBLE: the subformat GUID's first two bytes.
            let format = if f0 == 0xFFFE {
                field(24)
                    .and_then(|o| u16le(b, o))
                    .ok_or_else(|| wav("truncated fmt chunk"))?
            } else {
                f0
            };
            fmt = Some((format, ch, sr, bps));
        } else if id == b"data" {
            data = Some(len.min(b.len().saturating_sub(body)));
        }
        at = body.saturating_add(len).saturating_add(len & 1);
    }
    let (format, channels, sample_rate, bits) = fmt.ok_or_else(|| wav("no fmt chunk"))?;
    let bytes = data.ok_or_else(|| wav("no data chunk"))?;
    if channels != 1 {
        return Err(bad("channels", format!("{channels}, expected 1 (mono)")));
    }
    if sample_rate != WAV_RATE {
        return Err(bad(
            "sample_rate",
            format!("{sample_rate} Hz, expected {WAV_RATE} Hz"),
        ));
    }
    match (format, bits) {
        (1, 16) | (3, 32) => {}
        (1 | 3, _) => {
            return Err(bad(
                "bits_per_sample",
                format!("{bits}, expected 16-bit PCM or 32-bit float"),
            ))
        }
        _ => {
            return Err(bad(
                "format",
                format!("{format}, expected PCM (1) or IEEE float (3)"),
            ))
        }
    }
    let samples = bytes.checked_div(usize::from(bits / 8)).unwrap_or(0) as u64;
    if samples > u64::from(WAV_RATE).saturating_mul(u64::from(WAV_MAX_SECONDS)) {
        return Err(bad(
            "duration",
            format!(
                "{:.1} s, at most {WAV_MAX_SECONDS} s",
                samples as f64 / f64::from(WAV_RATE)
            ),
        ));
    }
    Ok(WavInfo {
        channels,
        sample_rate,
        bits,
        format,
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(channels: u16, rate: u32, bits: u16, format: u16, samples: usize) -> Vec<u8> {
        let data = vec![0u8; samples * usize::from(bits / 8) * usize::from(channels)];
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&format.to_le_bytes());
        b.extend_from_slice(&channels.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * u32::from(bits / 8) * u32::from(channels)).to_le_bytes());
        b.extend_from_slice(&(bits / 8 * channels).to_le_bytes());
        b.extend_from_slice(&bits.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(&data);
        b
    }

    #[test]
    fn wav_headers_are_checked_naming_the_field() {
        assert_eq!(
            check_wav(&wav(1, 16_000, 16, 1, 16_000)).unwrap().samples,
            16_000
        );
        assert!(check_wav(&wav(1, 16_000, 32, 3, 100)).is_ok());
        let field = |b: &[u8]| check_wav(b).unwrap_err().field;
        assert_eq!(field(&wav(2, 16_000, 16, 1, 100)), "channels");
        assert_eq!(field(&wav(1, 44_100, 16, 1, 100)), "sample_rate");
        assert_eq!(field(&wav(1, 16_000, 8, 1, 100)), "bits_per_sample");
        assert_eq!(field(&wav(1, 16_000, 16, 2, 100)), "format");
        assert_eq!(field(&wav(1, 16_000, 16, 1, 600 * 16_000)), "duration");
        assert_eq!(field(b"not a wav at all"), "wav");
        let good = wav(1, 16_000, 16, 1, 100);
        for cut in [0, 4, 12, 20, 30, 40] {
            assert_eq!(field(&good[..cut]), "wav", "cut at {cut}");
        }
    }

    #[test]
    fn diffusion_requests_are_checked_naming_the_field() {
        let field = |s: &str| DiffusionRequest::from_json(s.as_bytes()).unwrap_err().field;
        assert_eq!(field(r#"{"steps":0}"#), "steps");
        assert_eq!(field(r#"{"steps":10000}"#), "steps");
        assert_eq!(field(r#"{"width":64}"#), "width");
        assert_eq!(field(r#"{"difficulty":101}"#), "difficulty");
        assert_eq!(field(r#"{"nope":1}"#), "request");
        assert_eq!(
            DiffusionRequest::from_json(b"{}").unwrap(),
            DiffusionRequest::default()
        );
    }
}
