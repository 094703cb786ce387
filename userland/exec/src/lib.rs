//! Deterministic DAG executor engine with bit-identical CPU and CUDA backends.
//!
//! Code map:
//! - [`manifest`]: workflow manifests, canonical checksum, registry, DAG validation.
//! - [`exec`]: jobs, preflight, the executor (checkpoints, accounting, node proofs).
//! - [`ops`] / [`cpu`] / `gpu`: operator set and the two backends; [`ops_nn`] / [`cpu_nn`]:
//!   the network ops imported ONNX graphs use (host kernels in both backends for now).
//! - [`detmath`] / [`rng`]: our elementary functions and Philox4x32-10.
//! - [`merkle`]: per-node hashes → Merkle root → runtime hash; proofs.
//! - [`challenge`]: challenge material a node serves for one DAG node, and its check.
//! - [`caps`]: capability detection and compute class.
//! - [`workloads`]: the shipped `lm`, `diffusion` and `audio` workflows.
//! - [`cli`]: the logic behind `havnctl run`.

pub mod caps;
pub mod challenge;
pub mod cli;
pub mod cpu;
pub mod cpu_nn;
pub mod detmath;
pub mod error;
pub mod exec;
#[cfg(feature = "cuda")]
pub mod gpu;
pub mod manifest;
pub mod merkle;
pub mod ops;
pub mod ops_nn;
pub mod rng;
pub mod telemetry;
pub mod tensor;
pub mod workloads;

pub use caps::Capabilities;
pub use error::{ExecError, Result};
pub use exec::{
    preflight, preflight_for_node, BackendKind, Executor, Job, PreparedJob, RunOptions, RunResult,
};
pub use manifest::{Manifest, ManifestRegistry};
pub use merkle::{verify_node, NodeProof};
pub use tensor::{DType, Tensor};

/// Handle to the process-wide GPU backend.
#[cfg(feature = "cuda")]
pub type GpuHandle = std::sync::Arc<gpu::CudaBackend>;
/// Without the `cuda` feature there is never a GPU.
#[cfg(not(feature = "cuda"))]
pub type GpuHandle = ();

/// The process-wide CUDA backend, initialised once (driver + NVRTC compile), or the
/// reason it is unavailable. Panics inside cudarc (missing symbols) are caught.
pub fn gpu_backend() -> std::result::Result<GpuHandle, String> {
    #[cfg(feature = "cuda")]
    {
        static GPU: std::sync::OnceLock<std::result::Result<GpuHandle, String>> =
            std::sync::OnceLock::new();
        GPU.get_or_init(|| {
            let r = std::panic::catch_unwind(gpu::CudaBackend::new).unwrap_or_else(|_| {
                Err("CUDA initialisation panicked (driver or NVRTC symbols missing)".into())
            });
            match r {
                Ok(b) => {
                    tracing::info!(gpu = %b.name, vram = b.vram_bytes, "CUDA backend ready");
                    Ok(std::sync::Arc::new(b))
                }
                Err(e) => {
                    tracing::info!(reason = %e, "CUDA backend unavailable");
                    Err(e)
                }
            }
        })
        .clone()
    }
    #[cfg(not(feature = "cuda"))]
    {
        Err("built without the `cuda` feature".into())
    }
}

/// GPUs visible through the CUDA backend (device 0 is probed in detail; others are
/// reported with the same model).
pub fn gpu_info() -> std::result::Result<Vec<caps::GpuInfo>, String> {
    #[cfg(feature = "cuda")]
    {
        let g = gpu_backend()?;
        Ok((0..g.device_count)
            .map(|_| caps::GpuInfo {
                name: g.name.clone(),
                vram_bytes: g.vram_bytes,
            })
            .collect())
    }
    #[cfg(not(feature = "cuda"))]
    {
        gpu_backend().map(|_| Vec::new())
    }
}
