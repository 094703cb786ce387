//! havn-asr's tests (one binary): the reader, WAV input, the front end, the model
//! against faster-whisper, determinism, challenges and bad input.
mod bad_input;
mod challenge;
mod common;
mod determinism;
mod reference;
