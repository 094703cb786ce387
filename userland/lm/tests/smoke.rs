use crate::common::{model, pool};
use havn_lm::ChatRequest;

#[test]
fn smoke_capital_of_france() {
    let Some(m) = model() else { return };
    let req = ChatRequest::from_json(br#"{"messages":[{"role":"user","content":"What is the capital of France?"}],"max_tokens":16}"#).unwrap();
    let p = pool(2);
    let out = m.chat(&req, &crate::common::opts(&p, 0)).unwrap();
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

/// The quantized kernels (Q4_1 / Q8_0 dequantized in registers) give the bits of the
/// f32 panels over the same dequantized weights: same logits, same runtime hash.
#[test]
fn quantized_kernels_match_the_f32_path_bit_for_bit() {
    let Some(m) = model() else { return };
    let store = havn_lm::store::Store::open(&crate::common::store_dir()).unwrap();
    let bytes = std::fs::read(store.path(&m.cid)).unwrap();
    let f32m = havn_lm::LoadedModel::from_bytes_with(&bytes, Some(&m.cid), true).unwrap();
    assert!(
        f32m.model.weight_bytes() > 3 * m.model.weight_bytes(),
        "f32 {} vs quantized {}",
        f32m.model.weight_bytes(),
        m.model.weight_bytes()
    );
    let req = ChatRequest::from_json(
        br#"{"messages":[{"role":"user","content":"Why is the sky blue?"}],"max_tokens":6}"#,
    )
    .unwrap();
    let p = pool(2);
    let o = |mm: &havn_lm::LoadedModel| mm.chat(&req, &crate::common::opts(&p, 3)).unwrap();
    let (a, b) = (o(m), o(&f32m));
    assert_eq!(
        a.first_logits
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>(),
        b.first_logits
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>()
    );
    assert_eq!((a.runtime_hash, a.token_ids), (b.runtime_hash, b.token_ids));
}
