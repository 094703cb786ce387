//! Stake and payouts: `havnctl stake bond|status|unbond|withdraw`, `havnctl payout
//! claim|status`, and `havnctl chain deploy` for a dev chain.
//!
//! `bond` and `status` go through the node (its chain key, sealed in attestd, signs);
//! `unbond` and `withdraw` are the owner's alone and are signed here with the owner's
//! own key (the node's key cannot sign them); `payout claim` may be sent by anyone
//! (the bond's owner is paid), `payout status` only reads the chain.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use havn_chain_client::alloy::primitives::{Address, B256};
use havn_chain_client::alloy::providers::{Provider, ProviderBuilder};
use havn_chain_client::alloy::signers::local::PrivateKeySigner;
use havn_chain_client::{Chain, Deployment};
use std::path::PathBuf;

/// Where the chain is, for the commands that talk to it directly.
#[derive(Debug, Args)]
pub struct ChainArgs {
    /// The chain's JSON-RPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8545")]
    pub rpc: String,
    /// The deployment file (`[chain] deployment` in node.toml).
    #[arg(long, value_name = "FILE")]
    pub deployment: PathBuf,
}

/// `havnctl stake …`.
#[derive(Debug, Args)]
pub struct StakeArgs {
    /// What to do.
    #[command(subcommand)]
    pub cmd: StakeCmd,
}

/// `havnctl stake` subcommands.
#[derive(Debug, Subcommand)]
pub enum StakeCmd {
    /// Bond HAI for the node's key, class and role (an operator; the node's chain key
    /// signs, naming the owner configured in node.toml).
    Bond(BondArgs),
    /// The node's bond as StakeGuard says it, its account and balances.
    Status(NodeArgs),
    /// Start unbonding a node's stake (the owner's key signs; the node's cannot).
    Unbond(OwnerArgs),
    /// Withdraw an unbonded stake to the owner after the delay.
    Withdraw(OwnerArgs),
}

/// A node's API.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Node API base URL.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    pub url: String,
    /// TLS files (an operator's certificate).
    #[command(flatten)]
    pub tls: crate::net_cmd::TlsArgs,
    /// Print the node's JSON answer.
    #[arg(long)]
    pub json: bool,
}

/// `havnctl stake bond`.
#[derive(Debug, Args)]
pub struct BondArgs {
    /// Whole HAI to bond (at least the class floor: S 2000, M 5000, L 9000, XL 18000).
    #[arg(long)]
    pub amount_hai: u64,
    /// The node.
    #[command(flatten)]
    pub node: NodeArgs,
}

/// The owner's side.
#[derive(Debug, Args)]
pub struct OwnerArgs {
    /// The node's chain account (`havnctl stake status` shows it).
    #[arg(long)]
    pub account: Address,
    /// The owner's private key (a file holding 64 hex digits).
    #[arg(long, value_name = "FILE")]
    pub owner_key: PathBuf,
    /// The chain.
    #[command(flatten)]
    pub chain: ChainArgs,
}

/// `havnctl payout …`.
#[derive(Debug, Args)]
pub struct PayoutArgs {
    /// What to do.
    #[command(subcommand)]
    pub cmd: PayoutCmd,
}

/// `havnctl payout` subcommands.
#[derive(Debug, Subcommand)]
pub enum PayoutCmd {
    /// Claim one receipt's payout from a claim file (settlement, certificate, leaf,
    /// proof); the bond's owner is paid, whoever sends it.
    Claim(ClaimArgs),
    /// Whether a receipt was paid.
    Status(PaidArgs),
}

/// `havnctl payout claim`.
#[derive(Debug, Args)]
pub struct ClaimArgs {
    /// The claim file (JSON).
    pub file: PathBuf,
    /// The sender's key (pays the gas; a file holding 64 hex digits).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The chain.
    #[command(flatten)]
    pub chain: ChainArgs,
}

/// `havnctl payout status`.
#[derive(Debug, Args)]
pub struct PaidArgs {
    /// The receipt's signing digest (64 hex digits).
    #[arg(long)]
    pub receipt: B256,
    /// The chain.
    #[command(flatten)]
    pub chain: ChainArgs,
}

fn read_key(path: &PathBuf) -> anyhow::Result<PrivateKeySigner> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.trim().parse().map_err(|e| {
        anyhow::anyhow!(
            "{} is not a private key (64 hex digits): {e}",
            path.display()
        )
    })
}

fn chain(a: &ChainArgs, key: Option<&PrivateKeySigner>) -> anyhow::Result<Chain> {
    let deployment = Deployment::load(&a.deployment)?;
    let url = a.rpc.parse().with_context(|| format!("--rpc {}", a.rpc))?;
    let provider = match key {
        Some(k) => ProviderBuilder::new()
            .wallet(havn_chain_client::alloy::network::EthereumWallet::from(
                k.clone(),
            ))
            .connect_http(url)
            .erased(),
        None => ProviderBuilder::new().connect_http(url).erased(),
    };
    Ok(Chain::new(provider, deployment))
}

async fn node_call(
    n: &NodeArgs,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let c = crate::net_cmd::client(&n.tls)?;
    let mut conn = crate::net_cmd::connect(&c, &n.url).await?;
    let r = match body {
        Some(b) => conn.post(path, serde_json::to_vec(&b)?).await?,
        None => conn.get(path).await?,
    };
    let v: serde_json::Value = r.json().unwrap_or(serde_json::Value::Null);
    if r.status >= 400 {
        bail!(
            "HTTP {}: {}",
            r.status,
            v["error"].as_str().unwrap_or(&r.text())
        );
    }
    Ok(v)
}

fn print_stake(v: &serde_json::Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
        return Ok(());
    }
    let s = &v["stake"];
    if s["checked"] == false {
        println!(
            "stake: not checked ({})",
            s["why"].as_str().unwrap_or("no [chain]")
        );
        return Ok(());
    }
    let b = &s["bond"];
    println!(
        "account {}  bonded {} HAI class {}  active {}  quarantined {}  unbonding {}  owner {}",
        v["account"].as_str().unwrap_or("?"),
        b["amount_hai"],
        b["compute_class"].as_str().unwrap_or("-"),
        b["active"],
        b["quarantined"],
        b["unbonding"],
        b["owner"].as_str().unwrap_or("-"),
    );
    if let Some(bal) = v.get("balances") {
        println!("balances: {} HAI, {} ETH (gas)", bal["hai"], bal["eth"]);
    }
    Ok(())
}

/// Runs `havnctl stake …`.
pub fn run_stake(a: StakeArgs) -> anyhow::Result<()> {
    let rt = crate::net_cmd::runtime()?;
    rt.block_on(async {
        match a.cmd {
            StakeCmd::Status(n) => print_stake(&node_call(&n, "/stake", None).await?, n.json),
            StakeCmd::Bond(b) => {
                eprintln!(
                    "bonding {} HAI through the node (attestd signs)…",
                    b.amount_hai
                );
                let v = node_call(
                    &b.node,
                    "/stake/bond",
                    Some(serde_json::json!({"amount_hai": b.amount_hai})),
                )
                .await?;
                if b.node.json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                } else {
                    println!("bonded {} HAI: tx {}", b.amount_hai, v["tx"]);
                    print_stake(&v, false)?;
                }
                Ok(())
            }
            StakeCmd::Unbond(o) => {
                let key = read_key(&o.owner_key)?;
                let tx = chain(&o.chain, Some(&key))?.unbond(o.account).await?;
                println!(
                    "unbonding {} (tx {tx}); withdraw after the delay",
                    o.account
                );
                Ok(())
            }
            StakeCmd::Withdraw(o) => {
                let key = read_key(&o.owner_key)?;
                let tx = chain(&o.chain, Some(&key))?.withdraw(o.account).await?;
                println!("withdrawn {} to its owner (tx {tx})", o.account);
                Ok(())
            }
        }
    })
}

/// Runs `havnctl payout …`.
pub fn run_payout(a: PayoutArgs) -> anyhow::Result<()> {
    let rt = crate::net_cmd::runtime()?;
    rt.block_on(async {
        match a.cmd {
            PayoutCmd::Status(p) => {
                let c = chain(&p.chain, None)?;
                let paid = c.is_paid(p.receipt).await?;
                println!(
                    "receipt {} {}",
                    p.receipt,
                    if paid { "PAID" } else { "not paid" }
                );
                Ok(())
            }
            PayoutCmd::Claim(c) => {
                let text = std::fs::read(&c.file)
                    .with_context(|| format!("reading {}", c.file.display()))?;
                let claim: havn_chain_client::payout::Claim = serde_json::from_slice(&text)
                    .with_context(|| format!("{} is not a claim file", c.file.display()))?;
                if !claim.proves() {
                    bail!("the claim's proof does not lead to its payout root: not sent");
                }
                let key = read_key(&c.key)?;
                let ch = chain(&c.chain, Some(&key))?;
                let before = ch
                    .balance(ch.bond_of(claim.leaf.payee).await?.owner)
                    .await?;
                let tx = ch
                    .claim(
                        &claim.settlement(),
                        claim.certificate.clone(),
                        &claim.leaf,
                        claim.proof.clone(),
                    )
                    .await?;
                let owner = ch.bond_of(claim.leaf.payee).await?.owner;
                let after = ch.balance(owner).await?;
                println!(
                    "paid receipt {} to {owner}: +{} HAI wei (tx {tx})",
                    claim.leaf.receipt,
                    after.saturating_sub(before)
                );
                Ok(())
            }
        }
    })
}

/// `havnctl chain …`.
#[derive(Debug, Args)]
pub struct ChainCmdArgs {
    /// What to do.
    #[command(subcommand)]
    pub cmd: ChainCmd,
}

/// `havnctl chain` subcommands.
#[derive(Debug, Subcommand)]
pub enum ChainCmd {
    /// Deploy HAI, StakeGuard, Adjudicator and PayoutRouter (a dev or test chain) and
    /// write the deployment file nodes name in `[chain] deployment`.
    Deploy(DeployArgs),
}

/// `havnctl chain deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The chain's JSON-RPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8545")]
    pub rpc: String,
    /// The deployer's key (pays the gas; becomes HAI's minter): a file of 64 hex digits.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// StakeGuard's unbonding delay in seconds.
    #[arg(long, default_value_t = 7 * 24 * 3600)]
    pub unbonding_delay_s: u64,
    /// Where to write the deployment file.
    #[arg(long, value_name = "FILE", default_value = "chain.json")]
    pub out: PathBuf,
}

/// Runs `havnctl chain …`.
pub fn run_chain(a: ChainCmdArgs) -> anyhow::Result<()> {
    let ChainCmd::Deploy(d) = a.cmd;
    let key = read_key(&d.key)?;
    let url = d.rpc.parse().with_context(|| format!("--rpc {}", d.rpc))?;
    let provider = ProviderBuilder::new()
        .wallet(havn_chain_client::alloy::network::EthereumWallet::from(key))
        .connect_http(url)
        .erased();
    let rt = crate::net_cmd::runtime()?;
    let deployment = rt.block_on(havn_chain_client::deploy::deploy(
        &provider,
        d.unbonding_delay_s,
    ))?;
    deployment.save(&d.out)?;
    println!(
        "deployed on chain {}: HAI {}, StakeGuard {}, Adjudicator {}, PayoutRouter {}; wrote {}",
        deployment.chain_id,
        deployment.hai,
        deployment.stake_guard,
        deployment.adjudicator,
        deployment.payout_router,
        d.out.display()
    );
    Ok(())
}
