//! The messages the spec names: identity, compute classes, capability manifests,
//! job payloads, tickets, heartbeats, receipts, quote evidence. (The mesh's gossip
//! messages are in [`crate::mesh`].)
//!
//! Strings and lists are `heapless` with the bounds below, so a decoded value can
//! never be larger than its type says; JSON that exceeds a bound fails to parse.

use crate::bytes::{Hash32, PubKey32, Sig64};
use crate::cid::Cid;
use serde::{Deserialize, Serialize};

/// Longest workflow id (`[a-z0-9._-]`, e.g. `lm` or `diffusion.v2`).
pub const MAX_WORKFLOW_ID: usize = 64;
/// Longest job id chosen by an orchestrator.
pub const MAX_JOB_ID: usize = 64;
/// Most input artifacts in one job.
pub const MAX_INPUTS: usize = 16;
/// Longest artifact URI (`ar://…`, `https://…`).
pub const MAX_URI: usize = 256;
/// Longest human-readable reason in a refusal or verdict.
pub const MAX_REASON: usize = 256;
/// Most workflows a node advertises.
pub const MAX_WORKFLOWS: usize = 32;
/// Most PCRs in a quote.
pub const MAX_PCRS: usize = 24;
/// Largest TPMS_ATTEST / TPMT_SIGNATURE / TPM2B_PUBLIC blob we carry.
pub const MAX_TPM_BLOB: usize = 1024;
/// Most userland measurement events carried in evidence.
pub const MAX_EVENTS: usize = 256;
/// Largest EK certificate (DER) carried.
pub const MAX_CERT: usize = 4096;
/// Longest short name (GPU model, binary name, backend).
pub const MAX_NAME: usize = 64;

/// Workflow identifier, e.g. `lm`.
pub type WorkflowId = heapless::String<MAX_WORKFLOW_ID>;
/// Job identifier.
pub type JobId = heapless::String<MAX_JOB_ID>;
/// Human-readable reason.
pub type Reason = heapless::String<MAX_REASON>;
/// Short name.
pub type Name = heapless::String<MAX_NAME>;

/// A node's identity: its TPM-sealed ed25519 public key.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    postcard_schema::Schema,
)]
pub struct NodeId(pub PubKey32);

impl core::fmt::Display for NodeId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Display::fmt(&self.0, f)
    }
}

/// The spec's compute classes.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    postcard_schema::Schema,
)]
pub enum ComputeClass {
    /// Lightweight CPU tasks (8 vCPU / 16 GB RAM).
    S,
    /// Mid-tier GPU inference (24 GB VRAM).
    M,
    /// High-precision diffusion / fine-tuning (40+ GB VRAM, 64 GB RAM).
    L,
    /// Multi-node, high VRAM, batching (dual A100/H100 with NVLink).
    XL,
}

impl ComputeClass {
    /// All classes, smallest first.
    pub const ALL: [ComputeClass; 4] = [Self::S, Self::M, Self::L, Self::XL];

    /// Fee multiplier in hundredths (1.5x = 150), exact for canonical encoding.
    pub const fn fee_multiplier_centi(self) -> u32 {
        match self {
            Self::S => 100,
            Self::M => 150,
            Self::L => 250,
            Self::XL => 400,
        }
    }

    /// Collateral floor in whole HAI.
    pub const fn collateral_floor_hai(self) -> u64 {
        match self {
            Self::S => 2_000,
            Self::M => 5_000,
            Self::L => 9_000,
            Self::XL => 18_000,
        }
    }

    /// The class's number on chain (S, M, L, XL = 0..3).
    pub const fn index(self) -> u8 {
        match self {
            Self::S => 0,
            Self::M => 1,
            Self::L => 2,
            Self::XL => 3,
        }
    }

    /// Whether the class needs a GPU.
    pub const fn requires_gpu(self) -> bool {
        !matches!(self, Self::S)
    }

    /// Lower-case-insensitive parse of `S`, `M`, `L`, `XL`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "S" => Some(Self::S),
            "M" => Some(Self::M),
            "L" => Some(Self::L),
            "XL" => Some(Self::XL),
            _ => None,
        }
    }
}

/// A reference to a registered workflow manifest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, postcard_schema::Schema)]
pub struct WorkflowRef {
    /// Registered name.
    pub id: WorkflowId,
    /// sha3-256 of the manifest's canonical bytes.
    pub checksum: Hash32,
}

/// Where an input artifact lives; its content is always pinned by a CID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, postcard_schema::Schema)]
#[serde(rename_all = "snake_case")]
pub enum ArtifactLocation {
    /// IPFS: the CID is the address.
    Ipfs,
    /// Arweave transaction id.
    Arweave {
        /// Transaction id.
        tx: heapless::String<64>,
    },
    /// Another storage URI (`https://…`, `file://…`).
    Uri {
        /// The URI.
        uri: heapless::String<MAX_URI>,
    },
    /// Bytes carried inline by the orchestrator in the job's side channel.
    Inline,
}

/// One named input of a job.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, postcard_schema::Schema)]
pub struct InputArtifact {
    /// The workflow input it binds to (e.g. `prompt`).
    pub name: Name,
    /// Content identifier of exactly the bytes to use.
    pub cid: Cid,
    /// Where to fetch them.
    pub location: ArtifactLocation,
}

/// Privacy flags on a job.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    Serialize,
    Deserialize,
    postcard_schema::Schema,
)]
pub struct PrivacyFlags {
    /// Execute only inside an attested enclave boundary.
    #[serde(default)]
    pub enclave: bool,
    /// Seal the outputs to `output_key` (HPKE): the stored and served outputs artifact
    /// is the envelope, and the receipt's `outputs_cid` names it; no one but the holder
    /// of the key reads the outputs.
    #[serde(default)]
    pub redact_outputs: bool,
    /// The orchestrator's X25519 key the outputs are sealed to (with `redact_outputs`).
    #[serde(default)]
    pub output_key: Option<PubKey32>,
}

/// A job as an orchestrator submits it (`POST /job/accept`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, postcard_schema::Schema)]
pub struct JobPayload {
    /// Orchestrator-chosen job id, unique per orchestrator.
    pub job_id: JobId,
    /// Registered workflow manifest.
    pub workflow: WorkflowRef,
    /// Input artifacts by CID.
    #[serde(default)]
    pub inputs: heapless::Vec<InputArtifact, MAX_INPUTS>,
    /// Required compute class.
    pub compute_class: ComputeClass,
    /// Hard timeout the orchestrator will enforce, in milliseconds.
    pub timeout_ms: u32,
    /// Deterministic seed for the executor.
    #[serde(default)]
    pub seed: u64,
    /// Privacy flags.
    #[serde(default)]
    pub privacy: PrivacyFlags,
}

/// The answer to an accepted job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct Ticket {
    /// Ticket id (monotonic per node).
    pub ticket_id: u64,
    /// Estimated seconds until the receipt.
    pub eta_seconds: u32,
}

/// A job's state as seen by an orchestrator.
#[allow(clippy::large_enum_variant)] // a bounded reason string, held briefly
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Durably queued.
    Queued,
    /// Executing.
    Running,
    /// Finished; the receipt is available.
    Done,
    /// Failed, with the reason.
    Failed {
        /// Why.
        reason: Reason,
    },
}

/// Which backend executed a job.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, postcard_schema::Schema,
)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// CPU backend.
    Cpu,
    /// CUDA backend.
    Cuda,
}

/// The node's honest capability advertisement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct CapabilityManifest {
    /// Who.
    pub node: NodeId,
    /// Highest class it can serve.
    pub compute_class: ComputeClass,
    /// Logical CPUs.
    pub cpu_cores: u16,
    /// RAM in MiB.
    pub ram_mib: u32,
    /// GPU model, if any.
    pub gpu_model: Option<Name>,
    /// VRAM in MiB (0 without a GPU).
    pub vram_mib: u32,
    /// Workflows it serves.
    pub workflows: heapless::Vec<WorkflowRef, MAX_WORKFLOWS>,
    /// The node's chain account (from the chain key attestd sealed): the account
    /// StakeGuard must have bonded for this node key, and the payee of its receipts.
    pub chain_account: crate::chain::Account,
}

/// A [`CapabilityManifest`] signed by the node key over
/// [`crate::sign::Domain::Capabilities`]. attestd assembles the manifest itself from
/// execd's report, its node id and its chain account; netd only relays it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct SignedCapabilityManifest {
    /// The manifest.
    pub manifest: CapabilityManifest,
    /// Signature.
    pub signature: Sig64,
}

/// Most daemons in one self-audit.
pub const MAX_AUDIT_ENTRIES: usize = 4;

/// One running daemon as havn-init found it: the sha256 of `/proc/<pid>/exe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct AuditEntry {
    /// Binary name (e.g. `havn-netd`), as measured at start.
    pub name: Name,
    /// The running process.
    pub pid: u32,
    /// sha256 of the running executable's bytes.
    pub digest: Hash32,
}

/// Proof-of-software: every running daemon still hashes to what was measured into
/// the userland PCR at this boot. Signed under [`crate::sign::Domain::SelfAudit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct SelfAudit {
    /// Who.
    pub node: NodeId,
    /// Unix time in milliseconds of the audit.
    pub unix_ms: u64,
    /// What was found running.
    pub entries: heapless::Vec<AuditEntry, MAX_AUDIT_ENTRIES>,
    /// The userland PCR as read from the TPM at the audit.
    pub userland_pcr: PcrValue,
}

/// A [`SelfAudit`] with the node's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct SignedSelfAudit {
    /// The audit.
    pub audit: SelfAudit,
    /// Signature.
    pub signature: Sig64,
}

/// The spec's receipt.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, postcard_schema::Schema)]
pub struct Receipt {
    /// Which workflow.
    pub workflow_id: WorkflowId,
    /// Which job.
    pub job_id: JobId,
    /// Merkle commitment over every DAG node's output.
    pub runtime_hash: Hash32,
    /// CIDv1 of the outputs file.
    pub outputs_cid: Cid,
    /// CIDv1 of the input bytes the job ran on (so a validator re-executes the same job).
    pub inputs_cid: Cid,
    /// Wall latency from dequeue to result.
    pub latency_ms: u64,
    /// Energy estimate in millijoules.
    pub energy_estimate_mj: u64,
    /// Manifest checksum executed.
    pub manifest_checksum: Hash32,
    /// Seed used.
    pub seed: u64,
    /// Gas-equivalent cost (FLOPs + bytes moved).
    pub gas: u64,
    /// Backend that computed it.
    pub backend: Backend,
    /// Compute class it was billed at.
    pub compute_class: ComputeClass,
    /// Signing node.
    pub node: NodeId,
    /// Who submitted the job (its client certificate's identity): a job id names one
    /// job of one submitter.
    pub submitter: Name,
    /// attestd's clock when it first signed, Unix time in milliseconds: the receipt's
    /// epoch in the mesh (a receipt signed again keeps its first time).
    pub signed_unix_ms: u64,
}

impl Receipt {
    /// Whether `other` states the same result: every field but the measurements of one
    /// run (`latency_ms`, `energy_estimate_mj`, `signed_unix_ms`) is equal. A job run twice (a crash
    /// between signing and recording the ticket) implies the receipt signed first.
    pub fn same_result(&self, other: &Receipt) -> bool {
        let mut o = other.clone();
        o.latency_ms = self.latency_ms;
        o.energy_estimate_mj = self.energy_estimate_mj;
        o.signed_unix_ms = self.signed_unix_ms;
        *self == o
    }
}

/// A receipt with the node's ed25519 signature over
/// [`crate::sign::Domain::Receipt`]'s digest of its postcard bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, postcard_schema::Schema)]
pub struct SignedReceipt {
    /// The receipt.
    pub receipt: Receipt,
    /// Signature.
    pub signature: Sig64,
}

/// A liveness heartbeat (every 5 s), assembled by attestd: the node, the sequence
/// number and the time are attestd's own; the queue counts are what netd reported,
/// labelled as its claims (attestd cannot check them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct Heartbeat {
    /// Who.
    pub node: NodeId,
    /// attestd's durable counter: strictly increasing across restarts of the node.
    pub seq: u64,
    /// attestd's clock when it signed, Unix time in milliseconds.
    pub unix_ms: u64,
    /// What netd reported about its queue (not attested).
    pub netd_claims: NetdClaims,
}

/// Queue counts that only netd knows, carried in a heartbeat as netd's claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct NetdClaims {
    /// Jobs queued.
    pub queue_depth: u32,
    /// Jobs running.
    pub running: u32,
    /// Jobs completed since netd started.
    pub completed: u64,
}

/// A heartbeat with the node's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct SignedHeartbeat {
    /// The heartbeat.
    pub heartbeat: Heartbeat,
    /// Signature.
    pub signature: Sig64,
}

/// One PCR value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct PcrValue {
    /// PCR index.
    pub index: u8,
    /// sha256 bank value.
    pub value: Hash32,
}

/// One userland measurement event (init measures each binary before exec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct MeasurementEvent {
    /// Position in the log (0, 1, 2, …); a gap or reorder fails replay.
    pub seq: u64,
    /// PCR extended.
    pub pcr: u8,
    /// Event type (`binary` for a daemon measured by havn-init).
    pub event_type: heapless::String<32>,
    /// sha256 digest extended.
    pub digest: Hash32,
    /// What was measured (binary name).
    pub description: Name,
}

/// A TPM quote and what binds it to the node key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct QuoteEvidence {
    /// The verifier's nonce.
    pub nonce: Hash32,
    /// The node key the quote binds (in extraData).
    pub node: NodeId,
    /// The node's per-boot payload key (X25519, HPKE) the quote binds beside it.
    pub payload_key: PubKey32,
    /// Marshalled TPMS_ATTEST.
    pub attest: heapless::Vec<u8, MAX_TPM_BLOB>,
    /// Marshalled TPMT_SIGNATURE.
    pub signature: heapless::Vec<u8, MAX_TPM_BLOB>,
    /// Marshalled TPM2B_PUBLIC of the AK.
    pub ak_public: heapless::Vec<u8, MAX_TPM_BLOB>,
    /// Quoted PCR values (sha256 bank).
    pub pcrs: heapless::Vec<PcrValue, MAX_PCRS>,
    /// Userland measurement log.
    pub events: heapless::Vec<MeasurementEvent, MAX_EVENTS>,
    /// The EK certificate (DER), if the TPM holds one.
    pub ek_cert: Option<heapless::Vec<u8, MAX_CERT>>,
}

/// Whether `s` is a safe reference id (a job id or DAG node id named in a URL path or
/// a challenge): 1 to 64 characters from `[A-Za-z0-9._:-]`.
pub fn is_ref_id(s: &str) -> bool {
    (1..=MAX_NAME).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Builds a bounded string, truncating at a char boundary if too long.
pub fn bounded<const N: usize>(s: &str) -> heapless::String<N> {
    let mut out = heapless::String::new();
    for c in s.chars() {
        if out.push(c).is_err() {
            break;
        }
    }
    out
}
