//! Intake against StakeGuard on a real anvil: no bond → 403 naming the floor; a bond
//! sent through `POST /stake/bond` (signed by the attestd stand-in's chain key) opens
//! intake; a chain that goes away closes it with 503 once the reading is stale.

use crate::common::*;
use havn_chain_client::devnet::Devnet;
use havn_proto::ComputeClass;
use serde_json::{json, Value};
use std::time::Duration;

fn anvil_or_skip() -> bool {
    havn_testkit::require(
        havn_chain_client::devnet::anvil_path().is_some(),
        "anvil",
        "scripts/setup installs it (npm ci in chain/)",
    )
}

/// A devnet with the stand-in's chain account funded, and the `[chain]` section for it.
async fn chain(tag: &str) -> (Devnet, String) {
    let net = Devnet::start(10, 3_600, 100_000).await.expect("devnet");
    net.fund(chain_key().address(), 20_000).await.expect("fund");
    let file = tmpdir(tag).join("deployment.json");
    net.deployment().save(&file).unwrap();
    let section = format!(
        "[chain]\nrpc = \"{}\"\ndeployment = \"{}\"\nowner = \"{}\"\nrefresh_ms = 200\nmax_staleness_ms = 1500\n",
        net.endpoint(),
        file.display(),
        net.address(9)
    );
    (net, section)
}

async fn post(c: &mut havn_netd::client::Conn, path: &str, v: &Value) -> (u16, Value) {
    let r = c.post(path, serde_json::to_vec(v).unwrap()).await.unwrap();
    (r.status, r.json().unwrap_or(Value::Null))
}

async fn op_conn(node: &Node) -> havn_netd::client::Conn {
    operator()
        .connect("127.0.0.1", node.running.local_addr.port())
        .await
        .expect("operator connects")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_opens_only_once_stake_guard_says_the_node_is_bonded() {
    if !anvil_or_skip() {
        return;
    }
    let (net, section) = chain("stake-bond").await;
    let cfg = Cfg {
        chain: Some(section),
        ..Cfg::default()
    };
    let node = start_node(cfg, ComputeClass::M, Duration::ZERO).await;
    let mut c = node.orchestrator().await;
    let mut op = op_conn(&node).await;
    // Wait for the first reading (refresh 200 ms).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (s, v) = post(&mut c, "/job/accept", &job("u1")).await;
    assert_eq!(
        (s, v["field"].as_str()),
        (403, Some("compute_class")),
        "{v}"
    );
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("not bonded") && msg.contains("2000 HAI"),
        "names the floor: {v}"
    );
    // Only operators bond; a bond under the floor is the contract's named revert.
    let (s, v) = post(&mut c, "/stake/bond", &json!({"amount_hai": 5000})).await;
    assert_eq!(s, 403, "orchestrators may not bond: {v}");
    let (s, v) = post(&mut op, "/stake/bond", &json!({"amount_hai": 1})).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("BelowFloor"), "{v}");
    let (s, v) = post(&mut op, "/stake/bond", &json!({"amount": 1})).await;
    assert_eq!(s, 400, "unknown field: {v}");
    // Class M: 5,000 HAI.
    let (s, v) = post(&mut op, "/stake/bond", &json!({"amount_hai": 5000})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["stake"]["bond"]["amount_hai"], 5000, "{v}");
    assert_eq!(
        v["stake"]["bond"]["owner"].as_str().unwrap().to_lowercase(),
        net.address(9).to_string().to_lowercase()
    );
    let (s, v) = post(&mut c, "/job/accept", &job("u2")).await;
    assert_eq!(s, 200, "bonded: {v}");
    // A class-L job needs 9,000 HAI.
    let mut l = job("u3");
    l["compute_class"] = json!("L");
    let (s, v) = post(&mut c, "/job/accept", &l).await;
    assert_eq!(s, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("9000 HAI"), "{v}");
    // The operator's view.
    let r = op.get("/stake").await.unwrap();
    let v: Value = r.json().unwrap();
    assert_eq!(r.status, 200, "{v}");
    assert_eq!(v["stake"]["bond"]["active"], true, "{v}");
    assert_eq!(
        v["balances"]["hai"], 15_000,
        "20,000 funded, 5,000 bonded: {v}"
    );
    let chain = net.chain(0).unwrap();
    assert!(chain.is_active(chain_key().address()).await.unwrap());

    // The chain goes away: within the staleness bound intake stays open, past it 503.
    drop(net);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (s, v) = post(&mut c, "/job/accept", &job("u4")).await;
    assert_eq!(s, 503, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("stake is unknown"),
        "{v}"
    );
    let r = c.get("/health").await.unwrap();
    let h: Value = r.json().unwrap();
    assert!(h["stake"]["error"].is_string(), "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_that_never_answered_keeps_intake_closed() {
    // An endpoint nobody listens on: no reading, ever.
    let file = tmpdir("stake-none").join("deployment.json");
    std::fs::write(
        &file,
        r#"{"chain_id":31337,"hai":"0x0000000000000000000000000000000000000001","stake_guard":"0x0000000000000000000000000000000000000002","adjudicator":"0x0000000000000000000000000000000000000003","payout_router":"0x0000000000000000000000000000000000000004"}"#,
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = Cfg {
        chain: Some(format!(
            "[chain]\nrpc = \"http://127.0.0.1:{port}\"\ndeployment = \"{}\"\nowner = \"0x00000000000000000000000000000000000000aa\"\nrefresh_ms = 200\nmax_staleness_ms = 1000\n",
            file.display()
        )),
        ..Cfg::default()
    };
    let node = start_node(cfg, ComputeClass::S, Duration::ZERO).await;
    let mut c = node.orchestrator().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (s, v) = post(&mut c, "/job/accept", &job("n1")).await;
    assert_eq!(s, 503, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("has not answered since start"),
        "{v}"
    );
    let mut op = op_conn(&node).await;
    let (s, v) = post(&mut op, "/stake/bond", &json!({"amount_hai": 2000})).await;
    assert_eq!(s, 503, "no chain to send to: {v}");
}
