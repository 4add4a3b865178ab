//! The payloads of the fetch request-response protocol, in canonical CBOR (the node serves
//! and fetches with them, `node/src/releases.rs`).
//!
//! Artifacts are addressed by their SHA-256, so a peer serves the same file to every
//! release that lists it. A fetch takes two kinds of request:
//!
//! - `chunk_list`: the artifact's chunk list, which the fetcher checks against the
//!   `chunk_list` hash of the signed manifest before trusting any chunk;
//! - `chunk`: one chunk (1 MiB, the last one shorter), which the fetcher checks against its
//!   entry in the chunk list before writing it.
//!
//! A peer answers `missing` when it does not hold what was asked (yet).
//!
//! Chunks also travel on a stream protocol, `fetch/2`: the fetcher opens a stream, sends one
//! framed [`ChunkRun`] (up to [`MAX_RUN_CHUNKS`] indices) and reads one framed
//! [`FetchResponse`] (`chunk` or `missing`) per index, in the order asked; then the server
//! closes the stream. A frame is a 4-byte big-endian length and that many bytes. Run after run
//! on one stream each, the chunks flow without a request and a stream set-up per megabyte.

use serde::{Deserialize, Serialize};

use crate::artifact::CHUNK_SIZE;
use crate::types::{BoundedBytes, BoundedVec, Hash32};
use crate::wire::DecodeError;

/// The largest chunk list: 16 GiB of artifacts (the release limit) in 1 MiB chunks, 32
/// bytes each.
pub const MAX_CHUNK_LIST_BYTES: usize = 512 * 1024;
/// The largest chunk.
pub const MAX_CHUNK_BYTES: usize = CHUNK_SIZE as usize;
/// The largest request accepted.
pub const MAX_REQUEST_BYTES: usize = 256;
/// The largest response accepted: a chunk and its framing, within the networking layer's
/// 4 MiB response limit.
pub const MAX_RESPONSE_BYTES: usize = MAX_CHUNK_BYTES + 1024;

/// The most chunks one `fetch/2` stream asks for.
pub const MAX_RUN_CHUNKS: usize = 64;
/// The largest run request accepted: an artifact and [`MAX_RUN_CHUNKS`] indices of up to five
/// bytes each, with room to spare.
pub const MAX_RUN_REQUEST_BYTES: usize = 512;

/// A fetch request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchRequest {
    /// The chunk list of an artifact.
    ChunkList {
        /// The artifact's SHA-256.
        artifact: Hash32,
    },
    /// One chunk of an artifact.
    Chunk {
        /// The artifact's SHA-256.
        artifact: Hash32,
        /// The chunk's index.
        index: u32,
    },
}

/// A fetch response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchResponse {
    /// The chunk list: 32-byte digests back to back.
    ChunkList {
        /// The digests.
        hashes: BoundedBytes<MAX_CHUNK_LIST_BYTES>,
    },
    /// The chunk's bytes.
    Chunk {
        /// The bytes.
        data: BoundedBytes<MAX_CHUNK_BYTES>,
    },
    /// This peer does not hold it.
    Missing,
}

/// The request that opens a `fetch/2` stream: these chunks of this artifact, answered in this
/// order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRun {
    /// The artifact's SHA-256.
    pub artifact: Hash32,
    /// The chunks' indices: at least one, at most [`MAX_RUN_CHUNKS`].
    #[serde(deserialize_with = "run_indices")]
    pub indices: Vec<u32>,
}

/// A run's indices read with their bound checked before anything is reserved: a plain
/// `Vec` would reserve for the length a peer declares (up to serde's 1 MiB cap), which
/// fuzzing found (`chunk_run`: 107 bytes held 1 MiB of heap).
fn run_indices<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    BoundedVec::<u32, MAX_RUN_CHUNKS>::deserialize(d).map(|v| v.into_vec())
}

impl ChunkRun {
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::wire::encode(self)
    }

    /// Strictly decodes a run request, refusing an empty one and one longer than
    /// [`MAX_RUN_CHUNKS`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let run: ChunkRun = crate::wire::decode(bytes, MAX_RUN_REQUEST_BYTES)?;
        if run.indices.is_empty() || run.indices.len() > MAX_RUN_CHUNKS {
            return Err(DecodeError::Malformed(format!(
                "a run asks for {} chunks (1 to {MAX_RUN_CHUNKS} allowed)",
                run.indices.len()
            )));
        }
        Ok(run)
    }
}

impl FetchRequest {
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::wire::encode(self)
    }

    /// Strictly decodes a request.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        crate::wire::decode(bytes, MAX_REQUEST_BYTES)
    }
}

impl FetchResponse {
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::wire::encode(self)
    }

    /// Decodes a response: bounded, nothing after it, but without the canonical-form check
    /// of signed messages. Nothing in a response is signed (chunks are checked against
    /// their digests), and that check would copy every megabyte chunk once more.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_RESPONSE_BYTES {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: MAX_RESPONSE_BYTES,
            });
        }
        let mut reader = bytes;
        let response = ciborium::de::from_reader_with_recursion_limit(&mut reader, 8)
            .map_err(|e| DecodeError::Malformed(crate::wire::describe(e)))?;
        if !reader.is_empty() {
            return Err(DecodeError::TrailingBytes(reader.len()));
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bounds() {
        let request = FetchRequest::Chunk {
            artifact: Hash32([3; 32]),
            index: 7,
        };
        assert_eq!(FetchRequest::decode(&request.encode()).unwrap(), request);
        let response = FetchResponse::Chunk {
            data: BoundedBytes::new(vec![1; MAX_CHUNK_BYTES]).unwrap(),
        };
        let bytes = response.encode();
        assert!(bytes.len() <= MAX_RESPONSE_BYTES);
        assert_eq!(FetchResponse::decode(&bytes).unwrap(), response);
        assert_eq!(
            FetchResponse::decode(&FetchResponse::Missing.encode()).unwrap(),
            FetchResponse::Missing
        );
        // A chunk one byte too long does not decode.
        let mut oversized = crate::wire::encode(&FetchResponse::ChunkList {
            hashes: BoundedBytes::new(vec![0; 32]).unwrap(),
        });
        oversized.push(0);
        assert!(FetchResponse::decode(&oversized).is_err());
        assert!(FetchRequest::decode(b"\xa0").is_err());
    }

    #[test]
    fn a_run_asks_for_one_to_sixty_four_chunks_within_its_byte_bound() {
        let longest = ChunkRun {
            artifact: Hash32([9; 32]),
            indices: (u32::MAX - MAX_RUN_CHUNKS as u32..u32::MAX).collect(),
        };
        let bytes = longest.encode();
        assert!(
            bytes.len() <= MAX_RUN_REQUEST_BYTES,
            "{} bytes",
            bytes.len()
        );
        assert_eq!(ChunkRun::decode(&bytes).unwrap(), longest);
        for indices in [vec![], vec![0; MAX_RUN_CHUNKS + 1]] {
            let run = ChunkRun {
                artifact: Hash32([9; 32]),
                indices,
            };
            assert!(matches!(
                ChunkRun::decode(&run.encode()),
                Err(DecodeError::Malformed(_))
            ));
        }
        assert!(ChunkRun::decode(&[0x80; MAX_RUN_REQUEST_BYTES + 1]).is_err());
    }
}
