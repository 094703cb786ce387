//! TPM agent library (tss-esapi): AK, sealed node key, quotes, PCR extend.
//!
//! [`Agent`] owns one TPM connection (TCTI string `device:/dev/tpmrm0` or
//! `swtpm:host=127.0.0.1,port=P`) and a state directory holding the sealed node key
//! blob and the userland event log. The AK is a primary key under the endorsement
//! hierarchy (so quotes carry real reset/restart counters) and is re-derived, identical,
//! after every reconnect; nothing about it is stored on disk.

mod error;
mod eventlog_file;
pub mod fsutil;
mod nodekey;
mod records;
mod secret;
#[cfg(feature = "testing")]
pub mod testing;
mod tpm;

pub use error::AgentError;
pub use havn_attest::{Event, PcrSelection};
pub use nodekey::{verify_node_signature, NodeKey};
pub use records::{NotSafe, RecordStore, Recorded};
pub use secret::{destroy_plaintext, read_plaintext, MAX_SECRET};
pub use tpm::{Agent, AgentConfig, Quote, SealedBlob};
