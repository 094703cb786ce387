//! The mesh's tunables, with the spec's defaults.

use havn_proto::ComputeClass;
use serde::{Deserialize, Serialize};

/// Mesh parameters. Every validator of a committee must use the same values (they
/// decide epochs, windows and sampling thresholds that others check).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MeshParams {
    /// Epoch length in milliseconds.
    pub epoch_ms: u64,
    /// How many past epochs a receipt may still be gossiped in (older → Ignore).
    pub past_epochs: u64,
    /// Clock skew tolerated for messages from the future, in milliseconds.
    pub future_skew_ms: u64,
    /// Probability, in parts per million, that the committee samples a job, per class
    /// (S, M, L, XL).
    pub sample_ppm: [u32; 4],
    /// A node's first receipts seen by a validator are always sampled.
    pub first_jobs_sampled: u32,
    /// Heartbeat period in milliseconds (the spec's 5 s).
    pub heartbeat_ms: u64,
    /// A node is live in an epoch for a validator that saw at least this many per
    /// mille of the heartbeats the epoch should hold.
    pub live_permille: u32,
    /// Consecutive non-live epochs that quarantine a node.
    pub quarantine_after: u32,
}

impl Default for MeshParams {
    fn default() -> Self {
        Self {
            epoch_ms: 60_000,
            past_epochs: 2,
            future_skew_ms: 2_000,
            sample_ppm: [50_000; 4],
            first_jobs_sampled: 3,
            heartbeat_ms: 5_000,
            live_permille: 500,
            quarantine_after: 3,
        }
    }
}

/// Now, Unix time in milliseconds (the clock epochs and windows are read against).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl MeshParams {
    /// The epoch a Unix time (ms) falls in.
    pub fn epoch_of(&self, unix_ms: u64) -> u64 {
        unix_ms.checked_div(self.epoch_ms).unwrap_or(0)
    }

    /// The sampling probability for a class, in parts per million.
    pub fn sample_ppm(&self, class: ComputeClass) -> u32 {
        let i = match class {
            ComputeClass::S => 0,
            ComputeClass::M => 1,
            ComputeClass::L => 2,
            ComputeClass::XL => 3,
        };
        self.sample_ppm.get(i).copied().unwrap_or(0)
    }

    /// Heartbeats a validator must see from a node in one epoch to count it live.
    pub fn live_min_heartbeats(&self) -> u64 {
        let expected = self.epoch_ms.checked_div(self.heartbeat_ms).unwrap_or(0);
        expected
            .saturating_mul(u64::from(self.live_permille))
            .div_ceil(1000)
            .max(1)
    }

    /// Checks the values make sense together.
    pub fn check(&self) -> Result<(), String> {
        if self.epoch_ms < 1_000 {
            return Err(format!("epoch_ms {} is under 1000", self.epoch_ms));
        }
        if self.heartbeat_ms == 0 || self.heartbeat_ms > self.epoch_ms {
            return Err(format!(
                "heartbeat_ms {} must be in 1..=epoch_ms ({})",
                self.heartbeat_ms, self.epoch_ms
            ));
        }
        if let Some(p) = self.sample_ppm.iter().find(|p| **p > 1_000_000) {
            return Err(format!("sample_ppm {p} is over 1000000"));
        }
        if self.live_permille > 1000 {
            return Err(format!("live_permille {} is over 1000", self.live_permille));
        }
        if self.quarantine_after == 0 || self.quarantine_after > 3 {
            return Err(format!(
                "quarantine_after {} must be 1..=3 (the evidence carries at most 3 epochs)",
                self.quarantine_after
            ));
        }
        Ok(())
    }
}
