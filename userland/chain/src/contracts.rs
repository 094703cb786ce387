//! The contracts' ABI (calls, errors, events, structs), generated from the committed artifacts in `chain/artifacts` (ABI and
//! bytecode compiled by `chain/compile.mjs`): one source of truth for the node, the
//! tests and the demo.

#![allow(missing_docs, clippy::too_many_arguments)]

use crate::alloy::sol;

macro_rules! bindings {
    ($($name:ident => $path:literal),* $(,)?) => {
        $( sol!(#[derive(Debug)] $name, $path); )*
    };
}

bindings! {
    HAI => "../../chain/artifacts/HAI.json",
    StakeGuard => "../../chain/artifacts/StakeGuard.json",
    Adjudicator => "../../chain/artifacts/Adjudicator.json",
    PayoutRouter => "../../chain/artifacts/PayoutRouter.json",
}
