//! The `chat` workflow: a validated request, prefill then decode with a KV cache, greedy
//! or seeded sampling, and a Merkle commitment with one leaf per block per forward call.
//!
//! Commitment (sha3-256; leaves in order: for each forward call s, blocks 0..L then the
//! token leaf):
//! - block leaf: `H("havn-lm/block/v1\0" ‖ s ‖ l ‖ pos0 ‖ rows ‖ T(hidden) ‖ T(k_new) ‖
//!   T(v_new))`, integers u32le, `T(x) = H(x as f32le)` — the block's output and the
//!   cache rows it appended, which is everything a later block or step reads from it
//!   (hashed separately so a challenge opens only the part it needs);
//! - token leaf: `H("havn-lm/token/v1\0" ‖ s ‖ token u32le ‖ T(logits))`;
//! - root: havn-exec's Merkle tree (`merkle_root`) over the leaves;
//! - `runtime_hash = H("havn-lm/runtime/v2\0" ‖ model CID digest ‖ H(request JSON) ‖
//!   seed u64le ‖ root ‖ calls u32le ‖ H("havn-lm/tokens/v1\0" ‖ token ids u32le))`, the
//!   request in its canonical JSON (struct order, compact). The number of calls fixes the
//!   number of leaves, so a Merkle path proves a leaf's position; the token ids bind the
//!   outputs.

use crate::error::{LmError, Result};
use crate::model::{BlockTrace, KvCache, Model};
use crate::tokenizer::ChatTokenizer;
use havn_exec::rng::Stream;
use havn_proto::Cid;
use sha3::{Digest, Sha3_256};
use std::time::Instant;

pub use havn_proto::chat::{
    ChatRequest, RequestError, MAX_CONTENT, MAX_MESSAGES, MAX_STOPS, MAX_STOP_LEN, MAX_TOKENS,
};

impl From<RequestError> for LmError {
    fn from(e: RequestError) -> Self {
        LmError::Request {
            field: e.field,
            reason: e.reason,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// The model produced its end-of-sequence token.
    Eos,
    /// A stop string appeared in the text.
    Stop,
    /// `max_tokens` were generated.
    Length,
    /// The model's context is full.
    Context,
}

/// The result of one chat job.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChatOutput {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub prompt_ids: Vec<u32>,
    pub finish: Finish,
    pub runtime_hash: String,
    pub merkle_root: String,
    pub leaves: usize,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    /// Decode tokens per second (tokens after the first / decode time).
    pub tokens_per_s: f64,
    /// Logits of the first generated position (not serialised).
    #[serde(skip)]
    pub first_logits: Vec<f32>,
    /// `T(logits)` of every step (not serialised).
    #[serde(skip)]
    pub logits_hashes: Vec<[u8; 32]>,
    /// Leaf hashes in commitment order (not serialised).
    #[serde(skip)]
    pub leaf_hashes: Vec<[u8; 32]>,
    /// Every forward call's block traces, when asked for (challenges).
    #[serde(skip)]
    pub traces: Vec<Vec<BlockTrace>>,
}

/// Options of one run.
pub struct RunOpts<'a> {
    pub seed: u64,
    pub pool: &'a rayon::ThreadPool,
    /// Keep every block's trace in the output (for proofs).
    pub keep_traces: bool,
    /// Cancelled when this returns Some(reason) (checked before each forward call).
    pub cancel: Option<&'a dyn Fn() -> Option<String>>,
}

/// `T(x)`: sha3-256 of a tensor's f32le bytes.
pub fn tensor_hash(v: &[f32]) -> [u8; 32] {
    let mut h = Sha3_256::new();
    for x in v {
        h.update(x.to_le_bytes());
    }
    h.finalize().into()
}

/// Where a block leaf sits and what it commits to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLeaf {
    pub step: u32,
    pub layer: u32,
    pub pos0: u32,
    pub rows: u32,
    pub hidden: [u8; 32],
    pub k_new: [u8; 32],
    pub v_new: [u8; 32],
}

impl BlockLeaf {
    /// The leaf of a block's trace.
    pub fn of(step: u32, layer: u32, pos0: u32, t: &BlockTrace, d: usize) -> BlockLeaf {
        BlockLeaf {
            step,
            layer,
            pos0,
            rows: (t.hidden.len() / d.max(1)) as u32,
            hidden: tensor_hash(&t.hidden),
            k_new: tensor_hash(&t.k_new),
            v_new: tensor_hash(&t.v_new),
        }
    }
    /// The leaf hash.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha3_256::new();
        h.update(b"havn-lm/block/v1\0");
        h.update(self.step.to_le_bytes());
        h.update(self.layer.to_le_bytes());
        h.update(self.pos0.to_le_bytes());
        h.update(self.rows.to_le_bytes());
        h.update(self.hidden);
        h.update(self.k_new);
        h.update(self.v_new);
        h.finalize().into()
    }
}

/// The token leaf of forward call `step`, given `T(logits)`.
pub fn token_leaf(step: u32, token: u32, logits_hash: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha3_256::new();
    h.update(b"havn-lm/token/v1\0");
    h.update(step.to_le_bytes());
    h.update(token.to_le_bytes());
    h.update(logits_hash);
    h.finalize().into()
}

/// Position of forward call `step`'s first row: 0 for the prefill, then one per token.
pub fn step_pos0(prompt_len: usize, step: u32) -> usize {
    if step == 0 {
        0
    } else {
        prompt_len + step as usize - 1
    }
}

/// Index of leaf (step, layer) — `layer == layers` is the step's token leaf.
pub fn leaf_index(layers: usize, step: u32, layer: usize) -> usize {
    step as usize * (layers + 1) + layer
}

/// `H("havn-lm/tokens/v1\0" ‖ ids u32le)`: the generated token ids.
pub fn tokens_hash(ids: &[u32]) -> [u8; 32] {
    let mut h = Sha3_256::new();
    h.update(b"havn-lm/tokens/v1\0");
    for id in ids {
        h.update(id.to_le_bytes());
    }
    h.finalize().into()
}

/// The runtime hash binding model, request, seed, Merkle root, the number of forward
/// calls (which fixes the number of leaves, so every opening's position) and the
/// generated token ids (so the outputs are bound too).
pub fn runtime_hash(
    model: &Cid,
    request: &[u8; 32],
    seed: u64,
    root: &[u8; 32],
    token_ids: &[u32],
) -> [u8; 32] {
    let mut h = Sha3_256::new();
    h.update(b"havn-lm/runtime/v2\0");
    h.update(model.digest());
    h.update(request);
    h.update(seed.to_le_bytes());
    h.update(root);
    h.update((token_ids.len() as u32).to_le_bytes());
    h.update(tokens_hash(token_ids));
    h.finalize().into()
}

/// The text a run's token ids give: decoded (special tokens skipped) and cut at the
/// earliest stop string.
pub fn text_of(tok: &ChatTokenizer, req: &ChatRequest, token_ids: &[u32]) -> Result<String> {
    let mut text = tok.decode(token_ids)?;
    if let Some(at) = req.stop.iter().filter_map(|s| text.find(s.as_str())).min() {
        text.truncate(at);
    }
    Ok(text)
}

/// Picks the next token: argmax (first maximum) at temperature 0; otherwise top-k (ties
/// by lower id), softmax at the temperature with `detmath::exp`, top-p (the smallest
/// prefix whose mass reaches p), and an inverse-CDF draw with Philox block 0 of the
/// stream `(seed, step)`.
pub fn sample(logits: &[f32], req: &ChatRequest, seed: u64, step: u32) -> u32 {
    if req.temperature == 0.0 {
        let mut best = 0;
        for (i, &v) in logits.iter().enumerate() {
            if v > logits[best] {
                best = i;
            }
        }
        return best as u32;
    }
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if req.top_k > 0 {
        idx.truncate(req.top_k as usize);
    }
    let t = req.temperature;
    let m = logits[idx[0]] / t;
    let p: Vec<f32> = idx
        .iter()
        .map(|&i| havn_exec::detmath::exp(logits[i] / t - m))
        .collect();
    let mut total = 0.0f32;
    for &x in &p {
        total += x;
    }
    let mut keep = p.len();
    if req.top_p < 1.0 {
        let mut cum = 0.0f32;
        for (j, &x) in p.iter().enumerate() {
            cum += x;
            if cum >= req.top_p * total {
                keep = j + 1;
                break;
            }
        }
        total = 0.0;
        for &x in &p[..keep] {
            total += x;
        }
    }
    let u = Stream { seed, node: step }.uniform(0) * total;
    let mut cum = 0.0f32;
    for (j, &x) in p[..keep].iter().enumerate() {
        cum += x;
        if u < cum {
            return idx[j] as u32;
        }
    }
    idx[keep - 1] as u32
}

/// Runs a chat request on a loaded model.
pub fn generate(
    model: &Model,
    model_cid: &Cid,
    tok: &ChatTokenizer,
    req: &ChatRequest,
    opts: &RunOpts<'_>,
) -> Result<ChatOutput> {
    req.validate()?;
    if req.top_k as usize > model.cfg.vocab {
        return Err(LmError::request(
            "top_k",
            format!(
                "{} exceeds the vocabulary of {}",
                req.top_k, model.cfg.vocab
            ),
        ));
    }
    let prompt = tok.render(&req.messages)?;
    let prompt_ids = tok.encode(&prompt)?;
    let ctx = model.cfg.context;
    if prompt_ids.len() >= ctx {
        return Err(LmError::request(
            "messages",
            format!(
                "the prompt is {} tokens; the model's context is {ctx}",
                prompt_ids.len()
            ),
        ));
    }
    let d = model.cfg.d;
    let mut cache = KvCache::new(model.cfg.layers);
    let mut leaves = Vec::new();
    let mut traces_kept = Vec::new();
    let mut token_ids: Vec<u32> = Vec::new();
    let mut first_logits = Vec::new();
    let mut logits_hashes = Vec::new();
    let mut stop_at = None;
    let mut finish = Finish::Length;
    let mut input = prompt_ids.clone();
    let mut pos0 = 0usize;
    let t0 = Instant::now();
    let mut t_first = None;
    for step in 0..req.max_tokens {
        if let Some(reason) = opts.cancel.and_then(|c| c()) {
            return Err(LmError::Cancelled(reason));
        }
        let (traces, logits) = model.forward(&input, pos0, &mut cache, opts.pool)?;
        for (l, t) in traces.iter().enumerate() {
            leaves.push(BlockLeaf::of(step, l as u32, pos0 as u32, t, d).hash());
        }
        let next = sample(&logits, req, opts.seed, step);
        let lh = tensor_hash(&logits);
        leaves.push(token_leaf(step, next, &lh));
        logits_hashes.push(lh);
        if step == 0 {
            first_logits.clone_from(&logits);
            t_first = Some(Instant::now());
        }
        if opts.keep_traces {
            traces_kept.push(traces);
        }
        pos0 += input.len();
        token_ids.push(next);
        if next == tok.eos {
            finish = Finish::Eos;
            break;
        }
        // Stop strings need the text so far (decoded only when there are any).
        if !req.stop.is_empty() {
            let now = tok.decode(&token_ids)?;
            if let Some(at) = req.stop.iter().filter_map(|s| now.find(s.as_str())).min() {
                stop_at = Some(at);
                finish = Finish::Stop;
                break;
            }
        }
        // The next call feeds one token at position pos0: it must fit the context.
        if pos0 + 1 > ctx {
            finish = Finish::Context;
            break;
        }
        input = vec![next];
    }
    let mut text = tok.decode(&token_ids)?;
    if let Some(at) = stop_at {
        text.truncate(at);
    }
    let t_end = Instant::now();
    let t_first = t_first.unwrap_or(t_end);
    let prefill_ms = (t_first - t0).as_secs_f64() * 1e3;
    let decode_ms = (t_end - t_first).as_secs_f64() * 1e3;
    let decoded = token_ids.len().saturating_sub(1);
    let root = havn_exec::merkle::merkle_root(&leaves);
    let rh = runtime_hash(model_cid, &req.digest(), opts.seed, &root, &token_ids);
    Ok(ChatOutput {
        text,
        token_ids,
        prompt_ids,
        finish,
        runtime_hash: hex::encode(rh),
        merkle_root: hex::encode(root),
        leaves: leaves.len(),
        prefill_ms,
        decode_ms,
        tokens_per_s: if decode_ms > 0.0 {
            decoded as f64 / (decode_ms / 1e3)
        } else {
            0.0
        },
        first_logits,
        logits_hashes,
        leaf_hashes: leaves,
        traces: traces_kept,
    })
}

/// The workflow checksum a `chat` job names: `H("havn-lm/workflow/v1\0chat\0" ‖ model
/// CID digest)` — the model's weights are the workflow's only parameters.
pub fn workflow_checksum(model: &Cid) -> [u8; 32] {
    let mut h = Sha3_256::new();
    h.update(b"havn-lm/workflow/v1\0chat\0");
    h.update(model.digest());
    h.finalize().into()
}

/// Rough FLOP count of a finished job (2 per weight per token, plus attention), for the
/// receipt's gas and energy figures.
pub fn flops(cfg: &crate::model::Config, prompt: usize, generated: usize) -> u64 {
    let (d, kvd, f) = (cfg.d as u64, cfg.kv_dim() as u64, cfg.ffn as u64);
    let per_token =
        cfg.layers as u64 * (d * (d + 2 * kvd) + d * d + 3 * d * f) + d * cfg.vocab as u64;
    let tokens = (prompt + generated) as u64;
    let ctx = tokens * tokens / 2 * cfg.layers as u64 * 2 * d;
    2 * per_token * tokens + 2 * ctx
}
