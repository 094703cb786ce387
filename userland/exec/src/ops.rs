//! Operator set: attributes, input contracts, shape inference and cost model.

use crate::error::{ExecError, Result};
use crate::tensor::{numel, DType};
use serde::{Deserialize, Serialize};

/// A tensor operation. Inputs are listed per variant; all f32 unless noted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// `a[M,K] · b[K,N] (+ bias[N])`: each output is one fma chain in k order, then + bias.
    MatMul,
    /// Quantized linear: `x[M,K]` f32 quantized per row to int8 (scale = max|x|/127,
    /// round-half-even), `w[K,N]` i8, `w_scale[N]`; i32 accumulation; out = acc · (sx · sw).
    QMatMul,
    /// Elementwise `a + b`; `b` has a's shape or is a row `[last dim]`.
    Add,
    /// Elementwise `a · b`, same broadcasting as Add.
    Mul,
    /// `x · factor`.
    Scale { factor: f32 },
    /// `table[V,D]`, `ids[T]` (i32) → `[T,D]`.
    Embedding,
    /// `x[..,D]`, `w[D]`: x · rsqrt(mean(x²) + eps) · w.
    RmsNorm { eps: f32 },
    /// `x[..,D]`, `w[D]`, `b[D]`.
    LayerNorm { eps: f32 },
    /// Softmax over the last dim.
    Softmax,
    /// SiLU elementwise.
    Silu,
    /// GELU (tanh form) elementwise.
    Gelu,
    /// Rotary embedding on `x[T, heads·hd]`, rotating pairs (i, i+hd/2) at position t.
    Rope { heads: usize, base: f32 },
    /// Causal multi-head self-attention over `q,k,v[T, heads·hd]`.
    Attention { heads: usize },
    /// `x[C,H,W]`, `w[O,C,KH,KW]`, `b[O]` → `[O,OH,OW]`; zero padding.
    Conv2d { stride: usize, pad: usize },
    /// Sample one token id (i32 `[1]`) from the last row of `logits[..,V]`.
    /// temperature 0 = argmax; else softmax(top-k / temperature) sampled with Philox.
    Sample { temperature: f32, top_k: usize },
    /// `seq[T]` i32 ++ `tok[1]` i32 → `[T+1]`.
    Append,
    /// Last row of `x[T,D]` → `[1,D]`.
    LastRow,
    /// Same data, new shape.
    Reshape { shape: Vec<usize> },
    /// 2-D transpose.
    Transpose,
    /// `x[N]` → overlapping frames `[F, win]` with hop.
    Frames { win: usize, hop: usize },
    /// Standard-normal tensor from Philox keyed by (seed, node index); no inputs.
    RandN { shape: Vec<usize> },
    /// Elementwise `f(a, b)`, the two inputs broadcast numpy-style to a common shape.
    Binary { f: BinFn },
    /// Elementwise `f(x)`.
    Unary { f: UnFn },
    /// `min(max(x, min), max)` elementwise.
    Clip { min: f32, max: f32 },
    /// `x[N,C,…]`, `scale[C]`, `bias[C]`: per (n, c), `(x − mean)/sqrt(var + eps)·scale +
    /// bias` over the remaining dims; mean and variance are sequential sums in index order.
    InstanceNorm { eps: f32 },
    /// `x[N,C,…]`, `gamma[C]`, `beta[C]` (and with `film` `scale`, `shift` of N·C values):
    /// per (n, group of C/groups channels), `y = (x − mean)/sqrt(var + eps)·gamma[c] +
    /// beta[c]` (sums as in InstanceNorm, one fma), then with `film` `y·scale[n,c]` and
    /// `+ shift[n,c]` (two roundings, as the separate Mul and Add), then SiLU when `silu`.
    /// What ONNX exports spell Reshape → InstanceNormalization → Reshape → Mul → Add (→
    /// Mul → Add → x·Sigmoid(x)).
    GroupNorm {
        groups: usize,
        eps: f32,
        silu: bool,
        #[serde(default)]
        film: bool,
    },
    /// Batched matmul `a[B,M,K]` (`[B,K,M]` when `ta`) · `b[B,K,N]` (`[B,N,K]` when `tb`)
    /// → `[B,M,N]`; every output is one fma chain in k order, as in MatMul.
    BatchMatMul { ta: bool, tb: bool },
    /// Mean of each `k×k` window of the last two dims, stride `stride`, no padding: the
    /// window summed in row-major order, then divided by k².
    AvgPool { k: usize, stride: usize },
    /// Nearest-neighbour upsampling of the last two dims by an integer factor.
    Upsample { factor: usize },
    /// The inputs joined along `axis` (same dtype, all other dims equal).
    Concat { axis: usize },
    /// Entries `start..start+len` of `axis`.
    Narrow {
        axis: usize,
        start: usize,
        len: usize,
    },
}

/// Functions of [`Op::Binary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinFn {
    Add,
    Sub,
    Mul,
    /// IEEE division (correctly rounded everywhere).
    Div,
}

/// Functions of [`Op::Unary`]; the transcendental ones are `detmath`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnFn {
    /// `1 / (1 + exp(−x))`.
    Sigmoid,
    /// IEEE square root.
    Sqrt,
    /// `1 / x` (IEEE division).
    Reciprocal,
    Log,
    Exp,
    Sin,
    Cos,
    Neg,
}

impl Op {
    /// Short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::MatMul => "matmul",
            Op::QMatMul => "qmatmul",
            Op::Add => "add",
            Op::Mul => "mul",
            Op::Scale { .. } => "scale",
            Op::Embedding => "embedding",
            Op::RmsNorm { .. } => "rmsnorm",
            Op::LayerNorm { .. } => "layernorm",
            Op::Softmax => "softmax",
            Op::Silu => "silu",
            Op::Gelu => "gelu",
            Op::Rope { .. } => "rope",
            Op::Attention { .. } => "attention",
            Op::Conv2d { .. } => "conv2d",
            Op::Sample { .. } => "sample",
            Op::Append => "append",
            Op::LastRow => "last_row",
            Op::Reshape { .. } => "reshape",
            Op::Transpose => "transpose",
            Op::Frames { .. } => "frames",
            Op::RandN { .. } => "randn",
            Op::Binary { .. } => "binary",
            Op::Unary { .. } => "unary",
            Op::Clip { .. } => "clip",
            Op::InstanceNorm { .. } => "instance_norm",
            Op::GroupNorm { .. } => "group_norm",
            Op::BatchMatMul { .. } => "batch_matmul",
            Op::AvgPool { .. } => "avg_pool",
            Op::Upsample { .. } => "upsample",
            Op::Concat { .. } => "concat",
            Op::Narrow { .. } => "narrow",
        }
    }

    /// True for ops that only move or generate data (run by the host in every backend:
    /// they do no floating-point arithmetic that could differ, or are inherently serial).
    pub fn host_only(&self) -> bool {
        matches!(
            self,
            Op::Sample { .. }
                | Op::Append
                | Op::LastRow
                | Op::Reshape { .. }
                | Op::Transpose
                | Op::Frames { .. }
                | Op::RandN { .. }
                | Op::Embedding
                | Op::Upsample { .. }
                | Op::Concat { .. }
                | Op::Narrow { .. }
        )
    }

    /// Checks input dtypes/shapes and returns the output (dtype, shape).
    pub fn infer(&self, node: &str, ins: &[(DType, Vec<usize>)]) -> Result<(DType, Vec<usize>)> {
        let name = self.name();
        let bad = |r: String| ExecError::node(node, name, r);
        let arity = |n: usize| -> Result<()> {
            if ins.len() != n {
                return Err(ExecError::node(
                    node,
                    name,
                    format!("expected {n} inputs, got {}", ins.len()),
                ));
            }
            Ok(())
        };
        let f32_in = |i: usize| -> Result<&Vec<usize>> {
            let (d, s) = ins
                .get(i)
                .ok_or_else(|| ExecError::node(node, name, format!("missing input {i}")))?;
            if *d != DType::F32 {
                return Err(ExecError::node(
                    node,
                    name,
                    format!("input {i} must be f32, is {d:?}"),
                ));
            }
            Ok(s)
        };
        let last = |s: &Vec<usize>| -> Result<usize> {
            s.last()
                .copied()
                .filter(|&d| d > 0)
                .ok_or_else(|| ExecError::node(node, name, "input must have a non-empty last dim"))
        };
        let rank2 = |s: &Vec<usize>, what: &str| -> Result<(usize, usize)> {
            match s.as_slice() {
                [a, b] => Ok((*a, *b)),
                _ => Err(ExecError::node(
                    node,
                    name,
                    format!("{what} must be rank 2, is {s:?}"),
                )),
            }
        };
        match self {
            Op::MatMul => {
                if ins.len() != 2 && ins.len() != 3 {
                    return Err(bad(format!("expected 2 or 3 inputs, got {}", ins.len())));
                }
                let (m, k) = rank2(f32_in(0)?, "a")?;
                let (k2, n) = rank2(f32_in(1)?, "b")?;
                if k != k2 {
                    return Err(bad(format!("inner dims differ: {k} vs {k2}")));
                }
                if ins.len() == 3 && *f32_in(2)? != vec![n] {
                    return Err(bad(format!("bias must be [{n}]")));
                }
                Ok((DType::F32, vec![m, n]))
            }
            Op::QMatMul => {
                arity(3)?;
                let (m, k) = rank2(f32_in(0)?, "x")?;
                let (wd, ws) = &ins[1];
                if *wd != DType::I8 {
                    return Err(bad(format!("w must be i8, is {wd:?}")));
                }
                let (k2, n) = rank2(ws, "w")?;
                if k != k2 {
                    return Err(bad(format!("inner dims differ: {k} vs {k2}")));
                }
                if k > 100_000 {
                    return Err(bad("K too large for exact i32 accumulation".into()));
                }
                if *f32_in(2)? != vec![n] {
                    return Err(bad(format!("w_scale must be [{n}]")));
                }
                Ok((DType::F32, vec![m, n]))
            }
            Op::Add | Op::Mul => {
                arity(2)?;
                let a = f32_in(0)?;
                let b = f32_in(1)?;
                if a != b && !(b.len() == 1 && a.last() == b.first()) {
                    return Err(bad(format!("cannot broadcast {b:?} onto {a:?}")));
                }
                Ok((DType::F32, a.clone()))
            }
            Op::Scale { factor } => {
                arity(1)?;
                if !factor.is_finite() {
                    return Err(bad("factor must be finite".into()));
                }
                Ok((DType::F32, f32_in(0)?.clone()))
            }
            Op::Silu | Op::Gelu | Op::Softmax => {
                arity(1)?;
                let s = f32_in(0)?;
                last(s)?;
                Ok((DType::F32, s.clone()))
            }
            Op::Embedding => {
                arity(2)?;
                let (_v, d) = rank2(f32_in(0)?, "table")?;
                let (id, is) = &ins[1];
                if *id != DType::I32 || is.len() != 1 {
                    return Err(bad(format!("ids must be i32 rank 1, are {id:?} {is:?}")));
                }
                Ok((DType::F32, vec![is[0], d]))
            }
            Op::RmsNorm { eps } | Op::LayerNorm { eps } => {
                let n = if matches!(self, Op::RmsNorm { .. }) {
                    2
                } else {
                    3
                };
                arity(n)?;
                if !(eps.is_finite() && *eps > 0.0) {
                    return Err(bad("eps must be positive".into()));
                }
                let x = f32_in(0)?;
                let d = last(x)?;
                for i in 1..n {
                    if *f32_in(i)? != vec![d] {
                        return Err(bad(format!("input {i} must be [{d}]")));
                    }
                }
                Ok((DType::F32, x.clone()))
            }
            Op::Rope { heads, base } => {
                arity(1)?;
                let x = f32_in(0)?;
                let (_t, d) = rank2(x, "x")?;
                if *heads == 0 || d % heads != 0 || (d / heads) % 2 != 0 {
                    return Err(bad(format!(
                        "dim {d} must split into {heads} heads of even size"
                    )));
                }
                if !(base.is_finite() && *base > 1.0) {
                    return Err(bad("base must be > 1".into()));
                }
                Ok((DType::F32, x.clone()))
            }
            Op::Attention { heads } => {
                arity(3)?;
                let q = f32_in(0)?;
                let (t, d) = rank2(q, "q")?;
                if f32_in(1)? != q || f32_in(2)? != q {
                    return Err(bad("q, k, v must have the same shape".into()));
                }
                if *heads == 0 || d % heads != 0 {
                    return Err(bad(format!("dim {d} must split into {heads} heads")));
                }
                if t.saturating_mul(t).saturating_mul(*heads) > crate::manifest::MAX_ELEMS {
                    return Err(bad("sequence too long for the score buffer".into()));
                }
                Ok((DType::F32, q.clone()))
            }
            Op::Conv2d { stride, pad } => {
                arity(3)?;
                let x = f32_in(0)?;
                let w = f32_in(1)?;
                let (c, h, wd) = match x.as_slice() {
                    [c, h, w] | [1, c, h, w] => (*c, *h, *w),
                    _ => return Err(bad(format!("x must be [C,H,W] or [1,C,H,W], is {x:?}"))),
                };
                let (o, c2, kh, kw) = match w.as_slice() {
                    [o, c, kh, kw] => (*o, *c, *kh, *kw),
                    _ => return Err(bad(format!("w must be [O,C,KH,KW], is {w:?}"))),
                };
                if c != c2 || *stride == 0 || h + 2 * pad < kh || wd + 2 * pad < kw {
                    return Err(bad(format!(
                        "x {x:?} and w {w:?} do not fit (stride {stride}, pad {pad})"
                    )));
                }
                if *f32_in(2)? != vec![o] {
                    return Err(bad(format!("bias must be [{o}]")));
                }
                let mut out = if x.len() == 4 { vec![1, o] } else { vec![o] };
                out.push((h + 2 * pad - kh) / stride + 1);
                out.push((wd + 2 * pad - kw) / stride + 1);
                Ok((DType::F32, out))
            }
            Op::Sample { temperature, .. } => {
                arity(1)?;
                last(f32_in(0)?)?;
                if !(temperature.is_finite() && *temperature >= 0.0) {
                    return Err(bad("temperature must be finite and >= 0".into()));
                }
                Ok((DType::I32, vec![1]))
            }
            Op::Append => {
                arity(2)?;
                match (&ins[0], &ins[1]) {
                    ((DType::I32, a), (DType::I32, b)) if a.len() == 1 && *b == vec![1] => {
                        Ok((DType::I32, vec![a[0] + 1]))
                    }
                    _ => Err(bad("expects i32 [T] and i32 [1]".into())),
                }
            }
            Op::LastRow => {
                arity(1)?;
                let (t, d) = rank2(f32_in(0)?, "x")?;
                if t == 0 {
                    return Err(bad("empty input".into()));
                }
                Ok((DType::F32, vec![1, d]))
            }
            Op::Reshape { shape } => {
                arity(1)?;
                let (d, s) = &ins[0];
                if numel(s) != numel(shape) {
                    return Err(bad(format!("cannot reshape {s:?} to {shape:?}")));
                }
                Ok((*d, shape.clone()))
            }
            Op::Transpose => {
                arity(1)?;
                let (a, b) = rank2(f32_in(0)?, "x")?;
                Ok((DType::F32, vec![b, a]))
            }
            Op::Frames { win, hop } => {
                arity(1)?;
                let x = f32_in(0)?;
                match x.as_slice() {
                    [n] if *win > 0 && *hop > 0 && *n >= *win => {
                        Ok((DType::F32, vec![(n - win) / hop + 1, *win]))
                    }
                    _ => Err(bad(format!(
                        "x {x:?} cannot be framed by win {win} hop {hop}"
                    ))),
                }
            }
            Op::RandN { shape } => {
                arity(0)?;
                Ok((DType::F32, shape.clone()))
            }
            _ => crate::ops_nn::infer(self, node, ins),
        }
    }

    /// Floating-point (or integer) operations of this op for the given input/output shapes.
    pub fn flops(&self, ins: &[Vec<usize>], out: &[usize]) -> u64 {
        let n = numel(out) as u64;
        let dim =
            |i: usize, j: usize| ins.get(i).and_then(|s| s.get(j)).copied().unwrap_or(0) as u64;
        match self {
            Op::MatMul | Op::QMatMul => 2 * n * dim(0, 1),
            Op::Add | Op::Mul | Op::Scale { .. } => n,
            Op::Silu | Op::Gelu => 20 * n,
            Op::Softmax => 15 * n,
            Op::RmsNorm { .. } | Op::LayerNorm { .. } => 6 * n,
            Op::Rope { .. } => 30 * n,
            Op::Attention { heads } => {
                let (t, d) = (dim(0, 0), dim(0, 1));
                let _ = heads;
                // scores + weighted sum, causal (≈ half), plus exp.
                2 * t * t * d + 15 * t * t
            }
            Op::Conv2d { .. } => {
                2 * n
                    * (numel(ins.get(1).map(|v| v.as_slice()).unwrap_or(&[])) as u64
                        / dim(1, 0).max(1))
            }
            Op::Sample { .. } => {
                20 * ins
                    .first()
                    .map(|s| s.last().copied().unwrap_or(0))
                    .unwrap_or(0) as u64
            }
            Op::RandN { .. } => 40 * n,
            Op::Binary { .. } | Op::Clip { .. } => n,
            Op::Unary { .. } => 20 * n,
            Op::InstanceNorm { .. } => 8 * n,
            Op::GroupNorm { silu, .. } => {
                if *silu {
                    28 * n
                } else {
                    8 * n
                }
            }
            Op::BatchMatMul { ta, .. } => 2 * n * dim(0, if *ta { 1 } else { 2 }),
            Op::AvgPool { k, .. } => n * (*k * *k) as u64,
            _ => 0,
        }
    }
}
