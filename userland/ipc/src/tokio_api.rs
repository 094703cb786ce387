//! The same channels for tokio (netd): non-blocking socket driven by `AsyncFd`.

use crate::sock::{self, PeerPolicy, Received};
use crate::{instance_id, IpcError, Phase};
use havn_proto::frame::{self, Hello};
use havn_proto::ipc::{ChannelSpec, Message};
use nix::errno::Errno;
use nix::sys::socket::MsgFlags;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

#[derive(Debug)]
struct AsyncConn {
    fd: AsyncFd<OwnedFd>,
    buf: Box<[u8]>,
    policy: PeerPolicy,
    peer: Option<Hello>,
}

impl AsyncConn {
    fn new(fd: OwnedFd, policy: PeerPolicy) -> Result<Self, IpcError> {
        sock::enable_passcred(fd.as_fd())?;
        nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        // SAFETY: `OwnedFd` owns a valid descriptor, which the `AsyncFd` owns for its
        // whole lifetime and never replaces; `as_raw_fd` always returns that fd.
        let fd =
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE) }
                .map_err(|e| io_errno(e.into()))?;
        Ok(Self {
            fd,
            buf: vec![0u8; sock::RECV_BUF].into_boxed_slice(),
            policy,
            peer: None,
        })
    }

    async fn send_frame(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<(), IpcError> {
        loop {
            let mut guard = self.fd.writable().await.map_err(io_errno)?;
            match sock::send_flags(
                self.fd.get_ref().as_fd(),
                bytes,
                fds,
                MsgFlags::MSG_DONTWAIT,
            ) {
                Err(IpcError::Io(Errno::EAGAIN)) => guard.clear_ready(),
                other => return other,
            }
        }
    }

    async fn recv_raw(&mut self, allow_fds: bool) -> Result<sock::Raw, IpcError> {
        loop {
            let mut guard = self.fd.readable().await.map_err(io_errno)?;
            match sock::recv_flags(
                self.fd.get_ref().as_fd(),
                &mut self.buf,
                allow_fds,
                MsgFlags::MSG_DONTWAIT,
            ) {
                Err(IpcError::Io(Errno::EAGAIN)) => guard.clear_ready(),
                other => return other,
            }
        }
    }

    async fn handshake(&mut self, channel: havn_proto::ipc::Channel) -> Result<(), IpcError> {
        let hello = Hello::new(channel, instance_id());
        self.send_frame(&frame::encode(&hello)?, &[]).await?;
        let got = self.recv_raw(false).await?;
        self.policy = self.policy.pinned_to(self.policy.check(got.creds)?);
        let peer: Hello = frame::decode(self.buf.get(..got.len).unwrap_or_default())?;
        peer.check(channel)?;
        self.peer = Some(peer);
        Ok(())
    }

    async fn recv<M: Message>(&mut self, allow_fds: bool) -> Result<Received<M>, IpcError> {
        let got = self.recv_raw(allow_fds).await?;
        let creds = self.policy.check(got.creds)?;
        let msg = frame::decode(self.buf.get(..got.len).unwrap_or_default())?;
        Ok(Received {
            msg,
            fds: got.fds,
            creds,
        })
    }
}

fn io_errno(e: std::io::Error) -> IpcError {
    IpcError::Io(Errno::from_raw(e.raw_os_error().unwrap_or(libc_eio())))
}

const fn libc_eio() -> i32 {
    5
}

/// The requesting end of channel `C` for tokio. Calls are sequential (`&mut self`):
/// wrap in a `tokio::sync::Mutex` to share.
#[derive(Debug)]
pub struct AsyncClient<C: ChannelSpec> {
    conn: AsyncConn,
    _c: PhantomData<C>,
}

impl<C: ChannelSpec> AsyncClient<C> {
    /// Handshakes over `fd` (must be called inside a tokio runtime).
    pub async fn connect(fd: OwnedFd, policy: PeerPolicy) -> Result<Self, IpcError> {
        let mut conn = AsyncConn::new(fd, policy)?;
        conn.handshake(C::CHANNEL).await?;
        Ok(Self {
            conn,
            _c: PhantomData,
        })
    }

    /// The peer's hello.
    pub fn peer(&self) -> Option<&Hello> {
        self.conn.peer.as_ref()
    }

    /// Sends a request and waits for the response.
    pub async fn call(&mut self, req: &C::Request) -> Result<C::Response, IpcError> {
        self.conn.send_frame(&frame::encode(req)?, &[]).await?;
        Ok(self.conn.recv::<C::Response>(false).await?.msg)
    }
}

/// The responding end of channel `C` for tokio.
#[derive(Debug)]
pub struct AsyncServer<C: ChannelSpec> {
    conn: AsyncConn,
    phase: Option<Phase>,
    _c: PhantomData<C>,
}

impl<C: ChannelSpec> AsyncServer<C> {
    /// Handshakes over `fd`.
    pub async fn accept(fd: OwnedFd, policy: PeerPolicy) -> Result<Self, IpcError> {
        let mut conn = AsyncConn::new(fd, policy)?;
        conn.handshake(C::CHANNEL).await?;
        Ok(Self {
            conn,
            phase: None,
            _c: PhantomData,
        })
    }

    /// Sets the phase allow-table.
    pub fn set_phase(&mut self, phase: Phase) {
        self.phase = Some(phase);
    }

    /// Next request, checked against the phase.
    pub async fn recv(&mut self) -> Result<Received<C::Request>, IpcError> {
        let r = self.conn.recv::<C::Request>(false).await?;
        if let Some(p) = self.phase.as_mut() {
            p.admit::<C::Request>(r.msg.tag())?;
        }
        Ok(r)
    }

    /// Answers.
    pub async fn reply(&mut self, resp: &C::Response) -> Result<(), IpcError> {
        self.conn.send_frame(&frame::encode(resp)?, &[]).await
    }
}
