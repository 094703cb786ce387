//! CPU backend. Every output element is computed by exactly one thread, with a fixed
//! sequential reduction order that does not depend on the thread count; the CUDA kernels
//! in `gpu.rs` follow the same order element by element.

use crate::detmath::{self, fma};
use crate::error::{ExecError, Result};
use crate::ops::Op;
use crate::rng::Stream;
use crate::tensor::Tensor;

/// What a kernel needs to know besides its inputs.
#[derive(Debug, Clone, Copy)]
pub struct OpCtx<'a> {
    /// Node id (for errors).
    pub node: &'a str,
    /// Node index in topological order (keys the RNG).
    pub node_index: u32,
    /// Job seed.
    pub seed: u64,
    /// CPU threads to use (never changes results).
    pub threads: usize,
}

/// Splits `out` into contiguous groups of whole rows of `row` elements and runs
/// `f(first_row, rows)` for each group on its own thread.
pub fn par_rows<F>(out: &mut [f32], row: usize, threads: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let rows = out.len().checked_div(row).unwrap_or(0);
    let threads = threads.max(1).min(rows.max(1));
    // Small outputs: threads cost more than they save (results are identical either way).
    if threads == 1 || out.len() < 2048 {
        f(0, out);
        return;
    }
    let per = rows.div_ceil(threads);
    std::thread::scope(|s| {
        for (ci, chunk) in out.chunks_mut(per * row).enumerate() {
            let f = &f;
            s.spawn(move || f(ci * per, chunk));
        }
    });
}

/// Round-half-even quantization scale and codes of one row (shared with the GPU order).
pub fn quantize_row(x: &[f32], q: &mut [i32]) -> f32 {
    let mut amax = 0.0f32;
    for &v in x {
        let a = v.abs();
        if a > amax {
            amax = a;
        }
    }
    let sx = if amax == 0.0 { 1.0 } else { amax / 127.0 };
    for (qi, &v) in q.iter_mut().zip(x) {
        qi.clone_from(&(detmath::rint(v / sx).clamp(-127.0, 127.0) as i32));
    }
    sx
}

/// RoPE inverse frequencies `base^(-2i/hd)`, computed with our own exp/log (host, shared).
pub fn rope_inv_freq(hd: usize, base: f32) -> Vec<f32> {
    let lb = detmath::log(base);
    (0..hd / 2)
        .map(|i| detmath::exp(-((2 * i) as f32 / hd as f32) * lb))
        .collect()
}

/// Attention scale 1/sqrt(hd) (IEEE sqrt and division: correctly rounded everywhere).
pub fn attn_scale(hd: usize) -> f32 {
    1.0 / (hd as f32).sqrt()
}

/// Runs one op on the CPU.
pub fn run_op(op: &Op, ins: &[&Tensor], out_shape: &[usize], ctx: &OpCtx<'_>) -> Result<Tensor> {
    if crate::ops_nn::is_network(op) {
        return crate::cpu_nn::run(op, ins, out_shape, ctx);
    }
    if op.host_only() {
        return host_op(op, ins, out_shape, ctx);
    }
    let node = ctx.node;
    let f = |i: usize| -> Result<&[f32]> {
        ins.get(i)
            .ok_or_else(|| ExecError::node(node, op.name(), "missing input"))?
            .as_f32(node)
    };
    let shape = |i: usize| -> &[usize] { ins.get(i).map(|t| t.shape.as_slice()).unwrap_or(&[]) };
    let n_out = crate::tensor::numel(out_shape);
    let mut out = vec![0.0f32; n_out];
    let th = ctx.threads;
    let last = out_shape.last().copied().unwrap_or(1).max(1);
    match op {
        Op::MatMul => {
            let (a, b) = (f(0)?, f(1)?);
            let bias = if ins.len() == 3 { Some(f(2)?) } else { None };
            let (m, k) = (shape(0)[0], shape(0)[1]);
            let n = shape(1)[1];
            out = matmul(a, b, bias, m, k, n, th);
        }
        Op::QMatMul => {
            let x = f(0)?;
            let w = ins[1].as_i8(node)?;
            let ws = f(2)?;
            let (m, k) = (shape(0)[0], shape(0)[1]);
            let n = shape(1)[1];
            par_rows(&mut out, n, th, |r0, rows| {
                let mut q = vec![0i32; k];
                for (ri, orow) in rows.chunks_mut(n).enumerate() {
                    let i = r0 + ri;
                    let sx = quantize_row(&x[i * k..(i + 1) * k], &mut q);
                    for (j, o) in orow.iter_mut().enumerate() {
                        let mut acc = 0i32;
                        for (kk, &qv) in q.iter().enumerate() {
                            acc += qv * i32::from(w[kk * n + j]);
                        }
                        *o = acc as f32 * (sx * ws[j]);
                    }
                }
            });
            let _ = m;
        }
        Op::Add | Op::Mul | Op::Scale { .. } | Op::Silu | Op::Gelu => {
            let a = f(0)?;
            let b = if ins.len() > 1 { Some(f(1)?) } else { None };
            let bl = b.map(|b| b.len()).unwrap_or(1);
            par_rows(&mut out, last, th, |r0, rows| {
                let base = r0 * last;
                for (e, o) in rows.iter_mut().enumerate() {
                    let i = base + e;
                    let x = a[i];
                    *o = match op {
                        Op::Add => x + b.map_or(0.0, |b| b[i % bl]),
                        Op::Mul => x * b.map_or(1.0, |b| b[i % bl]),
                        Op::Scale { factor } => x * factor,
                        Op::Silu => detmath::silu(x),
                        _ => detmath::gelu(x),
                    };
                }
            });
        }
        Op::Softmax => {
            let x = f(0)?;
            par_rows(&mut out, last, th, |r0, rows| {
                for (ri, orow) in rows.chunks_mut(last).enumerate() {
                    let xr = &x[(r0 + ri) * last..(r0 + ri + 1) * last];
                    softmax_row(xr, orow);
                }
            });
        }
        Op::RmsNorm { eps } | Op::LayerNorm { eps } => {
            let (x, w) = (f(0)?, f(1)?);
            let b = if ins.len() == 3 { Some(f(2)?) } else { None };
            let d = last;
            par_rows(&mut out, d, th, |r0, rows| {
                for (ri, orow) in rows.chunks_mut(d).enumerate() {
                    let xr = &x[(r0 + ri) * d..(r0 + ri + 1) * d];
                    match b {
                        None => {
                            let mut ss = 0.0f32;
                            for &v in xr {
                                ss = fma(v, v, ss);
                            }
                            let r = detmath::rsqrt(ss / d as f32 + eps);
                            for ((o, &v), &wv) in orow.iter_mut().zip(xr).zip(w) {
                                *o = v * r * wv;
                            }
                        }
                        Some(b) => {
                            let mut s = 0.0f32;
                            for &v in xr {
                                s += v;
                            }
                            let mean = s / d as f32;
                            let mut acc = 0.0f32;
                            for &v in xr {
                                let t = v - mean;
                                acc = fma(t, t, acc);
                            }
                            let r = detmath::rsqrt(acc / d as f32 + eps);
                            for (j, o) in orow.iter_mut().enumerate() {
                                *o = fma((xr[j] - mean) * r, w[j], b[j]);
                            }
                        }
                    }
                }
            });
        }
        Op::Rope { heads, base } => {
            let x = f(0)?;
            let d = last;
            let hd = d / heads;
            let half = hd / 2;
            let inv = rope_inv_freq(hd, *base);
            par_rows(&mut out, d, th, |r0, rows| {
                for (ri, orow) in rows.chunks_mut(d).enumerate() {
                    let t = r0 + ri;
                    let xr = &x[t * d..(t + 1) * d];
                    for h in 0..*heads {
                        for i in 0..half {
                            let ang = t as f32 * inv[i];
                            let (c, s) = (detmath::cos(ang), detmath::sin(ang));
                            let (x0, x1) = (xr[h * hd + i], xr[h * hd + i + half]);
                            orow[h * hd + i] = x0 * c - x1 * s;
                            orow[h * hd + i + half] = x0 * s + x1 * c;
                        }
                    }
                }
            });
        }
        Op::Attention { heads } => {
            let (q, k, v) = (f(0)?, f(1)?, f(2)?);
            let d = last;
            let hd = d / heads;
            let scale = attn_scale(hd);
            par_rows(&mut out, d, th, |r0, rows| {
                let mut p = Vec::new();
                for (ri, orow) in rows.chunks_mut(d).enumerate() {
                    let i = r0 + ri;
                    for h in 0..*heads {
                        let off = h * hd;
                        p.clear();
                        let mut m = f32::NEG_INFINITY;
                        for j in 0..=i {
                            let mut acc = 0.0f32;
                            for e in 0..hd {
                                acc = fma(q[i * d + off + e], k[j * d + off + e], acc);
                            }
                            let s = acc * scale;
                            if s > m {
                                m = s;
                            }
                            p.push(s);
                        }
                        let mut sum = 0.0f32;
                        for s in p.iter_mut() {
                            *s = detmath::exp(*s - m);
                            sum += *s;
                        }
                        for e in 0..hd {
                            let mut acc = 0.0f32;
                            for (j, &pj) in p.iter().enumerate() {
                                acc = fma(pj, v[j * d + off + e], acc);
                            }
                            orow[off + e] = acc / sum;
                        }
                    }
                }
            });
        }
        Op::Conv2d { stride, pad } => {
            let (x, w, b) = (f(0)?, f(1)?, f(2)?);
            let xs = shape(0);
            let r = xs.len();
            let (c, h, wd) = (xs[r - 3], xs[r - 2], xs[r - 1]);
            let ws = shape(1);
            let (o, kh, kw) = (ws[0], ws[2], ws[3]);
            let (oh, ow) = (
                out_shape[out_shape.len() - 2],
                out_shape[out_shape.len() - 1],
            );
            let kk = c * kh * kw;
            let p = oh * ow;
            // Output (o, y, x) is the fma chain over (ci, ky, kx) in order from +0, a padded
            // tap adding an exact 0 (the direct loop skips it: the same bits), then + bias:
            // the order of the CUDA kernel. Computed as patches[P, K] · wᵀ[K, O] so the
            // many output pixels, not the few channels, are the parallel rows.
            let rows = im2row(x, (c, h, wd), (kh, kw), (oh, ow), (*stride, *pad), th);
            let mut wt = vec![0.0f32; kk * o];
            for oi in 0..o {
                for ki in 0..kk {
                    wt[ki * o + oi] = w[oi * kk + ki];
                }
            }
            let po = matmul(&rows, &wt, None, p, kk, o, th);
            for (oi, row) in out.chunks_mut(p.max(1)).enumerate() {
                for (pi, v) in row.iter_mut().enumerate() {
                    *v = po[pi * o + oi] + b[oi];
                }
            }
        }
        _ => return host_op(op, ins, out_shape, ctx),
    }
    Tensor::f32(out_shape.to_vec(), out)
}

/// Patches of a convolution, `[OH·OW, C·KH·KW]` with zeros for padded taps, built on
/// `threads` threads.
fn im2row(
    x: &[f32],
    (c, h, w): (usize, usize, usize),
    (kh, kw): (usize, usize),
    (oh, ow): (usize, usize),
    (stride, pad): (usize, usize),
    threads: usize,
) -> Vec<f32> {
    let kk = c * kh * kw;
    let mut rows = vec![0.0f32; oh * ow * kk];
    par_rows(&mut rows, kk, threads, |p0, chunk| {
        for (pi, row) in chunk.chunks_mut(kk.max(1)).enumerate() {
            let (y, xo) = ((p0 + pi) / ow, (p0 + pi) % ow);
            for ci in 0..c {
                for ky in 0..kh {
                    let iy = (y * stride + ky) as isize - pad as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    let src = &x[(ci * h + iy as usize) * w..][..w];
                    for kx in 0..kw {
                        let ix = (xo * stride + kx) as isize - pad as isize;
                        if ix >= 0 && ix < w as isize {
                            row[(ci * kh + ky) * kw + kx] = src[ix as usize];
                        }
                    }
                }
            }
        }
    });
    rows
}

/// Numerically stable softmax of one row (max, exp, sequential sum, divide).
pub fn softmax_row(x: &[f32], out: &mut [f32]) {
    let mut m = f32::NEG_INFINITY;
    for &v in x {
        if v > m {
            m = v;
        }
    }
    let mut sum = 0.0f32;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = detmath::exp(v - m);
        sum += *o;
    }
    for o in out.iter_mut() {
        *o /= sum;
    }
}

/// Ops that only move, generate or sample data; identical in every backend.
pub fn host_op(op: &Op, ins: &[&Tensor], out_shape: &[usize], ctx: &OpCtx<'_>) -> Result<Tensor> {
    let node = ctx.node;
    let get = |i: usize| -> Result<&Tensor> {
        ins.get(i)
            .copied()
            .ok_or_else(|| ExecError::node(node, op.name(), "missing input"))
    };
    match op {
        Op::Upsample { .. } | Op::Concat { .. } | Op::Narrow { .. } => {
            crate::cpu_nn::run(op, ins, out_shape, ctx)
        }
        Op::Embedding => {
            let table = get(0)?;
            let tab = table.as_f32(node)?;
            let (v, d) = (table.shape[0], table.shape[1]);
            let ids = get(1)?.as_i32(node)?;
            let mut out = Vec::with_capacity(ids.len() * d);
            for &id in ids {
                if id < 0 || id as usize >= v {
                    return Err(ExecError::IndexOutOfRange {
                        node: node.into(),
                        index: id.into(),
                        len: v,
                    });
                }
                out.extend_from_slice(&tab[id as usize * d..(id as usize + 1) * d]);
            }
            Tensor::f32(out_shape.to_vec(), out)
        }
        Op::Sample { temperature, top_k } => {
            let x = get(0)?;
            let xs = x.as_f32(node)?;
            let v = x.shape.last().copied().unwrap_or(0);
            let row = &xs[xs.len() - v..];
            let tok = sample_row(
                row,
                *temperature,
                *top_k,
                Stream {
                    seed: ctx.seed,
                    node: ctx.node_index,
                },
            );
            Tensor::i32(vec![1], vec![tok as i32])
        }
        Op::Append => {
            let mut s = get(0)?.as_i32(node)?.to_vec();
            s.extend_from_slice(get(1)?.as_i32(node)?);
            Tensor::i32(out_shape.to_vec(), s)
        }
        Op::LastRow => {
            let x = get(0)?;
            let xs = x.as_f32(node)?;
            let d = x.shape[1];
            Tensor::f32(out_shape.to_vec(), xs[xs.len() - d..].to_vec())
        }
        Op::Reshape { .. } => {
            let mut t = get(0)?.clone();
            t.shape = out_shape.to_vec();
            Ok(t)
        }
        Op::Transpose => {
            let x = get(0)?;
            let xs = x.as_f32(node)?;
            let (a, b) = (x.shape[0], x.shape[1]);
            let mut out = vec![0.0f32; a * b];
            for i in 0..a {
                for j in 0..b {
                    out[j * a + i] = xs[i * b + j];
                }
            }
            Tensor::f32(out_shape.to_vec(), out)
        }
        Op::Frames { win, hop } => {
            let xs = get(0)?.as_f32(node)?;
            let nf = out_shape[0];
            let mut out = Vec::with_capacity(nf * win);
            for fi in 0..nf {
                out.extend_from_slice(&xs[fi * hop..fi * hop + win]);
            }
            Tensor::f32(out_shape.to_vec(), out)
        }
        Op::RandN { .. } => {
            let s = Stream {
                seed: ctx.seed,
                node: ctx.node_index,
            };
            let n = crate::tensor::numel(out_shape);
            Tensor::f32(
                out_shape.to_vec(),
                (0..n as u64).map(|i| s.normal(i)).collect(),
            )
        }
        other => Err(ExecError::node(node, other.name(), "not a host op")),
    }
}

/// Seeded sampling of one row: argmax (first maximum) when temperature is 0, else
/// top-k (ties by lower index) softmax at `temperature`, inverse-CDF with Philox block 0.
pub fn sample_row(row: &[f32], temperature: f32, top_k: usize, stream: Stream) -> usize {
    if temperature == 0.0 {
        let mut best = 0;
        for (i, &v) in row.iter().enumerate() {
            if v > row[best] {
                best = i;
            }
        }
        return best;
    }
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    let k = if top_k == 0 {
        row.len()
    } else {
        top_k.min(row.len())
    };
    idx.truncate(k);
    let m = row[idx[0]] / temperature;
    let p: Vec<f32> = idx
        .iter()
        .map(|&i| detmath::exp(row[i] / temperature - m))
        .collect();
    let mut total = 0.0f32;
    for &x in &p {
        total += x;
    }
    let u = stream.uniform(0) * total;
    let mut cum = 0.0f32;
    for (j, &x) in p.iter().enumerate() {
        cum += x;
        if u < cum {
            return idx[j];
        }
    }
    idx[k - 1]
}

const MR: usize = 6;
const NR: usize = 16;
const KC: usize = 256;
const MC: usize = 72;

/// Deterministic matmul `a[M,K]·b[K,N] (+bias)`: output (i,j) is the fma chain
/// `acc = fma(a[i,k], b[k,j], acc)` for k = 0..K from +0, then `acc + bias[j]`.
/// Blocked GotoBLAS-style (K blocks of 256 processed in order, the running sums stored
/// exactly in the output between blocks; 72-row A blocks; B packed into 16-column
/// panels; 6×16 register tiles). AVX2+FMA when available: fma is exact, so the scalar
/// fallback gives identical bits.
pub fn matmul(
    a: &[f32],
    b: &[f32],
    bias: Option<&[f32]>,
    m: usize,
    k: usize,
    n: usize,
    threads: usize,
) -> Vec<f32> {
    let panels = n.div_ceil(NR);
    let mut packed = vec![0.0f32; panels * k * NR];
    for (p, pp) in packed.chunks_exact_mut((k * NR).max(1)).enumerate() {
        let j0 = p * NR;
        let w = NR.min(n - j0);
        for (kk, dst) in pp.chunks_exact_mut(NR).enumerate() {
            dst[..w].copy_from_slice(&b[kk * n + j0..kk * n + j0 + w]);
        }
    }
    let mut out = vec![0.0f32; m * n];
    if n == 0 || m == 0 {
        return out;
    }
    let avx = simd_available();
    par_rows(&mut out, n, threads, |r0, rows| {
        let nrows = rows.len() / n;
        // A block packed as groups of MR rows interleaved per k: pa[(g·kc + kk)·MR + r].
        let mut pa = vec![0.0f32; MC.div_ceil(MR) * MR * KC.min(k)];
        let mut kc0 = 0;
        while kc0 < k {
            let kc = KC.min(k - kc0);
            let mut ic = 0;
            while ic < nrows {
                let mc = MC.min(nrows - ic);
                let groups = mc.div_ceil(MR);
                for g in 0..groups {
                    let dst = &mut pa[g * kc * MR..(g + 1) * kc * MR];
                    let real = MR.min(ic + mc - (ic + g * MR));
                    let base = (r0 + ic + g * MR) * k + kc0;
                    if real == MR {
                        let rows6: [&[f32]; MR] =
                            std::array::from_fn(|r| &a[base + r * k..base + r * k + kc]);
                        for (kk, d) in dst.chunks_exact_mut(MR).enumerate() {
                            for (r, dv) in d.iter_mut().enumerate() {
                                *dv = rows6[r][kk];
                            }
                        }
                    } else {
                        for (kk, d) in dst.chunks_exact_mut(MR).enumerate() {
                            for (r, dv) in d.iter_mut().enumerate() {
                                *dv = if r < real { a[base + r * k + kk] } else { 0.0 };
                            }
                        }
                    }
                }
                for p in 0..panels {
                    let panel = &packed[(p * k + kc0) * NR..(p * k + kc0 + kc) * NR];
                    let j0 = p * NR;
                    let nw = NR.min(n - j0);
                    for g in 0..groups {
                        let i = ic + g * MR;
                        let mr = MR.min(ic + mc - i);
                        let mut tile = [[0.0f32; NR]; MR];
                        if kc0 > 0 {
                            for (r, t) in tile.iter_mut().enumerate().take(mr) {
                                t[..nw].copy_from_slice(
                                    &rows[(i + r) * n + j0..(i + r) * n + j0 + nw],
                                );
                            }
                        }
                        micro(
                            avx,
                            &pa[g * kc * MR..(g + 1) * kc * MR],
                            kc,
                            panel,
                            &mut tile,
                        );
                        for (r, t) in tile.iter().enumerate().take(mr) {
                            rows[(i + r) * n + j0..(i + r) * n + j0 + nw].copy_from_slice(&t[..nw]);
                        }
                    }
                }
                ic += mc;
            }
            kc0 += kc;
        }
        if let Some(bv) = bias {
            for row in rows.chunks_mut(n) {
                for (o, &bb) in row.iter_mut().zip(bv) {
                    *o += bb;
                }
            }
        }
    });
    out
}

/// True when the AVX2+FMA kernels can be used.
pub fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn micro(avx: bool, pa: &[f32], kc: usize, panel: &[f32], tile: &mut [[f32; NR]; MR]) {
    #[cfg(target_arch = "x86_64")]
    if avx {
        // SAFETY: avx2 and fma were detected at run time; the kernel asserts the slice
        // sizes it indexes (pa: kc*MR, panel: kc*NR).
        unsafe { micro_avx(pa, kc, panel, tile) };
        return;
    }
    let _ = avx;
    for kk in 0..kc {
        let brow = &panel[kk * NR..(kk + 1) * NR];
        for r in 0..MR {
            let av = pa[kk * MR + r];
            for jj in 0..NR {
                tile[r][jj] = fma(av, brow[jj], tile[r][jj]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro_avx(pa: &[f32], kc: usize, panel: &[f32], tile: &mut [[f32; NR]; MR]) {
    use std::arch::x86_64::*;
    assert!(pa.len() >= kc * MR && panel.len() >= kc * NR);
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    for (r, accr) in acc.iter_mut().enumerate() {
        // SAFETY: tile rows hold NR = 16 floats, two 8-lane loads.
        unsafe {
            accr[0] = _mm256_loadu_ps(tile[r].as_ptr());
            accr[1] = _mm256_loadu_ps(tile[r].as_ptr().add(8));
        }
    }
    let ap = pa.as_ptr();
    let bp = panel.as_ptr();
    for kk in 0..kc {
        // SAFETY: kk < kc and panel has kc*NR elements (asserted above).
        let (b0, b1) = unsafe {
            (
                _mm256_loadu_ps(bp.add(kk * NR)),
                _mm256_loadu_ps(bp.add(kk * NR + 8)),
            )
        };
        for (r, accr) in acc.iter_mut().enumerate() {
            // SAFETY: kk*MR + r < kc*MR <= pa.len() (asserted above).
            let av = _mm256_set1_ps(unsafe { *ap.add(kk * MR + r) });
            accr[0] = _mm256_fmadd_ps(av, b0, accr[0]);
            accr[1] = _mm256_fmadd_ps(av, b1, accr[1]);
        }
    }
    for (r, accr) in acc.iter().enumerate() {
        // SAFETY: tile rows hold NR = 16 floats, two 8-lane stores.
        unsafe {
            _mm256_storeu_ps(tile[r].as_mut_ptr(), accr[0]);
            _mm256_storeu_ps(tile[r].as_mut_ptr().add(8), accr[1]);
        }
    }
}
