//! `havnctl pki init` (development PKI), `havnctl submit` (a job over mTLS, optionally
//! waiting for its signed receipt) and `havnctl get` (any API path). All logic lives
//! in `havn_netd::{pki, client}`; this file parses and prints.
//!
//! Needs (in havnctl's Cargo.toml): `havn-netd = { path = "../netd" }`,
//! `havn-proto = { path = "../../proto" }`, `clap` (derive), `anyhow`, `serde_json`,
//! `tokio = { version = "1", features = ["rt", "time"] }`.
//!
//! Wiring in main.rs: `Pki(net_cmd::PkiArgs)`, `Submit(net_cmd::SubmitArgs)` and
//! `Get(net_cmd::GetArgs)` subcommands → `net_cmd::run(net_cmd::NetCmd::Pki(a))` etc.
//! (or the three `run_*` functions); `anyhow::Result<()>`: print and exit non-zero.

use anyhow::{bail, Context};
use havn_netd::client::{split_url, Conn, MtlsClient};
use havn_netd::pki::DevPki;
use havn_proto::{ComputeClass, Hash32, JobPayload};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The network commands.
#[derive(Debug)]
pub enum NetCmd {
    /// `havnctl pki …`
    Pki(PkiArgs),
    /// `havnctl submit …`
    Submit(Box<SubmitArgs>),
    /// `havnctl get …`
    Get(GetArgs),
}

/// Runs one network command.
pub fn run(cmd: NetCmd) -> anyhow::Result<()> {
    match cmd {
        NetCmd::Pki(a) => run_pki(a),
        NetCmd::Submit(a) => run_submit(*a),
        NetCmd::Get(a) => run_get(a),
    }
}

/// Arguments of `havnctl pki`.
#[derive(Debug, clap::Args)]
pub struct PkiArgs {
    /// What to do.
    #[command(subcommand)]
    pub cmd: PkiCmd,
}

/// `havnctl pki` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PkiCmd {
    /// Make a development PKI: ca.pem/ca.key, node.pem/node.key (server, SANs
    /// localhost and 127.0.0.1), orchestrator.* and validator.* (client certs).
    /// Keys are written 0600. Not for production.
    Init(PkiInitArgs),
}

/// Arguments of `havnctl pki init`.
#[derive(Debug, clap::Args)]
pub struct PkiInitArgs {
    /// Output directory (created if missing; existing files are overwritten).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Subject CN of the node's server certificate.
    #[arg(long, value_name = "NAME", default_value = "havn-node")]
    pub node_name: String,
    /// Extra subject alternative names for the node certificate (DNS names or IPs).
    #[arg(long = "san", value_name = "NAME")]
    pub sans: Vec<String>,
    /// Also write expired.pem/key (an expired client cert) and foreign.pem/key (a
    /// client cert from another CA), for testing refusals.
    #[arg(long)]
    pub test_certs: bool,
}

/// Client TLS files, shared by `submit` and `get`.
#[derive(Debug, clap::Args)]
pub struct TlsArgs {
    /// CA certificate that signed the node's server certificate (PEM).
    #[arg(long, value_name = "FILE", default_value = "ca.pem")]
    pub ca: PathBuf,
    /// Our client certificate (PEM).
    #[arg(long, value_name = "FILE", default_value = "orchestrator.pem")]
    pub cert: PathBuf,
    /// Our client key (PEM).
    #[arg(long, value_name = "FILE", default_value = "orchestrator.key")]
    pub key: PathBuf,
}

/// Arguments of `havnctl submit`.
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// Node API base URL.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    pub url: String,
    /// TLS files.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// The whole JobPayload as a JSON file (`-` for stdin); replaces the flags below.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["workflow", "checksum", "inputs"])]
    pub json: Option<PathBuf>,
    /// Registered workflow id (e.g. `chat`, `lm`).
    #[arg(long, required_unless_present = "json")]
    pub workflow: Option<String>,
    /// Workflow manifest checksum (64 hex; `havnctl workflows` lists them). Optional for
    /// `chat`, `diffusion` and `transcribe`, whose checksums follow from the shipped
    /// models' CIDs.
    #[arg(long)]
    pub checksum: Option<String>,
    /// An input artifact: `NAME=CID` (already on the node), or `FILE` / `NAME=@FILE`,
    /// which is uploaded first (`POST /artifact`; NAME defaults to `inputs`); repeatable.
    #[arg(long = "input", value_name = "NAME=CID|FILE")]
    pub inputs: Vec<String>,
    /// Compute class: S, M, L or XL.
    #[arg(long, default_value = "S")]
    pub class: String,
    /// Deterministic seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Job id (default: generated from the clock and pid).
    #[arg(long)]
    pub job_id: Option<String>,
    /// Job timeout the orchestrator enforces, in ms.
    #[arg(long, default_value_t = 600_000)]
    pub timeout_ms: u32,
    /// Wait (long polling the node) until the job is done or failed, then print
    /// the signed receipt.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// With --wait: also write the signed receipt (JSON) to this file.
    #[arg(long, value_name = "FILE", requires = "wait")]
    pub receipt_out: Option<PathBuf>,
    /// Use the gRPC API (`havn.v1.Intake`, same port, ALPN h2) instead of REST:
    /// UploadArtifact, AcceptJob, WatchJob and GetReceipt. Prints the same output.
    #[arg(long)]
    pub grpc: bool,
    /// Encrypted inputs (`--encrypt`, `--golden`, `--ek-ca`).
    #[command(flatten)]
    pub encrypt: crate::encrypt::EncryptArgs,
    /// Seal the job's outputs to this X25519 public key (`privacy.redact_outputs`): the
    /// node stores and serves only the envelope, the receipt names its CID, and only
    /// the key's holder reads it (`havnctl keygen`, `havnctl open`).
    #[arg(long, value_name = "HEX")]
    pub output_key: Option<String>,
}

/// Arguments of `havnctl get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// API path (e.g. `/health`, `/job/3`, `/receipt/j1`, `/metrics`,
    /// `/attest/quote?nonce=<64 hex>`) or a full https:// URL.
    pub path: String,
    /// Node API base URL (used when PATH is not a full URL).
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    pub url: String,
    /// TLS files.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Write the response body to this file instead of printing it (e.g. an
    /// `/artifact/{cid}` download).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `havnctl pki init`.
pub fn run_pki(args: PkiArgs) -> anyhow::Result<()> {
    let PkiCmd::Init(a) = args.cmd;
    let pki = DevPki::generate(&a.node_name, &a.sans).context("generating the PKI")?;
    for f in pki.write(&a.out, a.test_certs)? {
        println!("{}", f.display());
    }
    Ok(())
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub(crate) fn client(t: &TlsArgs) -> anyhow::Result<MtlsClient> {
    MtlsClient::from_files(&t.ca, &t.cert, &t.key).context("loading TLS files")
}

pub(crate) async fn connect(c: &MtlsClient, url: &str) -> anyhow::Result<Conn> {
    let (host, port, _) = split_url(url)?;
    Ok(c.connect(&host, port).await?)
}

/// Uploads `bytes` with `POST /artifact`; returns their CID (checked).
pub(crate) async fn upload(conn: &mut Conn, bytes: Vec<u8>) -> anyhow::Result<havn_proto::Cid> {
    let want = havn_proto::Cid::of_bytes(&bytes);
    let r = conn.post("/artifact", bytes).await?;
    if r.status != 200 {
        bail!("upload refused ({}): {}", r.status, r.text());
    }
    let v: serde_json::Value = r.json().context("parsing the upload answer")?;
    let got: havn_proto::Cid = v["cid"]
        .as_str()
        .unwrap_or("")
        .parse()
        .map_err(|e| anyhow::anyhow!("node answered a bad CID: {e:?}"))?;
    anyhow::ensure!(got == want, "node stored the upload as {got}, not {want}");
    Ok(got)
}

/// One `--input` value: its name and either a file to upload or a CID on the node.
pub(crate) enum InputSpec {
    /// `FILE` or `NAME=@FILE`.
    File(String, String),
    /// `NAME=CID`.
    Cid(String, havn_proto::Cid),
}

/// Parses one `--input` value.
pub(crate) fn input_spec(i: &str) -> anyhow::Result<InputSpec> {
    let (name, rest) = i.split_once('=').unwrap_or(("inputs", i));
    let file = rest
        .strip_prefix('@')
        .or((!i.contains('=')).then_some(rest));
    Ok(match file {
        Some(f) => InputSpec::File(name.to_string(), f.to_string()),
        None => InputSpec::Cid(
            name.to_string(),
            rest.parse()
                .map_err(|e| anyhow::anyhow!("--input {name}: bad CID: {e:?}"))?,
        ),
    })
}

/// `--input` values as (name, CID), uploading files first (sealed to `seal_to` when
/// given).
async fn resolve_inputs(
    conn: &mut Conn,
    specs: &[String],
    seal_to: Option<&[u8; 32]>,
) -> anyhow::Result<Vec<(String, havn_proto::Cid)>> {
    let mut out = Vec::new();
    for i in specs {
        out.push(match input_spec(i)? {
            InputSpec::File(name, f) => {
                let bytes = std::fs::read(&f).with_context(|| format!("--input: reading {f}"))?;
                let bytes = crate::encrypt::maybe_seal(seal_to, bytes)?;
                let cid = upload(conn, bytes)
                    .await
                    .with_context(|| format!("uploading {f}"))?;
                let how = if seal_to.is_some() { " (sealed)" } else { "" };
                eprintln!("uploaded {f}{how} as {cid}");
                (name, cid)
            }
            InputSpec::Cid(name, cid) => (name, cid),
        });
    }
    Ok(out)
}

/// The checksum of the `diffusion` workflow on the shipped terrain UNet.
pub(crate) fn diffusion_checksum() -> anyhow::Result<String> {
    Ok(hex::encode(havn_onnx::diffusion::workflow_checksum(
        &havn_lm::store::TERRAIN_UNET.cid()?,
    )))
}

/// The checksum of the `transcribe` workflow on the shipped Whisper tiny.en.
pub(crate) fn transcribe_checksum() -> anyhow::Result<String> {
    Ok(hex::encode(havn_asr::job::workflow_checksum(
        &havn_lm::store::WHISPER_TINY_EN.cid()?,
        &havn_lm::store::WHISPER_TOKENIZER.cid()?,
    )))
}

/// The checksum of the `chat` workflow on the shipped model.
pub(crate) fn chat_checksum() -> anyhow::Result<String> {
    Ok(hex::encode(havn_lm::chat::workflow_checksum(
        &havn_lm::store::SMOLLM2.cid()?,
    )))
}

pub(crate) fn payload(
    a: &SubmitArgs,
    resolved: &[(String, havn_proto::Cid)],
) -> anyhow::Result<JobPayload> {
    if let Some(path) = &a.json {
        let text = if path.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())?
        } else {
            std::fs::read_to_string(path).with_context(|| path.display().to_string())?
        };
        return serde_json::from_str(&text).context("parsing the job JSON");
    }
    let Some(wf) = &a.workflow else {
        bail!("--workflow is required without --json");
    };
    let sum = match (&a.checksum, wf.as_str()) {
        (Some(s), _) => s.clone(),
        (None, "chat") => chat_checksum()?,
        (None, "diffusion") => diffusion_checksum()?,
        (None, "transcribe") => transcribe_checksum()?,
        (None, _) => bail!("--checksum is required for workflow {wf:?} (havnctl workflows)"),
    };
    let sum = &sum;
    let inputs: Vec<_> = resolved
        .iter()
        .map(|(name, cid)| serde_json::json!({"name": name, "cid": cid, "location": "ipfs"}))
        .collect();
    let job_id = a.job_id.clone().unwrap_or_else(|| {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        format!("job-{ms}-{}", std::process::id())
    });
    Hash32::from_hex(sum).context("--checksum wants 64 hex characters")?;
    let class = ComputeClass::parse(&a.class)
        .ok_or_else(|| anyhow::anyhow!("--class must be S, M, L or XL"))?;
    // Built as JSON so the proto's bounds (ids, inputs) are checked by its own serde.
    let v = serde_json::json!({
        "job_id": job_id,
        "workflow": {"id": wf, "checksum": sum},
        "inputs": inputs,
        "compute_class": class,
        "timeout_ms": a.timeout_ms,
        "seed": a.seed,
        "privacy": {
            "enclave": a.encrypt.encrypt,
            "redact_outputs": a.output_key.is_some(),
            "output_key": a.output_key,
        },
    });
    serde_json::from_value(v)
        .context("building the job (ids at most 64 characters, at most 16 inputs)")
}

/// `havnctl submit`.
pub fn run_submit(a: SubmitArgs) -> anyhow::Result<()> {
    if a.grpc {
        return crate::grpc_submit::run(a);
    }
    let c = client(&a.tls)?;
    runtime()?.block_on(async {
        let mut conn = connect(&c, &a.url).await?;
        let key = match a.encrypt.encrypt {
            true => Some(crate::encrypt::attested_payload_key(&mut conn, &a.encrypt).await?),
            false => None,
        };
        let resolved = resolve_inputs(&mut conn, &a.inputs, key.as_ref()).await?;
        let p = payload(&a, &resolved)?;
        let body = serde_json::to_vec(&p)?;
        let r = conn.post("/job/accept", body).await?;
        if r.status != 200 {
            bail!("refused ({}): {}", r.status, r.text());
        }
        let t: havn_proto::Ticket = r.json().context("parsing the ticket")?;
        println!("{}", r.text());
        if !a.wait {
            return Ok(());
        }
        let text = wait_receipt(&mut conn, t.ticket_id, p.job_id.as_str(), a.timeout).await?;
        if let Some(file) = &a.receipt_out {
            std::fs::write(file, &text).with_context(|| format!("writing {}", file.display()))?;
        }
        println!("{text}");
        Ok(())
    })
}

/// Long-polls a ticket until the job is done (returns the receipt, pretty JSON) or
/// failed (an error with the node's reason).
pub(crate) async fn wait_receipt(
    conn: &mut Conn,
    ticket: u64,
    job_id: &str,
    timeout_s: u64,
) -> anyhow::Result<String> {
    {
        let deadline = Instant::now() + Duration::from_secs(timeout_s);
        loop {
            // Long poll: the node answers as soon as the job is done or failed.
            let left = deadline.saturating_duration_since(Instant::now()).as_secs();
            let wait = left.clamp(1, 30);
            let s = conn.get(&format!("/job/{ticket}?wait={wait}")).await?;
            if s.status != 200 {
                bail!("job state ({}): {}", s.status, s.text());
            }
            let v: serde_json::Value = s.json().context("parsing the job state")?;
            if v["state"] == "done" {
                let rec = conn.get(&format!("/receipt/{job_id}")).await?;
                if rec.status != 200 {
                    bail!("receipt ({}): {}", rec.status, rec.text());
                }
                let pretty: serde_json::Value = rec.json()?;
                return Ok(serde_json::to_string_pretty(&pretty)?);
            }
            if let Some(f) = v["state"].get("failed") {
                bail!("job {job_id} failed: {}", f["reason"]);
            }
            if Instant::now() >= deadline {
                bail!("timed out after {timeout_s} s; state: {}", v["state"]);
            }
        }
    }
}

/// `havnctl get`.
pub fn run_get(a: GetArgs) -> anyhow::Result<()> {
    let c = client(&a.tls)?;
    let url = if a.path.starts_with("https://") {
        a.path.clone()
    } else {
        format!(
            "{}/{}",
            a.url.trim_end_matches('/'),
            a.path.trim_start_matches('/')
        )
    };
    let (_, _, path) = split_url(&url)?;
    runtime()?.block_on(async {
        let mut conn = connect(&c, &url).await?;
        let r = conn.get(&path).await?;
        match &a.out {
            Some(file) if r.status < 400 => {
                std::fs::write(file, &r.body)
                    .with_context(|| format!("writing {}", file.display()))?;
                println!("wrote {} ({} bytes)", file.display(), r.body.len());
            }
            _ => {
                let text = r.text();
                match serde_json::from_str::<serde_json::Value>(&text) {
                    Ok(v) => println!("{}", serde_json::to_string_pretty(&v)?),
                    Err(_) => print!("{text}"),
                }
            }
        }
        if r.status >= 400 {
            bail!("HTTP {}", r.status);
        }
        Ok(())
    })
}
