//! Capability detection: what this node can honestly advertise.

use havn_proto::ComputeClass;
use serde::{Deserialize, Serialize};

/// One GPU.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GpuInfo {
    pub name: String,
    pub vram_bytes: u64,
}

/// Detected capabilities.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Capabilities {
    pub cpu_cores: usize,
    pub ram_bytes: u64,
    pub gpus: Vec<GpuInfo>,
    /// NVLink between the GPUs: `None` = unknown (not probed; NVML is not linked).
    pub nvlink: Option<bool>,
    /// Why no GPU was found, if none was.
    pub gpu_absent_reason: Option<String>,
}

const GB: u64 = 1_000_000_000;
/// 2% slack: a "24 GB" card reports slightly less than 24e9 usable bytes.
fn at_least(bytes: u64, gb: u64) -> bool {
    bytes >= gb * GB / 100 * 98
}

/// MemTotal from /proc/meminfo, in bytes.
pub fn ram_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                })
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

impl Capabilities {
    /// Probes CPU, RAM and (through the CUDA backend, if it initialises) the GPU.
    pub fn detect() -> Self {
        let cpu_cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let (gpus, gpu_absent_reason) = match crate::gpu_info() {
            Ok(g) => (g, None),
            Err(r) => (Vec::new(), Some(r)),
        };
        Capabilities {
            cpu_cores,
            ram_bytes: ram_bytes(),
            gpus,
            nvlink: None,
            gpu_absent_reason,
        }
    }

    /// The largest class this node can honestly advertise, if any.
    /// S = 8 vCPU and 16 GB RAM; M = 24 GB VRAM; L = 40 GB VRAM and 64 GB RAM;
    /// XL = two A100/H100 with NVLink (never claimed while NVLink is unknown).
    pub fn class(&self) -> Option<ComputeClass> {
        let vram = self.gpus.iter().map(|g| g.vram_bytes).max().unwrap_or(0);
        let big = self
            .gpus
            .iter()
            .filter(|g| {
                (g.name.contains("A100") || g.name.contains("H100") || g.name.contains("H200"))
                    && at_least(g.vram_bytes, 40)
            })
            .count();
        if big >= 2 && self.nvlink == Some(true) && at_least(self.ram_bytes, 64) {
            Some(ComputeClass::XL)
        } else if at_least(vram, 40) && at_least(self.ram_bytes, 64) {
            Some(ComputeClass::L)
        } else if at_least(vram, 24) {
            Some(ComputeClass::M)
        } else if self.cpu_cores >= 8 && at_least(self.ram_bytes, 16) {
            Some(ComputeClass::S)
        } else {
            None
        }
    }

    /// True when this node may run a job of `class`: GPU classes need a GPU here.
    pub fn can_run(&self, class: ComputeClass) -> bool {
        match (self.class(), class) {
            (_, ComputeClass::S) => true,
            (Some(have), want) => have >= want,
            (None, _) => false,
        }
    }

    /// `Err(ClassUnavailable)` unless [`can_run`](Self::can_run).
    pub fn require(&self, class: ComputeClass) -> crate::Result<()> {
        if self.can_run(class) {
            Ok(())
        } else {
            Err(crate::ExecError::ClassUnavailable {
                required: class,
                offered: self
                    .class()
                    .map(|c| format!("{c:?}"))
                    .unwrap_or_else(|| "no class".into()),
            })
        }
    }
}
