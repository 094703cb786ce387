//! `havnctl attest quote` (make TPM evidence) and `havnctl verify-quote` (check it).
//! All logic lives in `havn_attest_agent` / `havn_attest`; this file parses and prints.
//!
//! Needs (in havnctl's Cargo.toml):
//! `havn-attest = { path = "../../attest/verify" }`,
//! `havn-attest-agent = { path = "../../attest/agent", optional = true }` with a
//! `tpm = ["dep:havn-attest-agent"]` feature (on by default, so validators can build
//! without libtss2), `clap` (derive), `anyhow`, `hex`.
//!
//! Wiring in main.rs: `Attest(attest_cmd::AttestArgs)` → `attest_cmd::run(args)`;
//! `VerifyQuote(attest_cmd::VerifyQuoteArgs)` → `attest_cmd::run_verify(args)`; both
//! return `anyhow::Result<()>`: print the error and exit non-zero on `Err`.

use anyhow::{bail, Context};
use std::path::PathBuf;

/// Arguments of `havnctl attest`.
#[derive(Debug, clap::Args)]
pub struct AttestArgs {
    /// What to do.
    #[command(subcommand)]
    pub cmd: AttestCmd,
}

/// `havnctl attest` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AttestCmd {
    /// Quote the PCRs with the node key bound in, and write tpm2-tools evidence files.
    Quote(QuoteArgs),
}

/// Arguments of `havnctl attest quote`.
#[derive(Debug, clap::Args)]
pub struct QuoteArgs {
    /// TPM: `device:/dev/tpmrm0` or `swtpm:host=127.0.0.1,port=P`.
    #[arg(long, default_value = "device:/dev/tpmrm0")]
    pub tcti: String,
    /// Verifier nonce (hex, 8–64 bytes).
    #[arg(long)]
    pub nonce: String,
    /// Output directory (quote.msg, quote.sig, quote.pcrs, quote.qual, ak.pub, ak.pem, evidence.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Agent state directory (sealed node key, event log); a node key is created if absent.
    #[arg(long, default_value = "/var/lib/havn/attest")]
    pub state: PathBuf,
    /// PCRs to quote (comma list or ranges, e.g. `0-15`).
    #[arg(long, default_value = "0-15", value_parser = parse_pcrs)]
    pub pcrs: PcrList,
    /// PCRs the node key is sealed to.
    #[arg(long, default_value = "0-7", value_parser = parse_pcrs)]
    pub seal_pcrs: PcrList,
}

/// Arguments of `havnctl verify-quote`.
#[derive(Debug, clap::Args)]
pub struct VerifyQuoteArgs {
    /// Evidence directory written by `havnctl attest quote`.
    pub dir: PathBuf,
    /// The nonce you sent (hex).
    #[arg(long)]
    pub nonce: String,
    /// Golden measurement manifest (JSON).
    #[arg(long)]
    pub golden: Option<PathBuf>,
    /// Vendor CA bundle (PEM) the EK certificate must be issued by.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// PCRs the event log fully describes (a PCR with no events must be zero).
    #[arg(long, value_parser = parse_pcrs)]
    pub log_pcrs: Option<PcrList>,
}

/// A parsed PCR list (`0-7,9,14`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrList(pub Vec<u32>);

/// Parse `0-7,9,14` into a sorted PCR list.
pub fn parse_pcrs(s: &str) -> Result<PcrList, String> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let a: u32 = a.trim().parse().map_err(|_| format!("bad PCR {part:?}"))?;
        let b: u32 = b.trim().parse().map_err(|_| format!("bad PCR {part:?}"))?;
        if a > b || b > 23 {
            return Err(format!("bad PCR range {part:?}"));
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    Ok(PcrList(out))
}

fn nonce(hex_str: &str) -> anyhow::Result<Vec<u8>> {
    let n = hex::decode(hex_str.trim()).context("--nonce is not hex")?;
    if !(8..=64).contains(&n.len()) {
        bail!("--nonce must be 8 to 64 bytes, got {}", n.len());
    }
    Ok(n)
}

/// Run `havnctl attest …`.
#[cfg(feature = "tpm")]
pub fn run(args: AttestArgs) -> anyhow::Result<()> {
    use havn_attest_agent::{Agent, AgentConfig};
    match args.cmd {
        AttestCmd::Quote(q) => {
            let nonce = nonce(&q.nonce)?;
            let mut cfg = AgentConfig::new(&q.tcti, &q.state);
            cfg.quote_pcrs = q.pcrs.0;
            cfg.seal_pcrs = q.seal_pcrs.0;
            let mut agent = Agent::open(cfg).context("opening the TPM agent")?;
            let key = agent.load_or_create_node_key().context("node key")?;
            // attestd's payload key lives in attestd's memory: a quote taken here,
            // beside it, binds none (all zero), and `submit --encrypt` refuses it.
            let quote = agent
                .quote(&nonce, &key.public(), &[0; 32])
                .context("quote")?;
            let ek = agent
                .ek_certificate_pem()
                .context("reading the EK certificate")?;
            let mut ev = quote.to_evidence(agent.event_log(), key.public(), ek);
            ev.firmware_log = agent
                .firmware_log()
                .context("reading the firmware event log")?;
            havn_attest::evidence_dir::write_dir(
                &q.out,
                &ev,
                &quote.ak_pem,
                &nonce,
                &quote.extra_data,
            )
            .context("writing evidence")?;
            println!(
                "wrote {} (node {}, {} PCRs, {} events)",
                q.out.display(),
                hex::encode(key.public()),
                quote.pcrs.len(),
                ev.events.len()
            );
            Ok(())
        }
    }
}

/// Run `havnctl attest …` in a build without TPM support.
#[cfg(not(feature = "tpm"))]
pub fn run(_args: AttestArgs) -> anyhow::Result<()> {
    bail!("this havnctl was built without the `tpm` feature")
}

/// Run `havnctl verify-quote`: `Ok` after printing a one-line verdict, `Err` naming the failed check.
pub fn run_verify(args: VerifyQuoteArgs) -> anyhow::Result<()> {
    let nonce = nonce(&args.nonce)?;
    let (ev, j) = havn_attest::evidence_dir::read_dir(&args.dir).context("reading evidence")?;
    if j.nonce != nonce {
        bail!(
            "INVALID: evidence.json was made for nonce {}, not yours",
            hex::encode(&j.nonce)
        );
    }
    let mut policy = havn_attest::Policy::default();
    if let Some(g) = &args.golden {
        let bytes = std::fs::read(g).with_context(|| format!("reading {}", g.display()))?;
        policy.golden = Some(havn_attest::GoldenManifest::from_json(&bytes)?);
    }
    if let Some(ca) = &args.ca {
        let bytes = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        policy.ek_cas = Some(havn_attest::ekcert::parse_certs(&bytes)?);
    }
    policy.log_pcrs = args.log_pcrs.map(|p| p.0).unwrap_or_default();
    match havn_attest::verify_quote(&ev, &nonce, &policy) {
        Ok(v) => {
            println!("{v}");
            for w in &v.warnings {
                println!("warning: {w}");
            }
            Ok(())
        }
        Err(e) => bail!("INVALID: {e}"),
    }
}
