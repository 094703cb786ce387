//! The deliberately bad binary is killed by SIGSYS on a forbidden call, after running
//! normally up to it.

use super::{malicious, stdout};
use std::os::unix::process::ExitStatusExt;

fn run(policy: &str, call: &str) -> std::process::Output {
    malicious().args([policy, call]).output().unwrap()
}

#[test]
fn forbidden_syscalls_kill_the_process_with_sigsys() {
    let cases = [
        ("netd", "ptrace"),
        ("netd", "mount"),
        ("netd", "packet-socket"),
        ("netd", "execve"),
        ("netd", "unshare"),
        ("attestd", "ptrace"),
        ("attestd", "execve"),
        ("execd", "ptrace"),
        ("execd", "mount"),
        ("execd", "packet-socket"),
        // execd may not signal anything (attestd runs as the same uid).
        ("execd", "kill"),
        ("netd", "kill"),
    ];
    for (policy, call) in cases {
        let out = run(policy, call);
        let text = stdout(&out);
        assert!(
            text.contains("filter installed, still alive"),
            "{policy}/{call}: did not run up to the call: {text:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("survived"), "{policy}/{call}: {text}");
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGSYS),
            "{policy}/{call}: {:?}",
            out.status
        );
    }
}

#[test]
fn an_allowed_run_exits_normally() {
    for policy in ["netd", "execd", "attestd"] {
        let out = run(policy, "ok");
        assert!(out.status.success(), "{policy}: {:?}", out.status);
        assert!(stdout(&out).contains("survived ok"));
    }
}

#[test]
fn a_tokio_server_workload_runs_under_the_netd_policy() {
    // examples/netd_workload.rs, built by `cargo test` next to the test binary.
    let exe = std::env::current_exe().unwrap();
    let examples = exe.parent().unwrap().parent().unwrap().join("examples");
    let bin = examples.join("netd_workload");
    if !bin.exists() {
        eprintln!("skipped: {} not built", bin.display());
        return;
    }
    let dir = tempdir("workload");
    let out = std::process::Command::new(&bin).arg(&dir).output().unwrap();
    assert!(
        out.status.success(),
        "netd workload under the netd policy: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout(&out).trim(), "ok");
    let _ = std::fs::remove_dir_all(dir);
}

pub fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "havn-sandbox-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
