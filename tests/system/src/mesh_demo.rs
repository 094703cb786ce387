//! A whole validator mesh on one machine, as real processes: execution nodes and
//! validators, each its own havn-init with the three sandboxed daemons and its own
//! swtpm, joined by libp2p gossip on loopback. One execution node cheats (the
//! test-only fault `execd.test_only_fault = "perturb-leaf"`). Every execution node
//! runs jobs; the run ends when the cheater is caught (slashing evidence upheld by the
//! committee) and every honest receipt is in a certified settlement, or on timeout.
//!
//! `scripts/demo-mesh` and the system test `mesh::the_mesh_catches_the_cheater_…` run
//! this; the result is `DIR/mesh-summary.json` plus each settlement bundle, checked with
//! `havnctl verify-settlement` (and refused once a signature is removed).

use crate::harness::{free_port, havnctl, Node};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the summary and the settlement files go.
    pub out: PathBuf,
    /// Validators (the committee).
    pub validators: usize,
    /// Execution nodes (the last one cheats).
    pub executors: usize,
    /// Jobs per execution node.
    pub jobs: usize,
    /// Epoch length (every node uses it).
    pub epoch_ms: u64,
    /// Give up after this long (from the first job).
    pub timeout: Duration,
    /// Stake and payouts on a dev chain (anvil): nodes bond, the committee settles,
    /// pays, slashes the cheater and quarantines a node that goes dark.
    pub chain: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            out: PathBuf::from("out/mesh"),
            validators: 3,
            executors: 3,
            jobs: 4,
            epoch_ms: 10_000,
            timeout: Duration::from_secs(150),
            chain: true,
        }
    }
}

/// The outcome: the summary written, and whether the run passed.
#[derive(Debug)]
pub struct Outcome {
    /// `mesh-summary.json`'s content.
    pub summary: Value,
    /// The cheater was caught and every honest receipt settled, and every
    /// certificate verified (and failed once a signature was removed).
    pub passed: bool,
    /// Why not, when not.
    pub problems: Vec<String>,
}

struct Member {
    name: String,
    role: &'static str,
    cheats: bool,
    node: Node,
    key: String,
    jobs: usize,
    /// Gas of its signed receipts (what its payouts must add up to).
    gas: u64,
}

fn progress(msg: &str) {
    eprintln!("[demo-mesh] {msg}");
}

/// Puts `n` in the mesh: its role, the fault when it cheats, and `[mesh]`.
pub fn configure(
    n: &Node,
    role: &str,
    listen: u16,
    bootstrap: &[u16],
    epoch_ms: u64,
    cheats: bool,
) {
    let path = n.path("node.toml");
    let mut toml = std::fs::read_to_string(&path).unwrap_or_default();
    toml = toml.replacen("[node]\n", &format!("[node]\nrole = \"{role}\"\n"), 1);
    if cheats {
        toml = toml.replacen(
            "[execd]\n",
            "[execd]\ntest_only_fault = \"perturb-leaf\"\n",
            1,
        );
    }
    toml.push_str(&format!(
        "\n[mesh]\nlisten = \"/ip4/127.0.0.1/tcp/{listen}\"\nepoch_ms = {epoch_ms}\nbootstrap = [{}]\n",
        bootstrap
            .iter()
            .map(|p| format!("\"/ip4/127.0.0.1/tcp/{p}\""))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let _ = std::fs::write(&path, toml);
}

/// `havnctl mesh status` as a validator, parsed.
pub fn status(n: &Node) -> Option<Value> {
    let o = n.ctl("validator", &["mesh", "status"]);
    o.status
        .success()
        .then(|| serde_json::from_slice(&o.stdout).ok())
        .flatten()
}

fn node_key(n: &Node) -> String {
    n.health()
        .and_then(|h| h["node"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Runs the mesh. Needs root (havn-init drops each daemon's privileges).
pub fn run(opts: &Options) -> Outcome {
    let _ = std::fs::create_dir_all(&opts.out);
    let v = opts.validators.max(1);
    let e = opts.executors.max(2);
    let ports: Vec<u16> = (0..v + e).map(|_| free_port()).collect();
    let validator_ports: Vec<u16> = ports.iter().take(v).copied().collect();
    let mut members: Vec<Member> = Vec::new();
    let mut chain = if opts.chain {
        progress(
            "starting the dev chain (anvil) and deploying StakeGuard, Adjudicator, PayoutRouter",
        );
        match crate::mesh_chain::DemoChain::start(v + e) {
            Ok(c) => Some(c),
            Err(why) => return failed(opts, why),
        }
    } else {
        None
    };
    for (i, port) in ports.iter().copied().enumerate() {
        let (role, name) = if i < v {
            ("validator", format!("validator-{}", i + 1))
        } else {
            ("execution", format!("exec-{}", i - v + 1))
        };
        let cheats = i == v + e - 1;
        let node = Node::prepare();
        let bootstrap: Vec<u16> = validator_ports.iter().take(i.min(v)).copied().collect();
        configure(&node, role, port, &bootstrap, opts.epoch_ms, cheats);
        if let Some(c) = &chain {
            c.configure(&node, i);
        }
        members.push(Member {
            name: if cheats {
                format!("{name}-cheater")
            } else {
                name
            },
            role,
            cheats,
            node,
            key: String::new(),
            jobs: 0,
            gas: 0,
        });
    }
    for m in &mut members {
        progress(&format!("starting {} ({})", m.name, m.role));
        m.node.start();
        m.key = node_key(&m.node);
    }
    if let Some(c) = chain.as_mut() {
        for (i, m) in members.iter().enumerate() {
            let amount = if m.role == "validator" { 5_000 } else { 2_000 };
            progress(&format!(
                "{}: bonding {amount} HAI through its node",
                m.name
            ));
            if let Err(why) = c.bond(&m.node, i, &m.name, &m.key, amount) {
                return failed(opts, why);
            }
        }
        if let Err(why) = c.fund_pool(10_000) {
            return failed(opts, why);
        }
    }
    progress("waiting for every node to verify every manifest (quotes included)");
    let total = members.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        let all = members.iter().all(|m| {
            status(&m.node)
                .and_then(|s| s["known_nodes"].as_u64())
                .is_some_and(|k| k == total)
        });
        if all {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let started = Instant::now();
    for round in 0..opts.jobs {
        for m in members.iter_mut().filter(|m| m.role == "execution") {
            let job = format!("{}-job-{round}", m.name);
            if m.cheats && chain.is_some() && m.jobs > 0 {
                // Slashed on chain by now (usually within a second of its first
                // receipt): under its floor, it refuses work. Checked at the end.
                continue;
            }
            progress(&format!("{}: job {job}", m.name));
            let (_, receipt) = m.node.submit("lm", 100 + round as u64, &job);
            m.gas += receipt["receipt"]["gas"].as_u64().unwrap_or(0);
            m.jobs += 1;
        }
    }
    // With a chain, the first honest execution node goes dark: its heartbeats stop, and
    // after 3 epochs the committee quarantines it on chain.
    let dark = chain.as_ref().and_then(|_| {
        members
            .iter()
            .position(|m| m.role == "execution" && !m.cheats)
    });
    if let Some(d) = dark {
        progress(&format!(
            "{} goes dark (stopped): its heartbeats stop",
            members[d].name
        ));
        members[d].node.stop();
    }
    progress("jobs done; waiting for the committee: challenge, slashing evidence, settlements");
    let cheater_key = members
        .iter()
        .find(|m| m.cheats)
        .map(|m| m.key.clone())
        .unwrap_or_default();
    let honest: Vec<(String, usize)> = members
        .iter()
        .filter(|m| m.role == "execution" && !m.cheats)
        .map(|m| (m.key.clone(), m.jobs))
        .collect();
    let mut views: Vec<Value>;
    loop {
        views = members
            .iter()
            .filter(|m| m.role == "validator")
            .filter_map(|m| status(&m.node))
            .collect();
        let caught = views.iter().any(|s| {
            s["validator"]["slashing"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["node"] == cheater_key.as_str()))
        });
        let settled = settled_by_node(&views);
        let all_settled = honest
            .iter()
            .all(|(k, n)| settled.get(k).copied().unwrap_or(0) >= *n as u64);
        let chain_done = chain.as_ref().is_none_or(|c| {
            let events = c.events(&views);
            let has = |kind: &str, key: &str| {
                events.iter().any(|e| e["kind"] == kind && e["node"] == key)
            };
            let paid = |key: &str| {
                events
                    .iter()
                    .filter(|e| e["kind"] == "payout" && e["node"] == key)
                    .count()
            };
            has("slash", &cheater_key)
                && dark.is_none_or(|d| has("quarantine", &members[d].key))
                && honest.iter().all(|(k, n)| paid(k) >= *n)
        });
        if caught && all_settled && chain_done {
            break;
        }
        if started.elapsed() > opts.timeout {
            progress("timed out");
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let mut refusals = Vec::new();
    if chain.is_some() {
        // The slashed cheater is under its floor; the dark node, back, is quarantined.
        let cheater = members.iter().find(|m| m.cheats);
        if let Some(m) = cheater {
            refusals.push(refused(m, "stake inactive"));
        }
        if let Some(d) = dark {
            progress(&format!(
                "{} comes back: quarantined, it must refuse jobs",
                members[d].name
            ));
            members[d].node.start();
            refusals.push(refused(&members[d], "quarantined"));
        }
    }
    finish(
        opts,
        &members,
        &views,
        &cheater_key,
        chain.as_ref(),
        refusals,
    )
}

/// A job to `m` until it is refused with `why` (or 20 s pass): the refusal seen.
fn refused(m: &Member, why: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = String::new();
    while Instant::now() < deadline {
        let (ok, text) = m.node.try_submit("after");
        last = text;
        if !ok && last.contains(why) {
            return json!({"node": m.name, "refused": true, "reason": last.trim()});
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    json!({"node": m.name, "refused": false, "expected": why, "last": last.trim()})
}

fn failed(opts: &Options, why: String) -> Outcome {
    progress(&format!("FAILED before the jobs: {why}"));
    let summary = json!({"passed": false, "problems": [why.clone()], "epoch_ms": opts.epoch_ms});
    let _ = std::fs::write(
        opts.out.join("mesh-summary.json"),
        serde_json::to_vec_pretty(&summary).unwrap_or_default(),
    );
    Outcome {
        summary,
        passed: false,
        problems: vec![why],
    }
}

/// Receipts in certified settlements by node, from the validator with the most.
fn settled_by_node(views: &[Value]) -> BTreeMap<String, u64> {
    let mut best = BTreeMap::new();
    for s in views {
        let mut m = BTreeMap::<String, u64>::new();
        for st in s["validator"]["settlements"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for (k, n) in st["receipts_by_node"].as_object().into_iter().flatten() {
                *m.entry(k.clone()).or_default() += n.as_u64().unwrap_or(0);
            }
        }
        if m.values().sum::<u64>() > best.values().sum::<u64>() {
            best = m;
        }
    }
    best
}

fn verify_settlements(
    out: &Path,
    opts_epoch_ms: u64,
    evidence: &Value,
    problems: &mut Vec<String>,
) -> Vec<Value> {
    let mut checked = Vec::new();
    for (i, b) in evidence["settlements"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let file = out.join(format!(
            "settlement-{}.json",
            b["certificate"]["settlement"]["epoch"]
        ));
        let _ = std::fs::write(&file, serde_json::to_vec_pretty(b).unwrap_or_default());
        let f = file.display().to_string();
        let epoch_ms = opts_epoch_ms.to_string();
        let ok = havnctl(&["verify-settlement", &f, "--epoch-ms", &epoch_ms]);
        let mut removed = b.clone();
        if let Some(sigs) = removed["certificate"]["signatures"].as_array_mut() {
            sigs.pop();
        }
        let rfile = out.join(format!("settlement-{i}-signature-removed.json"));
        let _ = std::fs::write(
            &rfile,
            serde_json::to_vec_pretty(&removed).unwrap_or_default(),
        );
        let bad = havnctl(&[
            "verify-settlement",
            &rfile.display().to_string(),
            "--epoch-ms",
            &epoch_ms,
        ]);
        if !ok.status.success() {
            problems.push(format!(
                "havnctl verify-settlement refused {f}: {}",
                String::from_utf8_lossy(&ok.stderr)
            ));
        }
        if bad.status.success() {
            problems.push(format!(
                "a certificate with a signature removed still verified ({})",
                rfile.display()
            ));
        }
        checked.push(json!({
            "file": f,
            "epoch": b["certificate"]["settlement"]["epoch"],
            "receipts": b["certificate"]["settlement"]["receipt_count"],
            "signatures": b["certificate"]["signatures"].as_array().map_or(0, Vec::len),
            "committee": b["certificate"]["committee"].as_array().map_or(0, Vec::len),
            "verified": ok.status.success(),
            "signature_removed_refused": !bad.status.success(),
        }));
    }
    checked
}

fn finish(
    opts: &Options,
    members: &[Member],
    views: &[Value],
    cheater_key: &str,
    chain: Option<&crate::mesh_chain::DemoChain>,
    refusals: Vec<Value>,
) -> Outcome {
    let mut problems = Vec::new();
    let settled = settled_by_node(views);
    let verified = |key: &str| {
        views
            .iter()
            .filter_map(|s| s["validator"]["receipts_by_node"][key].as_u64())
            .max()
            .unwrap_or(0)
    };
    let slashing_of = |key: &str| {
        views
            .iter()
            .filter_map(|s| s["validator"]["slashing"].as_array())
            .flatten()
            .find(|x| x["node"] == key)
            .cloned()
    };
    // The settlement files come from the validator with the most certificates.
    let richest = members
        .iter()
        .filter(|m| m.role == "validator")
        .max_by_key(|m| {
            status(&m.node)
                .and_then(|s| s["validator"]["settlements"].as_array().map(Vec::len))
                .unwrap_or(0)
        });
    let evidence = richest
        .map(|m| {
            let o = m.node.ctl("validator", &["get", "/mesh/evidence"]);
            serde_json::from_slice::<Value>(&o.stdout).unwrap_or(Value::Null)
        })
        .unwrap_or(Value::Null);
    let settlements = verify_settlements(&opts.out, opts.epoch_ms, &evidence, &mut problems);
    let nodes: Vec<Value> = members
        .iter()
        .map(|m| {
            let ev = slashing_of(&m.key);
            json!({
                "name": m.name,
                "role": m.role,
                "class": "S",
                "node_key": m.key,
                "receipts_gossiped": m.jobs,
                "receipts_verified": verified(&m.key),
                "receipts_settled": settled.get(&m.key).copied().unwrap_or(0),
                "caught": ev.is_some(),
                "evidence": ev.unwrap_or(Value::Null),
            })
        })
        .collect();
    if slashing_of(cheater_key).is_none() {
        problems.push("the cheating node was not caught".into());
    }
    for m in members
        .iter()
        .filter(|m| m.role == "execution" && !m.cheats)
    {
        let s = settled.get(&m.key).copied().unwrap_or(0);
        if s < m.jobs as u64 {
            problems.push(format!("{}: {s} of {} receipts settled", m.name, m.jobs));
        }
        if slashing_of(&m.key).is_some() {
            problems.push(format!("{} is honest but was slashed", m.name));
        }
    }
    if let Some(s) = settled.get(cheater_key) {
        if *s > 0 {
            problems.push(format!("{s} of the cheater's receipts were settled"));
        }
    }
    if settlements.is_empty() {
        problems.push("no settlement was certified".into());
    }
    let chain_summary = chain.map(|c| {
        let events = c.events(views);
        let keys = members
            .iter()
            .map(|m| (m.name.clone(), m.key.clone()))
            .collect();
        // What each owner must have been paid, from the receipts alone: gas × the fee
        // schedule × the class multiplier (S: 1.0); nothing for the cheater.
        let expected = members
            .iter()
            .map(|m| {
                let gas = if m.cheats { 0 } else { m.gas };
                let wei = havn_chain_client::alloy::primitives::U256::from(gas)
                    * havn_chain_client::alloy::primitives::U256::from(
                        havn_chain_client::FEE_WEI_PER_GAS,
                    );
                (m.name.clone(), wei)
            })
            .collect();
        for kind in [
            "bond",
            "settle",
            "payout",
            "challenge",
            "slash",
            "quarantine",
        ] {
            if !events.iter().any(|e| e["kind"] == kind) {
                problems.push(format!("no {kind} on chain"));
            }
        }
        for r in &refusals {
            if r["refused"] != true {
                problems.push(format!("{} was not refused as expected: {r}", r["node"]));
            }
        }
        let mut s = c.summary(&events, &keys, &expected, &mut problems);
        let honest = members.iter().find(|m| m.role == "execution" && !m.cheats);
        if let Some(m) = honest {
            let all: Vec<Value> = members
                .iter()
                .filter(|v| v.role == "validator")
                .map(|v| {
                    let o = v.node.ctl("validator", &["get", "/mesh/evidence"]);
                    serde_json::from_slice::<Value>(&o.stdout).unwrap_or(Value::Null)
                })
                .collect();
            let check = c.check_claim(&all, &m.key, &opts.out);
            if check["paid"] != true || check["claimed_again_refused"] != true {
                problems.push(format!("{}'s payout claim file: {check}", m.name));
            }
            s["claim_check"] = check;
        }
        s["refusals"] = Value::from(refusals.clone());
        s
    });
    let mut summary = json!({
        "nodes": nodes,
        "settlements": settlements,
        "epoch_ms": opts.epoch_ms,
    });
    if let Some(c) = chain_summary {
        summary["chain"] = c;
    }
    summary["passed"] = Value::from(problems.is_empty());
    summary["problems"] = Value::from(problems.clone());
    let _ = std::fs::write(
        opts.out.join("mesh-summary.json"),
        serde_json::to_vec_pretty(&summary).unwrap_or_default(),
    );
    for m in members {
        let _ = std::fs::copy(
            m.node.path("node.log"),
            opts.out.join(format!("{}.log", m.name)),
        );
    }
    Outcome {
        passed: problems.is_empty(),
        summary,
        problems,
    }
}
