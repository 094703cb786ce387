//! havn-attestd: the only process that talks to the TPM. See the crate library.
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = havn_attestd::Args::parse();
    // First, before any thread starts: verify init dropped privileges, then
    // no_new_privs and this daemon's compiled-in seccomp allow-list.
    if let Err(e) = havn_sandbox::enter(havn_sandbox::DaemonKind::Attestd) {
        eprintln!("havn-attestd: refusing to run outside its sandbox: {e}");
        return ExitCode::from(10);
    }
    match havn_attestd::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "havn-attestd stopped");
            eprintln!("havn-attestd: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
