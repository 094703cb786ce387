//! The llama-architecture forward pass (RMSNorm, GQA attention with adjacent-pair RoPE,
//! SwiGLU FFN, tied or separate output head), deterministic to the bit.
//!
//! Arithmetic, fixed for every backend (the CUDA port must follow it element by element):
//! - linear layers: [`crate::linear`] (one fma chain per output, k order, from +0);
//! - RMSNorm: `ss = fma(x, x, ss)` in order, `r = rsqrt(ss / d + eps)` (havn-exec's
//!   `detmath::rsqrt`), `y = (x · r) · w`;
//! - RoPE on pairs `(2i, 2i+1)` of each head: `θ = pos · inv_freq[i]` with
//!   `inv_freq = base^(−2i/hd)` from `detmath`, `c, s = detmath::cos/sin(θ)`,
//!   `y0 = fma(x0, c, −(x1 · s))`, `y1 = fma(x0, s, x1 · c)`;
//! - attention per head: score `= (fma chain of q·k over d) · 1/√hd`, softmax with
//!   `detmath::exp` and a sequential sum, `p = e / sum`, output `= fma chain of p · v` over
//!   positions in order;
//! - SwiGLU: `detmath::silu(g) · u`; residual adds are plain f32 adds.

use crate::error::{LmError, Result};
use crate::gguf::Gguf;
use crate::kernels::{self, AttnDims};
use crate::linear::Packed;
use crate::qlinear::{Linear, QKind, QPacked};
use crate::quant::dequantize;

/// Hyper-parameters read from the GGUF metadata.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Config {
    pub layers: usize,
    pub d: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub context: usize,
    pub rope_base: f32,
    pub eps: f32,
}

impl Config {
    /// Reads and checks the `llama.*` keys.
    pub fn from_gguf(g: &Gguf) -> Result<Config> {
        let arch = g.get_str("general.architecture")?;
        if arch != "llama" {
            return Err(LmError::Metadata {
                key: "general.architecture".into(),
                reason: format!("{arch:?} is not supported (only \"llama\")"),
            });
        }
        let u = |k: &str, lo: u64, hi: u64| -> Result<usize> {
            let v = g.get_u64(k)?;
            if !(lo..=hi).contains(&v) {
                return Err(LmError::Metadata {
                    key: k.into(),
                    reason: format!("{v} is outside {lo}..={hi}"),
                });
            }
            Ok(v as usize)
        };
        let f = |k: &str| -> Result<f32> {
            let v = g.get(k)?;
            v.as_f32()
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or_else(|| LmError::Metadata {
                    key: k.into(),
                    reason: format!("expected a positive finite float, found {v:?}"),
                })
        };
        let layers = u("llama.block_count", 1, 256)?;
        let d = u("llama.embedding_length", 1, 16384)?;
        let heads = u("llama.attention.head_count", 1, 256)?;
        let kv_heads = u("llama.attention.head_count_kv", 1, 256)?;
        let ffn = u("llama.feed_forward_length", 1, 65536)?;
        let context = u("llama.context_length", 1, 1 << 20)?;
        let rope_base = f("llama.rope.freq_base")?;
        let eps = f("llama.attention.layer_norm_rms_epsilon")?;
        if d % heads != 0 || heads % kv_heads != 0 || (d / heads) % 2 != 0 {
            return Err(LmError::Metadata {
                key: "llama.attention.head_count".into(),
                reason: format!(
                    "{heads} heads / {kv_heads} KV heads do not divide d {d} into even head dims"
                ),
            });
        }
        let vocab = match g.metadata.get("llama.vocab_size") {
            Some(_) => u("llama.vocab_size", 1, 1 << 20)?,
            None => g
                .tensor("token_embd.weight")?
                .dims
                .get(1)
                .copied()
                .unwrap_or(0) as usize,
        };
        Ok(Config {
            layers,
            d,
            heads,
            kv_heads,
            head_dim: d / heads,
            ffn,
            vocab,
            context,
            rope_base,
            eps,
        })
    }
    /// Width of the K and V projections.
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}

/// One transformer block's weights.
pub struct Block {
    attn_norm: Vec<f32>,
    /// q, k, v stacked: `d + 2·kv_dim` outputs.
    qkv: Linear,
    o: Linear,
    ffn_norm: Vec<f32>,
    /// gate, up stacked: `2·ffn` outputs.
    gate_up: Linear,
    down: Linear,
}

/// A loaded model: weights dequantized once and packed, kept for every job.
pub struct Model {
    pub cfg: Config,
    /// `token_embd`: embedding rows, and the output head when it is tied.
    embd: Linear,
    blocks: Vec<Block>,
    out_norm: Vec<f32>,
    /// A separate output head (`output.weight`); None when tied to `token_embd`.
    head: Option<Linear>,
    inv_freq: Vec<f32>,
}

/// Per-layer K and V rows of every position so far.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    pub k: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
}

impl KvCache {
    /// An empty cache for `layers` layers.
    pub fn new(layers: usize) -> Self {
        KvCache {
            k: vec![Vec::new(); layers],
            v: vec![Vec::new(); layers],
        }
    }
}

/// What one block did in one forward call (for the commitment and for challenges).
#[derive(Debug, Clone)]
pub struct BlockTrace {
    /// Hidden state rows after the block (`[rows, d]`).
    pub hidden: Vec<f32>,
    /// The K and V rows the block appended to its cache (`[rows, kv_dim]` each).
    pub k_new: Vec<f32>,
    pub v_new: Vec<f32>,
}

fn weights(g: &Gguf, file: &[u8], name: &str, dims: &[usize]) -> Result<Vec<f32>> {
    let t = g.tensor(name)?;
    let want: Vec<u64> = dims.iter().map(|&x| x as u64).collect();
    if t.dims != want {
        return Err(LmError::Tensor {
            name: name.into(),
            reason: format!("dims {:?}, expected {want:?}", t.dims),
        });
    }
    let w = dequantize(file, t)?;
    if let Some(i) = w.iter().position(|x| !x.is_finite()) {
        return Err(LmError::Tensor {
            name: name.into(),
            reason: format!("element {i} is not finite"),
        });
    }
    Ok(w)
}

/// A linear layer of stacked `[rows, k]` tensors (GGUF dims `[k, rows]`): kept
/// quantized when they all share a kept kind, else dequantized into f32 panels.
fn linear(
    g: &Gguf,
    file: &[u8],
    parts: &[(&str, usize)],
    k: usize,
    force_f32: bool,
) -> Result<Linear> {
    let mut infos = Vec::new();
    for &(name, rows) in parts {
        let t = g.tensor(name)?;
        if t.dims != [k as u64, rows as u64] {
            return Err(LmError::Tensor {
                name: name.into(),
                reason: format!("dims {:?}, expected {:?}", t.dims, [k, rows]),
            });
        }
        infos.push((t, rows));
    }
    let kind = QKind::of(infos[0].0.ty);
    if let (Some(kind), false) = (kind, force_f32) {
        if infos.iter().all(|(t, _)| QKind::of(t.ty) == Some(kind)) {
            let raws: Vec<(&str, &[u8], usize)> = infos
                .iter()
                .map(|(t, rows)| (t.name.as_str(), &file[t.start..t.start + t.len], *rows))
                .collect();
            return QPacked::from_raw(kind, &raws, k).map(Linear::Quantized);
        }
    }
    let mut ws = Vec::new();
    for &(name, rows) in parts {
        ws.push((weights(g, file, name, &[k, rows])?, rows));
    }
    let refs: Vec<(&[f32], usize)> = ws.iter().map(|(w, r)| (w.as_slice(), *r)).collect();
    Ok(Linear::F32(Packed::from_stacked(&refs, k)))
}

pub use crate::kernels::rmsnorm;

impl Model {
    /// Loads a llama-architecture model from a parsed GGUF file and its bytes.
    pub fn load(g: &Gguf, file: &[u8]) -> Result<Model> {
        Self::load_with(g, file, false)
    }

    /// Like [`Model::load`]; `force_f32` dequantizes every linear layer into f32 panels
    /// instead of keeping Q4_1 / Q8_0 weights quantized (the same bits, more memory:
    /// the reference the quantized kernels are tested against).
    pub fn load_with(g: &Gguf, file: &[u8], force_f32: bool) -> Result<Model> {
        let cfg = Config::from_gguf(g)?;
        let (d, kvd, f) = (cfg.d, cfg.kv_dim(), cfg.ffn);
        let embd = linear(g, file, &[("token_embd.weight", cfg.vocab)], d, force_f32)?;
        let mut blocks = Vec::with_capacity(cfg.layers);
        for l in 0..cfg.layers {
            let n = |s: &str| format!("blk.{l}.{s}.weight");
            let (q, k, v) = (n("attn_q"), n("attn_k"), n("attn_v"));
            let (gate, up) = (n("ffn_gate"), n("ffn_up"));
            blocks.push(Block {
                attn_norm: weights(g, file, &n("attn_norm"), &[d])?,
                qkv: linear(g, file, &[(&q, d), (&k, kvd), (&v, kvd)], d, force_f32)?,
                o: linear(g, file, &[(&n("attn_output"), d)], d, force_f32)?,
                ffn_norm: weights(g, file, &n("ffn_norm"), &[d])?,
                gate_up: linear(g, file, &[(&gate, f), (&up, f)], d, force_f32)?,
                down: linear(g, file, &[(&n("ffn_down"), d)], f, force_f32)?,
            });
        }
        let out_norm = weights(g, file, "output_norm.weight", &[d])?;
        let head = match g.tensor("output.weight") {
            Ok(_) => Some(linear(
                g,
                file,
                &[("output.weight", cfg.vocab)],
                d,
                force_f32,
            )?),
            Err(_) => None,
        };
        let inv_freq = havn_exec::cpu::rope_inv_freq(cfg.head_dim, cfg.rope_base);
        Ok(Model {
            cfg,
            embd,
            blocks,
            out_norm,
            head,
            inv_freq,
        })
    }

    /// Bytes of weights held in memory.
    pub fn weight_bytes(&self) -> usize {
        let b: usize = self
            .blocks
            .iter()
            .map(|b| b.qkv.bytes() + b.o.bytes() + b.gate_up.bytes() + b.down.bytes())
            .sum();
        b + self.head.as_ref().map_or(0, Linear::bytes) + self.embd.bytes()
    }

    /// Embedding rows of `ids` (`[ids.len(), d]`).
    pub fn embed(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let d = self.cfg.d;
        let mut x = Vec::with_capacity(ids.len() * d);
        for &id in ids {
            let id = id as usize;
            if id >= self.cfg.vocab {
                return Err(LmError::request(
                    "token_ids",
                    format!("token {id} is outside the vocabulary"),
                ));
            }
            x.extend_from_slice(&self.embd.row(id));
        }
        Ok(x)
    }

    /// Runs block `l` on hidden rows `x` (`[rows, d]`, positions `pos0..`), reading and
    /// extending that layer's K/V rows. Used by generation and, alone, by a validator.
    pub fn block(
        &self,
        l: usize,
        x: &[f32],
        pos0: usize,
        cache_k: &mut Vec<f32>,
        cache_v: &mut Vec<f32>,
        pool: &rayon::ThreadPool,
    ) -> Result<BlockTrace> {
        let c = &self.cfg;
        let b = self
            .blocks
            .get(l)
            .ok_or_else(|| LmError::request("layer", format!("block {l} does not exist")))?;
        let (d, kvd, hd) = (c.d, c.kv_dim(), c.head_dim);
        let rows = x.len() / d;
        if x.len() != rows * d || cache_k.len() != pos0 * kvd || cache_v.len() != pos0 * kvd {
            return Err(LmError::request(
                "block inputs",
                format!(
                    "hidden {} / cache {} floats do not fit {rows} rows at position {pos0}",
                    x.len(),
                    cache_k.len()
                ),
            ));
        }
        let h = rmsnorm(x, &b.attn_norm, c.eps);
        let qkv = b.qkv.apply(&h, rows, pool);
        let w = d + 2 * kvd;
        let mut q = Vec::with_capacity(rows * d);
        let mut k_new = Vec::with_capacity(rows * kvd);
        let mut v_new = Vec::with_capacity(rows * kvd);
        for r in qkv.chunks_exact(w) {
            q.extend_from_slice(&r[..d]);
            k_new.extend_from_slice(&r[d..d + kvd]);
            v_new.extend_from_slice(&r[d + kvd..]);
        }
        kernels::rope(&mut q, d, hd, &self.inv_freq, pos0);
        kernels::rope(&mut k_new, kvd, hd, &self.inv_freq, pos0);
        cache_k.extend_from_slice(&k_new);
        cache_v.extend_from_slice(&v_new);
        let dims = AttnDims {
            d,
            kv_dim: kvd,
            head_dim: hd,
            heads: c.heads,
            kv_heads: c.kv_heads,
        };
        let att = kernels::attention(&q, cache_k, cache_v, pos0, dims);
        let o = b.o.apply(&att, rows, pool);
        let x1: Vec<f32> = x.iter().zip(&o).map(|(a, b)| a + b).collect();
        let h2 = rmsnorm(&x1, &b.ffn_norm, c.eps);
        let gu = b.gate_up.apply(&h2, rows, pool);
        let act = kernels::swiglu(&gu, c.ffn);
        let dn = b.down.apply(&act, rows, pool);
        let hidden = x1.iter().zip(&dn).map(|(a, b)| a + b).collect();
        Ok(BlockTrace {
            hidden,
            k_new,
            v_new,
        })
    }

    /// Logits of the last row of the final hidden state.
    pub fn logits(&self, hidden: &[f32], pool: &rayon::ThreadPool) -> Vec<f32> {
        let d = self.cfg.d;
        let last = &hidden[hidden.len() - d..];
        let h = rmsnorm(last, &self.out_norm, self.cfg.eps);
        self.head.as_ref().unwrap_or(&self.embd).apply(&h, 1, pool)
    }

    /// One forward call over `ids` at positions `cache.len()..`: every block's trace and
    /// the last row's logits.
    pub fn forward(
        &self,
        ids: &[u32],
        pos0: usize,
        cache: &mut KvCache,
        pool: &rayon::ThreadPool,
    ) -> Result<(Vec<BlockTrace>, Vec<f32>)> {
        if ids.is_empty() {
            return Err(LmError::request("token_ids", "no tokens to run"));
        }
        if pos0 + ids.len() > self.cfg.context {
            return Err(LmError::request(
                "messages",
                format!(
                    "{} tokens exceed the model's context of {}",
                    pos0 + ids.len(),
                    self.cfg.context
                ),
            ));
        }
        let mut x = self.embed(ids)?;
        let mut traces = Vec::with_capacity(self.cfg.layers);
        for l in 0..self.cfg.layers {
            let t = self.block(l, &x, pos0, &mut cache.k[l], &mut cache.v[l], pool)?;
            x.clone_from(&t.hidden);
            traces.push(t);
        }
        let logits = self.logits(&x, pool);
        Ok((traces, logits))
    }
}
