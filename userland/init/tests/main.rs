//! havn-init integration tests (one binary): a real havn-init supervising the
//! test daemon (`havn-init-testd`) in all three roles.

mod harness;
mod lifecycle;
mod startup;
