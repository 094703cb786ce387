//! havn-sandbox integration tests (one binary, Lighthouse `tests/main.rs` style).

mod malicious;
mod policy;
mod profile;

use std::process::{Command, Output};

/// The deliberately bad binary.
pub fn malicious() -> Command {
    // Through a descriptor: the sandboxed child (uid nobody) may not be able to walk
    // to the build directory (a clone under a mode-0700 home).
    Command::new(havn_testkit::exec_path(env!(
        "CARGO_BIN_EXE_havn-sandbox-malicious"
    )))
}

/// True when the test may change uids, namespaces and capabilities.
pub fn root() -> bool {
    havn_testkit::require_root("changes uids, namespaces and capabilities")
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
