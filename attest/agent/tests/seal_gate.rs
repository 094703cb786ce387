use crate::common::*;
use havn_attest_agent::testing::Swtpm;
use havn_attest_agent::{verify_node_signature, Agent, AgentError};

#[test]
fn seal_unseal_roundtrip_and_sign() {
    let mut n = node();
    let key = n.agent.create_node_key().unwrap();
    let sig = key.sign(b"havn/receipt/v1", b"receipt");
    assert!(verify_node_signature(
        &key.public(),
        b"havn/receipt/v1",
        b"receipt",
        &sig
    ));
    assert!(!verify_node_signature(
        &key.public(),
        b"havn/heartbeat/v1",
        b"receipt",
        &sig
    ));
    drop(n.agent);
    // A new agent process: only the sealed blob on disk.
    let mut agent = Agent::open(config(&n.tpm, &n.state)).unwrap();
    let again = agent.unseal_node_key().unwrap();
    assert_eq!(again.public(), key.public());
    let blob = std::fs::read_to_string(n.state.join("node_key.sealed.json")).unwrap();
    assert!(!blob.contains(&hex::encode(again.sign(b"x", b"y"))));
    n.agent = agent;
}

#[test]
fn extend_of_sealed_pcr_refuses_unseal_naming_it_and_closes_gate() {
    let mut n = node();
    n.agent.create_node_key().unwrap();
    n.agent.gate().unwrap();
    // PCR 14 is quoted but not sealed: unseal and gate unaffected.
    n.agent.extend(14, "binary", "/usr/bin/x", b"x").unwrap();
    n.agent.unseal_node_key().unwrap();
    n.agent.gate().unwrap();
    // PCR 9 is sealed.
    n.agent
        .extend(9, "binary", "/usr/bin/rogue", b"rogue")
        .unwrap();
    match n.agent.unseal_node_key() {
        Err(AgentError::PcrsMoved { moved }) => assert_eq!(moved, vec![9]),
        other => panic!("expected PcrsMoved, got {other:?}"),
    }
    match n.agent.gate() {
        Err(AgentError::GateClosed { moved }) => assert_eq!(moved, vec![9]),
        other => panic!("expected GateClosed, got {other:?}"),
    }
    // Extending a PCR outside the quote set is refused.
    assert!(matches!(
        n.agent.extend(20, "x", "x", b"x"),
        Err(AgentError::PcrNotQuoted(20))
    ));
}

#[test]
fn gate_errors_when_tpm_dies_and_reopens_after_restart() {
    let mut n = node();
    let key = n.agent.create_node_key().unwrap();
    n.agent.extend(14, "binary", "/usr/bin/a", b"a").unwrap();
    n.agent.gate().unwrap();
    n.tpm.kill();
    let t = std::time::Instant::now();
    assert!(matches!(n.agent.gate(), Err(AgentError::TpmUnavailable(_))));
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "gate must not hang"
    );
    // Other calls fail fast too, and drop the dead context.
    assert!(n
        .agent
        .quote(NONCE, &key.public(), &havn_attest::synth::PAYLOAD_KEY)
        .is_err());
    n.tpm.restart().unwrap();
    n.agent.gate().unwrap();
    // After the reboot-like restart the sealed key still unseals (PCRs back to policy).
    assert_eq!(n.agent.unseal_node_key().unwrap().public(), key.public());
    // The event log belongs to the previous boot: a reopened agent starts a new one.
    let Node { tpm, state, agent } = n;
    drop(agent);
    let agent = Agent::open(config(&tpm, &state)).unwrap();
    assert!(agent.event_log().is_empty());
}

#[test]
fn sealed_blob_from_another_tpm_is_rejected() {
    let mut a = node();
    let mut b = node_with(Swtpm::start_fresh().unwrap());
    b.agent.create_node_key().unwrap();
    let foreign = b.agent.sealed_blob().unwrap().clone();
    a.agent.install_sealed_blob(foreign).unwrap();
    assert!(matches!(
        a.agent.unseal_node_key(),
        Err(AgentError::SealedBlobRejected(_))
    ));
}

#[test]
fn event_log_persists_across_agent_restart() {
    let mut n = node();
    n.agent.extend(14, "binary", "/usr/bin/a", b"a").unwrap();
    n.agent.extend(14, "binary", "/usr/bin/b", b"b").unwrap();
    let log = n.agent.event_log().to_vec();
    drop(n.agent);
    let agent = Agent::open(config(&n.tpm, &n.state)).unwrap();
    assert_eq!(agent.event_log(), &log[..]);
    n.agent = agent;
}

/// A TCP relay between the agent and swtpm on two consecutive ports (command and
/// control, as the swtpm TCTI expects) that records every byte both ways: the TPM bus.
struct Tap {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Tap {
    fn start(tpm_port: u16) -> Tap {
        use std::net::{TcpListener, TcpStream};
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (cmd, port) = loop {
            let a = TcpListener::bind("127.0.0.1:0").unwrap();
            let p = a.local_addr().unwrap().port();
            let Some(next) = p.checked_add(1) else {
                continue;
            };
            if let Ok(b) = TcpListener::bind(("127.0.0.1", next)) {
                break ((a, b), p);
            }
        };
        for (listener, to) in [(cmd.0, tpm_port), (cmd.1, tpm_port + 1)] {
            let seen = seen.clone();
            std::thread::spawn(move || {
                for client in listener.incoming().flatten() {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                        return;
                    };
                    for (mut from, mut into) in [
                        (client.try_clone().unwrap(), server.try_clone().unwrap()),
                        (server, client),
                    ] {
                        let seen = seen.clone();
                        std::thread::spawn(move || {
                            use std::io::{Read, Write};
                            let mut buf = [0u8; 4096];
                            while let Ok(n) = from.read(&mut buf) {
                                if n == 0 || into.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                                seen.lock().unwrap().extend_from_slice(&buf[..n]);
                            }
                            let _ = into.shutdown(std::net::Shutdown::Write);
                        });
                    }
                }
            });
        }
        Tap { port, seen }
    }
}

#[test]
fn the_node_seed_never_crosses_the_tpm_bus_in_the_clear() {
    let n = node();
    drop(n.agent);
    // Every start goes through a tap on the bus: the one that creates and seals the
    // key, and the next, which unseals it.
    let tap = Tap::start(n.tpm.port());
    let mut cfg = config(&n.tpm, &n.state);
    cfg.tcti = format!("swtpm:host=127.0.0.1,port={}", tap.port);
    let mut agent = Agent::open(cfg.clone()).expect("open agent through the tap");
    let key = agent.create_node_key().unwrap();
    let seed = key.seed_for_tests();
    drop(agent);
    let mut agent = Agent::open(cfg).expect("open agent through the tap");
    let again = agent.unseal_node_key().unwrap();
    assert_eq!(again.public(), key.public());
    let seen = tap.seen.lock().unwrap().clone();
    assert!(
        seen.len() > 1000,
        "the tap saw the traffic ({} bytes)",
        seen.len()
    );
    assert!(
        !seen.windows(32).any(|w| w == seed),
        "the seed crossed the bus in the clear (sealing or unsealing)"
    );
}

#[test]
fn a_secret_is_on_disk_only_sealed_and_survives_a_restart_and_pcr_changes() {
    let n = node();
    let mut agent = n.agent;
    let pem = b"-----BEGIN PRIVATE KEY-----\nnot really a key but 200 bytes of secret text.......................................................................................\n-----END PRIVATE KEY-----\n";
    assert!(!agent.has_secret("netd-tls-key"));
    assert!(agent.unseal_secret("netd-tls-key").unwrap().is_none());
    agent.seal_secret("netd-tls-key", pem).unwrap();
    let file = n.state.join("netd-tls-key.sealed.json");
    let on_disk = std::fs::read(&file).unwrap();
    assert!(
        !on_disk.windows(16).any(|w| pem.windows(16).any(|p| p == w)),
        "no plaintext on disk"
    );
    // A measured PCR moves (the node key would stay sealed): the TLS key still unseals.
    agent
        .extend(14, "binary", "/usr/bin/changed", b"changed")
        .unwrap();
    drop(agent);
    let mut agent = Agent::open(config(&n.tpm, &n.state)).unwrap();
    assert_eq!(
        agent
            .unseal_secret("netd-tls-key")
            .unwrap()
            .as_deref()
            .map(|v| &v[..]),
        Some(&pem[..])
    );
    // An altered ciphertext is refused, never returned.
    let mut v: serde_json::Value = serde_json::from_slice(&on_disk).unwrap();
    let ct = v["ciphertext"].as_str().unwrap().to_string();
    let flipped = format!(
        "{}{}",
        if ct.starts_with('0') { "1" } else { "0" },
        &ct[1..]
    );
    v["ciphertext"] = serde_json::Value::String(flipped);
    std::fs::write(&file, serde_json::to_vec(&v).unwrap()).unwrap();
    let err = agent.unseal_secret("netd-tls-key").unwrap_err().to_string();
    assert!(err.contains("does not decrypt"), "{err}");
    // Another TPM cannot unseal it.
    std::fs::write(&file, &on_disk).unwrap();
    let other = Swtpm::start_fresh().unwrap();
    let foreign_state = other.dir().join("agent-state");
    std::fs::create_dir_all(&foreign_state).unwrap();
    std::fs::copy(&file, foreign_state.join("netd-tls-key.sealed.json")).unwrap();
    let mut foreign = Agent::open(config(&other, &foreign_state)).unwrap();
    assert!(foreign.unseal_secret("netd-tls-key").is_err());
    assert!(
        agent.seal_secret("../escape", b"x").is_err(),
        "names are checked"
    );
}
