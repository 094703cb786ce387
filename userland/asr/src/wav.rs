//! WAV input through `hound`: 16 kHz mono, 16-bit integer PCM or 32-bit float, at most
//! 30 s. Anything else is refused with an error naming the header field.
//!
//! Samples become f32: integer samples as `s / 32768` (exact; in [-1, 1)), float samples
//! unchanged but required finite and within [-1, 1].

use crate::error::{AsrError, Result};
use hound::{SampleFormat, WavReader};

/// The only sample rate accepted (Whisper's).
pub const SAMPLE_RATE: u32 = 16_000;
/// Longest clip accepted, in samples (30 s: one Whisper window).
pub const MAX_SAMPLES: usize = 30 * SAMPLE_RATE as usize;

/// Decodes WAV bytes into samples in [-1, 1].
pub fn read_wav(bytes: &[u8]) -> Result<Vec<f32>> {
    let reader = WavReader::new(std::io::Cursor::new(bytes))
        .map_err(|e| AsrError::wav("header", format!("not a readable WAV file: {e}")))?;
    let spec = reader.spec();
    if spec.channels != 1 {
        return Err(AsrError::wav(
            "channels",
            format!("{}, expected 1 (mono)", spec.channels),
        ));
    }
    if spec.sample_rate != SAMPLE_RATE {
        return Err(AsrError::wav(
            "sample_rate",
            format!("{} Hz, expected {SAMPLE_RATE} Hz", spec.sample_rate),
        ));
    }
    match (spec.sample_format, spec.bits_per_sample) {
        (SampleFormat::Int, 16) | (SampleFormat::Float, 32) => {}
        (f, b) => {
            return Err(AsrError::wav(
                "bits_per_sample",
                format!(
                    "{b}-bit {}, expected 16-bit integer PCM or 32-bit float",
                    match f {
                        SampleFormat::Int => "integer",
                        SampleFormat::Float => "float",
                    }
                ),
            ))
        }
    }
    let n = reader.duration() as usize;
    if n > MAX_SAMPLES {
        return Err(AsrError::wav(
            "duration",
            format!(
                "{n} samples ({:.1} s), at most {MAX_SAMPLES} (30 s)",
                n as f64 / f64::from(SAMPLE_RATE)
            ),
        ));
    }
    if n == 0 {
        return Err(AsrError::wav("data", "no samples"));
    }
    let truncated =
        |i: usize, e: hound::Error| AsrError::wav("data", format!("sample {i} of {n}: {e}"));
    let mut out = Vec::with_capacity(n);
    match spec.sample_format {
        SampleFormat::Int => {
            let mut reader = reader;
            for (i, s) in reader.samples::<i16>().enumerate() {
                out.push(f32::from(s.map_err(|e| truncated(i, e))?) / 32768.0);
            }
        }
        SampleFormat::Float => {
            let mut reader = reader;
            for (i, s) in reader.samples::<f32>().enumerate() {
                let v = s.map_err(|e| truncated(i, e))?;
                if !(-1.0..=1.0).contains(&v) {
                    return Err(AsrError::wav(
                        "data",
                        format!("sample {i} is {v}, outside [-1, 1]"),
                    ));
                }
                out.push(v);
            }
        }
    }
    if out.len() != n {
        return Err(AsrError::wav(
            "data",
            format!("{} samples read, the header says {n}", out.len()),
        ));
    }
    Ok(out)
}
