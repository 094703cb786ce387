//! havn-netd: thin main. See `havn_netd::cli` for the options and exit codes.

use clap::Parser;
use havn_config::fds;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = havn_netd::cli::Args::parse();
    let (Some(execd), Some(attestd)) = (
        havn_ipc::inherited_fd(fds::NETD_EXECD),
        havn_ipc::inherited_fd(fds::NETD_ATTESTD),
    ) else {
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
