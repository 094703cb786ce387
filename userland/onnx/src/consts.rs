//! Constants known at import time: initializers and `Constant` nodes (f32 or i64,
//! bounded), and the folding of the shape arithmetic that dynamic-shape exports compute
//! (Shape, Squeeze, Unsqueeze, Reshape, Concat, Gather and i64 arithmetic).

use crate::error::{OnnxError, Result};
use crate::proto::{tensor_proto::DataType, TensorProto};
use havn_exec::manifest::MAX_ELEMS;

/// Values of a constant.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A constant tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Const {
    pub dims: Vec<usize>,
    pub data: Data,
}

fn bad(name: &str, reason: impl Into<String>) -> OnnxError {
    OnnxError::Tensor {
        name: name.into(),
        reason: reason.into(),
    }
}

/// Element count of `dims`, refused past the engine's tensor limit (no overflow).
pub fn checked_numel(name: &str, dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMS)
        .ok_or_else(|| bad(name, format!("shape {dims:?} exceeds {MAX_ELEMS} elements")))
}

impl Const {
    /// A rank-1 i64 constant.
    pub fn i64s(v: Vec<i64>) -> Const {
        Const {
            dims: vec![v.len()],
            data: Data::I64(v),
        }
    }

    /// Reads a TensorProto (raw little-endian data or the typed fields; external data
    /// and other dtypes refused), checking every length against the declared shape.
    pub fn from_proto(t: &TensorProto) -> Result<Const> {
        let name = t.name.as_deref().unwrap_or("");
        if t.data_location == Some(1) || !t.external_data.is_empty() {
            return Err(bad(
                name,
                "external data is not supported (embed the weights)",
            ));
        }
        let dims = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| bad(name, format!("negative dim {d}"))))
            .collect::<Result<Vec<_>>>()?;
        let n = checked_numel(name, &dims)?;
        let dt = t.data_type.unwrap_or(0);
        let raw = t.raw_data.as_deref().unwrap_or(&[]);
        let data = if dt == DataType::Float as i32 {
            if !raw.is_empty() {
                if raw.len() != n * 4 {
                    return Err(bad(name, format!("{} raw bytes for {n} f32", raw.len())));
                }
                Data::F32(
                    raw.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                )
            } else if t.float_data.len() == n {
                Data::F32(t.float_data.clone())
            } else {
                return Err(bad(
                    name,
                    format!("{} float_data values for {n} elements", t.float_data.len()),
                ));
            }
        } else if dt == DataType::Int64 as i32 {
            if !raw.is_empty() {
                if raw.len() != n * 8 {
                    return Err(bad(name, format!("{} raw bytes for {n} i64", raw.len())));
                }
                Data::I64(
                    raw.chunks_exact(8)
                        .map(|c| {
                            i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
                        })
                        .collect(),
                )
            } else if t.int64_data.len() == n {
                Data::I64(t.int64_data.clone())
            } else {
                return Err(bad(
                    name,
                    format!("{} int64_data values for {n} elements", t.int64_data.len()),
                ));
            }
        } else {
            let dtn = DataType::try_from(dt)
                .map(|d| d.as_str_name().to_owned())
                .unwrap_or_else(|_| dt.to_string());
            return Err(bad(name, format!("data type {dtn} (only FLOAT and INT64)")));
        };
        Ok(Const { dims, data })
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
        }
    }

    /// True when the constant has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as i64 (f32 values must be whole numbers).
    pub fn as_i64(&self, what: &str) -> Result<Vec<i64>> {
        match &self.data {
            Data::I64(v) => Ok(v.clone()),
            Data::F32(v) => v
                .iter()
                .map(|&x| {
                    if x.fract() == 0.0 && x.abs() < 9.0e15 {
                        Ok(x as i64)
                    } else {
                        Err(bad(what, format!("{x} is not a whole number")))
                    }
                })
                .collect(),
        }
    }

    /// The values as f32 (i64 values converted).
    pub fn as_f32(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(v) => v.clone(),
            Data::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The single value of a one-element constant, as f32.
    pub fn scalar(&self, what: &str) -> Result<f32> {
        match self.as_f32().as_slice() {
            [x] => Ok(*x),
            v => Err(bad(what, format!("expected one value, got {}", v.len()))),
        }
    }

    /// Same values, new dims (element counts must agree).
    pub fn reshaped(&self, dims: Vec<usize>) -> Result<Const> {
        if checked_numel("reshape", &dims)? != self.len() {
            return Err(bad("reshape", format!("{:?} into {dims:?}", self.dims)));
        }
        Ok(Const {
            dims,
            data: self.data.clone(),
        })
    }

    /// Elements `idx` (flat) in order.
    fn pick(&self, idx: &[usize]) -> Data {
        match &self.data {
            Data::F32(v) => Data::F32(idx.iter().map(|&i| v[i]).collect()),
            Data::I64(v) => Data::I64(idx.iter().map(|&i| v[i]).collect()),
        }
    }
}

/// Resolves a Reshape target (0 = copy the input dim unless `allowzero`, one −1 =
/// inferred) against an input shape.
pub fn reshape_target(input: &[usize], target: &[i64], allowzero: bool) -> Result<Vec<usize>> {
    let n = checked_numel("reshape input", input)?;
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(
                *input
                    .get(i)
                    .ok_or_else(|| bad("reshape", format!("0 at {i} copies a missing dim")))?,
            ),
            t if t >= 0 => out.push(t as usize),
            _ => return Err(bad("reshape", format!("target {target:?}"))),
        }
    }
    let known = checked_numel("reshape target", &out)?;
    if let Some(i) = infer {
        if known == 0 || n % known != 0 {
            return Err(bad("reshape", format!("{input:?} into {target:?}")));
        }
        out[i] = n / known;
    } else if known != n {
        return Err(bad("reshape", format!("{input:?} into {target:?}")));
    }
    Ok(out)
}

/// Normalises a possibly negative axis against `rank`.
pub fn axis(a: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if a < -r || a >= r {
        return Err(bad("axis", format!("{a} out of range for rank {rank}")));
    }
    Ok(if a < 0 { (a + r) as usize } else { a as usize })
}

/// Shape after inserting size-1 dims at `axes` (relative to the output rank).
pub fn unsqueeze_dims(dims: &[usize], axes: &[i64]) -> Result<Vec<usize>> {
    let r = dims.len() + axes.len();
    let mut ins = axes
        .iter()
        .map(|&a| axis(a, r))
        .collect::<Result<Vec<_>>>()?;
    ins.sort_unstable();
    ins.dedup();
    if ins.len() != axes.len() {
        return Err(bad("unsqueeze", format!("repeated axes {axes:?}")));
    }
    let mut src = dims.iter();
    Ok((0..r)
        .map(|i| {
            if ins.contains(&i) {
                1
            } else {
                src.next().copied().unwrap_or(1)
            }
        })
        .collect())
}

/// Shape after removing the size-1 dims at `axes` (all size-1 dims when empty).
pub fn squeeze_dims(dims: &[usize], axes: &[i64]) -> Result<Vec<usize>> {
    let drop = axes
        .iter()
        .map(|&a| axis(a, dims.len()))
        .collect::<Result<Vec<_>>>()?;
    if drop.iter().any(|&a| dims[a] != 1) {
        return Err(bad(
            "squeeze",
            format!("axes {axes:?} of {dims:?} are not 1"),
        ));
    }
    Ok(dims
        .iter()
        .enumerate()
        .filter(|(i, &d)| {
            if drop.is_empty() {
                d != 1
            } else {
                !drop.contains(i)
            }
        })
        .map(|(_, &d)| d)
        .collect())
}

/// Concatenation of constants along `axis` (same dtype).
pub fn concat(parts: &[&Const], ax: usize) -> Result<Const> {
    let first = parts.first().ok_or_else(|| bad("concat", "no inputs"))?;
    let mut dims = first.dims.clone();
    if ax >= dims.len() {
        return Err(bad("concat", format!("axis {ax} for {dims:?}")));
    }
    dims[ax] = 0;
    for p in parts {
        if p.dims.len() != first.dims.len() {
            return Err(bad("concat", "ranks differ"));
        }
        dims[ax] += p.dims[ax];
    }
    let outer: usize = first.dims[..ax].iter().product();
    let mut f = Vec::new();
    let mut i = Vec::new();
    for o in 0..outer {
        for p in parts {
            let span: usize = p.dims[ax..].iter().product();
            match &p.data {
                Data::F32(v) => f.extend_from_slice(&v[o * span..(o + 1) * span]),
                Data::I64(v) => i.extend_from_slice(&v[o * span..(o + 1) * span]),
            }
        }
    }
    let data = match (&first.data, f.is_empty() || i.is_empty()) {
        (_, false) => return Err(bad("concat", "mixed dtypes")),
        (Data::F32(_), _) => Data::F32(f),
        (Data::I64(_), _) => Data::I64(i),
    };
    Ok(Const { dims, data })
}

/// Gather along axis 0 of a constant with constant indices.
pub fn gather0(x: &Const, idx: &Const) -> Result<Const> {
    let rows = *x.dims.first().ok_or_else(|| bad("gather", "rank-0 data"))?;
    let inner: usize = x.dims[1..].iter().product();
    let mut flat = Vec::new();
    for i in idx.as_i64("gather indices")? {
        let r = if i < 0 { i + rows as i64 } else { i };
        if r < 0 || r >= rows as i64 {
            return Err(bad("gather", format!("index {i} out of range 0..{rows}")));
        }
        flat.extend((r as usize * inner)..(r as usize + 1) * inner);
    }
    let mut dims = idx.dims.clone();
    dims.extend_from_slice(&x.dims[1..]);
    Ok(Const {
        dims,
        data: x.pick(&flat),
    })
}

/// Elementwise i64 arithmetic with numpy broadcasting.
pub fn arith_i64(op: &str, a: &Const, b: &Const) -> Result<Const> {
    let dims = havn_exec::ops_nn::broadcast(&a.dims, &b.dims)
        .ok_or_else(|| bad(op, format!("{:?} with {:?}", a.dims, b.dims)))?;
    let (x, y) = (a.as_i64(op)?, b.as_i64(op)?);
    let n = checked_numel(op, &dims)?;
    let at = |v: &[i64], d: &[usize], i: usize| -> i64 {
        // Index of output element i in a broadcast operand.
        let mut rem = i;
        let mut off = 0;
        let mut stride = 1;
        for k in (0..dims.len()).rev() {
            let c = rem % dims[k];
            rem /= dims[k];
            if let Some(kk) = (k + d.len()).checked_sub(dims.len()) {
                if d[kk] != 1 {
                    off += c * stride;
                }
                stride *= d[kk];
            }
        }
        v[off]
    };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let (p, q) = (at(&x, &a.dims, i), at(&y, &b.dims, i));
        out.push(
            match op {
                "Add" => p.checked_add(q),
                "Sub" => p.checked_sub(q),
                "Mul" => p.checked_mul(q),
                "Div" => p.checked_div(q),
                _ => None,
            }
            .ok_or_else(|| bad(op, format!("{p} {op} {q} overflows or divides by zero")))?,
        );
    }
    Ok(Const {
        dims,
        data: Data::I64(out),
    })
}
