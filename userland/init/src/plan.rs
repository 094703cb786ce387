//! The resolved start plan: which binary each daemon is, its environment, its
//! sandbox profile exceptions, and the TPM device to pass.

use crate::InitError;
use havn_config::{fds, NodeConfig};
use havn_proto::Hash32;
use havn_sandbox::{DaemonKind, Profile};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Environment variables a daemon may inherit from havn-init's own environment
/// (everything else is dropped; `RUST_LOG` is always set from the config).
pub fn passthrough_env(kind: DaemonKind) -> &'static [&'static str] {
    match kind {
        DaemonKind::Attestd => &["RUST_BACKTRACE", "TSS2_LOG"],
        DaemonKind::Execd => &["RUST_BACKTRACE", "LD_LIBRARY_PATH", "CUDA_VISIBLE_DEVICES"],
        DaemonKind::Netd => &["RUST_BACKTRACE"],
    }
}

/// One daemon, resolved.
#[derive(Debug, Clone)]
pub struct DaemonPlan {
    /// Which daemon.
    pub kind: DaemonKind,
    /// Binary to hash and exec.
    pub binary: PathBuf,
    /// `tracing` filter passed as `RUST_LOG`.
    pub log: String,
}

impl DaemonPlan {
    /// The child's whole environment.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![("RUST_LOG".to_string(), self.log.clone())];
        for key in passthrough_env(self.kind) {
            if let Ok(v) = std::env::var(key) {
                env.push(((*key).to_string(), v));
            }
        }
        env
    }
}

/// Everything needed to start the set.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Absolute path of node.toml, passed to each daemon as `--config`.
    pub config: PathBuf,
    /// attestd, execd, netd (start order).
    pub daemons: [DaemonPlan; 3],
    /// `device:` TCTI path, opened by init and passed to attestd at fd 6.
    pub tpm_device: Option<PathBuf>,
    /// attestd reaches swtpm over TCP: it keeps the network namespace.
    pub attestd_needs_network: bool,
    /// User netd runs as.
    pub netd_user: String,
    /// User execd runs as.
    pub execd_user: String,
    /// `execd.model_store`, handed to execd as a descriptor.
    pub model_store: PathBuf,
    /// The PCR attestd's replies should name (logged only).
    pub userland_pcr: u8,
    /// `node.state_dir`; each daemon owns `state_dir/<daemon>/`.
    pub state_dir: PathBuf,
    /// `netd.tls_cert`, handed to netd as a sealed memfd copy.
    pub tls_cert: PathBuf,
    /// `netd.client_ca`, handed to netd as a sealed memfd copy.
    pub client_ca: PathBuf,
}

impl Plan {
    /// Resolves binaries and options from the config.
    pub fn new(cfg: &NodeConfig, config_path: &Path) -> Result<Self, InitError> {
        let config = std::path::absolute(config_path).map_err(|source| InitError::Binary {
            daemon: "config",
            path: config_path.to_path_buf(),
            source,
        })?;
        let own_dir = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf));
        let resolve =
            |kind: DaemonKind, explicit: &Option<PathBuf>| -> Result<PathBuf, InitError> {
                let path = match (explicit, &cfg.node.bin_dir, &own_dir) {
                    (Some(p), _, _) => p.clone(),
                    (None, Some(dir), _) => dir.join(kind.binary()),
                    (None, None, Some(dir)) => dir.join(kind.binary()),
                    (None, None, None) => PathBuf::from(kind.binary()),
                };
                let meta = std::fs::metadata(&path).map_err(|source| InitError::Binary {
                    daemon: kind.binary(),
                    path: path.clone(),
                    source,
                })?;
                if !meta.is_file() {
                    return Err(InitError::Binary {
                        daemon: kind.binary(),
                        path,
                        source: std::io::Error::other("not a regular file"),
                    });
                }
                Ok(path)
            };
        let log = |l: &Option<String>| l.clone().unwrap_or_else(|| "info".into());
        let daemons = [
            DaemonPlan {
                kind: DaemonKind::Attestd,
                binary: resolve(DaemonKind::Attestd, &cfg.attestd.binary)?,
                log: log(&cfg.attestd.log),
            },
            DaemonPlan {
                kind: DaemonKind::Execd,
                binary: resolve(DaemonKind::Execd, &cfg.execd.daemon.binary)?,
                log: log(&cfg.execd.daemon.log),
            },
            DaemonPlan {
                kind: DaemonKind::Netd,
                binary: resolve(DaemonKind::Netd, &cfg.netd.daemon.binary)?,
                log: log(&cfg.netd.daemon.log),
            },
        ];
        let tpm_device = cfg.tpm.tcti.strip_prefix("device:").map(PathBuf::from);
        Ok(Self {
            config,
            daemons,
            tpm_device,
            attestd_needs_network: cfg.tpm.tcti.starts_with("swtpm:"),
            netd_user: cfg.netd.user.clone(),
            execd_user: cfg.execd.user.clone(),
            model_store: cfg.execd.model_store.clone(),
            userland_pcr: cfg.tpm.userland_pcr,
            state_dir: cfg.node.state_dir.clone(),
            tls_cert: cfg.netd.tls_cert.clone(),
            client_ca: cfg.netd.client_ca.clone(),
        })
    }

    /// The user `kind` runs as (attestd keeps havn-init's).
    pub fn user(&self, kind: DaemonKind) -> &str {
        match kind {
            DaemonKind::Netd => &self.netd_user,
            DaemonKind::Execd => &self.execd_user,
            DaemonKind::Attestd => "root",
        }
    }

    /// The sandbox profile of `kind` (without descriptors and environment).
    pub fn profile(&self, kind: DaemonKind) -> Result<Profile, InitError> {
        let p =
            Profile::for_daemon(kind, self.user(kind)).map_err(|source| InitError::Sandbox {
                daemon: kind.binary(),
                source,
            })?;
        Ok(match kind {
            DaemonKind::Attestd if self.attestd_needs_network => p.keep_network(),
            _ => p,
        })
    }

    /// Creates `state_dir/<daemon>/` for each daemon, mode 0700, owned by the uid/gid
    /// the daemon runs as (netd cannot create it itself: it has no capabilities).
    pub fn prepare_state_dirs(&self) -> Result<(), InitError> {
        use std::os::unix::fs::PermissionsExt;
        // netd reaches state_dir through a descriptor (never through the operator's
        // directories above it), but looking up its own subdirectory in it still needs
        // the search bit.
        let io = |source| InitError::StateDir {
            path: self.state_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&self.state_dir).map_err(io)?;
        let mode = std::fs::metadata(&self.state_dir)
            .map_err(io)?
            .permissions()
            .mode()
            & 0o7777;
        if mode & 0o001 == 0 {
            tracing::warn!(state_dir = %self.state_dir.display(), mode = format!("{mode:o}"),
                "state_dir not searchable by the daemons' users: adding the search bit (o+x)");
            std::fs::set_permissions(
                &self.state_dir,
                std::fs::Permissions::from_mode(mode | 0o001),
            )
            .map_err(io)?;
        }
        for d in &self.daemons {
            let dir = self.state_dir.join(d.kind.name());
            let (uid, gid) = self.profile(d.kind)?.ids().unwrap_or((0, 0));
            let io = |source| InitError::StateDir {
                path: dir.clone(),
                source,
            };
            std::fs::create_dir_all(&dir).map_err(io)?;
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(io)?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
            // Outputs and challenge material execd writes and netd serves: execd's,
            // readable by netd.
            if d.kind == DaemonKind::Execd {
                let art = self.state_dir.join("artifacts");
                let io = |source| InitError::StateDir {
                    path: art.clone(),
                    source,
                };
                std::fs::create_dir_all(&art).map_err(io)?;
                std::os::unix::fs::chown(&art, Some(uid), Some(gid)).map_err(io)?;
                std::fs::set_permissions(&art, std::fs::Permissions::from_mode(0o755))
                    .map_err(io)?;
                // The model store execd reads (filled by `havnctl models fetch`).
                std::fs::create_dir_all(&self.model_store).map_err(|source| {
                    InitError::StateDir {
                        path: self.model_store.clone(),
                        source,
                    }
                })?;
            }
            // Job inputs netd receives (`POST /artifact`) and execd reads: netd's, and
            // readable by name by the executor.
            if d.kind == DaemonKind::Netd {
                let up = havn_config::uploads_dir(&self.state_dir);
                let io = |source| InitError::StateDir {
                    path: up.clone(),
                    source,
                };
                std::fs::create_dir_all(&up).map_err(io)?;
                std::os::unix::fs::chown(&up, Some(uid), Some(gid)).map_err(io)?;
                std::fs::set_permissions(&up, std::fs::Permissions::from_mode(0o755))
                    .map_err(io)?;
            }
        }
        Ok(())
    }

    /// The descriptor numbers `kind` gets, with what they carry.
    pub fn fd_layout(&self, kind: DaemonKind) -> Vec<(i32, &'static str)> {
        match kind {
            DaemonKind::Attestd => {
                let mut v = vec![
                    (fds::ATTESTD_INIT, "init-attestd (server)"),
                    (fds::ATTESTD_EXECD, "execd-attestd (server)"),
                    (fds::ATTESTD_NETD, "netd-attestd (server)"),
                ];
                if self.tpm_device.is_some() {
                    v.push((fds::ATTESTD_TPM, "TPM device"));
                }
                v
            }
            DaemonKind::Execd => vec![
                (fds::EXECD_ATTESTD, "execd-attestd (client)"),
                (fds::EXECD_NETD, "netd-execd (server)"),
                (
                    fds::EXECD_CONFIG,
                    "execd's view of node.toml (sealed memfd)",
                ),
                (fds::EXECD_STATE, "state_dir (O_PATH)"),
                (fds::EXECD_MODELS, "execd.model_store (O_PATH)"),
            ],
            DaemonKind::Netd => vec![
                (fds::NETD_EXECD, "netd-execd (client)"),
                (fds::NETD_ATTESTD, "netd-attestd (client)"),
                (fds::NETD_CONFIG, "netd's view of node.toml (sealed memfd)"),
                (fds::NETD_STATE, "state_dir (O_PATH)"),
                (fds::NETD_TLS_CERT, "netd.tls_cert (sealed memfd)"),
                (fds::NETD_CLIENT_CA, "netd.client_ca (sealed memfd)"),
            ],
        }
    }

    /// The paths each daemon itself opens (netd opens none: havn-init hands it
    /// descriptors, and it looks up only its own names in `state_dir`), with the user
    /// it runs as.
    pub fn path_uses(&self, cfg: &NodeConfig) -> Result<Vec<crate::reach::Use>, InitError> {
        use crate::reach::{Need, Use};
        let ids = |kind| -> Result<(u32, u32), InitError> {
            Ok(self.profile(kind)?.ids().unwrap_or_else(|| {
                (
                    nix::unistd::geteuid().as_raw(),
                    nix::unistd::getegid().as_raw(),
                )
            }))
        };
        let (a, e) = (ids(DaemonKind::Attestd)?, ids(DaemonKind::Execd)?);
        Ok(vec![
            Use {
                daemon: "havn-attestd",
                ids: a,
                setting: "node.state_dir",
                path: self.state_dir.clone(),
                need: Need::Search,
                via_fd: false,
            },
            Use {
                daemon: "havn-execd",
                ids: e,
                setting: "node.state_dir (through its descriptor)",
                path: self.state_dir.clone(),
                need: Need::Search,
                via_fd: true,
            },
            Use {
                daemon: "havn-execd",
                ids: e,
                setting: "execd.model_store (through its descriptor)",
                path: cfg.execd.model_store.clone(),
                need: Need::Search,
                via_fd: true,
            },
        ])
    }

    /// Human-readable plan for `--check`.
    pub fn describe(&self) -> Result<String, InitError> {
        let mut s = String::new();
        writeln!(s, "config: {}", self.config.display()).ok();
        if let Some(t) = &self.tpm_device {
            writeln!(
                s,
                "tpm device (fd {} of attestd): {}",
                fds::ATTESTD_TPM,
                t.display()
            )
            .ok();
        }
        for d in &self.daemons {
            let digest = hash_file(&d.binary).map_err(|source| InitError::Binary {
                daemon: d.kind.binary(),
                path: d.binary.clone(),
                source,
            })?;
            let p = self.profile(d.kind)?;
            writeln!(s, "{}:", d.kind.binary()).ok();
            writeln!(s, "  binary: {}", d.binary.display()).ok();
            writeln!(s, "  sha256: {}", digest.to_hex()).ok();
            let fds: Vec<String> = self
                .fd_layout(d.kind)
                .into_iter()
                .map(|(n, what)| format!("{n}={what}"))
                .collect();
            writeln!(s, "  fds: 0,1,2 + {}", fds.join(", ")).ok();
            let user = p
                .ids()
                .map_or("unchanged (root)".to_string(), |(u, g)| format!("{u}:{g}"));
            writeln!(s, "  uid:gid: {user}; capabilities: none; no_new_privs").ok();
            writeln!(s, "  namespaces: {:?}", p.namespaces()).ok();
            let env: Vec<String> = d.env().into_iter().map(|(k, _)| k).collect();
            writeln!(s, "  env: {}", env.join(" ")).ok();
            writeln!(
                s,
                "  seccomp (applied by the daemon): policy/{}.json",
                d.kind.name()
            )
            .ok();
        }
        Ok(s)
    }
}

/// sha256 of a file's bytes.
pub fn hash_file(path: &Path) -> std::io::Result<Hash32> {
    hash_reader(&mut std::fs::File::open(path)?)
}

/// sha256 of everything `f` yields.
pub fn hash_reader(f: &mut impl Read) -> std::io::Result<Hash32> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(Hash32(h.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str, bin_dir: Option<&Path>) -> NodeConfig {
        let mut text = String::from("[node]\nstate_dir = \"/tmp/x\"\n");
        if let Some(d) = bin_dir {
            text.push_str(&format!("bin_dir = {:?}\n", d));
        }
        text.push_str(
            "[tpm]\ntcti = \"swtpm:host=127.0.0.1,port=2321\"\n[netd]\nlisten = \"127.0.0.1:8443\"\n\
             tls_cert = \"c\"\ntls_key = \"k\"\nclient_ca = \"ca\"\n",
        );
        text.push_str(extra);
        NodeConfig::parse(&text, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn binaries_resolve_from_config_then_bin_dir_and_missing_ones_are_named() {
        let dir = std::env::temp_dir().join(format!("havn-init-plan-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for n in ["havn-attestd", "havn-execd", "havn-netd", "other"] {
            std::fs::write(dir.join(n), n).unwrap();
        }
        let other = dir.join("other");
        let c = cfg(&format!("[execd]\nbinary = {:?}\n", other), Some(&dir));
        let p = Plan::new(&c, Path::new("t.toml")).unwrap();
        assert_eq!(p.daemons[0].binary, dir.join("havn-attestd"));
        assert_eq!(p.daemons[1].binary, other);
        assert!(p.attestd_needs_network && p.tpm_device.is_none());
        assert_eq!(hash_file(&other).unwrap().to_hex(), {
            let d: [u8; 32] = Sha256::digest(b"other").into();
            Hash32(d).to_hex()
        });
        std::fs::remove_file(dir.join("havn-netd")).unwrap();
        let e = Plan::new(&c, Path::new("t.toml")).unwrap_err().to_string();
        assert!(e.contains("havn-netd"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn environment_is_an_allow_list() {
        let d = DaemonPlan {
            kind: DaemonKind::Netd,
            binary: PathBuf::new(),
            log: "debug".into(),
        };
        let keys: Vec<String> = d.env().into_iter().map(|(k, _)| k).collect();
        assert!(keys
            .iter()
            .all(|k| k == "RUST_LOG" || k == "RUST_BACKTRACE"));
        assert!(!passthrough_env(DaemonKind::Netd).contains(&"LD_LIBRARY_PATH"));
        assert!(passthrough_env(DaemonKind::Execd).contains(&"LD_LIBRARY_PATH"));
    }
}
