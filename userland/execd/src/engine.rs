//! Job handling over the havn-exec engine.
//!
//! Challenge material. A finished job's checkpoint directory (one safetensors file per
//! DAG node output plus the job header) is not deleted after its receipt is signed: it
//! moves to `state_dir/execd/retained/<hash of job id>/` with the job's input bytes
//! (`inputs.safetensors`) and a `retained.json` record (job id, workflow, seed, signed
//! runtime hash, sequence number). Only the newest [`RETAIN_JOBS`] finished jobs are
//! kept. A `Prove { job_id, node_id }` request rebuilds the run from that directory
//! without computing anything (`RunOptions::resume_only`), checks it still gives the
//! signed runtime hash, and writes the node's proof JSON and input tensors into the
//! content-addressed artifact store (`state_dir/artifacts/<cid>`), which netd serves.
//! We keep the checkpoint rather than per-node artifacts because it is already on
//! disk, already written atomically, and keeps node outputs out of the public store
//! until a validator asks for one node.

mod chat_job;
mod diffusion_job;
mod finish;
mod reexec;
mod transcribe_job;

use crate::deadline::Deadline;
use havn_exec::workloads::{self, Size, Workload};
use havn_exec::{
    preflight, BackendKind, Capabilities, Executor, Job, ManifestRegistry, RunOptions,
};
use havn_ipc::Client;
use havn_proto::ipc::{
    CapabilityReport, ExecdAttestd, ExecdRequest, ExecdResponse, JobResult, NetdExecRequest,
    NetdExecResponse, RemoteError,
};
use havn_proto::{bounded, Backend, Cid, ComputeClass, Hash32, JobPayload, WorkflowRef};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How many finished jobs keep their checkpoints for `Prove` (oldest deleted first).
pub const RETAIN_JOBS: usize = 64;

/// `retained.json`: what a retained job directory holds.
#[derive(Debug, Serialize, Deserialize)]
struct RetainedJob {
    job_id: String,
    /// Who submitted it (job ids are scoped per submitter).
    #[serde(default)]
    submitter: String,
    workflow: String,
    seed: u64,
    /// The signed receipt's runtime hash (hex).
    runtime_hash: String,
    /// Order of retention (higher is newer).
    seq: u64,
    /// The per-node output hashes (hex, topological order) the runtime hash commits
    /// to: what a validator asks for to name a divergent node.
    #[serde(default)]
    leaves: Vec<String>,
    /// The job ran on a sealed (encrypted) input: only the envelope is retained, and
    /// challenge material, which would reveal the plaintext, is refused.
    #[serde(default)]
    sealed: bool,
}

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A shipped workload failed to build.
    #[error("building workload {name}: {source}")]
    Workload {
        /// Which.
        name: &'static str,
        /// Cause.
        source: havn_exec::ExecError,
    },
    /// The requested backend is unavailable.
    #[error("backend: {0}")]
    Backend(havn_exec::ExecError),
    /// The configured chat model is in the store but cannot be served.
    #[error("chat model: {0}")]
    Model(havn_lm::LmError),
    /// The diffusion model is in the store but does not import.
    #[error("diffusion model: {0}")]
    Onnx(String),
    /// State directory.
    #[error("state {path}: {source}")]
    State {
        /// Where.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// The executor with its registry of shipped workflows.
pub struct Engine {
    exec: Executor,
    caps: Capabilities,
    registry: ManifestRegistry,
    workflows: BTreeMap<String, Workload>,
    checkpoints: PathBuf,
    retained: PathBuf,
    retain: usize,
    next_seq: u64,
    artifacts: PathBuf,
    uploads: PathBuf,
    chat: Option<crate::chat::Chat>,
    diffusion: Option<crate::diffusion::Diffusion>,
    transcribe: Option<crate::transcribe::Transcribe>,
    /// `execd.test_only_fault = "perturb-leaf"`: this node cheats (tests and
    /// `scripts/demo-mesh` only).
    perturb_leaf: bool,
    /// This boot's payload key (from attestd): opens encrypted inputs in memory.
    payload_key: Option<havn_payload::PayloadKey>,
}

/// The input bytes a finished job retains for challenges.
struct Retain<'a> {
    /// The plaintext input, or the envelope of a sealed one.
    bytes: &'a [u8],
    /// Whether `bytes` is an envelope (the plaintext is never retained).
    sealed: bool,
}

fn refused(error: RemoteError, reason: &str) -> NetdExecResponse {
    tracing::info!(?error, reason, "request refused");
    NetdExecResponse::Refused {
        error,
        reason: bounded(reason),
    }
}

/// The directory name of a job's checkpoint (and retained) directory: job ids are
/// scoped per submitter.
fn job_dir_name(submitter: &str, job_id: &str) -> String {
    let scoped = [submitter.as_bytes(), b"\0", job_id.as_bytes()].concat();
    Hash32(havn_proto::sign::Domain::Manifest.digest(&scoped).0).to_hex()
}

fn read_retained(dir: &Path) -> Option<RetainedJob> {
    serde_json::from_slice(&std::fs::read(dir.join("retained.json")).ok()?).ok()
}

fn failed(ticket_id: u64, error: RemoteError, reason: &str) -> NetdExecResponse {
    tracing::warn!(ticket = ticket_id, ?error, reason, "job failed");
    NetdExecResponse::Failed {
        ticket_id,
        error,
        reason: bounded(reason),
    }
}

fn mkdir(p: &Path) -> Result<(), EngineError> {
    std::fs::create_dir_all(p).map_err(|source| EngineError::State {
        path: p.to_path_buf(),
        source,
    })
}

impl Engine {
    /// Builds the shipped workflows and picks the backend.
    pub fn open(cfg: &havn_config::NodeConfig) -> Result<Self, EngineError> {
        let kind = match cfg.execd.backend.as_str() {
            "cpu" => BackendKind::Cpu,
            "cuda" => BackendKind::Cuda,
            _ => BackendKind::Auto,
        };
        let exec = Executor::with_backend(kind, cfg.execd.threads).map_err(EngineError::Backend)?;
        let caps = Capabilities::detect();
        if caps.class().is_none() {
            tracing::warn!(
                cores = caps.cpu_cores,
                ram = caps.ram_bytes,
                "below the class S hardware profile; serving S jobs anyway"
            );
        }
        let mut registry = ManifestRegistry::new();
        let mut workflows = BTreeMap::new();
        // The synthetic `diffusion` graph is a havn-exec test fixture: the node's
        // diffusion workflow is the real model (crate::diffusion), or none.
        for name in workloads::NAMES.into_iter().filter(|n| *n != "diffusion") {
            let w = workloads::build(name, Size::Small)
                .map_err(|source| EngineError::Workload { name, source })?;
            registry.register(&w.manifest);
            workflows.insert(name.to_string(), w);
        }
        let checkpoints = cfg.daemon_state("execd").join("checkpoints");
        let retained = cfg.daemon_state("execd").join("retained");
        let artifacts = cfg.node.state_dir.join("artifacts");
        mkdir(&checkpoints)?;
        mkdir(&retained)?;
        mkdir(&artifacts)?;
        let next_seq = std::fs::read_dir(&retained)
            .map_err(|source| EngineError::State {
                path: retained.clone(),
                source,
            })?
            .filter_map(|e| read_retained(&e.ok()?.path()))
            .map(|r| r.seq.saturating_add(1))
            .max()
            .unwrap_or(0);
        Ok(Self {
            exec,
            caps,
            registry,
            workflows,
            checkpoints,
            retained,
            retain: RETAIN_JOBS,
            next_seq,
            artifacts,
            uploads: cfg.uploads_dir(),
            chat: crate::chat::Chat::open(cfg)?,
            diffusion: crate::diffusion::Diffusion::open(cfg)?,
            transcribe: crate::transcribe::Transcribe::open(cfg)?,
            perturb_leaf: {
                let on = cfg.execd.test_only_fault.as_deref() == Some("perturb-leaf");
                if on {
                    tracing::warn!("TEST ONLY: execd.test_only_fault = \"perturb-leaf\": this node signs wrong results");
                }
                on
            },
            payload_key: None,
        })
    }

    /// Installs this boot's payload key (attestd hands it over once per start).
    pub fn set_payload_key(&mut self, key: havn_payload::PayloadKey) {
        self.payload_key = Some(key);
    }

    /// Changes how many finished jobs keep their checkpoints (default [`RETAIN_JOBS`]).
    pub fn set_retention(&mut self, jobs: usize) {
        self.retain = jobs;
    }

    /// `cpu` or `cuda`.
    pub fn backend_name(&self) -> &'static str {
        self.exec.backend_name()
    }

    /// CPU threads.
    pub fn threads(&self) -> usize {
        self.exec.threads()
    }

    /// The registered workflows.
    pub fn workflow_refs(&self) -> Vec<WorkflowRef> {
        let mut refs: Vec<WorkflowRef> = self.chat.iter().map(|c| c.workflow_ref()).collect();
        refs.extend(self.diffusion.iter().map(|d| d.workflow_ref()));
        refs.extend(self.transcribe.iter().map(|t| t.workflow_ref()));
        refs.extend(self.workflows.iter().map(|(n, w)| WorkflowRef {
            id: bounded(n),
            checksum: Hash32(w.manifest.checksum()),
        }));
        refs
    }

    /// This node's capability report (also sent to attestd once at start, which signs
    /// the manifest validators see).
    pub fn capabilities(&self) -> CapabilityReport {
        let gpu = self.caps.gpus.first();
        CapabilityReport {
            compute_class: self.caps.class().unwrap_or(ComputeClass::S),
            cpu_cores: u16::try_from(self.caps.cpu_cores).unwrap_or(u16::MAX),
            ram_mib: u32::try_from(self.caps.ram_bytes >> 20).unwrap_or(u32::MAX),
            gpu_model: gpu.map(|g| bounded(&g.name)),
            vram_mib: gpu.map_or(0, |g| u32::try_from(g.vram_bytes >> 20).unwrap_or(u32::MAX)),
            workflows: self
                .workflow_refs()
                .into_iter()
                .take(havn_proto::MAX_WORKFLOWS)
                .collect(),
        }
    }

    /// Answers one request from netd.
    pub fn handle(
        &mut self,
        req: NetdExecRequest,
        attestd: &mut Client<ExecdAttestd>,
    ) -> NetdExecResponse {
        match req {
            NetdExecRequest::Capabilities => NetdExecResponse::Capabilities(self.capabilities()),
            NetdExecRequest::Run {
                ticket_id,
                payload,
                submitter,
            } => self.run_job(ticket_id, payload, &submitter, attestd),
            NetdExecRequest::Prove {
                job_id,
                node_id,
                submitter,
            } => self.prove(&submitter, &job_id, &node_id),
            NetdExecRequest::Reexecute { receipt, evidence } => {
                self.reexecute(receipt, evidence, attestd)
            }
            NetdExecRequest::Leaves { job_id, submitter } => self.leaves(&submitter, &job_id),
        }
    }

    /// Moves a finished job's checkpoint directory to the retained area, then deletes
    /// the oldest retained jobs beyond the retention count.
    fn retain_job(
        &mut self,
        ckpt: &Path,
        payload: &JobPayload,
        submitter: &str,
        runtime_hash: &Hash32,
        inputs: Retain<'_>,
        leaves: &[[u8; 32]],
    ) -> Result<(), String> {
        let Retain {
            bytes: inputs,
            sealed,
        } = inputs;
        let rec = RetainedJob {
            sealed,
            leaves: leaves.iter().map(|h| Hash32(*h).to_hex()).collect(),
            job_id: payload.job_id.to_string(),
            submitter: submitter.to_string(),
            workflow: payload.workflow.id.to_string(),
            seed: payload.seed,
            runtime_hash: runtime_hash.to_hex(),
            seq: self.next_seq,
        };
        self.next_seq = self.next_seq.saturating_add(1);
        let json = serde_json::to_vec(&rec).map_err(|e| e.to_string())?;
        havn_exec::exec::write_atomic(&ckpt.join("inputs.safetensors"), inputs)
            .and_then(|()| havn_exec::exec::write_atomic(&ckpt.join("retained.json"), &json))
            .map_err(|e| e.to_string())?;
        let dest = self.retained.join(job_dir_name(submitter, &payload.job_id));
        if dest.exists() {
            std::fs::remove_dir_all(&dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        }
        std::fs::rename(ckpt, &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        if let Ok(d) = std::fs::File::open(&self.retained) {
            let _ = d.sync_all();
        }
        self.prune();
        Ok(())
    }

    fn prune(&self) {
        let Ok(rd) = std::fs::read_dir(&self.retained) else {
            return;
        };
        // Unreadable records sort first (seq 0 with no record) and go first.
        let mut jobs: Vec<(u64, PathBuf)> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .map(|p| (read_retained(&p).map_or(0, |r| r.seq), p))
            .collect();
        jobs.sort();
        let excess = jobs.len().saturating_sub(self.retain);
        for (_, p) in jobs.into_iter().take(excess) {
            if let Err(e) = std::fs::remove_dir_all(&p) {
                tracing::warn!(dir = %p.display(), error = %e, "cannot delete a retained job");
            }
        }
    }

    /// Writes `bytes` to the artifact store under their CID (atomic; kept if present).
    fn store_artifact(&self, bytes: &[u8]) -> Result<Cid, String> {
        let cid = Cid::of_bytes(bytes);
        let path = self.artifacts.join(cid.to_string());
        let present = std::fs::read(&path).is_ok_and(|b| cid.verify(&b));
        if !present {
            havn_exec::exec::write_atomic(&path, bytes).map_err(|e| e.to_string())?;
        }
        Ok(cid)
    }

    /// Challenge material for one node of a retained job.
    fn prove(&self, submitter: &str, job_id: &str, node_id: &str) -> NetdExecResponse {
        let span = tracing::info_span!("prove", job = job_id, node = node_id);
        let _g = span.enter();
        if !havn_proto::is_ref_id(job_id) || !havn_proto::is_ref_id(node_id) {
            return refused(
                RemoteError::BadRequest,
                "job and node ids are 1-64 characters of [A-Za-z0-9._:-]",
            );
        }
        let dir = self.retained.join(job_dir_name(submitter, job_id));
        let Some(rec) =
            read_retained(&dir).filter(|r| r.job_id == job_id && r.submitter == submitter)
        else {
            return refused(
                RemoteError::UnknownJob,
                &format!(
                    "job {job_id:?} is not retained here (unknown, unfinished, failed, or older than the last {} finished jobs)",
                    self.retain
                ),
            );
        };
        if rec.sealed {
            return refused(
                RemoteError::NotPermitted,
                &format!("job {job_id:?} ran on an encrypted input or sealed its outputs: its challenge material would reveal them, so none is served"),
            );
        }
        if rec.workflow == crate::chat::WORKFLOW {
            return self.prove_chat(&dir, &rec, node_id);
        }
        if rec.workflow == crate::diffusion::WORKFLOW {
            return self.prove_diffusion(&dir, &rec, node_id);
        }
        if rec.workflow == crate::transcribe::WORKFLOW {
            return self.prove_transcribe(&dir, &rec, node_id);
        }
        let Some(w) = self.workflows.get(&rec.workflow) else {
            return refused(RemoteError::Internal, "retained job's workflow is gone");
        };
        if !w.manifest.nodes.iter().any(|n| n.id == node_id) {
            return refused(
                RemoteError::UnknownNode,
                &format!("workflow {} has no node {node_id:?}", rec.workflow),
            );
        }
        let inputs = match std::fs::read(dir.join("inputs.safetensors")) {
            Ok(b) => b,
            Err(e) => return refused(RemoteError::Internal, &format!("retained inputs: {e}")),
        };
        let job = Job {
            checksum: w.manifest.checksum(),
            manifest: w.manifest.clone(),
            weights: w.weights.clone(),
            inputs_cid: Cid::of_bytes(&inputs),
            inputs,
            seed: rec.seed,
        };
        let made = preflight(&self.registry, &job).and_then(|p| {
            havn_exec::challenge::material_from_checkpoint(&self.exec, &p, &dir, node_id)
        });
        let (m, rh) = match made {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(error = %e, "cannot rebuild the retained run");
                return refused(RemoteError::Internal, &format!("rebuilding the run: {e}"));
            }
        };
        let rh = Hash32(rh);
        if rh.to_hex() != rec.runtime_hash {
            tracing::error!(rebuilt = %rh, signed = %rec.runtime_hash, "retained checkpoint does not give the signed runtime hash");
            return refused(
                RemoteError::Internal,
                "retained checkpoint does not give the signed runtime hash",
            );
        }
        let stored = self
            .store_artifact(&m.proof_json)
            .and_then(|p| Ok((p, self.store_artifact(&m.inputs)?)));
        match stored {
            Ok((proof_cid, inputs_cid)) => {
                tracing::info!(%proof_cid, %inputs_cid, "challenge material stored");
                NetdExecResponse::Proof {
                    proof_cid,
                    inputs_cid,
                    runtime_hash: rh,
                }
            }
            Err(e) => refused(
                RemoteError::Internal,
                &format!("storing challenge material: {e}"),
            ),
        }
    }

    /// The job's input (opened in memory when sealed) and the CID of the stored bytes.
    fn input_bytes(
        &self,
        payload: &JobPayload,
        w: &Workload,
    ) -> Result<(crate::sealed::Input, Cid), String> {
        let Some(art) = payload.inputs.iter().find(|a| a.name.as_str() == "inputs") else {
            if let Some(other) = payload.inputs.first() {
                return Err(format!("unknown input {:?}: this workflow takes one safetensors artifact named \"inputs\"", other.name.as_str()));
            }
            let plain = crate::sealed::open(None, w.default_inputs.clone())?;
            return Ok((plain, Cid::of_bytes(&w.default_inputs)));
        };
        let name = art.cid.to_string();
        if let Some(b) = self.read_input(&art.cid) {
            return Ok((crate::sealed::open(self.payload_key.as_ref(), b)?, art.cid));
        }
        Err(format!(
            "input artifact {name} is not available on this node (upload it first)"
        ))
    }

    fn run_job(
        &mut self,
        ticket_id: u64,
        payload: JobPayload,
        submitter: &str,
        attestd: &mut Client<ExecdAttestd>,
    ) -> NetdExecResponse {
        let started = Instant::now();
        let span = tracing::info_span!("job", job = %payload.job_id, ticket = ticket_id, workflow = %payload.workflow.id);
        let _g = span.enter();
        if payload.workflow.id.as_str() == crate::chat::WORKFLOW && self.chat.is_some() {
            return self.run_chat_job(ticket_id, &payload, submitter, attestd, started);
        }
        if payload.workflow.id.as_str() == crate::diffusion::WORKFLOW {
            return self.run_diffusion_job(ticket_id, &payload, submitter, attestd, started);
        }
        if payload.workflow.id.as_str() == crate::transcribe::WORKFLOW {
            return self.run_transcribe_job(ticket_id, &payload, submitter, attestd, started);
        }
        let Some(w) = self.workflows.get(payload.workflow.id.as_str()) else {
            return failed(
                ticket_id,
                RemoteError::UnknownWorkflow,
                "workflow is not registered on this node",
            );
        };
        let checksum = w.manifest.checksum();
        if checksum != payload.workflow.checksum.0 {
            return failed(
                ticket_id,
                RemoteError::BadRequest,
                "manifest checksum does not match the registered workflow",
            );
        }
        if payload.compute_class < w.manifest.class {
            return failed(
                ticket_id,
                RemoteError::ClassUnsupported,
                "workflow needs a higher compute class than the job pays for",
            );
        }
        if let Err(e) = self.caps.require(payload.compute_class) {
            return failed(ticket_id, RemoteError::ClassUnsupported, &e.to_string());
        }
        let (input, inputs_cid) = match self.input_bytes(&payload, w) {
            Ok(x) => x,
            Err(reason) => return failed(ticket_id, RemoteError::BadRequest, &reason),
        };
        let envelope = input.envelope;
        let inputs = input.bytes;
        if let Err(r) = gate(ticket_id, &payload, attestd) {
            return *r;
        }
        // The executor checks the bytes against their CID: a sealed input's is the
        // plaintext's (in memory only); the receipt names the stored envelope's.
        let mut job = Job {
            checksum,
            manifest: w.manifest.clone(),
            weights: w.weights.clone(),
            inputs: inputs.to_vec(),
            inputs_cid: if envelope.is_some() {
                Cid::of_bytes(&inputs)
            } else {
                inputs_cid
            },
            seed: payload.seed,
        };
        let prepared = match preflight(&self.registry, &job) {
            Ok(p) => p,
            Err(e) => return failed(ticket_id, RemoteError::BadRequest, &e.to_string()),
        };
        let ckpt = self
            .checkpoints
            .join(job_dir_name(submitter, &payload.job_id));
        // The job's timeout_ms, counted from dequeue: the run stops before its next node.
        let deadline = Deadline::arm(
            Duration::from_millis(u64::from(payload.timeout_ms)).saturating_sub(started.elapsed()),
        );
        // A sealed input's plaintext (and what derives from it) never reaches disk: no
        // checkpoints for it.
        let opts = RunOptions {
            checkpoint_dir: (envelope.is_none() && !payload.privacy.redact_outputs)
                .then(|| ckpt.clone()),
            cancel: Some(deadline.flag()),
            ..RunOptions::default()
        };
        let mut result = match self.exec.execute(&prepared, &opts) {
            Ok(r) => r,
            Err(e @ havn_exec::ExecError::Cancelled { .. }) => {
                return failed(
                    ticket_id,
                    RemoteError::ExecutionFailed,
                    &format!(
                        "the job's timeout_ms of {} ms was exceeded ({e})",
                        payload.timeout_ms
                    ),
                )
            }
            Err(e @ (havn_exec::ExecError::Io { .. } | havn_exec::ExecError::Checkpoint(_))) => {
                return storage_failed(ticket_id, "checkpointing", &e)
            }
            Err(e) => return failed(ticket_id, RemoteError::ExecutionFailed, &e.to_string()),
        };
        drop(deadline);
        if self.perturb_leaf {
            perturb_leaf(&mut result, &checksum, payload.seed);
        }
        // With redact_outputs the outputs are stored sealed, and the receipt names that.
        let stored = match crate::sealed::outputs(&payload.privacy, &result.outputs_bytes) {
            Ok(s) => s,
            Err(reason) => return failed(ticket_id, RemoteError::BadRequest, &reason),
        };
        let outputs_cid = Cid::of_bytes(&stored);
        let out_path = self.artifacts.join(outputs_cid.to_string());
        if let Err(e) = havn_exec::exec::write_atomic(&out_path, &stored) {
            return storage_failed(ticket_id, "storing outputs", &e);
        }
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let report = JobResult {
            workflow_id: payload.workflow.id.clone(),
            job_id: payload.job_id.clone(),
            runtime_hash: Hash32(result.runtime_hash),
            outputs_cid,
            inputs_cid,
            latency_ms,
            energy_estimate_mj: (result.accounting.energy_j * 1000.0).round().max(0.0) as u64,
            manifest_checksum: Hash32(checksum),
            seed: payload.seed,
            gas: result.accounting.gas,
            backend: if self.exec.backend_name() == "cuda" {
                Backend::Cuda
            } else {
                Backend::Cpu
            },
            compute_class: payload.compute_class,
            submitter: bounded(submitter),
        };
        tracing::info!(runtime_hash = %report.runtime_hash, outputs = %report.outputs_cid, latency_ms, "executed");
        match sign(ticket_id, report, attestd) {
            Ok(receipt) => {
                let rh = receipt.receipt.runtime_hash;
                // A private job (sealed input, or sealed outputs) retains its input
                // as stored, never plaintext it was sealed from, and ran without
                // checkpoints, so its directory is made here.
                let private = envelope.is_some() || payload.privacy.redact_outputs;
                let made = match private {
                    true => mkdir(&ckpt).map_err(|e| e.to_string()),
                    false => Ok(()),
                };
                let kept = made.and_then(|()| {
                    self.retain_job(
                        &ckpt,
                        &payload,
                        submitter,
                        &rh,
                        Retain {
                            bytes: envelope.as_deref().unwrap_or(&job.inputs),
                            sealed: private,
                        },
                        &result.node_hashes,
                    )
                });
                zeroize::Zeroize::zeroize(&mut job.inputs);
                if let Err(e) = kept {
                    tracing::warn!(error = %e, "cannot retain the checkpoint; Prove will not answer for this job");
                    let _ = std::fs::remove_dir_all(&ckpt);
                }
                NetdExecResponse::Done { ticket_id, receipt }
            }
            Err(r) => *r,
        }
    }
}

/// The test-only fault: one DAG node's output hash is changed after the fact and the
/// Merkle root and runtime hash recomputed over it, as a node that skips or fakes work
/// would commit. Its receipt and its retained leaves agree with each other, so a
/// validator's re-execution names exactly that node.
fn perturb_leaf(result: &mut havn_exec::RunResult, checksum: &[u8; 32], seed: u64) {
    let k = result.node_hashes.len() / 2;
    if let Some(h) = result.node_hashes.get_mut(k) {
        h[0] ^= 0x01;
        result.merkle_root = havn_proto::merkle::merkle_root(&result.node_hashes);
        result.runtime_hash = havn_proto::merkle::runtime_hash(checksum, seed, &result.merkle_root);
        tracing::warn!(
            node = k,
            "TEST FAULT: perturbed a node's output hash after the fact"
        );
    }
}

/// A write that failed: a full disk is `StorageFull` (netd re-queues the job, so it
/// runs again under its id once space is freed); anything else is `Internal`. The
/// client sees neither the path nor the OS error (they go to the log).
fn storage_failed(ticket_id: u64, what: &str, e: &havn_exec::ExecError) -> NetdExecResponse {
    tracing::error!(error = %e, what, "write failed");
    if e.is_disk_full() {
        failed(
            ticket_id,
            RemoteError::StorageFull,
            &format!("node storage full while {what}; the job runs again once space is freed"),
        )
    } else {
        failed(
            ticket_id,
            RemoteError::Internal,
            &format!("{what} failed on the node"),
        )
    }
}

/// Asks attestd's gate; the failure is the job's answer.
fn gate(
    ticket_id: u64,
    payload: &JobPayload,
    attestd: &mut Client<ExecdAttestd>,
) -> Result<(), Box<NetdExecResponse>> {
    match attestd.call(&ExecdRequest::Gate {
        job_id: payload.job_id.clone(),
    }) {
        Ok(ExecdResponse::GateOpen) => Ok(()),
        Ok(ExecdResponse::GateClosed { reason }) => Err(Box::new(failed(
            ticket_id,
            RemoteError::GateClosed,
            &reason,
        ))),
        Ok(other) => Err(Box::new(failed(
            ticket_id,
            RemoteError::Internal,
            &format!("unexpected gate answer {other:?}"),
        ))),
        Err(e) => Err(Box::new(failed(
            ticket_id,
            RemoteError::GateClosed,
            &format!("attestd unreachable: {e}"),
        ))),
    }
}

/// Reports a result to attestd, which assembles and signs the receipt.
fn sign(
    ticket_id: u64,
    report: JobResult,
    attestd: &mut Client<ExecdAttestd>,
) -> Result<havn_proto::SignedReceipt, Box<NetdExecResponse>> {
    match attestd.call(&ExecdRequest::Report(report)) {
        Ok(ExecdResponse::Receipt(receipt)) => Ok(receipt),
        Ok(ExecdResponse::Error(e)) => {
            Err(Box::new(failed(ticket_id, e, "attestd refused to sign")))
        }
        Ok(ExecdResponse::GateClosed { reason }) => Err(Box::new(failed(
            ticket_id,
            RemoteError::GateClosed,
            &format!("attestd refused to sign: {reason}"),
        ))),
        Ok(other) => Err(Box::new(failed(
            ticket_id,
            RemoteError::Internal,
            &format!("unexpected signing answer {other:?}"),
        ))),
        Err(e) => Err(Box::new(failed(
            ticket_id,
            RemoteError::Internal,
            &format!("attestd unreachable: {e}"),
        ))),
    }
}
