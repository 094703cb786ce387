//! Our greedy generation against an independent implementation: the numpy float64 port
//! in `tests/reference/smollm2_ref.py` (weights read and dequantized by PyPI `gguf`,
//! prompt rendered by jinja2 and tokenized by Python `tokenizers`), on five chat prompts
//! × 32 tokens. Prompt ids and generated ids must be identical, and the first step's
//! logits within 1e-3 of the reference.

use crate::common::{model, pool};
use havn_lm::ChatRequest;
use std::path::PathBuf;
use std::process::Command;

fn reference_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/reference")
}

/// Runs the reference; None (printing why) when Python or its packages are missing
/// outside CI. Under `CI=true` that is a failure.
fn run_reference(gguf: &std::path::Path) -> Option<serde_json::Value> {
    let out = std::env::temp_dir().join(format!("havn-lm-ref-{}.json", std::process::id()));
    let python = std::env::var("HAVN_PYTHON").unwrap_or_else(|_| "python3".into());
    let r = Command::new(&python)
        .arg(reference_dir().join("smollm2_ref.py"))
        .arg("--gguf")
        .arg(gguf)
        .arg("--cases")
        .arg(reference_dir().join("cases.json"))
        .arg("--out")
        .arg(&out)
        .output();
    let why = match &r {
        Err(e) => format!("cannot run {python}: {e}"),
        Ok(o) if !o.status.success() => format!(
            "the reference failed (pip install -r userland/lm/tests/reference/requirements.txt?): {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Ok(_) => {
            let text = std::fs::read_to_string(&out).expect("reference output");
            let _ = std::fs::remove_file(&out);
            return Some(serde_json::from_str(&text).expect("reference JSON"));
        }
    };
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
    havn_testkit::note_skip(&why);
    None
}

#[test]
fn greedy_ids_and_first_logits_match_the_numpy_reference() {
    let Some(m) = model() else { return };
    let store = havn_lm::store::Store::open(&crate::common::store_dir()).expect("store");
    let Some(reference) = run_reference(&store.path(&m.cid)) else {
        return;
    };
    let cases: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(reference_dir().join("cases.json")).expect("cases"))
            .expect("cases JSON");
    let refs = reference["cases"].as_array().expect("cases array");
    assert_eq!(refs.len(), cases.len());
    assert!(cases.len() >= 5, "at least five prompts");
    let p = pool(2);
    for (i, (case, want)) in cases.iter().zip(refs).enumerate() {
        let req = ChatRequest::from_json(case.to_string().as_bytes()).expect("case parses");
        let out = m
            .chat(&req, &crate::common::opts(&p, 0))
            .expect("generation");
        let ids = |v: &serde_json::Value| -> Vec<u32> {
            v.as_array()
                .expect("ids")
                .iter()
                .map(|x| x.as_u64().expect("id") as u32)
                .collect()
        };
        assert_eq!(
            out.prompt_ids,
            ids(&want["prompt_ids"]),
            "case {i}: prompt token ids differ from the reference tokenizer"
        );
        assert_eq!(
            out.token_ids,
            ids(&want["token_ids"]),
            "case {i}: generated ids differ (ours {:?}, reference {:?})",
            out.text,
            want["text"]
        );
        let rl: Vec<f64> = want["first_logits"]
            .as_array()
            .expect("logits")
            .iter()
            .map(|x| x.as_f64().expect("f"))
            .collect();
        assert_eq!(rl.len(), out.first_logits.len());
        let worst = out
            .first_logits
            .iter()
            .zip(&rl)
            .map(|(&a, &b)| (f64::from(a) - b).abs())
            .fold(0.0f64, f64::max);
        eprintln!(
            "case {i}: {} tokens, {:?}; first-step logits max |ours - reference| = {worst:.2e}",
            out.token_ids.len(),
            out.text
        );
        assert!(
            worst < 1e-3,
            "case {i}: first-step logits differ by {worst:.2e} (limit 1e-3)"
        );
    }
}
