//! Shared by the tests: the shipped terrain UNet, imported once per test binary.

use havn_onnx::diffusion::DiffusionModel;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The model store: `$HAVN_MODEL_STORE`, else the workspace's `.cache/models` (where
/// `scripts/test` fetches it).
pub fn store_dir() -> PathBuf {
    std::env::var_os("HAVN_MODEL_STORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models"))
}

/// The ONNX file's bytes, or None (printing why) when it was not fetched; under
/// `CI=true` a missing model fails the test instead.
pub fn onnx_bytes() -> Option<&'static [u8]> {
    static B: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    B.get_or_init(|| {
        let dir = store_dir();
        match havn_lm::store::Store::open(&dir).and_then(|s| s.read("terrain-unet")) {
            Ok((_, b)) => Some(b),
            Err(e) => {
                let msg = format!(
                    "the terrain UNet is not in {} ({e}); run `havnctl models fetch --store {}`",
                    dir.display(),
                    dir.display()
                );
                assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
                havn_testkit::note_skip(&msg);
                None
            }
        }
    })
    .as_deref()
}

/// The imported model.
pub fn model() -> Option<&'static DiffusionModel> {
    static M: OnceLock<Option<DiffusionModel>> = OnceLock::new();
    M.get_or_init(|| {
        onnx_bytes().map(|b| DiffusionModel::from_bytes(b).expect("the shipped UNet imports"))
    })
    .as_ref()
}
