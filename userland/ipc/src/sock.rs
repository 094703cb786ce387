//! Raw SOCK_SEQPACKET plumbing: socketpair, sendmsg/recvmsg with SCM_RIGHTS and
//! SCM_CREDENTIALS, truncation detection.

use crate::IpcError;
use havn_proto::frame::{HEADER_LEN, MAX_FRAME};
use havn_proto::WireError;
use nix::errno::Errno;
use nix::sys::socket::{
    self, sockopt, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag,
    SockType, UnixCredentials,
};
use std::fmt;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Most descriptors one message may carry.
pub const MAX_FDS: usize = 4;
/// Receive buffer: one byte more than the largest frame, so an oversized record is
/// seen as such (MSG_TRUNC) rather than silently cut.
pub(crate) const RECV_BUF: usize = HEADER_LEN + MAX_FRAME + 1;

/// A connected SOCK_SEQPACKET pair, close-on-exec (init clears the flag on the end
/// it hands to a child).
pub fn socketpair() -> Result<(OwnedFd, OwnedFd), Errno> {
    socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}

/// Sender credentials as the kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Creds {
    /// Process id.
    pub pid: i32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl fmt::Display for Creds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid={} uid={} gid={}", self.pid, self.uid, self.gid)
    }
}

impl From<UnixCredentials> for Creds {
    fn from(c: UnixCredentials) -> Self {
        Self {
            pid: c.pid(),
            uid: c.uid(),
            gid: c.gid(),
        }
    }
}

/// `SO_PEERCRED`: for a socketpair, the process that created it.
pub fn peer_cred(fd: BorrowedFd<'_>) -> Result<Creds, Errno> {
    Ok(socket::getsockopt(&fd, sockopt::PeerCredentials)?.into())
}

/// Who may send on a channel. `None` fields are not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerPolicy {
    /// Required pid.
    pub pid: Option<i32>,
    /// Required uid.
    pub uid: Option<u32>,
    /// Required gid.
    pub gid: Option<u32>,
}

impl fmt::Display for PeerPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |o: Option<String>| o.unwrap_or_else(|| "*".into());
        write!(
            f,
            "pid={} uid={} gid={}",
            show(self.pid.map(|v| v.to_string())),
            show(self.uid.map(|v| v.to_string())),
            show(self.gid.map(|v| v.to_string()))
        )
    }
}

impl PeerPolicy {
    /// This policy with every field it leaves open fixed to `hello`'s sender: after
    /// the handshake a channel takes messages only from the process (and uid, gid)
    /// that said hello, never from another process that got hold of the socket.
    pub fn pinned_to(self, hello: Creds) -> Self {
        Self {
            pid: Some(self.pid.unwrap_or(hello.pid)),
            uid: Some(self.uid.unwrap_or(hello.uid)),
            gid: Some(self.gid.unwrap_or(hello.gid)),
        }
    }

    /// Accept any sender (credentials are still required and reported).
    pub fn any() -> Self {
        Self::default()
    }

    /// Only this uid.
    pub fn uid(uid: u32) -> Self {
        Self {
            uid: Some(uid),
            ..Self::default()
        }
    }

    /// Only this process.
    pub fn pid(pid: i32) -> Self {
        Self {
            pid: Some(pid),
            ..Self::default()
        }
    }

    pub(crate) fn check(&self, got: Option<Creds>) -> Result<Creds, IpcError> {
        let got = got.ok_or(IpcError::MissingCredentials)?;
        let ok = self.pid.is_none_or(|p| p == got.pid)
            && self.uid.is_none_or(|u| u == got.uid)
            && self.gid.is_none_or(|g| g == got.gid);
        if ok {
            Ok(got)
        } else {
            Err(IpcError::PeerCredentials { want: *self, got })
        }
    }
}

/// A decoded message with what came beside it.
#[derive(Debug)]
pub struct Received<M> {
    /// The message.
    pub msg: M,
    /// Descriptors passed with it.
    pub fds: Vec<OwnedFd>,
    /// Its sender.
    pub creds: Creds,
}

pub(crate) struct Raw {
    pub len: usize,
    pub fds: Vec<OwnedFd>,
    pub creds: Option<Creds>,
}

pub(crate) fn enable_passcred(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    socket::setsockopt(&fd, sockopt::PassCred, &true)
}

fn map_err(e: Errno) -> IpcError {
    match e {
        Errno::ECONNRESET | Errno::EPIPE | Errno::ENOTCONN => {
            IpcError::Wire(WireError::PeerRestarted)
        }
        e => IpcError::Io(e),
    }
}

pub(crate) fn send(
    fd: BorrowedFd<'_>,
    frame: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), IpcError> {
    send_flags(fd, frame, fds, MsgFlags::empty())
}

pub(crate) fn send_flags(
    fd: BorrowedFd<'_>,
    frame: &[u8],
    fds: &[BorrowedFd<'_>],
    extra: MsgFlags,
) -> Result<(), IpcError> {
    if fds.len() > MAX_FDS {
        return Err(IpcError::UnexpectedFds(fds.len()));
    }
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let iov = [IoSlice::new(frame)];
    let cmsgs: Vec<ControlMessage<'_>> = if raw.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&raw)]
    };
    loop {
        match socket::sendmsg::<()>(
            fd.as_raw_fd(),
            &iov,
            &cmsgs,
            MsgFlags::MSG_NOSIGNAL | extra,
            None,
        ) {
            Ok(n) if n == frame.len() => return Ok(()),
            Ok(_) => return Err(IpcError::Io(Errno::EMSGSIZE)),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(map_err(e)),
        }
    }
}

pub(crate) fn recv(fd: BorrowedFd<'_>, buf: &mut [u8], allow_fds: bool) -> Result<Raw, IpcError> {
    recv_flags(fd, buf, allow_fds, MsgFlags::empty())
}

pub(crate) fn recv_flags(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    allow_fds: bool,
    extra: MsgFlags,
) -> Result<Raw, IpcError> {
    let mut cmsg = nix::cmsg_space!(UnixCredentials, [RawFd; MAX_FDS]);
    let (len, flags, fds, creds) = loop {
        let mut iov = [IoSliceMut::new(buf)];
        match socket::recvmsg::<()>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC | extra,
        ) {
            Ok(msg) => {
                let mut fds = Vec::new();
                let mut creds = None;
                for c in msg.cmsgs().map_err(IpcError::Io)? {
                    match c {
                        ControlMessageOwned::ScmRights(rs) => {
                            for r in rs {
                                // SAFETY: the kernel just installed `r` in our fd table
                                // for this message; nothing else owns it.
                                fds.push(unsafe { OwnedFd::from_raw_fd(r) });
                            }
                        }
                        ControlMessageOwned::ScmCredentials(c) => creds = Some(Creds::from(c)),
                        _ => {}
                    }
                }
                break (msg.bytes, msg.flags, fds, creds);
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(map_err(e)),
        }
    };
    if len == 0 && !flags.contains(MsgFlags::MSG_TRUNC) {
        // Orderly shutdown: the peer closed or died.
        return Err(IpcError::Wire(WireError::PeerRestarted));
    }
    if flags.contains(MsgFlags::MSG_TRUNC) || len >= buf.len() {
        return Err(IpcError::Wire(WireError::FrameTooLong {
            len,
            max: MAX_FRAME,
        }));
    }
    if flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(IpcError::UnexpectedFds(MAX_FDS.saturating_add(1)));
    }
    if !allow_fds && !fds.is_empty() {
        return Err(IpcError::UnexpectedFds(fds.len()));
    }
    Ok(Raw { len, fds, creds })
}
