use havn_ipc::{socketpair, Client, IpcError, PeerPolicy};
use havn_proto::ipc::{NetdExecRequest, NetdExecResponse, NetdExecd};
use havn_proto::WireError;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

/// Starts the test peer with `theirs` as its fd 3.
fn spawn_peer(mode: &str, theirs: OwnedFd) -> Child {
    let raw = theirs.as_raw_fd();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_havn-ipc-testpeer"));
    cmd.arg(mode);
    // SAFETY: only async-signal-safe calls (dup2) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc_dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn test peer");
    drop(theirs);
    child
}

fn libc_dup2(from: i32, to: i32) -> i32 {
    // dup2 clears FD_CLOEXEC on the new descriptor.
    // SAFETY: dup2 on descriptors this process owns; async-signal-safe.
    unsafe { libc::dup2(from, to) }
}

#[test]
fn call_across_processes_checks_sender_credentials() {
    let (ours, theirs) = socketpair().unwrap();
    let mut child = spawn_peer("serve", theirs);
    let pid = child.id() as i32;
    let mut c = Client::<NetdExecd>::connect(
        ours,
        PeerPolicy {
            pid: Some(pid),
            uid: Some(0),
            gid: None,
        },
    )
    .expect("handshake with the child");
    for _ in 0..3 {
        match c.call(&NetdExecRequest::Capabilities).unwrap() {
            NetdExecResponse::Capabilities(r) => {
                // The child reports our uid as it saw it through SCM_CREDENTIALS.
                assert_eq!(r.ram_mib, nix::unistd::getuid().as_raw());
                assert_eq!(u32::from(r.cpu_cores), child.id() % 1000);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(c);
    assert!(child.wait().unwrap().success());
}

#[test]
fn sender_of_wrong_pid_is_refused() {
    let (ours, theirs) = socketpair().unwrap();
    let mut child = spawn_peer("serve", theirs);
    let wrong = child.id() as i32 + 100_000;
    match Client::<NetdExecd>::connect(ours, PeerPolicy::pid(wrong)) {
        Err(IpcError::PeerCredentials { got, .. }) => assert_eq!(got.pid, child.id() as i32),
        other => panic!("expected PeerCredentials, got {other:?}"),
    }
    let _ = child.wait();
}

#[test]
fn peer_restart_is_detected_and_a_new_instance_is_seen() {
    let (ours, theirs) = socketpair().unwrap();
    let mut child = spawn_peer("die-after-one", theirs);
    let mut c = Client::<NetdExecd>::connect(ours, PeerPolicy::pid(child.id() as i32)).unwrap();
    let first_instance = c.peer().instance;
    assert!(matches!(
        c.call(&NetdExecRequest::Capabilities),
        Ok(NetdExecResponse::Capabilities(_))
    ));
    let _ = child.wait();
    // The peer is gone: the next call reports PeerRestarted, it does not hang.
    match c.call(&NetdExecRequest::Capabilities) {
        Err(e) => assert!(e.is_peer_restart(), "expected PeerRestarted, got {e:?}"),
        Ok(r) => panic!("dead peer answered {r:?}"),
    }
    // The supervisor restarts it on a new pair; a new instance id shows the restart.
    let (ours, theirs) = socketpair().unwrap();
    let mut child = spawn_peer("serve", theirs);
    let c2 = Client::<NetdExecd>::connect(ours, PeerPolicy::pid(child.id() as i32)).unwrap();
    assert_ne!(c2.peer().instance, first_instance);
    drop(c2);
    let _ = child.wait();
}

#[test]
fn peer_on_another_channel_fails_closed() {
    let (ours, theirs) = socketpair().unwrap();
    let mut child = spawn_peer("wrong-channel", theirs);
    match Client::<NetdExecd>::connect(ours, PeerPolicy::any()) {
        Err(IpcError::Wire(WireError::SchemaMismatch { .. })) => {}
        other => panic!("expected SchemaMismatch, got {other:?}"),
    }
    let _ = child.wait();
}

#[test]
fn after_the_hello_only_that_process_may_speak_on_the_channel() {
    let (ours, theirs) = socketpair().unwrap();
    // A second handle on the peer's end, kept by this process (another process that
    // got hold of the socket).
    let stolen = theirs.try_clone().unwrap();
    let mut child = spawn_peer("serve", theirs);
    // No pid expected up front: the hello pins it.
    let mut c = Client::<NetdExecd>::connect(ours, PeerPolicy::any()).unwrap();
    assert!(matches!(
        c.call(&NetdExecRequest::Capabilities),
        Ok(NetdExecResponse::Capabilities(_))
    ));
    // A forged answer from this process arrives before the child's real one.
    let forged = havn_proto::frame::encode(&NetdExecResponse::Failed {
        ticket_id: 1,
        error: havn_proto::ipc::RemoteError::Internal,
        reason: havn_proto::bounded("forged"),
    })
    .unwrap();
    nix::unistd::write(&stolen, &forged).unwrap();
    match c.call(&NetdExecRequest::Capabilities) {
        Err(IpcError::PeerCredentials { want, got }) => {
            assert_eq!(want.pid, Some(child.id() as i32));
            assert_eq!(got.pid, std::process::id() as i32);
        }
        other => panic!("a second process was heard on a pinned channel: {other:?}"),
    }
    drop(c);
    let _ = child.wait();
}
