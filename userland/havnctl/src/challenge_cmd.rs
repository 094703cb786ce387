//! `havnctl challenge`: ask a node for the challenge material of one DAG node of a
//! finished job, download it (CIDs checked), re-execute the node and check that it
//! commits to the receipt's runtime hash. The logic lives in
//! `havn_netd::client::fetch_challenge` and `havn_exec::cli::verify_challenge_files`.

use anyhow::{ensure, Context};
use havn_exec::challenge::Expected;
use havn_exec::cli::{verify_challenge_files, ChallengeCheck};
use havn_exec::workloads::Size;
use havn_exec::BackendKind;
use havn_proto::SignedReceipt;
use std::path::PathBuf;

/// Arguments of `havnctl challenge`.
#[derive(Debug, clap::Args)]
pub struct ChallengeArgs {
    /// Node API base URL.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    pub url: String,
    /// TLS files (a validator uses its own client certificate).
    #[command(flatten)]
    pub tls: crate::net_cmd::TlsArgs,
    /// The finished job to challenge.
    #[arg(long)]
    pub job: String,
    /// The DAG node to re-execute (an id from the workflow's manifest).
    #[arg(long)]
    pub node: String,
    /// The job's signed receipt (JSON, as `havnctl submit --receipt-out` writes it);
    /// its signature is checked separately by `havnctl verify-receipt`.
    #[arg(long, value_name = "FILE")]
    pub receipt: PathBuf,
    /// Where to write the downloaded proof, node inputs and challenge.json.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Workflow size preset the node runs (nodes serve `small`).
    #[arg(long, default_value = "small")]
    pub size: String,
    /// Backend to re-execute on: cpu, cuda, or auto.
    #[arg(long, default_value = "auto", value_parser = ["cpu", "cuda", "auto"])]
    pub backend: String,
    /// CPU threads (0 = all cores); never changes the result.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

/// Runs `havnctl challenge`.
pub fn run(a: ChallengeArgs) -> anyhow::Result<()> {
    let size: Size = a.size.parse().map_err(anyhow::Error::msg)?;
    let text = std::fs::read(&a.receipt).with_context(|| a.receipt.display().to_string())?;
    let r = serde_json::from_slice::<SignedReceipt>(&text)
        .context("parsing the receipt")?
        .receipt;
    ensure!(
        r.job_id.as_str() == a.job,
        "the receipt is for job {:?}, not {:?}",
        r.job_id.as_str(),
        a.job
    );
    let client = crate::net_cmd::client(&a.tls)?;
    let (host, port, _) = havn_netd::client::split_url(&a.url)?;
    let ch = crate::net_cmd::runtime()?
        .block_on(async {
            let mut conn = client.connect(&host, port).await?;
            havn_netd::client::fetch_challenge(&mut conn, &a.job, &a.node).await
        })
        .with_context(|| format!("fetching the challenge material for {}/{}", a.job, a.node))?;
    std::fs::create_dir_all(&a.out).with_context(|| a.out.display().to_string())?;
    let proof_file = a.out.join(format!("proof-{}.json", a.node));
    let inputs_file = a.out.join(format!("proof-{}.inputs.safetensors", a.node));
    let write =
        |p: &PathBuf, b: &[u8]| std::fs::write(p, b).with_context(|| p.display().to_string());
    write(&proof_file, &ch.proof)?;
    write(&inputs_file, &ch.inputs)?;
    write(
        &a.out.join("challenge.json"),
        &serde_json::to_vec_pretty(&ch.body)?,
    )?;
    ensure!(
        ch.body.runtime_hash == r.runtime_hash,
        "challenge FAILED: node says runtime_hash {}, the receipt {}",
        ch.body.runtime_hash,
        r.runtime_hash
    );
    let expected = Expected {
        workflow: r.workflow_id.to_string(),
        manifest_checksum: r.manifest_checksum.0,
        seed: r.seed,
        runtime_hash: r.runtime_hash.0,
        node_id: a.node.clone(),
    };
    let backend = match a.backend.as_str() {
        "cpu" => BackendKind::Cpu,
        "cuda" => BackendKind::Cuda,
        _ => BackendKind::Auto,
    };
    let p = verify_challenge_files(&ChallengeCheck {
        size,
        expected: &expected,
        proof_file: &proof_file,
        inputs_file: &inputs_file,
        backend,
        threads: a.threads,
    })
    .context("challenge FAILED")?;
    println!(
        "challenge passed: job {} node {} re-executed (hash {}), committed in the receipt's runtime_hash {}",
        a.job, p.node_id, p.node_hash, p.runtime_hash
    );
    Ok(())
}
