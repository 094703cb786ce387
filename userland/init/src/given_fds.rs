//! What havn-init hands the unprivileged daemons instead of paths: their view of
//! node.toml (a sealed memfd), directories as `O_PATH` descriptors, and (netd) copies
//! of its certificate and client CA. They then never walk the operator's directories
//! (a clone under a mode-0700 home works). netd's private key comes from attestd,
//! sealed by the TPM.

use crate::plan::Plan;
use crate::InitError;
use havn_config::fds;
use nix::fcntl::{fcntl, FcntlArg, OFlag, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::stat::Mode;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

fn file_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> InitError + 'a {
    move |source| InitError::File {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// A read-only copy of `bytes` in a memfd sealed against any change.
fn sealed_memfd(name: &str, bytes: &[u8]) -> Result<OwnedFd, InitError> {
    let sys = |what| move |source| InitError::Sys { what, source };
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
        .map_err(sys("memfd_create"))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes).map_err(|e| InitError::Sys {
        what: "memfd write",
        source: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    })?;
    let fd = OwnedFd::from(f);
    fcntl(
        fd.as_fd(),
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_WRITE
                | SealFlag::F_SEAL_GROW
                | SealFlag::F_SEAL_SHRINK
                | SealFlag::F_SEAL_SEAL,
        ),
    )
    .map_err(sys("F_ADD_SEALS"))?;
    Ok(fd)
}

/// A directory as an `O_PATH` descriptor: lookups in it need only its own search bit.
fn o_path_dir(what: &'static str, path: &Path) -> Result<OwnedFd, InitError> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| InitError::File {
        what,
        path: path.to_path_buf(),
        source: std::io::Error::from(source),
    })
}

/// The descriptors an unprivileged daemon gets beside its channels, each with its fd
/// number in the daemon.
#[derive(Debug)]
pub struct GivenFds {
    /// (descriptor, where it goes in the daemon).
    pub fds: Vec<(OwnedFd, i32)>,
}

impl GivenFds {
    /// netd's: its view of node.toml (`text`), the state directory, and copies of its
    /// certificate and client CA read as root wherever they are.
    pub fn netd(plan: &Plan, text: &str) -> Result<Self, InitError> {
        let view = havn_config::netd_view(text, &plan.config)?;
        let mut fds = vec![
            (
                sealed_memfd("havn-netd.toml", view.as_bytes())?,
                fds::NETD_CONFIG,
            ),
            (
                o_path_dir("node.state_dir", &plan.state_dir)?,
                fds::NETD_STATE,
            ),
        ];
        for (what, path, fd) in [
            ("netd.tls_cert", &plan.tls_cert, fds::NETD_TLS_CERT),
            ("netd.client_ca", &plan.client_ca, fds::NETD_CLIENT_CA),
        ] {
            let bytes = std::fs::read(path).map_err(file_err(what, path))?;
            fds.push((sealed_memfd(what, &bytes)?, fd));
        }
        Ok(Self { fds })
    }

    /// execd's: its view of node.toml (`text`), the state directory and the model
    /// store, so execd, running as its own user, reaches them wherever they are.
    pub fn execd(plan: &Plan, text: &str) -> Result<Self, InitError> {
        let view = havn_config::execd_view(text, &plan.config)?;
        Ok(Self {
            fds: vec![
                (
                    sealed_memfd("havn-execd.toml", view.as_bytes())?,
                    fds::EXECD_CONFIG,
                ),
                (
                    o_path_dir("node.state_dir", &plan.state_dir)?,
                    fds::EXECD_STATE,
                ),
                (
                    o_path_dir("execd.model_store", &plan.model_store)?,
                    fds::EXECD_MODELS,
                ),
            ],
        })
    }
}

/// node.toml as it is now (read once per start of the set, for the daemons' views).
pub fn read_config(plan: &Plan) -> Result<String, InitError> {
    std::fs::read_to_string(&plan.config).map_err(file_err("node.toml", &plan.config))
}
