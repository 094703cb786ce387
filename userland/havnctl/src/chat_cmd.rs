//! `havnctl run chat`: one chat job on the local deterministic engine (havn-lm) — what an
//! orchestrator tries and what a validator re-executes. Prints one JSON line with --json.

use crate::models_cmd::default_store;
use anyhow::Context;
use havn_lm::store::{Store, DEFAULT_MODEL};
use havn_lm::{ChatRequest, Message, RunOpts};
use std::path::{Path, PathBuf};

/// What a chat request says besides the user's message (shared by `havnctl run chat`
/// and `havnctl chat`).
#[derive(Debug, Clone, clap::Args)]
pub struct SamplingArgs {
    /// chat: a system message (the model's template supplies a default one).
    #[arg(long)]
    pub system: Option<String>,
    /// chat: most tokens to generate.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: u32,
    /// chat: sampling temperature; 0 (the default) is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// chat: nucleus sampling mass in (0, 1].
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// chat: sample among the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 0)]
    pub top_k: u32,
    /// chat: stop when this string appears (repeatable).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
}

impl SamplingArgs {
    /// The validated request for `prompt`.
    pub fn request(&self, prompt: String) -> anyhow::Result<ChatRequest> {
        let mut messages = Vec::new();
        if let Some(s) = &self.system {
            messages.push(Message {
                role: "system".into(),
                content: s.clone(),
            });
        }
        messages.push(Message {
            role: "user".into(),
            content: prompt,
        });
        let r = ChatRequest {
            messages,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            stop: self.stop.clone(),
        };
        r.validate()?;
        Ok(r)
    }
}

/// The chat-specific options of `havnctl run`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChatArgs {
    /// chat: the user's message.
    #[arg(long)]
    pub prompt: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// chat: the whole request as a JSON file (the job's input artifact) instead of
    /// --prompt/--system/--max-tokens/...
    #[arg(long, conflicts_with = "prompt")]
    pub request: Option<PathBuf>,
    /// chat: model name or CID in the store.
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: String,
    /// chat, diffusion, transcribe: model store [default: $HAVN_MODEL_STORE, else /var/lib/havn/models].
    #[arg(long)]
    pub store: Option<PathBuf>,
}

impl ChatArgs {
    fn request(&self) -> anyhow::Result<ChatRequest> {
        if let Some(p) = &self.request {
            let b = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            return ChatRequest::from_json(&b).with_context(|| format!("request {}", p.display()));
        }
        let prompt = self
            .prompt
            .clone()
            .context("chat needs --prompt TEXT (or --request FILE)")?;
        self.sampling.request(prompt)
    }
}

/// Runs the chat workflow and prints the result.
pub fn run(
    c: &ChatArgs,
    seed: u64,
    threads: usize,
    backend: &str,
    out: &Path,
    json: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        backend != "cuda",
        "the chat workflow has no CUDA kernels yet; run it with --backend cpu (or auto)"
    );
    let req = c.request()?;
    let dir = c.store.clone().unwrap_or_else(default_store);
    let store = Store::open(&dir)?;
    if !json {
        eprintln!("loading {} from {}", c.model, dir.display());
    }
    let m = store
        .load(&c.model)
        .with_context(|| format!("loading model {:?}", c.model))?;
    let pool = havn_lm::linear::pool(threads)?;
    let threads_used = pool.current_num_threads();
    let o = m.chat(
        &req,
        &RunOpts {
            seed,
            pool: &pool,
            keep_traces: false,
            cancel: None,
        },
    )?;
    let cid = havn_lm::outputs::write(out, &o)?;
    let report = serde_json::json!({
        "workflow": "chat",
        "model": m.name,
        "model_cid": m.cid.to_string(),
        "text": o.text,
        "token_ids": o.token_ids,
        "prompt_tokens": o.prompt_ids.len(),
        "finish": o.finish,
        "runtime_hash": o.runtime_hash,
        "merkle_root": o.merkle_root,
        "leaves": o.leaves,
        "outputs_cid": cid.to_string(),
        "backend": "cpu",
        "threads": threads_used,
        "seed": seed,
        "load_s": m.load_s,
        "prefill_ms": o.prefill_ms,
        "decode_ms": o.decode_ms,
        "tokens_per_s": o.tokens_per_s,
    });
    std::fs::write(out.join("run.json"), format!("{report:#}\n"))
        .with_context(|| format!("writing {}", out.join("run.json").display()))?;
    std::fs::write(out.join("request.json"), serde_json::to_vec_pretty(&req)?)?;
    if json {
        println!("{report}");
    } else {
        println!("{}", o.text);
        eprintln!(
            "runtime_hash {}\noutputs_cid {cid}\n{} prompt + {} generated tokens ({:?}), prefill {:.0} ms, decode {:.1} tok/s on {threads_used} thread(s)",
            o.runtime_hash,
            o.prompt_ids.len(),
            o.token_ids.len(),
            o.finish,
            o.prefill_ms,
            o.tokens_per_s
        );
    }
    Ok(())
}
