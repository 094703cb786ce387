//! The compiled-in policies: present, non-empty, default-deny.

use havn_sandbox::{policy_json, program, DaemonKind};

#[test]
fn every_policy_is_compiled_in_and_non_empty() {
    for kind in DaemonKind::ALL {
        let prog = program(kind);
        // Arch check + at least a few dozen allowed syscalls.
        assert!(prog.len() > 50, "{kind}: only {} instructions", prog.len());
        let json: serde_json::Value = serde_json::from_str(policy_json(kind)).unwrap();
        let f = &json[kind.name()];
        assert_eq!(f["mismatch_action"], "kill_process", "{kind}");
        assert_eq!(f["match_action"], "allow", "{kind}");
        let rules = f["filter"].as_array().unwrap();
        assert!(rules.len() > 40, "{kind}: {} rules", rules.len());
        // Never allowed, in any daemon.
        for banned in [
            "execve",
            "execveat",
            "ptrace",
            "mount",
            "umount2",
            "unshare",
            "setns",
            "pivot_root",
            "chroot",
            "setuid",
            "setresuid",
            "bpf",
            "kexec_load",
            "init_module",
            "finit_module",
            "process_vm_readv",
            "process_vm_writev",
            "perf_event_open",
            "keyctl",
            "userfaultfd",
            "reboot",
        ] {
            assert!(
                rules.iter().all(|r| r["syscall"] != banned),
                "{kind} allows {banned}"
            );
        }
    }
}

#[test]
fn netd_sockets_are_limited_by_family_and_ioctl_by_request() {
    let json: serde_json::Value = serde_json::from_str(policy_json(DaemonKind::Netd)).unwrap();
    let rules = json["netd"]["filter"].as_array().unwrap();
    for name in ["socket", "ioctl", "prctl"] {
        let entries: Vec<_> = rules.iter().filter(|r| r["syscall"] == name).collect();
        assert!(!entries.is_empty(), "{name}");
        // seccompiler: one unconditional entry would make the syscall unconditional.
        assert!(
            entries.iter().all(|r| r["args"].is_array()),
            "{name} must always be argument-filtered in netd"
        );
    }
}
