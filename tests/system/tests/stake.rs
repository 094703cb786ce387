//! Stake end to end on a real node (havn-init, attestd on swtpm, execd, netd) against a
//! real anvil: intake refuses jobs until StakeGuard says the node is bonded; an operator
//! bonds through the node (attestd's sealed chain key signs); only the owner's key can
//! unbond and withdraw, and the node refuses jobs from the moment it is unbonding.

use crate::harness::*;
use havn_chain_client::devnet::Devnet;
use std::time::{Duration, Instant};

fn anvil_or_skip() -> bool {
    havn_testkit::require(
        havn_chain_client::devnet::anvil_path().is_some(),
        "anvil",
        "scripts/setup installs it (npm ci in chain/)",
    )
}

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Waits until `f` holds (the node re-reads StakeGuard every 500 ms).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_node_takes_jobs_only_while_bonded_and_only_its_owner_moves_the_stake() {
    if !need_root() || !anvil_or_skip() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let net = rt.block_on(Devnet::start(10, 60, 100_000)).expect("devnet");
    let mut node = Node::prepare();
    net.deployment()
        .save(&node.path("deployment.json"))
        .unwrap();
    let owner = net.key(9);
    std::fs::write(
        node.path("owner.key"),
        havn_chain_client::alloy::hex::encode(owner.to_bytes()),
    )
    .unwrap();
    let mut toml = std::fs::read_to_string(node.path("node.toml")).unwrap();
    toml.push_str(&format!(
        "\n[chain]\nrpc = \"{}\"\ndeployment = \"{}\"\nowner = \"{}\"\nrefresh_ms = 500\nmax_staleness_ms = 10000\n",
        net.endpoint(),
        node.p("deployment.json"),
        owner.address()
    ));
    std::fs::write(node.path("node.toml"), toml).unwrap();
    node.start();

    // The node names its sealed chain key's account; nothing is bonded yet.
    let o = node.ctl("operator", &["stake", "status", "--json"]);
    assert!(o.status.success(), "{}", out(&o));
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let account: havn_chain_client::alloy::primitives::Address =
        status["account"].as_str().unwrap().parse().unwrap();
    eventually("a first StakeGuard reading", || {
        let (ok, text) = node.try_submit("pre");
        !ok && text.contains("not bonded") && text.contains("2000 HAI")
    });

    // The operator funds the account (gas and HAI) and bonds through the node.
    rt.block_on(net.fund(account, 5_000)).unwrap();
    let o = node.ctl("operator", &["stake", "bond", "--amount-hai", "2000"]);
    assert!(
        o.status.success(),
        "bond: {}\nlog:\n{}",
        out(&o),
        node.log()
    );
    let chain = net.chain(0).unwrap();
    assert!(rt.block_on(chain.is_active(account)).unwrap());
    let bond = rt.block_on(chain.bond_of(account)).unwrap();
    assert_eq!(
        bond.owner,
        owner.address(),
        "the owner is node.toml's, not netd's choice"
    );
    eventually("intake open once bonded", || node.try_submit("bonded").0);

    // A payout claim file (as validators certify it) paid through havnctl, once.
    let validators = [3usize, 4, 5];
    for v in validators {
        let c = net.chain(v).unwrap();
        rt.block_on(c.bond(
            havn_chain_client::alloy::primitives::B256::repeat_byte(u8::try_from(v).unwrap()),
            0,
            havn_chain_client::Role::Validator,
            havn_chain_client::hai(2_000),
            net.address(v),
            havn_chain_client::alloy::primitives::B256::ZERO,
        ))
        .unwrap();
    }
    rt.block_on(net.chain(6).unwrap().fund(havn_chain_client::hai(1_000)))
        .unwrap();
    let leaf = havn_chain_client::payout::PayoutLeaf {
        receipt: havn_chain_client::alloy::primitives::B256::repeat_byte(0x77),
        node_key: bond.nodeKey,
        payee: account,
        fee: havn_chain_client::hai(3),
    };
    let other = havn_chain_client::payout::PayoutLeaf {
        receipt: havn_chain_client::alloy::primitives::B256::repeat_byte(0x78),
        ..leaf.clone()
    };
    let tree = havn_chain_client::payout::PayoutTree::new(vec![leaf.clone(), other]);
    let (leaf, proof) = tree.proof(&leaf.receipt).unwrap();
    let settlement = havn_chain_client::eip712::Settlement {
        epoch: 1,
        computeClass: 0,
        payoutRoot: tree.root(),
        receipts: 2,
    };
    let digest = havn_chain_client::eip712::signing_hash(&settlement, &chain.domain());
    let certificate = havn_chain_client::eip712::certificate(
        validators
            .iter()
            .map(|v| havn_chain_client::eip712::sign_digest(&net.key(*v), &digest).unwrap())
            .collect(),
    );
    let claim = havn_chain_client::payout::Claim {
        epoch: 1,
        compute_class: 0,
        payout_root: tree.root(),
        receipts: 2,
        certificate,
        leaf: leaf.clone(),
        proof,
    };
    std::fs::write(node.path("claim.json"), serde_json::to_vec(&claim).unwrap()).unwrap();
    std::fs::write(
        node.path("sender.key"),
        havn_chain_client::alloy::hex::encode(net.key(6).to_bytes()),
    )
    .unwrap();
    let (rpc, dep) = (net.endpoint(), node.p("deployment.json"));
    let receipt = format!("{}", leaf.receipt);
    let status = || {
        havnctl(&[
            "payout",
            "status",
            "--receipt",
            &receipt,
            "--rpc",
            &rpc,
            "--deployment",
            &dep,
        ])
    };
    assert!(out(&status()).contains("not paid"), "{}", out(&status()));
    let before = rt.block_on(chain.balance(owner.address())).unwrap();
    let claim_args = [
        "payout",
        "claim",
        &node.p("claim.json"),
        "--key",
        &node.p("sender.key"),
        "--rpc",
        &rpc,
        "--deployment",
        &dep,
    ];
    let o = havnctl(&claim_args);
    assert!(o.status.success(), "claim: {}", out(&o));
    assert_eq!(
        rt.block_on(chain.balance(owner.address())).unwrap(),
        before + havn_chain_client::hai(3),
        "fee × 1.0 (class S) to the bond's owner, whoever sent the claim"
    );
    assert!(out(&status()).contains("PAID"), "{}", out(&status()));
    let o = havnctl(&claim_args);
    assert!(
        !o.status.success() && out(&o).contains("AlreadyPaid"),
        "replayed: {}",
        out(&o)
    );

    // The owner unbonds with its own key, straight to the chain.
    let rpc = net.endpoint();
    let dep = node.p("deployment.json");
    let key = node.p("owner.key");
    let acct = account.to_string();
    let owner_args = |cmd: &str| {
        havnctl(&[
            "stake",
            cmd,
            "--account",
            &acct,
            "--owner-key",
            &key,
            "--rpc",
            &rpc,
            "--deployment",
            &dep,
        ])
    };
    let o = owner_args("unbond");
    assert!(o.status.success(), "unbond: {}", out(&o));
    eventually("intake closed while unbonding", || {
        let (ok, text) = node.try_submit("unbonding");
        !ok && text.contains("unbonding")
    });
    let o = owner_args("withdraw");
    assert!(
        !o.status.success() && out(&o).contains("StillBonded"),
        "{}",
        out(&o)
    );
    rt.block_on(net.advance(61)).unwrap();
    let before = rt.block_on(chain.balance(owner.address())).unwrap();
    let o = owner_args("withdraw");
    assert!(o.status.success(), "withdraw: {}", out(&o));
    assert_eq!(
        rt.block_on(chain.balance(owner.address())).unwrap(),
        before + havn_chain_client::hai(2_000),
        "the stake went back to its owner"
    );
    node.stop();
}

#[test]
fn havnctl_deploys_the_contracts_and_reads_them_back() {
    if !anvil_or_skip() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let net = rt.block_on(Devnet::start(3, 60, 1_000)).expect("devnet");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("deployer.hex");
    std::fs::write(
        &key,
        havn_chain_client::alloy::hex::encode(net.key(1).to_bytes()),
    )
    .unwrap();
    let file = dir.path().join("chain.json");
    let (rpc, k, f) = (
        net.endpoint(),
        key.display().to_string(),
        file.display().to_string(),
    );
    let o = havnctl(&[
        "chain",
        "deploy",
        "--rpc",
        &rpc,
        "--key",
        &k,
        "--out",
        &f,
        "--unbonding-delay-s",
        "5",
    ]);
    assert!(o.status.success(), "{}", out(&o));
    let d = havn_chain_client::Deployment::load(&file).unwrap();
    assert_ne!(
        d.stake_guard,
        net.deployment().stake_guard,
        "a fresh deployment"
    );
    let chain = havn_chain_client::Chain::new(
        havn_chain_client::devnet::provider(&rpc, &net.key(1)).unwrap(),
        d,
    );
    let delay = rt
        .block_on(async { chain.stake_guard().unbondingDelay().call().await })
        .unwrap();
    assert_eq!(delay, 5);
    // A wrong key file is a clear error, not a panic.
    std::fs::write(&key, "not a key").unwrap();
    let o = havnctl(&["chain", "deploy", "--rpc", &rpc, "--key", &k, "--out", &f]);
    assert!(
        !o.status.success() && out(&o).contains("is not a private key"),
        "{}",
        out(&o)
    );
}
