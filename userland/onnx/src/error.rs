//! Why an ONNX file or a diffusion request was refused.

/// Everything the importer and the diffusion workflow can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The bytes are not a protobuf ModelProto.
    #[error("not an ONNX model: {0}")]
    Decode(String),
    /// A count or size is over the importer's limit.
    #[error("{what}: {value} exceeds the limit of {max}")]
    Limit { what: String, value: u64, max: u64 },
    /// The model is well-formed protobuf but not a model we can import.
    #[error("ONNX model: {0}")]
    Model(String),
    /// A tensor (initializer or attribute) is malformed or of an unsupported type.
    #[error("tensor {name:?}: {reason}")]
    Tensor { name: String, reason: String },
    /// An operator (or an operator's attribute) that we do not support: refused, never
    /// approximated.
    #[error("node {node:?}: unsupported ONNX operator {op}: {reason}")]
    Unsupported {
        op: String,
        node: String,
        reason: String,
    },
    /// A node's inputs do not fit its operator.
    #[error("node {node:?} ({op}): {reason}")]
    Node {
        op: String,
        node: String,
        reason: String,
    },
    /// A job request field is out of range.
    #[error("{field}: {reason}")]
    Request { field: String, reason: String },
    /// The execution engine refused the imported graph.
    #[error(transparent)]
    Exec(#[from] havn_exec::ExecError),
}

impl From<havn_proto::chat::RequestError> for OnnxError {
    fn from(e: havn_proto::chat::RequestError) -> Self {
        OnnxError::Request {
            field: e.field,
            reason: e.reason,
        }
    }
}

/// Result with [`OnnxError`].
pub type Result<T> = std::result::Result<T, OnnxError>;
