//! CTranslate2 reader: any bytes → a typed error, or a file whose every variable lies
//! inside the bytes with a byte count matching its dims and dtype, whose aliases
//! resolve, and whose float variables convert (bounded) and whose model is built or
//! refused with an error. Never a panic, never an allocation past a few times the input.
#![no_main]
use havn_asr::ct2::{Ct2File, DType};
use havn_asr::model::Config;
use havn_asr::Whisper;
use libfuzzer_sys::fuzz_target;

/// Variables over this many elements are not converted (bounded work per input).
const MAX_ELEMENTS: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(f) = Ct2File::parse(data) else { return };
    let mut spans = Vec::new();
    for v in &f.variables {
        let numel: usize = v.dims.iter().product();
        assert_eq!(v.len, numel * v.dtype.size(), "{v:?}");
        assert!(v.start + v.len <= data.len(), "{v:?}");
        assert_eq!(f.get(&v.name).ok(), Some(v));
        spans.push((v.start, v.start + v.len));
        if numel <= MAX_ELEMENTS {
            match v.dtype {
                DType::F32 | DType::F16 | DType::Bf16 => {
                    if let Ok(x) = f.f32s(&v.name, &v.dims) {
                        assert_eq!(x.len(), numel);
                        assert!(x.iter().all(|e| e.is_finite()));
                    }
                }
                _ => {
                    let _ = f.int(&v.name);
                }
            }
        }
    }
    for (alias, &i) in &f.aliases {
        assert_eq!(f.get(alias).ok(), f.variables.get(i));
    }
    spans.sort_unstable();
    assert!(
        spans.windows(2).all(|w| w[0].1 <= w[1].0),
        "variables overlap"
    );
    if Config::from_file(&f).is_ok() {
        let _ = Whisper::from_bytes(data, b"{}");
    }
});
