//! Each operator against a float64 reference (bounds stated per test) and bit-identical
//! across thread counts 1/2/3/7.

use crate::common::{f32s, randn, run_op};
use havn_exec::ops::Op;
use havn_exec::{Executor, Tensor};

/// Every op with test inputs large enough that several threads get work.
pub fn cases() -> Vec<(Op, Vec<Tensor>)> {
    let ids = Tensor::i32(vec![40], (0..40).map(|i| (i * 7) % 50).collect()).unwrap();
    let wq = Tensor::i8(
        vec![48, 40],
        (0..48 * 40)
            .map(|i| ((i * 37) % 255) as i8)
            .map(|v| v.wrapping_sub(127))
            .collect(),
    )
    .unwrap();
    vec![
        (
            Op::MatMul,
            vec![randn(1, &[37, 53], 1.0), randn(2, &[53, 70], 1.0)],
        ),
        (
            Op::MatMul,
            vec![
                randn(3, &[64, 32], 1.0),
                randn(4, &[32, 40], 1.0),
                randn(5, &[40], 1.0),
            ],
        ),
        (
            Op::QMatMul,
            vec![randn(6, &[60, 48], 1.0), wq, randn(7, &[40], 0.01)],
        ),
        (
            Op::Add,
            vec![randn(8, &[50, 60], 1.0), randn(9, &[50, 60], 1.0)],
        ),
        (
            Op::Add,
            vec![randn(8, &[50, 60], 1.0), randn(10, &[60], 1.0)],
        ),
        (
            Op::Mul,
            vec![randn(11, &[50, 60], 1.0), randn(12, &[50, 60], 1.0)],
        ),
        (Op::Scale { factor: -0.37 }, vec![randn(13, &[50, 60], 1.0)]),
        (Op::Embedding, vec![randn(14, &[50, 64], 1.0), ids]),
        (
            Op::RmsNorm { eps: 1e-5 },
            vec![randn(15, &[40, 64], 2.0), randn(16, &[64], 1.0)],
        ),
        (
            Op::LayerNorm { eps: 1e-5 },
            vec![
                randn(17, &[40, 64], 2.0),
                randn(18, &[64], 1.0),
                randn(19, &[64], 1.0),
            ],
        ),
        (Op::Softmax, vec![randn(20, &[40, 64], 4.0)]),
        (Op::Silu, vec![randn(21, &[50, 60], 4.0)]),
        (Op::Gelu, vec![randn(22, &[50, 60], 4.0)]),
        (
            Op::Rope {
                heads: 4,
                base: 10000.0,
            },
            vec![randn(23, &[40, 64], 1.0)],
        ),
        (
            Op::Attention { heads: 4 },
            vec![
                randn(24, &[40, 64], 1.0),
                randn(25, &[40, 64], 1.0),
                randn(26, &[40, 64], 1.0),
            ],
        ),
        (
            Op::Conv2d { stride: 1, pad: 1 },
            vec![
                randn(27, &[3, 20, 20], 1.0),
                randn(28, &[8, 3, 3, 3], 0.5),
                randn(29, &[8], 0.1),
            ],
        ),
        (
            Op::Conv2d { stride: 2, pad: 0 },
            vec![
                randn(30, &[4, 21, 19], 1.0),
                randn(31, &[6, 4, 3, 2], 0.5),
                randn(32, &[6], 0.1),
            ],
        ),
        (
            Op::Sample {
                temperature: 0.0,
                top_k: 0,
            },
            vec![randn(33, &[3, 300], 2.0)],
        ),
        (
            Op::Sample {
                temperature: 0.9,
                top_k: 20,
            },
            vec![randn(34, &[3, 300], 2.0)],
        ),
        (
            Op::Append,
            vec![
                Tensor::i32(vec![3], vec![1, 2, 3]).unwrap(),
                Tensor::i32(vec![1], vec![9]).unwrap(),
            ],
        ),
        (Op::LastRow, vec![randn(35, &[5, 7], 1.0)]),
        (
            Op::Reshape { shape: vec![7, 5] },
            vec![randn(36, &[5, 7], 1.0)],
        ),
        (Op::Transpose, vec![randn(37, &[5, 7], 1.0)]),
        (Op::Frames { win: 16, hop: 8 }, vec![randn(38, &[100], 1.0)]),
        (
            Op::RandN {
                shape: vec![30, 70],
            },
            vec![],
        ),
    ]
}

fn rel_check(name: &str, got: &[f32], want: &[f64], mag: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    for (i, ((&g, &w), &m)) in got.iter().zip(want).zip(mag).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= tol * m.max(1e-30) + 1e-30,
            "{name}[{i}]: got {g}, want {w}, err {err} > {tol}·{m}"
        );
    }
}

fn d(t: &Tensor) -> Vec<f64> {
    f32s(t).iter().map(|&x| x as f64).collect()
}

fn mm_ref(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut out = vec![0.0; m * n];
    let mut mag = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            for kk in 0..k {
                out[i * n + j] += a[i * k + kk] * b[kk * n + j];
                mag[i * n + j] += (a[i * k + kk] * b[kk * n + j]).abs();
            }
        }
    }
    (out, mag)
}

#[test]
fn matmul_vs_f64() {
    // Bound: a sequential fma chain of K terms has error ≤ K·2⁻²⁴·Σ|a·b|; we check 2⁻²⁴·K.
    let exec = Executor::cpu(1);
    for (op, ins) in cases().into_iter().filter(|(o, _)| *o == Op::MatMul) {
        let refs: Vec<&Tensor> = ins.iter().collect();
        let out = run_op(&exec, &op, &refs);
        let (m, k, n) = (ins[0].shape[0], ins[0].shape[1], ins[1].shape[1]);
        let (mut r, mut mag) = mm_ref(&d(&ins[0]), &d(&ins[1]), m, k, n);
        if ins.len() == 3 {
            let b = d(&ins[2]);
            for i in 0..m * n {
                r[i] += b[i % n];
                mag[i] += b[i % n].abs();
            }
        }
        rel_check("matmul", f32s(&out), &r, &mag, (k as f64 + 1.0) * 6e-8);
    }
}

#[test]
fn large_matmul_simd_equals_scalar_order() {
    // The AVX2 path and a plain scalar fma chain must agree bit for bit.
    let (m, k, n) = (13, 600, 45); // K > 256: crosses K blocks
    let a = randn(40, &[m, k], 1.0);
    let b = randn(41, &[k, n], 1.0);
    let out = havn_exec::cpu::matmul(f32s(&a), f32s(&b), None, m, k, n, 3);
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for kk in 0..k {
                acc = f32s(&a)[i * k + kk].mul_add(f32s(&b)[kk * n + j], acc);
            }
            assert_eq!(out[i * n + j].to_bits(), acc.to_bits(), "({i},{j})");
        }
    }
}

#[test]
fn qmatmul_vs_f64() {
    // Exact integer accumulation: only the final two multiplications round (≤ 2⁻²³ rel).
    // Against the float matmul, the error is the quantization error ≤ Σ_k |w_k|·s_w·s_x/2.
    let exec = Executor::cpu(1);
    let (op, ins) = cases()
        .into_iter()
        .find(|(o, _)| *o == Op::QMatMul)
        .unwrap();
    let refs: Vec<&Tensor> = ins.iter().collect();
    let out = run_op(&exec, &op, &refs);
    let x = f32s(&ins[0]);
    let w = ins[1].as_i8("w").unwrap();
    let ws = f32s(&ins[2]);
    let (m, k, n) = (60, 48, 40);
    for i in 0..m {
        let row = &x[i * k..(i + 1) * k];
        let amax = row.iter().fold(0.0f64, |a, &v| a.max((v as f64).abs()));
        let sx = amax / 127.0;
        for j in 0..n {
            let exact: f64 = (0..k)
                .map(|kk| row[kk] as f64 * w[kk * n + j] as f64 * ws[j] as f64)
                .sum();
            let qerr: f64 = (0..k)
                .map(|kk| (w[kk * n + j] as f64 * ws[j] as f64).abs() * sx * 0.5)
                .sum();
            let g = out.as_f32("o").unwrap()[i * n + j] as f64;
            assert!(
                (g - exact).abs() <= qerr * 1.001 + 1e-6,
                "qmatmul ({i},{j}): {g} vs {exact} (bound {qerr})"
            );
        }
    }
}

#[test]
fn elementwise_vs_f64() {
    // add/mul/scale: one rounding (≤ 2⁻²⁴ rel); silu/gelu ≤ 1e-6·(1+|x|).
    let exec = Executor::cpu(1);
    for (op, ins) in cases() {
        let refs: Vec<&Tensor> = ins.iter().collect();
        let f: Box<dyn Fn(f64, f64) -> f64> = match op {
            Op::Add => Box::new(|a, b| a + b),
            Op::Mul => Box::new(|a, b| a * b),
            Op::Scale { factor } => Box::new(move |a, _| a * factor as f64),
            Op::Silu => Box::new(|x, _| x / (1.0 + (-x).exp())),
            Op::Gelu => Box::new(|x, _| {
                0.5 * x
                    * (1.0
                        + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
            }),
            _ => continue,
        };
        let out = run_op(&exec, &op, &refs);
        let a = d(&ins[0]);
        let b = ins.get(1).map(d).unwrap_or_else(|| vec![0.0]);
        let want: Vec<f64> = a
            .iter()
            .enumerate()
            .map(|(i, &x)| f(x, b[i % b.len()]))
            .collect();
        let mag: Vec<f64> = a.iter().map(|x| 1.0 + x.abs() * 2.0).collect();
        rel_check(op.name(), f32s(&out), &want, &mag, 1e-6);
    }
}

#[test]
fn norms_softmax_vs_f64() {
    // rmsnorm/layernorm ≤ 2e-6·(1+|y|); softmax ≤ 4e-6 relative to each probability.
    let exec = Executor::cpu(1);
    for (op, ins) in cases() {
        let refs: Vec<&Tensor> = ins.iter().collect();
        if !matches!(op, Op::RmsNorm { .. } | Op::LayerNorm { .. } | Op::Softmax) {
            continue;
        }
        let out = run_op(&exec, &op, &refs);
        let x = d(&ins[0]);
        let dd = *ins[0].shape.last().unwrap();
        let mut want = vec![0.0; x.len()];
        for (r, row) in x.chunks(dd).enumerate() {
            let o = &mut want[r * dd..(r + 1) * dd];
            match op {
                Op::RmsNorm { eps } => {
                    let w = d(&ins[1]);
                    let ms = row.iter().map(|v| v * v).sum::<f64>() / dd as f64;
                    let rr = 1.0 / (ms + eps as f64).sqrt();
                    for j in 0..dd {
                        o[j] = row[j] * rr * w[j];
                    }
                }
                Op::LayerNorm { eps } => {
                    let (w, b) = (d(&ins[1]), d(&ins[2]));
                    let mean = row.iter().sum::<f64>() / dd as f64;
                    let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / dd as f64;
                    let rr = 1.0 / (var + eps as f64).sqrt();
                    for j in 0..dd {
                        o[j] = (row[j] - mean) * rr * w[j] + b[j];
                    }
                }
                _ => {
                    let m = row.iter().cloned().fold(f64::MIN, f64::max);
                    let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
                    for j in 0..dd {
                        o[j] = (row[j] - m).exp() / s;
                    }
                }
            }
        }
        let (mag, tol): (Vec<f64>, f64) = match op {
            Op::Softmax => (want.clone(), 4e-6),
            _ => (want.iter().map(|v| 1.0 + v.abs()).collect(), 2e-6),
        };
        rel_check(op.name(), f32s(&out), &want, &mag, tol);
    }
}

#[test]
fn rope_attention_vs_f64() {
    // RoPE ≤ 1e-6·(|x0|+|x1|+1); attention ≤ 1e-5·(1+Σ p|v|).
    let exec = Executor::cpu(1);
    for (op, ins) in cases() {
        let refs: Vec<&Tensor> = ins.iter().collect();
        if !matches!(op, Op::Rope { .. } | Op::Attention { .. }) {
            continue;
        }
        let (t, dd) = (ins[0].shape[0], ins[0].shape[1]);
        match op {
            Op::Rope { heads, base } => {
                let out = run_op(&exec, &op, &refs);
                let x = d(&ins[0]);
                let hd = dd / heads;
                let half = hd / 2;
                let mut want = vec![0.0; x.len()];
                let mut mag = vec![0.0; x.len()];
                for p in 0..t {
                    for h in 0..heads {
                        for i in 0..half {
                            let ang = p as f64 * (base as f64).powf(-((2 * i) as f64) / hd as f64);
                            let (a, b) = (x[p * dd + h * hd + i], x[p * dd + h * hd + i + half]);
                            want[p * dd + h * hd + i] = a * ang.cos() - b * ang.sin();
                            want[p * dd + h * hd + i + half] = a * ang.sin() + b * ang.cos();
                            mag[p * dd + h * hd + i] = 1.0 + a.abs() + b.abs();
                            mag[p * dd + h * hd + i + half] = 1.0 + a.abs() + b.abs();
                        }
                    }
                }
                rel_check("rope", f32s(&out), &want, &mag, 4e-6);
            }
            Op::Attention { heads } => {
                let out = run_op(&exec, &op, &refs);
                let (q, k, v) = (d(&ins[0]), d(&ins[1]), d(&ins[2]));
                let hd = dd / heads;
                let mut want = vec![0.0; q.len()];
                let mut mag = vec![0.0; q.len()];
                for i in 0..t {
                    for h in 0..heads {
                        let off = h * hd;
                        let s: Vec<f64> = (0..=i)
                            .map(|j| {
                                (0..hd)
                                    .map(|e| q[i * dd + off + e] * k[j * dd + off + e])
                                    .sum::<f64>()
                                    / (hd as f64).sqrt()
                            })
                            .collect();
                        let m = s.iter().cloned().fold(f64::MIN, f64::max);
                        let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                        for e in 0..hd {
                            want[i * dd + off + e] = (0..=i)
                                .map(|j| (s[j] - m).exp() / z * v[j * dd + off + e])
                                .sum();
                            mag[i * dd + off + e] = 1.0
                                + (0..=i)
                                    .map(|j| ((s[j] - m).exp() / z * v[j * dd + off + e]).abs())
                                    .sum::<f64>();
                        }
                    }
                }
                rel_check("attention", f32s(&out), &want, &mag, 1e-5);
            }
            _ => {}
        }
    }
}

#[test]
fn conv2d_vs_f64() {
    // As matmul: ≤ (C·KH·KW+1)·6e-8·Σ|x·w|.
    let exec = Executor::cpu(1);
    for (op, ins) in cases() {
        let Op::Conv2d { stride, pad } = op else {
            continue;
        };
        let refs: Vec<&Tensor> = ins.iter().collect();
        let out = run_op(&exec, &op, &refs);
        let (x, w, b) = (d(&ins[0]), d(&ins[1]), d(&ins[2]));
        let (c, h, wd) = (ins[0].shape[0], ins[0].shape[1], ins[0].shape[2]);
        let (o, kh, kw) = (ins[1].shape[0], ins[1].shape[2], ins[1].shape[3]);
        let (oh, ow) = (out.shape[1], out.shape[2]);
        let mut want = vec![0.0; o * oh * ow];
        let mut mag = vec![0.0; o * oh * ow];
        for oo in 0..o {
            for y in 0..oh {
                for xo in 0..ow {
                    let (mut s, mut mg) = (b[oo], b[oo].abs());
                    for ci in 0..c {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (y * stride + ky) as isize - pad as isize;
                                let ix = (xo * stride + kx) as isize - pad as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                    let p = x[(ci * h + iy as usize) * wd + ix as usize]
                                        * w[((oo * c + ci) * kh + ky) * kw + kx];
                                    s += p;
                                    mg += p.abs();
                                }
                            }
                        }
                    }
                    want[(oo * oh + y) * ow + xo] = s;
                    mag[(oo * oh + y) * ow + xo] = mg;
                }
            }
        }
        rel_check(
            "conv2d",
            f32s(&out),
            &want,
            &mag,
            (c * kh * kw + 1) as f64 * 6e-8,
        );
    }
}

#[test]
fn embedding_and_data_movement() {
    let exec = Executor::cpu(1);
    for (op, ins) in cases() {
        let refs: Vec<&Tensor> = ins.iter().collect();
        let out = run_op(&exec, &op, &refs);
        match op {
            Op::Embedding => {
                let ids = ins[1].as_i32("ids").unwrap();
                for (t, &id) in ids.iter().enumerate() {
                    assert_eq!(
                        &f32s(&out)[t * 64..(t + 1) * 64],
                        &f32s(&ins[0])[id as usize * 64..(id as usize + 1) * 64]
                    );
                }
            }
            Op::Append => assert_eq!(out.as_i32("o").unwrap(), &[1, 2, 3, 9]),
            Op::LastRow => assert_eq!(f32s(&out), &f32s(&ins[0])[28..35]),
            Op::Transpose => assert_eq!(f32s(&out)[1], f32s(&ins[0])[7]),
            Op::Frames { .. } => {
                assert_eq!(out.shape, vec![11, 16]);
                assert_eq!(&f32s(&out)[16..32], &f32s(&ins[0])[8..24]);
            }
            Op::RandN { .. } => {
                // Mean ≈ 0, variance ≈ 1 over 2100 samples (5σ bounds).
                let v = f32s(&out);
                let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
                let var =
                    v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
                assert!(
                    mean.abs() < 0.11 && (var - 1.0).abs() < 0.16,
                    "randn mean {mean} var {var}"
                );
            }
            _ => {}
        }
    }
}

#[test]
fn sampling_argmax_and_distribution() {
    use havn_exec::cpu::sample_row;
    use havn_exec::rng::Stream;
    let row = [0.1f32, 3.0, 3.0, -1.0];
    assert_eq!(
        sample_row(&row, 0.0, 0, Stream { seed: 1, node: 0 }),
        1,
        "argmax takes the first maximum"
    );
    // temperature/top-k: over many seeds, frequencies follow softmax of the top 2 at T=1.
    let row = [0.0f32, 1.0, 2.0, -5.0];
    let mut counts = [0usize; 4];
    for seed in 0..4000u64 {
        counts[sample_row(&row, 1.0, 2, Stream { seed, node: 3 })] += 1;
    }
    assert_eq!(counts[0] + counts[3], 0, "top-k=2 excludes the others");
    let p2 = 1.0 / (1.0 + (-1.0f64).exp());
    let f2 = counts[2] as f64 / 4000.0;
    assert!((f2 - p2).abs() < 0.03, "P(2) = {f2}, want {p2}");
}

#[test]
fn bit_identical_across_thread_counts() {
    for (op, ins) in cases() {
        let refs: Vec<&Tensor> = ins.iter().collect();
        let base = run_op(&Executor::cpu(1), &op, &refs);
        for th in [2, 3, 7] {
            let o = run_op(&Executor::cpu(th), &op, &refs);
            assert_eq!(
                o.hash(),
                base.hash(),
                "{} differs with {th} threads",
                op.name()
            );
        }
    }
}

#[test]
fn matmul_degenerate_shapes() {
    // K = 0: every output is +0 + bias; M = 0 / N = 0: empty.
    let bias = [1.5f32, -2.0, 0.25];
    assert_eq!(
        havn_exec::cpu::matmul(&[], &[], Some(&bias), 2, 0, 3, 2),
        vec![1.5, -2.0, 0.25, 1.5, -2.0, 0.25]
    );
    assert!(havn_exec::cpu::matmul(&[], &[0.0; 6], None, 0, 2, 3, 2).is_empty());
    assert!(havn_exec::cpu::matmul(&[0.0; 4], &[], None, 2, 2, 0, 2).is_empty());
}

#[test]
fn matmul_threads_big_enough_to_split() {
    // 96×80 outputs: par_rows really spreads rows across 2, 3 and 7 threads here.
    let a = randn(50, &[96, 33], 1.0);
    let b = randn(51, &[33, 80], 1.0);
    let one = havn_exec::cpu::matmul(f32s(&a), f32s(&b), None, 96, 33, 80, 1);
    for th in [2, 3, 7] {
        let o = havn_exec::cpu::matmul(f32s(&a), f32s(&b), None, 96, 33, 80, th);
        assert!(
            one.iter().zip(&o).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{th} threads"
        );
    }
}
