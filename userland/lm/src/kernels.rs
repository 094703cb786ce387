//! The element-wise and attention parts of a block, each with one definition of its
//! arithmetic (the `*_body` functions) compiled twice: plainly, and inside a function
//! with AVX2+FMA enabled, so that `mul_add` is one `vfmadd` instead of a call into a
//! software fma. fma is exact either way: both versions give the same bits.

use havn_exec::cpu::simd_available;
use havn_exec::detmath;

/// Attention geometry.
#[derive(Debug, Clone, Copy)]
pub struct AttnDims {
    pub d: usize,
    pub kv_dim: usize,
    pub head_dim: usize,
    pub heads: usize,
    pub kv_heads: usize,
}

macro_rules! fma_dispatch {
    ($(#[$doc:meta])* pub fn $name:ident, $fast:ident, $body:ident ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)?) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $fast($($arg: $ty),*) $(-> $ret)? {
            $body($($arg),*)
        }
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            if simd_available() {
                // SAFETY: avx2 and fma were detected at run time.
                return unsafe { $fast($($arg),*) };
            }
            $body($($arg),*)
        }
    };
}

#[inline(always)]
fn rmsnorm_body(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let d = w.len();
    let mut out = vec![0.0f32; x.len()];
    for (o, xr) in out.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
        let mut ss = 0.0f32;
        for &v in xr {
            ss = v.mul_add(v, ss);
        }
        let r = detmath::rsqrt(ss / d as f32 + eps);
        for ((ov, &xv), &wv) in o.iter_mut().zip(xr).zip(w) {
            *ov = (xv * r) * wv;
        }
    }
    out
}

fma_dispatch!(
    /// `x · rsqrt(mean(x²) + eps) · w` for each row: `ss = fma(x, x, ss)` in order.
    pub fn rmsnorm, rmsnorm_fma, rmsnorm_body(x: &[f32], w: &[f32], eps: f32) -> Vec<f32>
);

#[inline(always)]
fn rope_rows_body(x: &mut [f32], row_len: usize, head_dim: usize, inv_freq: &[f32], pos0: usize) {
    for (r, row) in x.chunks_exact_mut(row_len).enumerate() {
        let pos = (pos0 + r) as f32;
        for head in row.chunks_exact_mut(head_dim) {
            for (i, &f) in inv_freq.iter().enumerate() {
                let th = pos * f;
                let (c, s) = (detmath::cos(th), detmath::sin(th));
                let (x0, x1) = (head[2 * i], head[2 * i + 1]);
                head[2 * i] = x0.mul_add(c, -(x1 * s));
                head[2 * i + 1] = x0.mul_add(s, x1 * c);
            }
        }
    }
}

fma_dispatch!(
    /// RoPE on adjacent pairs of each head of rows of `row_len` at positions `pos0..`:
    /// `θ = pos · inv_freq[i]`, `y0 = fma(x0, cos θ, −(x1 · sin θ))`, `y1 = fma(x0, sin θ, x1 · cos θ)`.
    pub fn rope, rope_fma, rope_rows_body(x: &mut [f32], row_len: usize, head_dim: usize, inv_freq: &[f32], pos0: usize)
);

#[inline(always)]
fn attention_body(
    q: &[f32],
    cache_k: &[f32],
    cache_v: &[f32],
    pos0: usize,
    g: AttnDims,
) -> Vec<f32> {
    let AttnDims {
        d,
        kv_dim: kvd,
        head_dim: hd,
        heads,
        kv_heads,
    } = g;
    let rows = q.len() / d;
    let group = heads / kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let mut att = vec![0.0f32; rows * d];
    let mut scores = Vec::new();
    for r in 0..rows {
        let n = pos0 + r + 1;
        for head in 0..heads {
            let kh = head / group;
            let qv = &q[r * d + head * hd..r * d + (head + 1) * hd];
            scores.clear();
            let mut m = f32::NEG_INFINITY;
            for t in 0..n {
                let kv = &cache_k[t * kvd + kh * hd..t * kvd + (kh + 1) * hd];
                let mut s = 0.0f32;
                for (a, b) in qv.iter().zip(kv) {
                    s = a.mul_add(*b, s);
                }
                let s = s * scale;
                m = m.max(s);
                scores.push(s);
            }
            let mut sum = 0.0f32;
            for s in scores.iter_mut() {
                *s = detmath::exp(*s - m);
                sum += *s;
            }
            let out = &mut att[r * d + head * hd..r * d + (head + 1) * hd];
            for (t, &e) in scores.iter().enumerate() {
                let p = e / sum;
                let vv = &cache_v[t * kvd + kh * hd..t * kvd + (kh + 1) * hd];
                for (o, &vx) in out.iter_mut().zip(vv) {
                    *o = p.mul_add(vx, *o);
                }
            }
        }
    }
    att
}

fma_dispatch!(
    /// Causal GQA attention of rows `q` (positions `pos0..`) over the cache: score = fma
    /// chain of q·k, `· 1/√hd`; softmax with `detmath::exp` and a sequential sum;
    /// `p = e / sum`; output = fma chain of `p · v` over positions in order.
    pub fn attention, attention_fma, attention_body(q: &[f32], cache_k: &[f32], cache_v: &[f32], pos0: usize, g: AttnDims) -> Vec<f32>
);

#[inline(always)]
fn swiglu_body(gu: &[f32], ffn: usize) -> Vec<f32> {
    let mut act = Vec::with_capacity(gu.len() / 2);
    for r in gu.chunks_exact(2 * ffn) {
        for j in 0..ffn {
            act.push(detmath::silu(r[j]) * r[ffn + j]);
        }
    }
    act
}

fma_dispatch!(
    /// `silu(gate) · up` for rows of stacked `[gate | up]`.
    pub fn swiglu, swiglu_fma, swiglu_body(gu: &[f32], ffn: usize) -> Vec<f32>
);
