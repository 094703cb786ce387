//! The dependency rules of ARCHITECTURE.md, enforced over `cargo metadata`
//! (Firecracker's `verify_dependencies.rs`).
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

struct Graph {
    /// package name → names of its normal (non-dev, non-build) dependencies.
    edges: BTreeMap<String, BTreeSet<String>>,
    workspace: BTreeSet<String>,
    binaries: BTreeSet<String>,
}

fn graph() -> Graph {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(root)
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id_to_name: BTreeMap<String, String> = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let members: BTreeSet<String> = v["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect();
    let mut workspace = BTreeSet::new();
    let mut binaries = BTreeSet::new();
    for p in v["packages"].as_array().unwrap() {
        if members.contains(p["id"].as_str().unwrap()) {
            let name = p["name"].as_str().unwrap().to_string();
            let is_bin = p["targets"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t["kind"].as_array().unwrap().iter().all(|k| k != "lib"));
            if is_bin {
                binaries.insert(name.clone());
            }
            workspace.insert(name);
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for node in v["resolve"]["nodes"].as_array().unwrap() {
        let name = id_to_name[node["id"].as_str().unwrap()].clone();
        let deps = edges.entry(name).or_default();
        for d in node["deps"].as_array().unwrap() {
            let normal = d["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            if normal {
                deps.insert(id_to_name[d["pkg"].as_str().unwrap()].clone());
            }
        }
    }
    Graph {
        edges,
        workspace,
        binaries,
    }
}

impl Graph {
    fn closure(&self, root: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![root.to_string()];
        while let Some(n) = stack.pop() {
            for d in self.edges.get(&n).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        seen
    }

    fn assert_absent(&self, krate: &str, forbidden: &[&str], why: &str) {
        let c = self.closure(krate);
        for f in forbidden {
            assert!(!c.contains(*f), "{krate} must not link {f}: {why}");
        }
    }
}

const DAEMONS: [&str; 4] = ["havn-init", "havn-attestd", "havn-execd", "havn-netd"];

#[test]
fn proto_depends_on_no_workspace_crate() {
    let g = graph();
    let c = g.closure("havn-proto");
    let bad: Vec<_> = c.intersection(&g.workspace).collect();
    assert!(
        bad.is_empty(),
        "havn-proto depends on workspace crates {bad:?}"
    );
}

#[test]
fn only_attestd_links_tss_esapi() {
    let g = graph();
    for d in DAEMONS.iter().filter(|d| **d != "havn-attestd") {
        g.assert_absent(
            d,
            &["tss-esapi", "tss-esapi-sys"],
            "only havn-attestd talks to the TPM",
        );
    }
}

#[test]
fn only_execd_links_cudarc() {
    let g = graph();
    for d in DAEMONS.iter().filter(|d| **d != "havn-execd") {
        g.assert_absent(d, &["cudarc"], "only havn-execd touches the GPU");
    }
}

#[test]
fn only_netd_links_network_stacks() {
    let g = graph();
    for d in DAEMONS.iter().filter(|d| **d != "havn-netd") {
        g.assert_absent(
            d,
            &["hyper", "rustls", "libp2p", "reqwest", "alloy-provider"],
            "only havn-netd parses network input",
        );
    }
}

#[test]
fn verifier_links_neither_tss_nor_tokio() {
    let g = graph();
    g.assert_absent(
        "havn-attest",
        &["tss-esapi", "tss-esapi-sys", "tokio"],
        "validators build it without libtss2 or an async runtime",
    );
}

#[test]
fn no_binary_crate_depends_on_another() {
    let g = graph();
    for b in &g.binaries {
        let c = g.closure(b);
        let bad: Vec<_> = c.intersection(&g.binaries).collect();
        assert!(
            bad.is_empty(),
            "binary crate {b} depends on binary crates {bad:?}"
        );
    }
    // The rule is meaningful only if the daemons are binary crates or bin+lib crates.
    assert!(g.workspace.contains("havn-attestd") && g.workspace.contains("havn-execd"));
}

#[test]
fn graph_sees_real_edges() {
    // A positive control: if the graph walk were broken, every rule above would pass.
    let g = graph();
    let c = g.closure("havn-ipc");
    assert!(
        c.contains("havn-proto") && c.contains("nix"),
        "closure of havn-ipc: {c:?}"
    );
    assert!(!g.closure("havn-proto").contains("havn-proto"));
}
