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
    /// The DAG node to re-execute (an id from the workflow's manifest; chat:
    /// `s<call>.b<block>` or `s<call>.head`; transcribe: `enc<block>`).
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
    /// chat jobs: the request the orchestrator submitted (JSON); the node must have run
    /// exactly it (the receipt does not name its input yet).
    #[arg(long, value_name = "FILE")]
    pub request: Option<PathBuf>,
    /// chat, diffusion and transcribe jobs: the model store holding the job's model
    /// [default: $HAVN_MODEL_STORE, else /var/lib/havn/models].
    #[arg(long)]
    pub store: Option<PathBuf>,
}

/// A chat job's block (`s<call>.b<block>`): the node's openings, checked against the
/// receipt, the block re-executed here alone.
fn verify_chat(
    a: &ChallengeArgs,
    r: &havn_proto::Receipt,
    proof: &[u8],
    outputs: &[u8],
) -> anyhow::Result<()> {
    let ch: havn_lm::challenge::BlockChallenge =
        serde_json::from_slice(proof).context("parsing the chat challenge")?;
    let model_cid: havn_proto::Cid = ch
        .model_cid
        .parse()
        .map_err(|e| anyhow::anyhow!("model_cid: {e:?}"))?;
    ensure!(
        havn_lm::chat::workflow_checksum(&model_cid) == r.manifest_checksum.0,
        "challenge FAILED: the node ran model {model_cid}, which the receipt's workflow checksum does not name"
    );
    ensure!(
        ch.seed == r.seed,
        "challenge FAILED: seed {} is not the receipt's {}",
        ch.seed,
        r.seed
    );
    ensure!(
        havn_lm::challenge::node_id(ch.step, ch.layer) == a.node,
        "challenge FAILED: the node opened block {} instead of {}",
        havn_lm::challenge::node_id(ch.step, ch.layer),
        a.node
    );
    let dir = a
        .store
        .clone()
        .unwrap_or_else(crate::models_cmd::default_store);
    let store = havn_lm::store::Store::open(&dir)?;
    let m = store
        .load(&ch.model_cid)
        .with_context(|| format!("loading model {} from {}", ch.model_cid, dir.display()))?;
    let pool = havn_lm::linear::pool(a.threads)?;
    havn_lm::challenge::verify(&m, &ch, &r.runtime_hash.to_string(), &pool)
        .context("challenge FAILED")?;
    havn_lm::challenge::check_outputs(&m, &ch, outputs).context("challenge FAILED: outputs")?;
    if let Some(file) = &a.request {
        let bytes = std::fs::read(file).with_context(|| file.display().to_string())?;
        let want = havn_lm::ChatRequest::from_json(&bytes)?;
        ensure!(
            want.digest() == ch.request.digest(),
            "challenge FAILED: the node ran another request than {}",
            file.display()
        );
    }
    let what = if ch.layer == havn_lm::challenge::HEAD {
        "the output head and sampler".to_string()
    } else {
        format!("block {} of {}", ch.layer, m.model.cfg.layers)
    };
    println!(
        "challenge passed: job {} {} (forward call {} of {}, {what}) re-executed alone; outputs match the committed token ids; committed in the receipt's runtime_hash {}",
        a.job,
        a.node,
        ch.step,
        ch.token_ids.len(),
        r.runtime_hash
    );
    Ok(())
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
            let ch = havn_netd::client::fetch_challenge(
                &mut conn,
                &a.job,
                &a.node,
                Some(r.submitter.as_str()),
            )
            .await?;
            // A chat job's outputs are checked against the committed token ids too.
            let outputs = if r.workflow_id.as_str() == "chat" {
                Some(havn_netd::client::fetch_artifact(&mut conn, &r.outputs_cid).await?)
            } else {
                None
            };
            Ok::<_, havn_netd::client::ClientError>((ch, outputs))
        })
        .with_context(|| format!("fetching the challenge material for {}/{}", a.job, a.node))?;
    let (ch, outputs) = ch;
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
    if r.workflow_id.as_str() == "chat" {
        return verify_chat(&a, &r, &ch.proof, outputs.as_deref().unwrap_or_default());
    }
    let backend = match a.backend.as_str() {
        "cpu" => BackendKind::Cpu,
        "cuda" => BackendKind::Cuda,
        _ => BackendKind::Auto,
    };
    if r.workflow_id.as_str() == havn_asr::job::WORKFLOW {
        let b = crate::transcribe_cmd::verify_challenge(
            a.store.clone(),
            &r,
            &a.node,
            &ch.proof,
            &ch.inputs,
            a.threads,
        )
        .context("challenge FAILED")?;
        println!(
            "challenge passed: job {} encoder block {b} ({}) re-executed alone from its committed input; committed in the receipt's runtime_hash {}",
            a.job, a.node, r.runtime_hash
        );
        return Ok(());
    }
    if r.workflow_id.as_str() == havn_onnx::diffusion::WORKFLOW {
        let p = crate::diffusion_cmd::verify_challenge(
            a.store.clone(),
            &r,
            &a.node,
            &ch.proof,
            &ch.inputs,
            backend,
            a.threads,
        )
        .context("challenge FAILED")?;
        println!(
            "challenge passed: job {} node {} of the terrain UNet re-executed (hash {}), committed in the receipt's runtime_hash {}",
            a.job, p.node_id, p.node_hash, p.runtime_hash
        );
        return Ok(());
    }
    let expected = Expected {
        workflow: r.workflow_id.to_string(),
        manifest_checksum: r.manifest_checksum.0,
        seed: r.seed,
        runtime_hash: r.runtime_hash.0,
        node_id: a.node.clone(),
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
