//! havn-exec integration tests (one binary; see each module).

mod bad_input;
mod challenge;
mod checkpoint;
mod cli;
mod common;
mod detmath;
mod gpu;
mod merkle;
mod ops;
mod workloads;
