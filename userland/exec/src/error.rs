//! Errors of the execution engine. Every rejection of bad input has its own variant so
//! callers (execd, havnctl, validators) can map it without parsing strings.

use crate::tensor::DType;

/// Everything the engine can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The manifest's checksum is not registered.
    #[error("workflow {checksum} is not in the manifest registry")]
    UnknownWorkflow { checksum: String },
    /// The manifest bytes hash to something other than the registered checksum.
    #[error("manifest checksum mismatch: registry has {expected}, manifest hashes to {actual}")]
    ManifestChecksumMismatch { expected: String, actual: String },
    /// A blob (inputs or weights) does not hash to its CID.
    #[error("{what} bytes do not match CID {cid} (they hash to {actual})")]
    CidMismatch {
        what: String,
        cid: String,
        actual: String,
    },
    /// A safetensors file could not be parsed.
    #[error("invalid safetensors in {what}: {reason}")]
    Safetensors { what: String, reason: String },
    /// A declared input or weight is absent.
    #[error("missing tensor {name:?} (declared by the manifest)")]
    MissingTensor { name: String },
    /// A tensor has the wrong dtype.
    #[error("tensor {name:?}: dtype {got:?}, expected {expected:?}")]
    DTypeMismatch {
        name: String,
        expected: DType,
        got: DType,
    },
    /// A tensor has the wrong shape.
    #[error("tensor {name:?}: shape {got:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    /// A dtype that the engine does not support.
    #[error("tensor {name:?}: unsupported dtype {dtype}")]
    UnsupportedDType { name: String, dtype: String },
    /// An input contains NaN or an infinity.
    #[error("tensor {name:?} contains a non-finite value at index {index}")]
    NonFinite { name: String, index: usize },
    /// A node's output contains NaN or an infinity.
    #[error("node {node:?} produced a non-finite value at index {index}")]
    NonFiniteOutput { node: String, index: usize },
    /// The DAG has a cycle.
    #[error("the workflow DAG has a cycle through node {node:?}")]
    Cycle { node: String },
    /// A node references a tensor nobody produces.
    #[error("node {node:?} references unknown tensor {name:?}")]
    UnknownReference { node: String, name: String },
    /// Two nodes or tensors share a name.
    #[error("duplicate name {name:?} in manifest")]
    DuplicateName { name: String },
    /// A node's inputs do not fit its operator.
    #[error("node {node:?} ({op}): {reason}")]
    InvalidNode {
        node: String,
        op: String,
        reason: String,
    },
    /// A node id that does not exist.
    #[error("no node {node:?} in workflow")]
    UnknownNode { node: String },
    /// A workload name the engine does not ship.
    #[error("unknown workload {name:?} (known: lm, diffusion, audio)")]
    UnknownWorkload { name: String },
    /// An index (e.g. a token id) out of range at run time.
    #[error("node {node:?}: index {index} out of range 0..{len}")]
    IndexOutOfRange {
        node: String,
        index: i64,
        len: usize,
    },
    /// The node needs more of a class than this machine can honestly offer.
    #[error("compute class {required:?} required, this node offers {offered}")]
    ClassUnavailable {
        required: havn_proto::ComputeClass,
        offered: String,
    },
    /// A Merkle proof or re-executed output did not verify.
    #[error("proof verification failed: {0}")]
    ProofInvalid(String),
    /// A checkpoint directory belongs to another job or is corrupt.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The run was cancelled before node `at`.
    #[error("cancelled before node {at:?}")]
    Cancelled { at: String },
    /// GPU backend failure.
    #[error("cuda backend: {0}")]
    Cuda(String),
    /// Filesystem failure.
    #[error("io error on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// JSON (manifest, proof) decoding failure.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl ExecError {
    /// Whether this is a write that failed for lack of space (`ENOSPC`, `EDQUOT`).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Self::Io { source, .. } if matches!(source.raw_os_error(), Some(28 | 122)))
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
    pub(crate) fn node(node: &str, op: &str, reason: impl Into<String>) -> Self {
        Self::InvalidNode {
            node: node.to_string(),
            op: op.to_string(),
            reason: reason.into(),
        }
    }
}

/// Engine result type.
pub type Result<T> = std::result::Result<T, ExecError>;
