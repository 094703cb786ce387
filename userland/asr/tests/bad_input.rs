//! Bad input is refused with an error naming what was wrong, never a panic: truncated or
//! garbled CTranslate2 files (synthetic and the real model), and WAV clips that are
//! stereo, 8-bit, 44.1 kHz, ten minutes long, empty or not WAV at all.

use crate::common::{model_files, wav_bytes};
use havn_asr::ct2::{Ct2File, DType};
use havn_asr::{AsrError, Whisper};

/// A CTranslate2 file writer for the tests.
#[derive(Default)]
struct Builder {
    vars: Vec<(String, Vec<u32>, u8, Vec<u8>)>,
    aliases: Vec<(String, String)>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16 + 1).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

impl Builder {
    fn var(mut self, name: &str, dims: &[u32], dtype: u8, data: Vec<u8>) -> Self {
        self.vars.push((name.into(), dims.to_vec(), dtype, data));
        self
    }
    fn alias(mut self, a: &str, t: &str) -> Self {
        self.aliases.push((a.into(), t.into()));
        self
    }
    fn build(&self) -> Vec<u8> {
        let mut out = 6u32.to_le_bytes().to_vec();
        put_str(&mut out, "WhisperSpec");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.vars.len() as u32).to_le_bytes());
        for (name, dims, dtype, data) in &self.vars {
            put_str(&mut out, name);
            out.push(dims.len() as u8);
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.push(*dtype);
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
        }
        out.extend_from_slice(&(self.aliases.len() as u32).to_le_bytes());
        for (a, t) in &self.aliases {
            put_str(&mut out, a);
            put_str(&mut out, t);
        }
        out
    }
}

fn small() -> Builder {
    let w: Vec<u8> = [1.0f32, -2.5, 0.0, 65504.0, 6.0e-8, -0.0]
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    Builder::default()
        .var("enc/num_heads", &[], 2, 6i16.to_le_bytes().to_vec())
        .var("emb/weight", &[2, 3], 4, w)
        .var(
            "b",
            &[2],
            0,
            [0.5f32, 1.5].iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
        .alias("proj/weight", "emb/weight")
}

fn ct2_err(bytes: &[u8]) -> (u64, String, String) {
    match Ct2File::parse(bytes) {
        Err(AsrError::Ct2 {
            offset,
            field,
            reason,
        }) => (offset, field, reason),
        other => panic!("expected a CTranslate2 format error, got {other:?}"),
    }
}

#[test]
fn a_small_file_parses_with_aliases_and_exact_f16() {
    let bytes = small().build();
    let f = Ct2File::parse(&bytes).expect("parses");
    assert_eq!(
        (f.binary_version, f.spec.as_str(), f.revision),
        (6, "WhisperSpec", 3)
    );
    assert_eq!(f.int("enc/num_heads").expect("int"), 6);
    let w = f.f32s("proj/weight", &[2, 3]).expect("alias resolves");
    assert_eq!(
        w,
        [
            1.0,
            -2.5,
            0.0,
            65504.0,
            half::f16::from_f32(6.0e-8).to_f32(),
            -0.0
        ]
    );
    assert_eq!(
        f.get("proj/weight").expect("alias"),
        f.get("emb/weight").expect("var")
    );
    assert_eq!(f.get("emb/weight").expect("var").dtype, DType::F16);
    assert_eq!(f.f32s("b", &[2]).expect("f32"), [0.5, 1.5]);
    let e = f.f32s("emb/weight", &[3, 2]).expect_err("wrong dims");
    assert!(
        e.to_string().contains("dims [2, 3], expected [3, 2]"),
        "{e}"
    );
    assert!(f.get("missing").is_err());
}

#[test]
fn every_truncation_of_a_small_file_is_refused() {
    let bytes = small().build();
    for cut in 0..bytes.len() {
        let (offset, field, reason) = ct2_err(&bytes[..cut]);
        assert!(offset as usize <= cut, "{cut}: offset {offset}");
        assert!(!field.is_empty() && !reason.is_empty());
    }
}

#[test]
fn garbled_small_files_name_the_field() {
    let good = small().build();
    let with = |at: usize, b: &[u8]| {
        let mut v = good.clone();
        v[at..at + b.len()].copy_from_slice(b);
        v
    };
    // Header: version 0..4, spec 4..18, revision 18..22, count 22..26; the first variable
    // ("enc/num_heads", 14 bytes with the NUL) has its name length at 26, rank at 42,
    // dtype at 43, byte count at 44..48 and data at 48..50.
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            with(0, &99u32.to_le_bytes()),
            "binary version",
            "not supported",
        ),
        (
            with(22, &u32::MAX.to_le_bytes()),
            "variable count",
            "cannot fit",
        ),
        (
            with(26, &u16::MAX.to_le_bytes()),
            "variable 0 name",
            "needs 65535 bytes",
        ),
        (with(28, &[0xff]), "variable 0 name", "not UTF-8"),
        (with(41, b"x"), "variable 0 name", "does not end with a NUL"),
        (with(42, &[200]), "rank", "at most 8"),
        (with(43, &[9]), "dtype", "unknown dtype id 9"),
        (
            with(44, &4u32.to_le_bytes()),
            "byte count",
            "4 bytes, but dims [] of I16",
        ),
        (
            with(44, &u32::MAX.to_le_bytes()),
            "byte count",
            "need Some(2)",
        ),
        (
            [good.as_slice(), &[0]].concat(),
            "end of file",
            "1 bytes after",
        ),
    ];
    for (bytes, field, reason) in cases {
        let (_, f, r) = ct2_err(&bytes);
        assert!(
            f.contains(field) && r.contains(reason),
            "{field}/{reason}: got {f}: {r}"
        );
    }
    let dup = Builder::default()
        .var("a", &[], 1, vec![1])
        .var("a", &[], 1, vec![2])
        .build();
    assert!(ct2_err(&dup).2.contains("appears twice"));
    let dangling = small().alias("x", "nope").build();
    assert!(ct2_err(&dangling).2.contains("\"nope\" is not a variable"));
    let clash = small().alias("b", "emb/weight").build();
    assert!(ct2_err(&clash).2.contains("already a variable"));
    let huge = Builder::default()
        .var("big", &[u32::MAX, u32::MAX, u32::MAX], 0, vec![])
        .build();
    assert!(ct2_err(&huge).1.contains("\"big\""));
    let nan = Builder::default()
        .var("n", &[1], 0, f32::NAN.to_le_bytes().to_vec())
        .build();
    let f = Ct2File::parse(&nan).expect("parses");
    let e = f.f32s("n", &[1]).expect_err("NaN refused");
    assert!(e.to_string().contains("element 0 is not finite"), "{e}");
    // A well-formed file that is not a Whisper model.
    let e = Whisper::from_bytes(&small().build(), b"{}")
        .err()
        .expect("refused");
    assert!(e.to_string().contains("decoder/embeddings/weight"), "{e}");
}

#[test]
fn the_real_model_truncated_or_garbled_is_refused() {
    let Some((model, tok)) = model_files() else {
        return;
    };
    for cut in [0, 3, 10, 26, 100, 1 << 20, model.len() / 2, model.len() - 1] {
        let e = Whisper::from_bytes(&model[..cut], &tok)
            .err()
            .expect("refused");
        assert!(
            matches!(e, AsrError::Ct2 { .. }) && e.to_string().contains("malformed at byte"),
            "cut {cut}: {e}"
        );
    }
    let f = Ct2File::parse(&model).expect("parses");
    // A NaN in a weight, a wrong head count, and a tokenizer that is not JSON.
    let v = f
        .get("encoder/layer_2/ffn/linear_1/weight")
        .expect("var")
        .clone();
    let mut bad = model.clone();
    bad[v.start + 10..v.start + 12].copy_from_slice(&half::f16::NAN.to_le_bytes());
    let e = Whisper::from_bytes(&bad, &tok).err().expect("NaN refused");
    assert!(
        e.to_string()
            .contains("linear_1/weight\": element 5 is not finite"),
        "{e}"
    );
    let h = f.get("decoder/num_heads").expect("var").clone();
    let mut bad = model.clone();
    bad[h.start..h.start + 2].copy_from_slice(&7i16.to_le_bytes());
    let e = Whisper::from_bytes(&bad, &tok)
        .err()
        .expect("7 heads refused");
    assert!(e.to_string().contains("7 heads do not divide"), "{e}");
    let e = Whisper::from_bytes(&model, b"not json")
        .err()
        .expect("tokenizer refused");
    assert!(matches!(e, AsrError::Tokenizer(_)), "{e}");
}

fn wav_err(bytes: &[u8]) -> String {
    let e = havn_asr::wav::read_wav(bytes).expect_err("refused");
    assert!(matches!(e, AsrError::Wav { .. }), "{e}");
    e.to_string()
}

#[test]
fn wav_clips_of_the_wrong_kind_are_refused_naming_the_field() {
    let stereo = wav_bytes(&[0i16; 3200], 16_000, 2);
    assert_eq!(wav_err(&stereo), "WAV channels: 2, expected 1 (mono)");
    let cd = wav_bytes(&[0i16; 4410], 44_100, 1);
    assert_eq!(wav_err(&cd), "WAV sample_rate: 44100 Hz, expected 16000 Hz");
    let ten_min = wav_bytes(&vec![0i16; 10 * 60 * 16_000], 16_000, 1);
    assert!(wav_err(&ten_min).starts_with("WAV duration: 9600000 samples (600.0 s), at most"));
    let eight = {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 8,
            sample_format: hound::SampleFormat::Int,
        };
        let mut cur = std::io::Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut cur, spec).expect("writer");
        for i in 0..1600 {
            w.write_sample((i % 100) as i8).expect("sample");
        }
        w.finalize().expect("finalize");
        cur.into_inner()
    };
    assert_eq!(
        wav_err(&eight),
        "WAV bits_per_sample: 8-bit integer, expected 16-bit integer PCM or 32-bit float"
    );
    assert_eq!(wav_err(&wav_bytes(&[], 16_000, 1)), "WAV data: no samples");
    assert!(wav_err(b"RIFF....not a wav").starts_with("WAV header: not a readable WAV file"));
    assert!(wav_err(&[]).starts_with("WAV header:"));
    // Data cut short of what the header says.
    let full = wav_bytes(&[7i16; 1000], 16_000, 1);
    assert!(wav_err(&full[..full.len() - 100]).starts_with("WAV data:"));
}

fn float_wav(samples: &[f32]) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut cur = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut cur, spec).expect("writer");
    for &s in samples {
        w.write_sample(s).expect("sample");
    }
    w.finalize().expect("finalize");
    cur.into_inner()
}

#[test]
fn good_wav_clips_give_exact_samples() {
    let s = havn_asr::wav::read_wav(&wav_bytes(&[-32768, -1, 0, 1, 32767], 16_000, 1))
        .expect("16-bit reads");
    assert_eq!(
        s,
        [-1.0, -1.0 / 32768.0, 0.0, 1.0 / 32768.0, 32767.0 / 32768.0]
    );
    let f = [0.25f32, -1.0, 1.0, 1e-9];
    assert_eq!(
        havn_asr::wav::read_wav(&float_wav(&f)).expect("float reads"),
        f
    );
    assert_eq!(
        wav_err(&float_wav(&[0.0, 1.5])),
        "WAV data: sample 1 is 1.5, outside [-1, 1]"
    );
    assert!(wav_err(&float_wav(&[f32::NAN])).contains("sample 0 is NaN"));
}
