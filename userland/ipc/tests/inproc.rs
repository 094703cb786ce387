use havn_ipc::{peer_cred, socketpair, Client, IpcError, PeerPolicy, Phase, Server};
use havn_proto::frame::MAX_FRAME;
use havn_proto::ipc::*;
use havn_proto::WireError;
use std::io::{Read, Write};
use std::os::fd::AsFd;

fn caps() -> NetdExecResponse {
    NetdExecResponse::Capabilities(CapabilityReport {
        compute_class: havn_proto::ComputeClass::S,
        cpu_cores: 2,
        ram_mib: 1,
        gpu_model: None,
        vram_mib: 0,
        workflows: heapless::Vec::new(),
    })
}

#[test]
fn so_peercred_on_a_socketpair_names_its_creator() {
    let (a, _b) = socketpair().unwrap();
    let c = peer_cred(a.as_fd()).unwrap();
    assert_eq!(c.pid, std::process::id() as i32);
}

#[test]
fn phase_allow_table_refuses_out_of_phase_requests() {
    let (a, b) = socketpair().unwrap();
    let t = std::thread::spawn(move || {
        let mut s = Server::<NetdExecd>::accept(b, PeerPolicy::any()).unwrap();
        s.set_phase(Phase::new("pre-gate", &[], &[1]));
        let first = s.recv().unwrap();
        assert_eq!(first.msg, NetdExecRequest::Capabilities);
        assert_eq!(first.creds.pid, std::process::id() as i32);
        s.reply(&caps()).unwrap();
        // Capabilities was once-only; Run is never allowed in this phase.
        let second = s.recv().unwrap_err();
        assert!(
            matches!(
                second,
                IpcError::Wire(WireError::NotPermitted {
                    what: "NetdExecRequest",
                    phase: "pre-gate"
                })
            ),
            "{second:?}"
        );
    });
    let mut c = Client::<NetdExecd>::connect(a, PeerPolicy::any()).unwrap();
    assert_eq!(c.call(&NetdExecRequest::Capabilities).unwrap(), caps());
    // The server drops the channel after refusing: we see the peer go away.
    let e = c.call(&NetdExecRequest::Capabilities).unwrap_err();
    assert!(e.is_peer_restart(), "{e:?}");
    t.join().unwrap();
}

#[test]
fn fds_pass_between_ends() {
    let (a, b) = socketpair().unwrap();
    let (mut rd, wr) = std::io::pipe().unwrap();
    let t = std::thread::spawn(move || {
        let mut s = Server::<NetdExecd>::accept(b, PeerPolicy::any())
            .unwrap()
            .accept_fds(true);
        let got = s.recv().unwrap();
        assert_eq!(got.fds.len(), 1);
        let mut f = std::fs::File::from(got.fds.into_iter().next().unwrap());
        f.write_all(b"via SCM_RIGHTS").unwrap();
        s.reply(&caps()).unwrap();
    });
    let mut c = Client::<NetdExecd>::connect(a, PeerPolicy::any()).unwrap();
    c.call_with_fds(&NetdExecRequest::Capabilities, &[wr.as_fd()])
        .unwrap();
    drop(wr);
    t.join().unwrap();
    let mut s = String::new();
    rd.read_to_string(&mut s).unwrap();
    assert_eq!(s, "via SCM_RIGHTS");
}

#[test]
fn unexpected_fds_are_refused() {
    let (a, b) = socketpair().unwrap();
    let (_rd, wr) = std::io::pipe().unwrap();
    let t = std::thread::spawn(move || {
        let mut s = Server::<NetdExecd>::accept(b, PeerPolicy::any()).unwrap();
        assert!(matches!(s.recv(), Err(IpcError::UnexpectedFds(1))));
    });
    let mut c = Client::<NetdExecd>::connect(a, PeerPolicy::any()).unwrap();
    let _ = c.call_with_fds(&NetdExecRequest::Capabilities, &[wr.as_fd()]);
    t.join().unwrap();
}

#[test]
fn oversized_record_is_frame_too_long() {
    let (a, b) = socketpair().unwrap();
    // Raise the send buffer so the kernel accepts one record larger than MAX_FRAME.
    nix::sys::socket::setsockopt(&a, nix::sys::socket::sockopt::SndBuf, &(4 * MAX_FRAME)).unwrap();
    let t = std::thread::spawn(move || {
        let mut s = Server::<NetdExecd>::accept(b, PeerPolicy::any()).unwrap();
        match s.recv() {
            Err(IpcError::Wire(WireError::FrameTooLong { .. })) => {}
            other => panic!("expected FrameTooLong, got {other:?}"),
        }
    });
    // Handshake by hand, then send a record past the limit.
    let hello = havn_proto::frame::Hello::new(Channel::NetdExecd, 1);
    nix::sys::socket::setsockopt(&a, nix::sys::socket::sockopt::PassCred, &true).unwrap();
    nix::unistd::write(&a, &havn_proto::frame::encode(&hello).unwrap()).unwrap();
    let mut buf = vec![0u8; 1024];
    nix::unistd::read(&a, &mut buf).unwrap();
    let big = vec![0u8; MAX_FRAME + 64];
    nix::unistd::write(&a, &big).unwrap();
    t.join().unwrap();
}

#[test]
fn tokio_client_talks_to_blocking_server() {
    let (a, b) = socketpair().unwrap();
    let t = std::thread::spawn(move || {
        let mut s = Server::<NetdExecd>::accept(b, PeerPolicy::any()).unwrap();
        for _ in 0..10 {
            let r = s.recv().unwrap();
            assert_eq!(r.msg, NetdExecRequest::Capabilities);
            s.reply(&caps()).unwrap();
        }
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut c = havn_ipc::AsyncClient::<NetdExecd>::connect(a, PeerPolicy::any())
            .await
            .unwrap();
        for _ in 0..10 {
            assert_eq!(
                c.call(&NetdExecRequest::Capabilities).await.unwrap(),
                caps()
            );
        }
        // Server thread exits after 10: the next call sees the peer gone.
        t.join().unwrap();
        let e = c.call(&NetdExecRequest::Capabilities).await.unwrap_err();
        assert!(e.is_peer_restart(), "{e:?}");
    });
}
