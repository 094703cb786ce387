//! IPFS-compatible content identifiers: CIDv1, raw codec (0x55), sha2-256 multihash,
//! multibase base32 lower-case (prefix `b`). `Cid::of_bytes(b"")` is the well-known
//! `bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku`.

use core::fmt;
use core::str::FromStr;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Multicodec code for raw bytes.
pub const CODEC_RAW: u8 = 0x55;
/// Multihash code for sha2-256.
pub const MH_SHA2_256: u8 = 0x12;
/// Length of the textual form (`b` + base32 of 36 bytes).
pub const CID_STR_LEN: usize = 59;

/// A CIDv1 (raw, sha2-256) naming exactly one byte string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cid {
    digest: [u8; 32],
}

/// Why a CID string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidError {
    /// Not multibase base32 lower (`b…`).
    #[error("CID must be multibase base32 lower-case starting with 'b'")]
    Multibase,
    /// Base32 body did not decode.
    #[error("CID body is not valid base32")]
    Base32,
    /// Not CIDv1 / raw / sha2-256 / 32 bytes.
    #[error("unsupported CID: only CIDv1, raw codec (0x55), sha2-256 (0x12), 32-byte digests")]
    Unsupported,
}

impl Cid {
    /// The CID of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self {
            digest: Sha256::digest(bytes).into(),
        }
    }

    /// Builds a CID from a sha2-256 digest.
    pub fn from_digest(digest: [u8; 32]) -> Self {
        Self { digest }
    }

    /// The sha2-256 digest.
    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// True when `bytes` are exactly the bytes this CID names.
    pub fn verify(&self, bytes: &[u8]) -> bool {
        Self::of_bytes(bytes) == *self
    }

    fn binary(&self) -> [u8; 36] {
        let mut b = [0u8; 36];
        b[..4].copy_from_slice(&[0x01, CODEC_RAW, MH_SHA2_256, 0x20]);
        b[4..].copy_from_slice(&self.digest);
        b
    }

    /// The textual form as a bounded string.
    pub fn to_heapless(&self) -> heapless::String<64> {
        let mut s = heapless::String::new();
        // 59 bytes always fit in 64.
        let _ = s.push_str(&self.to_string());
        s
    }
}

impl fmt::Display for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut enc = data_encoding::BASE32_NOPAD.encode(&self.binary());
        enc.make_ascii_lowercase();
        write!(f, "b{enc}")
    }
}

impl fmt::Debug for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cid({self})")
    }
}

impl FromStr for Cid {
    type Err = CidError;
    fn from_str(s: &str) -> Result<Self, CidError> {
        let body = s.strip_prefix('b').ok_or(CidError::Multibase)?;
        if body.bytes().any(|c| c.is_ascii_uppercase()) {
            return Err(CidError::Multibase);
        }
        let upper = body.to_ascii_uppercase();
        let bin = data_encoding::BASE32_NOPAD
            .decode(upper.as_bytes())
            .map_err(|_| CidError::Base32)?;
        match bin.as_slice() {
            [0x01, CODEC_RAW, MH_SHA2_256, 0x20, rest @ ..] if rest.len() == 32 => {
                let mut digest = [0u8; 32];
                digest.copy_from_slice(rest);
                Ok(Self { digest })
            }
            _ => Err(CidError::Unsupported),
        }
    }
}

impl postcard_schema::Schema for Cid {
    const SCHEMA: &'static postcard_schema::schema::NamedType =
        &postcard_schema::schema::NamedType {
            name: "Cid",
            ty: <[u8; 32] as postcard_schema::Schema>::SCHEMA.ty,
        };
}

impl Serialize for Cid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_string())
        } else {
            self.digest.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Cid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = <heapless::String<128>>::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            Ok(Self {
                digest: <[u8; 32]>::deserialize(d)?,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_bytes_matches_ipfs() {
        // `ipfs add --raw-leaves --cid-version 1` of an empty file.
        assert_eq!(
            Cid::of_bytes(b"").to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
        assert_eq!(Cid::of_bytes(b"").to_string().len(), CID_STR_LEN);
    }

    #[test]
    fn parse_round_trip_and_rejects() {
        let c = Cid::of_bytes(b"hello havn");
        assert_eq!(c.to_string().parse::<Cid>(), Ok(c));
        assert!(c.verify(b"hello havn"));
        assert!(!c.verify(b"hello havm"));
        assert_eq!("Qm123".parse::<Cid>(), Err(CidError::Multibase));
        assert_eq!("b!!!".parse::<Cid>(), Err(CidError::Base32));
        // dag-pb codec (0x70) instead of raw.
        let mut enc = data_encoding::BASE32_NOPAD.encode(&[0x01, 0x70, 0x12, 0x20, 0, 0]);
        enc.make_ascii_lowercase();
        assert_eq!(format!("b{enc}").parse::<Cid>(), Err(CidError::Unsupported));
    }
}
