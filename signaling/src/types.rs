//! Small wire types whose sizes are checked while decoding, before anything is allocated
//! beyond what the input itself holds.

use std::fmt;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::str::FromStr;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Serializes fixed-size byte arrays as a CBOR byte string (not an array of integers) and as
/// lowercase hex in human-readable formats (JSON, TOML).
pub(crate) fn serialize_fixed<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(&hex::encode(bytes))
    } else {
        s.serialize_bytes(bytes)
    }
}

pub(crate) fn deserialize_fixed<'de, D: Deserializer<'de>, const N: usize>(
    d: D,
) -> Result<[u8; N], D::Error> {
    struct FixedVisitor<const N: usize>;
    impl<const N: usize> Visitor<'_> for FixedVisitor<N> {
        type Value = [u8; N];
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "{N} bytes")
        }
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
            v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let mut out = [0u8; N];
            hex::decode_to_slice(v, &mut out)
                .map_err(|_| E::custom(format!("expected {} hex characters, got {v:?}", 2 * N)))?;
            Ok(out)
        }
    }
    if d.is_human_readable() {
        d.deserialize_str(FixedVisitor::<N>)
    } else {
        d.deserialize_bytes(FixedVisitor::<N>)
    }
}

/// A 32-byte SHA-256 digest: message ids, artifact hashes, network ids.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash32(pub [u8; 32]);

impl Hash32 {
    /// Lowercase hex, the form used in files, RPC and logs.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Hash32({})", self.to_hex())
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for Hash32 {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out)?;
        Ok(Hash32(out))
    }
}

impl Serialize for Hash32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_fixed(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Hash32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_fixed(d).map(Hash32)
    }
}

/// A vector that refuses, while decoding, to hold more than `N` items.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BoundedVec<T, const N: usize>(Vec<T>);

impl<T, const N: usize> Default for BoundedVec<T, N> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T, const N: usize> BoundedVec<T, N> {
    /// The most items this vector may hold.
    pub const MAX: usize = N;

    /// Wraps `items`, or gives them back when there are more than `N`.
    pub fn new(items: Vec<T>) -> Result<Self, Vec<T>> {
        if items.len() <= N {
            Ok(Self(items))
        } else {
            Err(items)
        }
    }

    /// Wraps the first `N` of `items`, dropping the rest.
    pub fn truncating(mut items: Vec<T>) -> Self {
        items.truncate(N);
        Self(items)
    }

    /// The items.
    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    /// The items, by value.
    pub fn into_vec(self) -> Vec<T> {
        self.0
    }
}

impl<T, const N: usize> std::ops::Deref for BoundedVec<T, N> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T: fmt::Debug, const N: usize> fmt::Debug for BoundedVec<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: Serialize, const N: usize> Serialize for BoundedVec<T, N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for BoundedVec<T, N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SeqVisitor<T, const N: usize>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for SeqVisitor<T, N> {
            type Value = BoundedVec<T, N>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a sequence of at most {N} items")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                // The declared length comes from the peer: check it before reserving anything.
                if let Some(declared) = seq.size_hint()
                    && declared > N
                {
                    return Err(de::Error::invalid_length(declared, &self));
                }
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(N));
                while let Some(item) = seq.next_element()? {
                    if items.len() == N {
                        return Err(de::Error::invalid_length(N + 1, &self));
                    }
                    items.push(item);
                }
                Ok(BoundedVec(items))
            }
        }
        d.deserialize_seq(SeqVisitor::<T, N>(PhantomData))
    }
}

/// A UTF-8 string of at most `N` bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BoundedString<const N: usize>(String);

impl<const N: usize> BoundedString<N> {
    /// The longest string, in bytes.
    pub const MAX: usize = N;

    /// Wraps `s`, or explains why it is too long.
    pub fn new(s: impl Into<String>) -> Result<Self, String> {
        let s = s.into();
        if s.len() <= N {
            Ok(Self(s))
        } else {
            Err(format!("{} bytes long, at most {N} allowed", s.len()))
        }
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<const N: usize> fmt::Debug for BoundedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<const N: usize> fmt::Display for BoundedString<N> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<const N: usize> Serialize for BoundedString<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de, const N: usize> Deserialize<'de> for BoundedString<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        BoundedString::new(s).map_err(de::Error::custom)
    }
}

/// Opaque bytes of at most `N` bytes (an OpenTimestamps proof, say).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct BoundedBytes<const N: usize>(Vec<u8>);

impl<const N: usize> BoundedBytes<N> {
    /// The most bytes allowed.
    pub const MAX: usize = N;

    /// Wraps `bytes`, or explains why there are too many.
    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() <= N {
            Ok(Self(bytes))
        } else {
            Err(format!("{} bytes long, at most {N} allowed", bytes.len()))
        }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl<const N: usize> fmt::Debug for BoundedBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} bytes", self.0.len())
    }
}

impl<const N: usize> Serialize for BoundedBytes<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de, const N: usize> Deserialize<'de> for BoundedBytes<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BytesVisitor<const N: usize>;
        impl<const N: usize> Visitor<'_> for BytesVisitor<N> {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "at most {N} bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                hex::decode(v).map_err(E::custom)
            }
        }
        let bytes = if d.is_human_readable() {
            d.deserialize_str(BytesVisitor::<N>)?
        } else {
            d.deserialize_byte_buf(BytesVisitor::<N>)?
        };
        BoundedBytes::new(bytes).map_err(de::Error::custom)
    }
}

/// An IP address on the wire: 4 bytes for IPv4, 16 for IPv6.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WireIp(pub IpAddr);

impl fmt::Debug for WireIp {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for WireIp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            return s.collect_str(&self.0);
        }
        match self.0 {
            IpAddr::V4(v4) => s.serialize_bytes(&v4.octets()),
            IpAddr::V6(v6) => s.serialize_bytes(&v6.octets()),
        }
    }
}

impl<'de> Deserialize<'de> for WireIp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IpVisitor;
        impl Visitor<'_> for IpVisitor {
            type Value = WireIp;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an IP address of 4 or 16 bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<WireIp, E> {
                match v.len() {
                    4 => Ok(WireIp(IpAddr::from(
                        <[u8; 4]>::try_from(v).expect("length 4"),
                    ))),
                    16 => Ok(WireIp(IpAddr::from(
                        <[u8; 16]>::try_from(v).expect("length 16"),
                    ))),
                    n => Err(E::invalid_length(n, &self)),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<WireIp, E> {
                v.parse().map(WireIp).map_err(E::custom)
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(IpVisitor)
        } else {
            d.deserialize_bytes(IpVisitor)
        }
    }
}
