//! The tokenizer side of decoding and the greedy search, as faster-whisper 1.2.1 drives
//! CTranslate2 for an English-only model with `beam_size=1, temperature=0,
//! without_timestamps=True` on one 30 s window.
//!
//! Prompt `<|startoftranscript|> <|notimestamps|>` (no language or task tokens): the first
//! token is a prompt-only call at position 0, the second starts the search at position 1.
//! At every step the ids of [`WhisperTokenizer::suppress`] get −∞ (faster-whisper's
//! `suppress_tokens=[-1]`: the tokenizer's non-speech symbols plus the task and special
//! tokens), and at the first sampled step also [`WhisperTokenizer::suppress_begin`]
//! (`suppress_blank`: `" "` and `<|endoftext|>`); the token is the first index of the
//! largest logit. The search stops at `<|endoftext|>` (not kept) or after
//! `min(448/2, 448 − 1) = 224` tokens (CTranslate2's bound for faster-whisper's
//! `max_length=448` and a one-token prefix). Text: the ids below `<|endoftext|>`
//! decoded by the `tokenizers` crate.

use crate::error::{AsrError, Result};
use tokenizers::Tokenizer;

/// faster-whisper's `max_length` (total decoder length).
pub const MAX_LENGTH: usize = 448;
/// Most tokens generated after the prompt (CTranslate2: `min(max_length / 2,
/// max_length − prefix)`, prefix 1).
pub const MAX_NEW_TOKENS: usize = MAX_LENGTH / 2;

/// The tokenizer and the special ids decoding needs.
pub struct WhisperTokenizer {
    tok: Tokenizer,
    pub sot: u32,
    pub eot: u32,
    pub no_timestamps: u32,
    /// Suppressed at every step (sorted).
    pub suppress: Vec<u32>,
    /// Suppressed at the first sampled step (`suppress_blank`).
    pub suppress_begin: Vec<u32>,
}

/// Symbols faster-whisper suppresses (`Tokenizer.non_speech_tokens`).
const SYMBOLS: &[&str] = &[
    "\"",
    "#",
    "(",
    ")",
    "*",
    "+",
    "/",
    ":",
    ";",
    "<",
    "=",
    ">",
    "@",
    "[",
    "\\",
    "]",
    "^",
    "_",
    "`",
    "{",
    "|",
    "}",
    "~",
    "「",
    "」",
    "『",
    "』",
    "<<",
    ">>",
    "<<<",
    ">>>",
    "--",
    "---",
    "-(",
    "-[",
    "('",
    "(\"",
    "((",
    "))",
    "(((",
    ")))",
    "[[",
    "]]",
    "{{",
    "}}",
    "♪♪",
    "♪♪♪",
];
/// Symbols whose first token is suppressed even when they take several tokens.
const MISC: &[&str] = &["♩", "♪", "♫", "♬", "♭", "♮", "♯"];

impl WhisperTokenizer {
    /// Builds the tokenizer from `tokenizer.json` bytes; `vocab` is the model's.
    pub fn from_bytes(json: &[u8], vocab: usize) -> Result<WhisperTokenizer> {
        let tok = Tokenizer::from_bytes(json).map_err(|e| AsrError::Tokenizer(e.to_string()))?;
        let id = |s: &str| -> Result<u32> {
            let i = tok
                .token_to_id(s)
                .ok_or_else(|| AsrError::Tokenizer(format!("no {s} token")))?;
            if i as usize >= vocab {
                return Err(AsrError::Tokenizer(format!(
                    "{s} is id {i}, outside the model's vocabulary of {vocab}"
                )));
            }
            Ok(i)
        };
        let sot = id("<|startoftranscript|>")?;
        let eot = id("<|endoftext|>")?;
        let no_timestamps = id("<|notimestamps|>")?;
        let encode = |s: &str| -> Result<Vec<u32>> {
            Ok(tok
                .encode(s, false)
                .map_err(|e| AsrError::Tokenizer(format!("encoding {s:?}: {e}")))?
                .get_ids()
                .to_vec())
        };
        let first = |s: &str| -> Result<u32> {
            encode(s)?
                .first()
                .copied()
                .ok_or_else(|| AsrError::Tokenizer(format!("{s:?} encodes to nothing")))
        };
        let mut suppress = vec![first(" -")?, first(" '")?];
        for &s in SYMBOLS.iter().chain(MISC) {
            for ids in [encode(s)?, encode(&format!(" {s}"))?] {
                if let Some(&i) = ids.first() {
                    if ids.len() == 1 || MISC.contains(&s) {
                        suppress.push(i);
                    }
                }
            }
        }
        for s in [
            "<|transcribe|>",
            "<|translate|>",
            "<|startoftranscript|>",
            "<|startofprev|>",
            "<|startoflm|>",
        ] {
            suppress.push(id(s)?);
        }
        suppress.push(id("<|nospeech|>").or_else(|_| id("<|nocaptions|>"))?);
        suppress.sort_unstable();
        suppress.dedup();
        if let Some(&i) = suppress.iter().find(|&&i| i as usize >= vocab) {
            return Err(AsrError::Tokenizer(format!(
                "suppressed id {i} is outside the model's vocabulary of {vocab}"
            )));
        }
        let mut suppress_begin = encode(" ")?;
        suppress_begin.push(eot);
        Ok(WhisperTokenizer {
            tok,
            sot,
            eot,
            no_timestamps,
            suppress,
            suppress_begin,
        })
    }

    /// The text of generated ids: those below `<|endoftext|>`, decoded.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let text: Vec<u32> = ids.iter().copied().filter(|&i| i < self.eot).collect();
        self.tok
            .decode(&text, true)
            .map_err(|e| AsrError::Tokenizer(format!("decoding: {e}")))
    }

    /// The prompt: `<|startoftranscript|> <|notimestamps|>`.
    pub fn prompt(&self) -> [u32; 2] {
        [self.sot, self.no_timestamps]
    }

    /// The greedy choice at a step: suppression applied to a copy, then the first index
    /// of the largest logit.
    pub fn choose(&self, logits: &[f32], first: bool) -> u32 {
        let mut best = 0usize;
        let mut best_v = f32::NEG_INFINITY;
        let banned = |i: u32| {
            self.suppress.binary_search(&i).is_ok() || (first && self.suppress_begin.contains(&i))
        };
        for (i, &v) in logits.iter().enumerate() {
            if v > best_v && !banned(i as u32) {
                best = i;
                best_v = v;
            }
        }
        best as u32
    }
}
