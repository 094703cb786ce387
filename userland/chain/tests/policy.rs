//! The node key's signing policy, case by case (no chain needed).

use havn_chain::alloy::primitives::{Address, Bytes, B256, U256};
use havn_chain::alloy::sol_types::SolCall;
use havn_chain::contracts::{Adjudicator, PayoutRouter, StakeGuard, HAI};
use havn_chain::policy::{Policy, PolicyError, TxKind};
use havn_chain::tx::{self, Call};
use havn_chain::Deployment;

fn deployment() -> Deployment {
    Deployment {
        chain_id: 31337,
        hai: Address::repeat_byte(1),
        stake_guard: Address::repeat_byte(2),
        adjudicator: Address::repeat_byte(3),
        payout_router: Address::repeat_byte(4),
    }
}

fn policy(validator: bool) -> Policy {
    Policy {
        deployment: deployment(),
        owner: Address::repeat_byte(0x0e),
        validator,
    }
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
fn the_node_key_bonds_claims_votes_and_approves_our_contracts_only() {
    let d = deployment();
    let p = policy(false);
    let ok = |to, input: Vec<u8>| p.check(d.chain_id, to, true, &input);
    assert_eq!(ok(d.stake_guard, bond(p.owner)), Ok(TxKind::Bond));
    for spender in [d.stake_guard, d.adjudicator, d.payout_router] {
        let approve = HAI::approveCall {
            spender,
            value: U256::MAX,
        }
        .abi_encode();
        assert_eq!(ok(d.hai, approve), Ok(TxKind::Approve));
    }
    let claim = PayoutRouter::claimCall {
        s: PayoutRouter::Settlement {
            epoch: 1,
            computeClass: 0,
            payoutRoot: B256::ZERO,
            receipts: 1,
        },
        signatures: vec![],
        p: PayoutRouter::Payout {
            receipt: B256::ZERO,
            nodeKey: B256::ZERO,
            payee: Address::ZERO,
            fee: U256::ZERO,
        },
        proof: vec![],
    }
    .abi_encode();
    assert_eq!(ok(d.payout_router, claim), Ok(TxKind::Claim));
    let resolve = Adjudicator::resolveCall {
        id: U256::from(1),
        upheld: true,
        signatures: vec![],
    }
    .abi_encode();
    assert_eq!(ok(d.adjudicator, resolve), Ok(TxKind::Vote));
    let quarantine = StakeGuard::quarantineCall {
        account: Address::ZERO,
        epoch: 3,
        signatures: vec![],
    }
    .abi_encode();
    assert_eq!(ok(d.stake_guard, quarantine), Ok(TxKind::Vote));
}

#[test]
fn the_node_key_never_moves_stake_or_tokens() {
    let d = deployment();
    let p = policy(true);
    let refused = |to, input: Vec<u8>| p.check(d.chain_id, to, true, &input).unwrap_err();
    let attacker = Address::repeat_byte(0xaa);
    assert_eq!(
        refused(d.stake_guard, bond(attacker)),
        PolicyError::BondOwner {
            want: p.owner,
            got: attacker
        }
    );
    for (input, function) in [
        (
            StakeGuard::unbondCall { account: attacker }.abi_encode(),
            "unbond",
        ),
        (
            StakeGuard::withdrawCall { account: attacker }.abi_encode(),
            "withdraw",
        ),
        (
            StakeGuard::slashCall {
                account: attacker,
                amount: U256::MAX,
                to: attacker,
            }
            .abi_encode(),
            "slash",
        ),
        (
            StakeGuard::setAdjudicatorCall { a: attacker }.abi_encode(),
            "setAdjudicator",
        ),
    ] {
        assert_eq!(
            refused(d.stake_guard, input),
            PolicyError::Forbidden {
                contract: "StakeGuard",
                function: function.into()
            }
        );
    }
    for (input, function) in [
        (
            HAI::transferCall {
                to: attacker,
                value: U256::MAX,
            }
            .abi_encode(),
            "transfer",
        ),
        (
            HAI::transferFromCall {
                from: d.stake_guard,
                to: attacker,
                value: U256::MAX,
            }
            .abi_encode(),
            "transferFrom",
        ),
        (
            HAI::mintCall {
                to: attacker,
                value: U256::MAX,
            }
            .abi_encode(),
            "mint",
        ),
    ] {
        assert_eq!(
            refused(d.hai, input),
            PolicyError::Forbidden {
                contract: "HAI",
                function: function.into()
            }
        );
    }
    assert_eq!(
        refused(
            d.hai,
            HAI::approveCall {
                spender: attacker,
                value: U256::MAX
            }
            .abi_encode()
        ),
        PolicyError::ApproveSpender(attacker)
    );
    assert_eq!(
        refused(
            d.payout_router,
            PayoutRouter::fundCall {
                amount: U256::from(1)
            }
            .abi_encode()
        ),
        PolicyError::Forbidden {
            contract: "PayoutRouter",
            function: "fund".into()
        }
    );
    assert_eq!(
        refused(attacker, vec![]),
        PolicyError::UnknownContract(attacker)
    );
    assert!(matches!(
        refused(d.hai, vec![0xde, 0xad, 0xbe, 0xef]),
        PolicyError::Forbidden { .. }
    ));
    assert_eq!(
        p.check(1, d.stake_guard, true, &bond(p.owner)),
        Err(PolicyError::WrongChain {
            want: 31337,
            got: 1
        })
    );
    assert_eq!(
        p.check(d.chain_id, d.stake_guard, false, &bond(p.owner)),
        Err(PolicyError::Value)
    );
    let mut truncated = bond(p.owner);
    truncated.truncate(40);
    assert_eq!(
        refused(d.stake_guard, truncated),
        PolicyError::Malformed("bond")
    );
}

#[test]
fn only_a_validator_opens_challenges() {
    let d = deployment();
    let challenge = Adjudicator::challengeCall {
        accused: Address::ZERO,
        receipt: B256::ZERO,
        epoch: 1,
    }
    .abi_encode();
    assert_eq!(
        policy(true).check(d.chain_id, d.adjudicator, true, &challenge),
        Ok(TxKind::Challenge)
    );
    assert_eq!(
        policy(false).check(d.chain_id, d.adjudicator, true, &challenge),
        Err(PolicyError::NotValidator)
    );
}

#[test]
fn a_signed_call_recovers_to_the_sealed_key() {
    let (key, bytes) = tx::generate_key();
    let again = tx::key_from_bytes(&bytes).unwrap();
    assert_eq!(key.address(), again.address());
    let call = Call {
        chain_id: 31337,
        nonce: 4,
        gas_limit: 100_000,
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1,
        to: Address::repeat_byte(2),
        input: Bytes::from(bond(Address::ZERO)),
    };
    let sig = call.sign(&again).unwrap();
    assert_eq!(
        sig.recover_address_from_prehash(&call.signature_hash())
            .unwrap(),
        key.address()
    );
    assert!(tx::key_from_bytes(&[0u8; 32]).is_err(), "zero is not a key");
    assert!(tx::key_from_bytes(&[1u8; 7]).is_err(), "wrong length");
}
