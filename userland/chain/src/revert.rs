//! Reverts by name: a contract's custom error decoded from the revert data, so callers
//! (and tests) match on `"BelowFloor"` rather than on bytes.

use crate::alloy::primitives::Bytes;
use crate::alloy::sol_types::SolInterface;

use crate::contracts::{Adjudicator, PayoutRouter, StakeGuard, HAI};

/// A decoded revert: the error's name, its full signature and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revert {
    /// The error's name, e.g. `BelowFloor`.
    pub name: String,
    /// Its arguments, as the bindings print them.
    pub detail: String,
    /// The raw revert data.
    pub data: Bytes,
}

impl std::fmt::Display for Revert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.name, self.detail)
    }
}

impl Revert {
    /// Decodes revert data against every Havn contract's errors (a call into one
    /// contract may revert with another's error: PayoutRouter bubbles up StakeGuard's).
    pub fn decode(data: &Bytes) -> Self {
        let mut selector = [0u8; 4];
        if let Some(head) = data.get(..4) {
            selector.copy_from_slice(head);
        }
        macro_rules! try_interface {
            ($errors:ty) => {
                if let (Some(name), Ok(e)) = (
                    <$errors>::name_by_selector(selector),
                    <$errors as SolInterface>::abi_decode(data),
                ) {
                    return Revert {
                        name: name.to_string(),
                        detail: format!("{e:?}"),
                        data: data.clone(),
                    };
                }
            };
        }
        try_interface!(StakeGuard::StakeGuardErrors);
        try_interface!(Adjudicator::AdjudicatorErrors);
        try_interface!(PayoutRouter::PayoutRouterErrors);
        try_interface!(HAI::HAIErrors);
        Revert {
            name: if data.is_empty() {
                "EmptyRevert".into()
            } else {
                "UnknownRevert".into()
            },
            detail: format!("{data}"),
            data: data.clone(),
        }
    }
}
