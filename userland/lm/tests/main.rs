mod challenge;
mod common;
mod gguf;
mod reference;
mod requests;
mod smoke;
mod synth;
