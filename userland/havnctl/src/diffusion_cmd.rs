//! `havnctl run diffusion`: one terrain height field from the shipped consistency UNet
//! (ONNX, through havn-onnx into the deterministic DAG), written as tensor and PNG, with
//! proofs on request; and the validator path that re-executes one node from a proof.

use crate::models_cmd::default_store;
use anyhow::Context;
use havn_exec::{BackendKind, Executor, RunOptions};
use havn_lm::store::{Store, TERRAIN_UNET};
use havn_onnx::diffusion::{self, DiffusionModel, DiffusionRequest};
use std::path::{Path, PathBuf};

/// The diffusion-specific options of `havnctl run`.
#[derive(Debug, Clone, clap::Args)]
pub struct DiffusionArgs {
    /// diffusion: sampler steps, 1 to 8 (the consistency model is distilled for 1).
    #[arg(long, default_value_t = 1)]
    pub steps: u32,
    /// diffusion: terrain difficulty label, 1 to 100.
    #[arg(long, default_value_t = 50)]
    pub difficulty: u32,
}

/// Where the run writes and what it reports.
pub struct DiffusionRun<'a> {
    pub args: &'a DiffusionArgs,
    pub store: Option<PathBuf>,
    pub seed: u64,
    pub threads: usize,
    pub backend: BackendKind,
    pub out: &'a Path,
    pub prove: &'a [String],
    pub checkpoint: bool,
    pub json: bool,
}

/// Loads the shipped UNet from the model store and imports it.
pub fn load(store: Option<PathBuf>, quiet: bool) -> anyhow::Result<DiffusionModel> {
    let dir = store.unwrap_or_else(default_store);
    let s = Store::open(&dir)?;
    if !quiet {
        eprintln!("loading {} from {}", TERRAIN_UNET.name, dir.display());
    }
    let (_, bytes) = s.read(TERRAIN_UNET.name).with_context(|| {
        format!(
            "the diffusion model is not in {} (havnctl models fetch --store {})",
            dir.display(),
            dir.display()
        )
    })?;
    DiffusionModel::from_bytes(&bytes).context("importing the terrain UNet")
}

fn write(p: &Path, b: &[u8]) -> anyhow::Result<()> {
    havn_exec::exec::write_atomic(p, b).with_context(|| format!("writing {}", p.display()))
}

/// Runs the diffusion workflow and prints the result.
pub fn run(r: &DiffusionRun<'_>) -> anyhow::Result<()> {
    let req = DiffusionRequest {
        steps: r.args.steps,
        difficulty: r.args.difficulty,
        ..Default::default()
    };
    req.validate()?;
    let t_load = std::time::Instant::now();
    let model = load(r.store.clone(), r.json)?;
    let load_s = t_load.elapsed().as_secs_f64();
    let manifest = model.manifest(req.steps)?;
    let inputs = diffusion::inputs(&req)?;
    let exec = Executor::with_backend(r.backend, r.threads)?;
    std::fs::create_dir_all(r.out).with_context(|| format!("creating {}", r.out.display()))?;
    let (tx, rx) = std::sync::mpsc::channel::<havn_exec::exec::Progress>();
    let quiet = r.json;
    let ticker = std::thread::spawn(move || {
        let mut last = 0;
        for p in rx {
            let pct = p.done * 100 / p.total.max(1);
            if !quiet && pct >= last + 10 {
                eprintln!("diffusion: {pct}% ({}/{} nodes)", p.done, p.total);
                last = pct;
            }
        }
    });
    let opts = RunOptions {
        checkpoint_dir: r.checkpoint.then(|| r.out.join("checkpoint")),
        keep_node_outputs: !r.prove.is_empty(),
        progress: Some(tx),
        ..Default::default()
    };
    let run = diffusion::execute(&model, &manifest, inputs.clone(), r.seed, &exec, &opts);
    drop(opts);
    let _ = ticker.join();
    let (prepared, res) = run?;
    let height = &res
        .outputs
        .first()
        .context("the workflow produced no output")?
        .1;
    let (outputs, image) = diffusion::outputs(height)?;
    let outputs_cid = havn_proto::Cid::of_bytes(&outputs);
    let png_path = r.out.join("terrain.png");
    write(&png_path, &image)?;
    write(&r.out.join("outputs.safetensors"), &outputs)?;
    write(&r.out.join("manifest.json"), &manifest.canonical_bytes())?;
    write(&r.out.join("request.json"), &req.canonical_json())?;
    write(&r.out.join("inputs.safetensors"), &inputs)?;
    let proofs = havn_exec::cli::write_proofs(r.out, &res, &prepared, r.prove)?;
    let hex = havn_exec::manifest::hex;
    let report = serde_json::json!({
        "workflow": "diffusion",
        "model": TERRAIN_UNET.name,
        "model_cid": model.cid.to_string(),
        "steps": req.steps,
        "difficulty": req.difficulty,
        "seed": r.seed,
        "runtime_hash": hex(&res.runtime_hash),
        "merkle_root": hex(&res.merkle_root),
        "manifest_checksum": hex(&res.manifest_checksum),
        "outputs_cid": outputs_cid.to_string(),
        "inputs_cid": havn_proto::Cid::of_bytes(&inputs).to_string(),
        "png": png_path.display().to_string(),
        "backend": exec.backend_name(),
        "threads": exec.threads(),
        "nodes": res.nodes.len(),
        "load_s": load_s,
        "latency_ms": res.accounting.latency_ms,
        "flops": res.accounting.flops,
        "energy_j": res.accounting.energy_j,
        "proofs": proofs,
    });
    write(&r.out.join("run.json"), format!("{report:#}\n").as_bytes())?;
    if r.json {
        println!("{report}");
    } else {
        println!("{}", png_path.display());
        eprintln!(
            "runtime_hash {}\noutputs_cid {}\n{} step(s), difficulty {}, {} nodes in {} ms on {} ({} threads)",
            hex(&res.runtime_hash),
            outputs_cid,
            req.steps,
            req.difficulty,
            res.nodes.len(),
            res.accounting.latency_ms,
            exec.backend_name(),
            exec.threads()
        );
        for p in &proofs {
            eprintln!("proof {p}");
        }
    }
    Ok(())
}

/// Validator path: re-executes the node of `proof_file` with the tensors of
/// `inputs_file` against the diffusion manifest the proof names.
pub fn verify(
    store: Option<PathBuf>,
    proof_file: &Path,
    inputs_file: &Path,
    backend: BackendKind,
    threads: usize,
) -> anyhow::Result<havn_exec::NodeProof> {
    let proof: havn_exec::NodeProof = serde_json::from_slice(
        &std::fs::read(proof_file).with_context(|| format!("reading {}", proof_file.display()))?,
    )
    .with_context(|| format!("parsing {}", proof_file.display()))?;
    let model = load(store, true)?;
    let manifest = model
        .manifest_for_checksum(&proof.manifest_checksum)
        .with_context(|| {
            format!(
                "the proof's manifest {} is not a diffusion workflow of this model",
                proof.manifest_checksum
            )
        })?;
    let bytes =
        std::fs::read(inputs_file).with_context(|| format!("reading {}", inputs_file.display()))?;
    let inputs = havn_exec::tensor::load_safetensors(&bytes, &inputs_file.display().to_string())?
        .into_iter()
        .collect();
    let exec = Executor::with_backend(backend, threads)?;
    exec.reexecute_and_verify(&manifest, &proof, &inputs)?;
    Ok(proof)
}

/// `havnctl challenge` for a diffusion job: the receipt must name this validator's model
/// (workflow checksum), the proof one of its manifests; then the node is re-executed
/// here alone and checked against the receipt's runtime hash.
pub fn verify_challenge(
    store: Option<PathBuf>,
    r: &havn_proto::Receipt,
    node_id: &str,
    proof_json: &[u8],
    inputs: &[u8],
    backend: BackendKind,
    threads: usize,
) -> anyhow::Result<havn_exec::NodeProof> {
    let model = load(store, true)?;
    anyhow::ensure!(
        diffusion::workflow_checksum(&model.cid) == r.manifest_checksum.0,
        "the receipt's workflow checksum {} is not this validator's diffusion model",
        r.manifest_checksum
    );
    let proof: havn_exec::NodeProof =
        serde_json::from_slice(proof_json).context("parsing the proof")?;
    let manifest = model
        .manifest_for_checksum(&proof.manifest_checksum)
        .with_context(|| {
            format!(
                "the proof's manifest {} is not a diffusion workflow of this model",
                proof.manifest_checksum
            )
        })?;
    let expected = havn_exec::challenge::Expected {
        workflow: r.workflow_id.to_string(),
        manifest_checksum: manifest.checksum(),
        seed: r.seed,
        runtime_hash: r.runtime_hash.0,
        node_id: node_id.to_owned(),
    };
    let exec = Executor::with_backend(backend, threads)?;
    Ok(havn_exec::challenge::verify_challenge(
        &exec,
        &manifest,
        &model.weights,
        &expected,
        proof_json,
        inputs,
    )?)
}
