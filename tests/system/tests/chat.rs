//! The `chat` workflow end to end: `havnctl run chat` is bit-identical across thread
//! counts and processes; a real node serves chat jobs whose input is uploaded by CID,
//! answers a factual question, signs a receipt a validator reproduces, and opens any
//! block for a challenge.

use crate::harness::{havnctl, havnctl_ok, stderr, Node};
use serde_json::Value;
use std::path::PathBuf;

/// The model store the test command fetched into (`$HAVN_MODEL_STORE`, else the
/// workspace's `.cache/models`); None, printing why, when the model is missing outside
/// CI (under `CI=true` that fails the test).
pub(crate) fn store() -> Option<String> {
    let dir = std::env::var_os("HAVN_MODEL_STORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models"));
    if dir.join("names/smollm2-135m-instruct").is_file() {
        return Some(dir.display().to_string());
    }
    let msg = format!(
        "the shipped chat model is not in {}: run `havnctl models fetch --store {}`",
        dir.display(),
        dir.display()
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
    havn_testkit::note_skip(&msg);
    None
}

/// A started node whose execd serves chat from `store`.
pub(crate) fn chat_node(store: &str) -> Node {
    let mut node = Node::prepare();
    let toml = std::fs::read_to_string(node.path("node.toml")).unwrap();
    let toml = toml.replace(
        "[execd]\n",
        &format!("[execd]\nmodel_store = \"{store}\"\n"),
    );
    std::fs::write(node.path("node.toml"), toml).unwrap();
    node.start();
    node
}

/// Writes `body` to `file` in the node's directory and submits it as a chat job
/// (`havnctl submit --input`) as the orchestrator, waiting up to `wait_s` seconds.
pub(crate) fn submit_request(
    node: &Node,
    file: &str,
    body: &[u8],
    job_id: &str,
    wait_s: &str,
    extra: &[&str],
) -> std::process::Output {
    let req = node.path(file);
    std::fs::write(&req, body).unwrap();
    let req = req.display().to_string();
    let mut args = vec![
        "submit",
        "--workflow",
        "chat",
        "--input",
        &req,
        "--job-id",
        job_id,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--wait", "--timeout", wait_s]);
    node.ctl("orchestrator", &args)
}

fn run_chat(store: &str, out: &std::path::Path, extra: &[&str]) -> Value {
    let mut args = vec!["run", "chat", "--store", store, "--json", "--out"];
    let o = out.display().to_string();
    args.push(&o);
    args.extend_from_slice(extra);
    serde_json::from_str(havnctl_ok(&args).trim()).expect("one JSON line")
}

#[test]
fn run_chat_is_bit_identical_across_threads_and_processes_and_seeds_matter() {
    let Some(store) = store() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let q = ["--prompt", "Name three planets.", "--max-tokens", "12"];
    let a = run_chat(
        &store,
        &tmp.path().join("a"),
        &[&q[..], &["--threads", "1"]].concat(),
    );
    let b = run_chat(
        &store,
        &tmp.path().join("b"),
        &[&q[..], &["--threads", "2"]].concat(),
    );
    for k in [
        "runtime_hash",
        "token_ids",
        "outputs_cid",
        "text",
        "merkle_root",
    ] {
        assert_eq!(
            a[k], b[k],
            "{k} differs between 1 and 2 threads (two processes)"
        );
    }
    for k in [
        "text",
        "token_ids",
        "runtime_hash",
        "outputs_cid",
        "backend",
        "tokens_per_s",
    ] {
        assert!(!a[k].is_null(), "havnctl run chat --json lacks {k}");
    }
    assert_eq!(a["backend"], "cpu");
    let sampled = |seed: &str| {
        run_chat(
            &store,
            &tmp.path().join(format!("t{seed}")),
            &[
                "--prompt",
                "Tell me a short story.",
                "--max-tokens",
                "16",
                "--temperature",
                "0.9",
                "--seed",
                seed,
            ],
        )
    };
    let (s1, s2, s1b) = (sampled("1"), sampled("2"), sampled("1"));
    assert_ne!(
        s1["text"], s2["text"],
        "seeds 1 and 2 sampled the same text"
    );
    assert_eq!(
        s1["runtime_hash"], s1b["runtime_hash"],
        "the same seed sampled differently"
    );
    // Bad input is refused before any work, naming the field.
    let o = havnctl(&[
        "run",
        "chat",
        "--store",
        &store,
        "--out",
        &tmp.path().join("bad").display().to_string(),
        "--prompt",
        "hi",
        "--temperature=-1",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("temperature: -1"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_node_answers_a_chat_job_and_a_validator_reproduces_and_challenges_it() {
    if !crate::harness::need_root() {
        return;
    }
    let Some(store) = store() else { return };
    let mut node = chat_node(&store);
    // The capability manifest lists chat with the checksum havnctl derives.
    let caps = String::from_utf8_lossy(&node.ctl("validator", &["get", "/capabilities"]).stdout)
        .into_owned();
    let want = havnctl_ok(&["workflows", "--json"]);
    let want: Value = serde_json::from_str(want.trim()).unwrap();
    assert!(
        caps.contains(want["chat"].as_str().unwrap()),
        "capabilities lack chat: {caps}"
    );

    // An input CID that was never uploaded is refused before the job is queued.
    let never = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    let o = node.ctl(
        "orchestrator",
        &[
            "submit",
            "--workflow",
            "chat",
            "--input",
            &format!("inputs={never}"),
        ],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("404") && stderr(&o).contains("never uploaded"),
        "{}",
        stderr(&o)
    );

    // The orchestrator's one-liner.
    let receipt = node.p("chat.receipt.json");
    let o = node.ctl(
        "orchestrator",
        &[
            "chat",
            "What is the capital of France?",
            "--job-id",
            "chat1",
            "--max-tokens",
            "24",
            "--receipt-out",
            &receipt,
            "--json",
        ],
    );
    assert!(
        o.status.success(),
        "havnctl chat failed: {}\n{}",
        stderr(&o),
        node.log()
    );
    let ans: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        ans["text"].as_str().unwrap().contains("Paris"),
        "answer: {ans}"
    );
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&receipt).unwrap()).unwrap();
    let r = &r["receipt"];
    assert_eq!(r["workflow_id"], "chat");

    // A validator re-executes the same request and gets the signed bits.
    let re = run_chat(
        &store,
        &node.path("reexec"),
        &[
            "--prompt",
            "What is the capital of France?",
            "--max-tokens",
            "24",
        ],
    );
    assert_eq!(
        re["runtime_hash"], r["runtime_hash"],
        "re-execution differs from the receipt"
    );
    assert_eq!(re["outputs_cid"], r["outputs_cid"]);

    // One block at one call, opened by the node and re-executed alone.
    let out = node.p("challenge");
    // The request the orchestrator sent (havnctl chat's defaults), to check the node
    // ran exactly it; and another one, which must be refused.
    let sent = node.p("sent.json");
    std::fs::write(&sent, br#"{"messages":[{"role":"user","content":"What is the capital of France?"}],"max_tokens":24}"#).unwrap();
    let other = node.p("other.json");
    std::fs::write(
        &other,
        br#"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":24}"#,
    )
    .unwrap();
    // `havnctl challenge` of chat1 as the validator, at one position, with `extra`.
    let challenge = |position: &str, extra: &[&str]| {
        let mut args = vec![
            "challenge",
            "--job",
            "chat1",
            "--node",
            position,
            "--receipt",
            &receipt,
            "--store",
            &store,
            "--out",
            &out,
        ];
        args.extend_from_slice(extra);
        node.ctl("validator", &args)
    };
    let o = challenge("s1.b3", &["--request", &other]);
    assert!(
        !o.status.success() && stderr(&o).contains("another request"),
        "{}",
        stderr(&o)
    );
    for block in ["s0.b0", "s3.b29", "s2.head"] {
        let o = challenge(block, &["--request", &sent]);
        assert!(
            o.status.success(),
            "challenge {block}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            stderr(&o)
        );
        assert!(String::from_utf8_lossy(&o.stdout).contains("challenge passed"));
    }
    let o = challenge("s0.b30", &[]);
    assert!(
        !o.status.success(),
        "a block that does not exist was served"
    );

    // submit --input FILE uploads the request; a malformed one is refused at intake
    // (400) naming the field inside the request.
    let o = submit_request(
        &node,
        "bad.json",
        br#"{"messages":[{"role":"robot","content":"hi"}]}"#,
        "chat-bad",
        "60",
        &[],
    );
    assert!(
        !o.status.success()
            && stderr(&o).contains("refused (400)")
            && stderr(&o).contains("inputs[0].messages[0].role"),
        "{}",
        stderr(&o)
    );

    // A prompt beyond the model's context (each digit is a token) fails the job before
    // any forward pass, naming the field.
    let long = format!(
        r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "7".repeat(9000)
    );
    let o = submit_request(
        &node,
        "long-prompt.json",
        long.as_bytes(),
        "chat-long",
        "120",
        &[],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("messages") && stderr(&o).contains("context"),
        "{}",
        stderr(&o)
    );

    // timeout_ms is enforced: the job is cancelled and fails with that reason.
    let o = submit_request(
        &node,
        "long.json",
        br#"{"messages":[{"role":"user","content":"Write a long essay."}],"max_tokens":400}"#,
        "chat-slow",
        "120",
        &["--timeout-ms", "300"],
    );
    assert!(
        !o.status.success() && stderr(&o).contains("timeout_ms"),
        "{}",
        stderr(&o)
    );
    node.stop();
}
