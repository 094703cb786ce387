//! Start-up: descriptor layout, environment, sandbox per daemon, measurement order,
//! CLI.

use super::harness::*;
use havn_sandbox::ProcStatus;
use std::time::Duration;

#[test]
fn each_daemon_gets_exactly_its_fds_env_and_sandbox() {
    if !root() {
        return;
    }
    let mut node = Node::new("layout");
    node.start(&[
        ("FOO_SECRET", "leak-me"),
        ("TSS2_LOG", "all+none"),
        ("LD_LIBRARY_PATH", "/opt/cuda/lib64"),
    ]);
    let ev = node.wait_sets(1);
    let report = |role: &str| node.report(role, pids(&ev, role)[0]);
    let execd_uid = nix::unistd::User::from_name("havn-execd")
        .unwrap()
        .expect("the havn-execd user (scripts/setup creates it)")
        .uid
        .as_raw();

    let a = report("attestd");
    assert_eq!(field(&a, "fds:"), "0 1 2 3 4 5 6", "{a}");
    assert_eq!(
        field(&a, "fd6:"),
        node.dir.join("faketpm").display().to_string()
    );
    assert_eq!(field(&a, "env:"), "RUST_LOG TSS2_LOG");
    let e = report("execd");
    assert_eq!(field(&e, "fds:"), "0 1 2 3 4 5 6 7", "{e}");
    assert_eq!(field(&e, "env:"), "LD_LIBRARY_PATH RUST_LOG");
    let n = report("netd");
    assert_eq!(field(&n, "fds:"), "0 1 2 3 4 5 6 7 8", "{n}");
    assert_eq!(field(&n, "env:"), "RUST_LOG");
    // Each daemon carries its own name (init execs it through /proc/self/fd/N).
    for (role, text) in [("attestd", &a), ("execd", &e), ("netd", &n)] {
        assert_eq!(field(text, "Name:"), format!("havn-{role}"), "{role}");
    }

    for (role, text) in [("attestd", &a), ("execd", &e), ("netd", &n)] {
        let st = ProcStatus::parse(text).unwrap();
        assert!(st.no_capabilities(), "{role}: {text}");
        assert_eq!(st.no_new_privs, 1, "{role}");
        assert_eq!(st.seccomp, 2, "{role}: its policy is installed");
        let uid = match role {
            "netd" => 65534,
            "execd" => execd_uid,
            _ => 0,
        };
        assert_eq!(st.uid, [uid; 4], "{role}");
    }
    // Each daemon owns its state directory: attestd's is root's, execd's its own
    // user's (so execd cannot open attestd's), netd's nobody's.
    for (role, uid) in [("attestd", 0), ("execd", execd_uid), ("netd", 65534)] {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(node.state.join(role)).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o777), (uid, 0o700), "{role}");
    }
    // The channels work end to end: nobody failed a handshake.
    assert!(
        !ev.iter().any(|l| l.contains("handshake-failed")),
        "{ev:#?}"
    );
    assert!(node.terminate().success());
}

#[test]
fn measurements_arrive_in_order_with_digests_before_execd_and_netd_start() {
    if !root() {
        return;
    }
    let mut node = Node::new("measure");
    node.start(&[]);
    let ev = node.wait_sets(1);
    let measures: Vec<&String> = ev
        .iter()
        .filter(|l| role_event(l, "attestd", "measure"))
        .collect();
    assert_eq!(measures.len(), 3, "{ev:#?}");
    for (line, role) in measures.iter().zip(ROLES) {
        let want = format!("measure havn-{role} {}", sha256_hex(&node.binary(role)));
        assert!(line.ends_with(&want), "{line} vs {want}");
    }
    let last_measure = pos(&ev, |l| role_event(l, "attestd", "measure havn-netd"));
    assert!(pos(&ev, |l| role_event(l, "attestd", "start")) < last_measure);
    let status = pos(&ev, |l| role_event(l, "attestd", "status"));
    assert!(
        last_measure < status,
        "Status ends attestd's boot phase after the measurements"
    );
    assert!(status < pos(&ev, |l| role_event(l, "execd", "start")));
    assert!(last_measure < pos(&ev, |l| role_event(l, "netd", "start")));
    // The three binaries are distinct files with distinct digests.
    let digests: std::collections::HashSet<_> =
        ROLES.iter().map(|r| sha256_hex(&node.binary(r))).collect();
    assert_eq!(digests.len(), 3);
    assert!(node.terminate().success());
}

#[test]
fn check_prints_the_plan_and_help_explains() {
    let node = Node::new("check");
    let out = node.init_cmd().arg("--check").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for role in ROLES {
        assert!(text.contains(&sha256_hex(&node.binary(role))), "{text}");
    }
    assert!(
        text.contains("3=netd-execd (client), 4=netd-attestd (client)"),
        "{text}"
    );
    assert!(text.contains("6=TPM device"), "{text}");
    assert!(
        text.contains("paths: every daemon reaches what it uses"),
        "{text}"
    );
    if root() {
        // A model store that execd's own user cannot search (it reaches the store through
        // a descriptor, so only the store's own mode matters): named, as the user execd
        // runs as, and --check fails. A private directory above it does not matter.
        let private = node.dir.join("private");
        let models = private.join("models");
        std::fs::create_dir_all(&models).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&models, Some(4242), Some(4242)).unwrap();
        std::fs::set_permissions(&models, std::fs::Permissions::from_mode(0o700)).unwrap();
        let cfg = std::fs::read_to_string(&node.config).unwrap();
        std::fs::write(
            &node.config,
            cfg.replace("[execd]\n", &format!("[execd]\nmodel_store = {models:?}\n")),
        )
        .unwrap();
        let out = node.init_cmd().arg("--check").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(77), "{out:?}");
        let line = text
            .lines()
            .find(|l| l.starts_with("UNREACHABLE"))
            .unwrap_or_default();
        assert!(
            line.contains("havn-execd (uid ")
                && line.contains("execd.model_store")
                && line.contains(&format!("{} is mode 0700", models.display())),
            "{text}"
        );
        std::fs::write(&node.config, cfg).unwrap();
    }
    // swtpm over TCP: attestd keeps the network namespace.
    let cfg = std::fs::read_to_string(&node.config).unwrap();
    let tcti = cfg.lines().find(|l| l.starts_with("tcti")).unwrap();
    std::fs::write(
        &node.config,
        cfg.replace(tcti, "tcti = \"swtpm:host=127.0.0.1,port=2321\""),
    )
    .unwrap();
    let out = node.init_cmd().arg("--check").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let attestd = text.split("havn-execd:").next().unwrap();
    assert!(
        !attestd.contains("NEWNET") && !attestd.contains("TPM device"),
        "{text}"
    );

    let help = std::process::Command::new(env!("CARGO_BIN_EXE_havn-init"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "--config",
        "--check",
        "--backoff-initial-ms",
        "SIGTERM",
        "bin_dir",
    ] {
        assert!(
            help.contains(needle),
            "{needle} missing from --help:\n{help}"
        );
    }
}

#[test]
fn a_missing_daemon_binary_is_named_and_fails_fast() {
    let node = Node::new("missing");
    std::fs::remove_file(node.binary("netd")).unwrap();
    let out = node.init_cmd().output().unwrap();
    assert_eq!(out.status.code(), Some(66), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("havn-netd binary"));
}

#[test]
fn self_audit_hashes_each_running_daemon_through_proc_exe() {
    if !root() {
        return;
    }
    let mut node = Node::new("audit");
    let text = std::fs::read_to_string(&node.config).unwrap();
    std::fs::write(
        &node.config,
        text.replacen("[node]\n", "[node]\naudit_interval_ms = 200\n", 1),
    )
    .unwrap();
    node.start(&[]);
    // Two rounds: the running executables (the measured open files init exec'd) hash
    // to what was measured at start.
    let ev = node.wait_events("two self-audits", |ev| {
        count(ev, |l| role_event(l, "attestd", "audit havn-netd")) >= 2
    });
    for role in ROLES {
        let want = format!("audit havn-{role} {}", sha256_hex(&node.binary(role)));
        let got: Vec<&String> = ev
            .iter()
            .filter(|l| role_event(l, "attestd", &format!("audit havn-{role} ")))
            .collect();
        assert!(got.len() >= 2, "{ev:#?}");
        for line in got {
            assert!(line.ends_with(&want), "{line} vs {want}");
        }
    }
    // The first audit comes only after the set is up.
    let first = pos(&ev, |l| role_event(l, "attestd", "audit"));
    assert!(pos(&ev, |l| role_event(l, "netd", "start")) < first);
    assert!(node.terminate().success());
}

#[test]
fn a_daemon_that_refuses_its_config_stops_init_instead_of_a_restart_loop() {
    if !root() {
        return;
    }
    let mut node = Node::new("badconfig");
    std::fs::write(node.state.join("netd.badconfig"), b"").unwrap();
    node.start(&[]);
    let st = node.wait_exit(Duration::from_secs(15));
    assert_eq!(st.code(), Some(78), "{}", node.log_text());
    let ev = node.events();
    assert_eq!(
        count(&ev, |l| role_event(l, "netd", "start")),
        1,
        "netd must not be restarted in a loop: {ev:#?}"
    );
    let log = node.log_text();
    assert!(
        log.contains("havn-netd stopped on an error that restarting cannot fix")
            && log.contains("invalid config (test trigger)"),
        "init must stop with the daemon's message:\n{log}"
    );
}

#[test]
fn a_missing_tls_file_is_named_and_init_stops() {
    // (The private key is not among them: attestd keeps it sealed.)
    if !root() {
        return;
    }
    let mut node = Node::new("notls");
    std::fs::remove_file(node.dir.join("ca.pem")).unwrap();
    node.start(&[]);
    let st = node.wait_exit(Duration::from_secs(15));
    assert_eq!(st.code(), Some(66), "{}", node.log_text());
    let log = node.log_text();
    assert!(
        log.contains("netd.client_ca") && log.contains("ca.pem"),
        "{log}"
    );
}
