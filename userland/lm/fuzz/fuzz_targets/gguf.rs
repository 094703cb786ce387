//! GGUF reader: any bytes → a typed error, or a file whose every tensor lies inside the
//! bytes and dequantizes, and whose config, tokenizer and model are built or refused
//! with an error. Never a panic, never an allocation past a few times the input.
#![no_main]
use havn_lm::gguf::Gguf;
use havn_lm::model::Config;
use havn_lm::quant::dequantize;
use havn_lm::{ChatTokenizer, LoadedModel, Message};
use libfuzzer_sys::fuzz_target;

/// Tensors over this many elements are not dequantized (bounded work per input).
const MAX_ELEMENTS: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(g) = Gguf::parse(data) else { return };
    let mut spans = Vec::new();
    for t in &g.tensors {
        let n = t.numel();
        assert!(n > 0 && t.start + t.len <= data.len(), "{t:?}");
        assert_eq!(
            t.len as u64,
            n / t.ty.block_len() * t.ty.block_bytes(),
            "{t:?}"
        );
        spans.push((t.start, t.start + t.len));
        if n <= MAX_ELEMENTS {
            let v = dequantize(data, t).expect("a parsed tensor dequantizes");
            assert_eq!(v.len() as u64, n);
        }
    }
    spans.sort_unstable();
    assert!(
        spans.windows(2).all(|w| w[0].1 <= w[1].0),
        "tensors overlap"
    );
    let cfg = Config::from_gguf(&g);
    if let Ok(tok) = ChatTokenizer::from_gguf(&g) {
        let msg = Message {
            role: "user".into(),
            content: "Hi there 42".into(),
        };
        if let Ok(prompt) = tok.render(&[msg]) {
            if let Ok(ids) = tok.encode(&prompt) {
                assert!(ids.iter().all(|&i| (i as usize) < tok.vocab), "{ids:?}");
                let _ = tok.decode(&ids);
            }
        }
        if cfg.is_ok() {
            let _ = LoadedModel::from_bytes(data, None);
        }
    }
});
