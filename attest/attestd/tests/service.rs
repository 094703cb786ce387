//! attestd's request handlers over a real swtpm (no IPC): the self-audit gate and the
//! signed capability manifest.
use havn_attest_agent::testing::Swtpm;
use havn_attestd::Service;
use havn_config::NodeConfig;
use havn_proto::ipc::{
    CapabilityReport, ExecdRequest, ExecdResponse, InitRequest, InitResponse, JobResult,
    NetdAttestRequest, NetdAttestResponse, RemoteError,
};
use havn_proto::sign::{Domain, Signable};
use havn_proto::{bounded, ComputeClass, Hash32, WorkflowRef};
use std::time::Duration;

mod common;
use common::*;

#[test]
fn self_audit_mismatch_closes_the_gate_naming_the_binary_and_a_good_audit_reopens_it() {
    let mut b = boot(30_000);
    // Before the first audit, boot itself is fresh enough.
    assert_eq!(gate(&mut b), Ok(()));
    assert_eq!(
        b.svc.handle_netd(NetdAttestRequest::SelfAudit),
        NetdAttestResponse::Error(RemoteError::NotYetAvailable)
    );

    // A matching audit is signed under the self-audit domain with the userland PCR.
    assert_eq!(audit(&mut b, entries(None, None)), (true, true));
    let first = match b.svc.handle_netd(NetdAttestRequest::SelfAudit) {
        NetdAttestResponse::SelfAudit(s) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(first.audit.node, b.node);
    assert_eq!(first.audit.entries, entries(None, None));
    assert_eq!(first.audit.userland_pcr.index, 14);
    assert_ne!(
        first.audit.userland_pcr.value,
        Hash32([0; 32]),
        "PCR 14 was extended"
    );
    assert!(verify(
        &b.node,
        Domain::SelfAudit,
        &first.audit,
        &first.signature.0
    ));
    assert_eq!(
        first.audit.signing_digest(),
        Domain::SelfAudit.digest_value(&first.audit).unwrap()
    );
    // Not valid as any other kind of signed message, nor for altered contents.
    assert!(!verify(
        &b.node,
        Domain::Heartbeat,
        &first.audit,
        &first.signature.0
    ));
    let mut altered = first.audit.clone();
    altered.entries[2].digest = Hash32([0x72; 32]);
    assert!(!verify(
        &b.node,
        Domain::SelfAudit,
        &altered,
        &first.signature.0
    ));

    // havn-netd now runs something else: gate closed, naming it, for Gate and Report.
    assert_eq!(
        audit(&mut b, entries(Some("havn-netd"), None)),
        (false, false)
    );
    let reason = gate(&mut b).unwrap_err();
    assert!(reason.contains("havn-netd"), "{reason}");
    match b.svc.handle_execd(ExecdRequest::Report(result("audit-j1"))) {
        ExecdResponse::GateClosed { reason } => assert!(reason.contains("havn-netd"), "{reason}"),
        other => panic!("signed with a failed self-audit: {other:?}"),
    }
    // The last good record is no longer served while the node fails its audit.
    assert_eq!(
        b.svc.handle_netd(NetdAttestRequest::SelfAudit),
        NetdAttestResponse::Error(RemoteError::GateClosed)
    );

    // A daemon missing from the audit (or one never measured) also fails closed.
    assert_eq!(audit(&mut b, entries(None, None)), (true, true));
    assert_eq!(
        audit(&mut b, entries(None, Some("havn-execd"))),
        (false, false)
    );
    assert!(gate(&mut b).unwrap_err().contains("havn-execd"));
    let mut stranger = entries(None, None);
    stranger[0].name = bounded("havn-evil");
    assert_eq!(audit(&mut b, stranger), (false, false));
    assert!(gate(&mut b).unwrap_err().contains("havn-evil"));

    // The next matching audit reopens the gate and signs a fresh record.
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(audit(&mut b, entries(None, None)), (true, true));
    assert_eq!(gate(&mut b), Ok(()));
    let second = match b.svc.handle_netd(NetdAttestRequest::SelfAudit) {
        NetdAttestResponse::SelfAudit(s) => s,
        other => panic!("{other:?}"),
    };
    assert!(second.audit.unix_ms >= first.audit.unix_ms);
    assert!(verify(
        &b.node,
        Domain::SelfAudit,
        &second.audit,
        &second.signature.0
    ));
    match b.svc.handle_execd(ExecdRequest::Report(result("audit-j2"))) {
        ExecdResponse::Receipt(r) => assert_eq!(r.receipt.node, b.node),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_stale_self_audit_closes_the_gate() {
    let mut b = boot(100);
    assert_eq!(gate(&mut b), Ok(()));
    assert_eq!(audit(&mut b, entries(None, None)), (true, true));
    // No good audit for more than 3 intervals.
    std::thread::sleep(Duration::from_millis(400));
    let reason = gate(&mut b).unwrap_err();
    assert!(reason.contains("stale"), "{reason}");
    assert_eq!(audit(&mut b, entries(None, None)), (true, true));
    assert_eq!(gate(&mut b), Ok(()));
}

#[test]
fn with_auditing_off_no_audit_is_needed_or_served() {
    let mut b = boot(0);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(gate(&mut b), Ok(()));
    assert_eq!(
        b.svc.handle_netd(NetdAttestRequest::SelfAudit),
        NetdAttestResponse::Error(RemoteError::NotPermitted)
    );
    // A mismatch still closes the gate: init only sends audits when on, but the
    // verdict does not depend on the interval.
    assert_eq!(
        audit(&mut b, entries(Some("havn-execd"), None)),
        (false, false)
    );
    assert!(gate(&mut b).unwrap_err().contains("havn-execd"));
}

/// execd's capability report, as attestd receives it.
fn report_to(b: &mut Booted, class: ComputeClass, gpu: bool) -> ExecdResponse {
    b.svc
        .handle_execd(ExecdRequest::Capabilities(Box::new(report(class, gpu))))
}

fn report(class: ComputeClass, gpu: bool) -> CapabilityReport {
    let mut workflows = heapless::Vec::new();
    workflows
        .push(WorkflowRef {
            id: bounded("lm"),
            checksum: Hash32([0x22; 32]),
        })
        .unwrap();
    CapabilityReport {
        compute_class: class,
        cpu_cores: 8,
        ram_mib: 16_384,
        gpu_model: gpu.then(|| bounded("NVIDIA H100")),
        vram_mib: if gpu { 81_559 } else { 0 },
        workflows,
    }
}

#[test]
fn capability_manifest_is_assembled_and_signed_by_attestd_once() {
    let mut b = boot(30_000);
    assert_eq!(
        b.svc.handle_netd(NetdAttestRequest::Capabilities),
        NetdAttestResponse::Error(RemoteError::NotYetAvailable)
    );
    // A GPU class without a GPU is not signed.
    assert_eq!(
        report_to(&mut b, ComputeClass::M, false),
        ExecdResponse::Error(RemoteError::BadRequest)
    );
    assert_eq!(report_to(&mut b, ComputeClass::M, true), ExecdResponse::Ack);
    let signed = match b.svc.handle_netd(NetdAttestRequest::Capabilities) {
        NetdAttestResponse::Capabilities(m) => m,
        other => panic!("{other:?}"),
    };
    let m = &signed.manifest;
    assert_eq!(m.node, b.node, "attestd fills in its own node id");
    assert_ne!(
        m.chain_account, [0; 20],
        "attestd names its sealed chain key's account"
    );
    assert_eq!(m.compute_class, ComputeClass::M);
    assert_eq!(m.gpu_model.as_deref(), Some("NVIDIA H100"));
    assert_eq!(m.workflows.len(), 1);
    assert!(verify(
        &b.node,
        Domain::Capabilities,
        m,
        &signed.signature.0
    ));
    assert!(!verify(&b.node, Domain::SelfAudit, m, &signed.signature.0));
    let mut inflated = m.clone();
    inflated.chain_account = [0xaa; 20];
    assert!(!verify(
        &b.node,
        Domain::Capabilities,
        &inflated,
        &signed.signature.0
    ));
    // Once per start: a second report is refused and the first manifest stays.
    assert_eq!(
        report_to(&mut b, ComputeClass::XL, true),
        ExecdResponse::Error(RemoteError::NotPermitted)
    );
    assert_eq!(
        b.svc.handle_netd(NetdAttestRequest::Capabilities),
        NetdAttestResponse::Capabilities(signed)
    );
}

#[test]
fn restarting_the_set_with_the_same_binaries_keeps_the_key_and_a_changed_one_closes_it() {
    std::env::set_var("TSS2_LOG", "all+none");
    let tpm = Swtpm::start().expect("start swtpm");
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[node]\nstate_dir = {state:?}\naudit_interval_ms = 0\n\
         [tpm]\ntcti = \"{tcti}\"\npcrs = [0, 1, 2, 3, 4, 5, 6, 7, 14]\nuserland_pcr = 14\n\
         [netd]\nlisten = \"127.0.0.1:8443\"\ntls_cert = \"c\"\ntls_key = \"k\"\nclient_ca = \"ca\"\n",
        state = dir.path().join("state"),
        tcti = tpm.tcti(),
    );
    let cfg = NodeConfig::parse(&text, std::path::Path::new("node.toml")).unwrap();
    // One boot of attestd as havn-init drives it; `netd` is havn-netd's digest byte.
    let boot_once = |netd: u8| -> InitResponse {
        let mut svc = Service::open(&cfg).expect("open service");
        for (name, b) in BINARIES {
            let b = if name == "havn-netd" { netd } else { b };
            let r = svc.handle_init(InitRequest::Measure {
                name: bounded(name),
                digest: Hash32([b; 32]),
            });
            assert!(matches!(r, InitResponse::Measured { pcr: 14, .. }), "{r:?}");
        }
        svc.handle_init(InitRequest::Status)
    };
    let first = match boot_once(0x71) {
        InitResponse::Status {
            node,
            gate_open: true,
            events: 3,
        } => node,
        other => panic!("first boot: {other:?}"),
    };
    // The supervisor restarts the whole set with the same files: nothing is extended
    // again, the node key unseals, the identity is the same.
    match boot_once(0x71) {
        InitResponse::Status {
            node,
            gate_open: true,
            events: 3,
        } => assert_eq!(node, first),
        other => panic!("restart with the same binaries: {other:?}"),
    }
    // A changed havn-netd is measured: PCR 14 moves and the sealed key stays sealed.
    let changed = boot_once(0x72);
    assert!(
        matches!(changed, InitResponse::Error(RemoteError::GateClosed)),
        "changed binary still unsealed the key: {changed:?}"
    );
}

fn sign(b: &mut Booted, r: JobResult) -> ExecdResponse {
    b.svc.handle_execd(ExecdRequest::Report(r))
}

#[test]
fn one_job_id_gets_one_receipt_recorded_before_it_is_signed_across_restarts() {
    let mut b = boot(0);
    let first = match sign(&mut b, result("job-1")) {
        ExecdResponse::Receipt(r) => r,
        other => panic!("first report: {other:?}"),
    };
    assert!(verify(
        &b.node,
        Domain::Receipt,
        &first.receipt,
        &first.signature.0
    ));
    // The record is durable before the signature leaves: it holds the receipt itself.
    let log = b.cfg.daemon_state("attestd").join("signed-receipts.log");
    let text = std::fs::read_to_string(&log).unwrap();
    let receipt_hex = hex::encode(postcard::to_stdvec(&first.receipt).unwrap());
    assert!(
        text.contains(&receipt_hex),
        "the record must hold the signed receipt"
    );

    // The same job run again (another latency, same result) gets the first receipt,
    // signed identically.
    let mut again = result("job-1");
    again.latency_ms += 17;
    again.energy_estimate_mj += 3;
    assert_eq!(sign(&mut b, again), ExecdResponse::Receipt(first.clone()));
    // A different result under the same id is refused with its own error.
    let mut other = result("job-1");
    other.runtime_hash = Hash32([0x5a; 32]);
    assert_eq!(
        sign(&mut b, other.clone()),
        ExecdResponse::Error(RemoteError::AlreadySigned)
    );

    // Across a restart of attestd, with nothing but the record on disk.
    drop(std::mem::replace(&mut b.svc, start(&b.cfg).0));
    assert_eq!(
        sign(&mut b, other),
        ExecdResponse::Error(RemoteError::AlreadySigned),
        "a restart must not forget the first receipt"
    );
    assert_eq!(
        sign(&mut b, result("job-1")),
        ExecdResponse::Receipt(first),
        "a restart must give back the first receipt, byte for byte"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 1, "one record for one job");
}

#[test]
fn a_full_disk_refuses_to_sign_and_signing_resumes_once_space_is_freed() {
    if !havn_testkit::require_root("mounts a small tmpfs under attestd's state") {
        return;
    }
    let disk = havn_testkit::SmallDisk::mount(512 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let state = disk.path().join("state");
    let mut b = boot_in(dir, &state, 0);
    assert!(matches!(
        sign(&mut b, result("before")),
        ExecdResponse::Receipt(_)
    ));
    disk.fill();
    // A record is ~400 bytes: the first few fit into the page the log already holds.
    let mut refused = 0;
    for i in 0..32 {
        match sign(&mut b, result(&format!("full-{i}"))) {
            ExecdResponse::Error(RemoteError::StorageFull) => refused += 1,
            ExecdResponse::Receipt(_) => assert_eq!(refused, 0, "signed after a refusal"),
            other => panic!("full disk: {other:?}"),
        }
    }
    assert!(refused > 0, "a full disk must refuse to sign");
    assert!(refused > 16, "only {refused} of 32 refused");
    disk.free();
    for i in 0..32 {
        match sign(&mut b, result(&format!("full-{i}"))) {
            ExecdResponse::Receipt(r) => assert_eq!(r.receipt.job_id.as_str(), format!("full-{i}")),
            other => panic!("after freeing space: {other:?}"),
        }
    }
    // The log reopens cleanly (no glued partial line) with every signed job.
    drop(std::mem::replace(&mut b.svc, start(&b.cfg).0));
    assert!(matches!(
        sign(&mut b, result("after")),
        ExecdResponse::Receipt(_)
    ));
}

fn heartbeat(b: &mut Booted, queue_depth: u32) -> havn_proto::SignedHeartbeat {
    let claims = havn_proto::NetdClaims {
        queue_depth,
        running: 1,
        completed: 42,
    };
    match b.svc.handle_netd(NetdAttestRequest::Heartbeat(claims)) {
        NetdAttestResponse::Heartbeat(h) => {
            assert_eq!(
                h.heartbeat.netd_claims, claims,
                "netd's claims are carried as claims"
            );
            assert!(verify(
                &b.node,
                Domain::Heartbeat,
                &h.heartbeat,
                &h.signature.0
            ));
            h
        }
        other => panic!("heartbeat: {other:?}"),
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn heartbeats_carry_attestds_own_time_and_a_sequence_that_never_repeats() {
    let mut b = boot(0);
    let before = now_ms();
    let first = heartbeat(&mut b, 3);
    let second = heartbeat(&mut b, 4);
    let after = now_ms();
    for h in [&first, &second] {
        assert!(
            (before..=after).contains(&h.heartbeat.unix_ms),
            "the time must be attestd's clock at signing: {} not in {before}..={after}",
            h.heartbeat.unix_ms
        );
    }
    assert!(second.heartbeat.seq > first.heartbeat.seq);
    // A restart of attestd never hands out a sequence number again.
    drop(std::mem::replace(&mut b.svc, start(&b.cfg).0));
    let third = heartbeat(&mut b, 5);
    assert!(
        third.heartbeat.seq > second.heartbeat.seq,
        "seq went from {} to {} across a restart",
        second.heartbeat.seq,
        third.heartbeat.seq
    );
}

const PEM: &[u8] = b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg (test key bytes)\n-----END PRIVATE KEY-----\n";

#[test]
fn netds_tls_key_is_sealed_at_first_start_the_file_destroyed_and_handed_over_once() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("tls.key");
    std::fs::write(&key, PEM).unwrap();
    let state = dir.path().join("state");
    let b = boot_in(dir, &state, 0);
    assert!(
        !key.exists(),
        "the plaintext key file must be destroyed once sealed"
    );
    assert!(state.join("attestd/netd-tls-key.sealed.json").exists());
    let Booted {
        svc,
        cfg,
        _tpm,
        _dir,
        ..
    } = b;
    let mut svc = Some(svc);
    let got =
        |svc: &mut Option<Service>| svc.as_mut().unwrap().handle_netd(NetdAttestRequest::TlsKey);
    match got(&mut svc) {
        NetdAttestResponse::TlsKey(k) => assert_eq!(&k[..], PEM),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        got(&mut svc),
        NetdAttestResponse::Error(RemoteError::NotPermitted),
        "once per start"
    );
    // The next start of attestd unseals it again (nothing on disk but the sealed copy).
    // (One agent on the TPM at a time, as in a node: the old one goes first.)
    drop(svc.take());
    svc = Some(start(&cfg).0);
    let again = got(&mut svc);
    assert!(
        matches!(&again, NetdAttestResponse::TlsKey(k) if &k[..] == PEM),
        "{again:?}"
    );
    // A new key file placed by the operator replaces the sealed one (rotation).
    const NEW: &[u8] = b"-----BEGIN PRIVATE KEY-----\nnew\n-----END PRIVATE KEY-----\n";
    std::fs::write(&cfg.netd.tls_key, NEW).unwrap();
    drop(svc.take());
    svc = Some(start(&cfg).0);
    assert!(!cfg.netd.tls_key.exists());
    assert!(matches!(got(&mut svc), NetdAttestResponse::TlsKey(k) if &k[..] == NEW));
    drop(svc.take());
    // A key path that is a symlink is refused, and what it points at is left alone.
    let elsewhere = cfg.netd.tls_key.with_extension("elsewhere");
    std::fs::write(&elsewhere, PEM).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &cfg.netd.tls_key).unwrap();
    let err = Service::open(&cfg).unwrap_err().to_string();
    assert!(err.contains("tls.key"), "{err}");
    assert_eq!(
        std::fs::read(&elsewhere).unwrap(),
        PEM,
        "the link's target is untouched"
    );
}

#[test]
fn job_ids_are_scoped_per_submitter_so_no_one_can_claim_anothers() {
    let mut b = boot(0);
    let mut mallory = result("shared-id");
    mallory.submitter = bounded("mallory");
    let first = match sign(&mut b, mallory) {
        ExecdResponse::Receipt(r) => r,
        other => panic!("{other:?}"),
    };
    // Mallory used the id first; Alice's job under the same id is still hers to sign.
    let mut alice = result("shared-id");
    alice.submitter = bounded("alice");
    alice.runtime_hash = Hash32([0x77; 32]);
    match sign(&mut b, alice) {
        ExecdResponse::Receipt(r) => {
            assert_eq!(r.receipt.submitter.as_str(), "alice");
            assert_ne!(r.receipt.runtime_hash, first.receipt.runtime_hash);
        }
        other => panic!("another submitter's use of the id blocked Alice: {other:?}"),
    }
    // Within one submitter the rule holds: a different result is refused.
    let mut again = result("shared-id");
    again.submitter = bounded("mallory");
    again.runtime_hash = Hash32([0x78; 32]);
    assert_eq!(
        sign(&mut b, again),
        ExecdResponse::Error(RemoteError::AlreadySigned)
    );
}
