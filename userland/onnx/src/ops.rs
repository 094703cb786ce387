//! One converter per supported ONNX operator: fold it when its inputs are constants
//! (shape arithmetic), else map it to a havn-exec op. Anything else is refused by name.

use crate::consts::{self, Const, Data};
use crate::error::Result;
use crate::import::attrs::{attr_f, attr_i, attr_ints, attr_s, node_err, tensor, unsupported};
use crate::import::ImportCtx;
use crate::proto::NodeProto;
use havn_exec::ops::{BinFn, Op, UnFn};

/// Every operator the importer knows.
pub const SUPPORTED: &[&str] = &[
    "Add",
    "AveragePool",
    "Cast",
    "Clip",
    "Concat",
    "Constant",
    "Conv",
    "Cos",
    "Div",
    "Einsum",
    "Exp",
    "Gather",
    "Gemm",
    "Identity",
    "InstanceNormalization",
    "Log",
    "MatMul",
    "Mul",
    "Neg",
    "Pow",
    "Reciprocal",
    "Reshape",
    "Resize",
    "Shape",
    "Sigmoid",
    "Sin",
    "Softmax",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Unsqueeze",
];

/// Converts one node.
pub fn convert(cx: &mut ImportCtx<'_>, n: &NodeProto) -> Result<()> {
    let op = n.op_type.clone().unwrap_or_default();
    match op.as_str() {
        "Constant" => {
            let c = tensor(n, "value")
                .ok_or_else(|| unsupported(n, "only the tensor `value` form"))??;
            cx.set_const(n, 0, c)
        }
        "Identity" => {
            if cx.all_const(n) {
                let c = cx.konst(n, 0)?;
                return cx.set_const(n, 0, c);
            }
            let (r, s) = cx.dag(n, 0)?;
            cx.alias(n, 0, r, s)
        }
        "Cast" => {
            let to = attr_i(n, "to", 0);
            if cx.all_const(n) {
                let c = cx.konst(n, 0)?;
                let data = match to {
                    1 => Data::F32(c.as_f32()),
                    7 => Data::I64(c.as_i64("Cast")?),
                    _ => return Err(unsupported(n, format!("cast to type {to}"))),
                };
                return cx.set_const(n, 0, Const { dims: c.dims, data });
            }
            if to != 1 {
                return Err(unsupported(n, format!("run-time cast to type {to}")));
            }
            let (r, s) = cx.dag(n, 0)?;
            cx.alias(n, 0, r, s)
        }
        "Shape" => {
            let s = cx.shape(n, 0)?;
            let r = s.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
            let (a, b) = (clamp(attr_i(n, "start", 0)), clamp(attr_i(n, "end", r)));
            let dims = s.get(a..b.max(a)).unwrap_or(&[]).iter().map(|&d| d as i64);
            cx.set_const(n, 0, Const::i64s(dims.collect()))
        }
        "Reshape" => {
            let target = cx.konst(n, 1)?.as_i64("Reshape shape")?;
            let allowzero = attr_i(n, "allowzero", 0) != 0;
            let shape = consts::reshape_target(&cx.shape(n, 0)?, &target, allowzero)
                .map_err(|e| node_err(n, e.to_string()))?;
            reshape(cx, n, shape)
        }
        "Unsqueeze" | "Squeeze" => {
            let axes = match cx.opt_konst(n, 1)? {
                Some(c) => c.as_i64("axes")?,
                None => attr_ints(n, "axes").unwrap_or_default(),
            };
            let s = cx.shape(n, 0)?;
            let shape = if op == "Unsqueeze" {
                consts::unsqueeze_dims(&s, &axes)
            } else {
                consts::squeeze_dims(&s, &axes)
            }
            .map_err(|e| node_err(n, e.to_string()))?;
            reshape(cx, n, shape)
        }
        "Concat" => {
            let rank = cx.shape(n, 0)?.len();
            let ax =
                consts::axis(attr_i(n, "axis", 0), rank).map_err(|e| node_err(n, e.to_string()))?;
            let k = n.input.len();
            if cx.all_const(n) {
                let parts = (0..k).map(|i| cx.konst(n, i)).collect::<Result<Vec<_>>>()?;
                let c = consts::concat(&parts.iter().collect::<Vec<_>>(), ax)
                    .map_err(|e| node_err(n, e.to_string()))?;
                return cx.set_const(n, 0, c);
            }
            let ins = (0..k)
                .map(|i| cx.dag(n, i).map(|d| d.0))
                .collect::<Result<_>>()?;
            cx.emit(n, 0, Op::Concat { axis: ax }, ins)
        }
        "Gather" => {
            if !cx.all_const(n) || attr_i(n, "axis", 0) != 0 {
                return Err(unsupported(n, "only constant data gathered along axis 0"));
            }
            let c = consts::gather0(&cx.konst(n, 0)?, &cx.konst(n, 1)?)
                .map_err(|e| node_err(n, e.to_string()))?;
            cx.set_const(n, 0, c)
        }
        "Add" | "Sub" | "Mul" | "Div" => {
            let (a0, b0) = (cx.is_dag(n, 0)?, cx.is_dag(n, 1)?);
            if !a0 && !b0 {
                let (a, b) = (cx.konst(n, 0)?, cx.konst(n, 1)?);
                if matches!((&a.data, &b.data), (Data::I64(_), Data::I64(_))) {
                    let c =
                        consts::arith_i64(&op, &a, &b).map_err(|e| node_err(n, e.to_string()))?;
                    return cx.set_const(n, 0, c);
                }
            }
            let f = match op.as_str() {
                "Add" => BinFn::Add,
                "Sub" => BinFn::Sub,
                "Mul" => BinFn::Mul,
                _ => BinFn::Div,
            };
            let (a, b) = (cx.dag(n, 0)?.0, cx.dag(n, 1)?.0);
            cx.emit(n, 0, Op::Binary { f }, vec![a, b])
        }
        "Pow" => {
            let e = cx.konst(n, 1)?.scalar("Pow exponent")?;
            let (x, s) = cx.dag(n, 0)?;
            match e {
                1.0 => cx.alias(n, 0, x, s),
                2.0 => cx.emit(n, 0, Op::Binary { f: BinFn::Mul }, vec![x.clone(), x]),
                0.5 => cx.emit(n, 0, Op::Unary { f: UnFn::Sqrt }, vec![x]),
                -1.0 => cx.emit(
                    n,
                    0,
                    Op::Unary {
                        f: UnFn::Reciprocal,
                    },
                    vec![x],
                ),
                _ => Err(unsupported(
                    n,
                    format!("exponent {e} (1, 2, 0.5 and -1 only)"),
                )),
            }
        }
        "Sigmoid" | "Sqrt" | "Reciprocal" | "Log" | "Exp" | "Sin" | "Cos" | "Neg" => {
            let f = match op.as_str() {
                "Sigmoid" => UnFn::Sigmoid,
                "Sqrt" => UnFn::Sqrt,
                "Reciprocal" => UnFn::Reciprocal,
                "Log" => UnFn::Log,
                "Exp" => UnFn::Exp,
                "Sin" => UnFn::Sin,
                "Cos" => UnFn::Cos,
                _ => UnFn::Neg,
            };
            let x = cx.dag(n, 0)?.0;
            cx.emit(n, 0, Op::Unary { f }, vec![x])
        }
        "Clip" => {
            let lo = cx
                .opt_konst(n, 1)?
                .map(|c| c.scalar("Clip min"))
                .transpose()?;
            let hi = cx
                .opt_konst(n, 2)?
                .map(|c| c.scalar("Clip max"))
                .transpose()?;
            let x = cx.dag(n, 0)?.0;
            let (min, max) = (lo.unwrap_or(f32::NEG_INFINITY), hi.unwrap_or(f32::INFINITY));
            cx.emit(n, 0, Op::Clip { min, max }, vec![x])
        }
        "Softmax" => {
            let rank = cx.shape(n, 0)?.len() as i64;
            let ax = attr_i(n, "axis", -1);
            if ax != -1 && ax != rank - 1 {
                return Err(unsupported(n, format!("axis {ax} (the last axis only)")));
            }
            let x = cx.dag(n, 0)?.0;
            cx.emit(n, 0, Op::Softmax, vec![x])
        }
        "InstanceNormalization" => {
            let eps = attr_f(n, "epsilon", 1e-5);
            let ins = (0..3)
                .map(|i| cx.dag(n, i).map(|d| d.0))
                .collect::<Result<_>>()?;
            cx.emit(n, 0, Op::InstanceNorm { eps }, ins)
        }
        "Conv" => conv(cx, n),
        "Gemm" | "MatMul" => gemm(cx, n, &op),
        "Einsum" => einsum(cx, n),
        "AveragePool" => {
            let k = attr_ints(n, "kernel_shape").unwrap_or_default();
            let s = attr_ints(n, "strides").unwrap_or_else(|| vec![1; k.len()]);
            let pads = attr_ints(n, "pads").unwrap_or_default();
            let square = k.len() == 2 && k[0] == k[1] && s.len() == 2 && s[0] == s[1];
            if !square
                || k[0] <= 0
                || s[0] <= 0
                || pads.iter().any(|&p| p != 0)
                || attr_i(n, "ceil_mode", 0) != 0
                || attr_s(n, "auto_pad", "NOTSET") != "NOTSET"
            {
                return Err(unsupported(
                    n,
                    format!("kernel {k:?} strides {s:?} pads {pads:?} (square, unpadded, floor)"),
                ));
            }
            let x = cx.dag(n, 0)?.0;
            cx.emit(
                n,
                0,
                Op::AvgPool {
                    k: k[0] as usize,
                    stride: s[0] as usize,
                },
                vec![x],
            )
        }
        "Resize" => resize(cx, n),
        "Split" => split(cx, n),
        _ => Err(unsupported(
            n,
            format!("not in the supported set ({})", SUPPORTED.join(", ")),
        )),
    }
}

/// Reshape-like ops: folded for constants, an alias when the shape is unchanged, else a
/// Reshape node.
fn reshape(cx: &mut ImportCtx<'_>, n: &NodeProto, shape: Vec<usize>) -> Result<()> {
    if !cx.is_dag(n, 0)? {
        let c = cx
            .konst(n, 0)?
            .reshaped(shape)
            .map_err(|e| node_err(n, e.to_string()))?;
        return cx.set_const(n, 0, c);
    }
    let (x, s) = cx.dag(n, 0)?;
    if s == shape {
        return cx.alias(n, 0, x, s);
    }
    cx.emit(n, 0, Op::Reshape { shape }, vec![x])
}

fn conv(cx: &mut ImportCtx<'_>, n: &NodeProto) -> Result<()> {
    let w = cx.konst(n, 1)?;
    let (o, kh, kw) = match w.dims.as_slice() {
        [o, _, kh, kw] => (*o, *kh, *kw),
        d => {
            return Err(unsupported(
                n,
                format!("weight {d:?} (2-D convolutions only)"),
            ))
        }
    };
    let strides = attr_ints(n, "strides").unwrap_or_else(|| vec![1, 1]);
    let pads = attr_ints(n, "pads").unwrap_or_else(|| vec![0; 4]);
    let dil = attr_ints(n, "dilations").unwrap_or_else(|| vec![1, 1]);
    let ok = attr_i(n, "group", 1) == 1
        && dil.iter().all(|&d| d == 1)
        && strides.len() == 2
        && strides[0] == strides[1]
        && strides[0] > 0
        && pads.len() == 4
        && pads.iter().all(|&p| p == pads[0] && p >= 0)
        && attr_s(n, "auto_pad", "NOTSET") == "NOTSET";
    if !ok {
        return Err(unsupported(
            n,
            format!(
                "group {} strides {strides:?} pads {pads:?} dilations {dil:?} (group 1, equal strides, symmetric pads, no dilation)",
                attr_i(n, "group", 1)
            ),
        ));
    }
    let name = n.input.get(1).cloned().unwrap_or_default();
    let wr = cx.weight(&name, &w)?;
    let br = match cx.opt_konst(n, 2)? {
        Some(b) => cx.weight(n.input.get(2).map(String::as_str).unwrap_or(""), &b)?,
        None => cx.weight(
            &format!("{name}.zero_bias"),
            &Const {
                dims: vec![o],
                data: Data::F32(vec![0.0; o]),
            },
        )?,
    };
    let x = cx.dag(n, 0)?.0;
    let _ = (kh, kw);
    cx.emit(
        n,
        0,
        Op::Conv2d {
            stride: strides[0] as usize,
            pad: pads[0] as usize,
        },
        vec![x, wr, br],
    )
}

/// Gemm (alpha = beta = 1, A not transposed) and 2-D MatMul with a constant B: a MatMul
/// node against B stored as `[K, N]` (transposed at import when `transB`).
fn gemm(cx: &mut ImportCtx<'_>, n: &NodeProto, op: &str) -> Result<()> {
    if op == "Gemm"
        && (attr_f(n, "alpha", 1.0) != 1.0
            || attr_f(n, "beta", 1.0) != 1.0
            || attr_i(n, "transA", 0) != 0)
    {
        return Err(unsupported(n, "alpha and beta must be 1, transA 0"));
    }
    let b = cx.konst(n, 1)?;
    let name = n.input.get(1).cloned().unwrap_or_default();
    let (k, nn, data) = match (b.dims.as_slice(), &b.data) {
        ([r, c], Data::F32(v)) if attr_i(n, "transB", 0) != 0 => {
            let mut t = vec![0.0f32; v.len()];
            for i in 0..*r {
                for j in 0..*c {
                    t[j * r + i] = v[i * c + j];
                }
            }
            (*c, *r, t)
        }
        ([r, c], Data::F32(v)) => (*r, *c, v.clone()),
        (d, _) => {
            return Err(unsupported(
                n,
                format!("B {d:?} must be a 2-D f32 constant"),
            ))
        }
    };
    let suffix = if attr_i(n, "transB", 0) != 0 {
        ".T"
    } else {
        ""
    };
    let br = cx.weight(
        &format!("{name}{suffix}"),
        &Const {
            dims: vec![k, nn],
            data: Data::F32(data),
        },
    )?;
    let (a, _) = cx.dag(n, 0)?;
    let mut ins = vec![a, br];
    if op == "Gemm" {
        if let Some(c) = cx.opt_konst(n, 2)? {
            if c.len() != nn || c.dims.len() > 1 && c.dims[0] != 1 {
                return Err(unsupported(n, format!("bias {:?} must be [{nn}]", c.dims)));
            }
            let cname = n.input.get(2).cloned().unwrap_or_default();
            ins.push(cx.weight(&cname, &c.reshaped(vec![nn])?)?);
        }
    }
    cx.emit(n, 0, Op::MatMul, ins)
}

/// Two-operand einsums that are batched matmuls (`bij,bjk->bik` and its transposed
/// forms): one shared batch letter, one contracted letter, one free letter per operand.
fn einsum(cx: &mut ImportCtx<'_>, n: &NodeProto) -> Result<()> {
    let eq = attr_s(n, "equation", "").replace(' ', "");
    let parsed = (|| {
        let (lhs, out) = eq.split_once("->")?;
        let (a, b) = lhs.split_once(',')?;
        let (a, b, o): (Vec<char>, Vec<char>, Vec<char>) = (
            a.chars().collect(),
            b.chars().collect(),
            out.chars().collect(),
        );
        if a.len() != 3 || b.len() != 3 || o.len() != 3 || a[0] != b[0] || a[0] != o[0] {
            return None;
        }
        let (m, nn) = (o[1], o[2]);
        let k = *a[1..]
            .iter()
            .find(|c| b[1..].contains(c) && !o.contains(c))?;
        let (first, fa) = if a[1..].contains(&m) && b[1..].contains(&nn) {
            (0, true)
        } else if b[1..].contains(&m) && a[1..].contains(&nn) {
            (1, false)
        } else {
            return None;
        };
        let (x, y) = if fa { (&a, &b) } else { (&b, &a) };
        // x holds {m, k}, y holds {k, n}.
        let ta = x[1] == k && x[2] == m;
        let tb = y[1] == nn && y[2] == k;
        let fits = (ta || (x[1] == m && x[2] == k)) && (tb || (y[1] == k && y[2] == nn));
        fits.then_some((first, ta, tb))
    })();
    let (first, ta, tb) = parsed.ok_or_else(|| {
        unsupported(
            n,
            format!("equation {eq:?} (batched-matmul forms like bij,bjk->bik only)"),
        )
    })?;
    let (a, b) = (cx.dag(n, first)?.0, cx.dag(n, 1 - first)?.0);
    cx.emit(n, 0, Op::BatchMatMul { ta, tb }, vec![a, b])
}

/// Nearest-neighbour Resize by one integer factor on the last two dims (asymmetric
/// coordinates, floor rounding: `x_in = floor(x_out / f)`).
fn resize(cx: &mut ImportCtx<'_>, n: &NodeProto) -> Result<()> {
    let mode = attr_s(n, "mode", "nearest");
    let ctm = attr_s(n, "coordinate_transformation_mode", "half_pixel");
    let nm = attr_s(n, "nearest_mode", "round_prefer_floor");
    if mode != "nearest" || ctm != "asymmetric" || nm != "floor" {
        return Err(unsupported(
            n,
            format!("mode {mode} / {ctm} / {nm} (nearest, asymmetric, floor only)"),
        ));
    }
    let s = cx.shape(n, 0)?;
    let r = s.len();
    let scales = match cx.opt_konst(n, 2)? {
        Some(c) if !c.is_empty() => c.as_f32(),
        _ => {
            let sizes = cx
                .opt_konst(n, 3)?
                .ok_or_else(|| unsupported(n, "needs constant scales or sizes"))?
                .as_i64("sizes")?;
            sizes
                .iter()
                .zip(&s)
                .map(|(&o, &i)| if i == 0 { 0.0 } else { o as f32 / i as f32 })
                .collect()
        }
    };
    let f = scales.get(r.saturating_sub(1)).copied().unwrap_or(0.0);
    let ok = scales.len() == r
        && r >= 2
        && scales[..r - 2].iter().all(|&x| x == 1.0)
        && scales[r - 2] == f
        && f >= 1.0
        && f.fract() == 0.0;
    if !ok {
        return Err(unsupported(
            n,
            format!("scales {scales:?} (one integer factor on H and W)"),
        ));
    }
    let x = cx.dag(n, 0)?.0;
    cx.emit(n, 0, Op::Upsample { factor: f as usize }, vec![x])
}

fn split(cx: &mut ImportCtx<'_>, n: &NodeProto) -> Result<()> {
    let s = cx.shape(n, 0)?;
    let ax = consts::axis(attr_i(n, "axis", 0), s.len()).map_err(|e| node_err(n, e.to_string()))?;
    let parts = n.output.len();
    let sizes: Vec<usize> = match cx.opt_konst(n, 1)? {
        Some(c) => c
            .as_i64("split")?
            .iter()
            .map(|&v| usize::try_from(v).map_err(|_| node_err(n, format!("split size {v}"))))
            .collect::<Result<_>>()?,
        None => {
            let k = attr_i(n, "num_outputs", parts as i64).max(1) as usize;
            let each = s[ax].div_ceil(k);
            (0..k)
                .map(|i| each.min(s[ax].saturating_sub(i * each)))
                .collect()
        }
    };
    if sizes.len() != parts || sizes.iter().sum::<usize>() != s[ax] {
        return Err(node_err(
            n,
            format!("sizes {sizes:?} do not split {:?} on axis {ax}", s),
        ));
    }
    let x = cx.dag(n, 0)?.0;
    let mut start = 0;
    for (i, &len) in sizes.iter().enumerate() {
        cx.emit(
            n,
            i,
            Op::Narrow {
                axis: ax,
                start,
                len,
            },
            vec![x.clone()],
        )?;
        start += len;
    }
    Ok(())
}
