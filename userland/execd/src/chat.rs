//! The `chat` workflow in execd: the configured model is loaded once at start (CID
//! checked, weights dequantized and packed) and kept warm for every job; a job's input
//! artifact is the JSON chat request.

use crate::engine::EngineError;
use havn_config::NodeConfig;
use havn_lm::store::Store;
use havn_lm::{ChatOutput, ChatRequest, LmError, LoadedModel, RunOpts};
use havn_proto::ipc::RemoteError;
use havn_proto::{bounded, Hash32, JobPayload, WorkflowRef};
use std::time::{Duration, Instant};

/// The workflow id.
pub const WORKFLOW: &str = "chat";

/// A loaded chat model and the threads it runs on.
pub struct Chat {
    model: LoadedModel,
    pool: rayon::ThreadPool,
    checksum: [u8; 32],
}

/// A finished chat job.
pub struct ChatJob {
    pub out: ChatOutput,
    pub outputs: Vec<u8>,
    pub flops: u64,
}

impl Chat {
    /// Loads the configured chat model; None when the store does not hold it.
    pub fn open(cfg: &NodeConfig) -> Result<Option<Chat>, EngineError> {
        let e = &cfg.execd;
        if !e.model_store.join("names").is_dir() {
            tracing::info!(store = %e.model_store.display(), "no model store: the chat workflow is not offered");
            return Ok(None);
        }
        let store = Store::open(&e.model_store).map_err(EngineError::Model)?;
        if store.resolve(&e.chat_model).is_err() {
            tracing::info!(model = %e.chat_model, store = %e.model_store.display(), "chat model not in the store: the chat workflow is not offered");
            return Ok(None);
        }
        let model = store.load(&e.chat_model).map_err(EngineError::Model)?;
        let pool = havn_lm::linear::pool(e.threads).map_err(|source| EngineError::State {
            path: e.model_store.clone(),
            source,
        })?;
        let checksum = havn_lm::chat::workflow_checksum(&model.cid);
        tracing::info!(model = %model.name, cid = %model.cid, load_s = model.load_s,
            weight_mib = model.model.weight_bytes() >> 20, "chat model loaded");
        Ok(Some(Chat {
            model,
            pool,
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

    /// Runs one job on its request bytes; errors carry what netd reports.
    pub fn execute(
        &self,
        payload: &JobPayload,
        request: &[u8],
        started: Instant,
    ) -> Result<ChatJob, (RemoteError, String)> {
        let req = ChatRequest::from_json(request)
            .map_err(|e| (RemoteError::BadRequest, format!("chat request: {e}")))?;
        let budget = Duration::from_millis(u64::from(payload.timeout_ms));
        let timeout_ms = payload.timeout_ms;
        let cancel = move || {
            (started.elapsed() > budget)
                .then(|| format!("the job's timeout_ms of {timeout_ms} ms was exceeded"))
        };
        let out = self
            .model
            .chat(
                &req,
                &RunOpts {
                    seed: payload.seed,
                    pool: &self.pool,
                    keep_traces: false,
                    cancel: Some(&cancel),
                },
            )
            .map_err(|e| match e {
                LmError::Request { .. } => (RemoteError::BadRequest, e.to_string()),
                _ => (RemoteError::ExecutionFailed, e.to_string()),
            })?;
        let outputs = havn_lm::outputs::safetensors_bytes(&out)
            .map_err(|e| (RemoteError::Internal, e.to_string()))?;
        let flops = havn_lm::chat::flops(
            &self.model.model.cfg,
            out.prompt_ids.len(),
            out.token_ids.len(),
        );
        Ok(ChatJob {
            out,
            outputs,
            flops,
        })
    }
}

impl Chat {
    /// Challenge material for block `node_id` (`s{call}.b{block}`) of a retained chat
    /// job: the run is repeated with its traces kept (the same bits: it is
    /// deterministic), checked against the signed runtime hash, and the block's openings
    /// are returned as JSON.
    pub fn prove(
        &self,
        request: &[u8],
        seed: u64,
        signed_runtime_hash: &str,
        node_id: &str,
    ) -> Result<Vec<u8>, (RemoteError, String)> {
        let Some((step, layer)) = havn_lm::challenge::parse_node_id(node_id) else {
            return Err((
                RemoteError::UnknownNode,
                format!("chat blocks are named s<call>.b<block>, not {node_id:?}"),
            ));
        };
        let req = ChatRequest::from_json(request)
            .map_err(|e| (RemoteError::Internal, format!("retained request: {e}")))?;
        let layers = self.model.model.cfg.layers as u32;
        if step >= req.max_tokens || (layer != havn_lm::challenge::HEAD && layer >= layers) {
            return Err((
                RemoteError::UnknownNode,
                format!(
                    "no block {node_id} in this job ({} calls at most, blocks 0..{layers} or head)",
                    req.max_tokens
                ),
            ));
        }
        let out = self
            .model
            .chat(
                &req,
                &RunOpts {
                    seed,
                    pool: &self.pool,
                    keep_traces: true,
                    cancel: None,
                },
            )
            .map_err(|e| (RemoteError::Internal, format!("repeating the run: {e}")))?;
        if out.runtime_hash != signed_runtime_hash {
            tracing::error!(rebuilt = %out.runtime_hash, signed = signed_runtime_hash, "a repeated chat run does not give the signed runtime hash");
            return Err((
                RemoteError::Internal,
                "the repeated run does not give the signed runtime hash".into(),
            ));
        }
        let ch = havn_lm::challenge::prove(&self.model, &req, seed, &out, step, layer)
            .map_err(|e| (RemoteError::UnknownNode, e.to_string()))?;
        serde_json::to_vec(&ch).map_err(|e| (RemoteError::Internal, e.to_string()))
    }
}
