//! Canonical CBOR.
//!
//! Every message is a CBOR map whose keys are the field names in their declared order, with
//! integers in their shortest form and definite lengths only: exactly what ciborium writes for
//! our types. Decoding is strict so that one message has one encoding, and its hash and
//! signature are reproducible: the input size is bounded first, every collection is bounded
//! while it is read, trailing bytes are an error, and a message whose re-encoding differs
//! from its input (other key order, long-form integers, indefinite lengths, unknown or
//! duplicate fields) is rejected as non-canonical.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::PROTOCOL_VERSION;

/// Why bytes were not accepted as a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input is larger than any valid message of this kind.
    #[error("message is {len} bytes, larger than the {max}-byte limit")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The limit for this kind of message.
        max: usize,
    },
    /// The input is not a well-formed message of the expected kind.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Bytes remain after a complete message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// The message declares a protocol version this implementation does not speak.
    #[error("unknown protocol version {found} (this node speaks version {PROTOCOL_VERSION})")]
    UnknownVersion {
        /// The version the message declared.
        found: u64,
    },
    /// The message decodes, but is not in its one canonical encoding.
    #[error("non-canonical encoding")]
    NonCanonical,
}

/// Encodes `value` as canonical CBOR.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    ciborium::ser::into_writer(value, &mut out)
        .expect("serializing into a Vec cannot fail for our types");
    out
}

/// Decodes one canonical message of at most `max_len` bytes.
pub fn decode<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
    max_len: usize,
) -> Result<T, DecodeError> {
    if bytes.len() > max_len {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: max_len,
        });
    }
    let mut reader = bytes;
    let value: T = ciborium::de::from_reader_with_recursion_limit(&mut reader, 32)
        .map_err(|e| DecodeError::Malformed(describe(e)))?;
    if !reader.is_empty() {
        return Err(DecodeError::TrailingBytes(reader.len()));
    }
    if encode(&value) != bytes {
        return Err(DecodeError::NonCanonical);
    }
    Ok(value)
}

/// Decodes a versioned message of at most `max_len` bytes. A message that declares another
/// protocol version gets [`DecodeError::UnknownVersion`], even when the rest of it would not
/// decode as this version's layout; the version is looked for only after a failure, so a
/// valid message is parsed once.
pub fn decode_versioned<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
    max_len: usize,
    version_of: impl Fn(&T) -> u8,
) -> Result<T, DecodeError> {
    match decode::<T>(bytes, max_len) {
        Ok(value) => {
            let version = version_of(&value);
            if version == PROTOCOL_VERSION {
                Ok(value)
            } else {
                Err(DecodeError::UnknownVersion {
                    found: version.into(),
                })
            }
        }
        Err(error @ DecodeError::TooLarge { .. }) => Err(error),
        Err(error) => match probe_version(bytes) {
            Some(found) if found != u64::from(PROTOCOL_VERSION) => {
                Err(DecodeError::UnknownVersion { found })
            }
            _ => Err(error),
        },
    }
}

/// Finds the `version` field of a message, looking through one level of nesting (signed
/// messages keep it in their `body`). Only reads what the input holds.
fn probe_version(bytes: &[u8]) -> Option<u64> {
    use ciborium::value::Value;
    let value: Value = ciborium::de::from_reader_with_recursion_limit(bytes, 32).ok()?;
    fn find(value: &Value, depth: u8) -> Option<u64> {
        let Value::Map(entries) = value else {
            return None;
        };
        for (key, val) in entries {
            match (key.as_text(), val) {
                (Some("version"), Value::Integer(i)) => return u64::try_from(*i).ok(),
                (Some("body") | Some("manifest"), inner) if depth > 0 => {
                    if let Some(v) = find(inner, depth - 1) {
                        return Some(v);
                    }
                }
                _ => {}
            }
        }
        None
    }
    find(&value, 1)
}

fn describe<E>(error: ciborium::de::Error<E>) -> String {
    match error {
        ciborium::de::Error::Io(_) => "input ended early".to_string(),
        ciborium::de::Error::Syntax(offset) => format!("invalid CBOR at byte {offset}"),
        ciborium::de::Error::Semantic(Some(offset), msg) => format!("{msg} (at byte {offset})"),
        ciborium::de::Error::Semantic(None, msg) => msg,
        ciborium::de::Error::RecursionLimitExceeded => "nested too deeply".to_string(),
    }
}
