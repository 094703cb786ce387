//! Havn system tests: one test binary.
mod deps;
