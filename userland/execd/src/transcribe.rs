//! The `transcribe` workflow in execd: Whisper tiny.en (CTranslate2 file + tokenizer,
//! CIDs checked) is loaded once at start; a job's input artifact is the WAV file.

use crate::engine::EngineError;
use havn_asr::Whisper;
use havn_config::NodeConfig;
use havn_lm::store::{Store, WHISPER_TINY_EN, WHISPER_TOKENIZER};
use havn_proto::ipc::RemoteError;
use havn_proto::{bounded, Hash32, WorkflowRef};

/// The workflow id.
pub const WORKFLOW: &str = havn_asr::job::WORKFLOW;

/// The loaded model.
pub struct Transcribe {
    whisper: Whisper,
    checksum: [u8; 32],
    threads: usize,
}

/// A finished transcription job.
pub struct TranscribeJob {
    pub transcript: havn_asr::Transcript,
    pub outputs: Vec<u8>,
    pub flops: u64,
}

impl Transcribe {
    /// Loads the model from the store; None when the store does not hold it.
    pub fn open(cfg: &NodeConfig) -> Result<Option<Transcribe>, EngineError> {
        let dir = &cfg.execd.model_store;
        if !dir.join("names").is_dir() {
            return Ok(None);
        }
        let store = Store::open(dir).map_err(EngineError::Model)?;
        if store.resolve(WHISPER_TINY_EN.name).is_err()
            || store.resolve(WHISPER_TOKENIZER.name).is_err()
        {
            tracing::info!(store = %dir.display(), "Whisper tiny.en not in the store: the transcribe workflow is not offered");
            return Ok(None);
        }
        let t0 = std::time::Instant::now();
        let (_, model) = store
            .read(WHISPER_TINY_EN.name)
            .map_err(EngineError::Model)?;
        let (tok_cid, tok) = store
            .read(WHISPER_TOKENIZER.name)
            .map_err(EngineError::Model)?;
        let whisper = Whisper::from_bytes(&model, &tok)
            .map_err(|e| EngineError::Onnx(format!("Whisper tiny.en: {e}")))?;
        let checksum = havn_asr::job::workflow_checksum(&whisper.cid, &tok_cid);
        let threads = if cfg.execd.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            cfg.execd.threads
        };
        tracing::info!(cid = %whisper.cid, load_s = t0.elapsed().as_secs_f64(), "Whisper tiny.en loaded");
        Ok(Some(Transcribe {
            whisper,
            checksum,
            threads,
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

    /// Transcribes one WAV file; a refused file is the client's error.
    pub fn execute(&self, wav: &[u8]) -> Result<TranscribeJob, (RemoteError, String)> {
        let transcript = self
            .whisper
            .transcribe(wav, self.threads)
            .map_err(|e| match e {
                havn_asr::AsrError::Wav { .. } => (RemoteError::BadRequest, e.to_string()),
                _ => (RemoteError::ExecutionFailed, e.to_string()),
            })?;
        let outputs = havn_asr::job::outputs(&transcript)
            .map_err(|e| (RemoteError::Internal, e.to_string()))?;
        let flops = havn_asr::job::flops(&self.whisper, transcript.token_ids.len());
        Ok(TranscribeJob {
            transcript,
            outputs,
            flops,
        })
    }
}

impl Transcribe {
    /// Challenge material for encoder block `node_id` (`enc<b>`) of a retained job: the
    /// JSON and the block's input (f32 LE), after the repeated run is checked against the
    /// signed runtime hash.
    pub fn prove(
        &self,
        wav: &[u8],
        signed_runtime_hash: &str,
        node_id: &str,
    ) -> Result<(Vec<u8>, Vec<u8>), (RemoteError, String)> {
        let Some(b) = havn_asr::challenge::parse_node_id(node_id) else {
            return Err((
                RemoteError::UnknownNode,
                format!("transcribe blocks are enc<block> (encoder), not {node_id:?}"),
            ));
        };
        let (ch, input) = self
            .whisper
            .prove(wav, self.threads, b, signed_runtime_hash)
            .map_err(|e| (RemoteError::UnknownNode, e.to_string()))?;
        let json = serde_json::to_vec(&ch).map_err(|e| (RemoteError::Internal, e.to_string()))?;
        Ok((json, input))
    }
}
