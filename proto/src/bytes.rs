//! Fixed-size byte newtypes: hex strings in human-readable formats (JSON), raw bytes
//! in postcard.

use core::fmt;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};
use serde::{Deserialize, Serialize};

macro_rules! fixed_bytes {
    ($(#[$m:meta])* $name:ident, $n:expr) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $n]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $n;

            /// Lower-case hex.
            pub fn to_hex(&self) -> String {
                data_encoding::HEXLOWER.encode(&self.0)
            }

            /// Parses hex (either case) of exactly the right length.
            pub fn from_hex(s: &str) -> Result<Self, HexError> {
                let v = data_encoding::HEXLOWER_PERMISSIVE
                    .decode(s.trim().as_bytes())
                    .map_err(|_| HexError::NotHex)?;
                let arr: [u8; $n] = v
                    .try_into()
                    .map_err(|v: Vec<u8>| HexError::Length { want: $n, got: v.len() })?;
                Ok(Self(arr))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl From<[u8; $n]> for $name {
            fn from(b: [u8; $n]) -> Self {
                Self(b)
            }
        }

        impl postcard_schema::Schema for $name {
            const SCHEMA: &'static postcard_schema::schema::NamedType =
                &postcard_schema::schema::NamedType {
                    name: stringify!($name),
                    ty: <[u8; $n] as postcard_schema::Schema>::SCHEMA.ty,
                };
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&self.to_hex())
                } else {
                    let mut t = s.serialize_tuple($n)?;
                    for b in &self.0 {
                        t.serialize_element(b)?;
                    }
                    t.end()
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "{} bytes (hex in text formats)", $n)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::from_hex(v).map_err(E::custom)
                    }
                    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<$name, A::Error> {
                        let mut out = [0u8; $n];
                        for (i, slot) in out.iter_mut().enumerate() {
                            *slot = seq
                                .next_element()?
                                .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                        }
                        Ok($name(out))
                    }
                }
                if d.is_human_readable() {
                    d.deserialize_str(V)
                } else {
                    d.deserialize_tuple($n, V)
                }
            }
        }
    };
}

fixed_bytes!(
    /// A sha3-256 (or sha2-256) digest.
    Hash32,
    32
);
fixed_bytes!(
    /// An ed25519 public key; also a node's identity.
    PubKey32,
    32
);
fixed_bytes!(
    /// An ed25519 signature.
    Sig64,
    64
);

/// A hex string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// Not hexadecimal.
    #[error("not a hex string")]
    NotHex,
    /// Wrong number of bytes.
    #[error("expected {want} bytes of hex, got {got}")]
    Length {
        /// Bytes expected.
        want: usize,
        /// Bytes found.
        got: usize,
    },
}
