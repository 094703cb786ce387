use crate::common::{model, pool};
use havn_lm::{ChatRequest, RunOpts};

#[test]
fn smoke_capital_of_france() {
    let Some(m) = model() else { return };
    let req = ChatRequest::from_json(br#"{"messages":[{"role":"user","content":"What is the capital of France?"}],"max_tokens":16}"#).unwrap();
    let p = pool(2);
    let out = m
        .chat(
            &req,
            &RunOpts {
                seed: 0,
                pool: &p,
                keep_traces: false,
                cancel: None,
            },
        )
        .unwrap();
    eprintln!(
        "{:?} {:?} prompt {:?} load {:.2}s prefill {:.0}ms decode {:.1} tok/s",
        out.text,
        out.token_ids,
        out.prompt_ids.len(),
        m.load_s,
        out.prefill_ms,
        out.tokens_per_s
    );
}
