//! A child started with a profile, as the kernel reports it: identity, capabilities,
//! no_new_privs, seccomp, descriptors, environment, and what it can no longer open.

use super::malicious::tempdir;
use super::{malicious, root, stdout};
use havn_sandbox::{DaemonKind, ProcStatus, Profile};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A root-only 0600 "sealed key" and a root-only 0600 character device standing in
/// for /dev/tpmrm0, in a world-searchable directory.
fn secrets() -> (PathBuf, PathBuf, PathBuf) {
    let dir = tempdir("secrets");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = dir.join("node.sealed");
    std::fs::write(&key, b"sealed").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let tpm = dir.join("tpmrm0");
    let c = std::ffi::CString::new(tpm.to_str().unwrap()).unwrap();
    // SAFETY: mknod with a valid path; makedev is a pure computation.
    let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(10, 224)) };
    assert_eq!(r, 0, "mknod: {}", std::io::Error::last_os_error());
    (dir, key, tpm)
}

fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {text}"))
        .trim()
}

fn run_status(profile: Option<&Profile>, policy: &str, paths: &[&Path]) -> (String, i32) {
    let mut cmd = malicious();
    cmd.arg("status").arg(policy).args(paths);
    if let Some(p) = profile {
        p.install(&mut cmd).unwrap();
    }
    let out = cmd.output().unwrap();
    (stdout(&out), out.status.code().unwrap_or(-1))
}

#[test]
fn netd_profile_drops_everything_and_cannot_open_secrets() {
    if !root() {
        return;
    }
    let (dir, key, tpm) = secrets();
    // A leaky parent: a descriptor without CLOEXEC that must not reach the child.
    let leak = std::fs::File::open("/dev/null").unwrap();
    let leaked = nix::unistd::dup(leak.as_fd()).unwrap();
    let (r, w) = nix::unistd::pipe().unwrap();
    let profile = Profile::for_daemon(DaemonKind::Netd, "nobody")
        .unwrap()
        .env("RUST_LOG", "debug")
        .fd(w.as_fd(), 3)
        .fd(r.as_fd(), 5);
    let (text, code) = run_status(Some(&profile), "netd", &[&key, &tpm]);
    assert_eq!(code, 0, "{text}");
    let st = ProcStatus::parse(&text).unwrap();
    assert_eq!(st.uid, [65534; 4], "{text}");
    assert_eq!(st.gid[0], 65534, "{text}");
    assert!(st.groups.is_empty(), "{text}");
    for (name, v) in [
        ("CapInh", st.cap_inh),
        ("CapPrm", st.cap_prm),
        ("CapEff", st.cap_eff),
        ("CapBnd", st.cap_bnd),
        ("CapAmb", st.cap_amb),
    ] {
        assert_eq!(v, 0, "{name} in {text}");
    }
    assert_eq!(st.no_new_privs, 1);
    assert_eq!(st.seccomp, 2, "seccomp filter mode");
    assert_eq!(
        field(&text, "fds:"),
        "0 1 2 3 5",
        "only stdio + the keep-list"
    );
    assert_eq!(field(&text, "env:"), "RUST_LOG");
    assert_eq!(
        field(&text, &format!("open {}:", key.display())),
        format!("errno {}", libc::EACCES)
    );
    assert_eq!(
        field(&text, &format!("open {}:", tpm.display())),
        format!("errno {}", libc::EACCES)
    );
    drop(leaked);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn execd_profile_runs_as_its_own_user_with_no_capabilities() {
    if !root() {
        return;
    }
    let profile = Profile::for_daemon(DaemonKind::Execd, "nobody").unwrap();
    let (text, code) = run_status(Some(&profile), "execd", &[]);
    assert_eq!(code, 0, "{text}");
    let st = ProcStatus::parse(&text).unwrap();
    assert_eq!(st.uid, [65534; 4]);
    assert!(st.no_capabilities(), "{text}");
    assert_eq!((st.no_new_privs, st.seccomp), (1, 2));
    assert_eq!(field(&text, "fds:"), "0 1 2");
    assert_eq!(field(&text, "env:"), "");
}

#[test]
fn enter_refuses_a_process_that_kept_privileges() {
    if !root() {
        return;
    }
    // Started by a root test harness without a profile: full capabilities.
    let (text, code) = run_status(None, "netd", &[]);
    assert_eq!(code, 4, "{text}");
    assert!(text.contains("enter refused"), "{text}");
    // Capabilities dropped but uid 0 kept: fine for execd, refused for netd.
    let profile = Profile::restrictive().keep_uid();
    let (text, code) = run_status(Some(&profile), "netd", &[]);
    assert_eq!(code, 4, "{text}");
    assert!(text.contains("must not run as root"), "{text}");
}

#[test]
fn namespaces_are_new_except_the_named_exceptions() {
    if !root() {
        return;
    }
    let ns = |pid: &str, n: &str| std::fs::read_link(format!("/proc/{pid}/ns/{n}")).unwrap();
    for (profile, net_shared) in [
        (Profile::restrictive(), false),
        (Profile::restrictive().keep_network(), true),
    ] {
        let mut cmd = std::process::Command::new("/bin/sleep");
        cmd.arg("5");
        profile.install(&mut cmd).unwrap();
        let mut child = cmd.spawn().unwrap();
        let pid = child.id().to_string();
        // The child switches namespaces before exec; wait until it has exec'd.
        for _ in 0..100 {
            if std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p.ends_with("sleep")) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        for n in ["mnt", "ipc", "uts"] {
            assert_ne!(ns("self", n), ns(&pid, n), "{n}");
        }
        assert_eq!(ns("self", "net") == ns(&pid, "net"), net_shared);
        let st = ProcStatus::read_pid(child.id()).unwrap();
        assert_eq!(st.uid[0], 65534);
        assert!(st.no_capabilities());
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn bad_descriptor_maps_are_refused_before_spawn() {
    let null = std::fs::File::open("/dev/null").unwrap();
    let mut cmd = std::process::Command::new("/bin/true");
    assert!(Profile::restrictive()
        .fd(null.as_fd(), 1)
        .install(&mut cmd)
        .is_err());
    assert!(Profile::restrictive()
        .fd(null.as_fd(), 3)
        .fd(null.as_fd(), 3)
        .install(&mut cmd)
        .is_err());
}

#[test]
fn execd_cannot_open_or_write_attestds_state() {
    if !root() {
        return;
    }
    // attestd's state as havn-init lays it out: root-owned, mode 0700.
    let dir = tempdir("attestd-state");
    let attestd = dir.join("attestd");
    std::fs::create_dir_all(&attestd).unwrap();
    std::fs::set_permissions(&attestd, std::fs::Permissions::from_mode(0o700)).unwrap();
    let files = [
        "node_key.sealed.json",
        "signed-receipts.log",
        "netd-tls-key.sealed.json",
    ]
    .map(|f| attestd.join(f));
    for f in &files {
        std::fs::write(f, b"secret").unwrap();
    }
    let user = if nix::unistd::User::from_name("havn-execd")
        .ok()
        .flatten()
        .is_some()
    {
        "havn-execd"
    } else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "scripts/setup creates havn-execd"
        );
        "nobody"
    };
    let profile = Profile::for_daemon(DaemonKind::Execd, user).unwrap();
    let paths: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let (text, code) = run_status(Some(&profile), "execd", &paths);
    assert_eq!(code, 0, "{text}");
    let st = ProcStatus::parse(&text).unwrap();
    assert_ne!(st.uid[0], 0, "execd runs as its own user: {text}");
    for f in &files {
        for op in ["open", "write"] {
            let line = format!("{op} {}: errno {}", f.display(), libc::EACCES);
            assert!(
                text.contains(&line),
                "execd could {op} {}:\n{text}",
                f.display()
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_user_that_cannot_be_looked_up_is_an_error_never_any_uid() {
    assert!(havn_sandbox::user_ids("no-such-user-havn").is_err());
    assert_eq!(havn_sandbox::user_ids("root").unwrap(), (0, 0));
    assert!(Profile::for_daemon(DaemonKind::Execd, "no-such-user-havn").is_err());
}
