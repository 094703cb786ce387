//! havn-netd: thin main. See `havn_netd::cli` for the options and exit codes.

use clap::Parser;
use havn_config::fds;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;

/// Takes ownership of an inherited descriptor, if it is open.
fn inherited(fd: i32) -> Option<OwnedFd> {
    // SAFETY: fcntl(F_GETFD) only queries the descriptor table; it is safe on any
    // integer and fails with EBADF when `fd` is not open.
    let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
    // SAFETY: `fd` is open (checked above) and was inherited from havn-init for this
    // purpose alone; nothing else in this process refers to it, so ownership is
    // taken exactly once, here, before any other code runs.
    open.then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn main() -> ExitCode {
    let args = havn_netd::cli::Args::parse();
    let (Some(execd), Some(attestd)) = (inherited(fds::NETD_EXECD), inherited(fds::NETD_ATTESTD))
    else {
        eprintln!(
            "havn-netd: fds {} (execd) and {} (attestd) must be open IPC socketpairs (started by havn-init)",
            fds::NETD_EXECD,
            fds::NETD_ATTESTD
        );
        return ExitCode::from(havn_netd::EXIT_STARTUP);
    };
    // Before any thread starts: refuse to run unless init dropped our privileges
    // (uid nobody, no capabilities), then no_new_privs and the compiled-in seccomp
    // allow-list for netd.
    if let Err(e) = havn_sandbox::enter(havn_sandbox::DaemonKind::Netd) {
        eprintln!("havn-netd: refusing to run outside its sandbox: {e}");
        return ExitCode::from(havn_netd::EXIT_STARTUP);
    }
    ExitCode::from(havn_netd::cli::run(&args, execd, attestd))
}
