//! Operator, validator and orchestrator CLI
fn main() {}
