//! Challenging one transformer block at one forward call of a chat job.
//!
//! The node opens, against the receipt's Merkle root, exactly what block `l` read at
//! call `s`, and nothing more:
//! - its input rows: the output of block `l − 1` at call `s` (or, for block 0, the
//!   embedding of the tokens fed at `s`: the prompt, checked by re-tokenizing the
//!   request, or the token committed by call `s − 1`'s token leaf);
//! - its K/V cache: the rows block `l` appended at every earlier call;
//! - the request, model CID and seed, which with the root give the runtime hash.
//!
//! The validator checks every opening's leaf hash and Merkle path — whose shape must be
//! that of the leaf's position, which the runtime hash fixes through the call count —
//! re-runs the block alone ([`crate::model::Model::block`]) and checks that its output
//! leaf is committed. That costs one block of one call — about 1/(layers · calls) of
//! the job. `s{call}.head` challenges the output head and the sampler instead: from
//! the last block's opened output it recomputes the logits and the sampled token,
//! which must be the committed token leaf and the receipt's token id.

use crate::chat::{
    leaf_index, runtime_hash, sample, step_pos0, tensor_hash, token_leaf, BlockLeaf, ChatOutput,
    ChatRequest,
};
use crate::error::{LmError, Result};
use crate::LoadedModel;
use havn_exec::merkle::{merkle_levels, path_from_levels, path_root, path_shape};
use havn_proto::Cid;
use serde::{Deserialize, Serialize};

/// A Merkle path: (sibling hex, sibling is on the left), bottom up.
pub type Path = Vec<(String, bool)>;

/// An opened block leaf with the tensors a challenge needs (others by hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockOpening {
    pub step: u32,
    pub pos0: u32,
    pub rows: u32,
    /// The output rows, when the challenged block reads them (else empty).
    pub hidden: Vec<f32>,
    /// `T(hidden)` when `hidden` is not opened.
    pub hidden_hash: Option<String>,
    /// The appended K/V rows, when the challenged block reads them (else empty).
    pub k_new: Vec<f32>,
    pub v_new: Vec<f32>,
    /// `T(k_new)`, `T(v_new)` when not opened.
    pub kv_hashes: Option<(String, String)>,
    pub path: Path,
}

/// An opened token leaf.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenOpening {
    pub step: u32,
    pub token: u32,
    pub logits_hash: String,
    pub path: Path,
}

/// Everything a validator needs to re-execute block `layer` of call `step`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockChallenge {
    pub model_cid: String,
    pub request: ChatRequest,
    pub seed: u64,
    pub merkle_root: String,
    pub runtime_hash: String,
    /// Every generated token id (bound by the runtime hash; their count is the number
    /// of forward calls).
    pub token_ids: Vec<u32>,
    pub step: u32,
    /// The block, or [`HEAD`] for the output head and sampler.
    pub layer: u32,
    /// Tokens fed at this call.
    pub input_ids: Vec<u32>,
    /// Call `step − 1`'s token leaf (the token fed now), for `step > 0`.
    pub prev_token: Option<TokenOpening>,
    /// Block `layer − 1` at this call (its output is the input), for `layer > 0`; for
    /// [`HEAD`], the last block at this call.
    pub input: Option<BlockOpening>,
    /// For [`HEAD`]: this call's token leaf.
    pub token: Option<TokenOpening>,
    /// Block `layer` at every earlier call (its cache rows), in call order.
    pub cache: Vec<BlockOpening>,
    /// The challenged leaf's path (its contents are what the validator recomputes).
    pub path: Path,
}

/// The `layer` of a head-and-sampler challenge.
pub const HEAD: u32 = u32::MAX;

/// The node id a chat challenge names: `s{step}.b{layer}`, or `s{step}.head`.
pub fn node_id(step: u32, layer: u32) -> String {
    if layer == HEAD {
        format!("s{step}.head")
    } else {
        format!("s{step}.b{layer}")
    }
}

/// Parses `s{step}.b{layer}` or `s{step}.head` (layer [`HEAD`]).
pub fn parse_node_id(id: &str) -> Option<(u32, u32)> {
    let (s, rest) = id.strip_prefix('s')?.split_once('.')?;
    let layer = if rest == "head" {
        HEAD
    } else {
        rest.strip_prefix('b')?
            .parse()
            .ok()
            .filter(|&l| l != HEAD)?
    };
    Some((s.parse().ok()?, layer))
}

fn hex_path(p: Vec<([u8; 32], bool)>) -> Path {
    p.into_iter().map(|(h, l)| (hex::encode(h), l)).collect()
}

fn unhex(s: &str, what: &str) -> Result<[u8; 32]> {
    let mut d = [0u8; 32];
    hex::decode_to_slice(s, &mut d).map_err(|_| bad(format!("{what} is not 64 hex digits")))?;
    Ok(d)
}

fn bad(reason: String) -> LmError {
    LmError::Request {
        field: "challenge".into(),
        reason,
    }
}

fn parse_path(p: &Path) -> Result<Vec<([u8; 32], bool)>> {
    if p.len() > 64 {
        return Err(bad("Merkle path longer than 64".into()));
    }
    p.iter().map(|(h, l)| Ok((unhex(h, "path")?, *l))).collect()
}

/// Builds the challenge for (step, layer) from a run made with `keep_traces`.
pub fn prove(
    m: &LoadedModel,
    req: &ChatRequest,
    seed: u64,
    out: &ChatOutput,
    step: u32,
    layer: u32,
) -> Result<BlockChallenge> {
    let layers = m.model.cfg.layers;
    let d = m.model.cfg.d;
    let steps = out.traces.len() as u32;
    if out.traces.is_empty() {
        return Err(bad("the run kept no traces".into()));
    }
    let head = layer == HEAD;
    if step >= steps || (!head && layer as usize >= layers) {
        return Err(LmError::request(
            "node",
            format!(
                "no block {} (calls 0..{steps}, blocks 0..{layers} or head)",
                node_id(step, layer)
            ),
        ));
    }
    let levels = merkle_levels(&out.leaf_hashes);
    let plen = out.prompt_ids.len();
    let pos = |s: u32| step_pos0(plen, s) as u32;
    let path = |s: u32, l: usize| hex_path(path_from_levels(&levels, leaf_index(layers, s, l)));
    let opening = |s: u32, l: usize, with_hidden: bool| -> BlockOpening {
        let t = &out.traces[s as usize][l];
        let leaf = BlockLeaf::of(s, l as u32, pos(s), t, d);
        BlockOpening {
            step: s,
            pos0: leaf.pos0,
            rows: leaf.rows,
            hidden: if with_hidden {
                t.hidden.clone()
            } else {
                Vec::new()
            },
            hidden_hash: (!with_hidden).then(|| hex::encode(leaf.hidden)),
            k_new: if with_hidden {
                Vec::new()
            } else {
                t.k_new.clone()
            },
            v_new: if with_hidden {
                Vec::new()
            } else {
                t.v_new.clone()
            },
            kv_hashes: with_hidden.then(|| (hex::encode(leaf.k_new), hex::encode(leaf.v_new))),
            path: path(s, l),
        }
    };
    let input_ids = if step == 0 {
        out.prompt_ids.clone()
    } else {
        vec![out.token_ids[step as usize - 1]]
    };
    let prev_token = (step > 0).then(|| TokenOpening {
        step: step - 1,
        token: out.token_ids[step as usize - 1],
        logits_hash: hex::encode(out.logits_hashes[step as usize - 1]),
        path: path(step - 1, layers),
    });
    Ok(BlockChallenge {
        model_cid: m.cid.to_string(),
        request: req.clone(),
        seed,
        merkle_root: out.merkle_root.clone(),
        runtime_hash: out.runtime_hash.clone(),
        token_ids: out.token_ids.clone(),
        step,
        layer,
        input_ids,
        prev_token,
        input: if head {
            Some(opening(step, layers - 1, true))
        } else {
            (layer > 0).then(|| opening(step, layer as usize - 1, true))
        },
        token: head.then(|| TokenOpening {
            step,
            token: out.token_ids[step as usize],
            logits_hash: hex::encode(out.logits_hashes[step as usize]),
            path: path(step, layers),
        }),
        cache: if head {
            Vec::new()
        } else {
            (0..step)
                .map(|s| opening(s, layer as usize, false))
                .collect()
        },
        path: path(step, if head { layers } else { layer as usize }),
    })
}

/// The committed tree a challenge is checked against.
struct Tree {
    root: [u8; 32],
    /// Leaves: calls × (layers + 1).
    n: usize,
    layers: usize,
}

impl Tree {
    /// Checks that `leaf` sits at the position of (call, layer) — `layer == layers` is
    /// the token leaf — under the root: the path must have that position's shape.
    fn check(
        &self,
        leaf: &[u8; 32],
        call: u32,
        layer: usize,
        path: &Path,
        what: &str,
    ) -> Result<()> {
        let p = parse_path(path)?;
        let index = leaf_index(self.layers, call, layer);
        let shape: Vec<bool> = p.iter().map(|x| x.1).collect();
        if index >= self.n || shape != path_shape(index, self.n) || path_root(leaf, &p) != self.root
        {
            return Err(bad(format!(
                "{what} is not committed at its position under the root"
            )));
        }
        Ok(())
    }
}

/// Checks an opening's leaf against the tree. `reads_hidden`: the challenged block
/// reads its hidden rows (so they must be opened, not given by hash); otherwise it
/// reads its K/V rows (likewise).
fn check_opening(
    o: &BlockOpening,
    layer: u32,
    tree: &Tree,
    dims: (usize, usize),
    reads_hidden: bool,
) -> Result<()> {
    let (d, kvd) = dims;
    let name = node_id(o.step, layer);
    if reads_hidden == o.hidden_hash.is_some() || reads_hidden != o.kv_hashes.is_some() {
        return Err(bad(format!(
            "block {name}: the opening must carry the {} it is read for",
            if reads_hidden {
                "hidden rows"
            } else {
                "K/V rows"
            }
        )));
    }
    let rows = o.rows as usize;
    let hidden = match &o.hidden_hash {
        Some(h) => unhex(h, "hidden_hash")?,
        None => {
            if o.hidden.len() != rows.saturating_mul(d) {
                return Err(bad(format!(
                    "block {name}: {} hidden floats for {rows} rows",
                    o.hidden.len()
                )));
            }
            tensor_hash(&o.hidden)
        }
    };
    let (k_new, v_new) = match &o.kv_hashes {
        Some((k, v)) => (unhex(k, "k hash")?, unhex(v, "v hash")?),
        None => {
            if o.k_new.len() != rows.saturating_mul(kvd)
                || o.v_new.len() != rows.saturating_mul(kvd)
            {
                return Err(bad(format!(
                    "block {name}: cache rows do not match {rows} rows"
                )));
            }
            (tensor_hash(&o.k_new), tensor_hash(&o.v_new))
        }
    };
    let leaf = BlockLeaf {
        step: o.step,
        layer,
        pos0: o.pos0,
        rows: o.rows,
        hidden,
        k_new,
        v_new,
    };
    tree.check(
        &leaf.hash(),
        o.step,
        layer as usize,
        &o.path,
        &format!("the opening of block {name}"),
    )
}

/// Verifies a challenge against the runtime hash of a signed receipt, re-executing the
/// challenged block (or the head and sampler) on `m`. Ok means: what the validator
/// recomputed is what the node committed to, at its position.
pub fn verify(
    m: &LoadedModel,
    ch: &BlockChallenge,
    receipt_runtime_hash: &str,
    pool: &rayon::ThreadPool,
) -> Result<()> {
    let cfg = m.model.cfg;
    let (d, kvd, layers) = (cfg.d, cfg.kv_dim(), cfg.layers);
    let cid: Cid = ch
        .model_cid
        .parse()
        .map_err(|e| bad(format!("model_cid: {e:?}")))?;
    if cid != m.cid {
        return Err(bad(format!(
            "the job ran model {cid}; this validator loaded {}",
            m.cid
        )));
    }
    ch.request.validate()?;
    let root = unhex(&ch.merkle_root, "merkle_root")?;
    let rh = hex::encode(runtime_hash(
        &cid,
        &ch.request.digest(),
        ch.seed,
        &root,
        &ch.token_ids,
    ));
    if rh != ch.runtime_hash || rh != receipt_runtime_hash {
        return Err(bad(format!(
            "model, request, seed, root and token ids give runtime hash {rh}; the receipt signed {receipt_runtime_hash}"
        )));
    }
    let calls = ch.token_ids.len();
    let head = ch.layer == HEAD;
    if ch.step as usize >= calls || (!head && ch.layer as usize >= layers) {
        return Err(bad(format!(
            "block {} is outside the job ({calls} calls, {layers} blocks)",
            node_id(ch.step, ch.layer)
        )));
    }
    let tree = Tree {
        root,
        n: calls.saturating_mul(layers + 1),
        layers,
    };
    // No call follows the end-of-sequence token.
    if ch.token_ids[..calls - 1].contains(&m.tokenizer.eos) {
        return Err(bad("a call follows the end-of-sequence token".into()));
    }
    // The tokens fed at this call.
    let prompt = m
        .tokenizer
        .encode(&m.tokenizer.render(&ch.request.messages)?)?;
    let prompt_len = prompt.len();
    let pos0 = step_pos0(prompt_len, ch.step);
    if pos0 + ch.input_ids.len() > cfg.context {
        return Err(bad("the call does not fit the model's context".into()));
    }
    if ch.step == 0 {
        if prompt != ch.input_ids {
            return Err(bad("input ids are not the request's prompt".into()));
        }
    } else {
        let t = ch
            .prev_token
            .as_ref()
            .ok_or_else(|| bad("call > 0 needs the previous token's opening".into()))?;
        let fed = ch.token_ids[ch.step as usize - 1];
        if t.step.checked_add(1) != Some(ch.step) || t.token != fed || ch.input_ids != [fed] {
            return Err(bad(
                "the fed token is not the one committed by the previous call".into(),
            ));
        }
        let leaf = token_leaf(t.step, t.token, &unhex(&t.logits_hash, "logits_hash")?);
        tree.check(
            &leaf,
            t.step,
            layers,
            &t.path,
            "the previous call's token leaf",
        )?;
    }
    let input_of = |l: u32| -> Result<Vec<f32>> {
        let o = ch
            .input
            .as_ref()
            .ok_or_else(|| bad("the challenge lacks its input opening".into()))?;
        if o.step != ch.step || o.pos0 as usize != pos0 || o.rows as usize != ch.input_ids.len() {
            return Err(bad("the input opening is for another call".into()));
        }
        check_opening(o, l, &tree, (d, kvd), true)?;
        Ok(o.hidden.clone())
    };
    if head {
        // The head and the sampler: logits from the last block's output, then the token.
        let x = input_of(layers as u32 - 1)?;
        let logits = m.model.logits(&x, pool);
        let t = ch
            .token
            .as_ref()
            .ok_or_else(|| bad("a head challenge needs the call's token leaf".into()))?;
        let want = ch.token_ids[ch.step as usize];
        let picked = sample(&logits, &ch.request, ch.seed, ch.step);
        if t.step != ch.step || t.token != want || picked != want {
            return Err(bad(format!(
                "call {} samples token {picked} from the recomputed logits; the job says {want}",
                ch.step
            )));
        }
        let leaf = token_leaf(ch.step, want, &tensor_hash(&logits));
        return tree.check(
            &leaf,
            ch.step,
            layers,
            &ch.path,
            &format!("the recomputed head of call {}", ch.step),
        );
    }
    let x = if ch.layer == 0 {
        m.model.embed(&ch.input_ids)?
    } else {
        input_of(ch.layer - 1)?
    };
    let mut cache_k = Vec::new();
    let mut cache_v = Vec::new();
    for (s, o) in ch.cache.iter().enumerate() {
        let rows = if s == 0 { prompt_len } else { 1 };
        if o.step as usize != s
            || o.pos0 as usize != step_pos0(prompt_len, s as u32)
            || o.rows as usize != rows
        {
            return Err(bad(format!("cache opening {s} is not call {s}'s")));
        }
        check_opening(o, ch.layer, &tree, (d, kvd), false)?;
        cache_k.extend_from_slice(&o.k_new);
        cache_v.extend_from_slice(&o.v_new);
    }
    if ch.cache.len() != ch.step as usize || cache_k.len() != pos0 * kvd {
        return Err(bad("the cache does not cover every earlier call".into()));
    }
    let t = m.model.block(
        ch.layer as usize,
        &x,
        pos0,
        &mut cache_k,
        &mut cache_v,
        pool,
    )?;
    let leaf = BlockLeaf::of(ch.step, ch.layer, pos0 as u32, &t, d);
    tree.check(
        &leaf.hash(),
        ch.step,
        ch.layer as usize,
        &ch.path,
        &format!("block {} as recomputed", node_id(ch.step, ch.layer)),
    )
}

/// Checks a job's outputs file against a verified challenge: the token ids the runtime
/// hash binds, and the text they give.
pub fn check_outputs(m: &LoadedModel, ch: &BlockChallenge, outputs: &[u8]) -> Result<()> {
    let (ids, text) = crate::outputs::parse(outputs)?;
    if ids != ch.token_ids {
        return Err(bad(
            "the outputs' token ids are not the committed ones".into()
        ));
    }
    let want = crate::chat::text_of(&m.tokenizer, &ch.request, &ids)?;
    if text != want {
        return Err(bad(format!(
            "the outputs' text {text:?} is not what the token ids give ({want:?})"
        )));
    }
    Ok(())
}
