//! The `diffusion` workflow (node ids `s<step>:<id>`): the shipped terrain consistency UNet (ONNX) under the
//! consistency-model multistep sampler, as one havn-exec manifest per step count.
//!
//! For `steps` = N: `x₀ = z₀·σ₀`, `d₀ = D(x₀, σ₀, label)`; for i ≥ 1
//! `xᵢ = dᵢ₋₁ + zᵢ·sqrt(σᵢ² − σ_min²)`, `dᵢ = D(xᵢ, σᵢ, label)`; the output `height`
//! is `d_{N−1}` as `[128, 128]` in model space (−1 = lowest, 1 = highest). Each `zᵢ` is a
//! RandN node (Philox keyed by the job seed and the node index); σᵢ follows the Karras
//! schedule (ρ = 7) from 80 to 0.002, computed with detmath so every node gets the same
//! bits. The job inputs (σᵢ, noise scales, label) are derived from the request JSON.

use crate::error::{OnnxError, Result};
use crate::import::Graph;
use havn_exec::detmath;
use havn_exec::manifest::{Manifest, Node, TensorSpec};
use havn_exec::ops::{BinFn, Op};
use havn_exec::tensor::{save_safetensors, DType, Tensor};
use havn_proto::{Cid, ComputeClass};
use std::collections::BTreeMap;

/// The workflow id.
pub const WORKFLOW: &str = "diffusion";
pub use havn_proto::media::{DiffusionRequest, MAX_STEPS};

/// Side of the square height field the model makes.
pub const SIZE: usize = havn_proto::media::DIFFUSION_SIZE as usize;
pub const SIGMA_MAX: f32 = 80.0;
pub const SIGMA_MIN: f32 = 0.002;
const RHO: f32 = 7.0;

fn req_err(field: &str, reason: String) -> OnnxError {
    OnnxError::Request {
        field: field.into(),
        reason,
    }
}

/// The sampler's noise levels for `steps` steps: σ₀ = 80, then the Karras schedule.
pub fn sigmas(steps: u32) -> Vec<f32> {
    let a = detmath::exp(detmath::log(SIGMA_MAX) / RHO);
    let b = detmath::exp(detmath::log(SIGMA_MIN) / RHO);
    (0..steps)
        .map(|i| {
            if i == 0 {
                return SIGMA_MAX;
            }
            let t = i as f32 / steps as f32;
            detmath::exp(RHO * detmath::log(a + t * (b - a)))
        })
        .collect()
}

/// Version of the importer + sampler: part of the workflow checksum, bumped whenever
/// the same ONNX file would import to other manifests or weights.
pub const IMPORT_VERSION: u32 = 1;

/// The checksum a node lists for the `diffusion` workflow: the ONNX file's CID and the
/// importer version (the import is deterministic, so they fix every manifest and the
/// weights; each job's manifest follows from its request's `steps`, and the receipt's
/// runtime hash commits to that manifest).
pub fn workflow_checksum(model_cid: &Cid) -> [u8; 32] {
    use sha3::{Digest, Sha3_256};
    let mut h = Sha3_256::new();
    h.update(b"havn-onnx/diffusion/v1\0");
    h.update(model_cid.digest());
    h.update(IMPORT_VERSION.to_le_bytes());
    h.finalize().into()
}

/// The job's outputs file: `height` (f32 [128,128]) and `png` (u8, the PNG of
/// [`png`]), as safetensors; and the PNG bytes.
pub fn outputs(height: &Tensor) -> Result<(Vec<u8>, Vec<u8>)> {
    use safetensors::tensor::{Dtype, TensorView};
    let image = png(height)?;
    let data = height.to_le_bytes();
    let bad = |e: safetensors::SafeTensorError| OnnxError::Model(format!("encoding outputs: {e}"));
    let views = vec![
        (
            "height",
            TensorView::new(Dtype::F32, height.shape.clone(), &data).map_err(bad)?,
        ),
        (
            "png",
            TensorView::new(Dtype::U8, vec![image.len()], &image).map_err(bad)?,
        ),
    ];
    let bytes = safetensors::serialize(views, None).map_err(bad)?;
    Ok((bytes, image))
}

/// The loaded model: its imported graph and its weights file.
#[derive(Debug, Clone)]
pub struct DiffusionModel {
    /// CID of the ONNX file.
    pub cid: Cid,
    pub graph: Graph,
    /// The weights as safetensors (the manifest's `weights_cid`).
    pub weights: Vec<u8>,
    pub weights_cid: Cid,
}

impl DiffusionModel {
    /// Imports the ONNX file (batch 1) and checks it has the terrain UNet's interface.
    pub fn from_bytes(onnx: &[u8]) -> Result<Self> {
        let dims = BTreeMap::from([("batch".to_owned(), 1usize)]);
        let graph = crate::import(onnx, &dims)?;
        let want = [
            ("noisy", vec![1, 1, SIZE, SIZE]),
            ("sigma", vec![1]),
            ("difficulty", vec![1]),
        ];
        for (name, shape) in &want {
            if !graph
                .inputs
                .iter()
                .any(|i| i.name == *name && i.shape == *shape)
            {
                return Err(OnnxError::Model(format!(
                    "not the terrain UNet: no input {name} {shape:?}"
                )));
            }
        }
        if graph.inputs.len() != want.len() || graph.outputs.len() != 1 {
            return Err(OnnxError::Model(
                "not the terrain UNet: expected inputs noisy, sigma, difficulty and one output"
                    .into(),
            ));
        }
        let weights = save_safetensors(&graph.weights)?;
        Ok(DiffusionModel {
            cid: Cid::of_bytes(onnx),
            weights_cid: Cid::of_bytes(&weights),
            graph,
            weights,
        })
    }

    fn weight_specs(&self) -> Vec<TensorSpec> {
        self.graph
            .weights
            .iter()
            .map(|(n, t)| TensorSpec {
                name: n.clone(),
                dtype: DType::F32,
                shape: t.shape.clone(),
            })
            .collect()
    }

    /// The workflow for `steps` sampler steps.
    pub fn manifest(&self, steps: u32) -> Result<Manifest> {
        if !(1..=MAX_STEPS).contains(&steps) {
            return Err(req_err(
                "steps",
                format!("{steps} is outside 1..={MAX_STEPS}"),
            ));
        }
        let scalar = |name: String| TensorSpec {
            name,
            dtype: DType::F32,
            shape: vec![1],
        };
        let mut inputs = vec![scalar("difficulty".into())];
        let mut nodes = Vec::new();
        let mut prev: Option<String> = None;
        for i in 0..steps {
            inputs.push(scalar(format!("sigma_{i}")));
            inputs.push(scalar(format!("noise_scale_{i}")));
            let z = format!("z{i}");
            nodes.push(Node {
                id: z.clone(),
                op: Op::RandN {
                    shape: vec![1, 1, SIZE, SIZE],
                },
                inputs: vec![],
            });
            let noise = format!("noise{i}");
            nodes.push(Node {
                id: noise.clone(),
                op: Op::Binary { f: BinFn::Mul },
                inputs: vec![z, format!("noise_scale_{i}")],
            });
            let x = match &prev {
                None => noise,
                Some(p) => {
                    let x = format!("x{i}");
                    nodes.push(Node {
                        id: x.clone(),
                        op: Op::Binary { f: BinFn::Add },
                        inputs: vec![p.clone(), noise],
                    });
                    x
                }
            };
            let bind = BTreeMap::from([
                ("noisy".to_owned(), x),
                ("sigma".to_owned(), format!("sigma_{i}")),
                ("difficulty".to_owned(), "difficulty".to_owned()),
            ]);
            let (ns, outs) = self.graph.instantiate(&format!("s{i}:"), &bind)?;
            nodes.extend(ns);
            prev = outs.into_values().next();
        }
        nodes.push(Node {
            id: "height".into(),
            op: Op::Reshape {
                shape: vec![SIZE, SIZE],
            },
            inputs: vec![prev.unwrap_or_default()],
        });
        Ok(Manifest {
            name: "diffusion".into(),
            class: ComputeClass::S,
            inputs,
            weights_cid: Some(self.weights_cid),
            weights: self.weight_specs(),
            nodes,
            outputs: vec!["height".into()],
        })
    }

    /// One call of the UNet with its own inputs as job inputs (`noisy`, `sigma`,
    /// `difficulty`) and output `denoised`: the reference-agreement tests run this.
    pub fn unet_manifest(&self) -> Result<Manifest> {
        let bind: BTreeMap<String, String> = self
            .graph
            .inputs
            .iter()
            .map(|i| (i.name.clone(), i.name.clone()))
            .collect();
        let (nodes, _) = self.graph.instantiate("", &bind)?;
        Ok(Manifest {
            name: "terrain-unet".into(),
            class: ComputeClass::S,
            inputs: self.graph.inputs.clone(),
            weights_cid: Some(self.weights_cid),
            weights: self.weight_specs(),
            nodes,
            outputs: self.graph.outputs.iter().map(|(_, r)| r.clone()).collect(),
        })
    }
}

/// The job inputs (safetensors) of a validated request.
pub fn inputs(req: &DiffusionRequest) -> Result<Vec<u8>> {
    req.validate()?;
    let label = (req.difficulty - 1) as f32 / 99.0;
    let mut ts = vec![("difficulty".to_owned(), Tensor::f32(vec![1], vec![label])?)];
    for (i, s) in sigmas(req.steps).into_iter().enumerate() {
        let scale = if i == 0 {
            s
        } else {
            (s * s - SIGMA_MIN * SIGMA_MIN).sqrt()
        };
        ts.push((format!("sigma_{i}"), Tensor::f32(vec![1], vec![s])?));
        ts.push((
            format!("noise_scale_{i}"),
            Tensor::f32(vec![1], vec![scale])?,
        ));
    }
    Ok(save_safetensors(&ts)?)
}

/// The height field as a 16-bit greyscale PNG: model value v ↦ round(clamp((v+1)/2)·65535).
/// Fixed encoder settings, no timestamps: the same bytes for the same tensor.
pub fn png(height: &Tensor) -> Result<Vec<u8>> {
    let v = height.as_f32("height")?;
    let [h, w] = height.shape[..] else {
        return Err(OnnxError::Model(format!(
            "height field has shape {:?}",
            height.shape
        )));
    };
    let mut px = Vec::with_capacity(v.len() * 2);
    for &x in v {
        let u = ((x + 1.0) * 0.5).clamp(0.0, 1.0);
        px.extend_from_slice(&((u * 65535.0).round_ties_even() as u16).to_be_bytes());
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Sixteen);
    enc.set_compression(png::Compression::Balanced);
    enc.set_filter(png::Filter::Paeth);
    let mut wr = enc
        .write_header()
        .map_err(|e| OnnxError::Model(format!("png: {e}")))?;
    wr.write_image_data(&px)
        .map_err(|e| OnnxError::Model(format!("png: {e}")))?;
    wr.finish()
        .map_err(|e| OnnxError::Model(format!("png: {e}")))?;
    Ok(out)
}

/// Runs a manifest of this model on its weights: registry, preflight, execute. The glue
/// `havnctl run diffusion` and the tests share.
pub fn execute(
    model: &DiffusionModel,
    manifest: &Manifest,
    inputs: Vec<u8>,
    seed: u64,
    exec: &havn_exec::Executor,
    opts: &havn_exec::RunOptions,
) -> Result<(havn_exec::PreparedJob, havn_exec::RunResult)> {
    let mut registry = havn_exec::ManifestRegistry::new();
    let checksum = registry.register(manifest);
    let job = havn_exec::Job {
        checksum,
        manifest: manifest.clone(),
        weights: model.weights.clone(),
        inputs_cid: Cid::of_bytes(&inputs),
        inputs,
        seed,
    };
    let prepared = havn_exec::preflight(&registry, &job)?;
    let res = exec.execute(&prepared, opts)?;
    Ok((prepared, res))
}

impl DiffusionModel {
    /// The manifest (over 1..=MAX_STEPS steps) whose checksum is `checksum_hex`: how a
    /// validator finds the workflow a proof or receipt names.
    pub fn manifest_for_checksum(&self, checksum_hex: &str) -> Option<Manifest> {
        (1..=MAX_STEPS)
            .filter_map(|s| self.manifest(s).ok())
            .find(|m| havn_exec::manifest::hex(&m.checksum()) == checksum_hex)
    }
}
