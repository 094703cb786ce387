//! havn-asr's tests (one binary): the reader, WAV input, the front end, the model
//! against faster-whisper, determinism and bad input.
mod bad_input;
mod common;
mod determinism;
mod reference;
