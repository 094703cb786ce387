//! Chat requests: every bound refused with the field named, before any work; the
//! thread count never changes a bit; stop strings, context and cancellation.

use crate::common::{model, opts, pool};
use havn_lm::{ChatRequest, Finish, LmError, RunOpts};

fn field_of(r: Result<ChatRequest, havn_lm::chat::RequestError>) -> String {
    match r {
        Err(e) => e.field,
        Ok(r) => panic!("expected a request error, got {r:?}"),
    }
}

#[test]
fn bad_requests_name_their_field() {
    let cases: [(&[u8], &str); 12] = [
        (br#"{"messages":[]}"#, "messages"),
        (
            br#"{"messages":[{"role":"robot","content":"x"}]}"#,
            "messages[0].role",
        ),
        (
            br#"{"messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
            "max_tokens",
        ),
        (
            br#"{"messages":[{"role":"user","content":"x"}],"max_tokens":100000}"#,
            "max_tokens",
        ),
        (
            br#"{"messages":[{"role":"user","content":"x"}],"temperature":-1}"#,
            "temperature",
        ),
        (
            br#"{"messages":[{"role":"user","content":"x"}],"temperature":1e39}"#,
            "temperature",
        ),
        (
            br#"{"messages":[{"role":"user","content":"x"}],"top_p":0}"#,
            "top_p",
        ),
        (
            br#"{"messages":[{"role":"user","content":"x"}],"stop":[""]}"#,
            "stop",
        ),
        (
            br#"{"messages":[{"role":"user","content":"x"}],"max_tokens":"many"}"#,
            "max_tokens",
        ),
        (
            br#"{"messages":[{"role":"user","content":"x"}],"colour":1}"#,
            "colour",
        ),
        (
            b"{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}",
            "input",
        ),
        (br#"{"messages":[{"role":"user","content":"x"}]"#, "input"),
    ];
    for (body, field) in cases {
        assert_eq!(
            field_of(ChatRequest::from_json(body)),
            field,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let mut r = ChatRequest::from_json(br#"{"messages":[{"role":"user","content":"x"}]}"#).unwrap();
    r.temperature = f32::NAN;
    assert!(matches!(r.validate(), Err(e) if e.field == "temperature"));
}

#[test]
fn threads_never_change_a_bit_and_seeds_do_when_sampling() {
    let Some(m) = model() else { return };
    let req = ChatRequest::from_json(
        br#"{"messages":[{"role":"user","content":"Write a sentence about rivers."}],"max_tokens":10,"temperature":0.8,"top_p":0.95,"top_k":40}"#,
    )
    .unwrap();
    let (p1, p2, p3) = (pool(1), pool(2), pool(3));
    let a = m.chat(&req, &opts(&p1, 7)).unwrap();
    let b = m.chat(&req, &opts(&p2, 7)).unwrap();
    let c = m.chat(&req, &opts(&p3, 7)).unwrap();
    assert_eq!(
        (&a.token_ids, &a.runtime_hash),
        (&b.token_ids, &b.runtime_hash),
        "1 vs 2 threads"
    );
    assert_eq!(
        (&a.token_ids, &a.runtime_hash),
        (&c.token_ids, &c.runtime_hash),
        "1 vs 3 threads"
    );
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
    let d = m.chat(&req, &opts(&p2, 8)).unwrap();
    assert_ne!(
        a.token_ids, d.token_ids,
        "seed 7 and 8 sampled the same tokens"
    );
    assert_ne!(a.runtime_hash, d.runtime_hash);
}

#[test]
fn stop_strings_context_and_cancellation() {
    let Some(m) = model() else { return };
    let p = pool(2);
    let req = ChatRequest::from_json(
        br#"{"messages":[{"role":"user","content":"What is the capital of France?"}],"max_tokens":20,"stop":["Paris"]}"#,
    )
    .unwrap();
    let out = m.chat(&req, &opts(&p, 0)).unwrap();
    assert_eq!(out.finish, Finish::Stop);
    assert!(
        !out.text.contains("Paris") && out.text.starts_with("The capital"),
        "{:?}",
        out.text
    );

    let req = ChatRequest::from_json(
        br#"{"messages":[{"role":"user","content":"Count."}],"max_tokens":3}"#,
    )
    .unwrap();
    let out = m.chat(&req, &opts(&p, 0)).unwrap();
    assert_eq!((out.finish, out.token_ids.len()), (Finish::Length, 3));

    // Each digit is its own token: 9000 digits exceed the 8192-token context.
    let long = format!(
        r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "7".repeat(9000)
    );
    let req = ChatRequest::from_json(long.as_bytes()).unwrap();
    let t = std::time::Instant::now();
    match m.chat(&req, &opts(&p, 0)) {
        Err(LmError::Request { field, reason }) => {
            assert_eq!(field, "messages");
            assert!(reason.contains("context"), "{reason}");
        }
        other => panic!(
            "a prompt beyond the context was not refused: {:?}",
            other.map(|o| o.text)
        ),
    }
    assert!(t.elapsed().as_secs() < 10, "refused only after work");

    let cancel = || Some("deadline passed".to_string());
    let r = m.chat(
        &req_small(),
        &RunOpts {
            seed: 0,
            pool: &p,
            keep_traces: false,
            cancel: Some(&cancel),
        },
    );
    assert!(
        matches!(r, Err(LmError::Cancelled(ref s)) if s == "deadline passed"),
        "{:?}",
        r.map(|o| o.text)
    );

    let mut big_k = req_small();
    big_k.top_k = 1 << 20;
    assert!(
        matches!(m.chat(&big_k, &opts(&p, 0)), Err(LmError::Request { field, .. }) if field == "top_k")
    );
}

fn req_small() -> ChatRequest {
    ChatRequest::from_json(br#"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2}"#)
        .unwrap()
}
