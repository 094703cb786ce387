//! Errors of the speech-recognition engine. Every variant names what was wrong and where.

use thiserror::Error;

/// What went wrong loading a model or transcribing a clip.
#[derive(Debug, Error)]
pub enum AsrError {
    /// The CTranslate2 file is malformed; `field` names what was being read.
    #[error("CTranslate2 file is malformed at byte {offset}: {field}: {reason}")]
    Ct2 {
        offset: u64,
        field: String,
        reason: String,
    },
    /// A variable is missing or has the wrong shape, type or values.
    #[error("model variable {name:?}: {reason}")]
    Variable { name: String, reason: String },
    /// The tokenizer file is unusable.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The audio is refused; `field` names the header field or property.
    #[error("WAV {field}: {reason}")]
    Wav { field: String, reason: String },
    /// Challenge material does not check out (or cannot be served).
    #[error("challenge: {0}")]
    Challenge(String),
    /// The outputs file could not be encoded.
    #[error("encoding outputs: {0}")]
    Output(String),
}

impl AsrError {
    /// A reader error at `offset` while reading `field`.
    pub fn ct2(offset: usize, field: impl Into<String>, reason: impl Into<String>) -> Self {
        AsrError::Ct2 {
            offset: offset as u64,
            field: field.into(),
            reason: reason.into(),
        }
    }
    /// A variable error.
    pub fn var(name: impl Into<String>, reason: impl Into<String>) -> Self {
        AsrError::Variable {
            name: name.into(),
            reason: reason.into(),
        }
    }
    /// A WAV error naming the field.
    pub fn wav(field: impl Into<String>, reason: impl Into<String>) -> Self {
        AsrError::Wav {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Result with [`AsrError`].
pub type Result<T> = std::result::Result<T, AsrError>;
