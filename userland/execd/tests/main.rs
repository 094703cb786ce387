//! havn-execd integration tests: one binary (links once), modules below. The attestd
//! end is an in-test stand-in on a real socketpair; the repo-level system tests run
//! execd against the real daemons.

mod prove;
