//! `havnctl submit --encrypt`: verify a fresh quote from the node (signature, nonce,
//! the key binding, and the golden manifest / vendor CA when given), take the payload
//! key that quote binds, and seal each input file to it before upload, so only that
//! attested machine, in execd's memory, can read it. The job is marked
//! `privacy.enclave`, which the node accepts only with sealed inputs.

use anyhow::{bail, Context};
use havn_netd::client::Conn;
use havn_proto::{Hash32, QuoteEvidence};
use std::path::PathBuf;

/// Options of `submit --encrypt`.
#[derive(Debug, Clone, clap::Args)]
pub struct EncryptArgs {
    /// Seal every --input file to the node's payload key (taken from a fresh quote that
    /// verifies) and mark the job `privacy.enclave`: netd and the logs never see the
    /// plaintext; execd opens it in memory.
    #[arg(long)]
    pub encrypt: bool,
    /// With --encrypt: the golden manifest the quote must match (recommended: without
    /// it the quote's PCRs are not checked against what the vendor published).
    #[arg(long, value_name = "FILE", requires = "encrypt")]
    pub golden: Option<PathBuf>,
    /// With --encrypt: the vendor CA bundle the TPM's EK certificate must chain to.
    #[arg(long = "ek-ca", value_name = "FILE", requires = "encrypt")]
    pub ek_ca: Option<PathBuf>,
}

/// A verification policy from an optional golden manifest and vendor CA bundle.
pub fn policy(
    golden: Option<&PathBuf>,
    ca: Option<&PathBuf>,
) -> anyhow::Result<havn_attest::Policy> {
    let mut policy = havn_attest::Policy::default();
    if let Some(g) = golden {
        let bytes = std::fs::read(g).with_context(|| format!("reading {}", g.display()))?;
        policy.golden = Some(havn_attest::GoldenManifest::from_json(&bytes)?);
    }
    if let Some(ca) = ca {
        let bytes = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        policy.ek_cas = Some(havn_attest::ekcert::parse_certs(&bytes)?);
    }
    Ok(policy)
}

/// The payload key of the node behind `conn`, from a quote for a fresh nonce that
/// verifies under the policy `e` names.
pub async fn attested_payload_key(conn: &mut Conn, e: &EncryptArgs) -> anyhow::Result<[u8; 32]> {
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("random nonce: {e}"))?;
    let nonce = Hash32(nonce);
    let r = conn
        .get(&format!("/attest/quote?nonce={}", nonce.to_hex()))
        .await
        .context("fetching a quote")?;
    if r.status != 200 {
        bail!("the node refused a quote ({}): {}", r.status, r.text());
    }
    let q: QuoteEvidence = r.json().context("decoding the quote")?;
    let ev = havn_attest::Evidence::from_wire(&q);
    let policy = policy(e.golden.as_ref(), e.ek_ca.as_ref())?;
    let verdict = havn_attest::verify_quote(&ev, &nonce.0, &policy).map_err(|err| {
        anyhow::anyhow!("the node's quote does not verify, nothing sealed: {err}")
    })?;
    if verdict.payload_pubkey == [0; 32] {
        bail!("the node's quote binds no payload key (attestd has none): cannot encrypt");
    }
    if e.golden.is_none() {
        eprintln!("warning: --golden not given: the quote's PCRs were not checked against the vendor's golden manifest");
    }
    eprintln!(
        "quote verified (fresh nonce): payload key {} bound to node {}",
        hex::encode(verdict.payload_pubkey),
        hex::encode(verdict.node_pubkey)
    );
    Ok(verdict.payload_pubkey)
}

/// `bytes` sealed to `key` when there is one.
pub fn maybe_seal(key: Option<&[u8; 32]>, bytes: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    match key {
        Some(k) => havn_payload::seal(k, &bytes).map_err(|e| anyhow::anyhow!("sealing: {e}")),
        None => Ok(bytes),
    }
}
