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
//! The validator checks every opening's leaf hash and Merkle path, re-runs the block
//! alone ([`crate::model::Model::block`]) and checks that its output leaf is committed.
//! That costs one block of one call — about 1/(layers · calls) of the job.

use crate::chat::{
    leaf_index, runtime_hash, step_pos0, tensor_hash, token_leaf, BlockLeaf, ChatOutput,
    ChatRequest,
};
use crate::error::{LmError, Result};
use crate::LoadedModel;
use havn_exec::merkle::{merkle_path, path_root};
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
    pub step: u32,
    pub layer: u32,
    /// Tokens fed at this call.
    pub input_ids: Vec<u32>,
    /// Call `step − 1`'s token leaf (the token fed now), for `step > 0`.
    pub prev_token: Option<TokenOpening>,
    /// Block `layer − 1` at this call (its output is the input), for `layer > 0`.
    pub input: Option<BlockOpening>,
    /// Block `layer` at every earlier call (its cache rows), in call order.
    pub cache: Vec<BlockOpening>,
    /// The challenged leaf's path (its contents are what the validator recomputes).
    pub path: Path,
}

/// The node id a chat challenge names: `s{step}.b{layer}`.
pub fn node_id(step: u32, layer: u32) -> String {
    format!("s{step}.b{layer}")
}

/// Parses `s{step}.b{layer}`.
pub fn parse_node_id(id: &str) -> Option<(u32, u32)> {
    let (s, b) = id.strip_prefix('s')?.split_once(".b")?;
    Some((s.parse().ok()?, b.parse().ok()?))
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
    if step >= steps || layer as usize >= layers {
        return Err(LmError::request(
            "node",
            format!(
                "no block {} (calls 0..{steps}, blocks 0..{layers})",
                node_id(step, layer)
            ),
        ));
    }
    let plen = out.prompt_ids.len();
    let pos = |s: u32| step_pos0(plen, s) as u32;
    let path = |s: u32, l: usize| hex_path(merkle_path(&out.leaf_hashes, leaf_index(layers, s, l)));
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
        step,
        layer,
        input_ids,
        prev_token,
        input: (layer > 0).then(|| opening(step, layer as usize - 1, true)),
        cache: (0..step)
            .map(|s| opening(s, layer as usize, false))
            .collect(),
        path: path(step, layer as usize),
    })
}

/// Checks an opening's leaf against the root. `reads_hidden`: the challenged block
/// reads its hidden rows (so they must be opened, not given by hash); otherwise it
/// reads its K/V rows (likewise).
fn check_opening(
    o: &BlockOpening,
    layer: u32,
    root: &[u8; 32],
    dims: (usize, usize),
    reads_hidden: bool,
) -> Result<()> {
    let (d, kvd) = dims;
    if reads_hidden == o.hidden_hash.is_some() || reads_hidden != o.kv_hashes.is_some() {
        return Err(bad(format!(
            "block {}: the opening must carry the {} it is read for",
            node_id(o.step, layer),
            if reads_hidden {
                "hidden rows"
            } else {
                "K/V rows"
            }
        )));
    }
    let hidden = match &o.hidden_hash {
        Some(h) => unhex(h, "hidden_hash")?,
        None => {
            if o.hidden.len() != o.rows as usize * d {
                return Err(bad(format!(
                    "call {} block {layer}: {} hidden floats for {} rows",
                    o.step,
                    o.hidden.len(),
                    o.rows
                )));
            }
            tensor_hash(&o.hidden)
        }
    };
    let (k_new, v_new) = match &o.kv_hashes {
        Some((k, v)) => (unhex(k, "k hash")?, unhex(v, "v hash")?),
        None => {
            if o.k_new.len() != o.rows as usize * kvd || o.v_new.len() != o.rows as usize * kvd {
                return Err(bad(format!(
                    "call {} block {layer}: cache rows do not match {} rows",
                    o.step, o.rows
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
    if path_root(&leaf.hash(), &parse_path(&o.path)?) != *root {
        return Err(bad(format!(
            "the opening of block {} is not committed under the root",
            node_id(o.step, layer)
        )));
    }
    Ok(())
}

/// Verifies a challenge against the runtime hash of a signed receipt, re-executing the
/// challenged block on `m`. Ok means: the block's recomputed output is what the node
/// committed to.
pub fn verify(
    m: &LoadedModel,
    ch: &BlockChallenge,
    receipt_runtime_hash: &str,
    pool: &rayon::ThreadPool,
) -> Result<()> {
    let cfg = m.model.cfg;
    let (d, kvd) = (cfg.d, cfg.kv_dim());
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
    let rh = hex::encode(runtime_hash(&cid, &ch.request.digest(), ch.seed, &root));
    if rh != ch.runtime_hash || rh != receipt_runtime_hash {
        return Err(bad(format!(
            "model, request, seed and root give runtime hash {rh}; the receipt signed {receipt_runtime_hash}"
        )));
    }
    if ch.layer as usize >= cfg.layers || ch.cache.len() != ch.step as usize {
        return Err(bad(format!(
            "block {} is out of range or its cache is incomplete",
            node_id(ch.step, ch.layer)
        )));
    }
    // The tokens fed at this call.
    let prompt = m
        .tokenizer
        .encode(&m.tokenizer.render(&ch.request.messages)?)?;
    let prompt_len = prompt.len();
    if ch.step == 0 {
        if prompt != ch.input_ids {
            return Err(bad("input ids are not the request's prompt".into()));
        }
    } else {
        let t = ch
            .prev_token
            .as_ref()
            .ok_or_else(|| bad("call > 0 needs the previous token's opening".into()))?;
        let leaf = token_leaf(t.step, t.token, &unhex(&t.logits_hash, "logits_hash")?);
        if t.step + 1 != ch.step
            || path_root(&leaf, &parse_path(&t.path)?) != root
            || ch.input_ids != [t.token]
        {
            return Err(bad(
                "the fed token is not the one committed by the previous call".into(),
            ));
        }
    }
    let pos0 = step_pos0(prompt_len, ch.step);
    let x = if ch.layer == 0 {
        m.model.embed(&ch.input_ids)?
    } else {
        let o = ch
            .input
            .as_ref()
            .ok_or_else(|| bad("block > 0 needs its input opening".into()))?;
        if o.step != ch.step || o.pos0 as usize != pos0 || o.rows as usize != ch.input_ids.len() {
            return Err(bad("the input opening is for another call".into()));
        }
        check_opening(o, ch.layer - 1, &root, (d, kvd), true)?;
        o.hidden.clone()
    };
    let mut cache_k = Vec::new();
    let mut cache_v = Vec::new();
    for (s, o) in ch.cache.iter().enumerate() {
        if o.step as usize != s || o.pos0 as usize * kvd != cache_k.len() {
            return Err(bad(format!("cache opening {s} is out of order")));
        }
        check_opening(o, ch.layer, &root, (d, kvd), false)?;
        cache_k.extend_from_slice(&o.k_new);
        cache_v.extend_from_slice(&o.v_new);
    }
    if cache_k.len() != pos0 * kvd {
        return Err(bad("the cache does not cover every earlier position".into()));
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
    if path_root(&leaf.hash(), &parse_path(&ch.path)?) != root {
        return Err(bad(format!(
            "block {} recomputes to a leaf the node did not commit to",
            node_id(ch.step, ch.layer)
        )));
    }
    Ok(())
}
