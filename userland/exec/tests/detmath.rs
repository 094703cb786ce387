//! Our elementary functions against f64 (std) with stated bounds.

use havn_exec::detmath;

fn ulps(a: f32, b: f64) -> f64 {
    let b32 = b as f32;
    let ulp = f32::from_bits(b32.abs().to_bits() + 1) - b32.abs();
    ((a as f64) - b).abs() / (ulp as f64).max(f64::from(f32::MIN_POSITIVE))
}

fn sweep(lo: f32, hi: f32, n: usize) -> impl Iterator<Item = f32> {
    (0..=n).map(move |i| lo + (hi - lo) * i as f32 / n as f32)
}

#[test]
fn exp_within_4_ulp() {
    for x in sweep(-87.0, 88.0, 20_000) {
        let u = ulps(detmath::exp(x), (x as f64).exp());
        assert!(u <= 4.0, "exp({x}) off by {u} ulp");
    }
    assert_eq!(detmath::exp(0.0), 1.0);
    assert_eq!(detmath::exp(200.0), f32::INFINITY);
    assert_eq!(detmath::exp(-200.0), 0.0);
}

#[test]
fn tanh_within_bound() {
    for x in sweep(-12.0, 12.0, 20_000) {
        let r = (x as f64).tanh();
        let err = (detmath::tanh(x) as f64 - r).abs();
        assert!(
            err <= 2e-7 || ulps(detmath::tanh(x), r) <= 8.0,
            "tanh({x}) err {err}"
        );
    }
}

#[test]
fn rsqrt_within_4_ulp() {
    for i in 0..20_000 {
        let x = 1e-6f32 * 1.0013f32.powi(i);
        if !x.is_finite() {
            break;
        }
        let u = ulps(detmath::rsqrt(x), 1.0 / (x as f64).sqrt());
        assert!(u <= 4.0, "rsqrt({x}) off by {u} ulp");
    }
}

#[test]
fn sin_cos_within_bound() {
    for x in sweep(-10_000.0, 10_000.0, 200_000) {
        let es = (detmath::sin(x) as f64 - (x as f64).sin()).abs();
        let ec = (detmath::cos(x) as f64 - (x as f64).cos()).abs();
        assert!(es <= 2e-7 && ec <= 2e-7, "sin/cos({x}) err {es} {ec}");
    }
}

#[test]
fn log_within_4_ulp() {
    for i in 0..20_000 {
        let x = 1e-30f32 * 1.01f32.powi(i);
        if !x.is_finite() {
            break;
        }
        let u = ulps(detmath::log(x), (x as f64).ln());
        assert!(
            u <= 4.0 || (detmath::log(x) as f64 - (x as f64).ln()).abs() < 1e-7,
            "log({x}) off by {u} ulp"
        );
    }
}

#[test]
fn silu_gelu_match_f64() {
    for x in sweep(-20.0, 20.0, 4000) {
        let xd = x as f64;
        let silu = xd / (1.0 + (-xd).exp());
        let gelu = 0.5
            * xd
            * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (xd + 0.044715 * xd * xd * xd)).tanh());
        assert!(
            (detmath::silu(x) as f64 - silu).abs() <= 1e-6 * (1.0 + xd.abs()),
            "silu({x})"
        );
        assert!(
            (detmath::gelu(x) as f64 - gelu).abs() <= 1e-6 * (1.0 + xd.abs()),
            "gelu({x})"
        );
    }
}
