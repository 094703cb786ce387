//! A tiny peer process for havn-ipc's two-process tests: serves the netd→execd
//! channel on fd 3 (or handshakes wrongly on purpose).
//!
//! Usage: `havn-ipc-testpeer serve|die-after-one|wrong-channel`
use havn_ipc::{PeerPolicy, Server};
use havn_proto::ipc::{CapabilityReport, NetdExecRequest, NetdExecResponse, NetdExecd};
use havn_proto::ComputeClass;
use std::os::fd::{FromRawFd, OwnedFd};

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    // SAFETY: the parent placed our end of the socketpair at fd 3 and nothing else
    // in this process owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(3) };
    if mode == "wrong-channel" {
        let _ = havn_ipc::Client::<havn_proto::ipc::NetdAttestd>::connect(fd, PeerPolicy::any());
        return;
    }
    let mut server = match Server::<NetdExecd>::accept(fd, PeerPolicy::any()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("testpeer: handshake failed: {e}");
            std::process::exit(2);
        }
    };
    loop {
        let req = match server.recv() {
            Ok(r) => r,
            Err(e) if e.is_peer_restart() => return,
            Err(e) => {
                eprintln!("testpeer: {e}");
                std::process::exit(3);
            }
        };
        let resp = match req.msg {
            NetdExecRequest::Capabilities => NetdExecResponse::Capabilities(CapabilityReport {
                compute_class: ComputeClass::S,
                cpu_cores: u16::try_from(std::process::id() % 1000).unwrap_or(0),
                ram_mib: req.creds.uid,
                gpu_model: None,
                vram_mib: 0,
                workflows: heapless::Vec::new(),
            }),
            NetdExecRequest::Run { ticket_id, .. } => NetdExecResponse::Failed {
                ticket_id,
                error: havn_proto::ipc::RemoteError::Internal,
                reason: havn_proto::bounded("test peer runs nothing"),
            },
            NetdExecRequest::Prove { .. }
            | NetdExecRequest::Reexecute { .. }
            | NetdExecRequest::Leaves { .. } => NetdExecResponse::Refused {
                error: havn_proto::ipc::RemoteError::UnknownJob,
                reason: havn_proto::bounded("test peer runs nothing"),
            },
        };
        if server.reply(&resp).is_err() {
            return;
        }
        if mode == "die-after-one" {
            std::process::exit(0);
        }
    }
}
