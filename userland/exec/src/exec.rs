//! Jobs, preflight, the DAG executor with checkpoints, accounting and node proofs.

use crate::cpu::{self, OpCtx};
use crate::error::{ExecError, Result};
use crate::manifest::{hex, Checksum, Manifest, ManifestRegistry, Plan, TensorSpec};
use crate::merkle::{self, NodeProof};
use crate::ops::Op;
use crate::tensor::{self, Tensor};
use havn_proto::Cid;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A job as submitted: the manifest it claims to be, the blobs and the seed.
#[derive(Debug, Clone)]
pub struct Job {
    /// Registered checksum of the workflow the job asks for.
    pub checksum: Checksum,
    pub manifest: Manifest,
    /// Weights safetensors bytes (must match `manifest.weights_cid`).
    pub weights: Vec<u8>,
    /// Inputs safetensors bytes.
    pub inputs: Vec<u8>,
    /// The CID the orchestrator gave for `inputs`.
    pub inputs_cid: Cid,
    pub seed: u64,
}

/// A job that passed preflight: everything checked, nothing computed yet.
#[derive(Debug, Clone)]
pub struct PreparedJob {
    pub manifest: Manifest,
    pub checksum: Checksum,
    pub seed: u64,
    pub inputs_cid: Cid,
    pub plan: Plan,
    /// Job inputs and weights by name.
    pub values: BTreeMap<String, Tensor>,
}

fn check_spec(spec: &TensorSpec, t: &Tensor) -> Result<()> {
    if t.dtype() != spec.dtype {
        return Err(ExecError::DTypeMismatch {
            name: spec.name.clone(),
            expected: spec.dtype,
            got: t.dtype(),
        });
    }
    if t.shape != spec.shape {
        return Err(ExecError::ShapeMismatch {
            name: spec.name.clone(),
            expected: spec.shape.clone(),
            got: t.shape.clone(),
        });
    }
    if let Some(index) = t.first_non_finite() {
        return Err(ExecError::NonFinite {
            name: spec.name.clone(),
            index,
        });
    }
    Ok(())
}

/// Preflight: manifest checksum against the registry, DAG validation (cycles, references,
/// shapes), blob CIDs, and every declared tensor's presence, dtype, shape and finiteness.
pub fn preflight(registry: &ManifestRegistry, job: &Job) -> Result<PreparedJob> {
    registry.check(&job.checksum, &job.manifest)?;
    let plan = job.manifest.plan()?;
    let mut values = BTreeMap::new();
    type Blob<'a> = (&'a str, &'a [u8], Option<Cid>, &'a Vec<TensorSpec>);
    let blobs: [Blob<'_>; 2] = [
        (
            "weights",
            &job.weights,
            job.manifest.weights_cid,
            &job.manifest.weights,
        ),
        (
            "inputs",
            &job.inputs,
            Some(job.inputs_cid),
            &job.manifest.inputs,
        ),
    ];
    for (what, bytes, cid, specs) in blobs {
        let Some(cid) = cid else {
            if !specs.is_empty() {
                return Err(ExecError::MissingTensor {
                    name: format!("{what} (manifest has no weights CID)"),
                });
            }
            continue;
        };
        if !cid.verify(bytes) {
            return Err(ExecError::CidMismatch {
                what: what.into(),
                cid: cid.to_string(),
                actual: Cid::of_bytes(bytes).to_string(),
            });
        }
        let mut named: BTreeMap<String, Tensor> =
            tensor::load_safetensors(bytes, what)?.into_iter().collect();
        for spec in specs {
            let t = named
                .remove(&spec.name)
                .ok_or_else(|| ExecError::MissingTensor {
                    name: spec.name.clone(),
                })?;
            check_spec(spec, &t)?;
            values.insert(spec.name.clone(), t);
        }
    }
    Ok(PreparedJob {
        manifest: job.manifest.clone(),
        checksum: job.checksum,
        seed: job.seed,
        inputs_cid: job.inputs_cid,
        plan,
        values,
    })
}

/// Preflight on a particular node: refuses a job whose compute class this node cannot
/// honestly serve (e.g. a GPU class on a CPU-only node), then runs [`preflight`].
pub fn preflight_for_node(
    registry: &ManifestRegistry,
    job: &Job,
    caps: &crate::caps::Capabilities,
) -> Result<PreparedJob> {
    caps.require(job.manifest.class)?;
    preflight(registry, job)
}

/// Run-time options.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Persist each node's output here and resume from what is already there.
    pub checkpoint_dir: Option<PathBuf>,
    /// Test hook: abort the process right after node `k` (topological position) is
    /// checkpointed, to simulate a crash.
    pub abort_after: Option<usize>,
    /// Keep every node's output in [`RunResult::node_outputs`] (needed to hand a
    /// validator the inputs of a challenged node).
    pub keep_node_outputs: bool,
    /// Receives a [`Progress`] after every node (execd turns these into heartbeats).
    pub progress: Option<std::sync::mpsc::Sender<Progress>>,
    /// Checked before every node; when set the run stops with [`ExecError::Cancelled`]
    /// (checkpoints written so far stay valid for a later resume).
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Compute nothing: every node must come from `checkpoint_dir` (which must already
    /// belong to this job), else [`ExecError::Checkpoint`]. Used to rebuild a finished
    /// run's commitment and node outputs (challenge material) from what it left on disk.
    pub resume_only: bool,
}

/// Progress report sent after each node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Nodes finished (computed or resumed).
    pub done: usize,
    pub total: usize,
    pub node_id: String,
}

/// Per-node accounting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStats {
    pub id: String,
    pub op: String,
    pub hash: String,
    pub flops: u64,
    pub bytes: u64,
    pub latency_us: u64,
    /// Loaded from a checkpoint rather than computed.
    pub resumed: bool,
}

/// Whole-job accounting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Accounting {
    /// Gas-equivalent: FLOPs + bytes moved, summed over nodes.
    pub gas: u64,
    pub flops: u64,
    pub bytes: u64,
    /// Energy in joules: measured GPU power × time where NVML is present
    /// (`energy_source = "nvml"`), else the documented model [`energy_estimate_j`].
    pub energy_j: f64,
    /// `nvml` or `model`.
    pub energy_source: String,
    pub latency_ms: u64,
    pub backend: String,
    pub gpu_name: Option<String>,
    pub gpu_vram_bytes: Option<u64>,
    /// GPU power, utilisation and memory in use at the end of the run (NVML).
    pub gpu_telemetry: Option<crate::telemetry::GpuSample>,
}

/// Energy model (documented, deterministic): `flops · e_flop + bytes · e_byte` with
/// e_flop = 50 pJ and e_byte = 20 pJ on the CPU backend, 10 pJ and 5 pJ on a GPU (an H100
/// at ~60 TFLOP/s FP32 within ~700 W, HBM3 at a few pJ/byte). Idle power is not charged,
/// so the estimate depends only on the work, not on the machine's load.
pub fn energy_estimate_j(flops: u64, bytes: u64, gpu: bool) -> f64 {
    let (ef, eb) = if gpu {
        (10e-12, 5e-12)
    } else {
        (50e-12, 20e-12)
    };
    flops as f64 * ef + bytes as f64 * eb
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub workflow: String,
    pub manifest_checksum: Checksum,
    pub seed: u64,
    /// Node ids in topological (leaf) order.
    pub node_ids: Vec<String>,
    pub node_hashes: Vec<[u8; 32]>,
    pub merkle_root: [u8; 32],
    pub runtime_hash: [u8; 32],
    pub outputs: Vec<(String, Tensor)>,
    /// Exactly the bytes of `outputs.safetensors`.
    pub outputs_bytes: Vec<u8>,
    pub outputs_cid: Cid,
    pub nodes: Vec<NodeStats>,
    pub accounting: Accounting,
    /// Hashes of every job input and weight, by name.
    pub input_hashes: BTreeMap<String, [u8; 32]>,
    /// Every node's output by id, when [`RunOptions::keep_node_outputs`] was set.
    pub node_outputs: BTreeMap<String, Tensor>,
    node_inputs: Vec<Vec<String>>,
}

impl RunResult {
    /// The leaf indices of the DAG nodes whose outputs node `index` reads (its
    /// parents), in its input order; job inputs and weights are not nodes.
    pub fn parents(&self, index: usize) -> Vec<usize> {
        self.node_inputs
            .get(index)
            .map(|ins| {
                ins.iter()
                    .filter_map(|n| self.node_ids.iter().position(|id| id == n))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The input tensors a validator needs to re-execute `node_id` (from the job's
    /// inputs/weights and the kept node outputs).
    pub fn inputs_of(&self, job: &PreparedJob, node_id: &str) -> Result<Vec<(String, Tensor)>> {
        let index = self
            .node_ids
            .iter()
            .position(|n| n == node_id)
            .ok_or_else(|| ExecError::UnknownNode {
                node: node_id.into(),
            })?;
        self.node_inputs[index]
            .iter()
            .map(|n| {
                self.node_outputs
                    .get(n)
                    .or_else(|| job.values.get(n))
                    .map(|t| (n.clone(), t.clone()))
                    .ok_or_else(|| ExecError::MissingTensor {
                        name: format!("{n} (run without keep_node_outputs?)"),
                    })
            })
            .collect()
    }

    /// Merkle proof for one node.
    pub fn prove(&self, node_id: &str) -> Result<NodeProof> {
        let index = self
            .node_ids
            .iter()
            .position(|n| n == node_id)
            .ok_or_else(|| ExecError::UnknownNode {
                node: node_id.into(),
            })?;
        let hash_of = |name: &String| -> String {
            match self.node_ids.iter().position(|n| n == name) {
                Some(i) => hex(&self.node_hashes[i]),
                None => self
                    .input_hashes
                    .get(name)
                    .map(|h| hex(h))
                    .unwrap_or_default(),
            }
        };
        Ok(NodeProof {
            workflow: self.workflow.clone(),
            manifest_checksum: hex(&self.manifest_checksum),
            seed: self.seed,
            node_id: node_id.into(),
            index,
            leaves: self.node_ids.len(),
            node_hash: hex(&self.node_hashes[index]),
            path: merkle::merkle_path(&self.node_hashes, index)
                .into_iter()
                .map(|(h, l)| (hex(&h), l))
                .collect(),
            merkle_root: hex(&self.merkle_root),
            runtime_hash: hex(&self.runtime_hash),
            input_hashes: self.node_inputs[index]
                .iter()
                .map(|n| (n.clone(), hash_of(n)))
                .collect(),
        })
    }
}

/// Which backend computes.
#[derive(Clone)]
pub enum Backend {
    Cpu,
    #[cfg(feature = "cuda")]
    Cuda(std::sync::Arc<crate::gpu::CudaBackend>),
}

/// The executor: a backend and a CPU thread count (which never changes any bit).
#[derive(Clone)]
pub struct Executor {
    backend: Backend,
    threads: usize,
}

/// Backend choice for [`Executor::with_backend`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Cpu,
    Cuda,
    /// CUDA when usable, else CPU (with a logged reason).
    Auto,
}

impl Executor {
    /// CPU executor with `threads` threads (0 = all cores).
    pub fn cpu(threads: usize) -> Self {
        let threads = if threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        } else {
            threads
        };
        Executor {
            backend: Backend::Cpu,
            threads,
        }
    }

    /// Executor on the requested backend. `Cuda` fails when no usable GPU is present;
    /// `Auto` falls back to the CPU and logs why.
    pub fn with_backend(kind: BackendKind, threads: usize) -> Result<Self> {
        let cpu = Self::cpu(threads);
        if kind == BackendKind::Cpu {
            return Ok(cpu);
        }
        match crate::gpu_backend() {
            #[cfg(feature = "cuda")]
            Ok(b) => Ok(Executor {
                backend: Backend::Cuda(b),
                threads: cpu.threads,
            }),
            #[cfg(not(feature = "cuda"))]
            Ok(()) => Ok(cpu),
            Err(reason) if kind == BackendKind::Cuda => Err(ExecError::Cuda(reason)),
            Err(reason) => {
                tracing::info!(%reason, "CUDA unavailable, using the CPU backend");
                Ok(cpu)
            }
        }
    }

    /// Backend name (`cpu` or `cuda`).
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Cpu => "cpu",
            #[cfg(feature = "cuda")]
            Backend::Cuda(_) => "cuda",
        }
    }

    /// CPU threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs one op on this executor's backend. The inputs are checked against the op's
    /// contract first (so a direct call with bad shapes is an error, not a panic).
    pub fn run_op(
        &self,
        op: &Op,
        ins: &[&Tensor],
        out_shape: &[usize],
        ctx: &OpCtx<'_>,
    ) -> Result<Tensor> {
        let specs: Vec<_> = ins.iter().map(|t| (t.dtype(), t.shape.clone())).collect();
        let (_, want) = op.infer(ctx.node, &specs)?;
        if want != out_shape {
            return Err(ExecError::node(
                ctx.node,
                op.name(),
                format!("output shape {out_shape:?}, op gives {want:?}"),
            ));
        }
        if let Some(bad) = ins
            .iter()
            .find(|t| t.len() != crate::tensor::numel(&t.shape))
        {
            return Err(ExecError::node(
                ctx.node,
                op.name(),
                format!("tensor data does not fill shape {:?}", bad.shape),
            ));
        }
        match &self.backend {
            Backend::Cpu => cpu::run_op(op, ins, out_shape, ctx),
            #[cfg(feature = "cuda")]
            Backend::Cuda(g) => {
                if op.host_only() {
                    cpu::host_op(op, ins, out_shape, ctx)
                } else {
                    g.run_op(op, ins, out_shape, ctx)
                }
            }
        }
    }

    /// GPU preflight: refuses, before any work, a job whose working set cannot fit in
    /// the free VRAM. Estimate: twice the job's inputs and weights (device copies of
    /// operands and results, at 4 bytes an element) plus 64 MiB for kernels and scratch.
    fn check_vram(&self, job: &PreparedJob) -> Result<()> {
        match &self.backend {
            Backend::Cpu => {
                let _ = job;
                Ok(())
            }
            #[cfg(feature = "cuda")]
            Backend::Cuda(g) => {
                let bytes: u64 = job.values.values().map(|t| t.len() as u64 * 4).sum();
                let need = bytes.saturating_mul(2).saturating_add(64 << 20);
                match g.context().mem_get_info() {
                    Ok((free, _)) if (free as u64) < need => Err(ExecError::Cuda(format!(
                        "not enough free VRAM for this job: needs about {need} bytes, {free} free"
                    ))),
                    Ok(_) => Ok(()),
                    Err(e) => {
                        tracing::warn!(error = ?e, "cannot read free VRAM; continuing");
                        Ok(())
                    }
                }
            }
        }
    }

    fn gpu_info(&self) -> (Option<String>, Option<u64>) {
        match &self.backend {
            Backend::Cpu => (None, None),
            #[cfg(feature = "cuda")]
            Backend::Cuda(g) => (Some(g.name.clone()), Some(g.vram_bytes)),
        }
    }

    fn compute_node(
        &self,
        job_values: &BTreeMap<String, Tensor>,
        outs: &BTreeMap<String, Tensor>,
        manifest: &Manifest,
        plan: &Plan,
        pos: usize,
        seed: u64,
    ) -> Result<Tensor> {
        let node = &manifest.nodes[plan.order[pos]];
        let ins: Vec<&Tensor> = node
            .inputs
            .iter()
            .map(|n| {
                outs.get(n).or_else(|| job_values.get(n)).ok_or_else(|| {
                    ExecError::UnknownReference {
                        node: node.id.clone(),
                        name: n.clone(),
                    }
                })
            })
            .collect::<Result<_>>()?;
        let (dt, shape) =
            plan.out_specs
                .get(&node.id)
                .cloned()
                .ok_or_else(|| ExecError::UnknownNode {
                    node: node.id.clone(),
                })?;
        let ctx = OpCtx {
            node: &node.id,
            node_index: pos as u32,
            seed,
            threads: self.threads,
        };
        let t = self.run_op(&node.op, &ins, &shape, &ctx)?;
        if t.dtype() != dt || t.shape != shape {
            return Err(ExecError::node(
                &node.id,
                node.op.name(),
                "backend returned a wrong shape",
            ));
        }
        if let Some(index) = t.first_non_finite() {
            return Err(ExecError::NonFiniteOutput {
                node: node.id.clone(),
                index,
            });
        }
        Ok(t)
    }

    /// Executes a prepared job.
    pub fn execute(&self, job: &PreparedJob, opts: &RunOptions) -> Result<RunResult> {
        let start = Instant::now();
        let m = &job.manifest;
        let plan = &job.plan;
        match &opts.checkpoint_dir {
            Some(dir) if opts.resume_only && !dir.join("job.json").exists() => {
                return Err(ExecError::Checkpoint(format!(
                    "{} holds no checkpoint",
                    dir.display()
                )))
            }
            Some(dir) => open_checkpoint(dir, job)?,
            None if opts.resume_only => {
                return Err(ExecError::Checkpoint(
                    "resume_only needs a checkpoint_dir".into(),
                ))
            }
            None => {}
        }
        if !opts.resume_only {
            self.check_vram(job)?;
        }
        let telemetry: Option<crate::telemetry::GpuTelemetry> = match &self.backend {
            Backend::Cpu => None,
            #[cfg(feature = "cuda")]
            Backend::Cuda(_) => crate::telemetry::GpuTelemetry::open(),
        };
        let power_start = telemetry.as_ref().and_then(|t| t.sample());
        let mut outs: BTreeMap<String, Tensor> = BTreeMap::new();
        let mut stats = Vec::with_capacity(plan.order.len());
        let mut hashes = Vec::with_capacity(plan.order.len());
        for (pos, &ni) in plan.order.iter().enumerate() {
            let node = &m.nodes[ni];
            if opts
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            {
                return Err(ExecError::Cancelled {
                    at: node.id.clone(),
                });
            }
            let t0 = Instant::now();
            let ck = opts
                .checkpoint_dir
                .as_ref()
                .map(|d| d.join(format!("node-{pos:05}.safetensors")));
            let mut resumed = false;
            let mut out = None;
            if let Some(p) = ck.as_ref().filter(|p| p.exists()) {
                let bytes = std::fs::read(p).map_err(|e| ExecError::io(p, e))?;
                let mut v = tensor::load_safetensors(&bytes, "checkpoint")?;
                let spec = plan.out_specs.get(&node.id);
                match (v.pop(), spec) {
                    (Some((_, t)), Some((dt, sh))) if t.dtype() == *dt && t.shape == *sh => {
                        out = Some(t);
                        resumed = true;
                    }
                    _ => {
                        return Err(ExecError::Checkpoint(format!(
                            "{} does not hold node {}",
                            p.display(),
                            node.id
                        )))
                    }
                }
            }
            let out = match out {
                Some(t) => t,
                None if opts.resume_only => {
                    return Err(ExecError::Checkpoint(format!(
                        "node {} has no checkpoint",
                        node.id
                    )))
                }
                None => {
                    let t = self.compute_node(&job.values, &outs, m, plan, pos, job.seed)?;
                    if let Some(p) = &ck {
                        write_atomic(
                            p,
                            &tensor::save_safetensors(&[("out".to_string(), t.clone())])?,
                        )?;
                    }
                    t
                }
            };
            let h = out.hash_par(self.threads);
            let in_shapes: Vec<Vec<usize>> = node
                .inputs
                .iter()
                .map(|n| {
                    outs.get(n)
                        .or_else(|| job.values.get(n))
                        .map(|t| t.shape.clone())
                        .unwrap_or_default()
                })
                .collect();
            let in_bytes: u64 = node
                .inputs
                .iter()
                .filter_map(|n| outs.get(n).or_else(|| job.values.get(n)))
                .map(|t| (t.len() * elem_size(t)) as u64)
                .sum();
            stats.push(NodeStats {
                id: node.id.clone(),
                op: node.op.name().into(),
                hash: hex(&h),
                flops: node.op.flops(&in_shapes, &out.shape),
                bytes: in_bytes + (out.len() * elem_size(&out)) as u64,
                latency_us: t0.elapsed().as_micros() as u64,
                resumed,
            });
            hashes.push(h);
            outs.insert(node.id.clone(), out);
            if let Some(tx) = &opts.progress {
                // A dropped receiver only means nobody listens any more.
                let _ = tx.send(Progress {
                    done: pos + 1,
                    total: plan.order.len(),
                    node_id: node.id.clone(),
                });
            }
            if opts.abort_after == Some(pos) {
                tracing::warn!(pos, "abort hook: simulating a crash");
                std::process::abort();
            }
        }
        let root = merkle::merkle_root(&hashes);
        let rh = merkle::runtime_hash(&job.checksum, job.seed, &root);
        let mut outputs = Vec::new();
        for name in &m.outputs {
            let t = outs
                .get(name)
                .or_else(|| job.values.get(name))
                .ok_or_else(|| ExecError::UnknownReference {
                    node: "<outputs>".into(),
                    name: name.clone(),
                })?;
            outputs.push((name.clone(), t.clone()));
        }
        let outputs_bytes = tensor::save_safetensors(&outputs)?;
        let flops = stats.iter().map(|s| s.flops).sum::<u64>();
        let bytes = stats.iter().map(|s| s.bytes).sum::<u64>();
        let (gpu_name, gpu_vram_bytes) = self.gpu_info();
        let power_end = telemetry.as_ref().and_then(|t| t.sample());
        let (energy_j, energy_source) = match (&power_start, &power_end) {
            (Some(a), Some(b)) => (
                crate::telemetry::measured_energy_j(a, b, start.elapsed().as_secs_f64()),
                "nvml",
            ),
            _ => (energy_estimate_j(flops, bytes, gpu_name.is_some()), "model"),
        };
        let accounting = Accounting {
            gas: flops.saturating_add(bytes),
            flops,
            bytes,
            energy_j,
            energy_source: energy_source.into(),
            latency_ms: start.elapsed().as_millis() as u64,
            backend: self.backend_name().into(),
            gpu_name,
            gpu_vram_bytes,
            gpu_telemetry: power_end,
        };
        Ok(RunResult {
            workflow: m.name.clone(),
            manifest_checksum: job.checksum,
            seed: job.seed,
            node_ids: plan.order.iter().map(|&i| m.nodes[i].id.clone()).collect(),
            node_hashes: hashes,
            merkle_root: root,
            runtime_hash: rh,
            outputs_cid: Cid::of_bytes(&outputs_bytes),
            outputs_bytes,
            outputs,
            nodes: stats,
            accounting,
            input_hashes: job
                .values
                .iter()
                .map(|(k, v)| (k.clone(), v.hash()))
                .collect(),
            node_inputs: plan
                .order
                .iter()
                .map(|&i| m.nodes[i].inputs.clone())
                .collect(),
            node_outputs: if opts.keep_node_outputs {
                outs
            } else {
                BTreeMap::new()
            },
        })
    }

    /// Re-executes one node from its inputs (job inputs, weights and the outputs of the
    /// nodes it reads, by name), as a validator does for a challenged node.
    pub fn run_single_node(
        &self,
        manifest: &Manifest,
        node_id: &str,
        inputs: &BTreeMap<String, Tensor>,
        seed: u64,
    ) -> Result<Tensor> {
        let plan = manifest.plan()?;
        let pos = plan
            .order
            .iter()
            .position(|&i| manifest.nodes[i].id == node_id)
            .ok_or_else(|| ExecError::UnknownNode {
                node: node_id.into(),
            })?;
        let node = &manifest.nodes[plan.order[pos]];
        // Check the supplied inputs against the static plan before computing.
        for name in &node.inputs {
            let t = inputs
                .get(name)
                .ok_or_else(|| ExecError::MissingTensor { name: name.clone() })?;
            let spec = plan
                .out_specs
                .get(name)
                .map(|(d, s)| TensorSpec {
                    name: name.clone(),
                    dtype: *d,
                    shape: s.clone(),
                })
                .or_else(|| {
                    manifest
                        .inputs
                        .iter()
                        .chain(&manifest.weights)
                        .find(|s| &s.name == name)
                        .cloned()
                })
                .ok_or_else(|| ExecError::UnknownReference {
                    node: node_id.into(),
                    name: name.clone(),
                })?;
            check_spec(&spec, t)?;
        }
        self.compute_node(inputs, &BTreeMap::new(), manifest, &plan, pos, seed)
    }

    /// Validator path: checks the supplied inputs against the proof's input hashes,
    /// re-executes the node and verifies the output against the commitment.
    pub fn reexecute_and_verify(
        &self,
        manifest: &Manifest,
        proof: &NodeProof,
        inputs: &BTreeMap<String, Tensor>,
    ) -> Result<Tensor> {
        proof.check_commitment()?;
        if hex(&manifest.checksum()) != proof.manifest_checksum {
            return Err(ExecError::ProofInvalid(
                "proof is for another manifest".into(),
            ));
        }
        for (name, h) in &proof.input_hashes {
            let t = inputs
                .get(name)
                .ok_or_else(|| ExecError::MissingTensor { name: name.clone() })?;
            if &hex(&t.hash()) != h {
                return Err(ExecError::ProofInvalid(format!(
                    "input {name} does not match its committed hash"
                )));
            }
        }
        let out = self.run_single_node(manifest, &proof.node_id, inputs, proof.seed)?;
        merkle::verify_node(proof, &out)?;
        Ok(out)
    }
}

fn elem_size(t: &Tensor) -> usize {
    match t.dtype() {
        tensor::DType::I8 => 1,
        _ => 4,
    }
}

#[derive(Serialize, Deserialize, PartialEq)]
struct CheckpointHeader {
    manifest_checksum: String,
    seed: u64,
    inputs_cid: String,
}

fn open_checkpoint(dir: &Path, job: &PreparedJob) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| ExecError::io(dir, e))?;
    let hdr = CheckpointHeader {
        manifest_checksum: hex(&job.checksum),
        seed: job.seed,
        inputs_cid: job.inputs_cid.to_string(),
    };
    let p = dir.join("job.json");
    if p.exists() {
        let b = std::fs::read(&p).map_err(|e| ExecError::io(&p, e))?;
        let old: CheckpointHeader = serde_json::from_slice(&b)
            .map_err(|e| ExecError::Checkpoint(format!("{}: {e}", p.display())))?;
        if old != hdr {
            return Err(ExecError::Checkpoint(format!(
                "{} belongs to another job",
                dir.display()
            )));
        }
        return Ok(());
    }
    write_atomic(&p, &serde_json::to_vec(&hdr)?)
}

/// Write to a temp file, fsync it, rename over the target, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| ExecError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| ExecError::io(&tmp, e))?;
        f.sync_all().map_err(|e| ExecError::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| ExecError::io(path, e))?;
    let d = std::fs::File::open(dir).map_err(|e| ExecError::io(dir, e))?;
    d.sync_all().map_err(|e| ExecError::io(dir, e))?;
    Ok(())
}
