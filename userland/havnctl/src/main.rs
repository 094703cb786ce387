//! havnctl: the command line for the people around a Havn node — operators
//! (`pki`, `golden`), orchestrators (`submit`, `get`), validators (`fetch-quote`,
//! `verify-quote`, `verify-receipt`, `verify-signed`, `verify-settlement`, `run`,
//! `challenge`) and TPM owners (`attest quote`).
mod alerts_cmd;
mod attest_cmd;
mod challenge_cmd;
mod chat_client;
mod chat_cmd;
mod diffusion_cmd;
mod encrypt;
mod grpc_submit;
mod mesh_cmd;
mod models_cmd;
mod net_cmd;
mod run_cmd;
mod sealed_cmd;
mod stake_cmd;
mod transcribe_cmd;
mod validate_cmd;
mod wal_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "havnctl",
    version,
    about = "Havn node CLI: submit jobs, check quotes and receipts, re-execute work"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a workflow locally with the deterministic engine (what validators use to
    /// re-execute), or re-execute one node from a Merkle proof.
    Run(run_cmd::RunArgs),
    /// Development PKI for the mTLS API.
    Pki(net_cmd::PkiArgs),
    /// Submit a job to a node over mTLS (orchestrator); `--wait` returns the receipt.
    Submit(net_cmd::SubmitArgs),
    /// Ask a node's language model a question over mTLS: upload, submit, wait, print
    /// the answer and the signed receipt's path.
    Chat(chat_client::ChatClientArgs),
    /// GET any API path over mTLS (`/health`, `/job/N`, `/receipt/J`, `/metrics`).
    Get(net_cmd::GetArgs),
    /// TPM commands on this machine (quote with the node key bound in).
    Attest(attest_cmd::AttestArgs),
    /// Ask a node for a quote over a fresh nonce and write the evidence directory.
    FetchQuote(validate_cmd::FetchQuoteArgs),
    /// Verify an evidence directory (quote, PCRs, event log, golden manifest, EK CA).
    VerifyQuote(attest_cmd::VerifyQuoteArgs),
    /// Verify a signed receipt against the node key a verified quote binds.
    VerifyReceipt(validate_cmd::VerifyReceiptArgs),
    /// Verify a signed self-audit (`/attest/audit`) or capability manifest
    /// (`/capabilities`) against the node key a verified quote binds.
    VerifySigned(validate_cmd::VerifySignedArgs),
    /// Challenge one DAG node of a finished job: fetch the node-served proof and node
    /// inputs, re-execute the node and check it against the receipt's runtime_hash.
    Challenge(challenge_cmd::ChallengeArgs),
    /// Write a golden measurement manifest for a set of daemon binaries (vendor).
    Golden(validate_cmd::GoldenArgs),
    /// Decode a workflow's outputs file (e.g. the LM's generated text).
    ShowOutput(validate_cmd::ShowOutputArgs),
    /// List the shipped workflows with their manifest checksums (what a job names).
    Workflows(validate_cmd::WorkflowsArgs),
    /// The model store: fetch the shipped models, add your own GGUF file, list.
    Models(models_cmd::ModelsArgs),
    /// netd's job write-ahead log: check it, or salvage one refused as corrupt.
    Wal(wal_cmd::WalArgs),
    /// Check an epoch settlement certificate and its receipts' inclusion proofs offline.
    VerifySettlement(mesh_cmd::VerifySettlementArgs),
    /// The validator mesh as a node sees it (`mesh status`).
    Mesh(mesh_cmd::MeshArgs),
    /// Stake in StakeGuard: bond (through the node), status, unbond and withdraw (the
    /// owner's key).
    Stake(stake_cmd::StakeArgs),
    /// The receiving end of a node's SLA alerts: make a receiver key, verify and open
    /// a received alert.
    Alerts(alerts_cmd::AlertsArgs),
    /// Make an X25519 key pair for sealed outputs (`submit --output-key`); prints the
    /// public key.
    Keygen(sealed_cmd::KeygenArgs),
    /// Open an artifact a node sealed to your key (outputs of a `--output-key` job).
    Open(sealed_cmd::OpenArgs),
    /// Payouts from PayoutRouter: claim a settled receipt, or ask whether it was paid.
    Payout(stake_cmd::PayoutArgs),
    /// Deploy Havn's contracts on a dev or test chain (`chain deploy`).
    Chain(stake_cmd::ChainCmdArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Run(a) => run_cmd::run(a),
        Cmd::Pki(a) => net_cmd::run(net_cmd::NetCmd::Pki(a)),
        Cmd::Submit(a) => net_cmd::run(net_cmd::NetCmd::Submit(Box::new(a))),
        Cmd::Chat(a) => chat_client::run(a),
        Cmd::Get(a) => net_cmd::run(net_cmd::NetCmd::Get(a)),
        Cmd::Attest(a) => attest_cmd::run(a),
        Cmd::FetchQuote(a) => validate_cmd::fetch_quote(a),
        Cmd::VerifyQuote(a) => attest_cmd::run_verify(a),
        Cmd::VerifyReceipt(a) => validate_cmd::verify_receipt(a),
        Cmd::VerifySigned(a) => validate_cmd::verify_signed(a),
        Cmd::VerifySettlement(a) => mesh_cmd::verify_settlement(a),
        Cmd::Mesh(a) => mesh_cmd::run(a),
        Cmd::Stake(a) => stake_cmd::run_stake(a),
        Cmd::Alerts(a) => alerts_cmd::run(a),
        Cmd::Keygen(a) => sealed_cmd::run_keygen(a),
        Cmd::Open(a) => sealed_cmd::run_open(a),
        Cmd::Payout(a) => stake_cmd::run_payout(a),
        Cmd::Chain(a) => stake_cmd::run_chain(a),
        Cmd::Challenge(a) => challenge_cmd::run(a),
        Cmd::Golden(a) => validate_cmd::golden(a),
        Cmd::ShowOutput(a) => validate_cmd::show_output(a),
        Cmd::Workflows(a) => validate_cmd::workflows(a),
        Cmd::Models(a) => models_cmd::run(a),
        Cmd::Wal(a) => wal_cmd::run(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("havnctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
