//! GPU telemetry execd samples (NVML, where a GPU and its driver are) and netd serves
//! as Prometheus gauges: a small JSON file execd rewrites atomically in the artifact
//! directory (which netd reads), so neither daemon waits on the other and netd never
//! touches the GPU. The name is not a CID, so `GET /artifact/{cid}` never serves it.

use serde::{Deserialize, Serialize};

/// The file's name in `state_dir/artifacts`.
pub const GPU_TELEMETRY_FILE: &str = ".gpu-telemetry.json";

/// Samples older than this are not served (execd stopped sampling).
pub const GPU_TELEMETRY_MAX_AGE_MS: u64 = 30_000;

/// One sample of every GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuTelemetry {
    /// When it was taken, Unix ms.
    pub unix_ms: u64,
    /// Per GPU.
    pub gpus: Vec<GpuSample>,
}

/// One GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuSample {
    /// NVML index.
    pub index: u32,
    /// Model name.
    pub name: String,
    /// Busy share of the last sample period, 0–100.
    pub utilization_percent: u32,
    /// Board power draw.
    pub power_milliwatts: u32,
    /// Energy since the driver loaded (NVML's counter).
    pub energy_millijoules: u64,
    /// Memory in use.
    pub memory_used_bytes: u64,
}
