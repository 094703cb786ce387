//! A stand-in daemon for havn-init's tests. Its role comes from argv[0]
//! (`havn-attestd`, `havn-execd`, `havn-netd`: init sets it), it is started exactly
//! like the real one (`--config node.toml`, channels at the documented fds), enters
//! the role's real sandbox (`havn_sandbox::enter`), then:
//! - writes `<state_dir>/<role>.<pid>.report`: its `/proc/self/status`, open fds,
//!   environment variable names, and where fd 6 points;
//! - speaks its channels (attestd serves all three, answering `Measure`; execd and
//!   netd call their peers every 50 ms), appending events to
//!   `<state_dir>/events.log` (`<role> <pid> <event>`): `start`, `measure <name>
//!   <sha256>`, `ready <channel>` (first answer from a peer), `peer-restarted
//!   <channel>`, `shutdown`, `term`, `crash`;
//! - aborts when `<state_dir>/<role>.crash` appears (the crash trigger);
//! - exits with `EXIT_CONFIG` right after `start` when `<state_dir>/<role>.badconfig`
//!   exists (a daemon refusing its configuration).

use havn_config::{fds, NodeConfig};
use havn_ipc::{Client, PeerPolicy, Server};
use havn_proto::ipc::*;
use havn_proto::{bounded, ComputeClass, NodeId, PubKey32};
use havn_sandbox::DaemonKind;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

struct Ctx {
    role: DaemonKind,
    dir: PathBuf,
}

impl Ctx {
    fn event(&self, what: &str) {
        let line = format!("{} {} {what}\n", self.role.name(), std::process::id());
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.join("events.log"))
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

fn take_fd(n: i32) -> OwnedFd {
    // SAFETY: havn-init placed a descriptor at this documented number for us, and
    // nothing else in this process owns it.
    unsafe { OwnedFd::from_raw_fd(n) }
}

fn main() {
    let argv0 = std::env::args().next().unwrap_or_default();
    let Some(role) = DaemonKind::parse(
        Path::new(&argv0)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(""),
    ) else {
        eprintln!("havn-init-testd: unknown role {argv0:?}");
        std::process::exit(2);
    };
    let args: Vec<String> = std::env::args().collect();
    let config = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1))
        .expect("--config");
    let cfg = NodeConfig::load(Path::new(config)).expect("config");
    let fd6 = std::fs::read_link("/proc/self/fd/6").ok();
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe {
        libc::signal(
            libc::SIGTERM,
            on_term as extern "C" fn(libc::c_int) as libc::sighandler_t,
        )
    };
    if let Err(e) = havn_sandbox::enter(role) {
        eprintln!("{role}: refusing to run: {e}");
        std::process::exit(78);
    }
    let ctx = std::sync::Arc::new(Ctx {
        role,
        dir: cfg.node.state_dir.clone(),
    });
    report(&ctx, fd6.as_deref());
    ctx.event("start");
    if ctx.dir.join(format!("{}.badconfig", role.name())).exists() {
        eprintln!("{}: invalid config (test trigger)", role.binary());
        std::process::exit(i32::from(havn_config::EXIT_CONFIG));
    }
    match role {
        DaemonKind::Attestd => attestd(&ctx, cfg.tpm.userland_pcr),
        DaemonKind::Execd => execd(&ctx),
        DaemonKind::Netd => netd(&ctx),
    }
    let crash = ctx.dir.join(format!("{}.crash", role.name()));
    loop {
        if std::fs::remove_file(&crash).is_ok() {
            ctx.event("crash");
            std::process::abort();
        }
        if TERM.load(Ordering::SeqCst) {
            // Linger so the channel threads can record what they see.
            ctx.event("term");
            std::thread::sleep(Duration::from_millis(100));
            std::process::exit(0);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

static TERM: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    TERM.store(true, Ordering::SeqCst);
}

fn report(ctx: &Ctx, fd6: Option<&Path>) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let open: Vec<String> = (0..256)
        // SAFETY: F_GETFD only queries the descriptor table.
        .filter(|fd| unsafe { libc::fcntl(*fd, libc::F_GETFD) } >= 0)
        .map(|fd| fd.to_string())
        .collect();
    let mut env: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    env.sort();
    let text = format!(
        "{status}fds: {}\nenv: {}\nfd6: {}\n",
        open.join(" "),
        env.join(" "),
        fd6.map_or(String::new(), |p| p.display().to_string())
    );
    let path = ctx
        .dir
        .join(format!("{}.{}.report", ctx.role.name(), std::process::id()));
    let _ = std::fs::write(path, text);
}

fn spawn(ctx: &std::sync::Arc<Ctx>, f: impl FnOnce(&Ctx) + Send + 'static) {
    let ctx = ctx.clone();
    std::thread::spawn(move || f(&ctx));
}

/// Like the real attestd: a boot phase in which only init talks (`Measure`, then
/// one `Status` that ends boot); execd and netd are accepted only after it.
fn attestd(ctx: &std::sync::Arc<Ctx>, pcr: u8) {
    let parent = nix::unistd::getppid().as_raw();
    let ctx2 = ctx.clone();
    spawn(ctx, move |ctx| {
        let mut s =
            Server::<InitAttestd>::accept(take_fd(fds::ATTESTD_INIT), PeerPolicy::pid(parent))
                .expect("init handshake");
        s.set_phase(havn_ipc::Phase::new("boot", &[0], &[1]));
        let mut booted = false;
        let mut index = 0u32;
        loop {
            let req = match s.recv() {
                Ok(r) => r.msg,
                Err(e) => {
                    ctx.event(&format!(
                        "peer-restarted init-attestd {}",
                        e.is_peer_restart()
                    ));
                    return;
                }
            };
            let resp = match req {
                InitRequest::Measure { name, digest } => {
                    ctx.event(&format!("measure {name} {}", digest.to_hex()));
                    index += 1;
                    InitResponse::Measured { pcr, index }
                }
                InitRequest::Status => {
                    ctx.event("status");
                    if !std::mem::replace(&mut booted, true) {
                        s.set_phase(havn_ipc::Phase::new("serving", &[1, 2, 3], &[]));
                        attestd_serve_peers(&ctx2);
                    }
                    InitResponse::Status {
                        node: NodeId(PubKey32([0; 32])),
                        gate_open: true,
                        events: index,
                    }
                }
                InitRequest::Audit { entries } => {
                    for e in entries.iter() {
                        ctx.event(&format!("audit {} {}", e.name, e.digest.to_hex()));
                    }
                    InitResponse::Audited {
                        matched: true,
                        gate_open: true,
                    }
                }
                InitRequest::Shutdown => {
                    ctx.event("shutdown");
                    let _ = s.reply(&InitResponse::ShuttingDown);
                    std::process::exit(0);
                }
            };
            if s.reply(&resp).is_err() {
                return;
            }
        }
    });
}

fn attestd_serve_peers(ctx: &std::sync::Arc<Ctx>) {
    spawn(ctx, |ctx| {
        let mut s =
            match Server::<ExecdAttestd>::accept(take_fd(fds::ATTESTD_EXECD), PeerPolicy::any()) {
                Ok(s) => s,
                Err(e) => return ctx.event(&format!("handshake-failed execd-attestd {e}")),
            };
        while let Ok(r) = s.recv() {
            let resp = match r.msg {
                ExecdRequest::Gate { .. } => ExecdResponse::GateOpen,
                ExecdRequest::Report(_) | ExecdRequest::Reexecuted(_) => {
                    ExecdResponse::Error(RemoteError::NotPermitted)
                }
                ExecdRequest::Capabilities(_) => ExecdResponse::Ack,
                ExecdRequest::PayloadKey => ExecdResponse::Error(RemoteError::NotYetAvailable),
            };
            if s.reply(&resp).is_err() {
                break;
            }
        }
        ctx.event("peer-restarted execd-attestd");
    });
    spawn(ctx, |ctx| {
        let mut s =
            match Server::<NetdAttestd>::accept(take_fd(fds::ATTESTD_NETD), PeerPolicy::any()) {
                Ok(s) => s,
                Err(e) => return ctx.event(&format!("handshake-failed netd-attestd {e}")),
            };
        while let Ok(_r) = s.recv() {
            let resp = NetdAttestResponse::Identity {
                node: PubKey32([7; 32]),
                chain_account: [0; 20],
                payload_key: PubKey32([0; 32]),
            };
            if s.reply(&resp).is_err() {
                break;
            }
        }
        ctx.event("peer-restarted netd-attestd");
    });
}

fn execd(ctx: &std::sync::Arc<Ctx>) {
    spawn(ctx, |ctx| {
        match Client::<ExecdAttestd>::connect(take_fd(fds::EXECD_ATTESTD), PeerPolicy::any()) {
            Ok(mut c) => call_loop(ctx, "execd-attestd", || {
                c.call(&ExecdRequest::Gate {
                    job_id: bounded("probe"),
                })
                .map(drop)
            }),
            Err(e) => ctx.event(&format!("handshake-failed execd-attestd {e}")),
        }
    });
    spawn(ctx, |ctx| {
        let mut s = match Server::<NetdExecd>::accept(take_fd(fds::EXECD_NETD), PeerPolicy::any()) {
            Ok(s) => s,
            Err(e) => return ctx.event(&format!("handshake-failed netd-execd {e}")),
        };
        while let Ok(r) = s.recv() {
            let resp = match r.msg {
                NetdExecRequest::Capabilities => NetdExecResponse::Capabilities(CapabilityReport {
                    compute_class: ComputeClass::S,
                    cpu_cores: 1,
                    ram_mib: 1,
                    gpu_model: None,
                    vram_mib: 0,
                    workflows: heapless::Vec::new(),
                }),
                NetdExecRequest::Run { ticket_id, .. } => NetdExecResponse::Failed {
                    ticket_id,
                    error: RemoteError::Internal,
                    reason: bounded("test daemon"),
                },
                NetdExecRequest::Prove { .. }
                | NetdExecRequest::Reexecute { .. }
                | NetdExecRequest::Leaves { .. } => NetdExecResponse::Refused {
                    error: RemoteError::UnknownJob,
                    reason: bounded("test daemon"),
                },
            };
            if s.reply(&resp).is_err() {
                break;
            }
        }
        ctx.event("peer-restarted netd-execd");
    });
}

fn netd(ctx: &std::sync::Arc<Ctx>) {
    spawn(ctx, |ctx| {
        match Client::<NetdExecd>::connect(take_fd(fds::NETD_EXECD), PeerPolicy::any()) {
            Ok(mut c) => call_loop(ctx, "netd-execd", || {
                c.call(&NetdExecRequest::Capabilities).map(drop)
            }),
            Err(e) => ctx.event(&format!("handshake-failed netd-execd {e}")),
        }
    });
    spawn(ctx, |ctx| {
        match Client::<NetdAttestd>::connect(take_fd(fds::NETD_ATTESTD), PeerPolicy::any()) {
            Ok(mut c) => call_loop(ctx, "netd-attestd", || {
                c.call(&NetdAttestRequest::Identity).map(drop)
            }),
            Err(e) => ctx.event(&format!("handshake-failed netd-attestd {e}")),
        }
    });
}

/// Calls the peer every 50 ms: `ready <channel>` after the first answer,
/// `peer-restarted <channel>` when it goes away.
fn call_loop(ctx: &Ctx, channel: &str, mut call: impl FnMut() -> Result<(), havn_ipc::IpcError>) {
    let mut first = true;
    loop {
        match call() {
            Ok(()) if std::mem::take(&mut first) => ctx.event(&format!("ready {channel}")),
            Ok(()) => {}
            Err(e) if e.is_peer_restart() => {
                return ctx.event(&format!("peer-restarted {channel}"))
            }
            Err(e) => return ctx.event(&format!("error {channel} {e}")),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
