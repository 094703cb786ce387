//! Shape and dtype contracts of the network ops an imported ONNX graph needs
//! (broadcast arithmetic, instance norm, batched matmul, pooling, upsampling, concat and
//! narrow); the kernels are in `cpu_nn`.

use crate::error::{ExecError, Result};
use crate::ops::Op;
use crate::tensor::DType;

/// numpy broadcasting of two shapes (aligned on the right; a dim of 1 stretches).
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        *o = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// True for the ops whose contract and kernels live here and in `cpu_nn`.
pub fn is_network(op: &Op) -> bool {
    matches!(
        op,
        Op::Binary { .. }
            | Op::Unary { .. }
            | Op::Clip { .. }
            | Op::InstanceNorm { .. }
            | Op::GroupNorm { .. }
            | Op::BatchMatMul { .. }
            | Op::AvgPool { .. }
            | Op::Upsample { .. }
            | Op::Concat { .. }
            | Op::Narrow { .. }
    )
}

/// Checks a network op's inputs and returns its output (dtype, shape).
pub fn infer(op: &Op, node: &str, ins: &[(DType, Vec<usize>)]) -> Result<(DType, Vec<usize>)> {
    let name = op.name();
    let bad = |r: String| ExecError::node(node, name, r);
    let arity = |n: usize| -> Result<()> {
        if ins.len() != n {
            return Err(bad(format!("expected {n} inputs, got {}", ins.len())));
        }
        Ok(())
    };
    let f32_in = |i: usize| -> Result<&Vec<usize>> {
        match ins.get(i) {
            Some((DType::F32, s)) => Ok(s),
            Some((d, _)) => Err(bad(format!("input {i} must be f32, is {d:?}"))),
            None => Err(bad(format!("missing input {i}"))),
        }
    };
    match op {
        Op::Binary { .. } => {
            arity(2)?;
            let (a, b) = (f32_in(0)?, f32_in(1)?);
            let out =
                broadcast(a, b).ok_or_else(|| bad(format!("cannot broadcast {a:?} with {b:?}")))?;
            Ok((DType::F32, out))
        }
        Op::Unary { .. } => {
            arity(1)?;
            Ok((DType::F32, f32_in(0)?.clone()))
        }
        Op::Clip { min, max } => {
            arity(1)?;
            if min.is_nan() || max.is_nan() || min > max {
                return Err(bad(format!("bounds {min}..{max} are not an interval")));
            }
            Ok((DType::F32, f32_in(0)?.clone()))
        }
        Op::InstanceNorm { eps } => {
            arity(3)?;
            if !(eps.is_finite() && *eps > 0.0) {
                return Err(bad("eps must be positive".into()));
            }
            let x = f32_in(0)?;
            if x.len() < 3 || x[2..].iter().product::<usize>() == 0 {
                return Err(bad(format!(
                    "x must be [N,C,…] with a non-empty rest, is {x:?}"
                )));
            }
            for i in 1..3 {
                if *f32_in(i)? != vec![x[1]] {
                    return Err(bad(format!("input {i} must be [{}]", x[1])));
                }
            }
            Ok((DType::F32, x.clone()))
        }
        Op::GroupNorm {
            groups, eps, film, ..
        } => {
            arity(if *film { 5 } else { 3 })?;
            if !(eps.is_finite() && *eps > 0.0) {
                return Err(bad("eps must be positive".into()));
            }
            let x = f32_in(0)?;
            if x.len() < 3 || x[2..].iter().product::<usize>() == 0 {
                return Err(bad(format!(
                    "x must be [N,C,…] with a non-empty rest, is {x:?}"
                )));
            }
            if *groups == 0 || x[1] % groups != 0 {
                return Err(bad(format!(
                    "{} channels do not split into {groups} groups",
                    x[1]
                )));
            }
            for i in 1..3 {
                if *f32_in(i)? != vec![x[1]] {
                    return Err(bad(format!("input {i} must be [{}]", x[1])));
                }
            }
            for i in (3..5).filter(|_| *film) {
                let s = f32_in(i)?;
                if s.len() != x.len() || s[..2] != x[..2] || s[2..].iter().any(|&d| d != 1) {
                    return Err(bad(format!("input {i} must be [{}, {}, 1…]", x[0], x[1])));
                }
            }
            Ok((DType::F32, x.clone()))
        }
        Op::BatchMatMul { ta, tb } => {
            arity(2)?;
            let (a, b) = (f32_in(0)?, f32_in(1)?);
            let (&[ba, a1, a2], &[bb, b1, b2]) = (a.as_slice(), b.as_slice()) else {
                return Err(bad(format!("a {a:?} and b {b:?} must be rank 3")));
            };
            let (m, k) = if *ta { (a2, a1) } else { (a1, a2) };
            let (k2, n) = if *tb { (b2, b1) } else { (b1, b2) };
            if ba != bb || k != k2 {
                return Err(bad(format!("a {a:?} and b {b:?} do not multiply")));
            }
            Ok((DType::F32, vec![ba, m, n]))
        }
        Op::AvgPool { k, stride } => {
            arity(1)?;
            let x = f32_in(0)?;
            let r = x.len();
            if r < 2 || *k == 0 || *stride == 0 || x[r - 2] < *k || x[r - 1] < *k {
                return Err(bad(format!("x {x:?} cannot be pooled by {k}×{k}")));
            }
            let mut out = x.clone();
            out[r - 2] = (x[r - 2] - k) / stride + 1;
            out[r - 1] = (x[r - 1] - k) / stride + 1;
            Ok((DType::F32, out))
        }
        Op::Upsample { factor } => {
            arity(1)?;
            let x = f32_in(0)?;
            let r = x.len();
            if r < 2 || *factor == 0 || *factor > 64 {
                return Err(bad(format!("x {x:?} cannot be upsampled by {factor}")));
            }
            let mut out = x.clone();
            out[r - 2] *= factor;
            out[r - 1] *= factor;
            Ok((DType::F32, out))
        }
        Op::Concat { axis } => {
            let Some((d0, s0)) = ins.first() else {
                return Err(bad("needs at least one input".into()));
            };
            if *axis >= s0.len() {
                return Err(bad(format!("axis {axis} out of range for {s0:?}")));
            }
            let mut out = s0.clone();
            for (d, s) in &ins[1..] {
                let same_rest = s.len() == s0.len()
                    && s.iter()
                        .zip(s0)
                        .enumerate()
                        .all(|(i, (x, y))| i == *axis || x == y);
                if d != d0 || !same_rest {
                    return Err(bad(format!("{d:?} {s:?} does not join {d0:?} {s0:?}")));
                }
                out[*axis] += s[*axis];
            }
            Ok((*d0, out))
        }
        Op::Narrow { axis, start, len } => {
            arity(1)?;
            let (d, s) = &ins[0];
            match s.get(*axis) {
                Some(&n) if *len > 0 && start.checked_add(*len).is_some_and(|e| e <= n) => {
                    let mut out = s.clone();
                    out[*axis] = *len;
                    Ok((*d, out))
                }
                _ => Err(bad(format!(
                    "{start}..+{len} of axis {axis} is outside {s:?}"
                ))),
            }
        }
        other => Err(bad(format!("{} has no network contract", other.name()))),
    }
}
