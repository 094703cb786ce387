//! `havnctl keygen` and `havnctl open`: an orchestrator's X25519 key for sealed job
//! outputs (`submit --output-key`, `privacy.redact_outputs`) and opening what a node
//! sealed to it. The same key pair serves as an alert receiver's (`alerts keygen`).

use anyhow::Context;
use std::path::{Path, PathBuf};

/// `havnctl keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the private key (hex, mode 0600; an existing file is refused).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// `havnctl open`.
#[derive(Debug, clap::Args)]
pub struct OpenArgs {
    /// A sealed artifact (e.g. `get /artifact/<outputs_cid> --out FILE` of a job
    /// submitted with --output-key).
    pub file: PathBuf,
    /// The private key (`havnctl keygen`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Where to write the plaintext.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Makes a key pair, writes the private half to `out`, returns the public half (hex).
pub fn keygen(out: &Path) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let k = havn_payload::PayloadKey::generate();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    f.write_all(hex::encode(&*k.secret_bytes()).as_bytes())?;
    Ok(hex::encode(k.public()))
}

/// Reads a private key written by [`keygen`].
pub fn load(path: &Path) -> anyhow::Result<havn_payload::PayloadKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let sk = zeroize::Zeroizing::new(hex::decode(text.trim()).context("the key file is not hex")?);
    Ok(havn_payload::PayloadKey::from_secret(&sk)?)
}

/// `havnctl keygen`: prints the public key.
pub fn run_keygen(a: KeygenArgs) -> anyhow::Result<()> {
    println!("{}", keygen(&a.out)?);
    Ok(())
}

/// `havnctl open`.
pub fn run_open(a: OpenArgs) -> anyhow::Result<()> {
    let k = load(&a.key)?;
    let env = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let plain = k
        .open(&env)
        .with_context(|| format!("opening {}", a.file.display()))?;
    std::fs::write(&a.out, &*plain).with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!(
        "opened {} ({} bytes; plaintext CID {})",
        a.out.display(),
        plain.len(),
        havn_proto::Cid::of_bytes(&plain)
    );
    Ok(())
}
