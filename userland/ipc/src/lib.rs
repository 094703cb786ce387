//! Havn IPC transport: one Unix `SOCK_SEQPACKET` socketpair per channel, carrying
//! [`havn_proto::frame`] frames (one frame per record), a [`Hello`] handshake that
//! fails closed on version or schema mismatch, per-message sender credentials
//! (`SCM_CREDENTIALS`, checked against a [`PeerPolicy`]), phase allow-tables, fd
//! passing (`SCM_RIGHTS`) and peer-restart detection.
//!
//! Why per-message credentials and not only `SO_PEERCRED`: for a socketpair,
//! `SO_PEERCRED` reports the process that *created* the pair (havn-init), not the
//! daemon that inherited the other end. With `SO_PASSCRED` the kernel stamps every
//! record with the real sender's pid/uid/gid, which cannot be forged without
//! `CAP_SYS_ADMIN`/`CAP_SETUID`, both of which the sandboxed daemons lack.
//!
//! The blocking API ([`Client`], [`Server`]) is for the privileged, single-threaded
//! daemons; the tokio API ([`AsyncClient`], [`AsyncServer`], feature `tokio`) is for
//! netd.

mod phase;
mod sock;
#[cfg(feature = "tokio")]
mod tokio_api;

pub use phase::Phase;
pub use sock::{peer_cred, socketpair, Creds, PeerPolicy, Received, MAX_FDS};
#[cfg(feature = "tokio")]
pub use tokio_api::{AsyncClient, AsyncServer};

use havn_proto::frame::{self, Hello};
use havn_proto::ipc::{ChannelSpec, Message};
use havn_proto::WireError;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// What can go wrong on a channel. Every error is fatal for the connection.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// A framing or protocol error (including `PeerRestarted`).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The socket failed.
    #[error("ipc socket: {0}")]
    Io(#[from] nix::errno::Errno),
    /// The sender's credentials do not match the channel's policy.
    #[error("peer credentials {got} do not match policy {want}")]
    PeerCredentials {
        /// Policy.
        want: PeerPolicy,
        /// Actual sender.
        got: Creds,
    },
    /// The kernel attached no credentials (SO_PASSCRED not in effect).
    #[error("message arrived without sender credentials")]
    MissingCredentials,
    /// The peer sent file descriptors where none were expected, or too many.
    #[error("unexpected file descriptors from peer ({0})")]
    UnexpectedFds(usize),
}

impl IpcError {
    /// True when the peer went away (closed or restarted).
    pub fn is_peer_restart(&self) -> bool {
        matches!(self, IpcError::Wire(WireError::PeerRestarted))
    }
}

/// Takes ownership of descriptor `fd` that the supervisor placed in this process
/// before exec (see `havn_config::fds`), if it is open. Call once per descriptor,
/// first thing in `main`.
pub fn inherited_fd(fd: std::os::fd::RawFd) -> Option<OwnedFd> {
    // SAFETY: fcntl(F_GETFD) only queries the descriptor table; it is sound for any
    // integer and fails with EBADF when `fd` is not open.
    let open = unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } != -1;
    // SAFETY: `fd` is open (checked above) and was inherited for this purpose alone;
    // the caller takes ownership exactly once, before anything else refers to it.
    open.then(|| unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// A fresh random instance id for this process's hellos.
pub fn instance_id() -> u64 {
    static ID: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *ID.get_or_init(|| {
        let mut b = [0u8; 8];
        // Fall back to pid ^ time if the kernel RNG is unavailable.
        if getrandom::fill(&mut b).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            return t ^ u64::from(std::process::id());
        }
        u64::from_le_bytes(b)
    })
}

/// One end of a channel, either role.
#[derive(Debug)]
struct Conn {
    fd: OwnedFd,
    buf: Box<[u8]>,
    policy: PeerPolicy,
    peer: Hello,
}

impl Conn {
    fn open(
        fd: OwnedFd,
        channel: havn_proto::ipc::Channel,
        policy: PeerPolicy,
    ) -> Result<Self, IpcError> {
        sock::enable_passcred(fd.as_fd())?;
        let mut buf = vec![0u8; sock::RECV_BUF].into_boxed_slice();
        let hello = Hello::new(channel, instance_id());
        sock::send(fd.as_fd(), &frame::encode(&hello)?, &[])?;
        let got = sock::recv(fd.as_fd(), &mut buf, false)?;
        let policy = policy.pinned_to(policy.check(got.creds)?);
        if !got.fds.is_empty() {
            return Err(IpcError::UnexpectedFds(got.fds.len()));
        }
        let peer: Hello = frame::decode(buf.get(..got.len).unwrap_or_default())?;
        peer.check(channel)?;
        Ok(Self {
            fd,
            buf,
            policy,
            peer,
        })
    }

    fn send<M: Message>(&self, msg: &M, fds: &[BorrowedFd<'_>]) -> Result<(), IpcError> {
        sock::send(self.fd.as_fd(), &frame::encode(msg)?, fds)
    }

    fn recv<M: Message>(&mut self, allow_fds: bool) -> Result<Received<M>, IpcError> {
        let got = sock::recv(self.fd.as_fd(), &mut self.buf, allow_fds)?;
        let creds = self.policy.check(got.creds)?;
        let msg = frame::decode(self.buf.get(..got.len).unwrap_or_default())?;
        Ok(Received {
            msg,
            fds: got.fds,
            creds,
        })
    }
}

/// The requesting end of channel `C` (blocking).
#[derive(Debug)]
pub struct Client<C: ChannelSpec> {
    conn: Conn,
    _c: PhantomData<C>,
}

impl<C: ChannelSpec> Client<C> {
    /// Handshakes over `fd`; every message from the peer must satisfy `policy`.
    pub fn connect(fd: OwnedFd, policy: PeerPolicy) -> Result<Self, IpcError> {
        Ok(Self {
            conn: Conn::open(fd, C::CHANNEL, policy)?,
            _c: PhantomData,
        })
    }

    /// The peer's hello (its instance id tells a restart).
    pub fn peer(&self) -> &Hello {
        &self.conn.peer
    }

    /// Sends a request and waits for the response.
    pub fn call(&mut self, req: &C::Request) -> Result<C::Response, IpcError> {
        self.conn.send(req, &[])?;
        let r = self.conn.recv::<C::Response>(false)?;
        Ok(r.msg)
    }

    /// Sends a request with file descriptors attached and waits for the response.
    pub fn call_with_fds(
        &mut self,
        req: &C::Request,
        fds: &[BorrowedFd<'_>],
    ) -> Result<C::Response, IpcError> {
        self.conn.send(req, fds)?;
        Ok(self.conn.recv::<C::Response>(false)?.msg)
    }
}

/// The responding end of channel `C` (blocking), with an optional phase allow-table.
#[derive(Debug)]
pub struct Server<C: ChannelSpec> {
    conn: Conn,
    phase: Option<Phase>,
    accept_fds: bool,
    _c: PhantomData<C>,
}

impl<C: ChannelSpec> Server<C> {
    /// Handshakes over `fd`; every message from the peer must satisfy `policy`.
    pub fn accept(fd: OwnedFd, policy: PeerPolicy) -> Result<Self, IpcError> {
        Ok(Self {
            conn: Conn::open(fd, C::CHANNEL, policy)?,
            phase: None,
            accept_fds: false,
            _c: PhantomData,
        })
    }

    /// Accept file descriptors attached to requests (off by default).
    pub fn accept_fds(mut self, yes: bool) -> Self {
        self.accept_fds = yes;
        self
    }

    /// Sets the phase whose allow-table requests are checked against.
    pub fn set_phase(&mut self, phase: Phase) {
        self.phase = Some(phase);
    }

    /// The current phase.
    pub fn phase(&self) -> Option<&Phase> {
        self.phase.as_ref()
    }

    /// The peer's hello.
    pub fn peer(&self) -> &Hello {
        &self.conn.peer
    }

    /// Waits for the next request. A request outside the phase's allow-table is
    /// `WireError::NotPermitted`: log it and drop the connection.
    pub fn recv(&mut self) -> Result<Received<C::Request>, IpcError> {
        let r = self.conn.recv::<C::Request>(self.accept_fds)?;
        if let Some(p) = self.phase.as_mut() {
            p.admit::<C::Request>(r.msg.tag())?;
        }
        Ok(r)
    }

    /// Answers the request just received.
    pub fn reply(&mut self, resp: &C::Response) -> Result<(), IpcError> {
        self.conn.send(resp, &[])
    }

    /// The raw fd (for poll loops).
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.conn.fd.as_fd()
    }
}
