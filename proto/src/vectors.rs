//! One canonical sample of every wire type and every IPC variant. Their encodings are
//! committed in `proto/vectors/messages.txt` (checked by a test) so other
//! implementations and future versions can interoperate. (The channel
//! [`crate::frame::schema_hash`] is derived from the types' structure, not from these.)

use crate::bytes::{Hash32, PubKey32, Sig64};
use crate::cid::Cid;
use crate::frame::Hello;
use crate::ipc::*;
use crate::mesh::*;
use crate::types::*;
use serde::Serialize;

/// A named sample and its postcard encoding.
#[derive(Debug, Clone)]
pub struct Sample {
    /// `Type::Variant`.
    pub name: String,
    /// Postcard bytes.
    pub bytes: Vec<u8>,
}

fn sample<T: Serialize>(name: &str, v: &T) -> Sample {
    Sample {
        name: name.to_string(),
        bytes: postcard::to_stdvec(v).unwrap_or_default(),
    }
}

fn s<const N: usize>(v: &str) -> heapless::String<N> {
    bounded(v)
}

fn h(b: u8) -> Hash32 {
    Hash32([b; 32])
}

/// Sample node id.
pub fn node() -> NodeId {
    NodeId(PubKey32([0x11; 32]))
}

/// Sample job payload.
pub fn job_payload() -> JobPayload {
    let mut inputs = heapless::Vec::new();
    let _ = inputs.push(InputArtifact {
        name: s("prompt"),
        cid: Cid::of_bytes(b"hello"),
        location: ArtifactLocation::Ipfs,
    });
    let _ = inputs.push(InputArtifact {
        name: s("weights"),
        cid: Cid::of_bytes(b"weights"),
        location: ArtifactLocation::Arweave {
            tx: s("bNbA3TEQVL60xlgCcqdz4ZPHFZ711cZ3hmkpGttDt_U"),
        },
    });
    let _ = inputs.push(InputArtifact {
        name: s("extra"),
        cid: Cid::of_bytes(b"extra"),
        location: ArtifactLocation::Uri {
            uri: s("https://artifacts.example/extra.bin"),
        },
    });
    JobPayload {
        job_id: s("job-0001"),
        workflow: WorkflowRef {
            id: s("lm"),
            checksum: h(0x22),
        },
        inputs,
        compute_class: ComputeClass::S,
        timeout_ms: 30_000,
        seed: 42,
        privacy: PrivacyFlags {
            enclave: false,
            redact_outputs: true,
            output_key: Some(PubKey32([0x0e; 32])),
        },
    }
}

/// Sample receipt.
pub fn receipt() -> Receipt {
    Receipt {
        workflow_id: s("lm"),
        job_id: s("job-0001"),
        runtime_hash: h(0x33),
        outputs_cid: Cid::of_bytes(b"outputs"),
        inputs_cid: Cid::of_bytes(b"inputs"),
        latency_ms: 1234,
        energy_estimate_mj: 5678,
        manifest_checksum: h(0x22),
        seed: 42,
        gas: 1_000_000,
        backend: Backend::Cpu,
        compute_class: ComputeClass::S,
        node: node(),
        submitter: s("orchestrator"),
        signed_unix_ms: 1_767_225_600_000,
    }
}

/// Sample signed receipt.
pub fn signed_receipt() -> SignedReceipt {
    SignedReceipt {
        receipt: receipt(),
        signature: Sig64([0x44; 64]),
    }
}

fn job_result() -> JobResult {
    JobResult::from(receipt())
}

fn workflows() -> heapless::Vec<WorkflowRef, MAX_WORKFLOWS> {
    let mut w = heapless::Vec::new();
    let _ = w.push(WorkflowRef {
        id: s("lm"),
        checksum: h(0x22),
    });
    let _ = w.push(WorkflowRef {
        id: s("diffusion"),
        checksum: h(0x23),
    });
    w
}

fn capability_report() -> CapabilityReport {
    CapabilityReport {
        compute_class: ComputeClass::M,
        cpu_cores: 16,
        ram_mib: 131_072,
        gpu_model: Some(s("NVIDIA H100 80GB HBM3")),
        vram_mib: 81_559,
        workflows: workflows(),
    }
}

fn audit_entries() -> heapless::Vec<AuditEntry, MAX_AUDIT_ENTRIES> {
    let mut e = heapless::Vec::new();
    for (name, pid, b) in [
        ("havn-attestd", 101, 0x61),
        ("havn-execd", 102, 0x62),
        ("havn-netd", 103, 0x66),
    ] {
        let _ = e.push(AuditEntry {
            name: s(name),
            pid,
            digest: h(b),
        });
    }
    e
}

/// A sample signed self-audit (test stand-ins).
pub fn signed_self_audit() -> SignedSelfAudit {
    SignedSelfAudit {
        audit: SelfAudit {
            node: node(),
            unix_ms: 1_790_000_000_000,
            entries: audit_entries(),
            userland_pcr: PcrValue {
                index: 14,
                value: h(0x55),
            },
        },
        signature: Sig64([0x47; 64]),
    }
}

fn capability_manifest() -> CapabilityManifest {
    capability_report().into_manifest(node(), [0x5c; 20])
}

/// A sample signed capability manifest (test stand-ins).
pub fn signed_capability_manifest() -> SignedCapabilityManifest {
    SignedCapabilityManifest {
        manifest: capability_manifest(),
        signature: Sig64([0x48; 64]),
    }
}

fn heartbeat() -> Heartbeat {
    Heartbeat {
        node: node(),
        seq: 7,
        unix_ms: 1_790_000_000_000,
        netd_claims: netd_claims(),
    }
}

fn netd_claims() -> NetdClaims {
    NetdClaims {
        queue_depth: 3,
        running: 1,
        completed: 99,
    }
}

fn quote_evidence() -> QuoteEvidence {
    let mut pcrs = heapless::Vec::new();
    let _ = pcrs.push(PcrValue {
        index: 0,
        value: h(0),
    });
    let _ = pcrs.push(PcrValue {
        index: 15,
        value: h(0x55),
    });
    let mut events = heapless::Vec::new();
    let _ = events.push(MeasurementEvent {
        seq: 0,
        pcr: 14,
        event_type: s("binary"),
        digest: h(0x66),
        description: s("havn-netd"),
    });
    let blob = |b: u8, n: usize| {
        let mut v = heapless::Vec::new();
        for _ in 0..n {
            let _ = v.push(b);
        }
        v
    };
    QuoteEvidence {
        nonce: h(0x77),
        node: node(),
        payload_key: PubKey32([0x50; 32]),
        attest: blob(0xa1, 8),
        signature: blob(0xa2, 4),
        ak_public: blob(0xa3, 4),
        pcrs,
        events,
        ek_cert: Some(blob(0x30, 6).into_iter().collect()),
    }
}

/// Samples of every request and response variant of one channel.
pub fn channel_samples(channel: Channel) -> Vec<Sample> {
    match channel {
        Channel::InitAttestd => vec![
            sample(
                "InitRequest::Measure",
                &InitRequest::Measure {
                    name: s("havn-netd"),
                    digest: h(0x66),
                },
            ),
            sample("InitRequest::Status", &InitRequest::Status),
            sample("InitRequest::Shutdown", &InitRequest::Shutdown),
            sample(
                "InitResponse::Measured",
                &InitResponse::Measured { pcr: 15, index: 2 },
            ),
            sample(
                "InitResponse::Status",
                &InitResponse::Status {
                    node: node(),
                    gate_open: true,
                    events: 3,
                },
            ),
            sample("InitResponse::ShuttingDown", &InitResponse::ShuttingDown),
            sample(
                "InitResponse::Error",
                &InitResponse::Error(RemoteError::TpmUnavailable),
            ),
            sample(
                "InitRequest::Audit",
                &InitRequest::Audit {
                    entries: Box::new(audit_entries()),
                },
            ),
            sample(
                "InitResponse::Audited",
                &InitResponse::Audited {
                    matched: true,
                    gate_open: true,
                },
            ),
        ],
        Channel::ExecdAttestd => vec![
            sample(
                "ExecdRequest::Gate",
                &ExecdRequest::Gate {
                    job_id: s("job-0001"),
                },
            ),
            sample("ExecdRequest::Report", &ExecdRequest::Report(job_result())),
            sample("ExecdRequest::PayloadKey", &ExecdRequest::PayloadKey),
            sample(
                "ExecdResponse::PayloadKey",
                &ExecdResponse::PayloadKey {
                    secret: Secret32([0x5e; 32]),
                    public: PubKey32([0x50; 32]),
                },
            ),
            sample("ExecdResponse::GateOpen", &ExecdResponse::GateOpen),
            sample(
                "ExecdResponse::GateClosed",
                &ExecdResponse::GateClosed {
                    reason: s("PCR 15 moved"),
                },
            ),
            sample(
                "ExecdResponse::Receipt",
                &ExecdResponse::Receipt(signed_receipt()),
            ),
            sample(
                "ExecdResponse::Error",
                &ExecdResponse::Error(RemoteError::AlreadySigned),
            ),
            sample(
                "ExecdRequest::Capabilities",
                &ExecdRequest::Capabilities(Box::new(capability_report())),
            ),
            sample("ExecdResponse::Ack", &ExecdResponse::Ack),
            sample(
                "ExecdRequest::Reexecuted",
                &ExecdRequest::Reexecuted(Box::new(Reexecution {
                    receipt: signed_receipt(),
                    runtime_hash: h(0x34),
                    first_divergent: Some(3),
                    challenge: Some(signed_challenge().challenge),
                })),
            ),
            sample(
                "ExecdResponse::Verdict",
                &ExecdResponse::Verdict(Box::new(Judgement {
                    verdict: signed_verdict(),
                    challenge: Some(signed_challenge()),
                })),
            ),
        ],
        Channel::NetdExecd => vec![
            sample(
                "NetdExecRequest::Run",
                &NetdExecRequest::Run {
                    ticket_id: 9,
                    payload: job_payload(),
                    submitter: s("orchestrator"),
                },
            ),
            sample(
                "NetdExecRequest::Capabilities",
                &NetdExecRequest::Capabilities,
            ),
            sample(
                "NetdExecRequest::Reexecute",
                &NetdExecRequest::Reexecute {
                    receipt: signed_receipt(),
                    evidence: ReexecEvidence::Leaves(Box::new(
                        [h(0x40), h(0x41), h(0x42)].into_iter().collect(),
                    )),
                },
            ),
            sample(
                "NetdExecRequest::Leaves",
                &NetdExecRequest::Leaves {
                    job_id: s("job-0001"),
                    submitter: s("orchestrator"),
                },
            ),
            sample(
                "NetdExecResponse::Judged",
                &NetdExecResponse::Judged(Box::new(Judgement {
                    verdict: signed_verdict(),
                    challenge: None,
                })),
            ),
            sample(
                "NetdExecResponse::Diverged",
                &NetdExecResponse::Diverged {
                    runtime_hash: h(0x35),
                },
            ),
            sample(
                "NetdExecResponse::Leaves",
                &NetdExecResponse::Leaves(Box::new([h(0x40), h(0x41)].into_iter().collect())),
            ),
            sample(
                "NetdExecRequest::Prove",
                &NetdExecRequest::Prove {
                    job_id: s("job-0001"),
                    node_id: s("block0.attn"),
                    submitter: s("orchestrator"),
                },
            ),
            sample(
                "NetdExecResponse::Done",
                &NetdExecResponse::Done {
                    ticket_id: 9,
                    receipt: signed_receipt(),
                },
            ),
            sample(
                "NetdExecResponse::Failed",
                &NetdExecResponse::Failed {
                    ticket_id: 9,
                    error: RemoteError::GateClosed,
                    reason: s("gate closed: PCR 15 moved"),
                },
            ),
            sample(
                "NetdExecResponse::Capabilities",
                &NetdExecResponse::Capabilities(capability_report()),
            ),
            sample(
                "NetdExecResponse::Proof",
                &NetdExecResponse::Proof {
                    proof_cid: Cid::of_bytes(b"proof"),
                    inputs_cid: Cid::of_bytes(b"node inputs"),
                    runtime_hash: h(0x33),
                },
            ),
            sample(
                "NetdExecResponse::Refused",
                &NetdExecResponse::Refused {
                    error: RemoteError::UnknownNode,
                    reason: s("workflow lm has no node \"nope\""),
                },
            ),
        ],
        Channel::NetdAttestd => vec![
            sample(
                "NetdAttestRequest::Quote",
                &NetdAttestRequest::Quote { nonce: h(0x77) },
            ),
            sample(
                "NetdAttestRequest::Heartbeat",
                &NetdAttestRequest::Heartbeat(netd_claims()),
            ),
            sample("NetdAttestRequest::Identity", &NetdAttestRequest::Identity),
            sample(
                "NetdAttestResponse::Quote",
                &NetdAttestResponse::Quote(Box::new(quote_evidence())),
            ),
            sample(
                "NetdAttestResponse::Heartbeat",
                &NetdAttestResponse::Heartbeat(SignedHeartbeat {
                    heartbeat: heartbeat(),
                    signature: Sig64([0x45; 64]),
                }),
            ),
            sample(
                "NetdAttestResponse::Identity",
                &NetdAttestResponse::Identity {
                    node: PubKey32([0x11; 32]),
                    chain_account: [0x5c; 20],
                    payload_key: PubKey32([0x50; 32]),
                },
            ),
            sample(
                "NetdAttestResponse::Error",
                &NetdAttestResponse::Error(RemoteError::NotPermitted),
            ),
            sample(
                "NetdAttestRequest::SelfAudit",
                &NetdAttestRequest::SelfAudit,
            ),
            sample(
                "NetdAttestRequest::Capabilities",
                &NetdAttestRequest::Capabilities,
            ),
            sample(
                "NetdAttestResponse::SelfAudit",
                &NetdAttestResponse::SelfAudit(Box::new(signed_self_audit())),
            ),
            sample(
                "NetdAttestResponse::Capabilities",
                &NetdAttestResponse::Capabilities(Box::new(signed_capability_manifest())),
            ),
            sample("NetdAttestRequest::TlsKey", &NetdAttestRequest::TlsKey),
            sample(
                "NetdAttestRequest::MeshManifest",
                &NetdAttestRequest::MeshManifest {
                    peer_id: heapless::Vec::from_slice(&[0x00, 0x24, 0x08, 0x01])
                        .unwrap_or_default(),
                },
            ),
            sample(
                "NetdAttestRequest::Lottery",
                &NetdAttestRequest::Lottery {
                    receipt_digest: h(0x88),
                },
            ),
            sample(
                "NetdAttestRequest::Vote",
                &NetdAttestRequest::Vote(Box::new(settlement())),
            ),
            sample(
                "NetdAttestRequest::ChainTx",
                &NetdAttestRequest::ChainTx(Box::new(crate::chain::ChainTx {
                    chain_id: 31_337,
                    nonce: 7,
                    gas_limit: 250_000,
                    max_fee_per_gas: 2_000_000_000,
                    max_priority_fee_per_gas: 1_000_000_000,
                    to: [0x2a; 20],
                    input: heapless::Vec::from_slice(&[0xa9, 0x05, 0x9c, 0xbb, 0x01])
                        .unwrap_or_default(),
                })),
            ),
            sample(
                "NetdAttestRequest::ChainVote",
                &NetdAttestRequest::ChainVote(Box::new(crate::chain::ChainVote::Settlement {
                    epoch: 12,
                    compute_class: ComputeClass::M,
                    payout_root: h(0x99),
                    receipts: 4,
                })),
            ),
            sample(
                "NetdAttestResponse::Chain",
                &NetdAttestResponse::Chain(Box::new(crate::chain::ChainSignature {
                    signer: [0x5c; 20],
                    signature: heapless::Vec::from_slice(&[0x1b; 65]).unwrap_or_default(),
                })),
            ),
            sample(
                "NetdAttestRequest::SignWebhook",
                &NetdAttestRequest::SignWebhook(Box::new(WebhookToSign {
                    id: crate::bounded("msg_00a1"),
                    body: heapless::Vec::from_slice(
                        br#"{"type":"havn.alert.sealed","sealed":"SEFW"}"#,
                    )
                    .unwrap_or_default(),
                })),
            ),
            sample(
                "NetdAttestResponse::Webhook",
                &NetdAttestResponse::Webhook {
                    unix_s: 1_790_000_000,
                    signature: Sig64([0x3c; 64]),
                },
            ),
            sample(
                "NetdAttestResponse::MeshManifest",
                &NetdAttestResponse::MeshManifest(Box::new(signed_mesh_manifest())),
            ),
            sample(
                "NetdAttestResponse::Ticket",
                &NetdAttestResponse::Ticket(Sig64([0x4b; 64])),
            ),
            sample(
                "NetdAttestResponse::Vote",
                &NetdAttestResponse::Vote(Box::new(settlement_vote())),
            ),
            sample(
                "NetdAttestResponse::TlsKey",
                &NetdAttestResponse::TlsKey(Box::new(
                    heapless::Vec::from_slice(b"-----BEGIN PRIVATE KEY-----\n").unwrap_or_default(),
                )),
            ),
        ],
    }
}

fn opening(index: u32, b: u8) -> Opening {
    let mut path = heapless::Vec::new();
    let _ = path.push((h(b.wrapping_add(1)), false));
    let _ = path.push((h(b.wrapping_add(2)), true));
    Opening {
        index,
        hash: h(b),
        path,
    }
}

/// Sample mesh manifest, signed, with its quote.
pub fn signed_mesh_manifest() -> SignedMeshManifest {
    SignedMeshManifest {
        manifest: MeshManifest {
            node: node(),
            peer_id: heapless::Vec::from_slice(&[0x00, 0x24, 0x08, 0x01, 0x12, 0x20, 0x5a])
                .unwrap_or_default(),
            role: Role::Validator,
            compute_class: ComputeClass::M,
            weight: 1,
            chain_account: [0x5c; 20],
            unix_ms: 1_767_225_600_000,
        },
        signature: Sig64([0x47; 64]),
        quote: Box::new(quote_evidence()),
    }
}

/// Sample verdict.
pub fn signed_verdict() -> SignedVerdict {
    SignedVerdict {
        verdict: Verdict {
            validator: node(),
            receipt_digest: h(0x88),
            node: NodeId(PubKey32([0x12; 32])),
            compute_class: ComputeClass::S,
            epoch: 29_453_760,
            outcome: VerdictOutcome::Reject,
            first_divergent: Some(3),
        },
        signature: Sig64([0x46; 64]),
    }
}

/// Sample settlement.
pub fn settlement() -> EpochSettlement {
    EpochSettlement {
        compute_class: ComputeClass::S,
        epoch: 29_453_760,
        receipts_root: h(0x51),
        receipt_count: 17,
        liveness_root: h(0x52),
        liveness_count: 4,
        committee_root: h(0x53),
    }
}

/// Sample settlement vote.
pub fn settlement_vote() -> SettlementVote {
    SettlementVote {
        settlement: settlement(),
        validator: node(),
        signature: Sig64([0x48; 64]),
    }
}

/// Sample challenge.
pub fn signed_challenge() -> SignedChallenge {
    let mut parents = heapless::Vec::new();
    let _ = parents.push(opening(1, 0x61));
    SignedChallenge {
        challenge: Challenge {
            challenger: node(),
            receipt: signed_receipt(),
            merkle_root: h(0x60),
            leaves: 5,
            divergent: opening(3, 0x63),
            recomputed: h(0x64),
            parents,
            epoch: 29_453_760,
        },
        signature: Sig64([0x49; 64]),
    }
}

/// Sample settlement certificate.
pub fn settlement_certificate() -> SettlementCertificate {
    let mut committee = heapless::Vec::new();
    let _ = committee.push(CommitteeMember {
        node: node(),
        weight: 5_000,
    });
    let _ = committee.push(CommitteeMember {
        node: NodeId(PubKey32([0x13; 32])),
        weight: 9_000,
    });
    let mut signatures = heapless::Vec::new();
    let _ = signatures.push((1u16, Sig64([0x4a; 64])));
    SettlementCertificate {
        settlement: settlement(),
        committee,
        signatures,
    }
}

/// Samples of every wire type and IPC variant.
pub fn all_samples() -> Vec<Sample> {
    let mut out = vec![
        sample("NodeId", &node()),
        sample("ComputeClass::S", &ComputeClass::S),
        sample("ComputeClass::XL", &ComputeClass::XL),
        sample("JobPayload", &job_payload()),
        sample(
            "Ticket",
            &Ticket {
                ticket_id: 9,
                eta_seconds: 4,
            },
        ),
        sample("JobState::Queued", &JobState::Queued),
        sample(
            "JobState::Failed",
            &JobState::Failed {
                reason: s("timeout"),
            },
        ),
        sample("CapabilityManifest", &capability_manifest()),
        sample("SignedCapabilityManifest", &signed_capability_manifest()),
        sample("SignedSelfAudit", &signed_self_audit()),
        sample("Receipt", &receipt()),
        sample("SignedReceipt", &signed_receipt()),
        sample("Heartbeat", &heartbeat()),
        sample("QuoteEvidence", &quote_evidence()),
        sample(
            "Topic::Receipt(XL)",
            &Topic::Receipt(ComputeClass::XL).name(),
        ),
        sample("SignedMeshManifest", &signed_mesh_manifest()),
        sample(
            "VerdictMessage::Verdict",
            &VerdictMessage::Verdict(signed_verdict()),
        ),
        sample(
            "VerdictMessage::Vote",
            &VerdictMessage::Vote(settlement_vote()),
        ),
        sample(
            "VerdictMessage::ChainVote",
            &VerdictMessage::ChainVote(Box::new(crate::mesh::ChainVoteMessage {
                validator: node(),
                vote: crate::chain::ChainVote::Quarantine {
                    node: node(),
                    epoch: 12,
                },
                signature: crate::chain::ChainSignature {
                    signer: [0x5c; 20],
                    signature: heapless::Vec::from_slice(&[0x1c; 65]).unwrap_or_default(),
                },
            })),
        ),
        sample("SignedChallenge", &signed_challenge()),
        sample("SettlementCertificate", &settlement_certificate()),
        sample(
            "Hello",
            &Hello {
                magic: crate::frame::HELLO_MAGIC,
                version: crate::frame::PROTOCOL_VERSION,
                channel: Channel::NetdExecd,
                schema: h(0xaa),
                instance: 0x0123_4567_89ab_cdef,
            },
        ),
    ];
    for ch in Channel::ALL {
        out.extend(channel_samples(ch));
    }
    out
}
