//! attestd's chain key over a real swtpm: made once and sealed (the same account after
//! a restart), named in Identity and the capability manifest, and used only within the
//! signing policy: bonds to the configured owner, never a transfer or an unbond; quorum
//! votes for validators only, once per subject.

use havn_chain::alloy::primitives::{Address, Signature, B256, U256};
use havn_chain::alloy::sol_types::SolCall;
use havn_chain::contracts::{StakeGuard, HAI};
use havn_chain::eip712::{self, Settlement};
use havn_chain::Deployment;
use havn_proto::chain::{ChainTx, ChainVote};
use havn_proto::ipc::{NetdAttestRequest, NetdAttestResponse, RemoteError};
use havn_proto::{ComputeClass, Hash32};

mod common;
use common::*;

const OWNER: &str = "0x00000000000000000000000000000000000000aa";

fn deployment() -> Deployment {
    Deployment {
        chain_id: 31_337,
        hai: Address::repeat_byte(1),
        stake_guard: Address::repeat_byte(2),
        adjudicator: Address::repeat_byte(3),
        payout_router: Address::repeat_byte(4),
    }
}

fn booted(role: &str, with_chain: bool) -> Booted {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut extra = format!("role = \"{role}\"\ncompute_class = \"S\"\n");
    if with_chain {
        let file = dir.path().join("deployment.json");
        deployment().save(&file).unwrap();
        extra.push_str(&format!(
            "[chain]\nrpc = \"http://127.0.0.1:1\"\ndeployment = {file:?}\nowner = \"{OWNER}\"\n"
        ));
    }
    boot_in_with(&extra, dir, &state, 0)
}

fn account(b: &mut Booted) -> Address {
    match b.svc.handle_netd(NetdAttestRequest::Identity) {
        NetdAttestResponse::Identity { chain_account, .. } => Address::from(chain_account),
        other => panic!("{other:?}"),
    }
}

fn tx(to: Address, input: Vec<u8>) -> NetdAttestRequest {
    NetdAttestRequest::ChainTx(Box::new(ChainTx {
        chain_id: 31_337,
        nonce: 0,
        gas_limit: 200_000,
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1,
        to: to.into_array(),
        input: heapless::Vec::from_slice(&input).unwrap(),
    }))
}

fn bond(owner: Address) -> Vec<u8> {
    StakeGuard::bondCall {
        nodeKey: B256::repeat_byte(7),
        computeClass: 0,
        role: 0,
        amount: U256::from(1),
        owner,
        manifest: B256::ZERO,
    }
    .abi_encode()
}

#[test]
fn the_chain_key_is_sealed_once_and_survives_a_restart() {
    let mut b = booted("execution", true);
    let first = account(&mut b);
    assert_ne!(
        first,
        Address::ZERO,
        "a chain account once the node key is unsealed"
    );
    drop(std::mem::replace(&mut b.svc, start(&b.cfg).0));
    assert_eq!(
        account(&mut b),
        first,
        "the same key, unsealed after a restart"
    );
}

#[test]
fn the_chain_key_signs_bonds_to_the_owner_and_refuses_moving_stake() {
    let mut b = booted("execution", true);
    let me = account(&mut b);
    let d = deployment();
    let owner: Address = OWNER.parse().unwrap();
    let call = havn_chain::tx::Call {
        chain_id: 31_337,
        nonce: 0,
        gas_limit: 200_000,
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1,
        to: d.stake_guard,
        input: bond(owner).into(),
    };
    match b.svc.handle_netd(tx(d.stake_guard, bond(owner))) {
        NetdAttestResponse::Chain(s) => {
            assert_eq!(Address::from(s.signer), me);
            let sig = Signature::from_raw(&s.signature).unwrap();
            assert_eq!(
                sig.recover_address_from_prehash(&call.signature_hash())
                    .unwrap(),
                me
            );
        }
        other => panic!("bond refused: {other:?}"),
    }
    let attacker = Address::repeat_byte(0xbb);
    for (to, input) in [
        (d.stake_guard, bond(attacker)),
        (
            d.stake_guard,
            StakeGuard::unbondCall { account: me }.abi_encode(),
        ),
        (
            d.stake_guard,
            StakeGuard::withdrawCall { account: me }.abi_encode(),
        ),
        (
            d.hai,
            HAI::transferCall {
                to: attacker,
                value: U256::MAX,
            }
            .abi_encode(),
        ),
        (
            d.hai,
            HAI::approveCall {
                spender: attacker,
                value: U256::MAX,
            }
            .abi_encode(),
        ),
        (attacker, vec![]),
    ] {
        assert_eq!(
            b.svc.handle_netd(tx(to, input)),
            NetdAttestResponse::Error(RemoteError::ChainPolicy)
        );
    }
    // A challenge is a validator's: refused for an execution node.
    let challenge = havn_chain::contracts::Adjudicator::challengeCall {
        accused: attacker,
        receipt: B256::ZERO,
        epoch: 1,
    }
    .abi_encode();
    assert_eq!(
        b.svc.handle_netd(tx(d.adjudicator, challenge)),
        NetdAttestResponse::Error(RemoteError::ChainPolicy)
    );
    // Quorum votes are a validator's too.
    let vote = NetdAttestRequest::ChainVote(Box::new(ChainVote::Quarantine {
        node: b.node,
        epoch: 3,
    }));
    assert_eq!(
        b.svc.handle_netd(vote),
        NetdAttestResponse::Error(RemoteError::NotPermitted)
    );
}

#[test]
fn a_validator_signs_one_settlement_per_class_and_epoch() {
    let mut b = booted("validator", true);
    let me = account(&mut b);
    let d = deployment();
    let vote = |root: u8| {
        NetdAttestRequest::ChainVote(Box::new(ChainVote::Settlement {
            epoch: 9,
            compute_class: ComputeClass::S,
            payout_root: Hash32([root; 32]),
            receipts: 2,
        }))
    };
    let digest = eip712::signing_hash(
        &Settlement {
            epoch: 9,
            computeClass: 0,
            payoutRoot: B256::repeat_byte(1),
            receipts: 2,
        },
        &eip712::domain(d.chain_id, d.stake_guard),
    );
    match b.svc.handle_netd(vote(1)) {
        NetdAttestResponse::Chain(s) => {
            let sig: [u8; 65] = s.signature.as_slice().try_into().unwrap();
            assert_eq!(
                eip712::recover(&digest, &sig),
                Some(me),
                "an EIP-712 signature StakeGuard recovers"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(b.svc.handle_netd(vote(1)), NetdAttestResponse::Chain(_)),
        "the same vote again"
    );
    assert_eq!(
        b.svc.handle_netd(vote(2)),
        NetdAttestResponse::Error(RemoteError::AlreadySigned),
        "never two roots for one class and epoch"
    );
    drop(std::mem::replace(&mut b.svc, start(&b.cfg).0));
    assert_eq!(
        b.svc.handle_netd(vote(2)),
        NetdAttestResponse::Error(RemoteError::AlreadySigned),
        "not after a restart either"
    );
}

#[test]
fn without_a_chain_section_nothing_is_signed() {
    let mut b = booted("validator", false);
    let d = deployment();
    assert_eq!(
        b.svc
            .handle_netd(tx(d.stake_guard, bond(OWNER.parse().unwrap()))),
        NetdAttestResponse::Error(RemoteError::NotPermitted)
    );
}
