//! Errors of the language-model engine. Every variant names what was wrong.

use thiserror::Error;

/// What went wrong loading a model or running a chat job.
#[derive(Debug, Error)]
pub enum LmError {
    #[error("GGUF file is malformed at byte {offset}: {reason}")]
    Gguf { offset: u64, reason: String },
    #[error("GGUF metadata {key:?}: {reason}")]
    Metadata { key: String, reason: String },
    #[error("tensor {name:?}: {reason}")]
    Tensor { name: String, reason: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    /// A bad field of a chat request (what an API turns into a 400 naming the field).
    #[error("{field}: {reason}")]
    Request { field: String, reason: String },
    #[error("model store: {0}")]
    Store(String),
    #[error("weights do not match their CID: expected {expected}, file has {actual}")]
    CidMismatch { expected: String, actual: String },
    #[error("generation cancelled: {0}")]
    Cancelled(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl LmError {
    /// A request-field error.
    pub fn request(field: &str, reason: impl Into<String>) -> Self {
        LmError::Request {
            field: field.into(),
            reason: reason.into(),
        }
    }
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        LmError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result with [`LmError`].
pub type Result<T> = std::result::Result<T, LmError>;
