//! CPU kernels of the network ops (`ops_nn`): broadcast arithmetic, unary functions,
//! instance norm, batched matmul, pooling, upsampling, concat and narrow. The same rule
//! as every kernel: each output element is computed by one thread in a fixed order.

use crate::cpu::{matmul, par_rows, OpCtx};
use crate::detmath;
use crate::error::{ExecError, Result};
use crate::ops::{BinFn, Op, UnFn};
use crate::tensor::{numel, Tensor};

/// Element strides of `shape` aligned on the right against a rank-`r` output, 0 where a
/// dim of 1 is broadcast.
fn bstrides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let r = out.len();
    let mut st = vec![0; r];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        let o = i + r - shape.len();
        st[o] = if shape[i] == 1 && out[o] != 1 { 0 } else { acc };
        acc *= shape[i];
    }
    st
}

/// Offset of row `row` (all dims but the last) under strides `st`.
fn row_offset(row: usize, out: &[usize], st: &[usize]) -> usize {
    let mut rem = row;
    let mut off = 0;
    for d in (0..out.len().saturating_sub(1)).rev() {
        off += (rem % out[d]) * st[d];
        rem /= out[d];
    }
    off
}

/// Sequential-order sum in eight interleaved lanes (lane l takes indices ≡ l mod 8),
/// the lanes combined as ((0+1)+(2+3))+((4+5)+(6+7)): fixed order, thread-independent.
pub fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut l = [0.0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (li, &v) in l.iter_mut().zip(c) {
            *li += f(v);
        }
    }
    for (li, &v) in l.iter_mut().zip(chunks.remainder()) {
        *li += f(v);
    }
    ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

/// Runs one network op on the CPU.
pub fn run(op: &Op, ins: &[&Tensor], out_shape: &[usize], ctx: &OpCtx<'_>) -> Result<Tensor> {
    let node = ctx.node;
    let t = |i: usize| -> Result<&Tensor> {
        ins.get(i)
            .copied()
            .ok_or_else(|| ExecError::node(node, op.name(), "missing input"))
    };
    let th = ctx.threads;
    let n_out = numel(out_shape);
    let last = out_shape.last().copied().unwrap_or(1).max(1);
    match op {
        Op::Binary { f } => {
            let (a, b) = (t(0)?, t(1)?);
            let (av, bv) = (a.as_f32(node)?, b.as_f32(node)?);
            let (sa, sb) = (bstrides(&a.shape, out_shape), bstrides(&b.shape, out_shape));
            let (la, lb) = (
                sa.last().copied().unwrap_or(0),
                sb.last().copied().unwrap_or(0),
            );
            let mut out = vec![0.0f32; n_out];
            let f = *f;
            par_rows(&mut out, last, th, |r0, rows| {
                for (ri, orow) in rows.chunks_mut(last).enumerate() {
                    let (oa, ob) = (
                        row_offset(r0 + ri, out_shape, &sa),
                        row_offset(r0 + ri, out_shape, &sb),
                    );
                    for (j, o) in orow.iter_mut().enumerate() {
                        let (x, y) = (av[oa + j * la], bv[ob + j * lb]);
                        *o = match f {
                            BinFn::Add => x + y,
                            BinFn::Sub => x - y,
                            BinFn::Mul => x * y,
                            BinFn::Div => x / y,
                        };
                    }
                }
            });
            Tensor::f32(out_shape.to_vec(), out)
        }
        Op::Unary { .. } | Op::Clip { .. } => {
            let x = t(0)?.as_f32(node)?;
            let mut out = vec![0.0f32; n_out];
            par_rows(&mut out, last, th, |r0, rows| {
                let base = r0 * last;
                for (e, o) in rows.iter_mut().enumerate() {
                    let v = x[base + e];
                    *o = match op {
                        Op::Clip { min, max } => v.max(*min).min(*max),
                        Op::Unary { f } => match f {
                            UnFn::Sigmoid => 1.0 / (1.0 + detmath::exp(-v)),
                            UnFn::Sqrt => v.sqrt(),
                            UnFn::Reciprocal => 1.0 / v,
                            UnFn::Log => detmath::log(v),
                            UnFn::Exp => detmath::exp(v),
                            UnFn::Sin => detmath::sin(v),
                            UnFn::Cos => detmath::cos(v),
                            UnFn::Neg => -v,
                        },
                        _ => v,
                    };
                }
            });
            Tensor::f32(out_shape.to_vec(), out)
        }
        Op::InstanceNorm { eps } => {
            let x = t(0)?.as_f32(node)?;
            let (scale, bias) = (t(1)?.as_f32(node)?, t(2)?.as_f32(node)?);
            let c = out_shape[1];
            let plane: usize = out_shape[2..].iter().product();
            let mut out = vec![0.0f32; n_out];
            let eps = *eps;
            par_rows(&mut out, plane, th, |p0, planes| {
                for (pi, o) in planes.chunks_mut(plane).enumerate() {
                    let p = p0 + pi;
                    let xs = &x[p * plane..(p + 1) * plane];
                    let n = plane as f32;
                    let mean = lane_sum(xs, |v| v) / n;
                    let var = lane_sum(xs, |v| (v - mean) * (v - mean)) / n;
                    let inv = 1.0 / (var + eps).sqrt();
                    let (g, b) = (scale[p % c], bias[p % c]);
                    for (ov, &v) in o.iter_mut().zip(xs) {
                        *ov = detmath::fma((v - mean) * inv, g, b);
                    }
                }
            });
            Tensor::f32(out_shape.to_vec(), out)
        }
        Op::GroupNorm {
            groups,
            eps,
            silu,
            film,
        } => {
            let x = t(0)?.as_f32(node)?;
            let (gamma, beta) = (t(1)?.as_f32(node)?, t(2)?.as_f32(node)?);
            let (scale, shift) = if *film {
                (Some(t(3)?.as_f32(node)?), Some(t(4)?.as_f32(node)?))
            } else {
                (None, None)
            };
            let c = out_shape[1];
            let plane: usize = out_shape[2..].iter().product();
            let per = c / groups * plane;
            let mut out = vec![0.0f32; n_out];
            let (eps, silu) = (*eps, *silu);
            par_rows(&mut out, per, th, |g0, grs| {
                for (gi, o) in grs.chunks_mut(per).enumerate() {
                    let g = g0 + gi;
                    let xs = &x[g * per..(g + 1) * per];
                    let n = per as f32;
                    let mean = lane_sum(xs, |v| v) / n;
                    let var = lane_sum(xs, |v| (v - mean) * (v - mean)) / n;
                    let inv = 1.0 / (var + eps).sqrt();
                    let c0 = (g % groups) * (c / groups);
                    // (n, c) of this group's first channel, for the FiLM vectors.
                    let nc0 = (g / groups) * c + c0;
                    for (ci, (ob, xb)) in o.chunks_mut(plane).zip(xs.chunks(plane)).enumerate() {
                        let (ga, be) = (gamma[c0 + ci], beta[c0 + ci]);
                        let film = scale.zip(shift).map(|(s, h)| (s[nc0 + ci], h[nc0 + ci]));
                        for (ov, &v) in ob.iter_mut().zip(xb) {
                            let mut y = detmath::fma((v - mean) * inv, ga, be);
                            if let Some((s, h)) = film {
                                y = y * s + h;
                            }
                            *ov = if silu { detmath::silu(y) } else { y };
                        }
                    }
                }
            });
            Tensor::f32(out_shape.to_vec(), out)
        }
        Op::BatchMatMul { ta, tb } => {
            let (a, b) = (t(0)?, t(1)?);
            let (av, bv) = (a.as_f32(node)?, b.as_f32(node)?);
            let (bn, m, n) = (out_shape[0], out_shape[1], out_shape[2]);
            let k = if *ta { a.shape[1] } else { a.shape[2] };
            let mut out = Vec::with_capacity(n_out);
            let transpose = |x: &[f32], r: usize, c: usize| -> Vec<f32> {
                let mut o = vec![0.0f32; r * c];
                for i in 0..r {
                    for j in 0..c {
                        o[j * r + i] = x[i * c + j];
                    }
                }
                o
            };
            for bi in 0..bn {
                let sa = &av[bi * m * k..(bi + 1) * m * k];
                let sb = &bv[bi * k * n..(bi + 1) * k * n];
                let pa = if *ta {
                    transpose(sa, k, m)
                } else {
                    sa.to_vec()
                };
                let pb = if *tb {
                    transpose(sb, n, k)
                } else {
                    sb.to_vec()
                };
                out.extend(matmul(&pa, &pb, None, m, k, n, th));
            }
            Tensor::f32(out_shape.to_vec(), out)
        }
        Op::AvgPool { k, stride } => {
            let x = t(0)?;
            let xv = x.as_f32(node)?;
            let r = x.shape.len();
            let (h, w) = (x.shape[r - 2], x.shape[r - 1]);
            let (oh, ow) = (out_shape[r - 2], out_shape[r - 1]);
            let div = (k * k) as f32;
            let mut out = vec![0.0f32; n_out];
            par_rows(&mut out, oh * ow, th, |p0, planes| {
                for (pi, o) in planes.chunks_mut(oh * ow).enumerate() {
                    let xs = &xv[(p0 + pi) * h * w..(p0 + pi + 1) * h * w];
                    for y in 0..oh {
                        for xo in 0..ow {
                            let mut s = 0.0f32;
                            for ky in 0..*k {
                                for kx in 0..*k {
                                    s += xs[(y * stride + ky) * w + xo * stride + kx];
                                }
                            }
                            o[y * ow + xo] = s / div;
                        }
                    }
                }
            });
            Tensor::f32(out_shape.to_vec(), out)
        }
        Op::Upsample { factor } => {
            let x = t(0)?;
            let xv = x.as_f32(node)?;
            let r = x.shape.len();
            let (h, w) = (x.shape[r - 2], x.shape[r - 1]);
            let (f, ow) = (*factor, w * factor);
            let mut out = Vec::with_capacity(n_out);
            for plane in xv.chunks_exact((h * w).max(1)) {
                for y in 0..h * f {
                    let row = &plane[(y / f) * w..(y / f + 1) * w];
                    out.extend((0..ow).map(|xo| row[xo / f]));
                }
            }
            Tensor::f32(out_shape.to_vec(), out)
        }
        Op::Concat { axis } => {
            let outer: usize = out_shape[..*axis].iter().product();
            let inner: usize = out_shape[axis + 1..].iter().product();
            if ins
                .first()
                .is_some_and(|x| x.dtype() == crate::tensor::DType::I32)
            {
                let parts: Vec<&[i32]> =
                    ins.iter().map(|x| x.as_i32(node)).collect::<Result<_>>()?;
                let mut out = Vec::with_capacity(n_out);
                for o in 0..outer {
                    for (p, x) in parts.iter().zip(ins) {
                        let span = x.shape[*axis] * inner;
                        out.extend_from_slice(&p[o * span..(o + 1) * span]);
                    }
                }
                return Tensor::i32(out_shape.to_vec(), out);
            }
            let parts: Vec<&[f32]> = ins.iter().map(|x| x.as_f32(node)).collect::<Result<_>>()?;
            let mut out = Vec::with_capacity(n_out);
            for o in 0..outer {
                for (p, x) in parts.iter().zip(ins) {
                    let span = x.shape[*axis] * inner;
                    out.extend_from_slice(&p[o * span..(o + 1) * span]);
                }
            }
            Tensor::f32(out_shape.to_vec(), out)
        }
        Op::Narrow { axis, start, len } => {
            let x = t(0)?;
            let outer: usize = x.shape[..*axis].iter().product();
            let inner: usize = x.shape[axis + 1..].iter().product();
            let dim = x.shape[*axis];
            let pick = |o: usize| (o * dim + start) * inner..(o * dim + start + len) * inner;
            if x.dtype() == crate::tensor::DType::I32 {
                let v = x.as_i32(node)?;
                let out: Vec<i32> = (0..outer)
                    .flat_map(|o| v[pick(o)].iter().copied())
                    .collect();
                return Tensor::i32(out_shape.to_vec(), out);
            }
            let v = x.as_f32(node)?;
            let out: Vec<f32> = (0..outer)
                .flat_map(|o| v[pick(o)].iter().copied())
                .collect();
            Tensor::f32(out_shape.to_vec(), out)
        }
        other => Err(ExecError::node(node, other.name(), "not a network op")),
    }
}
