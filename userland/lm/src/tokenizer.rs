//! The model's own tokenizer and chat template, rebuilt from the GGUF metadata with
//! well-kept crates: a byte-level BPE from `tokenizer.ggml.tokens` + `tokenizer.ggml.merges`
//! through the `tokenizers` crate, and the `tokenizer.chat_template` string rendered by
//! `minijinja`. Tokens of type CONTROL (3) are special: they match only as whole strings
//! in the rendered prompt and are skipped when decoding.

use crate::error::{LmError, Result};
use crate::gguf::{Gguf, Value};
use serde_json::json;

/// Instructions a chat template may execute per rendering.
pub const TEMPLATE_FUEL: u64 = 1_000_000;

/// Most vocabulary entries accepted.
pub const MAX_VOCAB: usize = 1 << 20;

pub use havn_proto::chat::Message;

/// Tokenizer, chat template and special ids of one model.
pub struct ChatTokenizer {
    tok: tokenizers::Tokenizer,
    template: String,
    /// End of sequence (generation stops on it).
    pub eos: u32,
    /// Vocabulary size.
    pub vocab: usize,
}

fn strings(g: &Gguf, key: &str) -> Result<Vec<String>> {
    let arr = g.get(key)?.as_array().ok_or_else(|| LmError::Metadata {
        key: key.into(),
        reason: "expected an array".into(),
    })?;
    arr.iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| LmError::Metadata {
                    key: key.into(),
                    reason: "expected an array of strings".into(),
                })
        })
        .collect()
}

impl ChatTokenizer {
    /// Builds the tokenizer and template of a GGUF file (byte-level BPE models only).
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let model = g.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(LmError::Metadata {
                key: "tokenizer.ggml.model".into(),
                reason: format!("{model:?} is not supported (only byte-level BPE, \"gpt2\")"),
            });
        }
        let tokens = strings(g, "tokenizer.ggml.tokens")?;
        if tokens.is_empty() || tokens.len() > MAX_VOCAB {
            return Err(LmError::Metadata {
                key: "tokenizer.ggml.tokens".into(),
                reason: format!("{} tokens (1..={MAX_VOCAB})", tokens.len()),
            });
        }
        let merges = strings(g, "tokenizer.ggml.merges")?;
        let types: Vec<u64> = match g.metadata.get("tokenizer.ggml.token_type") {
            Some(Value::Array(a)) => a.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
            _ => vec![1; tokens.len()],
        };
        let mut vocab = serde_json::Map::new();
        let mut added = Vec::new();
        for (id, t) in tokens.iter().enumerate() {
            vocab.insert(t.clone(), json!(id));
            if types.get(id) == Some(&3) {
                added.push(
                    json!({"id": id, "content": t, "single_word": false, "lstrip": false,
                    "rstrip": false, "normalized": false, "special": true}),
                );
            }
        }
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
            ]},
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": null, "end_of_word_suffix": null,
                "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": merges}
        });
        let tok: tokenizers::Tokenizer = spec
            .to_string()
            .parse()
            .map_err(|e| LmError::Tokenizer(format!("building the BPE from the GGUF: {e}")))?;
        let eos = g.get_u64("tokenizer.ggml.eos_token_id")?;
        if eos as usize >= tokens.len() {
            return Err(LmError::Metadata {
                key: "tokenizer.ggml.eos_token_id".into(),
                reason: format!("{eos} is outside the {}-token vocabulary", tokens.len()),
            });
        }
        let template = g.get_str("tokenizer.chat_template")?.to_owned();
        Ok(ChatTokenizer {
            tok,
            template,
            eos: eos as u32,
            vocab: tokens.len(),
        })
    }

    /// Renders the chat template for `messages`, ending with the assistant's turn.
    pub fn render(&self, messages: &[Message]) -> Result<String> {
        let mut env = minijinja::Environment::new();
        // A hostile template in a model file cannot loop for long.
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.add_template("chat", &self.template)
            .map_err(|e| LmError::Template(e.to_string()))?;
        let t = env
            .get_template("chat")
            .map_err(|e| LmError::Template(e.to_string()))?;
        t.render(minijinja::context! { messages => minijinja::Value::from(minijinja::value::Serde(messages)), add_generation_prompt => true })
            .map_err(|e| LmError::Template(e.to_string()))
    }

    /// Token ids of `text` (special tokens recognised, no BOS added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tok
            .encode(text, false)
            .map_err(|e| LmError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tok
            .decode(ids, true)
            .map_err(|e| LmError::Tokenizer(e.to_string()))
    }
}
