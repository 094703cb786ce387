use crate::common::*;
use havn_attest::evidence_dir;
use std::process::Command;

fn checkquote(dir: &std::path::Path, qual_hex: &str) -> Option<bool> {
    if !havn_testkit::require_tool(
        "tpm2_checkquote",
        "the independent quote verifier (tpm2-tools)",
    ) {
        return None;
    }
    let out = Command::new("tpm2_checkquote")
        .arg("-u")
        .arg(dir.join("ak.pem"))
        .arg("-m")
        .arg(dir.join("quote.msg"))
        .arg("-s")
        .arg(dir.join("quote.sig"))
        .arg("-f")
        .arg(dir.join("quote.pcrs"))
        .args(["-g", "sha256", "-q", qual_hex])
        .env("TSS2_LOG", "all+none")
        .output();
    match out {
        Ok(o) => Some(o.status.success()),
        Err(e) => panic!("running tpm2_checkquote: {e}"),
    }
}

#[test]
fn our_verifier_and_tpm2_checkquote_agree() {
    let mut n = node();
    let key = n.agent.create_node_key().unwrap();
    n.agent.extend(14, "binary", "/usr/bin/a", b"a").unwrap();
    let q = n
        .agent
        .quote(NONCE, &key.public(), &havn_attest::synth::PAYLOAD_KEY)
        .unwrap();
    let ev = q.to_evidence(n.agent.event_log(), key.public(), None);
    let dir = n.state.join("evidence");
    evidence_dir::write_dir(&dir, &ev, &q.ak_pem, NONCE, &q.extra_data).unwrap();
    let (back, _) = evidence_dir::read_dir(&dir).unwrap();
    assert_eq!(back, ev, "directory round-trips");
    let qual = hex::encode(q.extra_data);
    let ours_ok = havn_attest::verify_quote(&back, NONCE, &Default::default()).is_ok();
    let Some(theirs_ok) = checkquote(&dir, &qual) else {
        return;
    };
    assert!(
        ours_ok && theirs_ok,
        "valid quote: ours={ours_ok} tpm2_checkquote={theirs_ok}"
    );

    // Tampered quote.msg: both reject.
    let mut msg = std::fs::read(dir.join("quote.msg")).unwrap();
    msg[60] ^= 1;
    std::fs::write(dir.join("quote.msg"), &msg).unwrap();
    let (back, _) = evidence_dir::read_dir(&dir).unwrap();
    let ours_ok = havn_attest::verify_quote(&back, NONCE, &Default::default()).is_ok();
    let theirs_ok = checkquote(&dir, &qual).unwrap();
    assert!(
        !ours_ok && !theirs_ok,
        "tampered: ours={ours_ok} tpm2_checkquote={theirs_ok}"
    );

    // Tampered PCR value in quote.pcrs: both reject.
    std::fs::write(dir.join("quote.msg"), &q.attest).unwrap();
    let mut pcrs = std::fs::read(dir.join("quote.pcrs")).unwrap();
    pcrs[132 + 4 + 4 + 2] ^= 1; // first byte of PCR 0's value
    std::fs::write(dir.join("quote.pcrs"), &pcrs).unwrap();
    let (back, _) = evidence_dir::read_dir(&dir).unwrap();
    let ours = havn_attest::verify_quote(&back, NONCE, &Default::default());
    let theirs_ok = checkquote(&dir, &qual).unwrap();
    assert!(
        ours.is_err() && !theirs_ok,
        "pcr tampered: ours={ours:?} tpm2_checkquote={theirs_ok}"
    );
}
