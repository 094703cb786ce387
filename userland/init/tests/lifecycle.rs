//! Crash → whole-set restart with backoff; SIGTERM → ordered shutdown.

use super::harness::*;

fn gone(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn a_crash_restarts_the_whole_set_with_backoff_and_peers_see_peer_restarted() {
    if !root() {
        return;
    }
    let mut node = Node::new("crash");
    node.start(&[]);
    let first = node.wait_sets(1);
    node.crash("netd");
    let ev = node.wait_sets(2);
    // The survivors saw the restart on their netd channels, did not hang, and were
    // stopped and started again with fresh measurements.
    let after_crash = pos(&ev, |l| role_event(l, "netd", "crash"));
    let seen = |role: &str, what: &str| {
        ev.iter()
            .skip(after_crash)
            .any(|l| role_event(l, role, what))
    };
    assert!(seen("execd", "peer-restarted netd-execd"), "{ev:#?}");
    assert!(seen("attestd", "peer-restarted netd-attestd"), "{ev:#?}");
    assert_eq!(count(&ev, |l| role_event(l, "attestd", "measure")), 6);
    for role in ROLES {
        let p = pids(&ev, role);
        assert_eq!(p.len(), 2, "{role}: {ev:#?}");
        assert_ne!(p[0], p[1]);
        assert!(gone(p[0]), "{role} {} still there", p[0]);
    }
    assert_eq!(pids(&first, "netd")[0], pids(&ev, "netd")[0]);

    // A second crash soon after: the delay doubles.
    node.crash("execd");
    let ev = node.wait_sets(3);
    let after = pos(&ev, |l| role_event(l, "execd", "crash"));
    assert!(
        ev.iter()
            .skip(after)
            .any(|l| role_event(l, "netd", "peer-restarted netd-execd")),
        "{ev:#?}"
    );
    let delays: Vec<u64> = node
        .log()
        .iter()
        .filter(|v| v["message"] == "restarting the whole set")
        .filter_map(|v| v["delay_ms"].as_u64())
        .collect();
    assert_eq!(delays, [50, 100], "{}", node.log_text());
    assert!(node.terminate().success());
}

#[test]
fn sigterm_stops_netd_then_execd_then_attestd_and_reaps_everything() {
    if !root() {
        return;
    }
    let mut node = Node::new("term");
    node.start(&[]);
    let ev = node.wait_sets(1);
    let status = node.terminate();
    assert_eq!(status.code(), Some(0), "{}", node.log_text());
    let ev_after = node.events();
    let term = |role: &str| pos(&ev_after, |l| role_event(l, role, "term"));
    let attestd_shutdown = pos(&ev_after, |l| role_event(l, "attestd", "shutdown"));
    assert!(term("netd") < term("execd"), "{ev_after:#?}");
    assert!(term("execd") < attestd_shutdown, "{ev_after:#?}");
    // The survivors saw their peers go away (EOF → PeerRestarted), they did not hang.
    assert!(
        ev_after
            .iter()
            .any(|l| role_event(l, "execd", "peer-restarted netd-execd")),
        "{ev_after:#?}"
    );
    for role in ROLES {
        for pid in pids(&ev, role) {
            assert!(gone(pid), "{role} pid {pid} not reaped");
        }
    }
    let stops: Vec<String> = node
        .log()
        .iter()
        .filter(|v| v["message"] == "stopping")
        .filter_map(|v| v["daemon"].as_str().map(str::to_string))
        .collect();
    assert_eq!(stops, ["havn-netd", "havn-execd", "havn-attestd"]);
}

#[test]
fn as_pid_1_in_a_pid_namespace_it_supervises_then_powers_off() {
    if !root() || !std::path::Path::new("/usr/bin/unshare").exists() {
        return;
    }
    let mut node = Node::new("pid1");
    node.start_wrapped(
        &[
            "/usr/bin/unshare",
            "--pid",
            "--fork",
            "--mount",
            "--propagation",
            "private",
        ],
        &[],
    );
    let ev = node.wait_sets(1);
    // The daemons see init's namespace: init is pid 1, they are small pids.
    assert!(pids(&ev, "attestd")[0] < 100, "{ev:#?}");
    let wrapper = node.init.as_ref().unwrap().id();
    let children =
        std::fs::read_to_string(format!("/proc/{wrapper}/task/{wrapper}/children")).unwrap();
    let init_pid: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{init_pid}/status")).unwrap();
    assert!(
        field(&status, "NSpid:").ends_with("\t1") || field(&status, "NSpid:").ends_with(" 1"),
        "{status}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init_pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    // reboot(RB_POWER_OFF) in a PID namespace ends the namespace's init.
    let mut child = node.init.take().unwrap();
    let t = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "did not exit"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let log = node.log_text();
    assert!(log.contains("shutdown complete"), "{log}");
    assert!(log.contains("powering off"), "{log}");
    let ev = node.events();
    assert!(
        ev.iter().any(|l| role_event(l, "attestd", "shutdown")),
        "{ev:#?}"
    );
}
