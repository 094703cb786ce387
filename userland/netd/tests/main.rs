//! havn-netd integration tests: one binary (links once), modules below.
//! The execd/attestd ends are in-test stand-ins (see `common`); the repo-level
//! system tests run netd against the real daemons.

mod alerts;
mod common;
mod crash;
mod disk;
mod grpc;
mod intake;
mod mtls;
mod proof;
mod roles;
mod sealed;
mod stake;
mod telemetry;
mod wal;
