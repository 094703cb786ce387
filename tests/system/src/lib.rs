//! System tests for Havn: they run the real binaries (havn-init, the daemons,
//! havnctl) with a real swtpm, real TLS and real IPC. See `tests/`.

pub mod harness;
pub mod mesh_chain;
pub mod mesh_demo;
