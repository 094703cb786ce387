//! Bit-identical results for 1 and 2 threads and on repeated runs, and single blocks
//! re-executed alone reproduce their committed leaves.

use crate::common::{clips, whisper};
use havn_asr::{commit, model::SelfCache};
use std::time::Instant;

#[test]
fn same_bits_for_one_and_two_threads_and_twice_in_a_row() {
    let (Some(w), Some(clips)) = (whisper(), clips()) else {
        return;
    };
    let clip = &clips[0];
    let secs = (clip.wav.len() - 44) as f64 / 32_000.0;
    let mut runs = Vec::new();
    for threads in [1, 2, 2, 1] {
        let t0 = Instant::now();
        let t = w.transcribe(&clip.wav, threads).expect("transcribes");
        let s = t0.elapsed().as_secs_f64();
        eprintln!(
            "{threads} thread(s): {s:.2} s for {secs:.2} s of audio (RTF {:.2}; encode {:.0} ms, \
             decode {:.0} ms, {} tokens) {:?}",
            s / secs,
            t.encode_ms,
            t.decode_ms,
            t.token_ids.len(),
            t.text
        );
        runs.push(t);
    }
    for t in &runs[1..] {
        assert_eq!(t.runtime_hash, runs[0].runtime_hash);
        assert_eq!(t.merkle_root, runs[0].merkle_root);
        assert_eq!(t.token_ids, runs[0].token_ids);
        assert_eq!(t.leaf_hashes, runs[0].leaf_hashes);
    }
    // mel, stem, layers, final norm, prompt call, one call per token and the final one.
    let m = &w.model.cfg;
    assert_eq!(
        runs[0].leaves,
        1 + m.enc_layers + 2 + 1 + runs[0].token_ids.len() + 1
    );
}

#[test]
fn blocks_reexecute_alone_to_their_leaves() {
    let (Some(w), Some(clips)) = (whisper(), clips()) else {
        return;
    };
    let clip = &clips[1];
    let t = w.transcribe(&clip.wav, 2).expect("transcribes");
    let m = &w.model;
    let samples = havn_asr::wav::read_wav(&clip.wav).expect("reads");
    let mel = w.front.log_mel(&samples, 1);
    assert_eq!(commit::mel_leaf(&mel), t.leaf_hashes[0]);
    let mut x = m.encoder_stem(&mel, 1).expect("stem");
    assert_eq!(commit::encoder_leaf(0, &x), t.leaf_hashes[1]);
    // Each layer alone, from its committed input, on a different thread count.
    for l in 0..m.cfg.enc_layers {
        x = m.encoder_layer(l, &x, 1 + l % 2).expect("layer");
        assert_eq!(commit::encoder_leaf(l as u32 + 1, &x), t.leaf_hashes[l + 2]);
    }
    let enc = m.encoder_out(&x, 1);
    let base = m.cfg.enc_layers + 2;
    assert_eq!(
        commit::encoder_leaf(m.cfg.enc_layers as u32 + 1, &enc),
        t.leaf_hashes[base]
    );
    // Decoder calls 0..=2 alone, each from the cache rows of the calls before it.
    let cross = m.cross_kv(&enc, 2);
    let [sot, nots] = w.tokenizer.prompt();
    let mut cache = SelfCache::new(m.cfg.dec_layers);
    let inputs = [sot, nots, t.token_ids[0]];
    for (s, &input) in inputs.iter().enumerate() {
        let out = m
            .decoder_step(input, s, &cache, &cross, s > 0, 1)
            .expect("step");
        let chosen = if s == 0 {
            commit::NO_TOKEN
        } else {
            w.tokenizer.choose(&out.logits, s == 1)
        };
        if s > 0 {
            assert_eq!(chosen, t.token_ids[s - 1]);
        }
        let leaf = commit::decoder_leaf(s as u32, s as u32, input, chosen, &out);
        assert_eq!(leaf, t.leaf_hashes[base + 1 + s], "decoder call {s}");
        cache.push(&out);
    }
}
