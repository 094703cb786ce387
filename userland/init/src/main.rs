//! havn-init: thin main (Firecracker jailer style). The logic is in the library.

use clap::Parser;

fn main() {
    let args = havn_init::Args::parse();
    let filter = args
        .log
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".into());
    havn_log::init(Some(&filter));
    if let Err(e) = havn_init::run(&args) {
        tracing::error!(error = %e, "havn-init failed");
        eprintln!("havn-init: {e}");
        if nix::unistd::getpid().as_raw() == 1 {
            // PID 1 must not exit (the kernel would panic): power off instead.
            havn_init::pid1::power_off();
        }
        std::process::exit(e.exit_code());
    }
}
