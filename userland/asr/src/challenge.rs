//! Challenges of a transcription: one encoder block (the conv stem, a layer or the final
//! norm; node ids `enc0` … `enc{L+1}`) re-executed alone from its committed input.
//!
//! The node serves every leaf (a transcription has a few dozen), the WAV's hash and the
//! token ids (so the validator rebuilds the root and the runtime hash and compares it
//! with the receipt's), and the block's input tensor, which must hash to the leaf before
//! the block; the block's output must hash to its own leaf. Decoder calls are not served
//! yet (their inputs are the whole K/V cache).

use crate::commit;
use crate::error::{AsrError, Result};
use crate::Whisper;
use sha3::{Digest, Sha3_256};

/// What a node serves for one block (the input tensor travels beside it, f32 LE).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BlockChallenge {
    pub model_cid: String,
    /// sha3-256 of the WAV bytes (hex), as the runtime hash binds it.
    pub wav_hash: String,
    pub token_ids: Vec<u32>,
    /// Every leaf (hex), in commitment order.
    pub leaves: Vec<String>,
    /// Encoder block: 0 = stem, 1..=L the layers, L+1 the final norm.
    pub block: u32,
}

/// The node id of encoder block `b`.
pub fn node_id(b: u32) -> String {
    format!("enc{b}")
}

/// The block of a node id (`enc<b>`).
pub fn parse_node_id(s: &str) -> Option<u32> {
    s.strip_prefix("enc")?.parse().ok()
}

fn bad(reason: impl Into<String>) -> AsrError {
    AsrError::Challenge(reason.into())
}

/// f32 LE bytes.
pub fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl Whisper {
    fn blocks(&self) -> u32 {
        self.model.cfg.enc_layers as u32 + 2
    }

    /// Runs encoder block `b` on `input` (the log-mel for the stem).
    fn run_block(&self, b: u32, input: &[f32], threads: usize) -> Result<Vec<f32>> {
        let l = self.model.cfg.enc_layers as u32;
        Ok(match b {
            0 => self.model.encoder_stem(input, threads)?,
            b if b <= l => self.model.encoder_layer(b as usize - 1, input, threads)?,
            _ => self.model.encoder_out(input, threads),
        })
    }

    /// Challenge material for encoder block `b` of the transcription of `wav`, after
    /// checking the repeated run gives `signed_runtime_hash`: the JSON and the block's
    /// input (f32 LE).
    pub fn prove(
        &self,
        wav: &[u8],
        threads: usize,
        b: u32,
        signed_runtime_hash: &str,
    ) -> Result<(BlockChallenge, Vec<u8>)> {
        if b >= self.blocks() {
            return Err(bad(format!(
                "no block enc{b}: encoder blocks are enc0..enc{} (decoder calls are not served)",
                self.blocks() - 1
            )));
        }
        let t = self.transcribe(wav, threads)?;
        if t.runtime_hash != signed_runtime_hash {
            return Err(bad(
                "the repeated run does not give the signed runtime hash",
            ));
        }
        let samples = crate::wav::read_wav(wav)?;
        let mut x = self.front.log_mel(&samples, threads);
        for k in 0..b {
            x = self.run_block(k, &x, threads)?;
        }
        let wav_hash: [u8; 32] = Sha3_256::digest(wav).into();
        Ok((
            BlockChallenge {
                model_cid: self.cid.to_string(),
                wav_hash: hex::encode(wav_hash),
                token_ids: t.token_ids,
                leaves: t.leaf_hashes.iter().map(hex::encode).collect(),
                block: b,
            },
            to_bytes(&x),
        ))
    }

    /// Checks a challenge against the receipt's runtime hash: the leaves give it, the
    /// input hashes to the leaf before the block, and the block re-executed here gives
    /// its own leaf.
    pub fn verify_challenge(
        &self,
        ch: &BlockChallenge,
        input: &[u8],
        receipt_runtime_hash: &str,
        threads: usize,
    ) -> Result<()> {
        if ch.model_cid != self.cid.to_string() {
            return Err(bad(format!(
                "the node ran model {}, this validator has {}",
                ch.model_cid, self.cid
            )));
        }
        let h32 = |s: &str, what: &str| -> Result<[u8; 32]> {
            let mut o = [0u8; 32];
            hex::decode_to_slice(s, &mut o).map_err(|_| bad(format!("{what} is not 64 hex")))?;
            Ok(o)
        };
        let leaves = ch
            .leaves
            .iter()
            .map(|l| h32(l, "a leaf"))
            .collect::<Result<Vec<_>>>()?;
        let root = havn_exec::merkle::merkle_root(&leaves);
        let rh = commit::runtime_hash(
            self.cid.digest(),
            &h32(&ch.wav_hash, "wav_hash")?,
            &root,
            leaves.len() as u32,
            &ch.token_ids,
        );
        if hex::encode(rh) != receipt_runtime_hash {
            return Err(bad(
                "the served leaves and token ids do not give the receipt's runtime hash",
            ));
        }
        let b = ch.block;
        if b >= self.blocks() || leaves.len() <= b as usize + 1 {
            return Err(bad(format!("no encoder block {b} in this commitment")));
        }
        if input.len() % 4 != 0 {
            return Err(bad("the input is not f32 LE"));
        }
        let x: Vec<f32> = input
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let cfg = &self.model.cfg;
        let want = if b == 0 {
            cfg.n_mels * 2 * cfg.enc_ctx
        } else {
            cfg.enc_ctx * cfg.d
        };
        if x.len() != want {
            return Err(bad(format!(
                "the input has {} values, block enc{b} takes {want}",
                x.len()
            )));
        }
        let committed = if b == 0 {
            commit::mel_leaf(&x)
        } else {
            commit::encoder_leaf(b - 1, &x)
        };
        if committed != leaves[b as usize] {
            return Err(bad(format!(
                "the input of enc{b} does not hash to its committed leaf"
            )));
        }
        let out = self.run_block(b, &x, threads)?;
        if commit::encoder_leaf(b, &out) != leaves[b as usize + 1] {
            return Err(bad(format!(
                "enc{b} re-executed here does not give the committed output"
            )));
        }
        Ok(())
    }
}
