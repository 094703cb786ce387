//! GPU telemetry through NVML (libnvidia-ml, loaded at run time): power draw,
//! utilisation and memory in use. Absent library or GPU = no telemetry, never an
//! error: the receipt's energy then comes from the documented model
//! ([`crate::exec::energy_estimate_j`]).

/// One reading of GPU 0.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GpuSample {
    /// Board power draw, milliwatts.
    pub power_mw: u32,
    /// Percent of the last sample period with a kernel running.
    pub util_gpu_pct: u32,
    /// Percent of the last sample period with device memory busy.
    pub util_mem_pct: u32,
    /// Device memory in use, bytes.
    pub mem_used_bytes: u64,
}

/// An NVML handle, when the library and a GPU are present.
pub struct GpuTelemetry {
    #[cfg(feature = "cuda")]
    nvml: nvml_wrapper::Nvml,
}

impl std::fmt::Debug for GpuTelemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GpuTelemetry")
    }
}

impl GpuTelemetry {
    /// Opens NVML; `None` (with the reason logged at debug) when it is unavailable.
    pub fn open() -> Option<Self> {
        #[cfg(feature = "cuda")]
        {
            match std::panic::catch_unwind(nvml_wrapper::Nvml::init) {
                Ok(Ok(nvml)) => Some(Self { nvml }),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "NVML unavailable: no GPU power telemetry");
                    None
                }
                Err(_) => None,
            }
        }
        #[cfg(not(feature = "cuda"))]
        {
            None
        }
    }

    /// Reads GPU 0, if every field can be read.
    pub fn sample(&self) -> Option<GpuSample> {
        #[cfg(feature = "cuda")]
        {
            let d = self.nvml.device_by_index(0).ok()?;
            let u = d.utilization_rates().ok()?;
            Some(GpuSample {
                power_mw: d.power_usage().ok()?,
                util_gpu_pct: u.gpu,
                util_mem_pct: u.memory,
                mem_used_bytes: d.memory_info().ok()?.used,
            })
        }
        #[cfg(not(feature = "cuda"))]
        {
            None
        }
    }
}

/// Energy in joules from two power readings around a run of `secs` seconds
/// (trapezoid: mean power × time).
pub fn measured_energy_j(start: &GpuSample, end: &GpuSample, secs: f64) -> f64 {
    (f64::from(start.power_mw) + f64::from(end.power_mw)) / 2.0 / 1000.0 * secs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trapezoid_energy() {
        let s = |p| GpuSample {
            power_mw: p,
            util_gpu_pct: 0,
            util_mem_pct: 0,
            mem_used_bytes: 0,
        };
        assert!((measured_energy_j(&s(100_000), &s(300_000), 2.0) - 400.0).abs() < 1e-9);
    }
}
