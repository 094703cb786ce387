//! A dev chain with three validators and two compute nodes bonded.

#![allow(dead_code)]

use havn_chain_client::alloy::primitives::{Address, Bytes, B256, U256};
use havn_chain_client::alloy::sol_types::SolStruct;
use havn_chain_client::devnet::Devnet;
use havn_chain_client::eip712::{self, QuorumSignature};
use havn_chain_client::{hai, Chain, ChainError, Role};

/// Accounts: 0 deployer; 1–3 validators (5,000 HAI each, class S, self-owned);
/// 4 a class-S node (2,000 HAI) owned by 8; 5 a class-M node (5,000 HAI) owned by 9;
/// 6 and 7 unbonded; 10 an outsider with HAI but no bond.
pub const VALIDATORS: [usize; 3] = [1, 2, 3];
pub const NODE_S: usize = 4;
pub const NODE_M: usize = 5;
pub const OWNER_S: usize = 8;
pub const OWNER_M: usize = 9;
pub const UNBONDING_DELAY_S: u64 = 3_600;

pub struct World {
    pub net: Devnet,
}

/// `true` when anvil can run here; otherwise skips (or fails under CI).
pub fn anvil_or_skip() -> bool {
    havn_testkit::require(
        havn_chain_client::devnet::anvil_path().is_some(),
        "anvil",
        "scripts/setup installs it (npm ci in chain/)",
    )
}

pub fn node_key(i: usize) -> B256 {
    B256::repeat_byte(u8::try_from(i).unwrap_or(0xff))
}

impl World {
    /// The dev chain with nothing bonded.
    pub async fn empty() -> Self {
        let net = Devnet::start(12, UNBONDING_DELAY_S, 100_000)
            .await
            .expect("devnet starts");
        Self { net }
    }

    /// The dev chain with the validators and nodes above bonded.
    pub async fn bonded() -> Self {
        let w = Self::empty().await;
        for v in VALIDATORS {
            w.chain(v)
                .bond(
                    node_key(v),
                    0,
                    Role::Validator,
                    hai(5_000),
                    w.addr(v),
                    B256::ZERO,
                )
                .await
                .expect("validator bonds");
        }
        w.chain(NODE_S)
            .bond(
                node_key(NODE_S),
                0,
                Role::Compute,
                hai(2_000),
                w.addr(OWNER_S),
                B256::ZERO,
            )
            .await
            .expect("S node bonds");
        w.chain(NODE_M)
            .bond(
                node_key(NODE_M),
                1,
                Role::Compute,
                hai(5_000),
                w.addr(OWNER_M),
                B256::ZERO,
            )
            .await
            .expect("M node bonds");
        w
    }

    pub fn chain(&self, i: usize) -> Chain {
        self.net.chain(i).expect("client")
    }

    pub fn addr(&self, i: usize) -> Address {
        self.net.address(i)
    }

    pub async fn balance(&self, i: usize) -> U256 {
        self.chain(0).balance(self.addr(i)).await.expect("balance")
    }

    /// Signatures by `signers` over `msg`, as a certificate.
    pub fn certify<T: SolStruct>(&self, msg: &T, signers: &[usize]) -> Vec<Bytes> {
        let digest = eip712::signing_hash(msg, &self.chain(0).domain());
        eip712::certificate(
            signers
                .iter()
                .map(|i| eip712::sign_digest(&self.net.key(*i), &digest).expect("sign"))
                .collect::<Vec<QuorumSignature>>(),
        )
    }
}

/// Asserts `r` reverted with the contract error `name`.
#[track_caller]
pub fn reverts<T: std::fmt::Debug>(r: Result<T, ChainError>, name: &str) {
    match r {
        Err(ChainError::Reverted(rev)) => {
            assert_eq!(rev.name, name, "expected a {name} revert, got {rev}")
        }
        other => panic!("expected a {name} revert, got {other:?}"),
    }
}

impl World {
    pub fn deployment_router(&self) -> Address {
        self.net.deployment().payout_router
    }
}
