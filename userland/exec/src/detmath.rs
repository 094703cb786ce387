//! Deterministic elementary functions built only from `+`, `*`, fused multiply-add,
//! IEEE division and integer bit operations. The CUDA backend compiles the *same*
//! algorithms (see [`CUDA_PRELUDE`] and [`cuda_constants`]), with every constant passed as
//! its exact bit pattern, so both backends produce identical bits.
//!
//! Accuracy (checked against f64 in the tests): exp ≤ 4 ulp, tanh ≤ 2e-7 absolute or
//! 8 ulp, rsqrt ≤ 4 ulp, sin/cos ≤ 2e-7 absolute for |x| ≤ 1e4, log ≤ 4 ulp.

/// Fused multiply-add, a single rounding (IEEE 754 fusedMultiplyAdd).
#[inline(always)]
pub fn fma(a: f32, b: f32, c: f32) -> f32 {
    a.mul_add(b, c)
}

/// Round to nearest, ties to even (CUDA `rintf`).
#[inline(always)]
pub fn rint(x: f32) -> f32 {
    x.round_ties_even()
}

macro_rules! consts {
    ($($name:ident = $val:expr;)*) => {
        $( #[allow(missing_docs)] pub const $name: f32 = $val; )*
        /// `#define` lines giving each constant's exact bits to the CUDA prelude.
        pub fn cuda_constants() -> String {
            let mut s = String::new();
            $( s.push_str(&format!("#define {} __int_as_float(0x{:08x})\n", stringify!($name), ($val as f32).to_bits())); )*
            s
        }
    };
}

consts! {
    LOG2E = std::f32::consts::LOG2_E;
    LN2_HI = 0.693_145_75;
    LN2_LO = 1.428_606_8e-6;
    EXP_HI = 88.722_83;
    EXP_LO = -103.972_08;
    E2 = 0.5;
    E3 = 1.0 / 6.0;
    E4 = 1.0 / 24.0;
    E5 = 1.0 / 120.0;
    E6 = 1.0 / 720.0;
    E7 = 1.0 / 5040.0;
    T3 = -1.0 / 3.0;
    T5 = 2.0 / 15.0;
    T7 = -17.0 / 315.0;
    T9 = 62.0 / 2835.0;
    TANH_SMALL = 0.3;
    TANH_BIG = 9.0;
    TWO_OVER_PI = std::f32::consts::FRAC_2_PI;
    PIO2_1 = 1.570_785_5;
    PIO2_2 = f32::from_bits(0x3735_4400);
    PIO2_3 = f32::from_bits(0x2e85_a300);
    S3 = -1.0 / 6.0;
    S5 = 1.0 / 120.0;
    S7 = -1.0 / 5040.0;
    S9 = 1.0 / 362_880.0;
    C2 = -0.5;
    C4 = 1.0 / 24.0;
    C6 = -1.0 / 720.0;
    C8 = 1.0 / 40320.0;
    C10 = -1.0 / 3_628_800.0;
    SQRT2 = std::f32::consts::SQRT_2;
    L3 = 1.0 / 3.0;
    L5 = 1.0 / 5.0;
    L7 = 1.0 / 7.0;
    L9 = 1.0 / 9.0;
    LN2 = std::f32::consts::LN_2;
    GELU_C = 0.797_884_6;
    GELU_K = 0.044_715;
}

/// e^x.
#[inline]
pub fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x > EXP_HI {
        return f32::INFINITY;
    }
    if x < EXP_LO {
        return 0.0;
    }
    let n = rint(x * LOG2E);
    let r = fma(-n, LN2_HI, x);
    let r = fma(-n, LN2_LO, r);
    let mut p = E7;
    p = fma(p, r, E6);
    p = fma(p, r, E5);
    p = fma(p, r, E4);
    p = fma(p, r, E3);
    p = fma(p, r, E2);
    p = fma(p, r, 1.0);
    p = fma(p, r, 1.0);
    let ni = n as i32;
    let n1 = ni / 2;
    let n2 = ni - n1;
    let s1 = f32::from_bits(((n1 + 127) as u32) << 23);
    let s2 = f32::from_bits(((n2 + 127) as u32) << 23);
    p * s1 * s2
}

/// tanh(x).
#[inline]
pub fn tanh(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let r = if a > TANH_BIG {
        1.0
    } else if a < TANH_SMALL {
        let z = a * a;
        let mut p = T9;
        p = fma(p, z, T7);
        p = fma(p, z, T5);
        p = fma(p, z, T3);
        fma(p * z, a, a)
    } else {
        let e = exp(a + a);
        (e - 1.0) / (e + 1.0)
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// 1/sqrt(x) for x > 0: bit-trick seed and four Newton steps.
#[inline]
pub fn rsqrt(x: f32) -> f32 {
    let i = 0x5f37_59dfu32.wrapping_sub(x.to_bits() >> 1);
    let mut y = f32::from_bits(i);
    let h = 0.5 * x;
    for _ in 0..4 {
        let t = h * y;
        y = y * fma(-t, y, 1.5);
    }
    y
}

#[inline]
fn reduce(x: f32) -> (f32, i32) {
    let k = rint(x * TWO_OVER_PI);
    let r = fma(-k, PIO2_1, x);
    let r = fma(-k, PIO2_2, r);
    let r = fma(-k, PIO2_3, r);
    (r, k as i32)
}

#[inline]
fn sin_poly(r: f32) -> f32 {
    let z = r * r;
    let mut p = S9;
    p = fma(p, z, S7);
    p = fma(p, z, S5);
    p = fma(p, z, S3);
    fma(p * z, r, r)
}

#[inline]
fn cos_poly(r: f32) -> f32 {
    let z = r * r;
    let mut p = C10;
    p = fma(p, z, C8);
    p = fma(p, z, C6);
    p = fma(p, z, C4);
    p = fma(p, z, C2);
    fma(p, z, 1.0)
}

/// sin(x), accurate for |x| up to about 1e4.
#[inline]
pub fn sin(x: f32) -> f32 {
    let (r, k) = reduce(x);
    match k & 3 {
        0 => sin_poly(r),
        1 => cos_poly(r),
        2 => -sin_poly(r),
        _ => -cos_poly(r),
    }
}

/// cos(x), accurate for |x| up to about 1e4.
#[inline]
pub fn cos(x: f32) -> f32 {
    let (r, k) = reduce(x);
    match k & 3 {
        0 => cos_poly(r),
        1 => -sin_poly(r),
        2 => -cos_poly(r),
        _ => sin_poly(r),
    }
}

/// Natural logarithm for positive normal x (host only: RNG and table set-up).
pub fn log(x: f32) -> f32 {
    if x.is_nan() || x < 0.0 {
        return f32::NAN;
    }
    if x == 0.0 {
        return f32::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32 - 127;
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    if m > SQRT2 {
        m *= 0.5;
        e += 1;
    }
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let mut p = L9;
    p = fma(p, z, L7);
    p = fma(p, z, L5);
    p = fma(p, z, L3);
    let lm = 2.0 * fma(p * z, s, s);
    let ef = e as f32;
    fma(ef, LN2_HI, fma(ef, LN2_LO, lm))
}

/// SiLU: x · sigmoid(x) = x / (1 + e^-x).
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// GELU, tanh approximation.
#[inline]
pub fn gelu(x: f32) -> f32 {
    let x3 = x * x * x;
    let inner = GELU_C * (x + GELU_K * x3);
    0.5 * x * (1.0 + tanh(inner))
}

/// The same functions in CUDA C. Compiled with `--fmad=false`, so nothing is contracted
/// that the Rust code does not contract; `fmaf` is the explicit fused multiply-add.
pub const CUDA_PRELUDE: &str = r#"
__device__ __forceinline__ float d_exp(float x) {
    if (x != x) return x;
    if (x > EXP_HI) return __int_as_float(0x7f800000);
    if (x < EXP_LO) return 0.0f;
    float n = rintf(x * LOG2E);
    float r = fmaf(-n, LN2_HI, x);
    r = fmaf(-n, LN2_LO, r);
    float p = E7;
    p = fmaf(p, r, E6); p = fmaf(p, r, E5); p = fmaf(p, r, E4);
    p = fmaf(p, r, E3); p = fmaf(p, r, E2); p = fmaf(p, r, 1.0f); p = fmaf(p, r, 1.0f);
    int ni = (int)n; int n1 = ni / 2; int n2 = ni - n1;
    float s1 = __int_as_float((n1 + 127) << 23);
    float s2 = __int_as_float((n2 + 127) << 23);
    return p * s1 * s2;
}
__device__ __forceinline__ float d_tanh(float x) {
    if (x != x) return x;
    float a = fabsf(x);
    float r;
    if (a > TANH_BIG) { r = 1.0f; }
    else if (a < TANH_SMALL) {
        float z = a * a; float p = T9;
        p = fmaf(p, z, T7); p = fmaf(p, z, T5); p = fmaf(p, z, T3);
        r = fmaf(p * z, a, a);
    } else { float e = d_exp(a + a); r = (e - 1.0f) / (e + 1.0f); }
    return x < 0.0f ? -r : r;
}
__device__ __forceinline__ float d_rsqrt(float x) {
    unsigned int i = 0x5f3759dfu - (__float_as_uint(x) >> 1);
    float y = __uint_as_float(i);
    float h = 0.5f * x;
    for (int it = 0; it < 4; it++) { float t = h * y; y = y * fmaf(-t, y, 1.5f); }
    return y;
}
__device__ __forceinline__ float d_sin_poly(float r) {
    float z = r * r; float p = S9;
    p = fmaf(p, z, S7); p = fmaf(p, z, S5); p = fmaf(p, z, S3);
    return fmaf(p * z, r, r);
}
__device__ __forceinline__ float d_cos_poly(float r) {
    float z = r * r; float p = C10;
    p = fmaf(p, z, C8); p = fmaf(p, z, C6); p = fmaf(p, z, C4); p = fmaf(p, z, C2);
    return fmaf(p, z, 1.0f);
}
__device__ __forceinline__ float d_reduce(float x, int* q) {
    float k = rintf(x * TWO_OVER_PI);
    float r = fmaf(-k, PIO2_1, x); r = fmaf(-k, PIO2_2, r); r = fmaf(-k, PIO2_3, r);
    *q = ((int)k) & 3;
    return r;
}
__device__ __forceinline__ float d_sin(float x) {
    int q; float r = d_reduce(x, &q);
    if (q == 0) return d_sin_poly(r); if (q == 1) return d_cos_poly(r);
    if (q == 2) return -d_sin_poly(r); return -d_cos_poly(r);
}
__device__ __forceinline__ float d_cos(float x) {
    int q; float r = d_reduce(x, &q);
    if (q == 0) return d_cos_poly(r); if (q == 1) return -d_sin_poly(r);
    if (q == 2) return -d_cos_poly(r); return d_sin_poly(r);
}
__device__ __forceinline__ float d_silu(float x) { return x / (1.0f + d_exp(-x)); }
__device__ __forceinline__ float d_gelu(float x) {
    float x3 = x * x * x;
    float inner = GELU_C * (x + GELU_K * x3);
    return 0.5f * x * (1.0f + d_tanh(inner));
}
"#;
