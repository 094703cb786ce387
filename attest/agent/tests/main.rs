//! Agent integration tests against a real swtpm (one binary, `mod` per area).

mod common;

mod checkquote;
mod identity;
mod quote;
mod records;
mod seal_gate;
