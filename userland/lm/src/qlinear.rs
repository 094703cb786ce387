//! Linear layers that keep Q4_1 / Q8_0 weights quantized in memory and dequantize each
//! weight inside the kernel, with exactly the operation of [`crate::quant`]
//! (`fma(d, q, m)` for Q4_1, `d · q` for Q8_0). So `y[i, j]` is the same fma chain over
//! the same f32 weights as [`crate::linear::Packed`] — the same bits — while a decode
//! step streams ~0.6 byte per weight instead of 4.
//!
//! Layout, per 16-column panel `p` and 32-element block `b`:
//! - Q4_1: scales `d[16], m[16]` (f32), then for each `kk` of the block two u32 words
//!   (little-endian), word `w` holding column `8w + i` in bits `4i..4i+4` — so one
//!   broadcast load and a variable shift put eight columns' nibbles in eight lanes
//!   without any shuffle;
//! - Q8_0: scales `d[16]`, then for each `kk` 16 bytes (column order, i8).
//!
//! Padding columns have `d = m = 0` (their outputs are discarded).

use crate::error::{LmError, Result};
use crate::gguf::GgmlType;
use crate::linear::NR;
use half::f16;
use havn_exec::cpu::simd_available;

use crate::linear::{gather, row_tiles, MR, PANELS_PER_TASK};

const QK: usize = 32;

/// Quantization kinds kept in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QKind {
    Q4_1,
    Q8_0,
}

impl QKind {
    /// The kind for a ggml type, if it is kept quantized.
    pub fn of(ty: GgmlType) -> Option<QKind> {
        match ty {
            GgmlType::Q4_1 => Some(QKind::Q4_1),
            GgmlType::Q8_0 => Some(QKind::Q8_0),
            _ => None,
        }
    }
    fn scales(self) -> usize {
        match self {
            QKind::Q4_1 => 2 * NR,
            QKind::Q8_0 => NR,
        }
    }
    fn qbytes(self) -> usize {
        match self {
            QKind::Q4_1 => NR / 2,
            QKind::Q8_0 => NR,
        }
    }
    fn raw_block(self) -> usize {
        match self {
            QKind::Q4_1 => 20,
            QKind::Q8_0 => 34,
        }
    }
}

/// A quantized `[n, k]` weight matrix in panels.
#[derive(Debug, Clone)]
pub struct QPacked {
    pub k: usize,
    pub n: usize,
    pub kind: QKind,
    scales: Vec<f32>,
    quants: Vec<u8>,
}

fn h(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[0], b[1]]).to_f32()
}

fn not_finite(name: &str, row: usize, block: usize) -> LmError {
    LmError::Tensor {
        name: name.into(),
        reason: format!("row {row} block {block}: a scale is not finite"),
    }
}

/// A linear layer: quantized in memory when the file's type allows, else f32 panels.
#[derive(Debug, Clone)]
pub enum Linear {
    F32(crate::linear::Packed),
    Quantized(QPacked),
}

impl Linear {
    /// `y = x · wᵀ` (the same bits either way).
    pub fn apply(&self, x: &[f32], m: usize, pool: &rayon::ThreadPool) -> Vec<f32> {
        match self {
            Linear::F32(p) => p.apply(x, m, pool),
            Linear::Quantized(q) => q.apply(x, m, pool),
        }
    }
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        match self {
            Linear::F32(p) => p.bytes(),
            Linear::Quantized(q) => q.bytes(),
        }
    }
    /// Output `j`'s weights `w[j][..]` (an embedding row, for a tied table).
    pub fn row(&self, j: usize) -> Vec<f32> {
        match self {
            Linear::F32(p) => p.row(j),
            Linear::Quantized(q) => q.row(j),
        }
    }
}

impl QPacked {
    /// Packs raw ggml blocks of several `[rows, k]` matrices stacked by output.
    /// `parts` are (tensor name, raw bytes, rows); errors name the tensor and its row.
    pub fn from_raw(kind: QKind, parts: &[(&str, &[u8], usize)], k: usize) -> Result<QPacked> {
        if k % QK != 0 {
            return Err(LmError::Tensor {
                name: parts.first().map_or("<linear>", |p| p.0).into(),
                reason: format!("row length {k} is not a multiple of {QK}"),
            });
        }
        let nb = k / QK;
        let n: usize = parts.iter().map(|p| p.2).sum();
        let np = n.div_ceil(NR);
        let mut scales = vec![0.0f32; np * nb * kind.scales()];
        let mut quants = vec![0u8; np * nb * QK * kind.qbytes()];
        let mut j = 0;
        for &(name, raw, rows) in parts {
            if raw.len() != rows * nb * kind.raw_block() {
                return Err(LmError::Tensor {
                    name: name.into(),
                    reason: format!("{} bytes for {rows} rows of {k}", raw.len()),
                });
            }
            let j0 = j;
            for row in raw.chunks_exact(nb * kind.raw_block()) {
                let (p, c) = (j / NR, j % NR);
                for (b, blk) in row.chunks_exact(kind.raw_block()).enumerate() {
                    let pb = p * nb + b;
                    let sc = &mut scales[pb * kind.scales()..(pb + 1) * kind.scales()];
                    let q = &mut quants[pb * QK * kind.qbytes()..(pb + 1) * QK * kind.qbytes()];
                    match kind {
                        QKind::Q4_1 => {
                            sc[c] = h(&blk[0..2]);
                            sc[NR + c] = h(&blk[2..4]);
                            if !(sc[c].is_finite() && sc[NR + c].is_finite()) {
                                return Err(not_finite(name, j - j0, b));
                            }
                            let (byte, shift) = ((c / 8) * 4 + (c % 8) / 2, (c % 2) * 4);
                            for e in 0..QK {
                                let nib = if e < 16 {
                                    blk[4 + e] & 0x0f
                                } else {
                                    blk[4 + e - 16] >> 4
                                };
                                q[e * 8 + byte] |= nib << shift;
                            }
                        }
                        QKind::Q8_0 => {
                            sc[c] = h(&blk[0..2]);
                            if !sc[c].is_finite() {
                                return Err(not_finite(name, j - j0, b));
                            }
                            for e in 0..QK {
                                q[e * NR + c] = blk[2 + e];
                            }
                        }
                    }
                }
                j += 1;
            }
        }
        Ok(QPacked {
            k,
            n,
            kind,
            scales,
            quants,
        })
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.scales.len() * 4 + self.quants.len()
    }

    /// Output `j`'s weights, dequantized exactly as the kernel does.
    pub fn row(&self, j: usize) -> Vec<f32> {
        let nb = self.k / QK;
        let (ss, qs) = (self.kind.scales(), QK * self.kind.qbytes());
        let (p, c) = (j / NR, j % NR);
        let mut out = Vec::with_capacity(self.k);
        for b in 0..nb {
            let pb = p * nb + b;
            let (sc, q) = (
                &self.scales[pb * ss..(pb + 1) * ss],
                &self.quants[pb * qs..(pb + 1) * qs],
            );
            for kk in 0..QK {
                out.push(weight(self.kind, sc, q, kk, c));
            }
        }
        out
    }

    /// `y = x · wᵀ` for `x[m, k]`, returning `[m, n]` (bits of the f32 path).
    pub fn apply(&self, x: &[f32], m: usize, pool: &rayon::ThreadPool) -> Vec<f32> {
        assert_eq!(x.len(), m * self.k, "input size");
        let n = self.n;
        let np = n.div_ceil(NR);
        let nb = self.k / QK;
        let avx = simd_available();
        let tasks: Vec<usize> = (0..np.div_ceil(PANELS_PER_TASK)).collect();
        let (ss, qs) = (nb * self.kind.scales(), nb * QK * self.kind.qbytes());
        let parts: Vec<Vec<f32>> = crate::linear::run_tasks(pool, &tasks, |&t| {
            let p0 = t * PANELS_PER_TASK;
            let p1 = (p0 + PANELS_PER_TASK).min(np);
            let mut out = vec![0.0f32; (p1 - p0) * m * NR];
            #[cfg(target_arch = "x86_64")]
            if m == 1 && avx {
                // Decode: one row against several panels at once (independent
                // accumulator chains; each output's chain is unchanged).
                let mut tiles = [[0.0f32; NR]; PANELS_PER_TASK];
                // SAFETY: avx2 and fma were detected at run time; the kernel
                // checks the sizes of the slices it reads.
                unsafe {
                    row_panels_avx(
                        self.kind,
                        x,
                        nb,
                        &self.scales[p0 * ss..p1 * ss],
                        &self.quants[p0 * qs..p1 * qs],
                        p1 - p0,
                        &mut tiles,
                    )
                };
                for (pl, t) in tiles.iter().take(p1 - p0).enumerate() {
                    out[pl * NR..(pl + 1) * NR].copy_from_slice(t);
                }
                return out;
            }
            for p in p0..p1 {
                let sc = &self.scales[p * ss..(p + 1) * ss];
                let q = &self.quants[p * qs..(p + 1) * qs];
                let o = &mut out[(p - p0) * m * NR..(p - p0 + 1) * m * NR];
                row_tiles(o, m, |i, rows, tile| {
                    let xs = &x[i * self.k..(i + rows) * self.k];
                    tile_kernel(avx, self.kind, xs, rows, nb, sc, q, tile);
                });
            }
            out
        });
        gather(&parts, m, n)
    }
}

/// Dequantizes column block `w[kk][c]` of one panel block (the scalar reference).
fn weight(kind: QKind, sc: &[f32], q: &[u8], kk: usize, c: usize) -> f32 {
    match kind {
        QKind::Q4_1 => {
            let b = q[kk * 8 + (c / 8) * 4 + (c % 8) / 2];
            let nib = if c % 2 == 0 { b & 0x0f } else { b >> 4 };
            sc[c].mul_add(f32::from(nib), sc[NR + c])
        }
        QKind::Q8_0 => sc[c] * f32::from(q[kk * NR + c] as i8),
    }
}

#[allow(clippy::too_many_arguments)]
fn tile_kernel(
    avx: bool,
    kind: QKind,
    x: &[f32],
    rows: usize,
    nb: usize,
    sc: &[f32],
    q: &[u8],
    tile: &mut [[f32; NR]; MR],
) {
    #[cfg(target_arch = "x86_64")]
    if avx {
        // SAFETY: avx2 and fma were detected at run time; the kernel checks the sizes
        // of the slices it reads.
        unsafe { tile_avx(kind, x, rows, nb, sc, q, tile) };
        return;
    }
    let _ = avx;
    let k = nb * QK;
    let (ss, qs) = (kind.scales(), QK * kind.qbytes());
    for b in 0..nb {
        let (s, qq) = (&sc[b * ss..(b + 1) * ss], &q[b * qs..(b + 1) * qs]);
        for kk in 0..QK {
            let w: [f32; NR] = std::array::from_fn(|c| weight(kind, s, qq, kk, c));
            for (r, t) in tile.iter_mut().enumerate().take(rows) {
                let xv = x[r * k + b * QK + kk];
                for (tc, &wc) in t.iter_mut().zip(&w) {
                    *tc = xv.mul_add(wc, *tc);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx(
    kind: QKind,
    x: &[f32],
    rows: usize,
    nb: usize,
    sc: &[f32],
    q: &[u8],
    tile: &mut [[f32; NR]; MR],
) {
    use std::arch::x86_64::*;
    let k = nb * QK;
    let (ss, qs) = (kind.scales(), QK * kind.qbytes());
    assert!(rows <= MR && x.len() >= rows * k && sc.len() >= nb * ss && q.len() >= nb * qs);
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    let off: [usize; MR] = std::array::from_fn(|r| if r < rows { r * k } else { 0 });
    let xp = x.as_ptr();
    let mask = _mm256_set1_epi32(0x0f);
    let shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    for b in 0..nb {
        // SAFETY: b < nb and sc holds nb·ss floats, q nb·qs bytes (asserted above).
        let (sp, qp) = unsafe { (sc.as_ptr().add(b * ss), q.as_ptr().add(b * qs)) };
        // SAFETY: each scale row holds NR = 16 floats.
        let (d0, d1) = unsafe { (_mm256_loadu_ps(sp), _mm256_loadu_ps(sp.add(8))) };
        let (m0, m1) = match kind {
            // SAFETY: Q4_1 scale blocks hold d[16] then m[16].
            QKind::Q4_1 => unsafe { (_mm256_loadu_ps(sp.add(16)), _mm256_loadu_ps(sp.add(24))) },
            QKind::Q8_0 => (_mm256_setzero_ps(), _mm256_setzero_ps()),
        };
        for kk in 0..QK {
            // SAFETY: kk < QK within the block's quant bytes.
            let (w0, w1) = unsafe { dequant_avx(kind, qp, kk, [d0, d1], [m0, m1], shifts, mask) };
            for (r, a) in acc.iter_mut().enumerate().take(rows) {
                // SAFETY: off[r] + b·QK + kk < rows·k ≤ x.len() (asserted above).
                let xv = _mm256_set1_ps(unsafe { *xp.add(off[r] + b * QK + kk) });
                a[0] = _mm256_fmadd_ps(xv, w0, a[0]);
                a[1] = _mm256_fmadd_ps(xv, w1, a[1]);
            }
        }
    }
    for (r, a) in acc.iter().enumerate().take(rows) {
        // SAFETY: each tile row holds NR = 16 floats: two 8-lane stores.
        unsafe {
            _mm256_storeu_ps(tile[r].as_mut_ptr(), a[0]);
            _mm256_storeu_ps(tile[r].as_mut_ptr().add(8), a[1]);
        }
    }
}

/// Decode kernel: one row of x against `np` (≤ 4) consecutive panels, 8 independent
/// accumulator chains; per output the same fma chain as [`tile_avx`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_panels_avx(
    kind: QKind,
    x: &[f32],
    nb: usize,
    sc: &[f32],
    q: &[u8],
    np: usize,
    out: &mut [[f32; NR]; PANELS_PER_TASK],
) {
    use std::arch::x86_64::*;
    let (ss, qs) = (nb * kind.scales(), nb * QK * kind.qbytes());
    assert!(
        np <= PANELS_PER_TASK && x.len() >= nb * QK && sc.len() >= np * ss && q.len() >= np * qs
    );
    let mut acc = [[_mm256_setzero_ps(); 2]; PANELS_PER_TASK];
    let mask = _mm256_set1_epi32(0x0f);
    let shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    let bs = kind.scales();
    let bq = QK * kind.qbytes();
    for b in 0..nb {
        let mut d = [[_mm256_setzero_ps(); 2]; PANELS_PER_TASK];
        let mut mm = [[_mm256_setzero_ps(); 2]; PANELS_PER_TASK];
        let mut qp = [q.as_ptr(); PANELS_PER_TASK];
        for p in 0..np {
            // SAFETY: p < np and b < nb: the block's scales and quants are in bounds.
            unsafe {
                let sp = sc.as_ptr().add(p * ss + b * bs);
                d[p] = [_mm256_loadu_ps(sp), _mm256_loadu_ps(sp.add(8))];
                if kind == QKind::Q4_1 {
                    mm[p] = [_mm256_loadu_ps(sp.add(16)), _mm256_loadu_ps(sp.add(24))];
                }
                qp[p] = q.as_ptr().add(p * qs + b * bq);
            }
        }
        for kk in 0..QK {
            // SAFETY: b·QK + kk < nb·QK ≤ x.len() (asserted above).
            let xv = _mm256_set1_ps(unsafe { *x.as_ptr().add(b * QK + kk) });
            for p in 0..np {
                // SAFETY: kk < QK within this panel's block.
                let (w0, w1) = unsafe { dequant_avx(kind, qp[p], kk, d[p], mm[p], shifts, mask) };
                acc[p][0] = _mm256_fmadd_ps(xv, w0, acc[p][0]);
                acc[p][1] = _mm256_fmadd_ps(xv, w1, acc[p][1]);
            }
        }
    }
    for p in 0..np {
        // SAFETY: each tile row holds NR = 16 floats: two 8-lane stores.
        unsafe {
            _mm256_storeu_ps(out[p].as_mut_ptr(), acc[p][0]);
            _mm256_storeu_ps(out[p].as_mut_ptr().add(8), acc[p][1]);
        }
    }
}

/// The 16 columns' nibbles of one `kk` as two 8-lane f32 vectors: each u32 word is
/// broadcast (a plain load), shifted per lane and masked — no shuffle.
///
/// # Safety
/// `p` must point to 8 readable bytes; the caller has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn nibbles(
    p: *const u8,
    shifts: std::arch::x86_64::__m256i,
    mask: std::arch::x86_64::__m256i,
) -> (std::arch::x86_64::__m256, std::arch::x86_64::__m256) {
    use std::arch::x86_64::*;
    // SAFETY: the caller guarantees 8 readable bytes at p.
    let (w0, w1) = unsafe {
        (
            std::ptr::read_unaligned(p.cast::<i32>()),
            std::ptr::read_unaligned(p.add(4).cast::<i32>()),
        )
    };
    let q0 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(w0), shifts), mask);
    let q1 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(w1), shifts), mask);
    (_mm256_cvtepi32_ps(q0), _mm256_cvtepi32_ps(q1))
}

/// One `kk`'s 16 weights of a panel block as two 8-lane vectors, dequantized exactly
/// as [`weight`] does (`fma(d, q, m)` for Q4_1, `d · q` for Q8_0).
///
/// # Safety
/// `qp` points to the block's quant bytes and `kk < QK`; the caller has AVX2+FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn dequant_avx(
    kind: QKind,
    qp: *const u8,
    kk: usize,
    d: [std::arch::x86_64::__m256; 2],
    m: [std::arch::x86_64::__m256; 2],
    shifts: std::arch::x86_64::__m256i,
    mask: std::arch::x86_64::__m256i,
) -> (std::arch::x86_64::__m256, std::arch::x86_64::__m256) {
    use std::arch::x86_64::*;
    match kind {
        QKind::Q4_1 => {
            // SAFETY: 8 bytes per kk within the block (the caller's contract).
            let (q0, q1) = unsafe { nibbles(qp.add(kk * 8), shifts, mask) };
            (
                _mm256_fmadd_ps(d[0], q0, m[0]),
                _mm256_fmadd_ps(d[1], q1, m[1]),
            )
        }
        QKind::Q8_0 => {
            // SAFETY: 16 bytes per kk within the block (the caller's contract).
            let raw = unsafe { _mm_loadu_si128(qp.add(kk * 16).cast()) };
            let q0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(raw));
            let q1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(raw, 8)));
            (_mm256_mul_ps(d[0], q0), _mm256_mul_ps(d[1], q1))
        }
    }
}
