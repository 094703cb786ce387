//! Job handling over the havn-exec engine.

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
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    artifacts: PathBuf,
    uploads: PathBuf,
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
        for name in workloads::NAMES {
            let w = workloads::build(name, Size::Small)
                .map_err(|source| EngineError::Workload { name, source })?;
            registry.register(&w.manifest);
            workflows.insert(name.to_string(), w);
        }
        let checkpoints = cfg.daemon_state("execd").join("checkpoints");
        let artifacts = cfg.node.state_dir.join("artifacts");
        mkdir(&checkpoints)?;
        mkdir(&artifacts)?;
        Ok(Self {
            exec,
            caps,
            registry,
            workflows,
            checkpoints,
            artifacts,
            uploads: cfg.daemon_state("netd").join("uploads"),
        })
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
        self.workflows
            .iter()
            .map(|(n, w)| WorkflowRef {
                id: bounded(n),
                checksum: Hash32(w.manifest.checksum()),
            })
            .collect()
    }

    fn capabilities(&self) -> CapabilityReport {
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
            NetdExecRequest::Run { ticket_id, payload } => {
                self.run_job(ticket_id, payload, attestd)
            }
        }
    }

    fn input_bytes(&self, payload: &JobPayload, w: &Workload) -> Result<(Vec<u8>, Cid), String> {
        let Some(art) = payload.inputs.iter().find(|a| a.name.as_str() == "inputs") else {
            if let Some(other) = payload.inputs.first() {
                return Err(format!("unknown input {:?}: this workflow takes one safetensors artifact named \"inputs\"", other.name.as_str()));
            }
            return Ok((w.default_inputs.clone(), Cid::of_bytes(&w.default_inputs)));
        };
        let name = art.cid.to_string();
        for dir in [&self.uploads, &self.artifacts] {
            if let Ok(b) = std::fs::read(dir.join(&name)) {
                return Ok((b, art.cid));
            }
        }
        Err(format!(
            "input artifact {name} is not available on this node (upload it first)"
        ))
    }

    fn run_job(
        &mut self,
        ticket_id: u64,
        payload: JobPayload,
        attestd: &mut Client<ExecdAttestd>,
    ) -> NetdExecResponse {
        let started = Instant::now();
        let span = tracing::info_span!("job", job = %payload.job_id, ticket = ticket_id, workflow = %payload.workflow.id);
        let _g = span.enter();
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
        let (inputs, inputs_cid) = match self.input_bytes(&payload, w) {
            Ok(x) => x,
            Err(reason) => return failed(ticket_id, RemoteError::BadRequest, &reason),
        };
        match attestd.call(&ExecdRequest::Gate {
            job_id: payload.job_id.clone(),
        }) {
            Ok(ExecdResponse::GateOpen) => {}
            Ok(ExecdResponse::GateClosed { reason }) => {
                return failed(ticket_id, RemoteError::GateClosed, &reason)
            }
            Ok(other) => {
                return failed(
                    ticket_id,
                    RemoteError::Internal,
                    &format!("unexpected gate answer {other:?}"),
                )
            }
            Err(e) => {
                return failed(
                    ticket_id,
                    RemoteError::GateClosed,
                    &format!("attestd unreachable: {e}"),
                )
            }
        }
        let job = Job {
            checksum,
            manifest: w.manifest.clone(),
            weights: w.weights.clone(),
            inputs,
            inputs_cid,
            seed: payload.seed,
        };
        let prepared = match preflight(&self.registry, &job) {
            Ok(p) => p,
            Err(e) => return failed(ticket_id, RemoteError::BadRequest, &e.to_string()),
        };
        let ckpt = self.checkpoints.join(
            Hash32(
                havn_proto::sign::Domain::Manifest
                    .digest(payload.job_id.as_bytes())
                    .0,
            )
            .to_hex(),
        );
        let opts = RunOptions {
            checkpoint_dir: Some(ckpt.clone()),
            ..RunOptions::default()
        };
        let result = match self.exec.execute(&prepared, &opts) {
            Ok(r) => r,
            Err(e) => return failed(ticket_id, RemoteError::ExecutionFailed, &e.to_string()),
        };
        let out_path = self.artifacts.join(result.outputs_cid.to_string());
        if let Err(e) = havn_exec::exec::write_atomic(&out_path, &result.outputs_bytes) {
            return failed(
                ticket_id,
                RemoteError::Internal,
                &format!("storing outputs: {e}"),
            );
        }
        let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let report = JobResult {
            workflow_id: payload.workflow.id.clone(),
            job_id: payload.job_id.clone(),
            runtime_hash: Hash32(result.runtime_hash),
            outputs_cid: result.outputs_cid,
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
        };
        tracing::info!(runtime_hash = %report.runtime_hash, outputs = %report.outputs_cid, latency_ms, "executed");
        match attestd.call(&ExecdRequest::Report(report)) {
            Ok(ExecdResponse::Receipt(receipt)) => {
                let _ = std::fs::remove_dir_all(&ckpt);
                NetdExecResponse::Done { ticket_id, receipt }
            }
            Ok(ExecdResponse::Error(e)) => failed(ticket_id, e, "attestd refused to sign"),
            Ok(other) => failed(
                ticket_id,
                RemoteError::Internal,
                &format!("unexpected signing answer {other:?}"),
            ),
            Err(e) => failed(
                ticket_id,
                RemoteError::Internal,
                &format!("attestd unreachable: {e}"),
            ),
        }
    }
}
