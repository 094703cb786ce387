//! The half of the profile that runs between `fork` and `exec`. Only raw,
//! async-signal-safe system calls: no allocation, no locks, no formatting. Every input
//! was computed in the parent into a [`Plan`] (a `Copy` value).

use nix::errno::Errno;
use std::io;

/// Most descriptors a profile places in the child.
pub(crate) const MAX_FDS: usize = 8;

/// Everything the child needs, precomputed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    /// `(source, target)` descriptor moves.
    pub fds: [(i32, i32); MAX_FDS],
    /// Used entries of `fds`.
    pub nfds: usize,
    /// Targets, ascending (the keep-list above stdio).
    pub keep: [i32; MAX_FDS],
    /// `unshare` flags (0: none).
    pub unshare: libc::c_int,
    /// Whether to make every mount private in the new mount namespace.
    pub private_mounts: bool,
    /// `(uid, gid)` to switch to, if any.
    pub ids: Option<(u32, u32)>,
    /// Drop supplementary groups even when the uid is kept (root parent).
    pub clear_groups: bool,
    /// Upper bound for the close-on-exec fallback loop.
    pub max_fd: i32,
}

/// `PR_SET_NO_NEW_PRIVS` (async-signal-safe).
pub(crate) fn set_no_new_privs() -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    Errno::result(r).map(drop)
}

/// Writes a fixed message to stderr and returns the current errno as an error.
fn fail(msg: &'static [u8]) -> io::Error {
    let errno = Errno::last_raw();
    const PREFIX: &[u8] = b"havn-sandbox: pre-exec step failed: ";
    // SAFETY: write(2) on fd 2 with valid buffers; async-signal-safe. Errors ignored.
    unsafe {
        libc::write(2, PREFIX.as_ptr().cast(), PREFIX.len());
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::write(2, b"\n".as_ptr().cast(), 1);
    }
    io::Error::from_raw_os_error(errno)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;
const SECBIT_NOROOT: libc::c_ulong = 1 << 0;
const SECBIT_NOROOT_LOCKED: libc::c_ulong = 1 << 1;
const SECBIT_KEEP_CAPS_LOCKED: libc::c_ulong = 1 << 5;
const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;

fn capget(data: &mut [CapData; 2]) -> libc::c_long {
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    // SAFETY: header and two data structs as the v3 ABI requires.
    unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) }
}

fn capset(data: &[CapData; 2]) -> libc::c_long {
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    // SAFETY: header and two data structs as the v3 ABI requires.
    unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) }
}

/// Marks `[first, last]` close-on-exec (close_range, or a loop where it is missing).
fn cloexec_range(first: i32, last: i32, max_fd: i32) -> Result<(), io::Error> {
    if first > last {
        return Ok(());
    }
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            last as libc::c_uint,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let mut fd = first;
    while fd <= last && fd <= max_fd {
        // SAFETY: F_SETFD on a possibly-closed descriptor; EBADF is ignored.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        fd = fd.saturating_add(1);
    }
    Ok(())
}

/// Applies `plan` to the calling process.
///
/// # Safety
/// Call only in the child between `fork` and `exec` (e.g. from
/// `CommandExt::pre_exec`): it rearranges the descriptor table and drops the
/// process's privileges irrevocably.
pub(crate) unsafe fn apply(plan: &Plan) -> io::Result<()> {
    // 1. Descriptors: copy every source above all targets first, so that a source
    //    sitting on another entry's target number cannot be clobbered, then dup2
    //    onto the targets (dup2 clears FD_CLOEXEC on the target).
    let above = plan.keep.iter().take(plan.nfds).copied().max().unwrap_or(2) + 1;
    let mut tmp = [-1i32; MAX_FDS];
    for (i, (src, _)) in plan.fds.iter().take(plan.nfds).enumerate() {
        // SAFETY: duplicates a descriptor the parent guaranteed open.
        let t = unsafe { libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, above) };
        if t < 0 {
            return Err(fail(b"F_DUPFD_CLOEXEC of a passed descriptor"));
        }
        if let Some(slot) = tmp.get_mut(i) {
            *slot = t;
        }
    }
    for (i, (_, dst)) in plan.fds.iter().take(plan.nfds).enumerate() {
        let t = tmp.get(i).copied().unwrap_or(-1);
        // SAFETY: dup2 between descriptors of this process.
        if unsafe { libc::dup2(t, *dst) } < 0 {
            return Err(fail(b"dup2 onto a documented descriptor number"));
        }
    }

    // 2. Namespaces.
    if plan.unshare != 0 {
        // SAFETY: unshare with flags only.
        if unsafe { libc::unshare(plan.unshare) } < 0 {
            return Err(fail(b"unshare(namespaces)"));
        }
    }
    if plan.private_mounts {
        // SAFETY: static NUL-terminated path; no data pointer.
        let r = unsafe {
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        };
        if r < 0 {
            return Err(fail(b"mount(/, MS_REC|MS_PRIVATE)"));
        }
    }

    // 3. Capabilities that need CAP_SETPCAP: securebits (root regains nothing at
    //    exec), then the bounding set, then ambient and inheritable.
    // SAFETY: prctl with integer arguments.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECUREBITS,
            SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_KEEP_CAPS_LOCKED,
            0,
            0,
            0,
        )
    };
    if r < 0 {
        return Err(fail(b"prctl(PR_SET_SECUREBITS)"));
    }
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } < 0 {
            if Errno::last() == Errno::EINVAL {
                break; // past CAP_LAST_CAP
            }
            return Err(fail(b"prctl(PR_CAPBSET_DROP)"));
        }
    }
    // SAFETY: prctl with integer arguments.
    let r = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    if r < 0 {
        return Err(fail(b"prctl(PR_CAP_AMBIENT_CLEAR_ALL)"));
    }
    let mut data = [CapData::default(); 2];
    if capget(&mut data) < 0 {
        return Err(fail(b"capget"));
    }
    for d in &mut data {
        d.inheritable = 0;
    }
    if capset(&data) < 0 {
        return Err(fail(b"capset(inheritable = 0)"));
    }

    // 4. Identity.
    // SAFETY: setgroups with an empty list.
    if plan.clear_groups && unsafe { libc::setgroups(0, std::ptr::null()) } < 0 {
        return Err(fail(b"setgroups([])"));
    }
    if let Some((uid, gid)) = plan.ids {
        // SAFETY: integer arguments.
        if unsafe { libc::setresgid(gid, gid, gid) } < 0 {
            return Err(fail(b"setresgid"));
        }
        // SAFETY: integer arguments.
        if unsafe { libc::setresuid(uid, uid, uid) } < 0 {
            return Err(fail(b"setresuid"));
        }
    }

    // 5. Effective and permitted (and inheritable again) to zero.
    if capset(&[CapData::default(); 2]) < 0 {
        return Err(fail(b"capset(all = 0)"));
    }
    if set_no_new_privs().is_err() {
        return Err(fail(b"prctl(PR_SET_NO_NEW_PRIVS)"));
    }

    // 6. The supervisor's blocked signals must not leak into the daemon.
    // SAFETY: sigset_t on the stack, initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) < 0 {
            return Err(fail(b"sigprocmask"));
        }
    }

    // 7. Last: every descriptor >= 3 that is not on the keep-list becomes
    //    close-on-exec (not closed now, so the std exec-error pipe keeps working).
    let mut next = 3;
    for &k in plan.keep.iter().take(plan.nfds) {
        cloexec_range(next, k - 1, plan.max_fd)?;
        next = k + 1;
    }
    cloexec_range(next, i32::MAX, plan.max_fd)
}
