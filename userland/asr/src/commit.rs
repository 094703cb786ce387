//! The commitment of a transcription, for validators that re-execute one block.
//!
//! All hashes sha3-256; `T(x) = H(x as f32le)`; integers u32le. Leaves, in order:
//! 1. mel: `H("havn-asr/mel/v1\0" ‖ T(mel [80, 3000]))`;
//! 2. encoder block `i` for i = 0 (conv stem + positions), 1..=L (layer i−1's output),
//!    L+1 (final LayerNorm, the cross-attention memory):
//!    `H("havn-asr/encoder/v1\0" ‖ i ‖ T(hidden [1500, d]))`;
//! 3. decoder call `s` (s = 0 is the prompt-only `<|startoftranscript|>` call at position
//!    0; s ≥ 1 feeds the previous token at position s):
//!    `H("havn-asr/decoder/v1\0" ‖ s ‖ pos ‖ input token ‖ chosen token (u32::MAX for
//!    the prompt call) ‖ T(logits) (of the empty slice for the prompt call) ‖
//!    T(k_new) ‖ T(v_new) for each layer)`, the logits before suppression.
//!
//! Root: havn-exec's Merkle tree (`merkle_root`: leaf = H(0x00 ‖ h), inner = H(0x01 ‖ l ‖
//! r), odd node promoted). `runtime_hash = H("havn-asr/runtime/v1\0" ‖ model CID digest
//! ‖ H(WAV bytes) ‖ root ‖ leaf count ‖ H(token ids))`, where the token ids are the
//! generated ids (no prompt, no `<|endoftext|>`).
//!
//! Each block is a pure function of committed values: the stem of the mel, encoder
//! layer i of block i, the final norm of block L, and decoder call s of its input
//! token, its position, the K/V rows of calls 0..s (their leaves) and the cross K/V,
//! which [`crate::model::WhisperModel::cross_kv`] derives from block L+1.

use crate::model::StepOut;
use sha3::{Digest, Sha3_256};

/// `T(x)`: sha3-256 of a tensor's f32le bytes.
pub fn tensor_hash(v: &[f32]) -> [u8; 32] {
    let mut h = Sha3_256::new();
    for x in v {
        h.update(x.to_le_bytes());
    }
    h.finalize().into()
}

/// The mel leaf.
pub fn mel_leaf(mel: &[f32]) -> [u8; 32] {
    let mut h = Sha3_256::new();
    h.update(b"havn-asr/mel/v1\0");
    h.update(tensor_hash(mel));
    h.finalize().into()
}

/// The leaf of encoder block `i`.
pub fn encoder_leaf(i: u32, hidden: &[f32]) -> [u8; 32] {
    let mut h = Sha3_256::new();
    h.update(b"havn-asr/encoder/v1\0");
    h.update(i.to_le_bytes());
    h.update(tensor_hash(hidden));
    h.finalize().into()
}

/// Chosen token of the prompt-only call.
pub const NO_TOKEN: u32 = u32::MAX;

/// The leaf of decoder call `s`.
pub fn decoder_leaf(s: u32, pos: u32, input: u32, chosen: u32, out: &StepOut) -> [u8; 32] {
    let mut h = Sha3_256::new();
    h.update(b"havn-asr/decoder/v1\0");
    h.update(s.to_le_bytes());
    h.update(pos.to_le_bytes());
    h.update(input.to_le_bytes());
    h.update(chosen.to_le_bytes());
    h.update(tensor_hash(&out.logits));
    for (k, v) in out.k_new.iter().zip(&out.v_new) {
        h.update(tensor_hash(k));
        h.update(tensor_hash(v));
    }
    h.finalize().into()
}

/// `H(ids as u32le)`.
pub fn tokens_hash(ids: &[u32]) -> [u8; 32] {
    let mut h = Sha3_256::new();
    for id in ids {
        h.update(id.to_le_bytes());
    }
    h.finalize().into()
}

/// The runtime hash.
pub fn runtime_hash(
    model_digest: &[u8; 32],
    wav_hash: &[u8; 32],
    root: &[u8; 32],
    leaves: u32,
    token_ids: &[u32],
) -> [u8; 32] {
    let mut h = Sha3_256::new();
    h.update(b"havn-asr/runtime/v1\0");
    h.update(model_digest);
    h.update(wav_hash);
    h.update(root);
    h.update(leaves.to_le_bytes());
    h.update(tokens_hash(token_ids));
    h.finalize().into()
}
