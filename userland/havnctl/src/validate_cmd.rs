//! Validator and vendor commands: `fetch-quote` (quote over mTLS through netd),
//! `verify-receipt`, `golden` (measurement manifest for a set of binaries) and
//! `show-output`.

use anyhow::{bail, Context};
use havn_attest::evidence_dir;
use havn_attest::golden::{GoldenEvent, GoldenManifest, GoldenPcr, Policy as GoldenPolicy};
use havn_attest::Evidence;
use havn_proto::sign::Signable;
use havn_proto::{QuoteEvidence, SignedCapabilityManifest, SignedReceipt, SignedSelfAudit};
use p256::pkcs8::{EncodePublicKey, LineEnding};
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `havnctl fetch-quote`.
#[derive(Debug, clap::Args)]
pub struct FetchQuoteArgs {
    /// Node API base URL.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    pub url: String,
    /// TLS files (a validator uses its own client certificate).
    #[command(flatten)]
    pub tls: crate::net_cmd::TlsArgs,
    /// Nonce (64 hex chars); default: 32 fresh random bytes.
    #[arg(long)]
    pub nonce: Option<String>,
    /// Evidence directory to write (tpm2-tools files + evidence.json).
    #[arg(long)]
    pub out: PathBuf,
}

/// Fetch a quote through the node's API and write the evidence directory.
pub fn fetch_quote(a: FetchQuoteArgs) -> anyhow::Result<()> {
    let nonce = match &a.nonce {
        Some(h) => havn_proto::Hash32::from_hex(h).context("--nonce must be 64 hex chars")?,
        None => {
            let mut b = [0u8; 32];
            getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("random nonce: {e}"))?;
            havn_proto::Hash32(b)
        }
    };
    let client = crate::net_cmd::client(&a.tls)?;
    let url = format!(
        "{}/attest/quote?nonce={}",
        a.url.trim_end_matches('/'),
        nonce.to_hex()
    );
    let (host, port, path) = havn_netd::client::split_url(&url)?;
    let resp = crate::net_cmd::runtime()?
        .block_on(async {
            let mut c = client.connect(&host, port).await?;
            c.get(&path).await
        })
        .with_context(|| format!("GET {url}"))?;
    if resp.status != 200 {
        bail!("node answered {}: {}", resp.status, resp.text());
    }
    let q: QuoteEvidence = resp.json().context("decoding the quote evidence")?;
    if q.nonce != nonce {
        bail!("node quoted nonce {} instead of ours {}", q.nonce, nonce);
    }
    let ev = Evidence::from_wire(&q);
    let ak = havn_attest::wire::parse_ecc_public(&ev.ak_public).context("AK public area")?;
    let key = havn_attest::verify::check_ak(&ak).context("AK")?;
    let ak_pem = key.to_public_key_pem(LineEnding::LF).context("AK PEM")?;
    let extra = havn_attest::quote_extra_data(&nonce.0, &ev.node_pubkey, &ev.payload_pubkey);
    evidence_dir::write_dir(&a.out, &ev, &ak_pem, &nonce.0, &extra).context("writing evidence")?;
    println!("nonce {}", nonce.to_hex());
    println!(
        "wrote {} (node {}, payload key {}, {} PCRs, {} events)",
        a.out.display(),
        hex::encode(ev.node_pubkey),
        hex::encode(ev.payload_pubkey),
        ev.pcrs.len(),
        ev.events.len()
    );
    Ok(())
}

/// `havnctl verify-receipt`.
#[derive(Debug, clap::Args)]
pub struct VerifyReceiptArgs {
    /// Signed receipt as JSON (as `GET /receipt/{job}` returns it).
    pub receipt: PathBuf,
    /// The quote that vouches for the signing key.
    #[command(flatten)]
    pub quote: QuoteArgs,
}

/// The quote a signed record is checked against (shared by `verify-receipt` and
/// `verify-signed`).
#[derive(Debug, clap::Args)]
pub struct QuoteArgs {
    /// Evidence directory of a quote from the same node (`fetch-quote`, `attest quote`).
    #[arg(long)]
    pub evidence: PathBuf,
    /// Golden manifest the quote must match.
    #[arg(long)]
    pub golden: Option<PathBuf>,
    /// Vendor CA bundle for the EK certificate.
    #[arg(long)]
    pub ca: Option<PathBuf>,
}

/// Checks a receipt: the quote verifies for its own nonce (and the golden manifest /
/// vendor CA when given), the receipt's node is the key that quote binds, the ed25519
/// signature covers the receipt under the receipt domain, and its fields are sane.
pub fn verify_receipt(a: VerifyReceiptArgs) -> anyhow::Result<()> {
    let text =
        std::fs::read(&a.receipt).with_context(|| format!("reading {}", a.receipt.display()))?;
    let signed: SignedReceipt = serde_json::from_slice(&text).context("receipt JSON")?;
    let (_, verdict) = verified_quote(&a.quote)?;
    let r = &signed.receipt;
    check_node_signature(
        "receipt",
        r,
        &r.node,
        &signed.signature,
        &verdict.node_pubkey,
    )?;
    sanity(r)?;
    println!(
        "VALID receipt job={} workflow={} runtime_hash={} outputs={} node={} (quote: {})",
        r.job_id, r.workflow_id, r.runtime_hash, r.outputs_cid, r.node.0, verdict
    );
    Ok(())
}

/// Reads an evidence directory and verifies its quote for its own nonce (plus the
/// golden manifest / vendor CA when given).
fn verified_quote(q: &QuoteArgs) -> anyhow::Result<(Evidence, havn_attest::Verdict)> {
    let (ev, j) = evidence_dir::read_dir(&q.evidence).context("reading evidence")?;
    let policy = crate::encrypt::policy(q.golden.as_ref(), q.ca.as_ref())?;
    let verdict = havn_attest::verify_quote(&ev, &j.nonce, &policy)
        .map_err(|e| anyhow::anyhow!("INVALID quote: {e}"))?;
    Ok((ev, verdict))
}

/// Arguments of `havnctl verify-signed`.
#[derive(Debug, clap::Args)]
pub struct VerifySignedArgs {
    /// A signed self-audit (`GET /attest/audit`) or capability manifest
    /// (`GET /capabilities`), as JSON.
    pub file: PathBuf,
    /// The quote that vouches for the signing key.
    #[command(flatten)]
    pub quote: QuoteArgs,
}

fn check_node_signature<T: Signable>(
    what: &str,
    value: &T,
    node: &havn_proto::NodeId,
    sig: &havn_proto::Sig64,
    quoted: &[u8; 32],
) -> anyhow::Result<()> {
    if node.0 .0 != *quoted {
        bail!(
            "INVALID: {what} is signed by node {} but the quote binds {}",
            node.0,
            hex::encode(quoted)
        );
    }
    if !havn_mesh::sig::verify(node, value, sig) {
        bail!("INVALID: {what} signature does not verify (altered or wrong key)");
    }
    Ok(())
}

/// Checks a self-audit or a capability manifest: the quote verifies, the record is
/// signed by the key the quote binds under its own domain, and (self-audit) every
/// audited digest is a `binary` event of that name in the verified event log and the
/// audit's userland PCR is the quoted one.
pub fn verify_signed(a: VerifySignedArgs) -> anyhow::Result<()> {
    let text = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let v: serde_json::Value = serde_json::from_slice(&text).context("JSON")?;
    let (ev, verdict) = verified_quote(&a.quote)?;
    if v.get("audit").is_some() {
        let s: SignedSelfAudit = serde_json::from_value(v).context("self-audit JSON")?;
        let au = &s.audit;
        check_node_signature(
            "self-audit",
            au,
            &au.node,
            &s.signature,
            &verdict.node_pubkey,
        )?;
        for e in &au.entries {
            let measured = ev.events.iter().any(|m| {
                m.event_type == "binary"
                    && m.description == e.name.as_str()
                    && m.digest == e.digest.0
            });
            if !measured {
                bail!(
                    "INVALID: {} (pid {}) runs sha256 {}, which the quoted event log does not measure",
                    e.name,
                    e.pid,
                    e.digest
                );
            }
        }
        let pcr = u32::from(au.userland_pcr.index);
        match verdict.pcrs.get(&pcr) {
            Some(q) if *q == au.userland_pcr.value.0 => {}
            Some(q) => bail!(
                "INVALID: the audit's PCR {pcr} is {} but the quote's is {} (fetch both again)",
                au.userland_pcr.value,
                hex::encode(q)
            ),
            None => bail!("INVALID: PCR {pcr} is not in the quote"),
        }
        let names: Vec<&str> = au.entries.iter().map(|e| e.name.as_str()).collect();
        println!(
            "VALID self-audit unix_ms={} pcr{}={} running={} node={} (quote: {})",
            au.unix_ms,
            pcr,
            au.userland_pcr.value,
            names.join(","),
            au.node.0,
            verdict
        );
    } else if v.get("manifest").is_some() {
        let s: SignedCapabilityManifest =
            serde_json::from_value(v).context("capability manifest JSON")?;
        let m = &s.manifest;
        check_node_signature(
            "capability manifest",
            m,
            &m.node,
            &s.signature,
            &verdict.node_pubkey,
        )?;
        println!(
            "VALID capability manifest class={:?} cpu_cores={} ram_mib={} gpu={} vram_mib={} workflows={} chain_account=0x{} node={}",
            m.compute_class,
            m.cpu_cores,
            m.ram_mib,
            m.gpu_model.as_deref().unwrap_or("-"),
            m.vram_mib,
            m.workflows.len(),
            hex::encode(m.chain_account),
            m.node.0
        );
    } else {
        bail!("neither a signed self-audit nor a signed capability manifest");
    }
    Ok(())
}

fn sanity(r: &havn_proto::Receipt) -> anyhow::Result<()> {
    let ok_id = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-:".contains(c))
    };
    if !ok_id(&r.workflow_id) {
        bail!(
            "INVALID: workflow id {:?} is empty or has odd characters",
            r.workflow_id.as_str()
        );
    }
    if !ok_id(&r.job_id) {
        bail!(
            "INVALID: job id {:?} is empty or has odd characters",
            r.job_id.as_str()
        );
    }
    if r.runtime_hash.0 == [0u8; 32] {
        bail!("INVALID: zero runtime hash");
    }
    if r.backend == havn_proto::Backend::Cuda && !r.compute_class.requires_gpu() && r.gas == 0 {
        bail!("INVALID: CUDA receipt with no gas");
    }
    Ok(())
}

/// `havnctl golden`.
#[derive(Debug, clap::Args)]
pub struct GoldenArgs {
    /// Daemon binaries in the order havn-init measures them: NAME=PATH (havn-attestd,
    /// havn-execd, havn-netd).
    #[arg(long = "binary", value_name = "NAME=PATH", required = true)]
    pub binaries: Vec<String>,
    /// The userland PCR (node.toml `tpm.userland_pcr`).
    #[arg(long, default_value_t = 14)]
    pub pcr: u32,
    /// Also expect these PCRs to hold these values: INDEX=HEX (e.g. firmware PCRs
    /// published by the vendor); enforced.
    #[arg(long = "expect-pcr", value_name = "INDEX=HEX")]
    pub expect: Vec<String>,
    /// Where to write the manifest (JSON).
    #[arg(long)]
    pub out: PathBuf,
}

/// Writes a golden manifest: each binary's sha256 must appear in the userland log
/// (enforced), the log must fully explain the userland PCR (replay), and the PCR's
/// value after one boot is recorded (warn: a supervised restart re-measures).
pub fn golden(a: GoldenArgs) -> anyhow::Result<()> {
    let mut events = Vec::new();
    let mut pcr = [0u8; 32];
    for b in &a.binaries {
        let (name, path) = b
            .split_once('=')
            .with_context(|| format!("--binary {b:?}: expected NAME=PATH"))?;
        let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
        let digest: [u8; 32] = sha2::Sha256::digest(&bytes).into();
        pcr = havn_attest::eventlog::extend(&pcr, &digest);
        events.push(GoldenEvent {
            pcr: a.pcr,
            digest,
            description: name.to_string(),
            policy: GoldenPolicy::Enforce,
        });
    }
    let mut pcrs = BTreeMap::new();
    pcrs.insert(
        a.pcr,
        GoldenPcr {
            sha256: pcr,
            policy: GoldenPolicy::Warn,
        },
    );
    for e in &a.expect {
        let (i, h) = e
            .split_once('=')
            .with_context(|| format!("--expect-pcr {e:?}: expected INDEX=HEX"))?;
        let idx: u32 = i.parse().with_context(|| format!("PCR index {i:?}"))?;
        let v = havn_proto::Hash32::from_hex(h).with_context(|| format!("PCR {idx} value"))?;
        pcrs.insert(
            idx,
            GoldenPcr {
                sha256: v.0,
                policy: GoldenPolicy::Enforce,
            },
        );
    }
    let m = GoldenManifest {
        pcrs,
        events,
        log_pcrs: vec![a.pcr],
    };
    std::fs::write(&a.out, serde_json::to_vec_pretty(&m)?)
        .with_context(|| format!("writing {}", a.out.display()))?;
    println!(
        "wrote {} ({} binaries, PCR {} after one boot = {})",
        a.out.display(),
        a.binaries.len(),
        a.pcr,
        hex::encode(pcr)
    );
    Ok(())
}

/// `havnctl show-output`.
#[derive(Debug, clap::Args)]
pub struct ShowOutputArgs {
    /// An outputs.safetensors file.
    pub file: PathBuf,
    /// The CID the bytes must have (e.g. a receipt's outputs_cid).
    #[arg(long)]
    pub cid: Option<String>,
}

/// Prints each output tensor's name, dtype and shape, and the LM's text.
pub fn show_output(a: ShowOutputArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    if let Some(c) = &a.cid {
        let cid: havn_proto::Cid = c.parse().context("--cid")?;
        if !cid.verify(&bytes) {
            bail!(
                "{} does not match CID {cid} (it is {})",
                a.file.display(),
                havn_proto::Cid::of_bytes(&bytes)
            );
        }
    }
    // A chat job's outputs: token ids and UTF-8 text.
    if let Ok((ids, text)) = havn_lm::outputs::parse(&bytes) {
        println!("token_ids: {ids:?}");
        println!("text: {text}");
        return Ok(());
    }
    for (name, t) in havn_exec::tensor::load_safetensors(&bytes, "outputs")? {
        println!("{name}: {:?} {:?}", t.dtype(), t.shape);
        if name == "tokens" {
            if let Ok(v) = t.as_i32("tokens") {
                let b: Vec<u8> = v.iter().map(|&x| x.clamp(0, 255) as u8).collect();
                println!("text: {}", String::from_utf8_lossy(&b));
            }
        }
    }
    Ok(())
}

/// `havnctl workflows`.
#[derive(Debug, clap::Args)]
pub struct WorkflowsArgs {
    /// Size preset the node registers (havn-execd registers `small`).
    #[arg(long, default_value = "small")]
    pub size: String,
    /// One JSON object `{name: checksum}` instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Prints each shipped workflow's manifest checksum.
pub fn workflows(a: WorkflowsArgs) -> anyhow::Result<()> {
    let size: havn_exec::workloads::Size =
        a.size.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let mut out = BTreeMap::new();
    // The synthetic diffusion graph is a test fixture: nodes serve the real model.
    for name in havn_exec::workloads::NAMES
        .into_iter()
        .filter(|n| *n != "diffusion")
    {
        let w = havn_exec::workloads::build(name, size)?;
        out.insert(
            name.to_string(),
            (hex::encode(w.manifest.checksum()), w.manifest.nodes.len()),
        );
    }
    out.insert("chat".to_string(), (crate::net_cmd::chat_checksum()?, 0));
    out.insert(
        "diffusion".to_string(),
        (crate::net_cmd::diffusion_checksum()?, 0),
    );
    out.insert(
        "transcribe".to_string(),
        (crate::net_cmd::transcribe_checksum()?, 0),
    );
    if a.json {
        let m: BTreeMap<_, _> = out
            .iter()
            .map(|(k, (c, _))| (k.clone(), c.clone()))
            .collect();
        println!("{}", serde_json::to_string(&m)?);
    } else {
        for (name, (c, n)) in out {
            if name == "chat" {
                println!(
                    "{name:<10} {c}  (SmolLM2-135M-Instruct, model {})",
                    havn_lm::store::SMOLLM2.cid()?
                );
            } else if name == "transcribe" {
                println!(
                    "{name:<10} {c}  (Whisper tiny.en, model {})",
                    havn_lm::store::WHISPER_TINY_EN.cid()?
                );
            } else if name == "diffusion" {
                println!(
                    "{name:<10} {c}  (terrain consistency UNet, model {})",
                    havn_lm::store::TERRAIN_UNET.cid()?
                );
            } else {
                println!("{name:<10} {c}  ({n} DAG nodes)");
            }
        }
    }
    Ok(())
}
