//! Bindings generated from the committed artifacts in `chain/artifacts` (ABI and
//! bytecode compiled by `chain/compile.mjs`): one source of truth for the node, the
//! tests and the demo.

#![allow(missing_docs, clippy::too_many_arguments)]

use alloy::sol;

sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    HAI,
    "../../chain/artifacts/HAI.json"
);

sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    StakeGuard,
    "../../chain/artifacts/StakeGuard.json"
);

sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    Adjudicator,
    "../../chain/artifacts/Adjudicator.json"
);

sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    PayoutRouter,
    "../../chain/artifacts/PayoutRouter.json"
);
