//! WAV input: any bytes → samples (16 kHz mono, at most 30 s, every sample finite and
//! within [-1, 1]) or a typed error naming the field; never a panic. Accepted clips also
//! go through the log-mel front end, whose output must be finite.
#![no_main]
use havn_asr::mel::{FrontEnd, N_FRAMES, N_MELS};
use havn_asr::wav::{read_wav, MAX_SAMPLES};
use havn_asr::AsrError;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    match read_wav(data) {
        Ok(s) => {
            assert!(!s.is_empty() && s.len() <= MAX_SAMPLES);
            assert!(s.iter().all(|x| (-1.0..=1.0).contains(x)));
            static FE: OnceLock<FrontEnd> = OnceLock::new();
            let mel = FE.get_or_init(FrontEnd::new).log_mel(&s, 1);
            assert_eq!(mel.len(), N_MELS * N_FRAMES);
            assert!(mel.iter().all(|x| x.is_finite()));
        }
        Err(AsrError::Wav { field, reason }) => assert!(!field.is_empty() && !reason.is_empty()),
        Err(e) => panic!("not a WAV error: {e}"),
    }
});
