//! havn-proto integration tests: one binary (see STYLE.md).
mod framing;
mod roundtrip;
mod vectors;
