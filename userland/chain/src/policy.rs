//! What a node's chain key may sign: the check attestd makes on every transaction netd
//! asks it to sign, so a compromised netd can bond, claim, vote and challenge, but never
//! move stake or tokens out.
//!
//! Allowed, and nothing else (value always 0, this deployment's chain id only):
//! - `HAI.approve(spender)` with the spender one of our three contracts;
//! - `StakeGuard.bond(…, owner, …)` with the owner the operator configured in node.toml
//!   (only that owner can ever unbond or withdraw);
//! - `StakeGuard.quarantine`/`release`, `Adjudicator.resolve`, `PayoutRouter.settle`
//!   (submitting committee certificates, which the contracts check themselves);
//! - `PayoutRouter.claim` (pays the bond's owner, whoever sends it);
//! - `Adjudicator.challenge`, for a validator only (it posts the challenge bond).
//!
//! Refused by name: `HAI.transfer`/`transferFrom`/`mint`, `StakeGuard.unbond`/
//! `withdraw`/`slash`/`setAdjudicator`, `PayoutRouter.fund`, any other contract.

use crate::alloy::primitives::Address;
use crate::alloy::sol_types::SolCall;

use crate::contracts::{Adjudicator, PayoutRouter, StakeGuard, HAI};
use crate::Deployment;

/// What an allowed transaction does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxKind {
    /// `HAI.approve` for one of our contracts.
    Approve,
    /// `StakeGuard.bond`.
    Bond,
    /// `PayoutRouter.claim`.
    Claim,
    /// A committee certificate submitted (`settle`, `resolve`, `quarantine`, `release`).
    Vote,
    /// `Adjudicator.challenge`.
    Challenge,
}

impl TxKind {
    /// Its name in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TxKind::Approve => "approve",
            TxKind::Bond => "bond",
            TxKind::Claim => "claim",
            TxKind::Vote => "vote",
            TxKind::Challenge => "challenge",
        }
    }
}

/// Why a transaction is not signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Another chain id than the deployment's.
    #[error("chain id {got} is not the deployment's ({want})")]
    WrongChain {
        /// The deployment's.
        want: u64,
        /// The transaction's.
        got: u64,
    },
    /// Ether attached.
    #[error("a node transaction carries no ether")]
    Value,
    /// Not one of our contracts.
    #[error("{0} is not a Havn contract of this deployment")]
    UnknownContract(Address),
    /// A function the node key may not call.
    #[error("{contract}.{function} is not a transaction the node key signs")]
    Forbidden {
        /// The contract.
        contract: &'static str,
        /// The function, or its selector.
        function: String,
    },
    /// An approval for someone other than our contracts.
    #[error("approve for {0}, which is not a Havn contract")]
    ApproveSpender(Address),
    /// A bond naming another owner than the configured one.
    #[error("bond owner {got} is not the configured owner {want}")]
    BondOwner {
        /// node.toml's `[chain] owner`.
        want: Address,
        /// The transaction's.
        got: Address,
    },
    /// A challenge from an execution node.
    #[error("only a validator opens challenges")]
    NotValidator,
    /// Calldata that does not decode.
    #[error("calldata of {0} does not decode")]
    Malformed(&'static str),
}

/// The node's signing policy: its deployment, its operator's account, its role.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The contracts.
    pub deployment: Deployment,
    /// The only owner a bond may name.
    pub owner: Address,
    /// Whether this node is a validator.
    pub validator: bool,
}

fn selector(input: &[u8]) -> [u8; 4] {
    let mut s = [0u8; 4];
    if let Some(head) = input.get(..4) {
        s.copy_from_slice(head);
    }
    s
}

fn forbidden(contract: &'static str, input: &[u8]) -> PolicyError {
    let function = match contract {
        "HAI" => HAI::HAICalls::name_by_selector(selector(input)),
        "StakeGuard" => StakeGuard::StakeGuardCalls::name_by_selector(selector(input)),
        "Adjudicator" => Adjudicator::AdjudicatorCalls::name_by_selector(selector(input)),
        _ => PayoutRouter::PayoutRouterCalls::name_by_selector(selector(input)),
    }
    .map(str::to_string)
    .unwrap_or_else(|| {
        format!(
            "0x{}",
            crate::alloy::primitives::hex::encode(selector(input))
        )
    });
    PolicyError::Forbidden { contract, function }
}

impl Policy {
    /// Checks a transaction to `to` with `input` and `value_is_zero` on `chain_id`.
    pub fn check(
        &self,
        chain_id: u64,
        to: Address,
        value_is_zero: bool,
        input: &[u8],
    ) -> Result<TxKind, PolicyError> {
        let d = &self.deployment;
        if chain_id != d.chain_id {
            return Err(PolicyError::WrongChain {
                want: d.chain_id,
                got: chain_id,
            });
        }
        if !value_is_zero {
            return Err(PolicyError::Value);
        }
        let sel = selector(input);
        if to == d.hai {
            if sel != HAI::approveCall::SELECTOR {
                return Err(forbidden("HAI", input));
            }
            let call = HAI::approveCall::abi_decode(input)
                .map_err(|_| PolicyError::Malformed("approve"))?;
            if ![d.stake_guard, d.adjudicator, d.payout_router].contains(&call.spender) {
                return Err(PolicyError::ApproveSpender(call.spender));
            }
            return Ok(TxKind::Approve);
        }
        if to == d.stake_guard {
            return match sel {
                StakeGuard::bondCall::SELECTOR => {
                    let call = StakeGuard::bondCall::abi_decode(input)
                        .map_err(|_| PolicyError::Malformed("bond"))?;
                    if call.owner != self.owner {
                        return Err(PolicyError::BondOwner {
                            want: self.owner,
                            got: call.owner,
                        });
                    }
                    Ok(TxKind::Bond)
                }
                StakeGuard::quarantineCall::SELECTOR | StakeGuard::releaseCall::SELECTOR => {
                    Ok(TxKind::Vote)
                }
                _ => Err(forbidden("StakeGuard", input)),
            };
        }
        if to == d.adjudicator {
            return match sel {
                Adjudicator::challengeCall::SELECTOR if self.validator => Ok(TxKind::Challenge),
                Adjudicator::challengeCall::SELECTOR => Err(PolicyError::NotValidator),
                Adjudicator::resolveCall::SELECTOR => Ok(TxKind::Vote),
                _ => Err(forbidden("Adjudicator", input)),
            };
        }
        if to == d.payout_router {
            return match sel {
                PayoutRouter::claimCall::SELECTOR => Ok(TxKind::Claim),
                PayoutRouter::settleCall::SELECTOR => Ok(TxKind::Vote),
                _ => Err(forbidden("PayoutRouter", input)),
            };
        }
        Err(PolicyError::UnknownContract(to))
    }
}
