//! The node's stake as StakeGuard last said it, and what intake makes of it.
//!
//! With `[chain]` configured, a refresher reads the node's bond every `refresh_ms`; a
//! reading older than `max_staleness_ms` (the chain went away) closes intake with 503
//! and the reason, never silently opens it. Without `[chain]`, the node is an unstaked
//! development node: intake does not ask, and `/health` says `"checked": false`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use havn_proto::ComputeClass;
use serde::Serialize;

/// One reading of the node's bond.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bond {
    /// Bonded amount in whole HAI (rounded down).
    pub amount_hai: u64,
    /// The class bonded for (S, M, L, XL).
    pub compute_class: String,
    /// Whether StakeGuard calls the account active.
    pub active: bool,
    /// Quarantined by the committee.
    pub quarantined: bool,
    /// Unbonding.
    pub unbonding: bool,
    /// The owner account.
    pub owner: String,
}

#[derive(Debug, Default)]
struct Reading {
    at: Option<Instant>,
    bond: Option<Bond>,
    error: Option<String>,
}

/// Why intake refuses on stake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StakeRefusal {
    /// 403: bonded under the floor, or not active.
    Inactive {
        /// Bonded whole HAI.
        stake: u64,
        /// The class's floor.
        floor: u64,
        /// Why (not bonded, quarantined, unbonding, under the floor).
        why: String,
    },
    /// 503: StakeGuard has not answered within the staleness bound.
    Unknown {
        /// What is known.
        reason: String,
    },
}

/// The shared view.
#[derive(Debug)]
pub struct StakeView {
    checked: bool,
    account: String,
    max_staleness: Duration,
    reading: Mutex<Reading>,
}

impl StakeView {
    /// A development node: no chain, no stake check.
    pub fn unchecked() -> Self {
        Self {
            checked: false,
            account: String::new(),
            max_staleness: Duration::ZERO,
            reading: Mutex::new(Reading::default()),
        }
    }

    /// A staked node's view of `account`, good for `max_staleness` after each reading.
    pub fn chain(account: String, max_staleness: Duration) -> Self {
        Self {
            checked: true,
            account,
            max_staleness,
            reading: Mutex::new(Reading::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Reading> {
        self.reading.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a reading (or the error that stood in for one).
    pub fn record(&self, r: Result<Bond, String>) {
        let mut g = self.lock();
        match r {
            Ok(b) => {
                if g.bond.as_ref() != Some(&b) {
                    tracing::info!(
                        amount_hai = b.amount_hai,
                        active = b.active,
                        quarantined = b.quarantined,
                        unbonding = b.unbonding,
                        "stake (StakeGuard)"
                    );
                }
                g.at = Some(Instant::now());
                g.bond = Some(b);
                g.error = None;
            }
            Err(e) => {
                if g.error.as_deref() != Some(e.as_str()) {
                    tracing::warn!(error = %e, "StakeGuard unreadable");
                }
                g.error = Some(e);
            }
        }
    }

    /// Whether a job of `class` may be admitted.
    pub fn admit(&self, class: ComputeClass) -> Result<(), StakeRefusal> {
        if !self.checked {
            return Ok(());
        }
        let g = self.lock();
        let fresh = g.at.is_some_and(|t| t.elapsed() <= self.max_staleness);
        let floor = class.collateral_floor_hai();
        match (&g.bond, fresh) {
            (_, false) => Err(StakeRefusal::Unknown {
                reason: match (&g.at, &g.error) {
                    (None, Some(e)) => format!("StakeGuard has not answered since start: {e}"),
                    (None, None) => "StakeGuard has not answered yet".into(),
                    (Some(t), e) => format!(
                        "StakeGuard last answered {} s ago (bound {} s){}",
                        t.elapsed().as_secs(),
                        self.max_staleness.as_secs(),
                        e.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
                    ),
                },
            }),
            (None, true) => Err(StakeRefusal::Inactive {
                stake: 0,
                floor,
                why: "not bonded".into(),
            }),
            (Some(b), true) => {
                let why = if b.amount_hai == 0 {
                    Some("not bonded")
                } else if b.quarantined {
                    Some("quarantined by the committee")
                } else if b.unbonding {
                    Some("unbonding")
                } else if !b.active || b.amount_hai < floor {
                    Some("under the floor")
                } else {
                    None
                };
                match why {
                    None => Ok(()),
                    Some(why) => Err(StakeRefusal::Inactive {
                        stake: b.amount_hai,
                        floor,
                        why: why.into(),
                    }),
                }
            }
        }
    }

    /// For `/health` and `/stake`.
    pub fn json(&self) -> serde_json::Value {
        if !self.checked {
            return serde_json::json!({"checked": false, "why": "no [chain] in node.toml: an unstaked development node"});
        }
        let g = self.lock();
        serde_json::json!({
            "checked": true,
            "account": self.account,
            "bond": g.bond,
            "age_ms": g.at.map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)),
            "max_staleness_ms": u64::try_from(self.max_staleness.as_millis()).unwrap_or(u64::MAX),
            "error": g.error,
        })
    }
}

/// The class name of StakeGuard's class number.
pub fn class_name(i: u8) -> String {
    ["S", "M", "L", "XL"]
        .get(usize::from(i))
        .map_or_else(|| format!("class {i}"), |s| (*s).to_string())
}
