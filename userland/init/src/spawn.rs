//! Starting and stopping the set: socketpairs, descriptor layout, measurement,
//! fork+exec in the sandbox profile, ordered stop.

use crate::given_fds::GivenFds;
use crate::plan::{hash_reader, Plan};
use crate::InitError;
use havn_config::fds;
use havn_ipc::{Client, PeerPolicy};
use havn_proto::ipc::{InitAttestd, InitRequest, InitResponse};
use havn_proto::{AuditEntry, Hash32, MAX_AUDIT_ENTRIES};
use havn_sandbox::{DaemonKind, Profile};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long init waits for attestd's answer to one request.
const ATTESTD_TIMEOUT: Duration = Duration::from_secs(5);

/// A started daemon.
#[derive(Debug, Clone, Copy)]
pub struct Running {
    /// Which.
    pub kind: DaemonKind,
    /// Its pid (our child, not yet reaped).
    pub pid: Pid,
}

/// The running set.
#[derive(Debug)]
pub struct Set {
    children: Vec<Running>,
    attestd: Option<Client<InitAttestd>>,
    /// When the set was started.
    pub started: Instant,
}

impl Set {
    /// Running daemons, in start order.
    pub fn running(&self) -> &[Running] {
        &self.children
    }

    /// Forgets a reaped child; returns which daemon it was.
    pub fn forget(&mut self, pid: Pid) -> Option<DaemonKind> {
        let i = self.children.iter().position(|r| r.pid == pid)?;
        Some(self.children.remove(i).kind)
    }

    fn take(&mut self, kind: DaemonKind) -> Option<Running> {
        let i = self.children.iter().position(|r| r.kind == kind)?;
        Some(self.children.remove(i))
    }
}

/// Starts attestd, measures all three binaries through it, then starts execd and
/// netd. On any failure, whatever was started is stopped again.
pub fn start_set(plan: &Plan) -> Result<Set, InitError> {
    let mut set = Set {
        children: Vec::new(),
        attestd: None,
        started: Instant::now(),
    };
    match start_into(plan, &mut set) {
        Ok(()) => Ok(set),
        Err(e) => {
            stop_set(&mut set, Duration::from_secs(1));
            Err(e)
        }
    }
}

fn pair() -> Result<(OwnedFd, OwnedFd), InitError> {
    havn_ipc::socketpair().map_err(|source| InitError::Sys {
        what: "socketpair",
        source,
    })
}

fn start_into(plan: &Plan, set: &mut Set) -> Result<(), InitError> {
    plan.prepare_state_dirs()?;
    // Read once per start: the views execd and netd get are made from it.
    let config_text = crate::given_fds::read_config(plan)?;
    // Open each binary once, hash that descriptor, and exec the same open file
    // through /proc/self/fd: replacing the file after it was measured does not
    // change what runs (writing into the same inode still could: see the crate docs).
    let mut bins: Vec<(std::fs::File, Hash32)> = Vec::with_capacity(3);
    for d in &plan.daemons {
        let opened =
            std::fs::File::open(&d.binary).and_then(|mut f| hash_reader(&mut f).map(|h| (f, h)));
        bins.push(opened.map_err(|source| InitError::Binary {
            daemon: d.kind.binary(),
            path: d.binary.clone(),
            source,
        })?);
    }
    let digests: Vec<Hash32> = bins.iter().map(|(_, h)| *h).collect();
    let exe = |kind: DaemonKind| -> Option<&std::fs::File> {
        let i = plan.daemons.iter().position(|d| d.kind == kind)?;
        bins.get(i).map(|(f, _)| f)
    };
    // One socketpair per channel: (requester end, responder end).
    let (ia_init, ia_attestd) = pair()?;
    let (ea_execd, ea_attestd) = pair()?;
    let (ne_netd, ne_execd) = pair()?;
    let (na_netd, na_attestd) = pair()?;
    let tpm = match &plan.tpm_device {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|source| InitError::Tpm {
                    path: path.clone(),
                    source,
                })?,
        ),
        None => None,
    };

    // attestd.
    let mut profile = plan
        .profile(DaemonKind::Attestd)?
        .fd(ia_attestd.as_fd(), fds::ATTESTD_INIT)
        .fd(ea_attestd.as_fd(), fds::ATTESTD_EXECD)
        .fd(na_attestd.as_fd(), fds::ATTESTD_NETD);
    if let Some(t) = &tpm {
        profile = profile.fd(t.as_fd(), fds::ATTESTD_TPM);
    }
    let attestd_uid = profile
        .ids()
        .map_or_else(|| nix::unistd::geteuid().as_raw(), |(u, _)| u);
    let pid = spawn_one(
        plan,
        DaemonKind::Attestd,
        exe(DaemonKind::Attestd),
        profile,
        &mut set.children,
    )?;
    // Its ends (and the TPM: a resource manager flushes a client's objects when
    // its last descriptor closes) now live in attestd only.
    drop((ia_attestd, ea_attestd, na_attestd, tpm));

    // Measure attestd, execd, netd, before exec'ing execd and netd.
    let timeout = TimeVal::milliseconds(ATTESTD_TIMEOUT.as_millis() as i64);
    setsockopt(&ia_init, sockopt::ReceiveTimeout, &timeout).map_err(|source| InitError::Sys {
        what: "SO_RCVTIMEO",
        source,
    })?;
    let policy = PeerPolicy {
        pid: Some(pid.as_raw()),
        uid: Some(attestd_uid),
        gid: None,
    };
    let mut client = Client::<InitAttestd>::connect(ia_init, policy)
        .map_err(|e| InitError::Attestd(format!("handshake: {e}")))?;
    for (d, digest) in plan.daemons.iter().zip(&digests) {
        let req = InitRequest::Measure {
            name: havn_proto::bounded(d.kind.binary()),
            digest: *digest,
        };
        match client.call(&req) {
            Ok(InitResponse::Measured { pcr, index }) => tracing::info!(
                daemon = d.kind.binary(),
                sha256 = %digest.to_hex(),
                pcr,
                index,
                "measured"
            ),
            Ok(other) => {
                return Err(InitError::Attestd(format!(
                    "measuring {}: unexpected answer {other:?}",
                    d.kind.binary()
                )))
            }
            Err(e) => {
                return Err(InitError::Attestd(format!(
                    "measuring {}: {e}",
                    d.kind.binary()
                )))
            }
        }
    }
    // `Status` ends attestd's boot phase: only then does it accept execd and netd.
    match client.call(&InitRequest::Status) {
        Ok(InitResponse::Status {
            node,
            gate_open,
            events,
        }) => tracing::info!(
            node = %node.0.to_hex(),
            gate_open,
            events,
            "attestd booted"
        ),
        // The node key stays sealed (a measured binary changed, or the TPM refused):
        // nothing can be signed, but the set still starts, so netd serves what was
        // already signed, read-only. Restarting would not unseal it.
        Ok(InitResponse::Error(havn_proto::ipc::RemoteError::GateClosed)) => tracing::error!(
            "attestd booted with the node key sealed (gate closed): starting execd and netd \
             read-only; a reboot into the measured software unseals it"
        ),
        Ok(other) => {
            return Err(InitError::Attestd(format!(
                "status: unexpected answer {other:?}"
            )))
        }
        Err(e) => return Err(InitError::Attestd(format!("status: {e}"))),
    }
    set.attestd = Some(client);

    // execd (its own user: its config view, state and model store come as
    // descriptors), then netd.
    let given = GivenFds::execd(plan, &config_text)?;
    let mut profile = plan
        .profile(DaemonKind::Execd)?
        .fd(ea_execd.as_fd(), fds::EXECD_ATTESTD)
        .fd(ne_execd.as_fd(), fds::EXECD_NETD);
    for (fd, at) in &given.fds {
        profile = profile.fd(fd.as_fd(), *at);
    }
    spawn_one(
        plan,
        DaemonKind::Execd,
        exe(DaemonKind::Execd),
        profile,
        &mut set.children,
    )?;
    drop((ea_execd, ne_execd, given));
    // netd reads nothing by path: its config view, TLS files and state directory
    // come as descriptors (see crate::given_fds).
    let given = GivenFds::netd(plan, &config_text)?;
    let mut profile = plan
        .profile(DaemonKind::Netd)?
        .fd(ne_netd.as_fd(), fds::NETD_EXECD)
        .fd(na_netd.as_fd(), fds::NETD_ATTESTD);
    for (fd, at) in &given.fds {
        profile = profile.fd(fd.as_fd(), *at);
    }
    spawn_one(
        plan,
        DaemonKind::Netd,
        exe(DaemonKind::Netd),
        profile,
        &mut set.children,
    )?;
    drop((ne_netd, na_netd, given));
    Ok(())
}

fn spawn_one(
    plan: &Plan,
    kind: DaemonKind,
    measured: Option<&std::fs::File>,
    profile: Profile,
    children: &mut Vec<Running>,
) -> Result<Pid, InitError> {
    let d = plan
        .daemons
        .iter()
        .find(|d| d.kind == kind)
        .ok_or_else(|| InitError::Refused(format!("no plan for {kind}")))?;
    let mut profile = profile;
    for (k, v) in d.env() {
        profile = profile.env(k, v);
    }
    // The measured open file (close-on-exec, above the reserved range, so it
    // survives until execve resolves the path), or the path without /proc.
    let path = match measured {
        Some(f) if std::path::Path::new("/proc/self/fd").is_dir() => {
            std::path::PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()))
        }
        _ => d.binary.clone(),
    };
    let config = match kind {
        DaemonKind::Netd => fds::path(fds::NETD_CONFIG),
        DaemonKind::Execd => fds::path(fds::EXECD_CONFIG),
        DaemonKind::Attestd => plan.config.clone(),
    };
    let mut cmd = Command::new(path);
    cmd.arg0(kind.binary())
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null());
    profile
        .install(&mut cmd)
        .map_err(|source| InitError::Sandbox {
            daemon: kind.binary(),
            source,
        })?;
    let child = cmd.spawn().map_err(|source| InitError::Spawn {
        daemon: kind.binary(),
        source,
    })?;
    // The supervisor reaps with waitpid(); std's Child does not wait on drop.
    let pid = Pid::from_raw(child.id() as i32);
    tracing::info!(daemon = kind.binary(), pid = pid.as_raw(), binary = %d.binary.display(), "started");
    children.push(Running { kind, pid });
    Ok(pid)
}

/// attestd's verdict on one self-audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditVerdict {
    /// Every running daemon hashed to its boot measurement.
    pub matched: bool,
    /// Whether attestd's gate is open after it.
    pub gate_open: bool,
}

/// The sha256 of the executable a process runs, read through `/proc/<pid>/exe` (init
/// is root with capabilities; the sandboxed attestd could not open it).
pub fn running_digest(pid: Pid) -> std::io::Result<Hash32> {
    let mut f = std::fs::File::open(format!("/proc/{}/exe", pid.as_raw()))?;
    hash_reader(&mut f)
}

/// Self-audit: hashes each running daemon's executable and has attestd compare the
/// digests with this boot's measurements. A daemon whose executable cannot be read is
/// left out (attestd then refuses the audit: fail closed). An `Err` means the channel
/// to attestd failed (no answer within the timeout, or gone): the caller restarts the
/// set, since a late answer would desynchronise the channel.
pub fn audit(set: &mut Set) -> Result<AuditVerdict, InitError> {
    let mut entries: heapless::Vec<AuditEntry, MAX_AUDIT_ENTRIES> = heapless::Vec::new();
    for r in &set.children {
        match running_digest(r.pid) {
            Ok(digest) => {
                let entry = AuditEntry {
                    name: havn_proto::bounded(r.kind.binary()),
                    pid: u32::try_from(r.pid.as_raw()).unwrap_or(0),
                    digest,
                };
                if entries.push(entry).is_err() {
                    tracing::error!("self-audit: more daemons than an audit carries");
                }
            }
            Err(e) => {
                tracing::error!(daemon = r.kind.binary(), pid = r.pid.as_raw(), error = %e,
                    "self-audit: cannot hash the running executable")
            }
        }
    }
    let client = set
        .attestd
        .as_mut()
        .ok_or_else(|| InitError::Attestd("self-audit: no channel to attestd".into()))?;
    match client.call(&InitRequest::Audit {
        entries: Box::new(entries),
    }) {
        Ok(InitResponse::Audited { matched, gate_open }) => Ok(AuditVerdict { matched, gate_open }),
        Ok(InitResponse::Error(e)) => {
            tracing::error!(error = %e, "self-audit refused by attestd");
            Ok(AuditVerdict {
                matched: false,
                gate_open: false,
            })
        }
        Ok(other) => {
            set.attestd = None;
            Err(InitError::Attestd(format!(
                "self-audit: unexpected answer {other:?}"
            )))
        }
        Err(e) => {
            set.attestd = None;
            Err(InitError::Attestd(format!("self-audit: {e}")))
        }
    }
}

/// Stops the set in shutdown order (netd, execd, attestd), reaping each.
pub fn stop_set(set: &mut Set, timeout: Duration) {
    for kind in [DaemonKind::Netd, DaemonKind::Execd, DaemonKind::Attestd] {
        if kind == DaemonKind::Attestd {
            if let Some(mut c) = set.attestd.take() {
                if set.children.iter().any(|r| r.kind == kind) {
                    match c.call(&InitRequest::Shutdown) {
                        Ok(r) => tracing::debug!(answer = ?r, "attestd shutdown requested"),
                        Err(e) => tracing::debug!(error = %e, "attestd shutdown request"),
                    }
                }
            }
        }
        if let Some(r) = set.take(kind) {
            terminate(r, timeout);
        }
    }
}

/// SIGTERM, wait up to `timeout`, SIGKILL; always reaps.
fn terminate(r: Running, timeout: Duration) {
    let name = r.kind.binary();
    tracing::info!(daemon = name, pid = r.pid.as_raw(), "stopping");
    let _ = kill(r.pid, Signal::SIGTERM);
    let deadline = Instant::now() + timeout;
    loop {
        match waitpid(r.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(st) => {
                tracing::info!(daemon = name, pid = r.pid.as_raw(), status = ?st, "stopped");
                return;
            }
            Err(_) => return, // already reaped
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    tracing::warn!(
        daemon = name,
        pid = r.pid.as_raw(),
        "did not stop in time: SIGKILL"
    );
    let _ = kill(r.pid, Signal::SIGKILL);
    let st = waitpid(r.pid, None);
    tracing::info!(daemon = name, pid = r.pid.as_raw(), status = ?st, "killed");
}
