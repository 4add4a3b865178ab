//! How release artifacts are hashed: whole, and in fixed-size chunks.
//!
//! A manifest commits to each artifact three ways: its size, the SHA-256 of the whole file
//! (what a user checks with `sha256sum`), and the SHA-256 of its *chunk list*, the
//! concatenated SHA-256 digests of its [`CHUNK_SIZE`]-byte chunks (the last one may be
//! shorter). Nodes fetch artifacts chunk by chunk from peers they do not trust: the chunk
//! list, checked against the signed manifest, lets a node check each chunk as it arrives and
//! name the peer that sent a bad one, instead of learning only at the end that something in
//! the file was wrong.
//!
//! Pure computation: callers read the bytes (files, network) and feed them in.

use sha2::{Digest, Sha256};

use crate::types::Hash32;

/// Bytes per chunk: 1 MiB. Part of the protocol: the chunk list hash depends on it.
pub const CHUNK_SIZE: u64 = 1024 * 1024;

/// The number of chunks of an artifact of `size` bytes (0 for an empty file).
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK_SIZE)
}

/// The length of chunk `index` of an artifact of `size` bytes, or `None` past the end.
pub fn chunk_len(size: u64, index: u64) -> Option<u64> {
    let start = index.checked_mul(CHUNK_SIZE)?;
    (start < size).then(|| (size - start).min(CHUNK_SIZE))
}

/// SHA-256 of one chunk.
pub fn chunk_hash(bytes: &[u8]) -> Hash32 {
    Hash32(Sha256::digest(bytes).into())
}

/// The hash a manifest records for a chunk list: SHA-256 of the digests, concatenated.
pub fn chunk_list_hash(chunks: &[Hash32]) -> Hash32 {
    let mut hasher = Sha256::new();
    for chunk in chunks {
        hasher.update(chunk.0);
    }
    Hash32(hasher.finalize().into())
}

/// Splits a serialized chunk list (32-byte digests back to back) into digests, or `None`
/// when its length is not a multiple of 32.
pub fn parse_chunk_list(bytes: &[u8]) -> Option<Vec<Hash32>> {
    if bytes.len() % 32 != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(32)
            .map(|c| Hash32(c.try_into().expect("chunks_exact yields 32 bytes")))
            .collect(),
    )
}

/// Serializes a chunk list as 32-byte digests back to back.
pub fn encode_chunk_list(chunks: &[Hash32]) -> Vec<u8> {
    chunks.iter().flat_map(|c| c.0).collect()
}

/// Everything a manifest says about an artifact's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactDigest {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the whole file.
    pub sha256: Hash32,
    /// SHA-256 of each chunk, in order.
    pub chunks: Vec<Hash32>,
}

impl ArtifactDigest {
    /// The hash of [`Self::chunks`] as a manifest records it.
    pub fn chunk_list_hash(&self) -> Hash32 {
        chunk_list_hash(&self.chunks)
    }
}

/// Streams bytes into an [`ArtifactDigest`] without holding more than one chunk's hash
/// state: feed any slicing of the file to [`update`](Self::update), then
/// [`finish`](Self::finish).
#[derive(Clone, Default)]
pub struct ArtifactHasher {
    whole: Sha256,
    chunk: Sha256,
    in_chunk: u64,
    size: u64,
    chunks: Vec<Hash32>,
}

impl std::fmt::Debug for ArtifactHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactHasher")
            .field("size", &self.size)
            .field("chunks", &self.chunks.len())
            .finish()
    }
}

impl ArtifactHasher {
    /// A hasher that has seen no bytes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes fed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Feeds the next bytes of the file.
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.whole.update(bytes);
        self.size += bytes.len() as u64;
        while !bytes.is_empty() {
            let room = usize::try_from(CHUNK_SIZE - self.in_chunk).unwrap_or(usize::MAX);
            let (head, rest) = bytes.split_at(room.min(bytes.len()));
            self.chunk.update(head);
            self.in_chunk += head.len() as u64;
            if self.in_chunk == CHUNK_SIZE {
                let done = std::mem::take(&mut self.chunk);
                self.chunks.push(Hash32(done.finalize().into()));
                self.in_chunk = 0;
            }
            bytes = rest;
        }
    }

    /// The digest of everything fed.
    pub fn finish(mut self) -> ArtifactDigest {
        if self.in_chunk > 0 {
            self.chunks.push(Hash32(self.chunk.finalize().into()));
        }
        ArtifactDigest {
            size: self.size,
            sha256: Hash32(self.whole.finalize().into()),
            chunks: self.chunks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(data: &[u8], slice: usize) -> ArtifactDigest {
        let mut hasher = ArtifactHasher::new();
        for piece in data.chunks(slice.max(1)) {
            hasher.update(piece);
        }
        hasher.finish()
    }

    #[test]
    fn chunking_matches_a_direct_computation_for_any_slicing() {
        let size = usize::try_from(2 * CHUNK_SIZE + 12_345).unwrap();
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let expected: Vec<Hash32> = data
            .chunks(usize::try_from(CHUNK_SIZE).unwrap())
            .map(chunk_hash)
            .collect();
        assert_eq!(expected.len(), 3);
        for slice in [1, 4096, 1_000_003, size] {
            let digest = digest_of(&data, slice);
            assert_eq!(digest.size, size as u64);
            assert_eq!(digest.sha256.0, <[u8; 32]>::from(Sha256::digest(&data)));
            assert_eq!(digest.chunks, expected, "slicing {slice}");
        }
        assert_eq!(chunk_count(size as u64), 3);
        assert_eq!(chunk_len(size as u64, 2), Some(12_345));
        assert_eq!(chunk_len(size as u64, 3), None);
    }

    #[test]
    fn exact_multiples_and_empty_files_have_no_short_chunk() {
        let data = vec![9u8; usize::try_from(CHUNK_SIZE).unwrap()];
        assert_eq!(digest_of(&data, 1000).chunks.len(), 1);
        assert_eq!(chunk_len(CHUNK_SIZE, 0), Some(CHUNK_SIZE));
        assert_eq!(chunk_len(CHUNK_SIZE, 1), None);
        let empty = digest_of(&[], 1);
        assert!(empty.chunks.is_empty());
        assert_eq!(chunk_count(0), 0);
        assert_eq!(
            empty.chunk_list_hash().0,
            <[u8; 32]>::from(Sha256::digest([]))
        );
    }

    #[test]
    fn chunk_lists_round_trip_and_reject_ragged_input() {
        let list = vec![Hash32([1; 32]), Hash32([2; 32])];
        let bytes = encode_chunk_list(&list);
        assert_eq!(parse_chunk_list(&bytes), Some(list.clone()));
        assert_eq!(parse_chunk_list(&bytes[..63]), None);
        assert_ne!(chunk_list_hash(&list), chunk_list_hash(&list[..1]));
    }
}
