//! `havnctl chat`: the orchestrator's one-liner. Uploads the chat request, submits a
//! `chat` job that names it, waits for the signed receipt, fetches the outputs by CID
//! and prints the answer and where the receipt was written.

use crate::net_cmd::{chat_checksum, client, connect, runtime, upload, wait_receipt, TlsArgs};
use anyhow::{bail, Context};
use std::path::PathBuf;

/// Arguments of `havnctl chat`.
#[derive(Debug, clap::Args)]
pub struct ChatClientArgs {
    /// The question (the user's message).
    pub question: String,
    /// Node API base URL.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    pub url: String,
    /// TLS files.
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub sampling: crate::chat_cmd::SamplingArgs,
    /// Job seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Job id (default: generated from the clock and pid).
    #[arg(long)]
    pub job_id: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Where the signed receipt goes [default: <job id>.receipt.json].
    #[arg(long)]
    pub receipt_out: Option<PathBuf>,
    /// Print one JSON object (answer, job id, receipt path, outputs CID).
    #[arg(long)]
    pub json: bool,
}

/// Runs `havnctl chat`.
pub fn run(a: ChatClientArgs) -> anyhow::Result<()> {
    let req = a.sampling.request(a.question.clone())?;
    let job_id = a.job_id.clone().unwrap_or_else(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("chat-{ms}-{}", std::process::id())
    });
    let receipt_path = a
        .receipt_out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{job_id}.receipt.json")));
    let c = client(&a.tls)?;
    runtime()?.block_on(async {
        let mut conn = connect(&c, &a.url).await?;
        let input = upload(&mut conn, serde_json::to_vec(&req)?)
            .await
            .context("uploading the request")?;
        let payload = serde_json::json!({
            "job_id": job_id,
            "workflow": {"id": "chat", "checksum": chat_checksum()?},
            "inputs": [{"name": "inputs", "cid": input, "location": "ipfs"}],
            "compute_class": "S",
            "timeout_ms": u32::try_from(a.timeout.saturating_mul(1000)).unwrap_or(u32::MAX),
            "seed": a.seed,
        });
        let r = conn
            .post("/job/accept", serde_json::to_vec(&payload)?)
            .await?;
        if r.status != 200 {
            bail!("refused ({}): {}", r.status, r.text());
        }
        let t: havn_proto::Ticket = r.json().context("parsing the ticket")?;
        let receipt = wait_receipt(&mut conn, t.ticket_id, &job_id, a.timeout).await?;
        std::fs::write(&receipt_path, &receipt)
            .with_context(|| format!("writing {}", receipt_path.display()))?;
        let signed: havn_proto::SignedReceipt =
            serde_json::from_str(&receipt).context("parsing the receipt")?;
        let cid = signed.receipt.outputs_cid;
        let bytes = havn_netd::client::fetch_artifact(&mut conn, &cid).await?;
        anyhow::ensure!(
            cid.verify(&bytes),
            "outputs do not hash to the receipt's outputs_cid {cid}"
        );
        let (ids, text) = havn_lm::outputs::parse(&bytes)?;
        if a.json {
            println!(
                "{}",
                serde_json::json!({"text": text, "token_ids": ids, "job_id": job_id,
                    "receipt": receipt_path, "outputs_cid": cid.to_string(),
                    "runtime_hash": signed.receipt.runtime_hash.to_string()})
            );
        } else {
            println!("{text}");
            eprintln!(
                "receipt: {} (job {job_id}, outputs {cid})",
                receipt_path.display()
            );
        }
        Ok(())
    })
}
