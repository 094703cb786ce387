//! Workloads that ship with the project. Weights are generated deterministically from a
//! fixed seed with Philox and saved as safetensors; sizes are parameters.

use crate::detmath;
use crate::error::{ExecError, Result};
use crate::manifest::{Manifest, Node, TensorSpec};
use crate::ops::Op;
use crate::rng::Stream;
use crate::tensor::{save_safetensors, Tensor};
use havn_proto::{Cid, ComputeClass};

/// Seed of the weight generator (weights are part of the workflow, not of the job).
pub const WEIGHT_SEED: u64 = 0x4841_564e_5745_4947; // "HAVNWEIG"

/// Workload size preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// Debug-build unit tests.
    Tiny,
    /// `havnctl run` default.
    Small,
    /// Benchmarks.
    Large,
}

impl std::str::FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "tiny" => Ok(Size::Tiny),
            "small" => Ok(Size::Small),
            "large" => Ok(Size::Large),
            _ => Err(format!("unknown size {s:?} (tiny, small, large)")),
        }
    }
}

/// A built workflow: manifest, weights file and default inputs file.
#[derive(Debug, Clone)]
pub struct Workload {
    pub manifest: Manifest,
    pub weights: Vec<u8>,
    pub default_inputs: Vec<u8>,
}

/// Names of the shipped workloads.
pub const NAMES: [&str; 3] = ["lm", "diffusion", "audio"];

/// Builds a shipped workload.
pub fn build(name: &str, size: Size) -> Result<Workload> {
    match name {
        "lm" => lm(size),
        "diffusion" => diffusion(size),
        "audio" => audio(size),
        _ => Err(ExecError::UnknownWorkload { name: name.into() }),
    }
}

struct Builder {
    nodes: Vec<Node>,
    weights: Vec<(String, Tensor)>,
    tag: u32,
}

impl Builder {
    fn new() -> Self {
        Builder {
            nodes: Vec::new(),
            weights: Vec::new(),
            tag: 0,
        }
    }
    fn node(&mut self, id: String, op: Op, inputs: &[&str]) -> String {
        self.nodes.push(Node {
            id: id.clone(),
            op,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
        });
        id
    }
    fn weight(&mut self, name: &str, t: Tensor) -> String {
        self.weights.push((name.into(), t));
        name.into()
    }
    fn randn(&mut self, name: &str, shape: Vec<usize>, scale: f32) -> Result<String> {
        self.tag += 1;
        let s = Stream {
            seed: WEIGHT_SEED,
            node: self.tag,
        };
        let n = crate::tensor::numel(&shape);
        let t = Tensor::f32(shape, (0..n as u64).map(|i| s.normal(i) * scale).collect())?;
        Ok(self.weight(name, t))
    }
    fn ones(&mut self, name: &str, d: usize) -> Result<String> {
        Ok(self.weight(name, Tensor::f32(vec![d], vec![1.0; d])?))
    }
    fn finish(
        self,
        name: &str,
        inputs: Vec<(String, Tensor)>,
        outputs: Vec<String>,
    ) -> Result<Workload> {
        let weights = save_safetensors(&self.weights)?;
        let spec = |v: &[(String, Tensor)]| -> Vec<TensorSpec> {
            v.iter()
                .map(|(n, t)| TensorSpec {
                    name: n.clone(),
                    dtype: t.dtype(),
                    shape: t.shape.clone(),
                })
                .collect()
        };
        let manifest = Manifest {
            name: name.into(),
            class: ComputeClass::S,
            inputs: spec(&inputs),
            weights_cid: Some(Cid::of_bytes(&weights)),
            weights: spec(&self.weights),
            nodes: self.nodes,
            outputs,
        };
        manifest.plan()?;
        Ok(Workload {
            manifest,
            weights,
            default_inputs: save_safetensors(&inputs)?,
        })
    }
}

/// LM hyper-parameters.
#[derive(Debug, Clone, Copy)]
pub struct LmParams {
    pub d: usize,
    pub heads: usize,
    pub layers: usize,
    pub ffn: usize,
    pub prompt_len: usize,
    pub gen: usize,
}

impl LmParams {
    /// Preset for a size.
    pub fn for_size(size: Size) -> Self {
        match size {
            Size::Tiny => LmParams {
                d: 32,
                heads: 2,
                layers: 1,
                ffn: 64,
                prompt_len: 8,
                gen: 3,
            },
            Size::Small => LmParams {
                d: 64,
                heads: 4,
                layers: 2,
                ffn: 128,
                prompt_len: 16,
                gen: 8,
            },
            Size::Large => LmParams {
                d: 256,
                heads: 8,
                layers: 4,
                ffn: 1024,
                prompt_len: 32,
                gen: 16,
            },
        }
    }
}

/// Default LM prompt (bytes, repeated/truncated to the prompt length).
pub const DEFAULT_PROMPT: &str = "Havn computes verifiable answers. ";

fn lm(size: Size) -> Result<Workload> {
    let p = LmParams::for_size(size);
    const V: usize = 256;
    let mut b = Builder::new();
    let d = p.d;
    let emb = b.randn("tok_emb", vec![V, d], 0.5)?;
    let sd = 1.0 / (d as f32).sqrt();
    let sf = 1.0 / (p.ffn as f32).sqrt();
    let mut lw = Vec::new();
    for l in 0..p.layers {
        lw.push([
            b.ones(&format!("l{l}.ln1"), d)?,
            b.randn(&format!("l{l}.wq"), vec![d, d], sd)?,
            b.randn(&format!("l{l}.wk"), vec![d, d], sd)?,
            b.randn(&format!("l{l}.wv"), vec![d, d], sd)?,
            b.randn(&format!("l{l}.wo"), vec![d, d], sd)?,
            b.ones(&format!("l{l}.ln2"), d)?,
            b.randn(&format!("l{l}.w1"), vec![d, p.ffn], sd)?,
            b.randn(&format!("l{l}.w3"), vec![d, p.ffn], sd)?,
            b.randn(&format!("l{l}.w2"), vec![p.ffn, d], sf)?,
        ]);
    }
    let lnf = b.ones("lnf", d)?;
    // Quantized LM head: int8 weights with per-column scales (the integer path).
    b.tag += 1;
    let s = Stream {
        seed: WEIGHT_SEED,
        node: b.tag,
    };
    let wq: Vec<i8> = (0..(d * V) as u64)
        .map(|i| ((s.block(i)[0] % 255) as i32 - 127) as i8)
        .collect();
    let head = b.weight("head.q", Tensor::i8(vec![d, V], wq)?);
    let head_s = b.weight(
        "head.s",
        Tensor::f32(vec![V], (0..V).map(|j| 0.02 + 0.0001 * j as f32).collect())?,
    );
    let mut seq = "prompt".to_string();
    for st in 0..p.gen {
        let mut x = b.node(format!("s{st}.emb"), Op::Embedding, &[&emb, &seq]);
        for (l, w) in lw.iter().enumerate() {
            let n = |s: &str| format!("s{st}.l{l}.{s}");
            let h = b.node(n("ln1"), Op::RmsNorm { eps: 1e-5 }, &[&x, &w[0]]);
            let q = b.node(n("q"), Op::MatMul, &[&h, &w[1]]);
            let k = b.node(n("k"), Op::MatMul, &[&h, &w[2]]);
            let v = b.node(n("v"), Op::MatMul, &[&h, &w[3]]);
            let qr = b.node(
                n("qr"),
                Op::Rope {
                    heads: p.heads,
                    base: 10000.0,
                },
                &[&q],
            );
            let kr = b.node(
                n("kr"),
                Op::Rope {
                    heads: p.heads,
                    base: 10000.0,
                },
                &[&k],
            );
            let a = b.node(n("attn"), Op::Attention { heads: p.heads }, &[&qr, &kr, &v]);
            let o = b.node(n("o"), Op::MatMul, &[&a, &w[4]]);
            let x1 = b.node(n("res1"), Op::Add, &[&x, &o]);
            let h2 = b.node(n("ln2"), Op::RmsNorm { eps: 1e-5 }, &[&x1, &w[5]]);
            let g = b.node(n("w1"), Op::MatMul, &[&h2, &w[6]]);
            let g = b.node(n("silu"), Op::Silu, &[&g]);
            let u = b.node(n("w3"), Op::MatMul, &[&h2, &w[7]]);
            let gu = b.node(n("gate"), Op::Mul, &[&g, &u]);
            let f = b.node(n("w2"), Op::MatMul, &[&gu, &w[8]]);
            x = b.node(n("res2"), Op::Add, &[&x1, &f]);
        }
        let xf = b.node(format!("s{st}.lnf"), Op::RmsNorm { eps: 1e-5 }, &[&x, &lnf]);
        let last = b.node(format!("s{st}.last"), Op::LastRow, &[&xf]);
        let logits = b.node(
            format!("s{st}.logits"),
            Op::QMatMul,
            &[&last, &head, &head_s],
        );
        let tok = b.node(
            format!("s{st}.sample"),
            Op::Sample {
                temperature: 0.8,
                top_k: 40,
            },
            &[&logits],
        );
        let id = if st + 1 == p.gen {
            "tokens".to_string()
        } else {
            format!("s{st}.seq")
        };
        seq = b.node(id, Op::Append, &[&seq, &tok]);
    }
    let prompt: Vec<i32> = DEFAULT_PROMPT
        .bytes()
        .cycle()
        .take(p.prompt_len)
        .map(i32::from)
        .collect();
    let inputs = vec![(
        "prompt".to_string(),
        Tensor::i32(vec![p.prompt_len], prompt)?,
    )];
    b.finish("lm", inputs, vec![seq])
}

fn diffusion(size: Size) -> Result<Workload> {
    let (hw, hid, steps) = match size {
        Size::Tiny => (8, 8, 3),
        Size::Small => (16, 16, 6),
        Size::Large => (64, 32, 10),
    };
    let c = 3;
    let mut b = Builder::new();
    let w1 = b.randn("conv1.w", vec![hid, c, 3, 3], 1.0 / ((c * 9) as f32).sqrt())?;
    let w2 = b.randn(
        "conv2.w",
        vec![c, hid, 3, 3],
        0.5 / ((hid * 9) as f32).sqrt(),
    )?;
    let b2 = b.weight("conv2.b", Tensor::f32(vec![c], vec![0.0; c])?);
    let mut x = b.node(
        "x0".into(),
        Op::RandN {
            shape: vec![c, hw, hw],
        },
        &[],
    );
    for s in 0..steps {
        // A simple schedule: step size shrinks linearly; the state is rescaled each step.
        let cstep = 0.3 * (steps - s) as f32 / steps as f32;
        let h = b.node(
            format!("t{s}.conv1"),
            Op::Conv2d { stride: 1, pad: 1 },
            &[&x, &w1, "guidance"],
        );
        let h = b.node(format!("t{s}.silu"), Op::Silu, &[&h]);
        let eps = b.node(
            format!("t{s}.eps"),
            Op::Conv2d { stride: 1, pad: 1 },
            &[&h, &w2, &b2],
        );
        let se = b.node(format!("t{s}.step"), Op::Scale { factor: -cstep }, &[&eps]);
        let xn = b.node(format!("t{s}.x"), Op::Add, &[&x, &se]);
        let id = if s + 1 == steps {
            "image".to_string()
        } else {
            format!("t{s}.xs")
        };
        x = b.node(id, Op::Scale { factor: 0.98 }, &[&xn]);
    }
    let guidance: Vec<f32> = (0..hid).map(|i| 0.1 * detmath::sin(i as f32)).collect();
    let inputs = vec![("guidance".to_string(), Tensor::f32(vec![hid], guidance)?)];
    b.finish("diffusion", inputs, vec![x])
}

fn audio(size: Size) -> Result<Workload> {
    let (n, win, hop, mels, outc) = match size {
        Size::Tiny => (512, 64, 32, 8, 4),
        Size::Small => (4000, 200, 100, 16, 8),
        Size::Large => (16000, 400, 160, 40, 32),
    };
    let bins = win / 2 + 1;
    let mut b = Builder::new();
    // DFT basis with a Hann window folded in, from our own sin/cos.
    let two_pi = 2.0 * std::f32::consts::PI;
    let mut cosb = vec![0.0f32; win * bins];
    let mut sinb = vec![0.0f32; win * bins];
    for t in 0..win {
        let hann = 0.5 - 0.5 * detmath::cos(two_pi * t as f32 / win as f32);
        for k in 0..bins {
            let ang = two_pi * ((t * k) % win) as f32 / win as f32;
            cosb[t * bins + k] = hann * detmath::cos(ang);
            sinb[t * bins + k] = -hann * detmath::sin(ang);
        }
    }
    let cb = b.weight("dft.cos", Tensor::f32(vec![win, bins], cosb)?);
    let sb = b.weight("dft.sin", Tensor::f32(vec![win, bins], sinb)?);
    // Triangular "mel-like" filterbank (linear spacing).
    let mut fb = vec![0.0f32; bins * mels];
    for m in 0..mels {
        let centre = (m + 1) as f32 * bins as f32 / (mels + 1) as f32;
        let width = bins as f32 / (mels + 1) as f32;
        for k in 0..bins {
            let dd = (k as f32 - centre).abs();
            if dd < width {
                fb[k * mels + m] = (1.0 - dd / width) / width;
            }
        }
    }
    let fbw = b.weight("mel.fb", Tensor::f32(vec![bins, mels], fb)?);
    let lnw = b.ones("ln.w", mels)?;
    let lnb = b.weight("ln.b", Tensor::f32(vec![mels], vec![0.0; mels])?);
    let cw = b.randn(
        "conv.w",
        vec![outc, mels, 1, 3],
        1.0 / ((mels * 3) as f32).sqrt(),
    )?;
    let cbias = b.weight("conv.b", Tensor::f32(vec![outc], vec![0.01; outc])?);
    let frames_n = (n - win) / hop + 1;
    let fr = b.node("frames".into(), Op::Frames { win, hop }, &["waveform"]);
    let re = b.node("re".into(), Op::MatMul, &[&fr, &cb]);
    let im = b.node("im".into(), Op::MatMul, &[&fr, &sb]);
    let re2 = b.node("re2".into(), Op::Mul, &[&re, &re]);
    let im2 = b.node("im2".into(), Op::Mul, &[&im, &im]);
    let pw = b.node("power".into(), Op::Add, &[&re2, &im2]);
    let mel = b.node("mel".into(), Op::MatMul, &[&pw, &fbw]);
    let ln = b.node(
        "mel_norm".into(),
        Op::LayerNorm { eps: 1e-5 },
        &[&mel, &lnw, &lnb],
    );
    let tr = b.node("mel_t".into(), Op::Transpose, &[&ln]);
    let r = b.node(
        "mel_img".into(),
        Op::Reshape {
            shape: vec![mels, 1, frames_n],
        },
        &[&tr],
    );
    let cv = b.node(
        "conv".into(),
        Op::Conv2d { stride: 1, pad: 0 },
        &[&r, &cw, &cbias],
    );
    let g = b.node("features".into(), Op::Gelu, &[&cv]);
    let sm_in = b.node(
        "feat2d".into(),
        Op::Reshape {
            shape: vec![outc, frames_n - 2],
        },
        &[&g],
    );
    let sm = b.node("attention_map".into(), Op::Softmax, &[&sm_in]);
    let wave: Vec<f32> = (0..n)
        .map(|t| {
            let tf = t as f32;
            0.5 * detmath::sin(0.05 * tf)
                + 0.25 * detmath::sin(0.31 * tf)
                + 0.1 * detmath::cos(1.7 * tf)
        })
        .collect();
    let inputs = vec![("waveform".to_string(), Tensor::f32(vec![n], wave)?)];
    b.finish("audio", inputs, vec![mel, g, sm])
}
