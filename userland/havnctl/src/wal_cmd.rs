//! `havnctl wal`: inspect or salvage netd's job write-ahead log (operators; run with
//! the node stopped).

use anyhow::Context;
use std::path::PathBuf;

/// Arguments of `havnctl wal`.
#[derive(Debug, clap::Args)]
pub struct WalArgs {
    #[command(subcommand)]
    pub cmd: WalCmd,
}

/// `havnctl wal` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum WalCmd {
    /// Replay the log read-only-ish as netd would (a torn tail is cut) and print what
    /// it holds; fails, naming the offset, when a corrupt record has valid ones after it.
    Check {
        /// `<state_dir>/netd/wal.log`.
        file: PathBuf,
    },
    /// Keep every valid record of a log netd refused as corrupt in the middle, skip
    /// the corrupt bytes (named), and rewrite it compacted; the original is kept as
    /// `wal.log.corrupt`. Stop the node first.
    Salvage {
        /// `<state_dir>/netd/wal.log`.
        file: PathBuf,
    },
}

/// Runs `havnctl wal`.
pub fn run(a: WalArgs) -> anyhow::Result<()> {
    match a.cmd {
        WalCmd::Check { file } => {
            let r = havn_netd::wal::replay(&file).with_context(|| format!("{}", file.display()))?;
            let done = r
                .snapshot
                .jobs
                .values()
                .filter(|j| j.outcome.is_some())
                .count();
            println!(
                "{}: {} records, {} jobs ({} finished), log ends at offset {}, {} torn bytes cut",
                file.display(),
                r.records,
                r.snapshot.jobs.len(),
                done,
                r.end,
                r.truncated_bytes
            );
            for w in r.warnings {
                println!("warning: {w}");
            }
            Ok(())
        }
        WalCmd::Salvage { file } => {
            let s = havn_netd::wal_salvage::salvage(&file)
                .with_context(|| format!("salvaging {}", file.display()))?;
            for (off, len) in &s.skipped {
                println!("skipped {len} corrupt bytes at offset {off}");
            }
            for w in &s.warnings {
                println!("warning: {w}");
            }
            println!(
                "{}: kept {} valid records ({} jobs); original saved as {}",
                file.display(),
                s.records,
                s.jobs,
                file.with_extension("log.corrupt").display()
            );
            Ok(())
        }
    }
}
