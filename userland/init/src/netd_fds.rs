//! What havn-init hands netd instead of paths: its view of node.toml, copies of its
//! certificate and client CA (sealed memfds) and the state directory (`O_PATH`). The
//! unprivileged netd then never walks the operator's directories (a clone under a
//! mode-0700 home works). Its private key comes from attestd, sealed by the TPM.

use crate::InitError;
use havn_config::{fds, NodeConfig};
use nix::fcntl::{fcntl, FcntlArg, OFlag, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::stat::Mode;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The descriptors netd gets beside its two channels, each with its fd number.
#[derive(Debug)]
pub struct NetdFds {
    /// (descriptor, where it goes in netd).
    pub fds: Vec<(OwnedFd, i32)>,
}

/// The paths netd's view replaces.
#[derive(Debug, Clone)]
pub struct NetdFiles {
    /// node.toml.
    pub config: PathBuf,
    /// `node.state_dir`.
    pub state_dir: PathBuf,
    /// `netd.tls_cert`.
    pub tls_cert: PathBuf,
    /// `netd.client_ca`.
    pub client_ca: PathBuf,
}

impl NetdFiles {
    /// From the loaded config.
    pub fn new(cfg: &NodeConfig, config: &Path) -> Self {
        Self {
            config: config.to_path_buf(),
            state_dir: cfg.node.state_dir.clone(),
            tls_cert: cfg.netd.tls_cert.clone(),
            client_ca: cfg.netd.client_ca.clone(),
        }
    }
}

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

/// The descriptors execd gets beside its two channels: its view of node.toml, the
/// state directory and the model store (`O_PATH`), so execd, running as its own user,
/// reaches them wherever the operator keeps them.
pub fn execd_fds(
    config: &Path,
    state_dir: &Path,
    model_store: &Path,
) -> Result<NetdFds, InitError> {
    let text = std::fs::read_to_string(config).map_err(file_err("node.toml", config))?;
    let view = havn_config::execd_view(&text, config)?;
    let dir = |what: &'static str, p: &Path| {
        nix::fcntl::open(
            p,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|source| InitError::File {
            what,
            path: p.to_path_buf(),
            source: std::io::Error::from(source),
        })
    };
    Ok(NetdFds {
        fds: vec![
            (
                sealed_memfd("havn-execd.toml", view.as_bytes())?,
                fds::EXECD_CONFIG,
            ),
            (dir("node.state_dir", state_dir)?, fds::EXECD_STATE),
            (dir("execd.model_store", model_store)?, fds::EXECD_MODELS),
        ],
    })
}

impl NetdFds {
    /// Reads node.toml and the TLS files (as root, wherever they are) and opens the
    /// state directory.
    pub fn open(files: &NetdFiles) -> Result<Self, InitError> {
        let text =
            std::fs::read_to_string(&files.config).map_err(file_err("node.toml", &files.config))?;
        let view = havn_config::netd_view(&text, &files.config)?;
        let mut fds = vec![(
            sealed_memfd("havn-netd.toml", view.as_bytes())?,
            fds::NETD_CONFIG,
        )];
        let state = nix::fcntl::open(
            &files.state_dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|source| InitError::StateDir {
            path: files.state_dir.clone(),
            source: std::io::Error::from(source),
        })?;
        fds.push((state, fds::NETD_STATE));
        for (what, path, fd) in [
            ("netd.tls_cert", &files.tls_cert, fds::NETD_TLS_CERT),
            ("netd.client_ca", &files.client_ca, fds::NETD_CLIENT_CA),
        ] {
            let bytes = std::fs::read(path).map_err(file_err(what, path))?;
            fds.push((sealed_memfd(what, &bytes)?, fd));
        }
        Ok(Self { fds })
    }
}
