//! `[mesh]` and the node's place in it (`[node] role`, `[node] compute_class`).

use serde::Deserialize;

/// What a node does in the validator mesh (`[node] role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// Runs jobs and gossips their receipts (the default).
    #[default]
    Execution,
    /// Validates gossip, samples, re-executes, signs verdicts and settlements.
    Validator,
}

/// `[mesh]`: gossip over libp2p. Without `listen`, the node gossips nothing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mesh {
    /// libp2p listen address, e.g. `/ip4/0.0.0.0/tcp/9000`.
    #[serde(default)]
    pub listen: Option<String>,
    /// Peers to dial at start (multiaddrs).
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Epoch length in milliseconds (every node of a committee uses the same).
    #[serde(default = "default_epoch_ms")]
    pub epoch_ms: u64,
    /// Probability that the committee samples a job, parts per million (5 % default).
    #[serde(default = "default_sample_ppm")]
    pub sample_ppm: u32,
}

impl Default for Mesh {
    fn default() -> Self {
        Self {
            listen: None,
            bootstrap: Vec::new(),
            epoch_ms: default_epoch_ms(),
            sample_ppm: default_sample_ppm(),
        }
    }
}

fn default_epoch_ms() -> u64 {
    60_000
}

fn default_sample_ppm() -> u32 {
    50_000
}

/// The node's compute class when `[node] compute_class` is not set.
pub fn default_compute_class() -> String {
    "S".into()
}

impl Mesh {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), String> {
        if self.epoch_ms < 1_000 {
            return Err(format!("mesh.epoch_ms {} is under 1000", self.epoch_ms));
        }
        if self.sample_ppm > 1_000_000 {
            return Err(format!(
                "mesh.sample_ppm {} is over 1000000",
                self.sample_ppm
            ));
        }
        Ok(())
    }
}
