use havn_attest_agent::testing::Swtpm;
use havn_attest_agent::{Agent, AgentConfig};
use std::path::PathBuf;

pub const SEAL_PCRS: [u32; 9] = [0, 1, 2, 3, 4, 5, 6, 7, 9];

pub struct Node {
    pub tpm: Swtpm,
    pub state: PathBuf,
    pub agent: Agent,
}

pub fn quiet() {
    // Quiet libtss2's expected WARNING/ERROR lines (refused unseal, dead TPM).
    std::env::set_var("TSS2_LOG", "all+none");
}

pub fn config(tpm: &Swtpm, state: &std::path::Path) -> AgentConfig {
    let mut cfg = AgentConfig::new(&tpm.tcti(), state);
    cfg.seal_pcrs = SEAL_PCRS.to_vec();
    cfg.quote_pcrs = (0..16).collect();
    cfg
}

pub fn node_with(tpm: Swtpm) -> Node {
    quiet();
    let state = tpm.dir().join("agent-state");
    let agent = Agent::open(config(&tpm, &state)).expect("open agent");
    Node { tpm, state, agent }
}

pub fn node() -> Node {
    node_with(Swtpm::start().expect("start swtpm"))
}

pub const NONCE: &[u8] = b"verifier-nonce-0123456789abcdef";
