//! The `transcribe` workflow as a node serves it: its checksum, the outputs file, and
//! the work a job does (for the receipt's gas).

use crate::{Transcript, Whisper};
use havn_proto::Cid;

/// The workflow id.
pub const WORKFLOW: &str = "transcribe";

/// The checksum a node lists for `transcribe`: the model file and the tokenizer (whose
/// special and suppressed tokens steer decoding), by CID.
pub fn workflow_checksum(model: &Cid, tokenizer: &Cid) -> [u8; 32] {
    use sha3::{Digest, Sha3_256};
    let mut h = Sha3_256::new();
    h.update(b"havn-asr/transcribe/v1\0");
    h.update(model.digest());
    h.update(tokenizer.digest());
    h.finalize().into()
}

/// The job's outputs file: `text` (u8, UTF-8) and `token_ids` (i32), as safetensors.
pub fn outputs(t: &Transcript) -> crate::Result<Vec<u8>> {
    use safetensors::tensor::{Dtype, TensorView};
    let ids: Vec<u8> = t
        .token_ids
        .iter()
        .flat_map(|&x| (x as i32).to_le_bytes())
        .collect();
    let text = t.text.as_bytes();
    let bad = |e: safetensors::SafeTensorError| crate::AsrError::Output(e.to_string());
    let views = vec![
        (
            "text",
            TensorView::new(Dtype::U8, vec![text.len()], text).map_err(bad)?,
        ),
        (
            "token_ids",
            TensorView::new(Dtype::I32, vec![t.token_ids.len()], &ids).map_err(bad)?,
        ),
    ];
    safetensors::serialize(views, None).map_err(bad)
}

/// Floating-point operations of one transcription with `tokens` decoder calls (matmuls
/// only, 2 per multiply-add): the 30 s encoder window, then per call the self- and
/// cross-attention, FFN and logits.
pub fn flops(w: &Whisper, tokens: usize) -> u64 {
    let c = &w.model.cfg;
    let (d, f, t) = (c.d as u64, c.ffn as u64, c.enc_ctx as u64);
    let enc_layer = t * (4 * d * d + 2 * d * f) + 2 * t * t * d;
    let stem = 2 * t * d * (c.n_mels as u64 * 3) + t * d * d * 3;
    let dec_call = c.dec_layers as u64 * (6 * d * d + 2 * d * f + 2 * t * d) + c.vocab as u64 * d;
    2 * (stem + c.enc_layers as u64 * enc_layer + tokens as u64 * dec_call)
}
