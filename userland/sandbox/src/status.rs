//! `/proc/<pid>/status`: what the kernel says about a process's identity,
//! capabilities, no_new_privs and seccomp mode.

use crate::{DaemonKind, SandboxError};

/// The sandbox-relevant fields of `/proc/<pid>/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcStatus {
    /// Real, effective, saved, filesystem uid.
    pub uid: [u32; 4],
    /// Real, effective, saved, filesystem gid.
    pub gid: [u32; 4],
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// `CapInh`.
    pub cap_inh: u64,
    /// `CapPrm`.
    pub cap_prm: u64,
    /// `CapEff`.
    pub cap_eff: u64,
    /// `CapBnd`.
    pub cap_bnd: u64,
    /// `CapAmb`.
    pub cap_amb: u64,
    /// `NoNewPrivs`.
    pub no_new_privs: u8,
    /// `Seccomp`: 0 off, 1 strict, 2 filter.
    pub seccomp: u8,
}

impl ProcStatus {
    /// This process.
    pub fn read_self() -> Result<Self, SandboxError> {
        Self::read_path("/proc/self/status")
    }

    /// Another process.
    pub fn read_pid(pid: u32) -> Result<Self, SandboxError> {
        Self::read_path(&format!("/proc/{pid}/status"))
    }

    fn read_path(path: &str) -> Result<Self, SandboxError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SandboxError::Status(format!("{path}: {e}")))?;
        Self::parse(&text).map_err(|e| SandboxError::Status(format!("{path}: {e}")))
    }

    /// Parses the text of a status file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut st = Self::default();
        let mut seen = 0u32;
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            let hex = || u64::from_str_radix(value, 16).map_err(|e| format!("{key}: {e}"));
            match key {
                "Uid" => st.uid = four(value).ok_or("Uid")?,
                "Gid" => st.gid = four(value).ok_or("Gid")?,
                "Groups" => {
                    st.groups = value
                        .split_whitespace()
                        .map(|g| g.parse().map_err(|_| "Groups"))
                        .collect::<Result<_, _>>()?
                }
                "CapInh" => st.cap_inh = hex()?,
                "CapPrm" => st.cap_prm = hex()?,
                "CapEff" => st.cap_eff = hex()?,
                "CapBnd" => st.cap_bnd = hex()?,
                "CapAmb" => st.cap_amb = hex()?,
                "NoNewPrivs" => st.no_new_privs = value.parse().map_err(|_| "NoNewPrivs")?,
                "Seccomp" => st.seccomp = value.parse().map_err(|_| "Seccomp")?,
                _ => continue,
            }
            seen += 1;
        }
        if seen < 10 {
            return Err(format!("only {seen} of the expected fields present"));
        }
        Ok(st)
    }

    /// Whether every capability set is empty.
    pub fn no_capabilities(&self) -> bool {
        self.cap_inh | self.cap_prm | self.cap_eff | self.cap_bnd | self.cap_amb == 0
    }

    /// What havn-init must have done before exec'ing `kind`; `Err` names the first
    /// thing missing.
    pub fn check_dropped(&self, kind: DaemonKind) -> Result<(), &'static str> {
        if self.cap_eff != 0 || self.cap_prm != 0 {
            return Err("effective/permitted capabilities are not empty");
        }
        if self.cap_inh != 0 || self.cap_amb != 0 {
            return Err("inheritable/ambient capabilities are not empty");
        }
        if self.cap_bnd != 0 {
            return Err("the capability bounding set is not empty");
        }
        if kind == DaemonKind::Netd && (self.uid.contains(&0) || self.gid.contains(&0)) {
            return Err("havn-netd must not run as root (uid or gid 0)");
        }
        if kind == DaemonKind::Execd && (self.uid.contains(&0) || self.gid.contains(&0)) {
            return Err("havn-execd must not run as root (uid or gid 0): execd.user");
        }
        if kind != DaemonKind::Attestd && !self.groups.is_empty() {
            return Err("havn-netd and havn-execd must have no supplementary groups");
        }
        Ok(())
    }
}

fn four(v: &str) -> Option<[u32; 4]> {
    let mut it = v.split_whitespace().map(|x| x.parse::<u32>());
    let out = [
        it.next()?.ok()?,
        it.next()?.ok()?,
        it.next()?.ok()?,
        it.next()?.ok()?,
    ];
    Some(out)
}
