//! Phase allow-tables (OpenSSH `mon_dispatch_postauth20`): the privileged side
//! dispatches on (phase, request); anything else is refused and closes the channel.

use havn_proto::ipc::Message;
use havn_proto::WireError;

/// Which request tags are allowed now, and which only once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    /// Name for logs.
    pub name: &'static str,
    allowed: Vec<u32>,
    once: Vec<u32>,
    used: Vec<u32>,
}

impl Phase {
    /// A phase allowing `allowed` tags any number of times and `once` tags once.
    pub fn new(name: &'static str, allowed: &[u32], once: &[u32]) -> Self {
        Self {
            name,
            allowed: allowed.to_vec(),
            once: once.to_vec(),
            used: Vec::new(),
        }
    }

    /// Admits `tag` or refuses it.
    pub fn admit<M: Message>(&mut self, tag: u32) -> Result<(), WireError> {
        if self.allowed.contains(&tag) {
            return Ok(());
        }
        if self.once.contains(&tag) && !self.used.contains(&tag) {
            self.used.push(tag);
            return Ok(());
        }
        Err(WireError::NotPermitted {
            what: M::NAME,
            phase: self.name,
        })
    }
}
