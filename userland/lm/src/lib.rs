//! havn-lm: deterministic language-model inference for Havn's `chat` workflow.
//!
//! A GGUF file is read by our own bounded parser ([`gguf`]), dequantized exactly
//! ([`quant`]) and packed once ([`linear`]); the tokenizer and chat template come from the
//! file's own metadata through the `tokenizers` and `minijinja` crates ([`tokenizer`]);
//! [`model`] runs the llama forward pass with a KV cache and [`chat`] generates, samples
//! with the job seed and commits every block of every step to a Merkle root. The model
//! store ([`store`]) keeps weights by CID.

pub mod challenge;
pub mod chat;
pub mod error;
pub mod gguf;
pub mod kernels;
pub mod linear;
pub mod model;
pub mod outputs;
pub mod qlinear;
pub mod quant;
pub mod store;
pub mod tokenizer;

pub use chat::{generate, ChatOutput, ChatRequest, Finish, RunOpts};
pub use error::{LmError, Result};
pub use tokenizer::{ChatTokenizer, Message};

use havn_proto::Cid;

/// A model ready to serve: weights packed, tokenizer built, CID of the file it came from.
pub struct LoadedModel {
    pub cid: Cid,
    pub name: String,
    pub model: model::Model,
    pub tokenizer: ChatTokenizer,
    /// Seconds spent loading.
    pub load_s: f64,
}

impl LoadedModel {
    /// Loads a GGUF file's bytes; when `expect` is given the bytes must have that CID.
    pub fn from_bytes(bytes: &[u8], expect: Option<&Cid>) -> Result<LoadedModel> {
        Self::from_bytes_with(bytes, expect, false)
    }

    /// Like [`LoadedModel::from_bytes`]; `force_f32` keeps every weight as f32 panels
    /// (the reference path; the same bits as the quantized kernels).
    pub fn from_bytes_with(
        bytes: &[u8],
        expect: Option<&Cid>,
        force_f32: bool,
    ) -> Result<LoadedModel> {
        let t0 = std::time::Instant::now();
        let cid = Cid::of_bytes(bytes);
        if let Some(e) = expect {
            if e != &cid {
                return Err(LmError::CidMismatch {
                    expected: e.to_string(),
                    actual: cid.to_string(),
                });
            }
        }
        let g = gguf::Gguf::parse(bytes)?;
        let tokenizer = ChatTokenizer::from_gguf(&g)?;
        // Checked before any weight is unpacked.
        let vocab = model::Config::from_gguf(&g)?.vocab;
        if tokenizer.vocab != vocab {
            return Err(LmError::Metadata {
                key: "tokenizer.ggml.tokens".into(),
                reason: format!(
                    "{} tokens, but the model has a vocabulary of {vocab}",
                    tokenizer.vocab
                ),
            });
        }
        let model = model::Model::load_with(&g, bytes, force_f32)?;
        if tokenizer.vocab != model.cfg.vocab {
            return Err(LmError::Metadata {
                key: "tokenizer.ggml.tokens".into(),
                reason: format!(
                    "{} tokens, but the model has a vocabulary of {}",
                    tokenizer.vocab, model.cfg.vocab
                ),
            });
        }
        let name = g
            .metadata
            .get("general.name")
            .and_then(|v| v.as_str())
            .unwrap_or("unnamed")
            .to_owned();
        Ok(LoadedModel {
            cid,
            name,
            model,
            tokenizer,
            load_s: t0.elapsed().as_secs_f64(),
        })
    }

    /// Loads a GGUF file from disk (checked against `expect` when given).
    pub fn from_file(path: &std::path::Path, expect: Option<&Cid>) -> Result<LoadedModel> {
        let bytes = std::fs::read(path)
            .map_err(|e| LmError::io(format!("reading {}", path.display()), e))?;
        Self::from_bytes(&bytes, expect)
    }

    /// Runs a chat request.
    pub fn chat(&self, req: &ChatRequest, opts: &RunOpts<'_>) -> Result<ChatOutput> {
        generate(&self.model, &self.cid, &self.tokenizer, req, opts)
    }
}
