//! The compiled-in seccomp allow-lists (see `policy/*.json` and `build.rs`).

use crate::{DaemonKind, SandboxError};
use seccompiler::{sock_filter, BpfProgram};

mod compiled {
    include!(concat!(env!("OUT_DIR"), "/policies.rs"));
}

fn table(kind: DaemonKind) -> &'static [(u16, u8, u8, u32)] {
    match kind {
        DaemonKind::Attestd => compiled::ATTESTD,
        DaemonKind::Execd => compiled::EXECD,
        DaemonKind::Netd => compiled::NETD,
    }
}

/// The policy's source (seccompiler JSON), for review and `havn-init --print-policy`.
pub fn policy_json(kind: DaemonKind) -> &'static str {
    match kind {
        DaemonKind::Attestd => compiled::ATTESTD_JSON,
        DaemonKind::Execd => compiled::EXECD_JSON,
        DaemonKind::Netd => compiled::NETD_JSON,
    }
}

/// The compiled BPF program of `kind`'s policy (never empty: the build fails first).
pub fn program(kind: DaemonKind) -> BpfProgram {
    table(kind)
        .iter()
        .map(|&(code, jt, jf, k)| sock_filter { code, jt, jf, k })
        .collect()
}

/// Sets `PR_SET_NO_NEW_PRIVS` and installs `kind`'s allow-list on every thread of
/// this process (`SECCOMP_FILTER_FLAG_TSYNC`). A syscall outside the list kills the
/// whole process with `SIGSYS`. Prefer [`crate::enter`], which also checks that
/// privileges were dropped.
pub fn apply_seccomp(kind: DaemonKind) -> Result<(), SandboxError> {
    crate::child::set_no_new_privs().map_err(|source| SandboxError::Sys {
        what: "prctl(PR_SET_NO_NEW_PRIVS)",
        source,
    })?;
    Ok(seccompiler::apply_filter_all_threads(&program(kind))?)
}
