//! Encoder-block challenges: a node's material passes for every block; a tampered input,
//! leaf, token or block index is refused with the reason.

use crate::common::{clips, whisper};
use havn_asr::challenge::{node_id, parse_node_id};

#[test]
fn every_encoder_block_verifies_and_tampering_is_refused() {
    let (Some(w), Some(clips)) = (whisper(), clips()) else {
        return;
    };
    let wav = &clips[0].wav;
    let t = w.transcribe(wav, 2).expect("transcribes");
    let blocks = w.model.cfg.enc_layers as u32 + 2;
    for b in 0..blocks {
        assert_eq!(parse_node_id(&node_id(b)), Some(b));
        let (ch, input) = w.prove(wav, 2, b, &t.runtime_hash).expect("proves");
        w.verify_challenge(&ch, &input, &t.runtime_hash, 1)
            .unwrap_or_else(|e| panic!("enc{b}: {e}"));
        if b == 2 {
            let mut bad = input.clone();
            bad[1000] ^= 1;
            let e = w
                .verify_challenge(&ch, &bad, &t.runtime_hash, 1)
                .unwrap_err();
            assert!(
                e.to_string()
                    .contains("does not hash to its committed leaf"),
                "{e}"
            );
            let mut c = ch.clone();
            c.token_ids[0] ^= 1;
            let e = w
                .verify_challenge(&c, &input, &t.runtime_hash, 1)
                .unwrap_err();
            assert!(e.to_string().contains("runtime hash"), "{e}");
            let mut c = ch.clone();
            c.leaves[3] = "00".repeat(32);
            let e = w
                .verify_challenge(&c, &input, &t.runtime_hash, 1)
                .unwrap_err();
            assert!(e.to_string().contains("runtime hash"), "{e}");
            let mut c = ch.clone();
            c.block = 3;
            let e = w
                .verify_challenge(&c, &input, &t.runtime_hash, 1)
                .unwrap_err();
            assert!(e.to_string().contains("enc3"), "{e}");
        }
    }
    let e = w.prove(wav, 2, blocks, &t.runtime_hash).unwrap_err();
    assert!(e.to_string().contains("no block"), "{e}");
    let e = w.prove(wav, 2, 1, &"ab".repeat(32)).unwrap_err();
    assert!(e.to_string().contains("signed runtime hash"), "{e}");
}
