//! Validator-mesh commands: the mesh as a node sees it, and checking an epoch
//! settlement offline.

use anyhow::Context;
use clap::Args;
use havn_mesh::bundle::{verify_bundle, SettlementBundle};
use std::path::PathBuf;

/// `havnctl verify-settlement FILE`.
#[derive(Debug, Args)]
pub struct VerifySettlementArgs {
    /// The settlement file (JSON: `{"certificate": …, "inclusions": [{"receipt", "proof"}]}`),
    /// as validators write it (`mesh-summary.json`'s settlements are such files).
    pub file: PathBuf,
    /// The committee root the certificate must be signed by (64 hex digits); without
    /// it, the committee listed in the file is checked only against its own root.
    #[arg(long)]
    pub committee: Option<String>,
    /// Epoch length in milliseconds (the mesh's `epoch_ms`), to place receipts in epochs.
    #[arg(long, default_value_t = havn_mesh::MeshParams::default().epoch_ms)]
    pub epoch_ms: u64,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Verifies the certificate (≥ 2/3 of the committee's weight, distinct members'
/// signatures over the settlement) and every receipt's signature and inclusion proof.
pub fn verify_settlement(a: VerifySettlementArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let bundle: SettlementBundle = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a settlement file", a.file.display()))?;
    let expected = a
        .committee
        .as_deref()
        .map(havn_proto::Hash32::from_hex)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--committee: {e:?}"))?;
    let report = verify_bundle(&bundle, a.epoch_ms, expected.as_ref())
        .map_err(|e| anyhow::anyhow!("settlement INVALID: {e}"))?;
    let s = &bundle.certificate.settlement;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "valid": true,
                "class": format!("{:?}", s.compute_class),
                "epoch": s.epoch,
                "signed_weight": report.signed_weight.to_string(),
                "total_weight": report.total_weight.to_string(),
                "receipt_count": report.receipt_count,
                "receipts_proved": report.receipts_proved,
            })
        );
    } else {
        println!(
            "VALID settlement class={:?} epoch={} signed weight {}/{} receipts {} (proved here: {})",
            s.compute_class,
            s.epoch,
            report.signed_weight,
            report.total_weight,
            report.receipt_count,
            report.receipts_proved
        );
    }
    Ok(())
}

/// `havnctl mesh …`.
#[derive(Debug, Args)]
pub struct MeshArgs {
    /// What to do.
    #[command(subcommand)]
    pub cmd: MeshCmd,
}

/// `havnctl mesh` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum MeshCmd {
    /// The node's view of the mesh (operators and validators): its peer id, peers with
    /// their gossip scores, topics with their mesh sizes, known nodes, and the last
    /// verdicts it saw.
    Status(MeshStatusArgs),
}

/// `havnctl mesh status`.
#[derive(Debug, Args)]
pub struct MeshStatusArgs {
    /// Node API base URL.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    pub url: String,
    /// TLS files (an operator's or validator's certificate).
    #[command(flatten)]
    pub tls: crate::net_cmd::TlsArgs,
}

/// Runs `havnctl mesh …`.
pub fn run(a: MeshArgs) -> anyhow::Result<()> {
    let MeshCmd::Status(s) = a.cmd;
    crate::net_cmd::run_get(crate::net_cmd::GetArgs {
        path: "/mesh/status".into(),
        url: s.url,
        tls: s.tls,
        out: None,
    })
}
