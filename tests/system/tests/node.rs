//! The main job, headless: a real node (swtpm, havn-init, the three sandboxed
//! daemons, mTLS), an orchestrator submitting each shipped workload, and a validator
//! checking quote, receipts and re-execution — plus the negative cases.
use crate::harness::*;
use serde_json::Value;

const NONCE_A: &str = "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1";
const NONCE_B: &str = "b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2";

fn status_field(pid: i32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{key}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("{key} not in /proc/{pid}/status"))
}

#[test]
fn orchestrator_and_validator_against_a_real_node() {
    if !need_root() {
        return;
    }
    let mut node = Node::prepare();
    node.start();

    // netd's TLS key exists on disk only sealed by the TPM: attestd sealed it at the
    // first start and destroyed the plaintext file; netd got it in memory.
    assert!(
        !node.path("pki/node.key").exists(),
        "plaintext TLS key left on disk"
    );
    assert!(node.path("state/attestd/netd-tls-key.sealed.json").exists());

    // Operators' tools see each daemon by its own name (havn-init execs the measured
    // file through /proc/self/fd/N, which would name it `N`).
    for d in DAEMONS {
        let pid = node.daemon_pid(d);
        let out = std::process::Command::new("pgrep")
            .args(["-x", d])
            .output()
            .expect("run pgrep");
        let found: Vec<i32> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        assert!(
            found.contains(&pid),
            "pgrep -x {d} found {found:?}, not {pid}"
        );
    }

    // execd runs as its own user (not attestd's root), and attestd's state is root's,
    // mode 0700: execd cannot open it (havn-sandbox: execd_cannot_open_or_write_attestds_state).
    let execd = node.daemon_pid("havn-execd");
    let execd_uid = status_field(execd, "Uid");
    assert!(
        execd_uid
            .split_whitespace()
            .all(|u| u != "0" && u != "65534"),
        "execd Uid {execd_uid}"
    );
    {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(node.path("state/attestd")).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o777), (0, 0o700));
    }

    // netd runs unprivileged, without capabilities, with no_new_privs and seccomp.
    let netd = node.daemon_pid("havn-netd");
    let uid = status_field(netd, "Uid");
    let gid = status_field(netd, "Gid");
    assert!(
        uid.split_whitespace().all(|u| u == "65534"),
        "netd Uid {uid}"
    );
    assert!(gid.split_whitespace().all(|g| g != "0"), "netd Gid {gid}");
    for cap in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
        assert_eq!(status_field(netd, cap), "0000000000000000", "netd {cap}");
    }
    assert_eq!(status_field(netd, "NoNewPrivs"), "1");
    assert_eq!(status_field(netd, "Seccomp"), "2");
    // The sealed node key lives where netd's uid cannot read it.
    let sealed = node.path("state/attestd/node_key.sealed.json");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let attestd_dir = std::fs::metadata(node.path("state/attestd")).unwrap();
    assert_eq!(attestd_dir.uid(), 0, "attestd state owned by root");
    assert_eq!(
        attestd_dir.permissions().mode() & 0o077,
        0,
        "attestd state dir is private"
    );
    assert!(sealed.exists(), "sealed key file missing");
    // And netd holds no descriptor to it or to any TPM device.
    for fd in std::fs::read_dir(format!("/proc/{netd}/fd"))
        .unwrap()
        .flatten()
    {
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        let t = target.display().to_string();
        assert!(
            !t.contains("attestd") && !t.contains("tpm"),
            "netd holds {t}"
        );
    }

    // Orchestrator: one job per workload, the last over gRPC (same port, ALPN h2):
    // its receipt is checked below against the quoted key like the others.
    let mut receipts = Vec::new();
    // (diffusion is the real model: tests/diffusion.rs runs it on a node with a store.)
    for (i, wf) in ["lm", "audio"].iter().enumerate() {
        let seed = 1000 + i as u64;
        let via: &[&str] = if *wf == "audio" { &["--grpc"] } else { &[] };
        let (path, v) = node.submit_with(wf, seed, &format!("sys-{wf}"), via);
        assert_eq!(v["receipt"]["workflow_id"], *wf);
        receipts.push((wf.to_string(), seed, path, v));
    }

    // Validator: quote for a fresh nonce, checked against golden + vendor CA.
    node.fetch_quote(NONCE_A, "evidence");
    let ok = havnctl(&[
        "verify-quote",
        &node.p("evidence"),
        "--nonce",
        NONCE_A,
        "--golden",
        &node.p("golden.json"),
        "--ca",
        &node.p("vendor-ca.pem"),
    ]);
    assert!(ok.status.success(), "valid quote rejected: {}", stderr(&ok));
    assert!(
        String::from_utf8_lossy(&ok.stdout).starts_with("VALID"),
        "{}",
        stderr(&ok)
    );

    // Negative: the same evidence presented for another nonce.
    let other = havnctl(&["verify-quote", &node.p("evidence"), "--nonce", NONCE_B]);
    assert!(
        !other.status.success(),
        "quote accepted for a nonce it was not made for"
    );
    assert!(
        stderr(&other).to_lowercase().contains("nonce"),
        "{}",
        stderr(&other)
    );

    // Negative: a quote really made for nonce B, checked as if it answered nonce A.
    node.fetch_quote(NONCE_B, "evidence-b");
    let evb = node.path("evidence-b/evidence.json");
    let mut j: Value = serde_json::from_slice(&std::fs::read(&evb).unwrap()).unwrap();
    j["nonce"] = Value::String(NONCE_A.into());
    std::fs::write(&evb, serde_json::to_vec(&j).unwrap()).unwrap();
    let swapped = havnctl(&["verify-quote", &node.p("evidence-b"), "--nonce", NONCE_A]);
    assert!(
        !swapped.status.success(),
        "quote for nonce B accepted as an answer to nonce A"
    );

    for (wf, seed, path, v) in &receipts {
        let p = path.display().to_string();
        let good = node.verify("verify-receipt", &p, &["--golden", &node.p("golden.json")]);
        assert!(
            good.status.success(),
            "{wf}: receipt rejected: {}",
            stderr(&good)
        );

        // Negative: the receipt altered in one byte (one hex digit of the runtime hash).
        let mut text = std::fs::read_to_string(path).unwrap();
        let rh = v["receipt"]["runtime_hash"].as_str().unwrap().to_string();
        let mut flipped = rh.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        text = text.replace(&rh, std::str::from_utf8(&flipped).unwrap());
        let bad_path = node.path(&format!("tampered-{wf}.json"));
        std::fs::write(&bad_path, text).unwrap();
        let bad = node.verify("verify-receipt", &bad_path.display().to_string(), &[]);
        assert!(!bad.status.success(), "{wf}: altered receipt accepted");
        assert!(stderr(&bad).contains("signature"), "{wf}: {}", stderr(&bad));

        // Re-execution on the validator reproduces the receipt bit for bit.
        let out = node.p(&format!("reexec-{wf}"));
        let r: Value = serde_json::from_str(&havnctl_ok(&[
            "run",
            wf,
            "--seed",
            &seed.to_string(),
            "--out",
            &out,
            "--no-checkpoint",
            "--json",
        ]))
        .unwrap();
        assert_eq!(
            r["runtime_hash"], v["receipt"]["runtime_hash"],
            "{wf}: runtime hash differs on re-execution"
        );
        assert_eq!(
            r["outputs_cid"], v["receipt"]["outputs_cid"],
            "{wf}: outputs differ on re-execution"
        );
    }
    node.stop();
}

#[test]
fn changed_userland_binary_fails_the_golden_manifest() {
    if !need_root() {
        return;
    }
    let mut node = Node::prepare();
    // After the vendor published the golden manifest, havn-netd on the node changes.
    let netd = node.path("bin/havn-netd");
    let mut bytes = std::fs::read(&netd).unwrap();
    bytes.extend_from_slice(b"\0tampered");
    std::fs::write(&netd, bytes).unwrap();
    node.start();
    node.fetch_quote(NONCE_A, "evidence");
    // The quote itself is genuine...
    let plain = havnctl(&["verify-quote", &node.p("evidence"), "--nonce", NONCE_A]);
    assert!(
        plain.status.success(),
        "genuine quote rejected: {}",
        stderr(&plain)
    );
    // ...but it proves the node runs software the vendor did not publish.
    let golden = havnctl(&[
        "verify-quote",
        &node.p("evidence"),
        "--nonce",
        NONCE_A,
        "--golden",
        &node.p("golden.json"),
    ]);
    assert!(
        !golden.status.success(),
        "golden manifest accepted a changed havn-netd"
    );
    let msg = stderr(&golden);
    assert!(
        msg.contains("havn-netd") || msg.to_lowercase().contains("golden"),
        "{msg}"
    );
    node.stop();
}

#[test]
fn a_crashed_daemon_restarts_the_set_and_the_sealed_node_key_survives() {
    if !need_root() {
        return;
    }
    let mut node = Node::prepare();
    node.start();
    let before = node.health().expect("health")["node"].clone();
    let execd = node.daemon_pid("havn-execd");
    // SAFETY: kill(2) on a process this test's node supervises.
    assert_eq!(unsafe { libc::kill(execd, libc::SIGKILL) }, 0);
    // havn-init restarts the whole set (fresh socketpairs); the binaries are the same
    // files, so PCR 14 does not move and attestd unseals the same key.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let restarted = node.try_daemon_pid("havn-execd").filter(|p| *p != execd);
        if let (Some(_), Some(h)) = (restarted, node.health()) {
            assert_eq!(
                h["node"], before,
                "node identity changed across a supervised restart"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node did not come back; log:\n{}",
            node.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (path, _) = node.submit("audio", 7, "after-restart");
    node.fetch_quote(NONCE_A, "evidence");
    let ok = node.verify(
        "verify-receipt",
        &path.display().to_string(),
        &["--golden", &node.p("golden.json")],
    );
    assert!(
        ok.status.success(),
        "receipt after restart rejected: {}",
        stderr(&ok)
    );
    node.stop();
}

#[test]
fn with_the_key_sealed_the_node_serves_what_it_signed_read_only() {
    if !need_root() {
        return;
    }
    let mut node = Node::prepare();
    node.start();
    let (_, receipt) = node.submit("audio", 7, "before-seal");
    // A measured binary changes on disk, then a daemon crashes: havn-init restarts the
    // set, measures the changed havn-netd, PCR 14 moves and the node key stays sealed.
    let netd = node.path("bin/havn-netd");
    let mut bytes = std::fs::read(&netd).unwrap();
    bytes.extend_from_slice(b"\0changed");
    // A new file renamed over it (the running one is busy), as a package update does.
    let tmp = node.path("bin/havn-netd.new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&tmp, &netd).unwrap();
    let execd = node.daemon_pid("havn-execd");
    // SAFETY: kill(2) on a process this test's node supervises.
    assert_eq!(unsafe { libc::kill(execd, libc::SIGKILL) }, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let h = loop {
        if let Some(h) = node.health().filter(|h| h["signing"] == false) {
            break h;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no read-only node came up; log:\n{}",
            node.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(h["status"], "read-only", "{h}");
    // What was signed before is still served, byte for byte.
    let o = node.ctl("orchestrator", &["get", "/receipt/before-seal"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let again: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(again, receipt);
    // A new job is refused with 503 and the reason, not accepted and never run.
    let o = node.ctl(
        "orchestrator",
        &[
            "submit",
            "--workflow",
            "audio",
            "--checksum",
            &workflow_checksum("audio"),
            "--seed",
            "1",
            "--job-id",
            "after-seal",
        ],
    );
    assert!(!o.status.success());
    let msg = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(msg.contains("503") && msg.contains("sealed"), "{msg}");
    // And havn-init is not restarting the set in a loop: netd stays the same process.
    let pid = node.daemon_pid("havn-netd");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(node.daemon_pid("havn-netd"), pid, "log:\n{}", node.log());
    node.stop();
}
