//! `scripts/demo-mesh`: a whole validator mesh on this machine (see
//! `havn_system_tests::mesh_demo`). Exits non-zero unless the cheater is caught and
//! every honest receipt settles.
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "havn-demo-mesh",
    about = "Run execution nodes and validators as real processes on loopback, one node cheating; write DIR/mesh-summary.json"
)]
struct Args {
    /// Output directory (summary, settlement files, node logs).
    #[arg(long, default_value = "out/mesh")]
    out: PathBuf,
    /// Validators.
    #[arg(long, default_value_t = 3)]
    validators: usize,
    /// Execution nodes (the last one cheats).
    #[arg(long, default_value_t = 3)]
    executors: usize,
    /// Jobs per execution node.
    #[arg(long, default_value_t = 4)]
    jobs: usize,
    /// Epoch length in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    epoch_ms: u64,
    /// Seconds to wait for the verdicts, settlements and chain work after the first job.
    #[arg(long, default_value_t = 150)]
    timeout: u64,
    /// Run without the dev chain (no stake, payouts, slashing or quarantine on chain).
    #[arg(long)]
    no_chain: bool,
}

fn main() -> ExitCode {
    let a = Args::parse();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("havn-demo-mesh: run as root (havn-init drops each daemon's privileges)");
        return ExitCode::from(2);
    }
    let opts = havn_system_tests::mesh_demo::Options {
        out: a.out.clone(),
        validators: a.validators,
        executors: a.executors,
        jobs: a.jobs,
        epoch_ms: a.epoch_ms,
        timeout: Duration::from_secs(a.timeout),
        chain: !a.no_chain,
    };
    let outcome = havn_system_tests::mesh_demo::run(&opts);
    println!(
        "{}",
        serde_json::to_string_pretty(&outcome.summary).unwrap_or_default()
    );
    eprintln!(
        "[demo-mesh] summary: {}",
        a.out.join("mesh-summary.json").display()
    );
    if outcome.passed {
        eprintln!("[demo-mesh] PASS: the cheater was caught and every honest receipt settled");
        ExitCode::SUCCESS
    } else {
        for p in &outcome.problems {
            eprintln!("[demo-mesh] FAIL: {p}");
        }
        ExitCode::FAILURE
    }
}
