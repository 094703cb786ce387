//! The mesh demo's chain: an anvil with Havn's contracts, every node bonded through
//! its own node (attestd's sealed chain key signs), the payout pool funded by an
//! orchestrator, and at the end the balances and every validator's on-chain events for
//! `mesh-summary.json`'s `"chain"` section.

use crate::harness::Node;
use havn_chain_client::alloy::primitives::{Address, U256};
use havn_chain_client::devnet::Devnet;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Anvil account of the orchestrator that funds the payout pool.
const ORCHESTRATOR: usize = 1;

/// The dev chain and what the demo knows of it.
pub struct DemoChain {
    rt: tokio::runtime::Runtime,
    net: Devnet,
    /// Per member: (name, chain account, owner account, owner's HAI before).
    pub accounts: Vec<(String, Address, Address, U256)>,
    /// Bond transactions.
    pub bonds: Vec<Value>,
}

impl DemoChain {
    /// Starts anvil and deploys the contracts.
    pub fn start(members: usize) -> Result<Self, String> {
        let rt = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
        let net = rt
            .block_on(Devnet::start(members + 2, 3_600, 100_000))
            .map_err(|e| format!("dev chain: {e}"))?;
        Ok(Self {
            rt,
            net,
            accounts: Vec::new(),
            bonds: Vec::new(),
        })
    }

    /// Member `i`'s owner: anvil account `i + 2`.
    fn owner(&self, i: usize) -> Address {
        self.net.address(i + 2)
    }

    /// Adds `[chain]` to member `i`'s node.toml.
    pub fn configure(&self, n: &Node, i: usize) {
        let file = n.path("deployment.json");
        let _ = self.net.deployment().save(&file);
        let path = n.path("node.toml");
        let mut toml = std::fs::read_to_string(&path).unwrap_or_default();
        toml.push_str(&format!(
            "\n[chain]\nrpc = \"{}\"\ndeployment = \"{}\"\nowner = \"{}\"\nrefresh_ms = 500\nmax_staleness_ms = 10000\n",
            self.net.endpoint(),
            file.display(),
            self.owner(i)
        ));
        let _ = std::fs::write(&path, toml);
    }

    /// Funds member `i`'s node account and bonds `amount_hai` through the node.
    pub fn bond(
        &mut self,
        n: &Node,
        i: usize,
        name: &str,
        key: &str,
        amount_hai: u64,
    ) -> Result<(), String> {
        let o = n.ctl("operator", &["stake", "status", "--json"]);
        let status: Value = serde_json::from_slice(&o.stdout).map_err(|e| {
            format!(
                "{name}: stake status: {e} {}",
                String::from_utf8_lossy(&o.stderr)
            )
        })?;
        let account: Address = status["account"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("{name}: no chain account in {status}"))?;
        self.rt
            .block_on(self.net.fund(account, amount_hai + 1_000))
            .map_err(|e| format!("{name}: funding: {e}"))?;
        let amount = amount_hai.to_string();
        let o = n.ctl(
            "operator",
            &["stake", "bond", "--amount-hai", &amount, "--json"],
        );
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        if !o.status.success() {
            return Err(format!(
                "{name}: bond: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        self.bonds.push(json!({
            "kind": "bond",
            "node": key,
            "amount": havn_chain_client::hai(amount_hai).to_string(),
            "tx": v["tx"],
        }));
        let owner = self.owner(i);
        let before = self.balance(owner);
        self.accounts
            .push((name.to_string(), account, owner, before));
        Ok(())
    }

    /// The orchestrator funds the payout pool.
    pub fn fund_pool(&self, hai: u64) -> Result<(), String> {
        let c = self.net.chain(ORCHESTRATOR).map_err(|e| e.to_string())?;
        self.rt
            .block_on(c.fund(havn_chain_client::hai(hai)))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// HAI of `who`.
    pub fn balance(&self, who: Address) -> U256 {
        self.net
            .chain(0)
            .ok()
            .and_then(|c| self.rt.block_on(c.balance(who)).ok())
            .unwrap_or_default()
    }

    /// `account`'s bond as StakeGuard says it.
    pub fn bond_of(
        &self,
        account: Address,
    ) -> Option<havn_chain_client::contracts::StakeGuard::Bond> {
        let c = self.net.chain(0).ok()?;
        self.rt.block_on(c.bond_of(account)).ok()
    }

    /// A node's payout claim file from a validator's `/mesh/evidence`, checked with
    /// havnctl as its operator would: `payout status` says PAID, and claiming it again
    /// reverts (`AlreadyPaid`).
    pub fn check_claim(&self, evidence: &[Value], key: &str, out: &std::path::Path) -> Value {
        let Some(claim) = evidence
            .iter()
            .filter_map(|e| e["payout_claims"].as_array())
            .flatten()
            .find(|c| {
                c["leaf"]["node_key"]
                    .as_str()
                    .map(|k| k.trim_start_matches("0x"))
                    == Some(key)
            })
        else {
            return json!({"checked": false, "why": "no claim file for the node"});
        };
        let file = out.join("payout-claim.json");
        let sender = out.join("sender.key");
        let deployment = out.join("deployment.json");
        let _ = std::fs::write(&file, serde_json::to_vec_pretty(claim).unwrap_or_default());
        let _ = std::fs::write(
            &sender,
            havn_chain_client::alloy::hex::encode(self.net.key(ORCHESTRATOR).to_bytes()),
        );
        let _ = self.net.deployment().save(&deployment);
        let (rpc, dep) = (self.net.endpoint(), deployment.display().to_string());
        let receipt = claim["leaf"]["receipt"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let status = crate::harness::havnctl(&[
            "payout",
            "status",
            "--receipt",
            &receipt,
            "--rpc",
            &rpc,
            "--deployment",
            &dep,
        ]);
        let again = crate::harness::havnctl(&[
            "payout",
            "claim",
            &file.display().to_string(),
            "--key",
            &sender.display().to_string(),
            "--rpc",
            &rpc,
            "--deployment",
            &dep,
        ]);
        let status_text = String::from_utf8_lossy(&status.stdout).trim().to_string();
        let again_text = String::from_utf8_lossy(&again.stderr).trim().to_string();
        json!({
            "checked": true,
            "file": file.display().to_string(),
            "status": status_text,
            "paid": status_text.ends_with("PAID") && !status_text.ends_with("not paid"),
            "claimed_again_refused": !again.status.success() && again_text.contains("AlreadyPaid"),
            "claimed_again": again_text,
        })
    }

    /// Every validator's on-chain events, deduplicated by transaction, bonds first.
    pub fn events(&self, views: &[Value]) -> Vec<Value> {
        let mut seen = std::collections::BTreeSet::new();
        let mut out: Vec<Value> = self.bonds.clone();
        for v in views {
            for e in v["chain_events"].as_array().into_iter().flatten() {
                if seen.insert(e["tx"].to_string()) {
                    out.push(e.clone());
                }
            }
        }
        out
    }

    /// The `"chain"` section: balances (owner's HAI before, after, change), bonds, and
    /// the events; plus problems when payouts do not add up.
    pub fn summary(
        &self,
        events: &[Value],
        keys: &BTreeMap<String, String>,
        expected: &BTreeMap<String, U256>,
        problems: &mut Vec<String>,
    ) -> Value {
        let mut balances = serde_json::Map::new();
        for (name, account, owner, before) in &self.accounts {
            let after = self.balance(*owner);
            let key = keys.get(name).cloned().unwrap_or_default();
            let paid: U256 = events
                .iter()
                .filter(|e| e["kind"] == "payout" && e["node"] == key.as_str())
                .filter_map(|e| e["amount"].as_str().and_then(|a| a.parse::<U256>().ok()))
                .fold(U256::ZERO, |a, b| a + b);
            let delta = after.saturating_sub(*before);
            let want = expected.get(name).copied().unwrap_or_default();
            if delta != paid || delta != want {
                problems.push(format!(
                    "{name}: its owner's balance changed by {delta} wei; payout events say {paid}, its receipts' gas says {want}"
                ));
            }
            let bond = self.bond_of(*account);
            balances.insert(
                name.clone(),
                json!({
                    "account": account.to_string(),
                    "owner": owner.to_string(),
                    "owner_hai_before": before.to_string(),
                    "owner_hai_after": after.to_string(),
                    "paid": paid.to_string(),
                    "expected": want.to_string(),
                    "bonded": bond.as_ref().map(|b| b.amount.to_string()),
                    "quarantined": bond.as_ref().map(|b| b.quarantined),
                }),
            );
        }
        json!({
            "deployment": self.net.deployment(),
            "balances": balances,
            "events": events,
        })
    }
}
