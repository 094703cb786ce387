//! `havnctl run`: execute a shipped workflow (or re-execute one node from a proof) with
//! the havn-exec engine. All logic lives in `havn_exec::cli`; this file parses and prints.
//!
//! Needs (in havnctl's Cargo.toml): `havn-exec = { path = "../exec", default-features = false }`
//! plus a `cuda = ["havn-exec/cuda"]` feature (on by default), `clap` (derive),
//! `anyhow`, `serde_json`.

use anyhow::Context;
use havn_exec::cli::{parse_input_arg, run_workflow, verify_node_from_files, RunRequest};
use havn_exec::workloads::Size;
use havn_exec::BackendKind;
use std::path::PathBuf;

/// Arguments of `havnctl run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Workflow to run: chat (SmolLM2), diffusion (the terrain UNet), transcribe
    /// (Whisper tiny.en), or the synthetic test graphs lm and audio.
    pub workflow: String,
    /// Override a job input: NAME=FILE, FILE a safetensors file holding tensor NAME.
    #[arg(long = "input", value_parser = parse_input_arg)]
    pub inputs: Vec<(String, PathBuf)>,
    /// Job seed (keys every random draw).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// CPU threads (0 = all cores); never changes the result.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Backend: cpu, cuda, or auto (CUDA when usable, else CPU).
    #[arg(long, default_value = "auto", value_parser = ["cpu", "cuda", "auto"])]
    pub backend: String,
    /// Workflow size preset: tiny, small or large.
    #[arg(long, default_value = "small")]
    pub size: String,
    /// Output directory (outputs.safetensors, run.json, manifest.json, checkpoint/).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write a Merkle proof and the input tensors for this node (repeatable).
    #[arg(long = "prove")]
    pub prove: Vec<String>,
    /// Do not checkpoint (and do not resume). diffusion never checkpoints.
    #[arg(long)]
    pub no_checkpoint: bool,
    /// Validator mode: re-execute the node of --proof FILE (with --node-inputs FILE)
    /// and verify it against the commitment instead of running the workflow.
    #[arg(long, requires = "node_inputs")]
    pub proof: Option<PathBuf>,
    /// Input tensors of the challenged node (written by --prove).
    #[arg(long)]
    pub node_inputs: Option<PathBuf>,
    /// The node id the proof must be for (optional cross-check).
    #[arg(long)]
    pub node: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub chat: crate::chat_cmd::ChatArgs,
    #[command(flatten)]
    pub diffusion: crate::diffusion_cmd::DiffusionArgs,
    #[command(flatten)]
    pub transcribe: crate::transcribe_cmd::TranscribeArgs,
}

fn backend(s: &str) -> BackendKind {
    match s {
        "cpu" => BackendKind::Cpu,
        "cuda" => BackendKind::Cuda,
        _ => BackendKind::Auto,
    }
}

/// Runs `havnctl run`.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.workflow == "chat" {
        return crate::chat_cmd::run(
            &args.chat,
            args.seed,
            args.threads,
            &args.backend,
            &args.out,
            args.json,
        );
    }
    if args.workflow == "transcribe" {
        return crate::transcribe_cmd::run(
            &args.transcribe,
            args.chat.store.clone(),
            args.threads,
            &args.out,
            args.json,
        );
    }
    if args.workflow == "diffusion" && args.proof.is_none() {
        return crate::diffusion_cmd::run(&crate::diffusion_cmd::DiffusionRun {
            args: &args.diffusion,
            store: args.chat.store.clone(),
            seed: args.seed,
            threads: args.threads,
            backend: backend(&args.backend),
            out: &args.out,
            prove: &args.prove,
            // A checkpoint is one fsync per node: ~1,300 per UNet call, far more than
            // recomputing the seconds-long run.
            checkpoint: false,
            json: args.json,
        });
    }
    let size: Size = args.size.parse().map_err(anyhow::Error::msg)?;
    if let (Some(proof), Some(inputs)) = (&args.proof, &args.node_inputs) {
        let p = if args.workflow == "diffusion" {
            crate::diffusion_cmd::verify(
                args.chat.store.clone(),
                proof,
                inputs,
                backend(&args.backend),
                args.threads,
            )
        } else {
            verify_node_from_files(
                &args.workflow,
                size,
                proof,
                inputs,
                backend(&args.backend),
                args.threads,
            )
            .map_err(anyhow::Error::from)
        }
        .with_context(|| format!("verifying {}", proof.display()))?;
        if let Some(n) = &args.node {
            anyhow::ensure!(
                n == &p.node_id,
                "proof is for node {:?}, not {n:?}",
                p.node_id
            );
        }
        if args.json {
            println!(
                "{}",
                serde_json::json!({"verified": true, "node": p.node_id, "node_hash": p.node_hash, "runtime_hash": p.runtime_hash})
            );
        } else {
            println!(
                "verified node {} (hash {}) against runtime_hash {}",
                p.node_id, p.node_hash, p.runtime_hash
            );
        }
        return Ok(());
    }
    let req = RunRequest {
        workflow: args.workflow,
        size,
        inputs: args.inputs,
        seed: args.seed,
        threads: args.threads,
        backend: backend(&args.backend),
        out: args.out,
        prove: args.prove,
        checkpoint: !args.no_checkpoint,
    };
    let report = run_workflow(&req)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("runtime_hash {}", report.runtime_hash);
        println!("outputs_cid {}", report.outputs_cid);
        println!(
            "workflow {} checksum {} backend {} ({} threads), {} nodes, {} ms, {:.3e} FLOP, energy ≈ {:.3} J",
            report.workflow,
            report.manifest_checksum,
            report.backend,
            report.threads,
            report.nodes.len(),
            report.accounting.latency_ms,
            report.accounting.flops as f64,
            report.accounting.energy_j
        );
        if let Some(t) = &report.text {
            println!("text {t:?}");
        }
        for p in &report.proofs {
            println!("proof {p}");
        }
    }
    Ok(())
}
