//! The `chat` workflow's input artifact: a JSON chat request. Defined here, once, so
//! that netd can refuse a bad request at intake (400 naming the field) without linking
//! the model code, and execd and validators parse exactly the same thing.

use serde::{Deserialize, Serialize};
use sha3::{Digest, Sha3_256};

/// Most tokens one job may generate.
pub const MAX_TOKENS: u32 = 4096;
/// Most messages in a request.
pub const MAX_MESSAGES: usize = 256;
/// Most bytes of message content in a request.
pub const MAX_CONTENT: usize = 64 * 1024;
/// Most stop strings.
pub const MAX_STOPS: usize = 4;
/// Longest stop string, in bytes.
pub const MAX_STOP_LEN: usize = 64;
/// Largest request artifact, in bytes.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// A chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

fn default_max_tokens() -> u32 {
    64
}
fn default_top_p() -> f32 {
    1.0
}

/// A chat job's request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, postcard_schema::Schema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// The conversation, ending with the user's turn.
    pub messages: Vec<Message>,
    /// Most tokens to generate.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Sampling temperature; 0 = greedy.
    #[serde(default)]
    pub temperature: f32,
    /// Nucleus mass in (0, 1].
    #[serde(default = "default_top_p")]
    pub top_p: f32,
    /// Top-k cut; 0 = none.
    #[serde(default)]
    pub top_k: u32,
    /// Stop strings.
    #[serde(default)]
    pub stop: Vec<String>,
}

/// A refused request: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct RequestError {
    /// The field (`messages[0].role`, `max_tokens`, … or `input` for the whole body).
    pub field: String,
    /// Why.
    pub reason: String,
}

/// The field a JSON decoding error is about, from `serde_path_to_error`'s path and the
/// error message: the path, plus the name of a missing field; a path ending in `?` (the
/// body ended before the next field) names the enclosing field (`workflow.?` →
/// `workflow`); None for the whole body. Used for job payloads and chat requests.
pub fn json_error_field(path: &str, msg: &str) -> Option<String> {
    let missing = msg
        .strip_prefix("missing field `")
        .and_then(|m| m.split('`').next());
    let path = path
        .strip_suffix('?')
        .map_or(path, |p| p.trim_end_matches('.'));
    let path = if path == "." { "" } else { path };
    match (path, missing) {
        ("", None) => None,
        ("", Some(m)) => Some(m.to_string()),
        (p, Some(m)) => Some(format!("{p}.{m}")),
        (p, None) => Some(p.to_string()),
    }
}

fn bad(field: &str, reason: String) -> RequestError {
    RequestError {
        field: field.into(),
        reason,
    }
}

impl ChatRequest {
    /// Parses and validates a request; errors name the field.
    pub fn from_json(bytes: &[u8]) -> Result<ChatRequest, RequestError> {
        if bytes.len() > MAX_REQUEST_BYTES {
            return Err(bad(
                "input",
                format!("{} bytes (limit {MAX_REQUEST_BYTES})", bytes.len()),
            ));
        }
        let s = core::str::from_utf8(bytes).map_err(|e| bad("input", format!("not UTF-8: {e}")))?;
        let mut de = serde_json::Deserializer::from_str(s);
        let r: ChatRequest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let msg = e.into_inner().to_string();
            let field = json_error_field(&path, &msg).unwrap_or_else(|| "input".into());
            bad(&field, msg)
        })?;
        de.end()
            .map_err(|e| bad("input", format!("trailing bytes after the request: {e}")))?;
        r.validate()?;
        Ok(r)
    }

    /// Checks every bound.
    pub fn validate(&self) -> Result<(), RequestError> {
        let n = self.messages.len();
        if n == 0 || n > MAX_MESSAGES {
            return Err(bad(
                "messages",
                format!("{n} messages (1..={MAX_MESSAGES})"),
            ));
        }
        let mut total = 0usize;
        for (i, m) in self.messages.iter().enumerate() {
            if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                return Err(bad(
                    &format!("messages[{i}].role"),
                    format!("{:?} is not system, user or assistant", m.role),
                ));
            }
            total = total.saturating_add(m.content.len());
        }
        if total > MAX_CONTENT {
            return Err(bad(
                "messages",
                format!("{total} bytes of content (limit {MAX_CONTENT})"),
            ));
        }
        if !(1..=MAX_TOKENS).contains(&self.max_tokens) {
            return Err(bad(
                "max_tokens",
                format!("{} (1..={MAX_TOKENS})", self.max_tokens),
            ));
        }
        if !self.temperature.is_finite() || !(0.0..=100.0).contains(&self.temperature) {
            return Err(bad(
                "temperature",
                format!("{} (a number in 0..=100; 0 is greedy)", self.temperature),
            ));
        }
        if !self.top_p.is_finite() || self.top_p <= 0.0 || self.top_p > 1.0 {
            return Err(bad("top_p", format!("{} (in (0, 1])", self.top_p)));
        }
        if self.stop.len() > MAX_STOPS
            || self
                .stop
                .iter()
                .any(|s| s.is_empty() || s.len() > MAX_STOP_LEN)
        {
            return Err(bad(
                "stop",
                format!("at most {MAX_STOPS} non-empty strings of at most {MAX_STOP_LEN} bytes"),
            ));
        }
        Ok(())
    }

    /// sha3-256 of the canonical JSON (struct field order, compact), which the chat
    /// runtime hash commits to.
    pub fn digest(&self) -> [u8; 32] {
        let json = serde_json::to_vec(self).unwrap_or_default();
        Sha3_256::digest(json).into()
    }
}
