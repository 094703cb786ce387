//! Shared by attestd's test binaries: a service booted on a fresh swtpm as havn-init
//! boots it.
#![allow(dead_code)]
use havn_attest_agent::testing::Swtpm;
use havn_attest_agent::verify_node_signature;
use havn_attestd::Service;
use havn_config::NodeConfig;
use havn_proto::ipc::{ExecdRequest, ExecdResponse, InitRequest, InitResponse, JobResult};
use havn_proto::sign::{Domain, Signable};
use havn_proto::{bounded, vectors, AuditEntry, Hash32, NodeId, MAX_AUDIT_ENTRIES};

pub const BINARIES: [(&str, u8); 3] = [
    ("havn-attestd", 0xa1),
    ("havn-execd", 0xe1),
    ("havn-netd", 0x71),
];

pub struct Booted {
    pub svc: Service,
    pub node: NodeId,
    pub cfg: NodeConfig,
    pub _tpm: Swtpm,
    pub _dir: tempfile::TempDir,
}

/// A service on a fresh swtpm, booted like havn-init does it: three `Measure`s, then
/// `Status`.
pub fn boot(audit_interval_ms: u64) -> Booted {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    boot_in(dir, &state, audit_interval_ms)
}

/// [`boot`] with the state directory at `state`.
pub fn boot_in(dir: tempfile::TempDir, state: &std::path::Path, audit_interval_ms: u64) -> Booted {
    boot_in_with("", dir, state, audit_interval_ms)
}

/// [`boot_in`] with `extra` lines in `[node]`.
pub fn boot_in_with(
    extra: &str,
    dir: tempfile::TempDir,
    state: &std::path::Path,
    audit_interval_ms: u64,
) -> Booted {
    std::env::set_var("TSS2_LOG", "all+none");
    let tpm = Swtpm::start().expect("start swtpm");
    let text = format!(
        "[node]\nstate_dir = {state:?}\naudit_interval_ms = {audit_interval_ms}\n{extra}\n\
         [tpm]\ntcti = \"{tcti}\"\npcrs = [0, 1, 2, 3, 4, 5, 6, 7, 14]\nuserland_pcr = 14\n\
         [netd]\nlisten = \"127.0.0.1:8443\"\ntls_cert = \"c\"\ntls_key = {key:?}\nclient_ca = \"ca\"\n",
        tcti = tpm.tcti(),
        key = dir.path().join("tls.key"),
    );
    let cfg = NodeConfig::parse(&text, std::path::Path::new("node.toml")).unwrap();
    let (svc, node) = start(&cfg);
    Booted {
        svc,
        node,
        cfg,
        _tpm: tpm,
        _dir: dir,
    }
}

/// One start of attestd on `cfg` as havn-init drives it.
pub fn start(cfg: &NodeConfig) -> (Service, NodeId) {
    let mut svc = Service::open(cfg).expect("open service");
    for (name, b) in BINARIES {
        let r = svc.handle_init(InitRequest::Measure {
            name: bounded(name),
            digest: Hash32([b; 32]),
        });
        assert!(matches!(r, InitResponse::Measured { pcr: 14, .. }), "{r:?}");
    }
    let node = match svc.handle_init(InitRequest::Status) {
        InitResponse::Status {
            node,
            gate_open: true,
            events,
        } => {
            assert_eq!(events, 3);
            node
        }
        other => panic!("boot: {other:?}"),
    };
    (svc, node)
}

/// What havn-init would send for the running set; `wrong` gets another digest.
pub fn entries(
    wrong: Option<&str>,
    skip: Option<&str>,
) -> heapless::Vec<AuditEntry, MAX_AUDIT_ENTRIES> {
    let mut v = heapless::Vec::new();
    for (i, (name, b)) in BINARIES.iter().enumerate() {
        if skip == Some(*name) {
            continue;
        }
        let b = if wrong == Some(*name) { b ^ 0xff } else { *b };
        v.push(AuditEntry {
            name: bounded(name),
            pid: 100 + i as u32,
            digest: Hash32([b; 32]),
        })
        .unwrap();
    }
    v
}

pub fn audit(b: &mut Booted, e: heapless::Vec<AuditEntry, MAX_AUDIT_ENTRIES>) -> (bool, bool) {
    match b.svc.handle_init(InitRequest::Audit {
        entries: Box::new(e),
    }) {
        InitResponse::Audited { matched, gate_open } => (matched, gate_open),
        other => panic!("audit: {other:?}"),
    }
}

pub fn gate(b: &mut Booted) -> Result<(), String> {
    match b.svc.handle_execd(ExecdRequest::Gate {
        job_id: bounded("j"),
    }) {
        ExecdResponse::GateOpen => Ok(()),
        ExecdResponse::GateClosed { reason } => Err(reason.to_string()),
        other => panic!("gate: {other:?}"),
    }
}

pub fn result(job: &str) -> JobResult {
    let mut r = JobResult::from(vectors::receipt());
    r.job_id = bounded(job);
    r
}

pub fn verify<T: Signable>(node: &NodeId, domain: Domain, value: &T, sig: &[u8; 64]) -> bool {
    let bytes = postcard::to_stdvec(value).unwrap();
    verify_node_signature(&node.0 .0, domain.tag(), &bytes, sig)
}
