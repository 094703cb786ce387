//! Deterministic building blocks of the transformer: linear layers, LayerNorm, exact
//! (erf) GELU, row softmax and transposes, each element computed in a fixed order
//! that does not depend on the thread count.
//!
//! - linear: `y[r, o] = (fma chain over i of W[o, i]·x[r, i], from +0) + b[o]`, computed
//!   as havn-exec's `matmul(W, xᵀ)` (the same chain for any number of rows);
//! - LayerNorm (eps 1e-5): `mean = (sequential sum) / d`, `var = (fma chain of
//!   (x−mean)²) / d`, `y = ((x − mean) · rsqrt(var + eps)) · γ + β`, `detmath::rsqrt`;
//! - GELU: `0.5·x·(1 + erf(x/√2))` in f64, rounded once to f32: erf by its Maclaurin
//!   series (34 terms, Horner in u²) for |u| < 2.5, else `erfc(|u|) = e^(−u²)/√π ·
//!   CF(|u|)` (the Laplace continued fraction, 24 terms, bottom-up) with our own f64
//!   exp (Cody–Waite reduction, degree-13 Taylor); only `+ · fma /` and bit operations;
//! - softmax: max, `detmath::exp(x − max)`, sequential sum, IEEE division (havn-exec's
//!   `softmax_row` order);
//! - the element-wise loops run compiled with hardware FMA when the CPU has it (the
//!   same bits: `mul_add` is the correctly rounded fused multiply-add either way).

use havn_exec::cpu::{matmul, par_rows};
use havn_exec::detmath;

/// LayerNorm epsilon (CTranslate2's default for norms with a beta).
pub const LN_EPS: f32 = 1e-5;

/// A linear layer `y = x·Wᵀ + b` with `W` kept as `[out, in]`.
#[derive(Debug, Clone)]
pub struct Linear {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub inp: usize,
    pub out: usize,
}

impl Linear {
    /// `x` is `[rows, inp]`; returns `[rows, out]`.
    pub fn forward(&self, x: &[f32], rows: usize, threads: usize) -> Vec<f32> {
        let xt = transpose(x, rows, self.inp);
        let yt = matmul(&self.w, &xt, None, self.out, self.inp, rows, threads);
        let mut y = transpose(&yt, self.out, rows);
        for row in y.chunks_exact_mut(self.out) {
            for (v, &b) in row.iter_mut().zip(&self.b) {
                *v += b;
            }
        }
        y
    }
}

/// `[rows, cols]` → `[cols, rows]`.
pub fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0f32; x.len()];
    for (r, row) in x.chunks_exact(cols.max(1)).take(rows).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            t[c * rows + r] = v;
        }
    }
    t
}

/// Runs `f` compiled with hardware FMA when the CPU has it. Every `mul_add` is the
/// correctly rounded IEEE fused multiply-add either way (hardware instruction or libm
/// call), so the bits are the same; only the speed differs.
#[inline(always)]
fn with_fma<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "fma")]
        unsafe fn run<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports FMA (checked just above), the only requirement of
            // calling a `#[target_feature(enable = "fma")]` function.
            return unsafe { run(f) };
        }
    }
    f()
}

/// LayerNorm of each `d`-wide row of `x`.
pub fn layer_norm(x: &[f32], d: usize, gamma: &[f32], beta: &[f32], threads: usize) -> Vec<f32> {
    let mut out = x.to_vec();
    par_rows(&mut out, d, threads, |_, rows| {
        with_fma(|| {
            for row in rows.chunks_exact_mut(d) {
                layer_norm_row(row, gamma, beta);
            }
        })
    });
    out
}

#[inline(always)]
fn layer_norm_row(row: &mut [f32], gamma: &[f32], beta: &[f32]) {
    let d = row.len() as f32;
    let mut sum = 0.0f32;
    for &v in row.iter() {
        sum += v;
    }
    let mean = sum / d;
    let mut ss = 0.0f32;
    for &v in row.iter() {
        let c = v - mean;
        ss = detmath::fma(c, c, ss);
    }
    let r = detmath::rsqrt(ss / d + LN_EPS);
    for ((v, &g), &b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * r * g + b;
    }
}

/// Softmax of each `n`-wide row, in place: max, `detmath::exp(x − max)`, sequential
/// sum, then each value divided by the sum.
pub fn softmax_rows(x: &mut [f32], n: usize, threads: usize) {
    par_rows(x, n, threads, |_, rows| {
        with_fma(|| {
            for row in rows.chunks_exact_mut(n) {
                let mut m = f32::NEG_INFINITY;
                for &v in row.iter() {
                    if v > m {
                        m = v;
                    }
                }
                let mut sum = 0.0f32;
                for v in row.iter_mut() {
                    *v = detmath::exp(*v - m);
                    sum += *v;
                }
                for v in row.iter_mut() {
                    *v /= sum;
                }
            }
        })
    });
}

/// GELU of every element, in place (`row` only decides the split between threads).
pub fn gelu_in_place(x: &mut [f32], row: usize, threads: usize) {
    par_rows(x, row, threads, |_, rows| {
        with_fma(|| {
            for v in rows.iter_mut() {
                *v = gelu(*v);
            }
        })
    });
}

const ERF_TERMS: usize = 34;
const CF_TERMS: usize = 24;
const EXP_TERMS: usize = 14;

/// `(−1)ⁿ / (n!·(2n+1))`: the Maclaurin coefficients of `erf(u)·√π/(2u)` in `u²`.
const ERF_C: [f64; ERF_TERMS] = {
    let mut c = [0.0f64; ERF_TERMS];
    let mut a = 1.0f64;
    let mut n = 0;
    while n < ERF_TERMS {
        if n > 0 {
            a = -a / n as f64;
        }
        c[n] = a / (2 * n + 1) as f64;
        n += 1;
    }
    c
};

/// `1/k!` for the exp Taylor polynomial.
const EXP_C: [f64; EXP_TERMS] = {
    let mut c = [0.0f64; EXP_TERMS];
    let mut a = 1.0f64;
    let mut k = 0;
    while k < EXP_TERMS {
        if k > 0 {
            a /= k as f64;
        }
        c[k] = a;
        k += 1;
    }
    c
};

/// e^y for y ≤ 0 in f64 (0 below the subnormal range).
#[inline(always)]
pub fn exp64(y: f64) -> f64 {
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    if y.is_nan() {
        return y;
    }
    if y < -745.2 {
        return 0.0;
    }
    let n = (y * std::f64::consts::LOG2_E).round_ties_even();
    let r = (-n).mul_add(LN2_HI, y);
    let r = (-n).mul_add(LN2_LO, r);
    let mut p = EXP_C[EXP_TERMS - 1];
    for &c in EXP_C[..EXP_TERMS - 1].iter().rev() {
        p = p.mul_add(r, c);
    }
    let ni = n as i64;
    if ni >= -1022 {
        p * f64::from_bits(((ni + 1023) as u64) << 52)
    } else {
        p * f64::from_bits(((ni + 600 + 1023) as u64) << 52) * f64::from_bits((1023 - 600) << 52)
    }
}

/// erfc(a) for a ≥ 2.5.
#[inline(always)]
fn erfc_tail(a: f64) -> f64 {
    let mut t = a;
    for k in (1..=CF_TERMS).rev() {
        t = a + (k as f64 * 0.5) / t;
    }
    // 1/√π
    const FRAC_1_SQRT_PI: f64 = 0.564_189_583_547_756_3;
    exp64(-(a * a)) * FRAC_1_SQRT_PI / t
}

/// `1 + erf(u)` in f64.
#[inline(always)]
fn one_plus_erf(u: f64) -> f64 {
    let a = u.abs();
    if a < 2.5 {
        let z = u * u;
        let mut s = ERF_C[ERF_TERMS - 1];
        for &c in ERF_C[..ERF_TERMS - 1].iter().rev() {
            s = s.mul_add(z, c);
        }
        1.0 + std::f64::consts::FRAC_2_SQRT_PI * u * s
    } else if u > 0.0 {
        2.0 - erfc_tail(a)
    } else {
        erfc_tail(a)
    }
}

/// Exact GELU, `0.5·x·(1 + erf(x/√2))`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    if !x.is_finite() {
        return if x == f32::INFINITY { x } else { f32::NAN };
    }
    let xd = f64::from(x);
    (0.5 * xd * one_plus_erf(xd * std::f64::consts::FRAC_1_SQRT_2)) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_matches_known_values() {
        // GELU(x) = x·Φ(x), from Python's math.erfc.
        let cases: [(f32, f64); 7] = [
            (0.0, 0.0),
            (1.0, 0.841_344_746_068_542_9),
            (-1.0, -0.158_655_253_931_457_07),
            (2.0, 1.954_499_736_103_641_6),
            (-3.0, -0.004_049_694_094_890_287),
            (-5.0, -1.433_257_859_395_973_1e-6),
            (4.0, 3.999_873_315_032_667_5),
        ];
        for (x, want) in cases {
            let got = f64::from(gelu(x));
            let tol = want.abs() * 3e-7 + 1e-30;
            assert!((got - want).abs() <= tol, "gelu({x}) = {got}, want {want}");
        }
        assert_eq!(gelu(-40.0), -0.0);
        assert!(gelu(f32::NAN).is_nan());
    }

    #[test]
    fn exp64_is_accurate() {
        for y in [0.0, -0.5, -1.0, -10.0, -100.0, -700.0] {
            let want = f64::exp(y);
            assert!((exp64(y) - want).abs() <= want * 4e-16, "{y}");
        }
        assert!(exp64(-740.0) > 0.0);
        assert_eq!(exp64(-800.0), 0.0);
    }

    #[test]
    fn fma_compiled_loops_give_the_portable_bits() {
        // Inputs over the interesting range, every 1/64 plus odd fractions.
        let xs: Vec<f32> = (-640..640).map(|i| i as f32 / 64.0 + 1e-3).collect();
        let mut fast = xs.clone();
        gelu_in_place(&mut fast, 64, 2);
        for (x, f) in xs.iter().zip(&fast) {
            assert_eq!(gelu(*x).to_bits(), f.to_bits(), "gelu({x})");
        }
        let mut sm = xs.clone();
        softmax_rows(&mut sm, 128, 2);
        for (row, got) in xs.chunks(128).zip(sm.chunks(128)) {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = row.iter().map(|&v| detmath::exp(v - m)).collect();
            let sum = e.iter().fold(0.0f32, |a, &b| a + b);
            for (a, b) in e.iter().zip(got) {
                assert_eq!((a / sum).to_bits(), b.to_bits());
            }
        }
    }
}
