//! The `diffusion` workflow on a real node: the terrain UNet serves a job whose request
//! is uploaded by CID, the receipt verifies, a validator's `havnctl run diffusion`
//! reproduces it bit for bit, one random DAG node is challenged, and a bad request is
//! refused naming its field.

use crate::chat::{chat_node, store};
use crate::harness::{havnctl_ok, stderr};
use serde_json::Value;

#[test]
fn a_node_runs_a_diffusion_job_and_a_validator_reproduces_and_challenges_it() {
    if !crate::harness::need_root() {
        return;
    }
    let Some(store) = store() else { return };
    let node = chat_node(&store);
    let caps = String::from_utf8_lossy(&node.ctl("validator", &["get", "/capabilities"]).stdout)
        .into_owned();
    let want: Value = serde_json::from_str(havnctl_ok(&["workflows", "--json"]).trim()).unwrap();
    let ck = want["diffusion"].as_str().unwrap().to_string();
    assert!(caps.contains(&ck), "capabilities lack diffusion: {caps}");

    let req = node.path("terrain.json");
    std::fs::write(&req, br#"{"steps":1,"difficulty":70}"#).unwrap();
    let receipt = node.p("diffusion.receipt.json");
    let o = node.ctl(
        "orchestrator",
        &[
            "submit",
            "--workflow",
            "diffusion",
            "--input",
            &req.display().to_string(),
            "--seed",
            "77",
            "--job-id",
            "sys-diffusion",
            "--wait",
            "--timeout",
            "300",
            "--receipt-out",
            &receipt,
        ],
    );
    assert!(
        o.status.success(),
        "submit: {}\nlog:\n{}",
        stderr(&o),
        node.log()
    );
    let r: Value = serde_json::from_slice(&std::fs::read(&receipt).unwrap()).unwrap();
    let r = &r["receipt"];
    assert_eq!(r["workflow_id"], "diffusion");
    assert_eq!(r["manifest_checksum"], ck);

    // The validator reproduces the job here: same model, request and seed.
    let out = node.p("reexec");
    let v: Value = serde_json::from_str(
        havnctl_ok(&[
            "run",
            "diffusion",
            "--store",
            &store,
            "--steps",
            "1",
            "--difficulty",
            "70",
            "--seed",
            "77",
            "--out",
            &out,
            "--json",
        ])
        .trim(),
    )
    .unwrap();
    assert_eq!(v["runtime_hash"], r["runtime_hash"], "re-execution differs");
    assert_eq!(v["outputs_cid"], r["outputs_cid"], "outputs differ");
    assert!(std::path::Path::new(v["png"].as_str().unwrap()).is_file());

    // The node's outputs artifact holds the same PNG.
    let got = node.p("outputs.safetensors");
    let o = node.ctl(
        "orchestrator",
        &[
            "get",
            &format!("/artifact/{}", r["outputs_cid"].as_str().unwrap()),
            "--out",
            &got,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&got).unwrap(),
        std::fs::read(format!("{out}/outputs.safetensors")).unwrap()
    );

    // One DAG node, chosen by the validator, re-executed alone against the receipt.
    let m: Value =
        serde_json::from_slice(&std::fs::read(format!("{out}/manifest.json")).unwrap()).unwrap();
    let nodes = m["nodes"].as_array().unwrap();
    let pick = nodes[(std::process::id() as usize * 7919) % nodes.len()]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for n in [pick.as_str(), "s0:conv2d_107"] {
        let o = node.ctl(
            "validator",
            &[
                "challenge",
                "--job",
                "sys-diffusion",
                "--node",
                n,
                "--receipt",
                &receipt,
                "--store",
                &store,
                "--out",
                &node.p(&format!("challenge-{}", n.replace(':', "_"))),
            ],
        );
        assert!(
            o.status.success() && stderr(&o).contains("challenge passed"),
            "challenge of {n}: {}\nlog:\n{}",
            stderr(&o),
            node.log()
        );
    }
    // A node the job does not have is refused by name.
    let o = node.ctl(
        "validator",
        &[
            "challenge",
            "--job",
            "sys-diffusion",
            "--node",
            "s3:nope",
            "--receipt",
            &receipt,
            "--store",
            &store,
            "--out",
            &node.p("challenge-bad"),
        ],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("no node"),
        "{}",
        stderr(&o)
    );

    // A bad request is refused with the field named; nothing is queued or signed.
    std::fs::write(&req, br#"{"steps":10000}"#).unwrap();
    let o = node.ctl(
        "orchestrator",
        &[
            "submit",
            "--workflow",
            "diffusion",
            "--input",
            &req.display().to_string(),
            "--job-id",
            "sys-diffusion-bad",
            "--wait",
            "--timeout",
            "60",
        ],
    );
    // Refused at intake (400, the field named): nothing was queued.
    assert!(
        !o.status.success() && stderr(&o).contains("400") && stderr(&o).contains("inputs[0].steps"),
        "{}",
        stderr(&o)
    );
}
