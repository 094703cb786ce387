//! havn-execd: runs gated jobs on the deterministic engine. See the crate library.
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = havn_execd::Args::parse();
    // First, before any thread starts: verify init dropped privileges, then
    // no_new_privs and this daemon's compiled-in seccomp allow-list.
    if let Err(e) = havn_sandbox::enter(havn_sandbox::DaemonKind::Execd) {
        eprintln!("havn-execd: refusing to run outside its sandbox: {e}");
        return ExitCode::from(10);
    }
    match havn_execd::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "havn-execd stopped");
            eprintln!("havn-execd: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
