//! GPU gauges for `/metrics`: where NVML loads (an NVIDIA driver is installed), a thread
//! samples every GPU's utilisation, power, energy counter and memory every few seconds
//! and rewrites [`havn_proto::telemetry::GPU_TELEMETRY_FILE`] in the artifact directory,
//! which netd reads. Without NVML nothing runs and netd shows no GPU gauges.

use havn_proto::telemetry::{GpuSample, GpuTelemetry, GPU_TELEMETRY_FILE};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often the GPUs are sampled.
pub const EVERY: Duration = Duration::from_secs(5);

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One sample of every GPU NVML sees (a device that fails a query reports 0 there).
pub fn sample(nvml: &nvml_wrapper::Nvml) -> Result<GpuTelemetry, nvml_wrapper::error::NvmlError> {
    let mut gpus = Vec::new();
    for index in 0..nvml.device_count()? {
        let d = nvml.device_by_index(index)?;
        gpus.push(GpuSample {
            index,
            name: d.name().unwrap_or_default(),
            utilization_percent: d.utilization_rates().map_or(0, |u| u.gpu),
            power_milliwatts: d.power_usage().unwrap_or(0),
            energy_millijoules: d.total_energy_consumption().unwrap_or(0),
            memory_used_bytes: d.memory_info().map_or(0, |m| m.used),
        });
    }
    Ok(GpuTelemetry {
        unix_ms: unix_ms(),
        gpus,
    })
}

/// Writes `t` atomically as the telemetry file in `dir`.
pub fn write(dir: &Path, t: &GpuTelemetry) -> std::io::Result<()> {
    let tmp = dir.join(format!("{GPU_TELEMETRY_FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec(t).unwrap_or_default())?;
    std::fs::rename(&tmp, dir.join(GPU_TELEMETRY_FILE))
}

/// Starts the sampler when NVML loads; returns whether it did.
pub fn spawn(artifacts: PathBuf) -> bool {
    let nvml = match nvml_wrapper::Nvml::init() {
        Ok(n) => n,
        Err(e) => {
            tracing::info!(reason = %e, "no NVML: no GPU gauges in /metrics");
            return false;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("gpu-telemetry".into())
        .spawn(move || loop {
            match sample(&nvml) {
                Ok(t) => {
                    if let Err(e) = write(&artifacts, &t) {
                        tracing::warn!(error = %e, "cannot write GPU telemetry");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "NVML sample failed"),
            }
            std::thread::sleep(EVERY);
        });
    spawned.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips_atomically() {
        let dir = std::env::temp_dir().join(format!("havn-gpu-tel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let t = GpuTelemetry {
            unix_ms: 5,
            gpus: vec![GpuSample {
                index: 0,
                name: "X".into(),
                utilization_percent: 42,
                power_milliwatts: 300_000,
                energy_millijoules: 7,
                memory_used_bytes: 9,
            }],
        };
        write(&dir, &t).unwrap();
        let back: GpuTelemetry =
            serde_json::from_slice(&std::fs::read(dir.join(GPU_TELEMETRY_FILE)).unwrap()).unwrap();
        assert_eq!(back, t);
        assert!(!dir.join(format!("{GPU_TELEMETRY_FILE}.tmp")).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The real path, on a machine with an NVIDIA driver (`scripts/gpu-check` runs it).
    #[test]
    fn gpu_nvml_samples_every_gpu() {
        let nvml = match nvml_wrapper::Nvml::init() {
            Ok(n) => n,
            Err(e) => {
                havn_testkit::note_skip(&format!("no NVML here ({e}): GPU gauges are checked by scripts/gpu-check on a GPU machine"));
                return;
            }
        };
        let t = sample(&nvml).expect("an NVML sample");
        assert!(!t.gpus.is_empty(), "NVML loaded but lists no GPU");
        for g in &t.gpus {
            eprintln!(
                "gpu {}: {} util {}% power {} mW energy {} mJ mem {} B",
                g.index,
                g.name,
                g.utilization_percent,
                g.power_milliwatts,
                g.energy_millijoules,
                g.memory_used_bytes
            );
            assert!(!g.name.is_empty() && g.utilization_percent <= 100);
            assert!(g.power_milliwatts > 0 && g.memory_used_bytes > 0, "{g:?}");
        }
    }
}
