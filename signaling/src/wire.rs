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

/// The field of a message's envelope that authenticates its body: `signature` (one
/// signer, a byte string) or `signatures` (maintainers, an array).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authentication {
    /// `{"body": ..., "signature": <bytes>}`.
    Signature,
    /// `{"body": ..., "signatures": [...]}`.
    Signatures,
}

impl Authentication {
    fn field(self) -> &'static str {
        match self {
            Authentication::Signature => "signature",
            Authentication::Signatures => "signatures",
        }
    }

    fn major_type(self) -> u8 {
        match self {
            Authentication::Signature => MAJOR_BYTES,
            Authentication::Signatures => MAJOR_ARRAY,
        }
    }
}

/// Decodes a versioned message of at most `max_len` bytes.
///
/// A message of a newer protocol version gets [`DecodeError::UnknownVersion`] (a relay
/// ignores it rather than penalising its sender) only when it is a well-formed envelope of
/// its kind, the part of the format every version keeps: exactly one CBOR map of definite
/// lengths and no trailing bytes, `{"body": {"version": N, ...}, <authentication>}` with
/// `body` first and `version` its first field, N above this version, and the
/// authentication field of the kind (see [`Authentication`]). Anything else that fails to
/// decode as this version, `{"version": 2}` included, keeps its decoding error, and so does
/// a message declaring a version below 1. The envelope is probed without building a value
/// tree, only after a failure, so a valid message is parsed once.
pub fn decode_versioned<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
    max_len: usize,
    authentication: Authentication,
    version_of: impl Fn(&T) -> u8,
) -> Result<T, DecodeError> {
    match decode::<T>(bytes, max_len) {
        Ok(value) => {
            let version = version_of(&value);
            match version.cmp(&PROTOCOL_VERSION) {
                std::cmp::Ordering::Equal => Ok(value),
                std::cmp::Ordering::Greater => Err(DecodeError::UnknownVersion {
                    found: version.into(),
                }),
                std::cmp::Ordering::Less => Err(DecodeError::Malformed(format!(
                    "protocol version {version} does not exist"
                ))),
            }
        }
        Err(error @ DecodeError::TooLarge { .. }) => Err(error),
        Err(error) => match future_envelope_version(bytes, authentication) {
            Some(found) if found > u64::from(PROTOCOL_VERSION) => {
                Err(DecodeError::UnknownVersion { found })
            }
            _ => Err(error),
        },
    }
}

const MAJOR_UNSIGNED: u8 = 0;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const MAJOR_TAG: u8 = 6;
const MAJOR_SIMPLE: u8 = 7;
/// How deeply the envelope probe follows nested arrays, maps and tags (the decoder's own
/// recursion limit).
const PROBE_DEPTH: u8 = 32;

/// The declared version of a well-formed envelope (see [`decode_versioned`]), or `None`.
pub fn future_envelope_version(bytes: &[u8], authentication: Authentication) -> Option<u64> {
    let mut cbor = CborCursor { bytes, pos: 0 };
    if cbor.head()? != (MAJOR_MAP, 2) || cbor.text()? != "body" {
        return None;
    }
    let (MAJOR_MAP, fields) = cbor.head()? else {
        return None;
    };
    if fields == 0 || cbor.text()? != "version" {
        return None;
    }
    let (MAJOR_UNSIGNED, version) = cbor.head()? else {
        return None;
    };
    // Each item takes at least one byte, so a huge declared count ends at the input's end.
    for _ in 1..fields {
        cbor.skip(PROBE_DEPTH)?;
        cbor.skip(PROBE_DEPTH)?;
    }
    if cbor.text()? != authentication.field() || cbor.peek_major()? != authentication.major_type() {
        return None;
    }
    cbor.skip(PROBE_DEPTH)?;
    (cbor.pos == bytes.len()).then_some(version)
}

/// Reads CBOR item heads in place: no allocation, every length checked against what the
/// input holds.
struct CborCursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> CborCursor<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(len)?;
        let taken = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(taken)
    }

    fn peek_major(&self) -> Option<u8> {
        self.bytes.get(self.pos).map(|b| b >> 5)
    }

    /// The major type and argument of the next item. Indefinite lengths and the reserved
    /// additional information values are not well-formed here.
    fn head(&mut self) -> Option<(u8, u64)> {
        let initial = self.take(1)?[0];
        let (major, info) = (initial >> 5, initial & 0x1f);
        let argument = match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.take(1)?[0]),
            25 => u64::from(u16::from_be_bytes(self.take(2)?.try_into().ok()?)),
            26 => u64::from(u32::from_be_bytes(self.take(4)?.try_into().ok()?)),
            27 => u64::from_be_bytes(self.take(8)?.try_into().ok()?),
            _ => return None,
        };
        Some((major, argument))
    }

    fn text(&mut self) -> Option<&'a str> {
        let (MAJOR_TEXT, len) = self.head()? else {
            return None;
        };
        std::str::from_utf8(self.take(usize::try_from(len).ok()?)?).ok()
    }

    /// Steps over one complete item, nesting at most `depth` levels.
    fn skip(&mut self, depth: u8) -> Option<()> {
        // Of the simple values only false, true, null and undefined, and the floats, are
        // items the decoder reads (fuzzing found the probe taking unassigned ones).
        let initial = *self.bytes.get(self.pos)?;
        if initial >> 5 == MAJOR_SIMPLE && !matches!(initial & 0x1f, 20..=23 | 25..=27) {
            return None;
        }
        let (major, argument) = self.head()?;
        match major {
            MAJOR_BYTES => {
                self.take(usize::try_from(argument).ok()?)?;
            }
            MAJOR_TEXT => {
                std::str::from_utf8(self.take(usize::try_from(argument).ok()?)?).ok()?;
            }
            MAJOR_ARRAY | MAJOR_MAP | MAJOR_TAG => {
                let depth = depth.checked_sub(1)?;
                let items = match major {
                    MAJOR_ARRAY => argument,
                    MAJOR_MAP => argument.checked_mul(2)?,
                    _ => 1,
                };
                for _ in 0..items {
                    self.skip(depth)?;
                }
            }
            // Integers, simple values and floats: the head is the whole item.
            _ => {}
        }
        Some(())
    }
}

/// The longest text a [`DecodeError::Malformed`] keeps. serde's messages quote the
/// offending input, escaped (up to six characters per input byte, `\u{7f}` for a DEL), and
/// that input is the peer's to choose: a log line and an error value need the start and the
/// end of such a message (what was found, what was expected), not kilobytes of it.
pub const MAX_ERROR_TEXT: usize = 200;

/// Describes a CBOR decoding error in at most [`MAX_ERROR_TEXT`] bytes.
pub(crate) fn describe<E>(error: ciborium::de::Error<E>) -> String {
    match error {
        ciborium::de::Error::Io(_) => "input ended early".to_string(),
        ciborium::de::Error::Syntax(offset) => format!("invalid CBOR at byte {offset}"),
        ciborium::de::Error::Semantic(Some(offset), msg) => {
            shorten(msg, &format!(" (at byte {offset})"))
        }
        ciborium::de::Error::Semantic(None, msg) => shorten(msg, ""),
        ciborium::de::Error::RecursionLimitExceeded => "nested too deeply".to_string(),
    }
}

/// `text` and then `suffix` (at most 31 bytes) in at most [`MAX_ERROR_TEXT`] bytes: a text
/// too long keeps its first and last characters, and says how many bytes were cut between.
fn shorten(mut text: String, suffix: &str) -> String {
    if text.len() + suffix.len() > MAX_ERROR_TEXT {
        // 64 + 64 + the marker (at most 38 bytes: "…[", 20 digits, " bytes cut]…") + the
        // suffix fit in MAX_ERROR_TEXT; 64 keeps serde's ", expected ..." whole.
        let mut head_end = 64;
        while !text.is_char_boundary(head_end) {
            head_end -= 1;
        }
        let mut tail_start = text.len() - 64;
        while !text.is_char_boundary(tail_start) {
            tail_start += 1;
        }
        text = format!(
            "{}…[{} bytes cut]…{}",
            &text[..head_end],
            tail_start - head_end,
            &text[tail_start..]
        );
    }
    text.push_str(suffix);
    text
}
