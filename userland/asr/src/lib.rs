//! havn-asr: deterministic English speech recognition with Whisper (tiny.en) from its
//! CTranslate2 file, checked against faster-whisper.
//!
//! [`ct2`] reads `model.bin` (bounded); [`wav`] reads the clip through `hound`; [`mel`]
//! is the log-mel front end; [`model`] runs the encoder and decoder through havn-exec's
//! deterministic matmul and `detmath`; [`decode`] is faster-whisper's greedy search and
//! tokenizer handling; [`commit`] builds the Merkle commitment. The same inputs give the
//! same bits (tokens, runtime hash) for any thread count.

pub mod challenge;
pub mod commit;
pub mod ct2;
pub mod decode;
pub mod error;
pub mod job;
pub mod mel;
pub mod model;
pub mod nn;
pub mod wav;

pub use decode::WhisperTokenizer;
pub use error::{AsrError, Result};
pub use model::WhisperModel;

use havn_proto::Cid;
use sha3::{Digest, Sha3_256};
use std::time::Instant;

/// A model ready to transcribe: weights, tokenizer, front-end tables, and the CID of
/// `model.bin`.
pub struct Whisper {
    pub cid: Cid,
    pub model: WhisperModel,
    pub tokenizer: WhisperTokenizer,
    pub front: mel::FrontEnd,
}

/// The result of one transcription.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Transcript {
    pub text: String,
    /// Generated ids (no prompt, no `<|endoftext|>`).
    pub token_ids: Vec<u32>,
    /// Hex of the runtime hash ([`commit`]).
    pub runtime_hash: String,
    /// Hex of the Merkle root.
    pub merkle_root: String,
    /// Number of leaves.
    pub leaves: usize,
    /// Milliseconds in the front end and encoder.
    pub encode_ms: f64,
    /// Milliseconds in the decoder.
    pub decode_ms: f64,
    /// Leaf hashes in commitment order (not serialised).
    #[serde(skip)]
    pub leaf_hashes: Vec<[u8; 32]>,
}

impl Whisper {
    /// Loads `model.bin` and `tokenizer.json` bytes.
    pub fn from_bytes(model_bin: &[u8], tokenizer_json: &[u8]) -> Result<Whisper> {
        let file = ct2::Ct2File::parse(model_bin)?;
        let cfg = model::Config::from_file(&file)?;
        if cfg.vocab >= 51_865 {
            return Err(AsrError::var(
                "decoder/embeddings/weight",
                format!(
                    "vocabulary of {}: a multilingual model (only English-only models are supported)",
                    cfg.vocab
                ),
            ));
        }
        let tokenizer = WhisperTokenizer::from_bytes(tokenizer_json, cfg.vocab)?;
        let model = WhisperModel::load(&file)?;
        Ok(Whisper {
            cid: Cid::of_bytes(model_bin),
            model,
            tokenizer,
            front: mel::FrontEnd::new(),
        })
    }

    /// Transcribes a WAV clip (16 kHz mono, 16-bit PCM or 32-bit float, ≤ 30 s).
    pub fn transcribe(&self, wav_bytes: &[u8], threads: usize) -> Result<Transcript> {
        let samples = wav::read_wav(wav_bytes)?;
        let wav_hash: [u8; 32] = Sha3_256::digest(wav_bytes).into();
        self.transcribe_samples(&samples, &wav_hash, threads)
    }

    /// Transcribes samples (at most 30 s); `wav_hash` is what the runtime hash binds.
    pub fn transcribe_samples(
        &self,
        samples: &[f32],
        wav_hash: &[u8; 32],
        threads: usize,
    ) -> Result<Transcript> {
        if samples.len() > wav::MAX_SAMPLES {
            return Err(AsrError::wav(
                "duration",
                format!("{} samples, at most {}", samples.len(), wav::MAX_SAMPLES),
            ));
        }
        let th = threads.max(1);
        let m = &self.model;
        let t0 = Instant::now();
        let mut leaves = Vec::new();
        let mel = self.front.log_mel(samples, th);
        leaves.push(commit::mel_leaf(&mel));
        let mut x = m.encoder_stem(&mel, th)?;
        leaves.push(commit::encoder_leaf(0, &x));
        for l in 0..m.cfg.enc_layers {
            x = m.encoder_layer(l, &x, th)?;
            leaves.push(commit::encoder_leaf(l as u32 + 1, &x));
        }
        let enc = m.encoder_out(&x, th);
        leaves.push(commit::encoder_leaf(m.cfg.enc_layers as u32 + 1, &enc));
        let cross = m.cross_kv(&enc, th);
        let encode_ms = t0.elapsed().as_secs_f64() * 1e3;

        let t1 = Instant::now();
        let tok = &self.tokenizer;
        let [sot, no_ts] = tok.prompt();
        let mut cache = model::SelfCache::new(m.cfg.dec_layers);
        let out = m.decoder_step(sot, 0, &cache, &cross, false, th)?;
        leaves.push(commit::decoder_leaf(0, 0, sot, commit::NO_TOKEN, &out));
        cache.push(&out);
        let max_new = decode::MAX_NEW_TOKENS.min(m.cfg.dec_ctx - 2);
        let mut ids: Vec<u32> = Vec::new();
        let mut input = no_ts;
        let mut pos = 1usize;
        loop {
            let out = m.decoder_step(input, pos, &cache, &cross, true, th)?;
            let chosen = tok.choose(&out.logits, ids.is_empty());
            leaves.push(commit::decoder_leaf(
                pos as u32, pos as u32, input, chosen, &out,
            ));
            if chosen == tok.eot {
                break;
            }
            ids.push(chosen);
            if ids.len() >= max_new {
                break;
            }
            cache.push(&out);
            input = chosen;
            pos += 1;
        }
        let decode_ms = t1.elapsed().as_secs_f64() * 1e3;

        let root = havn_exec::merkle::merkle_root(&leaves);
        let rh = commit::runtime_hash(
            self.cid.digest(),
            wav_hash,
            &root,
            leaves.len() as u32,
            &ids,
        );
        Ok(Transcript {
            text: tok.decode(&ids)?,
            token_ids: ids,
            runtime_hash: hex::encode(rh),
            merkle_root: hex::encode(root),
            leaves: leaves.len(),
            encode_ms,
            decode_ms,
            leaf_hashes: leaves,
        })
    }
}
