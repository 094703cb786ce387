//! Framing: `u32 little-endian body length ‖ postcard body`, with the length checked
//! against [`MAX_FRAME`] before anything is allocated, and a [`Hello`] exchanged first
//! on every channel so mismatched peers fail closed.

use crate::bytes::Hash32;
use crate::ipc::{Channel, Message};
use serde::{Deserialize, Serialize};

/// Largest frame body, in bytes. Checked before allocation, on both ends.
pub const MAX_FRAME: usize = 64 * 1024;
/// Length-prefix size.
pub const HEADER_LEN: usize = 4;
/// Wire protocol version; bump on any incompatible change.
pub const PROTOCOL_VERSION: u16 = 6;
/// Magic at the start of every hello.
pub const HELLO_MAGIC: [u8; 4] = *b"HAVN";

/// Why a frame was refused. Each is fatal for the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The length prefix exceeds [`MAX_FRAME`].
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLong {
        /// Announced or actual length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Fewer bytes than the header or the length prefix announce.
    #[error("truncated frame: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// Bytes after the message.
    #[error("{extra} trailing bytes after the message")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// The body is not a valid encoding of the expected type.
    #[error("cannot decode {ty}: {detail}")]
    Decode {
        /// Expected type.
        ty: &'static str,
        /// postcard's reason.
        detail: String,
    },
    /// The enum tag is not one this version knows.
    #[error("unknown {ty} message tag {tag}")]
    UnknownMessage {
        /// Expected type.
        ty: &'static str,
        /// Tag seen.
        tag: u64,
    },
    /// The peer speaks another protocol version.
    #[error("protocol version mismatch: ours {ours}, peer {theirs}")]
    VersionMismatch {
        /// Ours.
        ours: u16,
        /// Theirs.
        theirs: u16,
    },
    /// A valid value in a non-canonical encoding (e.g. an overlong varint): refused,
    /// so each value has exactly one accepted encoding.
    #[error("non-canonical encoding of {ty}")]
    NonCanonical {
        /// Expected type.
        ty: &'static str,
    },
    /// The peer's message set differs (same version, other schema) or it opened
    /// another channel.
    #[error("schema mismatch on channel {channel}: peer is on {peer_channel:?} with another message set")]
    SchemaMismatch {
        /// Our channel.
        channel: &'static str,
        /// What the peer announced.
        peer_channel: Channel,
    },
    /// Not a hello (bad magic).
    #[error("peer did not start with a Havn hello")]
    BadMagic,
    /// The request is not allowed on this channel in the current phase.
    #[error("{what} not permitted in phase {phase}")]
    NotPermitted {
        /// Request name.
        what: &'static str,
        /// Phase name.
        phase: &'static str,
    },
    /// The peer closed or restarted; in-flight requests are lost.
    #[error("peer restarted or closed the channel")]
    PeerRestarted,
}

/// Checks a length prefix before any allocation.
pub fn check_len(header: [u8; HEADER_LEN]) -> Result<usize, WireError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(WireError::FrameTooLong {
            len,
            max: MAX_FRAME,
        });
    }
    Ok(len)
}

/// Encodes a message into a frame (header + body).
pub fn encode<M: Serialize>(msg: &M) -> Result<Vec<u8>, WireError> {
    let mut out = vec![0u8; HEADER_LEN];
    let body = postcard::to_stdvec(msg).map_err(|e| WireError::Decode {
        ty: "outgoing message",
        detail: e.to_string(),
    })?;
    if body.len() > MAX_FRAME {
        return Err(WireError::FrameTooLong {
            len: body.len(),
            max: MAX_FRAME,
        });
    }
    let len = u32::try_from(body.len()).map_err(|_| WireError::FrameTooLong {
        len: body.len(),
        max: MAX_FRAME,
    })?;
    out.splice(0..HEADER_LEN, len.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes one whole frame (header + body), refusing anything but exactly one
/// well-formed message of type `M`.
pub fn decode<M: Message>(frame: &[u8]) -> Result<M, WireError> {
    let (header, body) = frame
        .split_first_chunk::<HEADER_LEN>()
        .ok_or(WireError::Truncated {
            need: HEADER_LEN,
            have: frame.len(),
        })?;
    let len = check_len(*header)?;
    match body.len().cmp(&len) {
        core::cmp::Ordering::Less => {
            return Err(WireError::Truncated {
                need: len.saturating_add(HEADER_LEN),
                have: frame.len(),
            })
        }
        core::cmp::Ordering::Greater => {
            return Err(WireError::TrailingBytes {
                extra: body.len().saturating_sub(len),
            })
        }
        core::cmp::Ordering::Equal => {}
    }
    decode_body(body)
}

/// Decodes a frame body (no header): the message must use every byte.
pub fn decode_body<M: Message>(body: &[u8]) -> Result<M, WireError> {
    if body.len() > MAX_FRAME {
        return Err(WireError::FrameTooLong {
            len: body.len(),
            max: MAX_FRAME,
        });
    }
    if M::IS_ENUM {
        let (tag, _) = postcard::take_from_bytes::<u32>(body).map_err(|e| WireError::Decode {
            ty: M::NAME,
            detail: e.to_string(),
        })?;
        if tag >= M::VARIANTS {
            return Err(WireError::UnknownMessage {
                ty: M::NAME,
                tag: u64::from(tag),
            });
        }
    }
    let (msg, rest) = postcard::take_from_bytes::<M>(body).map_err(|e| WireError::Decode {
        ty: M::NAME,
        detail: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(WireError::TrailingBytes { extra: rest.len() });
    }
    // postcard accepts overlong varints; re-encode so only the canonical form passes.
    match postcard::to_stdvec(&msg) {
        Ok(again) if again == body => Ok(msg),
        _ => Err(WireError::NonCanonical { ty: M::NAME }),
    }
}

/// The first frame on every channel, in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, postcard_schema::Schema)]
pub struct Hello {
    /// [`HELLO_MAGIC`].
    pub magic: [u8; 4],
    /// [`PROTOCOL_VERSION`].
    pub version: u16,
    /// The channel the sender believes it is on.
    pub channel: Channel,
    /// [`schema_hash`] of that channel's message set.
    pub schema: Hash32,
    /// Random per-process-start id: a peer seen with a new instance id restarted.
    pub instance: u64,
}

impl Message for Hello {
    const NAME: &'static str = "Hello";
    const VARIANTS: u32 = 1;
    const IS_ENUM: bool = false;
    fn tag(&self) -> u32 {
        0
    }
}

impl Hello {
    /// Our hello for `channel`, from the process instance `instance`.
    pub fn new(channel: Channel, instance: u64) -> Self {
        Self {
            magic: HELLO_MAGIC,
            version: PROTOCOL_VERSION,
            channel,
            schema: schema_hash(channel),
            instance,
        }
    }

    /// Checks the peer's hello against ours; any difference fails closed.
    pub fn check(&self, ours: Channel) -> Result<(), WireError> {
        if self.magic != HELLO_MAGIC {
            return Err(WireError::BadMagic);
        }
        if self.version != PROTOCOL_VERSION {
            return Err(WireError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: self.version,
            });
        }
        if self.channel != ours || self.schema != schema_hash(ours) {
            return Err(WireError::SchemaMismatch {
                channel: ours.name(),
                peer_channel: self.channel,
            });
        }
        Ok(())
    }
}

/// Every length bound of the wire types, by name: part of [`schema_hash`], since a
/// type's structure (what `postcard-schema` describes) does not carry them.
pub const BOUNDS: &[(&str, usize)] = &[
    ("MAX_FRAME", MAX_FRAME),
    ("MAX_WORKFLOW_ID", crate::types::MAX_WORKFLOW_ID),
    ("MAX_JOB_ID", crate::types::MAX_JOB_ID),
    ("MAX_INPUTS", crate::types::MAX_INPUTS),
    ("MAX_URI", crate::types::MAX_URI),
    ("MAX_REASON", crate::types::MAX_REASON),
    ("MAX_WORKFLOWS", crate::types::MAX_WORKFLOWS),
    ("MAX_PCRS", crate::types::MAX_PCRS),
    ("MAX_TPM_BLOB", crate::types::MAX_TPM_BLOB),
    ("MAX_EVENTS", crate::types::MAX_EVENTS),
    ("MAX_CERT", crate::types::MAX_CERT),
    ("MAX_NAME", crate::types::MAX_NAME),
    ("MAX_AUDIT_ENTRIES", crate::types::MAX_AUDIT_ENTRIES),
    ("MAX_TLS_KEY", crate::ipc::MAX_TLS_KEY),
    ("MAX_CALLDATA", crate::chain::MAX_CALLDATA),
];

/// The request and response types' structure of a channel.
pub fn channel_schemas(
    channel: Channel,
) -> (
    &'static postcard_schema::schema::NamedType,
    &'static postcard_schema::schema::NamedType,
) {
    use crate::ipc::*;
    use postcard_schema::Schema;
    match channel {
        Channel::InitAttestd => (InitRequest::SCHEMA, InitResponse::SCHEMA),
        Channel::ExecdAttestd => (ExecdRequest::SCHEMA, ExecdResponse::SCHEMA),
        Channel::NetdExecd => (NetdExecRequest::SCHEMA, NetdExecResponse::SCHEMA),
        Channel::NetdAttestd => (NetdAttestRequest::SCHEMA, NetdAttestResponse::SCHEMA),
    }
}

/// sha3-256 of a type's structure: every field's and variant's name and type, in
/// order, integers with their width and encoding (`postcard-schema`'s description,
/// postcard-encoded).
pub fn type_digest(t: &postcard_schema::schema::NamedType) -> Hash32 {
    use sha3::{Digest, Sha3_256};
    // A `NamedType` is a tree of static references: encoding it cannot fail.
    let bytes = postcard::to_stdvec(t).unwrap_or_default();
    Hash32(Sha3_256::digest(&bytes).into())
}

/// A fingerprint of a channel's message set, derived from the types themselves:
/// sha3-256 over the channel name, the protocol version, the structure of its
/// request and response types ([`type_digest`]) and every length bound
/// ([`BOUNDS`]). Adding, removing, reordering or widening a field or variant, or
/// changing a bound, changes it.
pub fn schema_hash(channel: Channel) -> Hash32 {
    schema_hash_with(channel, BOUNDS)
}

/// [`schema_hash`] over a given bounds table (tests show a bound is covered).
pub fn schema_hash_with(channel: Channel, bounds: &[(&str, usize)]) -> Hash32 {
    use sha3::{Digest, Sha3_256};
    let (req, resp) = channel_schemas(channel);
    let mut h = Sha3_256::new();
    h.update(b"havn/schema/v2");
    h.update(channel.name().as_bytes());
    h.update(PROTOCOL_VERSION.to_le_bytes());
    h.update(type_digest(req).0);
    h.update(type_digest(resp).0);
    for (name, v) in bounds {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((*v as u64).to_le_bytes());
    }
    Hash32(h.finalize().into())
}
