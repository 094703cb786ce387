//! The Whisper encoder and decoder from a CTranslate2 `WhisperSpec` (revision 3) file,
//! deterministic to the bit for any thread count.
//!
//! Encoder: conv1 (k3, pad 1) + GELU and conv2 (k3, stride 2, pad 1) + GELU, each an
//! im2col matmul `W[out, c·3+k] · cols` then `+ bias` ([`WhisperModel::encoder_stem`]),
//! plus the file's sinusoidal positions; pre-LayerNorm layers of self-attention and a
//! GELU FFN ([`WhisperModel::encoder_layer`]); a final LayerNorm
//! ([`WhisperModel::encoder_out`]).
//!
//! Decoder, one token per call ([`WhisperModel::decoder_step`], a pure function of the
//! token, its position, the self-attention cache rows before it and the cross-attention
//! K/V of the encoder output): token embedding + learned position; per layer causal
//! self-attention over the cache plus the new row, cross-attention, GELU FFN (all
//! pre-LayerNorm, residual adds in f32); final LayerNorm; logits `E · h` through the
//! token embedding (the file aliases `decoder/projection/weight` to it) plus the
//! projection bias when the file has one.
//!
//! Attention per head: score `= (fma chain of q·k over the head dims, from +0) · 1/√dh`,
//! softmax (`nn::softmax_rows`), context `= fma chain of p·v over positions in order`,
//! all through havn-exec's `matmul`.

use crate::ct2::Ct2File;
use crate::error::{AsrError, Result};
use crate::nn::{gelu_in_place, layer_norm, softmax_rows, transpose, Linear};
use havn_exec::cpu::matmul;

/// Hyper-parameters read from the file's shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Config {
    pub n_mels: usize,
    pub d: usize,
    pub enc_heads: usize,
    pub dec_heads: usize,
    pub enc_layers: usize,
    pub dec_layers: usize,
    pub ffn: usize,
    pub vocab: usize,
    /// Encoder positions (input frames / 2).
    pub enc_ctx: usize,
    /// Decoder positions.
    pub dec_ctx: usize,
}

struct Norm {
    g: Vec<f32>,
    b: Vec<f32>,
}

struct EncLayer {
    sa_norm: Norm,
    qkv: Linear,
    sa_out: Linear,
    ffn_norm: Norm,
    ffn0: Linear,
    ffn1: Linear,
}

struct DecLayer {
    sa_norm: Norm,
    qkv: Linear,
    sa_out: Linear,
    ca_norm: Norm,
    ca_q: Linear,
    ca_kv: Linear,
    ca_out: Linear,
    ffn_norm: Norm,
    ffn0: Linear,
    ffn1: Linear,
}

/// The loaded weights (all f32, converted exactly from the file).
pub struct WhisperModel {
    pub cfg: Config,
    conv1: Linear,
    conv2: Linear,
    enc_pos: Vec<f32>,
    enc_layers: Vec<EncLayer>,
    enc_norm: Norm,
    embed: Vec<f32>,
    dec_pos: Vec<f32>,
    dec_layers: Vec<DecLayer>,
    dec_norm: Norm,
    proj_bias: Option<Vec<f32>>,
}

/// Self-attention K and V rows of every position so far, per decoder layer (`[t, d]`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelfCache {
    pub k: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
}

impl SelfCache {
    /// An empty cache for `layers` layers.
    pub fn new(layers: usize) -> SelfCache {
        SelfCache {
            k: vec![Vec::new(); layers],
            v: vec![Vec::new(); layers],
        }
    }
    /// Appends one step's new rows.
    pub fn push(&mut self, step: &StepOut) {
        for (c, n) in self.k.iter_mut().zip(&step.k_new) {
            c.extend_from_slice(n);
        }
        for (c, n) in self.v.iter_mut().zip(&step.v_new) {
            c.extend_from_slice(n);
        }
    }
}

/// Cross-attention K and V of the encoder output, per layer and head (`[enc_ctx, dh]`).
#[derive(Debug, Clone, PartialEq)]
pub struct CrossKv {
    pub k: Vec<Vec<Vec<f32>>>,
    pub v: Vec<Vec<Vec<f32>>>,
}

/// What one decoder call produced.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOut {
    /// Logits over the vocabulary (empty when not asked for).
    pub logits: Vec<f32>,
    /// The self-attention K and V rows this call appended, per layer (`[d]` each).
    pub k_new: Vec<Vec<f32>>,
    pub v_new: Vec<Vec<f32>>,
}

fn norm(f: &Ct2File<'_>, scope: &str, d: usize) -> Result<Norm> {
    Ok(Norm {
        g: f.f32s(&format!("{scope}/gamma"), &[d])?,
        b: f.f32s(&format!("{scope}/beta"), &[d])?,
    })
}

fn linear(f: &Ct2File<'_>, scope: &str, out: usize, inp: usize) -> Result<Linear> {
    Ok(Linear {
        w: f.f32s(&format!("{scope}/weight"), &[out, inp])?,
        b: f.f32s(&format!("{scope}/bias"), &[out])?,
        inp,
        out,
    })
}

fn conv(f: &Ct2File<'_>, scope: &str, out: usize, inp: usize) -> Result<Linear> {
    Ok(Linear {
        w: f.f32s(&format!("{scope}/weight"), &[out, inp, 3])?,
        b: f.f32s(&format!("{scope}/bias"), &[out])?,
        inp: inp * 3,
        out,
    })
}

fn dims2(f: &Ct2File<'_>, name: &str) -> Result<(usize, usize)> {
    match f.get(name)?.dims[..] {
        [a, b] => Ok((a, b)),
        ref d => Err(AsrError::var(name, format!("dims {d:?}, expected 2"))),
    }
}

fn flag(f: &Ct2File<'_>, name: &str, want: i64, what: &str) -> Result<()> {
    let v = match f.find(name) {
        Some(_) => f.int(name)?,
        None => return Ok(()),
    };
    if v != want {
        return Err(AsrError::var(
            name,
            format!("{v} is not supported (only {want}: {what})"),
        ));
    }
    Ok(())
}

fn count_layers(f: &Ct2File<'_>, scope: &str) -> usize {
    (0..)
        .take_while(|i| {
            f.find(&format!("{scope}/layer_{i}/ffn/linear_0/weight"))
                .is_some()
        })
        .count()
}

impl Config {
    /// Reads and checks the hyper-parameters from the variables' shapes.
    pub fn from_file(f: &Ct2File<'_>) -> Result<Config> {
        if f.spec != "WhisperSpec" || f.revision != 3 {
            return Err(AsrError::var(
                "spec",
                format!(
                    "{:?} revision {} is not supported (only \"WhisperSpec\" revision 3)",
                    f.spec, f.revision
                ),
            ));
        }
        let (vocab, d) = dims2(f, "decoder/embeddings/weight")?;
        let (enc_ctx, de) = dims2(f, "encoder/position_encodings/encodings")?;
        let (dec_ctx, dd) = dims2(f, "decoder/position_encodings/encodings")?;
        let (ffn, df) = dims2(f, "encoder/layer_0/ffn/linear_0/weight")?;
        let n_mels = match f.get("encoder/conv1/weight")?.dims[..] {
            [o, m, 3] if o == d => m,
            ref x => {
                return Err(AsrError::var(
                    "encoder/conv1/weight",
                    format!("dims {x:?}, expected [{d}, n_mels, 3]"),
                ))
            }
        };
        let heads = |name: &str| -> Result<usize> {
            let h = f.int(name)?;
            if h < 1 || d % (h as usize) != 0 {
                return Err(AsrError::var(
                    name,
                    format!("{h} heads do not divide the model width {d}"),
                ));
            }
            Ok(h as usize)
        };
        let cfg = Config {
            n_mels,
            d,
            enc_heads: heads("encoder/num_heads")?,
            dec_heads: heads("decoder/num_heads")?,
            enc_layers: count_layers(f, "encoder"),
            dec_layers: count_layers(f, "decoder"),
            ffn,
            vocab,
            enc_ctx,
            dec_ctx,
        };
        let bad = |name: &str, why: String| Err(AsrError::var(name, why));
        if de != d || dd != d || df != d {
            return bad(
                "position_encodings",
                format!("widths {de}/{dd}/{df} differ from the embedding width {d}"),
            );
        }
        if cfg.enc_layers == 0 || cfg.dec_layers == 0 {
            return bad(
                "layer_0",
                "the model has no encoder or decoder layers".into(),
            );
        }
        if d == 0 || ffn == 0 || vocab == 0 || dec_ctx < 3 || n_mels == 0 || enc_ctx == 0 {
            return bad("decoder/embeddings/weight", format!("degenerate {cfg:?}"));
        }
        if enc_ctx * 2 != crate::mel::N_FRAMES || n_mels != crate::mel::N_MELS {
            return bad(
                "encoder/position_encodings/encodings",
                format!(
                    "{enc_ctx} positions × {n_mels} mels: the front end gives {} frames of {} mels",
                    crate::mel::N_FRAMES,
                    crate::mel::N_MELS
                ),
            );
        }
        flag(f, "decoder/activation", 3, "exact GELU")?;
        flag(f, "decoder/pre_norm", 1, "pre-LayerNorm")?;
        flag(f, "decoder/scale_embeddings", 0, "unscaled embeddings")?;
        flag(f, "decoder/alibi", 0, "learned positions")?;
        flag(
            f,
            "decoder/start_from_zero_embedding",
            0,
            "no zero start embedding",
        )?;
        Ok(cfg)
    }
}

impl WhisperModel {
    /// Loads every weight (converted exactly to f32, checked finite and shaped).
    pub fn load(f: &Ct2File<'_>) -> Result<WhisperModel> {
        let cfg = Config::from_file(f)?;
        let (d, ffn) = (cfg.d, cfg.ffn);
        let enc_layers = (0..cfg.enc_layers)
            .map(|i| {
                let s = format!("encoder/layer_{i}");
                Ok(EncLayer {
                    sa_norm: norm(f, &format!("{s}/self_attention/layer_norm"), d)?,
                    qkv: linear(f, &format!("{s}/self_attention/linear_0"), 3 * d, d)?,
                    sa_out: linear(f, &format!("{s}/self_attention/linear_1"), d, d)?,
                    ffn_norm: norm(f, &format!("{s}/ffn/layer_norm"), d)?,
                    ffn0: linear(f, &format!("{s}/ffn/linear_0"), ffn, d)?,
                    ffn1: linear(f, &format!("{s}/ffn/linear_1"), d, ffn)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let dec_layers = (0..cfg.dec_layers)
            .map(|i| {
                let s = format!("decoder/layer_{i}");
                Ok(DecLayer {
                    sa_norm: norm(f, &format!("{s}/self_attention/layer_norm"), d)?,
                    qkv: linear(f, &format!("{s}/self_attention/linear_0"), 3 * d, d)?,
                    sa_out: linear(f, &format!("{s}/self_attention/linear_1"), d, d)?,
                    ca_norm: norm(f, &format!("{s}/attention/layer_norm"), d)?,
                    ca_q: linear(f, &format!("{s}/attention/linear_0"), d, d)?,
                    ca_kv: linear(f, &format!("{s}/attention/linear_1"), 2 * d, d)?,
                    ca_out: linear(f, &format!("{s}/attention/linear_2"), d, d)?,
                    ffn_norm: norm(f, &format!("{s}/ffn/layer_norm"), d)?,
                    ffn0: linear(f, &format!("{s}/ffn/linear_0"), ffn, d)?,
                    ffn1: linear(f, &format!("{s}/ffn/linear_1"), d, ffn)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // The output projection must be the token embedding (CTranslate2 aliases it).
        let proj = f.get("decoder/projection/weight")?;
        let emb = f.get("decoder/embeddings/weight")?;
        if proj != emb {
            return Err(AsrError::var(
                "decoder/projection/weight",
                "a projection separate from decoder/embeddings/weight is not supported",
            ));
        }
        let proj_bias = match f.find("decoder/projection/bias") {
            Some(_) => Some(f.f32s("decoder/projection/bias", &[cfg.vocab])?),
            None => None,
        };
        Ok(WhisperModel {
            conv1: conv(f, "encoder/conv1", d, cfg.n_mels)?,
            conv2: conv(f, "encoder/conv2", d, d)?,
            enc_pos: f.f32s("encoder/position_encodings/encodings", &[cfg.enc_ctx, d])?,
            enc_layers,
            enc_norm: norm(f, "encoder/layer_norm", d)?,
            embed: f.f32s("decoder/embeddings/weight", &[cfg.vocab, d])?,
            dec_pos: f.f32s("decoder/position_encodings/encodings", &[cfg.dec_ctx, d])?,
            dec_layers,
            dec_norm: norm(f, "decoder/layer_norm", d)?,
            proj_bias,
            cfg,
        })
    }

    /// Conv stem: mel `[n_mels, 2·enc_ctx]` → hidden `[enc_ctx, d]` (input of layer 0).
    pub fn encoder_stem(&self, mel: &[f32], threads: usize) -> Result<Vec<f32>> {
        let c = self.cfg;
        let t1 = 2 * c.enc_ctx;
        if mel.len() != c.n_mels * t1 {
            return Err(AsrError::var(
                "mel",
                format!("{} values, expected {} × {t1}", mel.len(), c.n_mels),
            ));
        }
        let y1 = conv_gelu(&self.conv1, mel, c.n_mels, t1, 1, t1, threads);
        let y2 = conv_gelu(&self.conv2, &y1, c.d, t1, 2, c.enc_ctx, threads);
        let mut x = transpose(&y2, c.d, c.enc_ctx);
        for (v, &p) in x.iter_mut().zip(&self.enc_pos) {
            *v += p;
        }
        Ok(x)
    }

    /// Encoder layer `l`: hidden `[enc_ctx, d]` → hidden.
    pub fn encoder_layer(&self, l: usize, x: &[f32], threads: usize) -> Result<Vec<f32>> {
        let c = self.cfg;
        let t = c.enc_ctx;
        let layer = self
            .enc_layers
            .get(l)
            .ok_or_else(|| AsrError::var(format!("encoder/layer_{l}"), "no such encoder layer"))?;
        if x.len() != t * c.d {
            return Err(AsrError::var("encoder input", "wrong size"));
        }
        let h = layer_norm(x, c.d, &layer.sa_norm.g, &layer.sa_norm.b, threads);
        let qkv = layer.qkv.forward(&h, t, threads);
        let dh = c.d / c.enc_heads;
        let scale = 1.0 / (dh as f32).sqrt();
        let mut ctx = vec![0.0f32; t * c.d];
        for head in 0..c.enc_heads {
            let q = columns(&qkv, 3 * c.d, head * dh, dh);
            let kt = transpose(&columns(&qkv, 3 * c.d, c.d + head * dh, dh), t, dh);
            let v = columns(&qkv, 3 * c.d, 2 * c.d + head * dh, dh);
            let mut s = matmul(&q, &kt, None, t, dh, t, threads);
            for e in &mut s {
                *e *= scale;
            }
            softmax_rows(&mut s, t, threads);
            let o = matmul(&s, &v, None, t, t, dh, threads);
            for (r, row) in o.chunks_exact(dh).enumerate() {
                ctx[r * c.d + head * dh..r * c.d + (head + 1) * dh].copy_from_slice(row);
            }
        }
        let a = layer.sa_out.forward(&ctx, t, threads);
        let x1: Vec<f32> = x.iter().zip(&a).map(|(&p, &q)| p + q).collect();
        Ok(self.ffn(&layer.ffn_norm, &layer.ffn0, &layer.ffn1, x1, t, threads))
    }

    /// Final encoder LayerNorm.
    pub fn encoder_out(&self, x: &[f32], threads: usize) -> Vec<f32> {
        layer_norm(x, self.cfg.d, &self.enc_norm.g, &self.enc_norm.b, threads)
    }

    /// Cross-attention K/V of the encoder output `[enc_ctx, d]`, split per head.
    pub fn cross_kv(&self, enc: &[f32], threads: usize) -> CrossKv {
        let c = self.cfg;
        let dh = c.d / c.dec_heads;
        let mut k = Vec::new();
        let mut v = Vec::new();
        for layer in &self.dec_layers {
            let kv = layer.ca_kv.forward(enc, c.enc_ctx, threads);
            k.push(
                (0..c.dec_heads)
                    .map(|h| columns(&kv, 2 * c.d, h * dh, dh))
                    .collect(),
            );
            v.push(
                (0..c.dec_heads)
                    .map(|h| columns(&kv, 2 * c.d, c.d + h * dh, dh))
                    .collect(),
            );
        }
        CrossKv { k, v }
    }

    /// One decoder call: `token` at position `pos`, attending to the `pos` cache rows
    /// before it. Logits are computed when `logits` is true.
    pub fn decoder_step(
        &self,
        token: u32,
        pos: usize,
        cache: &SelfCache,
        cross: &CrossKv,
        logits: bool,
        threads: usize,
    ) -> Result<StepOut> {
        let c = self.cfg;
        let (d, dh) = (c.d, c.d / c.dec_heads);
        let tok = token as usize;
        if tok >= c.vocab || pos >= c.dec_ctx {
            return Err(AsrError::var(
                "decoder input",
                format!(
                    "token {token} at position {pos} (vocab {}, positions {})",
                    c.vocab, c.dec_ctx
                ),
            ));
        }
        let cache_ok = cache.k.len() == c.dec_layers
            && cache.v.len() == c.dec_layers
            && cache.k.iter().chain(&cache.v).all(|r| r.len() == pos * d);
        let cross_ok = cross.k.len() == c.dec_layers
            && cross.v.len() == c.dec_layers
            && cross
                .k
                .iter()
                .chain(&cross.v)
                .all(|l| l.len() == c.dec_heads && l.iter().all(|h| h.len() == c.enc_ctx * dh));
        if !cache_ok || !cross_ok {
            return Err(AsrError::var(
                "decoder state",
                format!("cache or cross K/V does not match position {pos}"),
            ));
        }
        let scale = 1.0 / (dh as f32).sqrt();
        let mut x: Vec<f32> = self.embed[tok * d..(tok + 1) * d]
            .iter()
            .zip(&self.dec_pos[pos * d..(pos + 1) * d])
            .map(|(&e, &p)| e + p)
            .collect();
        let mut k_new = Vec::with_capacity(c.dec_layers);
        let mut v_new = Vec::with_capacity(c.dec_layers);
        for (l, layer) in self.dec_layers.iter().enumerate() {
            let h = layer_norm(&x, d, &layer.sa_norm.g, &layer.sa_norm.b, threads);
            let qkv = layer.qkv.forward(&h, 1, threads);
            let (q, kv) = qkv.split_at(d);
            let (kn, vn) = kv.split_at(d);
            let n = pos + 1;
            let mut ctx = vec![0.0f32; d];
            for head in 0..c.dec_heads {
                let r = head * dh..(head + 1) * dh;
                let mut kh = Vec::with_capacity(n * dh);
                let mut vh = Vec::with_capacity(n * dh);
                for (kr, vr) in cache.k[l]
                    .chunks_exact(d)
                    .chain([kn])
                    .zip(cache.v[l].chunks_exact(d).chain([vn]))
                {
                    kh.extend_from_slice(&kr[r.clone()]);
                    vh.extend_from_slice(&vr[r.clone()]);
                }
                let o = attend(&kh, &vh, &q[r.clone()], n, dh, scale, threads);
                ctx[r].copy_from_slice(&o);
            }
            let a = layer.sa_out.forward(&ctx, 1, threads);
            for (v, &p) in x.iter_mut().zip(&a) {
                *v += p;
            }
            let h = layer_norm(&x, d, &layer.ca_norm.g, &layer.ca_norm.b, threads);
            let q = layer.ca_q.forward(&h, 1, threads);
            let mut ctx = vec![0.0f32; d];
            for head in 0..c.dec_heads {
                let r = head * dh..(head + 1) * dh;
                let o = attend(
                    &cross.k[l][head],
                    &cross.v[l][head],
                    &q[r.clone()],
                    c.enc_ctx,
                    dh,
                    scale,
                    threads,
                );
                ctx[r].copy_from_slice(&o);
            }
            let a = layer.ca_out.forward(&ctx, 1, threads);
            for (v, &p) in x.iter_mut().zip(&a) {
                *v += p;
            }
            x = self.ffn(&layer.ffn_norm, &layer.ffn0, &layer.ffn1, x, 1, threads);
            k_new.push(kn.to_vec());
            v_new.push(vn.to_vec());
        }
        let logits = if logits {
            let h = layer_norm(&x, d, &self.dec_norm.g, &self.dec_norm.b, threads);
            let mut z = matmul(&self.embed, &h, None, c.vocab, d, 1, threads);
            if let Some(b) = &self.proj_bias {
                for (v, &bb) in z.iter_mut().zip(b) {
                    *v += bb;
                }
            }
            z
        } else {
            Vec::new()
        };
        Ok(StepOut {
            logits,
            k_new,
            v_new,
        })
    }

    fn ffn(
        &self,
        n: &Norm,
        l0: &Linear,
        l1: &Linear,
        x: Vec<f32>,
        rows: usize,
        threads: usize,
    ) -> Vec<f32> {
        let h = layer_norm(&x, self.cfg.d, &n.g, &n.b, threads);
        let mut f = l0.forward(&h, rows, threads);
        gelu_in_place(&mut f, l0.out, threads);
        let f2 = l1.forward(&f, rows, threads);
        x.iter().zip(&f2).map(|(&p, &q)| p + q).collect()
    }
}

/// Columns `c0..c0+w` of a `[rows, stride]` matrix, as `[rows, w]`.
fn columns(x: &[f32], stride: usize, c0: usize, w: usize) -> Vec<f32> {
    x.chunks_exact(stride)
        .flat_map(|row| row[c0..c0 + w].iter().copied())
        .collect()
}

/// One query over `n` keys/values (`[n, dh]` each): softmax(K·q · scale) · V.
fn attend(k: &[f32], v: &[f32], q: &[f32], n: usize, dh: usize, scale: f32, th: usize) -> Vec<f32> {
    let mut s = matmul(k, q, None, n, dh, 1, th);
    for e in &mut s {
        *e *= scale;
    }
    softmax_rows(&mut s, n, 1);
    matmul(&s, v, None, 1, n, dh, th)
}

/// Conv1d (kernel 3, padding 1) + bias + GELU on channel-major `x [cin, t_in]`, giving
/// channel-major `[cout, t_out]`: `W[cout, cin·3] · cols[cin·3, t_out]` with
/// `cols[ci·3 + k, t] = x[ci, stride·t + k − 1]` (0 outside).
fn conv_gelu(
    w: &Linear,
    x: &[f32],
    cin: usize,
    t_in: usize,
    stride: usize,
    t_out: usize,
    threads: usize,
) -> Vec<f32> {
    let mut cols = vec![0.0f32; cin * 3 * t_out];
    for ci in 0..cin {
        let src = &x[ci * t_in..(ci + 1) * t_in];
        for k in 0..3 {
            let dst = &mut cols[(ci * 3 + k) * t_out..(ci * 3 + k + 1) * t_out];
            for (t, o) in dst.iter_mut().enumerate() {
                let i = (stride * t + k).wrapping_sub(1);
                if let Some(&v) = src.get(i) {
                    *o = v;
                }
            }
        }
    }
    let mut y = matmul(&w.w, &cols, None, w.out, w.inp, t_out, threads);
    for (row, &b) in y.chunks_exact_mut(t_out).zip(&w.b) {
        for v in row.iter_mut() {
            *v += b;
        }
    }
    gelu_in_place(&mut y, t_out, threads);
    y
}
