//! One block at one forward call, re-executed alone from the node's openings, against
//! the runtime hash; every tampered opening is refused.

use crate::common::{model, pool};
use havn_lm::challenge::{prove, verify, BlockChallenge};
use havn_lm::{ChatRequest, RunOpts};

fn run(m: &havn_lm::LoadedModel) -> (ChatRequest, havn_lm::ChatOutput) {
    let req = ChatRequest::from_json(
        br#"{"messages":[{"role":"user","content":"Name a large animal."}],"max_tokens":6}"#,
    )
    .expect("request");
    let p = pool(2);
    let out = m
        .chat(
            &req,
            &RunOpts {
                seed: 5,
                pool: &p,
                keep_traces: true,
                cancel: None,
            },
        )
        .expect("run");
    (req, out)
}

/// Through JSON, as the node serves it.
fn roundtrip(ch: &BlockChallenge) -> BlockChallenge {
    serde_json::from_str(&serde_json::to_string(ch).expect("encode")).expect("decode")
}

#[test]
fn a_block_reexecuted_alone_matches_its_commitment() {
    let Some(m) = model() else { return };
    let (req, out) = run(m);
    let p = pool(1);
    let last = m.model.cfg.layers as u32 - 1;
    let steps = out.token_ids.len() as u32;
    let head = havn_lm::challenge::HEAD;
    for (s, l) in [
        (0, 0),
        (0, last),
        (1, 0),
        (steps - 1, 7),
        (steps - 1, last),
        (0, head),
        (steps - 1, head),
    ] {
        let ch = roundtrip(&prove(m, &req, 5, &out, s, l).expect("prove"));
        verify(m, &ch, &out.runtime_hash, &p).unwrap_or_else(|e| panic!("block s{s}.b{l}: {e}"));
    }
    assert!(
        prove(m, &req, 5, &out, steps, 0).is_err(),
        "a call that did not happen"
    );
    assert!(
        prove(m, &req, 5, &out, 0, last + 1).is_err(),
        "a block that does not exist"
    );
}

type Tamper = Box<dyn Fn(&mut BlockChallenge)>;

#[test]
fn tampered_openings_are_refused() {
    let Some(m) = model() else { return };
    let (req, out) = run(m);
    let p = pool(1);
    let base = prove(m, &req, 5, &out, 2, 3).expect("prove");
    verify(m, &base, &out.runtime_hash, &p).expect("the untampered challenge verifies");
    let cases: Vec<(&str, Tamper)> = vec![
        (
            "input hidden row",
            Box::new(|c| c.input.as_mut().unwrap().hidden[5] += 1e-3),
        ),
        (
            "cached K row",
            Box::new(|c| c.cache[1].k_new[0] = -c.cache[1].k_new[0]),
        ),
        ("cached V row", Box::new(|c| c.cache[0].v_new[100] *= 2.0)),
        (
            "hidden given by hash only",
            Box::new(|c| {
                let o = c.input.as_mut().unwrap();
                o.hidden_hash = Some("00".repeat(32));
            }),
        ),
        (
            "a cache call dropped",
            Box::new(|c| {
                c.cache.pop();
            }),
        ),
        ("the fed token", Box::new(|c| c.input_ids[0] ^= 1)),
        (
            "the previous token's leaf",
            Box::new(|c| c.prev_token.as_mut().unwrap().token ^= 1),
        ),
        ("the request", Box::new(|c| c.request.max_tokens += 1)),
        ("the seed", Box::new(|c| c.seed += 1)),
        ("the Merkle path", Box::new(|c| c.path[0].1 = !c.path[0].1)),
        (
            "a path of another position's shape",
            Box::new(|c| {
                c.path.pop();
            }),
        ),
        ("the token ids", Box::new(|c| c.token_ids[3] ^= 1)),
        (
            "the call count",
            Box::new(|c| {
                c.token_ids.pop();
            }),
        ),
        (
            "the input opening's call",
            Box::new(|c| c.input.as_mut().unwrap().step += 1),
        ),
        (
            "a cache call's row count",
            Box::new(|c| c.cache[1].rows += 1),
        ),
    ];
    for (what, f) in cases {
        let mut ch = base.clone();
        f(&mut ch);
        let r = verify(m, &ch, &out.runtime_hash, &p);
        assert!(r.is_err(), "tampered {what} was accepted");
        eprintln!("tampered {what}: {}", r.unwrap_err());
    }
    assert!(
        verify(m, &base, &"11".repeat(32), &p).is_err(),
        "another receipt's runtime hash"
    );
}

#[test]
fn the_head_challenge_catches_a_token_the_logits_do_not_give_and_outputs_are_bound() {
    let Some(m) = model() else { return };
    let (req, out) = run(m);
    let p = pool(1);
    let head = havn_lm::challenge::HEAD;
    let base = prove(m, &req, 5, &out, 2, head).expect("prove head");
    verify(m, &base, &out.runtime_hash, &p).expect("the honest head verifies");
    // A node that commits a token the logits do not give (with an honest-looking leaf).
    let mut lie = base.clone();
    lie.token_ids[2] ^= 1;
    lie.token.as_mut().unwrap().token ^= 1;
    assert!(
        verify(m, &lie, &out.runtime_hash, &p).is_err(),
        "a forged token passed"
    );
    let mut bad_input = base.clone();
    bad_input.input.as_mut().unwrap().hidden[0] += 1.0;
    assert!(verify(m, &bad_input, &out.runtime_hash, &p).is_err());
    // The outputs file must carry the committed ids and the text they give.
    let bytes = havn_lm::outputs::safetensors_bytes(&out).unwrap();
    havn_lm::challenge::check_outputs(m, &base, &bytes).expect("honest outputs");
    let mut forged = out.clone();
    forged.text = "Something else entirely.".into();
    let bytes = havn_lm::outputs::safetensors_bytes(&forged).unwrap();
    assert!(
        havn_lm::challenge::check_outputs(m, &base, &bytes).is_err(),
        "forged text passed"
    );
    let mut forged = out.clone();
    forged.token_ids[0] ^= 1;
    let bytes = havn_lm::outputs::safetensors_bytes(&forged).unwrap();
    assert!(
        havn_lm::challenge::check_outputs(m, &base, &bytes).is_err(),
        "forged ids passed"
    );
    assert!(havn_lm::challenge::parse_node_id("s3.head") == Some((3, head)));
    assert!(havn_lm::challenge::parse_node_id("s3.b4294967295").is_none());
}
