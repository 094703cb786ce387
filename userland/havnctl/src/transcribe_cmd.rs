//! `havnctl run transcribe --audio FILE.wav`: Whisper tiny.en (CTranslate2 file, havn-asr)
//! on one WAV file (16 kHz mono, ≤ 30 s), deterministic, with its runtime hash.

use crate::models_cmd::default_store;
use anyhow::Context;
use havn_lm::store::{Store, WHISPER_TINY_EN, WHISPER_TOKENIZER};
use std::path::{Path, PathBuf};

/// The transcribe-specific options of `havnctl run`.
#[derive(Debug, Clone, clap::Args)]
pub struct TranscribeArgs {
    /// transcribe: the WAV file (16 kHz mono, 16-bit PCM or 32-bit float, at most 30 s).
    #[arg(long)]
    pub audio: Option<PathBuf>,
}

/// Loads Whisper tiny.en from the model store.
pub fn load(store: Option<PathBuf>, quiet: bool) -> anyhow::Result<havn_asr::Whisper> {
    let dir = store.unwrap_or_else(default_store);
    let s = Store::open(&dir)?;
    if !quiet {
        eprintln!("loading {} from {}", WHISPER_TINY_EN.name, dir.display());
    }
    let hint = || {
        format!(
            "Whisper tiny.en is not in {} (havnctl models fetch --store {})",
            dir.display(),
            dir.display()
        )
    };
    let (_, model) = s.read(WHISPER_TINY_EN.name).with_context(hint)?;
    let (_, tok) = s.read(WHISPER_TOKENIZER.name).with_context(hint)?;
    havn_asr::Whisper::from_bytes(&model, &tok).context("loading Whisper tiny.en")
}

/// Runs the transcribe workflow and prints the result.
pub fn run(
    a: &TranscribeArgs,
    store: Option<PathBuf>,
    threads: usize,
    out: &Path,
    json: bool,
) -> anyhow::Result<()> {
    let audio = a
        .audio
        .as_ref()
        .context("transcribe needs --audio FILE.wav")?;
    let wav = std::fs::read(audio).with_context(|| format!("reading {}", audio.display()))?;
    let t0 = std::time::Instant::now();
    let w = load(store, json)?;
    let load_s = t0.elapsed().as_secs_f64();
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    let t = w
        .transcribe(&wav, threads)
        .with_context(|| format!("transcribing {}", audio.display()))?;
    let bytes = havn_asr::job::outputs(&t)?;
    let cid = havn_proto::Cid::of_bytes(&bytes);
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let write = |name: &str, b: &[u8]| -> anyhow::Result<()> {
        let p = out.join(name);
        havn_exec::exec::write_atomic(&p, b).with_context(|| format!("writing {}", p.display()))
    };
    write("outputs.safetensors", &bytes)?;
    let audio_s = havn_asr::wav::read_wav(&wav)
        .map(|s| s.len() as f64 / 16_000.0)
        .unwrap_or(0.0);
    let ms = t.encode_ms + t.decode_ms;
    let report = serde_json::json!({
        "workflow": "transcribe",
        "model": WHISPER_TINY_EN.name,
        "text": t.text,
        "token_ids": t.token_ids,
        "runtime_hash": t.runtime_hash,
        "merkle_root": t.merkle_root,
        "leaves": t.leaves,
        "outputs_cid": cid.to_string(),
        "inputs_cid": havn_proto::Cid::of_bytes(&wav).to_string(),
        "backend": "cpu",
        "threads": threads,
        "audio_s": audio_s,
        "load_s": load_s,
        "encode_ms": t.encode_ms,
        "decode_ms": t.decode_ms,
        "real_time_factor": if audio_s > 0.0 { ms / 1000.0 / audio_s } else { 0.0 },
    });
    write("run.json", format!("{report:#}\n").as_bytes())?;
    if json {
        println!("{report}");
    } else {
        println!("{}", t.text.trim());
        eprintln!(
            "runtime_hash {}\noutputs_cid {cid}\n{} tokens, {audio_s:.1} s of audio in {ms:.0} ms on {threads} thread(s)",
            t.runtime_hash,
            t.token_ids.len()
        );
    }
    Ok(())
}

/// `havnctl challenge` for a transcription: the receipt must name this validator's
/// Whisper files (workflow checksum); the node's leaves must give the receipt's runtime
/// hash; the encoder block is re-executed here alone from its committed input.
pub fn verify_challenge(
    store: Option<PathBuf>,
    r: &havn_proto::Receipt,
    node_id: &str,
    proof_json: &[u8],
    input: &[u8],
    threads: usize,
) -> anyhow::Result<u32> {
    let dir = store.clone().unwrap_or_else(default_store);
    let (_, tok) = Store::open(&dir)?
        .read(WHISPER_TOKENIZER.name)
        .with_context(|| format!("the Whisper tokenizer is not in {}", dir.display()))?;
    let w = load(store, true)?;
    anyhow::ensure!(
        havn_asr::job::workflow_checksum(&w.cid, &havn_proto::Cid::of_bytes(&tok))
            == r.manifest_checksum.0,
        "the receipt's workflow checksum {} is not this validator's Whisper model",
        r.manifest_checksum
    );
    let ch: havn_asr::challenge::BlockChallenge =
        serde_json::from_slice(proof_json).context("parsing the challenge")?;
    anyhow::ensure!(
        havn_asr::challenge::node_id(ch.block) == node_id,
        "the node opened {} instead of {node_id}",
        havn_asr::challenge::node_id(ch.block)
    );
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    w.verify_challenge(&ch, input, &r.runtime_hash.to_string(), threads)?;
    Ok(ch.block)
}
