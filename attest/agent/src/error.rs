//! Agent errors.

/// Everything the agent can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The TCTI string did not parse (`device:/dev/tpmrm0`, `swtpm:host=…,port=…`).
    #[error("bad TCTI {0:?}")]
    BadTcti(String),
    /// The TPM does not answer (gone, restarted, or refused the connection).
    #[error("TPM unavailable: {0}")]
    TpmUnavailable(String),
    /// A TPM command failed.
    #[error("TPM {op} failed: {source}")]
    Tpm {
        /// Command.
        op: &'static str,
        /// libtss2 error.
        source: tss_esapi::Error,
    },
    /// The seal PCR set is empty, out of range, or only resettable PCRs (16/23).
    #[error("refused seal PCR set {0:?}: {1}")]
    BadPcrSet(Vec<u32>, &'static str),
    /// A PCR index outside 0..24.
    #[error("PCR {0} out of range")]
    BadPcr(u32),
    /// Extending a PCR that quotes do not cover (verifiers would reject the log).
    #[error("PCR {0} is not in the quote set")]
    PcrNotQuoted(u32),
    /// Unseal refused because these PCRs changed since sealing.
    #[error("node key unseal refused: PCRs {moved:?} changed since sealing")]
    PcrsMoved {
        /// The PCRs whose values differ from seal time.
        moved: Vec<u32>,
    },
    /// The gate is closed: these PCRs differ from the sealing policy.
    #[error("gate closed: PCRs {moved:?} differ from policy")]
    GateClosed {
        /// The PCRs whose values differ.
        moved: Vec<u32>,
    },
    /// The TPM refused to load the sealed blob (another TPM's blob, or corrupted).
    #[error("sealed node key rejected by this TPM (from another TPM or corrupted): {0}")]
    SealedBlobRejected(tss_esapi::Error),
    /// Unseal failed for a reason other than PCR change.
    #[error("unseal failed: {0}")]
    Unseal(tss_esapi::Error),
    /// No sealed node key in the state directory.
    #[error("no sealed node key at {0}")]
    NoNodeKey(String),
    /// The persisted event log does not replay to the current PCR values.
    #[error("persisted event log diverges from TPM PCR {0}")]
    EventLogDiverged(u32),
    /// A state file is malformed.
    #[error("state file {path}: {msg}")]
    State {
        /// File.
        path: String,
        /// Problem.
        msg: String,
    },
    /// I/O on the state directory.
    #[error("I/O on {path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The quoted PCRs kept changing while being read.
    #[error("PCRs changed during quote {0} times")]
    QuoteRace(u32),
    /// Random number generation failed.
    #[error("random: {0}")]
    Random(String),
}

impl AgentError {
    /// Whether this is a write that failed for lack of space (`ENOSPC`, `EDQUOT`).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, AgentError::Io { source, .. }
            if matches!(source.raw_os_error(), Some(28 | 122)))
    }
}

pub(crate) fn tpm(op: &'static str) -> impl FnOnce(tss_esapi::Error) -> AgentError {
    move |source| AgentError::Tpm { op, source }
}

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> AgentError + '_ {
    move |source| AgentError::Io {
        path: path.display().to_string(),
        source,
    }
}
