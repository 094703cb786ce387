//! Gas of Havn's on-chain paths on a local anvil, each beside a plain HAI transfer
//! measured in the same run (the cheapest useful transaction): bonding, settling with
//! a certificate of n validator signatures, and a claim with a Merkle proof of depth d.
//! Gas is deterministic for a given EVM; the figures say what a validator committee and
//! a node pay per epoch and per receipt.
//!
//! Prints `BENCH name value unit baseline ratio` lines for scripts/bench.

use std::process::ExitCode;

use havn_chain_client::alloy::primitives::{TxHash, B256, U256};
use havn_chain_client::alloy::providers::Provider;
use havn_chain_client::client::confirm;
use havn_chain_client::devnet::Devnet;
use havn_chain_client::eip712::{self, Settlement};
use havn_chain_client::payout::{PayoutLeaf, PayoutTree};
use havn_chain_client::{hai, Chain, ChainError, Role};

async fn gas(c: &Chain, tx: TxHash) -> Result<u64, ChainError> {
    let r = c
        .provider()
        .get_transaction_receipt(tx)
        .await?
        .ok_or_else(|| ChainError::Transport(format!("no receipt for {tx}")))?;
    Ok(r.gas_used)
}

fn line(name: &str, value: u64, baseline: u64) {
    let ratio = value as f64 / baseline.max(1) as f64;
    println!("BENCH {name} {value} gas {baseline} {ratio:.2}");
}

/// A dev chain with `validators` bonded validators (accounts 1..=n), a bonded node
/// (n + 1) and a funded payout pool (n + 2); returns it with the baseline transfer's gas
/// and the bond's gas.
async fn committee(validators: usize) -> Result<(Devnet, u64, u64), ChainError> {
    let net = Devnet::start(validators + 3, 3_600, 1_000_000).await?;
    let (node, orchestrator) = (validators + 1, validators + 2);
    let n = net.chain(node)?;
    let base_tx = confirm(n.hai().transfer(net.address(orchestrator), hai(1))).await?;
    let base = gas(&n, base_tx).await?;
    n.approve(net.deployment().stake_guard, hai(2_000)).await?;
    let call = n.stake_guard();
    let tx = confirm(call.bond(
        B256::repeat_byte(0xee),
        0,
        0,
        hai(2_000),
        net.address(node),
        B256::ZERO,
    ))
    .await?;
    let bond = gas(&n, tx).await?;
    for v in 1..=validators {
        net.chain(v)?
            .bond(
                B256::from(U256::from(v)),
                0,
                Role::Validator,
                hai(2_000),
                net.address(v),
                B256::ZERO,
            )
            .await?;
    }
    net.chain(orchestrator)?.fund(hai(100_000)).await?;
    Ok((net, base, bond))
}

/// Settles a tree of 2^depth leaves paying the node, signed by ⌈2n/3⌉ validators;
/// returns the settlement, the tree and the settle transaction's gas.
async fn settle(
    net: &Devnet,
    validators: usize,
    epoch: u64,
    depth: u32,
) -> Result<(Settlement, PayoutTree, u64), ChainError> {
    let node = validators + 1;
    let leaves: Vec<PayoutLeaf> = (0..(1u64 << depth))
        .map(|i| PayoutLeaf {
            receipt: B256::from((U256::from(epoch) << 64) | U256::from(i)),
            node_key: B256::repeat_byte(0xee),
            payee: net.address(node),
            fee: hai(1),
        })
        .collect();
    let tree = PayoutTree::new(leaves);
    let s = Settlement {
        epoch,
        computeClass: 0,
        payoutRoot: tree.root(),
        receipts: u32::try_from(tree.leaves().len()).unwrap_or(u32::MAX),
    };
    let digest = eip712::signing_hash(&s, &net.chain(0)?.domain());
    let sigs = (1..=(validators * 2).div_ceil(3))
        .map(|v| eip712::sign_digest(&net.key(v), &digest).map_err(ChainError::Transport))
        .collect::<Result<Vec<_>, _>>()?;
    let c = net.chain(validators + 2)?;
    let tx = c.settle(&s, eip712::certificate(sigs)).await?;
    Ok((s, tree, gas(&c, tx).await?))
}

async fn run(committees: &[usize], depths: &[u32]) -> Result<(), ChainError> {
    let mut last = None;
    for &n in committees {
        let (net, base, bond) = committee(n).await?;
        if last.is_none() {
            line("chain_bond_gas", bond, base);
        }
        let (_, _, g) = settle(&net, n, 1, 2).await?;
        line(
            &format!(
                "chain_settle_gas_committee{n}_signers{}",
                (n * 2).div_ceil(3)
            ),
            g,
            base,
        );
        last = Some((net, n, base));
    }
    let Some((net, n, base)) = last else {
        return Ok(());
    };
    for (i, &d) in depths.iter().enumerate() {
        let (s, tree, _) = settle(&net, n, 100 + i as u64, d).await?;
        let first = tree.leaves()[0].receipt;
        let (leaf, proof) = tree
            .proof(&first)
            .ok_or_else(|| ChainError::Transport("no proof".into()))?;
        let c = net.chain(n + 2)?;
        let tx = c.claim(&s, Vec::new(), &leaf, proof).await?;
        line(
            &format!("chain_claim_gas_depth{d}"),
            gas(&c, tx).await?,
            base,
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    if havn_chain_client::devnet::anvil_path().is_none() {
        eprintln!("havn-chain-bench: anvil not found (scripts/setup installs it)");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("havn-chain-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&[3, 10, 30], &[4, 10])) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("havn-chain-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
