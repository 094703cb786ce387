//! The IPC channels between the daemons. Each socketpair carries exactly one
//! request/response enum pair (OpenSSH `monitor.c` style): a peer can only ask what
//! its channel allows, and the privileged side re-derives what it acts on.
//!
//! | channel | requester → responder | purpose |
//! |---|---|---|
//! | [`Channel::InitAttestd`] | havn-init → havn-attestd | measure binaries before exec, status, self-audits |
//! | [`Channel::ExecdAttestd`] | havn-execd → havn-attestd | the gate; report results to be signed; capabilities |
//! | [`Channel::NetdExecd`] | havn-netd → havn-execd | run queued jobs, capabilities, node proofs |
//! | [`Channel::NetdAttestd`] | havn-netd → havn-attestd | quotes for validators, heartbeats, signed self-audit and capability manifest |

use crate::bytes::{Hash32, PubKey32, Sig64};
use crate::cid::Cid;
use crate::types::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The four channels.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, postcard_schema::Schema,
)]
pub enum Channel {
    /// havn-init → havn-attestd.
    InitAttestd,
    /// havn-execd → havn-attestd.
    ExecdAttestd,
    /// havn-netd → havn-execd.
    NetdExecd,
    /// havn-netd → havn-attestd.
    NetdAttestd,
}

impl Channel {
    /// All channels.
    pub const ALL: [Channel; 4] = [
        Self::InitAttestd,
        Self::ExecdAttestd,
        Self::NetdExecd,
        Self::NetdAttestd,
    ];

    /// Stable name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::InitAttestd => "init-attestd",
            Self::ExecdAttestd => "execd-attestd",
            Self::NetdExecd => "netd-execd",
            Self::NetdAttestd => "netd-attestd",
        }
    }
}

/// A message that may travel in a frame.
pub trait Message: Serialize + DeserializeOwned {
    /// Type name used in diagnostics and the schema hash.
    const NAME: &'static str;
    /// Number of enum variants (tags `0..VARIANTS` are known; others are
    /// `WireError::UnknownMessage`). Structs use 1 and are not tag-checked.
    const VARIANTS: u32;
    /// Whether the encoding starts with an enum tag.
    const IS_ENUM: bool = true;
    /// The variant's index, for allow-tables and logs.
    fn tag(&self) -> u32;
}

/// Flat, copyable errors a daemon returns over IPC (Hubris style: a peer restart is
/// an expected event, not a panic).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    thiserror::Error,
    postcard_schema::Schema,
)]
pub enum RemoteError {
    /// The attestation gate is closed (PCRs off policy, or the TPM is gone).
    #[error("attestation gate closed")]
    GateClosed,
    /// The TPM did not answer.
    #[error("TPM unavailable")]
    TpmUnavailable,
    /// A different receipt for this job id was already signed (slashing protection):
    /// the id was used before for another result.
    #[error("this job id already has a different signed receipt")]
    AlreadySigned,
    /// The request is not allowed on this channel in this phase.
    #[error("request not permitted in this phase")]
    NotPermitted,
    /// The request was malformed.
    #[error("bad request")]
    BadRequest,
    /// The workflow is not registered.
    #[error("unknown workflow")]
    UnknownWorkflow,
    /// The job failed during execution.
    #[error("execution failed")]
    ExecutionFailed,
    /// The node cannot serve this compute class.
    #[error("compute class not supported by this node")]
    ClassUnsupported,
    /// Internal error on the responder.
    #[error("internal error")]
    Internal,
    /// No such job (or it is no longer retained).
    #[error("unknown job")]
    UnknownJob,
    /// The job's workflow has no node with this id.
    #[error("unknown DAG node")]
    UnknownNode,
    /// What was asked for does not exist yet (e.g. no self-audit has run).
    #[error("not available yet")]
    NotYetAvailable,
    /// The chain key's signing policy refuses this call (attestd logs which rule).
    #[error("refused by the chain key's signing policy")]
    ChainPolicy,
    /// The responder's disk is full: nothing was written; retry once space is freed.
    #[error("node storage full")]
    StorageFull,
}

/// What execd reports after running a job; attestd assembles and signs the
/// [`Receipt`] from this and its own identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct JobResult {
    /// Which workflow.
    pub workflow_id: WorkflowId,
    /// Which job.
    pub job_id: JobId,
    /// Merkle commitment of the run.
    pub runtime_hash: Hash32,
    /// CID of the outputs file.
    pub outputs_cid: Cid,
    /// CID of the input bytes the job ran on (its `inputs` artifact, or the workflow's
    /// default inputs).
    pub inputs_cid: Cid,
    /// Wall latency.
    pub latency_ms: u64,
    /// Energy estimate in millijoules.
    pub energy_estimate_mj: u64,
    /// Manifest executed.
    pub manifest_checksum: Hash32,
    /// Seed used.
    pub seed: u64,
    /// Gas-equivalent cost.
    pub gas: u64,
    /// Backend used.
    pub backend: Backend,
    /// Class billed.
    pub compute_class: ComputeClass,
    /// Who submitted the job (the client certificate's identity).
    pub submitter: Name,
}

impl JobResult {
    /// The receipt attestd signs: this result plus the signing node's identity and
    /// attestd's clock.
    pub fn into_receipt(self, node: NodeId, signed_unix_ms: u64) -> Receipt {
        Receipt {
            workflow_id: self.workflow_id,
            job_id: self.job_id,
            runtime_hash: self.runtime_hash,
            outputs_cid: self.outputs_cid,
            inputs_cid: self.inputs_cid,
            latency_ms: self.latency_ms,
            energy_estimate_mj: self.energy_estimate_mj,
            manifest_checksum: self.manifest_checksum,
            seed: self.seed,
            gas: self.gas,
            backend: self.backend,
            compute_class: self.compute_class,
            node,
            submitter: self.submitter,
            signed_unix_ms,
        }
    }
}

impl From<Receipt> for JobResult {
    fn from(r: Receipt) -> Self {
        Self {
            workflow_id: r.workflow_id,
            job_id: r.job_id,
            runtime_hash: r.runtime_hash,
            outputs_cid: r.outputs_cid,
            inputs_cid: r.inputs_cid,
            latency_ms: r.latency_ms,
            energy_estimate_mj: r.energy_estimate_mj,
            manifest_checksum: r.manifest_checksum,
            seed: r.seed,
            gas: r.gas,
            backend: r.backend,
            compute_class: r.compute_class,
            submitter: r.submitter,
        }
    }
}

/// The executor's view of the hardware.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct CapabilityReport {
    /// Highest honest class.
    pub compute_class: ComputeClass,
    /// Logical CPUs.
    pub cpu_cores: u16,
    /// RAM in MiB.
    pub ram_mib: u32,
    /// GPU model.
    pub gpu_model: Option<Name>,
    /// VRAM in MiB.
    pub vram_mib: u32,
    /// Registered workflows.
    pub workflows: heapless::Vec<WorkflowRef, MAX_WORKFLOWS>,
}

impl CapabilityReport {
    /// The manifest attestd signs: this report, with the node id and the bonded
    /// stake that only attestd may fill in.
    pub fn into_manifest(
        self,
        node: NodeId,
        chain_account: crate::chain::Account,
    ) -> CapabilityManifest {
        CapabilityManifest {
            node,
            compute_class: self.compute_class,
            cpu_cores: self.cpu_cores,
            ram_mib: self.ram_mib,
            gpu_model: self.gpu_model,
            vram_mib: self.vram_mib,
            workflows: self.workflows,
            chain_account,
        }
    }
}

macro_rules! message {
    ($ty:ident, $name:literal, [$($variant:ident),* $(,)?]) => {
        impl Message for $ty {
            const NAME: &'static str = $name;
            const VARIANTS: u32 = [$(stringify!($variant)),*].len() as u32;
            fn tag(&self) -> u32 {
                let names = [$(stringify!($variant)),*];
                let mine = match self { $($ty::$variant { .. } => stringify!($variant)),* };
                names.iter().position(|n| *n == mine).map_or(u32::MAX, |p| p as u32)
            }
        }
    };
}

// ---- init → attestd -------------------------------------------------------------

/// havn-init → havn-attestd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub enum InitRequest {
    /// Extend the userland PCR with a binary's sha256 before init execs it, and
    /// record the event in the measurement log.
    Measure {
        /// Binary name (e.g. `havn-netd`).
        name: Name,
        /// sha256 of the binary's bytes.
        digest: Hash32,
    },
    /// Report gate state and identity.
    Status,
    /// Flush state and exit.
    Shutdown,
    /// Self-audit: the sha256 of each running daemon's `/proc/<pid>/exe`, as havn-init
    /// (root, with capabilities) read it. attestd compares each with this boot's
    /// measurement; a mismatch closes the gate, a full match is signed.
    Audit {
        /// One entry per running daemon.
        entries: Box<heapless::Vec<AuditEntry, MAX_AUDIT_ENTRIES>>,
    },
}
message!(
    InitRequest,
    "InitRequest",
    [Measure, Status, Shutdown, Audit]
);

/// havn-attestd → havn-init.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub enum InitResponse {
    /// Extended; the event is the `index`th of the log.
    Measured {
        /// PCR extended.
        pcr: u8,
        /// Event index.
        index: u32,
    },
    /// Current state.
    Status {
        /// Node identity.
        node: NodeId,
        /// Whether execd may run jobs.
        gate_open: bool,
        /// Events in the measurement log.
        events: u32,
    },
    /// Acknowledged shutdown.
    ShuttingDown,
    /// Refused.
    Error(RemoteError),
    /// The audit was judged.
    Audited {
        /// Every entry matched this boot's measurements (and the record was signed).
        matched: bool,
        /// Whether execd may run jobs now.
        gate_open: bool,
    },
}
message!(
    InitResponse,
    "InitResponse",
    [Measured, Status, ShuttingDown, Error, Audited]
);

// ---- execd → attestd ------------------------------------------------------------

/// havn-execd → havn-attestd.
// One message in flight per channel, decoded into a bounded value: the size
// difference between variants costs stack, never wire bytes or heap.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub enum ExecdRequest {
    /// May this job run now?
    Gate {
        /// Job about to run.
        job_id: JobId,
    },
    /// The job finished: assemble and sign its receipt.
    Report(JobResult),
    /// execd's view of the hardware, once at start: attestd assembles and signs the
    /// node's [`CapabilityManifest`] from it.
    Capabilities(Box<CapabilityReport>),
    /// A validator's execd re-executed another node's receipt: attestd assembles the
    /// verdict from this result and signs it under slashing protection.
    Reexecuted(Box<Reexecution>),
    /// The private half of this boot's payload key (HPKE, X25519), so that execd, and
    /// only execd, opens encrypted job inputs, in memory. Once per start of attestd.
    PayloadKey,
}
message!(
    ExecdRequest,
    "ExecdRequest",
    [Gate, Report, Capabilities, Reexecuted, PayloadKey]
);

/// A 32-byte secret carried over IPC in memory; `Debug` never prints it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct Secret32(pub [u8; 32]);

impl core::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secret32(..)")
    }
}

/// What a validator's execd found when it re-executed a receipt's job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct Reexecution {
    /// The receipt, as its node signed it.
    pub receipt: SignedReceipt,
    /// The runtime hash the re-execution gave.
    pub runtime_hash: Hash32,
    /// The first DAG node (leaf index) whose output differed, when it differed.
    pub first_divergent: Option<u32>,
    /// The challenge execd built from the executing node's leaves (a first rejection):
    /// attestd checks its openings and signs it with the verdict.
    pub challenge: Option<crate::mesh::Challenge>,
}

/// A verdict, and the challenge signed with it when this validator is the challenger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct Judgement {
    /// The verdict.
    pub verdict: crate::mesh::SignedVerdict,
    /// The challenge (a first rejection, with the openings).
    pub challenge: Option<crate::mesh::SignedChallenge>,
}

/// Most DAG nodes (Merkle leaves) a job's commitment list carries over IPC.
pub const MAX_LEAVES: usize = 1024;

/// A job's per-node output hashes in topological order (the Merkle leaves under its
/// runtime hash).
pub type Leaves = heapless::Vec<Hash32, MAX_LEAVES>;

/// What a validator's execd re-executes a receipt with.
#[allow(clippy::large_enum_variant)] // boxed where large
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub enum ReexecEvidence {
    /// Nothing yet: a match is confirmed, a mismatch answers `Diverged`.
    None,
    /// The executing node's leaves (fetched from it): a mismatch becomes a challenge.
    Leaves(Box<Leaves>),
    /// Another validator's challenge: upheld when our run agrees with it.
    Challenge(Box<crate::mesh::SignedChallenge>),
}

/// havn-attestd → havn-execd.
// One message in flight per channel: the size difference costs stack, not wire bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub enum ExecdResponse {
    /// Platform state matches policy: run.
    GateOpen,
    /// Do not run.
    GateClosed {
        /// Why (e.g. which PCRs moved).
        reason: Reason,
    },
    /// The signed receipt.
    Receipt(SignedReceipt),
    /// Refused.
    Error(RemoteError),
    /// Accepted (e.g. the capability report).
    Ack,
    /// The verdict on a re-executed receipt (and the challenge, when we challenge).
    Verdict(Box<Judgement>),
    /// This boot's payload key: the private half, and the public half the quote binds.
    PayloadKey {
        /// X25519 private key.
        secret: Secret32,
        /// X25519 public key (as quoted).
        public: PubKey32,
    },
}
message!(
    ExecdResponse,
    "ExecdResponse",
    [GateOpen, GateClosed, Receipt, Error, Ack, Verdict, PayloadKey]
);

// ---- netd → execd ---------------------------------------------------------------

/// havn-netd → havn-execd.
// One message in flight per channel, decoded into a bounded value: the size
// difference between variants costs stack, never wire bytes or heap.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub enum NetdExecRequest {
    /// Run a durably queued job; the answer comes when it finishes.
    Run {
        /// netd's ticket.
        ticket_id: u64,
        /// The job.
        payload: JobPayload,
        /// Who submitted it (the client certificate's identity): job ids are scoped per
        /// submitter, and the receipt names it.
        submitter: Name,
    },
    /// What can this node run?
    Capabilities,
    /// Challenge material for one DAG node of a finished job: execd writes the node's
    /// Merkle proof (JSON) and its input tensors (safetensors) into the
    /// content-addressed artifact store and answers [`NetdExecResponse::Proof`].
    Prove {
        /// The finished job.
        job_id: JobId,
        /// The DAG node id (`[A-Za-z0-9._:-]`).
        node_id: Name,
        /// Who submitted the job (job ids are scoped per submitter).
        submitter: Name,
    },
    /// A validator re-executes another node's receipt; attestd signs the verdict.
    Reexecute {
        /// The receipt.
        receipt: SignedReceipt,
        /// What we know of the executing node's commitments.
        evidence: ReexecEvidence,
    },
    /// The per-node output hashes of one of our finished jobs (a validator asks).
    Leaves {
        /// The job.
        job_id: JobId,
        /// Its submitter.
        submitter: Name,
    },
}
message!(
    NetdExecRequest,
    "NetdExecRequest",
    [Run, Capabilities, Prove, Reexecute, Leaves]
);

/// havn-execd → havn-netd.
// One message in flight per channel, decoded into a bounded value: the size
// difference between variants costs stack, never wire bytes or heap.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub enum NetdExecResponse {
    /// Finished with a signed receipt.
    Done {
        /// netd's ticket.
        ticket_id: u64,
        /// Receipt signed by attestd.
        receipt: SignedReceipt,
    },
    /// Failed.
    Failed {
        /// netd's ticket.
        ticket_id: u64,
        /// Machine-readable cause.
        error: RemoteError,
        /// Human-readable reason.
        reason: Reason,
    },
    /// The node's capabilities.
    Capabilities(CapabilityReport),
    /// Challenge material is in the artifact store (`state_dir/artifacts/<cid>`).
    Proof {
        /// CID of the proof JSON (the format `havnctl run --prove` writes).
        proof_cid: Cid,
        /// CID of the node's input tensors (safetensors).
        inputs_cid: Cid,
        /// The runtime hash the proof commits to (the signed receipt's).
        runtime_hash: Hash32,
    },
    /// A request other than `Run` was refused (e.g. `Prove` for an unknown job).
    Refused {
        /// Machine-readable cause.
        error: RemoteError,
        /// Human-readable reason.
        reason: Reason,
    },
    /// The re-execution's verdict, signed by attestd.
    Judged(Box<Judgement>),
    /// The re-execution differs from the receipt: fetch the executing node's leaves and
    /// re-execute with them to name the divergent node.
    Diverged {
        /// Our runtime hash.
        runtime_hash: Hash32,
    },
    /// A job's leaves.
    Leaves(Box<Leaves>),
}
message!(
    NetdExecResponse,
    "NetdExecResponse",
    [
        Done,
        Failed,
        Capabilities,
        Proof,
        Refused,
        Judged,
        Diverged,
        Leaves
    ]
);

// ---- netd → attestd -------------------------------------------------------------

/// havn-netd → havn-attestd. Note what is absent: netd can never ask for a receipt
/// signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub enum NetdAttestRequest {
    /// Quote for a validator; the nonce is the only input.
    Quote {
        /// Verifier nonce.
        nonce: Hash32,
    },
    /// Sign a heartbeat: attestd adds the node id, its own sequence number and time;
    /// netd gives only its queue counts, which the heartbeat labels as netd's claims.
    Heartbeat(NetdClaims),
    /// The node's public key.
    Identity,
    /// The latest signed self-audit.
    SelfAudit,
    /// The capability manifest attestd signed (from execd's report).
    Capabilities,
    /// netd's TLS private key, which exists on disk only sealed by the TPM: attestd
    /// unseals it and hands it over in memory, once per start.
    TlsKey,
    /// A freshly signed mesh manifest binding netd's libp2p peer id: attestd fills in
    /// the node key, role, class and weight from its own config, its clock, and a quote
    /// over the manifest's digest.
    MeshManifest {
        /// netd's libp2p peer id (multihash bytes).
        peer_id: heapless::Vec<u8, { crate::mesh::MAX_PEER_ID }>,
    },
    /// The node's sampling-lottery ticket for a receipt (a validator only).
    Lottery {
        /// The receipt's signing digest.
        receipt_digest: Hash32,
    },
    /// Sign a vote on an epoch settlement (a validator only; one per class and epoch,
    /// ever).
    Vote(Box<crate::mesh::EpochSettlement>),
    /// Sign a call with the sealed chain key; attestd refuses any call outside its
    /// signing policy (bond to the configured owner, claim, vote, challenge).
    ChainTx(Box<crate::chain::ChainTx>),
    /// Sign a quorum message with the chain key (a validator only; once per subject).
    ChainVote(Box<crate::chain::ChainVote>),
    /// Sign an SLA alert as a Standard Webhooks `v1a` (Ed25519) signature with the node
    /// key: attestd takes the time itself and signs `{id}.{unix_s}.{body}` only for an
    /// id of [`is_webhook_id`] and a body that is a sealed alert
    /// (`{"type":"havn.alert.sealed","sealed":"<base64>"}`), so netd can neither
    /// backdate an alert nor have the node key sign plaintext claims.
    SignWebhook(Box<WebhookToSign>),
}

/// Longest alert body attestd signs (the sealed JSON).
pub const MAX_WEBHOOK_BODY: usize = 8192;

/// An alert to sign ([`NetdAttestRequest::SignWebhook`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct WebhookToSign {
    /// The `webhook-id` (stable across retries).
    pub id: heapless::String<64>,
    /// The HTTP body, exactly as sent.
    pub body: heapless::Vec<u8, MAX_WEBHOOK_BODY>,
}

/// Whether `id` is a webhook id attestd signs: `msg_` and 1 to 60 of `[A-Za-z0-9_]`.
pub fn is_webhook_id(id: &str) -> bool {
    id.strip_prefix("msg_").is_some_and(|rest| {
        (1..=60).contains(&rest.len())
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// The bytes a Standard Webhooks signature covers: `{id}.{unix_s}.{body}`.
pub fn webhook_content(id: &str, unix_s: u64, body: &[u8]) -> Vec<u8> {
    let mut v = format!("{id}.{unix_s}.").into_bytes();
    v.extend_from_slice(body);
    v
}
message!(
    NetdAttestRequest,
    "NetdAttestRequest",
    [
        Quote,
        Heartbeat,
        Identity,
        SelfAudit,
        Capabilities,
        TlsKey,
        MeshManifest,
        Lottery,
        Vote,
        ChainTx,
        ChainVote,
        SignWebhook
    ]
);

/// havn-attestd → havn-netd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub enum NetdAttestResponse {
    /// Evidence.
    Quote(Box<QuoteEvidence>),
    /// Signed heartbeat.
    Heartbeat(SignedHeartbeat),
    /// Node key and chain account.
    Identity {
        /// ed25519 public key.
        node: PubKey32,
        /// The chain account of the sealed chain key (zero while it is unavailable).
        chain_account: crate::chain::Account,
        /// This boot's payload key (X25519), bound into every quote: encrypted job
        /// inputs must be sealed to it (zero while it is unavailable).
        payload_key: PubKey32,
    },
    /// Refused.
    Error(RemoteError),
    /// The latest signed self-audit.
    SelfAudit(Box<SignedSelfAudit>),
    /// The signed capability manifest.
    Capabilities(Box<SignedCapabilityManifest>),
    /// netd's TLS private key (PEM), unsealed.
    TlsKey(Box<heapless::Vec<u8, MAX_TLS_KEY>>),
    /// A signed mesh manifest with its quote.
    MeshManifest(Box<crate::mesh::SignedMeshManifest>),
    /// A lottery ticket (the node key's signature over the lottery digest).
    Ticket(Sig64),
    /// A signed settlement vote.
    Vote(Box<crate::mesh::SettlementVote>),
    /// A chain-key signature (of a call or a quorum message).
    Chain(Box<crate::chain::ChainSignature>),
    /// A Standard Webhooks `v1a` signature: Ed25519 by the node key over
    /// [`webhook_content`]`(id, unix_s, body)`.
    Webhook {
        /// attestd's clock when it signed (the `webhook-timestamp`).
        unix_s: u64,
        /// The signature.
        signature: Sig64,
    },
}
message!(
    NetdAttestResponse,
    "NetdAttestResponse",
    [
        Quote,
        Heartbeat,
        Identity,
        Error,
        SelfAudit,
        Capabilities,
        TlsKey,
        MeshManifest,
        Ticket,
        Vote,
        Chain,
        Webhook
    ]
);

/// Longest TLS private key (PEM) attestd hands netd.
pub const MAX_TLS_KEY: usize = 8192;

/// The request and response types of a channel.
pub trait ChannelSpec {
    /// Which channel.
    const CHANNEL: Channel;
    /// What the requester sends.
    type Request: Message;
    /// What the responder answers.
    type Response: Message;
}

macro_rules! channel {
    ($marker:ident, $ch:ident, $req:ty, $resp:ty) => {
        /// Type-level marker for a channel.
        #[derive(Debug, Clone, Copy)]
        pub struct $marker;
        impl ChannelSpec for $marker {
            const CHANNEL: Channel = Channel::$ch;
            type Request = $req;
            type Response = $resp;
        }
    };
}
channel!(InitAttestd, InitAttestd, InitRequest, InitResponse);
channel!(ExecdAttestd, ExecdAttestd, ExecdRequest, ExecdResponse);
channel!(NetdExecd, NetdExecd, NetdExecRequest, NetdExecResponse);
channel!(
    NetdAttestd,
    NetdAttestd,
    NetdAttestRequest,
    NetdAttestResponse
);
