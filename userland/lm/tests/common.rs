//! Shared by the model tests: the shipped model, loaded once per test binary.

use havn_lm::store::{Store, DEFAULT_MODEL};
use havn_lm::LoadedModel;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The model store the tests use: `$HAVN_MODEL_STORE`, else the workspace's
/// `.cache/models` (where `scripts/test` fetches it).
pub fn store_dir() -> PathBuf {
    std::env::var_os("HAVN_MODEL_STORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models"))
}

/// The shipped chat model, or None (printing why) when it was not fetched. Under
/// `CI=true` a missing model fails the test instead.
pub fn model() -> Option<&'static LoadedModel> {
    static M: OnceLock<Option<LoadedModel>> = OnceLock::new();
    M.get_or_init(|| {
        let dir = store_dir();
        let loaded = Store::open(&dir).and_then(|s| s.load(DEFAULT_MODEL));
        match loaded {
            Ok(m) => Some(m),
            Err(e) => {
                let msg = format!(
                    "the shipped model is not in {} ({e}); run `havnctl models fetch --store {}`",
                    dir.display(),
                    dir.display()
                );
                assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
                havn_testkit::note_skip(&msg);
                None
            }
        }
    })
    .as_ref()
}

/// A pool of `n` threads.
pub fn pool(n: usize) -> rayon::ThreadPool {
    havn_lm::linear::pool(n).expect("thread pool")
}

/// Run options: `seed` on pool `p`, no traces, no cancellation.
pub fn opts(p: &rayon::ThreadPool, seed: u64) -> havn_lm::RunOpts<'_> {
    havn_lm::RunOpts {
        seed,
        pool: p,
        keep_traces: false,
        cancel: None,
    }
}
