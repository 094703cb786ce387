//! `[chain]`: where the node reads its stake and sends its transactions.
//!
//! Without this section the node runs unstaked, as a development node: intake takes
//! jobs without asking StakeGuard, says so at start (a warning) and in `/health`
//! (`"stake": {"checked": false}`). With it, intake is open only while StakeGuard has
//! said, within `max_staleness_ms`, that the node's account is active.

use std::path::PathBuf;

use serde::Deserialize;

/// `[chain]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chain {
    /// The chain's JSON-RPC endpoint (netd and havnctl reach it; attestd never does).
    pub rpc: String,
    /// The deployment file (`{"chain_id", "hai", "stake_guard", "adjudicator",
    /// "payout_router"}`), as `havnctl chain deploy` or the mesh demo writes it.
    pub deployment: PathBuf,
    /// The operator's account (`0x` + 40 hex): the only owner a bond may name, so only
    /// the operator can ever unbond or withdraw; payouts go there too.
    pub owner: String,
    /// How often netd re-reads the node's bond, in ms.
    #[serde(default = "default_refresh_ms")]
    pub refresh_ms: u64,
    /// How long a StakeGuard answer stays good, in ms: past it, intake closes with 503.
    #[serde(default = "default_max_staleness_ms")]
    pub max_staleness_ms: u64,
}

fn default_refresh_ms() -> u64 {
    2_000
}

fn default_max_staleness_ms() -> u64 {
    30_000
}

/// Whether `s` is `0x` and 40 hex digits.
pub fn is_account(s: &str) -> bool {
    s.len() == 42 && s.starts_with("0x") && s[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

impl Chain {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), String> {
        if !is_account(&self.owner) {
            return Err(format!(
                "chain.owner {:?} is not an account (0x and 40 hex digits)",
                self.owner
            ));
        }
        if !(self.rpc.starts_with("http://") || self.rpc.starts_with("https://")) {
            return Err(format!("chain.rpc {:?} is not an http(s) URL", self.rpc));
        }
        if self.refresh_ms == 0 || self.max_staleness_ms < self.refresh_ms {
            return Err(format!(
                "chain.max_staleness_ms {} must be at least chain.refresh_ms {} (> 0)",
                self.max_staleness_ms, self.refresh_ms
            ));
        }
        Ok(())
    }
}
