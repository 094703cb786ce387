//! The `diffusion` workflow in execd: the terrain UNet is imported once at start (CID
//! checked) and each job's request (its input artifact, JSON; none = the defaults)
//! picks the manifest for its step count. Nodes do not checkpoint these runs (one fsync
//! per node would cost more than the run): challenge material is cut from a repeat of
//! the run, which is deterministic, after checking it gives the signed runtime hash.

use crate::engine::EngineError;
use havn_config::NodeConfig;
use havn_exec::{Executor, ManifestRegistry, RunOptions, RunResult};
use havn_lm::store::{Store, TERRAIN_UNET};
use havn_onnx::diffusion::{self, DiffusionModel, DiffusionRequest, MAX_STEPS};
use havn_proto::ipc::RemoteError;
use havn_proto::{bounded, Hash32, WorkflowRef};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The workflow id.
pub const WORKFLOW: &str = diffusion::WORKFLOW;

/// The imported model and the manifests it serves.
pub struct Diffusion {
    model: DiffusionModel,
    registry: ManifestRegistry,
    checksum: [u8; 32],
}

/// A finished diffusion job.
pub struct DiffusionJob {
    pub result: RunResult,
    /// `outputs.safetensors` (height + png).
    pub outputs: Vec<u8>,
    pub request: DiffusionRequest,
}

type Refusal = (RemoteError, String);

impl Diffusion {
    /// Imports the model from the store; None when the store does not hold it.
    pub fn open(cfg: &NodeConfig) -> Result<Option<Diffusion>, EngineError> {
        let dir = &cfg.execd.model_store;
        if !dir.join("names").is_dir() {
            return Ok(None);
        }
        let store = Store::open(dir).map_err(EngineError::Model)?;
        if store.resolve(TERRAIN_UNET.name).is_err() {
            tracing::info!(store = %dir.display(), "terrain UNet not in the store: the diffusion workflow is not offered");
            return Ok(None);
        }
        let t0 = std::time::Instant::now();
        let (_, bytes) = store.read(TERRAIN_UNET.name).map_err(EngineError::Model)?;
        let model =
            DiffusionModel::from_bytes(&bytes).map_err(|e| EngineError::Onnx(e.to_string()))?;
        let mut registry = ManifestRegistry::new();
        for steps in 1..=MAX_STEPS {
            let m = model
                .manifest(steps)
                .map_err(|e| EngineError::Onnx(e.to_string()))?;
            registry.register(&m);
        }
        let checksum = diffusion::workflow_checksum(&model.cid);
        tracing::info!(cid = %model.cid, nodes_per_step = model.graph.nodes.len(),
            import_s = t0.elapsed().as_secs_f64(), "diffusion model imported");
        Ok(Some(Diffusion {
            model,
            registry,
            checksum,
        }))
    }

    /// The workflow as netd and the capability manifest list it.
    pub fn workflow_ref(&self) -> WorkflowRef {
        WorkflowRef {
            id: bounded(WORKFLOW),
            checksum: Hash32(self.checksum),
        }
    }

    /// The workflow checksum.
    pub fn checksum(&self) -> [u8; 32] {
        self.checksum
    }

    fn request(bytes: Option<&[u8]>) -> Result<DiffusionRequest, Refusal> {
        match bytes {
            None => Ok(DiffusionRequest::default()),
            Some(b) => DiffusionRequest::from_json(b)
                .map_err(|e| (RemoteError::BadRequest, format!("diffusion request: {e}"))),
        }
    }

    fn run(
        &self,
        exec: &Executor,
        req: &DiffusionRequest,
        seed: u64,
        opts: &RunOptions,
    ) -> Result<(havn_exec::PreparedJob, RunResult), Refusal> {
        let manifest = self
            .model
            .manifest(req.steps)
            .map_err(|e| (RemoteError::BadRequest, e.to_string()))?;
        let inputs =
            diffusion::inputs(req).map_err(|e| (RemoteError::BadRequest, e.to_string()))?;
        let job = havn_exec::Job {
            checksum: manifest.checksum(),
            manifest,
            weights: self.model.weights.clone(),
            inputs_cid: havn_proto::Cid::of_bytes(&inputs),
            inputs,
            seed,
        };
        let prepared = havn_exec::preflight(&self.registry, &job)
            .map_err(|e| (RemoteError::BadRequest, e.to_string()))?;
        let res = exec
            .execute(&prepared, opts)
            .map_err(|e| (RemoteError::ExecutionFailed, e.to_string()))?;
        Ok((prepared, res))
    }

    /// Runs one job on its request bytes (None: the default request).
    pub fn execute(
        &self,
        exec: &Executor,
        request: Option<&[u8]>,
        seed: u64,
        cancel: Arc<AtomicBool>,
    ) -> Result<DiffusionJob, Refusal> {
        let req = Self::request(request)?;
        let opts = RunOptions {
            cancel: Some(cancel),
            ..RunOptions::default()
        };
        let (_, result) = self.run(exec, &req, seed, &opts)?;
        let height = &result
            .outputs
            .first()
            .ok_or((RemoteError::Internal, "no output".to_string()))?
            .1;
        let (outputs, _) =
            diffusion::outputs(height).map_err(|e| (RemoteError::Internal, e.to_string()))?;
        Ok(DiffusionJob {
            result,
            outputs,
            request: req,
        })
    }

    /// Challenge material (proof JSON, node inputs safetensors) for DAG node `node_id`
    /// of a retained job: the run is repeated with its node outputs kept and checked
    /// against the signed runtime hash first.
    pub fn prove(
        &self,
        exec: &Executor,
        request: Option<&[u8]>,
        seed: u64,
        signed_runtime_hash: &str,
        node_id: &str,
    ) -> Result<havn_exec::challenge::ChallengeMaterial, Refusal> {
        let req = Self::request(request).map_err(|(_, r)| (RemoteError::Internal, r))?;
        let m = self
            .model
            .manifest(req.steps)
            .map_err(|e| (RemoteError::Internal, e.to_string()))?;
        if !m.nodes.iter().any(|n| n.id == node_id) {
            return Err((
                RemoteError::UnknownNode,
                format!(
                    "this diffusion job ({} step(s)) has no node {node_id:?}",
                    req.steps
                ),
            ));
        }
        let opts = RunOptions {
            keep_node_outputs: true,
            ..RunOptions::default()
        };
        let (prepared, res) = self
            .run(exec, &req, seed, &opts)
            .map_err(|(_, r)| (RemoteError::Internal, format!("repeating the run: {r}")))?;
        if havn_exec::manifest::hex(&res.runtime_hash) != signed_runtime_hash {
            tracing::error!(
                signed = signed_runtime_hash,
                "a repeated diffusion run does not give the signed runtime hash"
            );
            return Err((
                RemoteError::Internal,
                "the repeated run does not give the signed runtime hash".into(),
            ));
        }
        havn_exec::challenge::material(&res, &prepared, node_id)
            .map_err(|e| (RemoteError::UnknownNode, e.to_string()))
    }
}
