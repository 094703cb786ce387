//! Exact dequantization of ggml blocks to f32. Every value is one correctly rounded f32
//! operation on exactly converted inputs, so it is the same on every machine:
//! - F16: exact conversion;
//! - Q8_0 (f16 d, 32 × i8): `d · q` (exact: 11 + 8 significant bits);
//! - Q4_0 (f16 d, 16 bytes of nibbles): `d · (q − 8)` (exact);
//! - Q4_1 (f16 d, f16 m, 16 bytes of nibbles): `fma(d, q, m)`, which equals `d·q + m`
//!   rounded once because `d·q` is exact (11 + 4 bits).
//!
//! Within a 4-bit block, byte j holds element j in its low nibble and element j + 16 in
//! its high nibble.

use crate::error::{LmError, Result};
use crate::gguf::{GgmlType, TensorInfo};
use half::f16;

fn h(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[0], b[1]]).to_f32()
}

/// Dequantizes `raw` (whole blocks of `ty`) into `out` (`out.len()` elements).
pub fn dequantize_into(ty: GgmlType, raw: &[u8], out: &mut [f32]) -> Result<()> {
    let bl = ty.block_len() as usize;
    let bb = ty.block_bytes() as usize;
    if out.len() % bl != 0 || raw.len() != out.len() / bl * bb {
        return Err(LmError::Tensor {
            name: format!("<{} data>", ty.name()),
            reason: format!(
                "{} bytes do not hold {} elements of {}",
                raw.len(),
                out.len(),
                ty.name()
            ),
        });
    }
    match ty {
        GgmlType::F32 => {
            for (o, b) in out.iter_mut().zip(raw.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (o, b) in out.iter_mut().zip(raw.chunks_exact(2)) {
                *o = h(b);
            }
        }
        GgmlType::Q8_0 => {
            for (o, b) in out.chunks_exact_mut(32).zip(raw.chunks_exact(34)) {
                let d = h(&b[0..2]);
                for (v, &q) in o.iter_mut().zip(&b[2..34]) {
                    *v = d * f32::from(q as i8);
                }
            }
        }
        GgmlType::Q4_0 => {
            for (o, b) in out.chunks_exact_mut(32).zip(raw.chunks_exact(18)) {
                let d = h(&b[0..2]);
                for (j, &q) in b[2..18].iter().enumerate() {
                    o[j] = d * f32::from((q & 0x0f) as i8 - 8);
                    o[j + 16] = d * f32::from((q >> 4) as i8 - 8);
                }
            }
        }
        GgmlType::Q4_1 => {
            for (o, b) in out.chunks_exact_mut(32).zip(raw.chunks_exact(20)) {
                let (d, m) = (h(&b[0..2]), h(&b[2..4]));
                for (j, &q) in b[4..20].iter().enumerate() {
                    o[j] = d.mul_add(f32::from(q & 0x0f), m);
                    o[j + 16] = d.mul_add(f32::from(q >> 4), m);
                }
            }
        }
    }
    Ok(())
}

/// Dequantizes a whole tensor of a file.
pub fn dequantize(file: &[u8], t: &TensorInfo) -> Result<Vec<f32>> {
    let raw = file
        .get(t.start..t.start + t.len)
        .ok_or_else(|| LmError::Tensor {
            name: t.name.clone(),
            reason: "data outside the file".into(),
        })?;
    let mut out = vec![0.0f32; t.numel() as usize];
    dequantize_into(t.ty, raw, &mut out).map_err(|e| LmError::Tensor {
        name: t.name.clone(),
        reason: e.to_string(),
    })?;
    Ok(out)
}
