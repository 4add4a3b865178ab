//! Release artifacts on disk: verified files, partial downloads that survive restarts, and
//! the chunk reads that serve peers.
//!
//! Layout under `<datadir>/artifacts/`, content-addressed by the artifact's SHA-256 (hex):
//!
//! - `<sha256>`: a verified artifact (size, SHA-256 and chunk list matched its manifest);
//! - `<sha256>.chunks`: its chunk list (32-byte digests back to back), read to check every
//!   chunk served, so a file damaged on disk is never passed on;
//! - `partial/<sha256>` and `partial/<sha256>.chunks`: a download in progress, the file at
//!   its final size with the chunks fetched so far written in place. After a restart the
//!   chunks already on disk are found by hashing them against the chunk list, so no
//!   separate progress record can disagree with the data.
//!
//! Every call does blocking file I/O; async callers run it on the blocking pool.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use commons_aggregator::rules::{ArtifactError, check_artifact};
use commons_signaling::artifact::{
    self, ArtifactHasher, CHUNK_SIZE, chunk_count, chunk_hash, chunk_len, encode_chunk_list,
    parse_chunk_list,
};
use commons_signaling::{Artifact, Hash32};

/// The directory name under the data directory.
pub const ARTIFACTS_DIR: &str = "artifacts";

/// Why an artifact could not be imported or completed.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactStoreError {
    /// The bytes do not match the manifest.
    #[error("{0}")]
    Mismatch(#[from] ArtifactError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ArtifactStoreError + '_ {
    move |source| ArtifactStoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A download in progress: which chunks are on disk.
#[derive(Debug)]
struct Partial {
    file: File,
    size: u64,
    chunks: Vec<Hash32>,
    have: Vec<bool>,
}

impl Partial {
    fn missing(&self) -> Vec<u32> {
        (0..self.have.len())
            .filter(|i| !self.have[*i])
            .filter_map(|i| u32::try_from(i).ok())
            .collect()
    }
}

/// Progress of one artifact, for RPC and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactState {
    /// Verified and stored.
    Verified,
    /// Being fetched: bytes of verified chunks on disk so far.
    Fetching(u64),
    /// Nothing fetched yet.
    Waiting,
}

/// The artifact files of one node.
#[derive(Debug)]
pub struct ArtifactStore {
    root: PathBuf,
    partials: Mutex<HashMap<Hash32, Arc<Mutex<Partial>>>>,
}

/// The chunk indexes still to fetch, and the chunk list to check them against.
#[derive(Debug, Clone)]
pub struct Download {
    /// The artifact's SHA-256.
    pub sha256: Hash32,
    /// SHA-256 of each chunk.
    pub chunks: Vec<Hash32>,
    /// Indexes of the chunks not on disk yet.
    pub missing: Vec<u32>,
    /// The artifact's size.
    pub size: u64,
}

impl ArtifactStore {
    /// Opens (creating) the artifact directories under `datadir`.
    pub fn open(datadir: &Path) -> io::Result<Self> {
        let root = datadir.join(ARTIFACTS_DIR);
        fs::create_dir_all(root.join("partial"))?;
        // Paths reported over RPC must not depend on the daemon's working directory.
        let root = root.canonicalize()?;
        Ok(ArtifactStore {
            root,
            partials: Mutex::new(HashMap::new()),
        })
    }

    /// The data directory the store lives in.
    pub fn datadir(&self) -> &Path {
        self.root.parent().unwrap_or(&self.root)
    }

    fn hex(sha256: &Hash32) -> String {
        sha256.to_hex()
    }

    /// Where a verified artifact lives.
    pub fn path(&self, sha256: &Hash32) -> PathBuf {
        self.root.join(Self::hex(sha256))
    }

    fn chunks_path(&self, sha256: &Hash32) -> PathBuf {
        self.root.join(format!("{}.chunks", Self::hex(sha256)))
    }

    fn partial_path(&self, sha256: &Hash32) -> PathBuf {
        self.root.join("partial").join(Self::hex(sha256))
    }

    fn partial_chunks_path(&self, sha256: &Hash32) -> PathBuf {
        self.root
            .join("partial")
            .join(format!("{}.chunks", Self::hex(sha256)))
    }

    fn partial(&self, sha256: &Hash32) -> Option<Arc<Mutex<Partial>>> {
        self.partials
            .lock()
            .expect("partials lock poisoned")
            .get(sha256)
            .cloned()
    }

    /// Whether the artifact is verified and on disk.
    pub fn is_verified(&self, sha256: &Hash32) -> bool {
        self.path(sha256).is_file() && self.chunks_path(sha256).is_file()
    }

    /// How far the artifact is.
    pub fn state(&self, sha256: &Hash32) -> ArtifactState {
        if self.is_verified(sha256) {
            return ArtifactState::Verified;
        }
        match self.partial(sha256) {
            Some(p) => {
                let p = p.lock().expect("partial lock poisoned");
                let have = (0..p.have.len())
                    .filter(|i| p.have[*i])
                    .filter_map(|i| chunk_len(p.size, i as u64))
                    .sum();
                ArtifactState::Fetching(have)
            }
            None => ArtifactState::Waiting,
        }
    }

    /// The chunk list of an artifact this node can serve from (verified or in progress),
    /// serialized as on the wire.
    pub fn chunk_list(&self, sha256: &Hash32) -> Option<Vec<u8>> {
        if self.is_verified(sha256) {
            return fs::read(self.chunks_path(sha256)).ok();
        }
        let p = self.partial(sha256)?;
        let p = p.lock().expect("partial lock poisoned");
        Some(encode_chunk_list(&p.chunks))
    }

    /// One chunk for a peer, checked against the chunk list first: `None` when this node
    /// does not hold it (or holds it damaged).
    pub fn read_chunk(&self, sha256: &Hash32, index: u32) -> Option<Vec<u8>> {
        if self.is_verified(sha256) {
            let chunks = parse_chunk_list(&fs::read(self.chunks_path(sha256)).ok()?)?;
            let expected = chunks.get(usize::try_from(index).ok()?)?;
            let file = File::open(self.path(sha256)).ok()?;
            let size = file.metadata().ok()?.len();
            let bytes = read_at(&file, size, index)?;
            return (chunk_hash(&bytes) == *expected).then_some(bytes);
        }
        let p = self.partial(sha256)?;
        let p = p.lock().expect("partial lock poisoned");
        let i = usize::try_from(index).ok()?;
        if !*p.have.get(i)? {
            return None;
        }
        let bytes = read_at(&p.file, p.size, index)?;
        (chunk_hash(&bytes) == p.chunks[i]).then_some(bytes)
    }

    /// Copies a local file into the store after checking it against its manifest entry
    /// (the publisher's path). Streams: never holds more than a buffer of the file.
    pub fn import(&self, artifact: &Artifact, source: &Path) -> Result<(), ArtifactStoreError> {
        if self.is_verified(&artifact.sha256) {
            return Ok(());
        }
        let mut input = File::open(source).map_err(io_at(source))?;
        let temp = self.root.join("partial").join(format!(
            "{}.import-{}",
            Self::hex(&artifact.sha256),
            std::process::id()
        ));
        let result = (|| {
            let mut output = File::create(&temp).map_err(io_at(&temp))?;
            let mut hasher = ArtifactHasher::new();
            let mut buffer = vec![0u8; 256 * 1024];
            // One byte past the expected size is enough to know the size is wrong.
            let limit = artifact.size.saturating_add(1);
            while hasher.size() < limit {
                let want = usize::try_from((limit - hasher.size()).min(buffer.len() as u64))
                    .unwrap_or(buffer.len());
                let n = match input.read(&mut buffer[..want]) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io_at(source)(e)),
                };
                hasher.update(&buffer[..n]);
                output.write_all(&buffer[..n]).map_err(io_at(&temp))?;
            }
            let digest = hasher.finish();
            check_artifact(artifact, &digest)?;
            output.sync_all().map_err(io_at(&temp))?;
            self.install(&artifact.sha256, &temp, &digest.chunks)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    /// Moves a verified file into place with its chunk list.
    fn install(
        &self,
        sha256: &Hash32,
        file: &Path,
        chunks: &[Hash32],
    ) -> Result<(), ArtifactStoreError> {
        let list = self.chunks_path(sha256);
        let temp_list = self
            .root
            .join("partial")
            .join(format!("{}.chunks.tmp", Self::hex(sha256)));
        fs::write(&temp_list, encode_chunk_list(chunks)).map_err(io_at(&temp_list))?;
        fs::rename(&temp_list, &list).map_err(io_at(&list))?;
        let target = self.path(sha256);
        fs::rename(file, &target).map_err(io_at(&target))?;
        Ok(())
    }

    /// The chunk list saved by an earlier run for a download in progress, if it still
    /// matches the manifest.
    pub fn saved_chunk_list(&self, artifact: &Artifact) -> Option<Vec<Hash32>> {
        let bytes = fs::read(self.partial_chunks_path(&artifact.sha256)).ok()?;
        let chunks = parse_chunk_list(&bytes)?;
        chunk_list_fits(artifact, &chunks).then_some(chunks)
    }

    /// Starts or resumes a download with a chunk list already checked against the
    /// manifest: sizes the partial file, and finds the chunks an earlier run wrote by
    /// hashing them.
    pub fn begin(
        &self,
        artifact: &Artifact,
        chunks: Vec<Hash32>,
    ) -> Result<Download, ArtifactStoreError> {
        let sha256 = artifact.sha256;
        if let Some(p) = self.partial(&sha256) {
            let p = p.lock().expect("partial lock poisoned");
            return Ok(Download {
                sha256,
                chunks: p.chunks.clone(),
                missing: p.missing(),
                size: p.size,
            });
        }
        let list_path = self.partial_chunks_path(&sha256);
        fs::write(&list_path, encode_chunk_list(&chunks)).map_err(io_at(&list_path))?;
        let path = self.partial_path(&sha256);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_at(&path))?;
        let on_disk = file.metadata().map_err(io_at(&path))?.len();
        let mut have = vec![false; chunks.len()];
        for (i, expected) in chunks.iter().enumerate() {
            let Some(len) = chunk_len(artifact.size, i as u64) else {
                break;
            };
            if (i as u64) * CHUNK_SIZE + len > on_disk {
                break;
            }
            if let Some(bytes) = read_at(&file, artifact.size, i as u32) {
                have[i] = chunk_hash(&bytes) == *expected;
            }
        }
        file.set_len(artifact.size).map_err(io_at(&path))?;
        let partial = Partial {
            file,
            size: artifact.size,
            chunks: chunks.clone(),
            have,
        };
        let missing = partial.missing();
        self.partials
            .lock()
            .expect("partials lock poisoned")
            .insert(sha256, Arc::new(Mutex::new(partial)));
        Ok(Download {
            sha256,
            chunks,
            missing,
            size: artifact.size,
        })
    }

    /// Deletes a download in progress (its partial file and chunk list); whether there was
    /// one. A verified artifact is never touched.
    pub fn discard_partial(&self, sha256: &Hash32) -> bool {
        let in_memory = self
            .partials
            .lock()
            .expect("partials lock poisoned")
            .remove(sha256)
            .is_some();
        let file = fs::remove_file(self.partial_path(sha256)).is_ok();
        let list = fs::remove_file(self.partial_chunks_path(sha256)).is_ok();
        in_memory || file || list
    }

    /// Writes a chunk already checked against the chunk list.
    pub fn write_chunk(
        &self,
        sha256: &Hash32,
        index: u32,
        bytes: &[u8],
    ) -> Result<(), ArtifactStoreError> {
        let path = self.partial_path(sha256);
        let Some(p) = self.partial(sha256) else {
            return Err(io_at(&path)(io::Error::other("no download in progress")));
        };
        let mut p = p.lock().expect("partial lock poisoned");
        let i = usize::try_from(index).unwrap_or(usize::MAX);
        if i >= p.have.len() {
            return Err(io_at(&path)(io::Error::other("chunk index out of range")));
        }
        p.file
            .write_all_at(bytes, u64::from(index) * CHUNK_SIZE)
            .map_err(io_at(&path))?;
        p.have[i] = true;
        Ok(())
    }

    /// Checks the whole downloaded file against the manifest and moves it into place. On a
    /// mismatch the download starts over.
    pub fn finish(&self, artifact: &Artifact) -> Result<(), ArtifactStoreError> {
        let sha256 = artifact.sha256;
        let path = self.partial_path(&sha256);
        let partial = self
            .partials
            .lock()
            .expect("partials lock poisoned")
            .remove(&sha256);
        let Some(partial) = partial else {
            return Err(io_at(&path)(io::Error::other("no download in progress")));
        };
        let chunks = {
            let p = partial.lock().expect("partial lock poisoned");
            p.file.sync_all().map_err(io_at(&path))?;
            p.chunks.clone()
        };
        let digest = {
            let mut file = File::open(&path).map_err(io_at(&path))?;
            let mut hasher = ArtifactHasher::new();
            let mut buffer = vec![0u8; 256 * 1024];
            loop {
                let n = file.read(&mut buffer).map_err(io_at(&path))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buffer[..n]);
            }
            hasher.finish()
        };
        if let Err(e) = check_artifact(artifact, &digest) {
            let _ = fs::remove_file(&path);
            return Err(e.into());
        }
        self.install(&sha256, &path, &chunks)?;
        let _ = fs::remove_file(self.partial_chunks_path(&sha256));
        Ok(())
    }
}

/// Whether a chunk list has the right length for the artifact and hashes to its manifest
/// entry.
pub fn chunk_list_fits(artifact: &Artifact, chunks: &[Hash32]) -> bool {
    chunks.len() as u64 == chunk_count(artifact.size)
        && artifact::chunk_list_hash(chunks) == artifact.chunk_list
}

fn read_at(file: &File, size: u64, index: u32) -> Option<Vec<u8>> {
    let len = chunk_len(size, u64::from(index))?;
    let mut bytes = vec![0u8; usize::try_from(len).ok()?];
    file.read_exact_at(&mut bytes, u64::from(index) * CHUNK_SIZE)
        .ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use commons_signaling::BoundedString;

    fn artifact_of(name: &str, bytes: &[u8]) -> (Artifact, Vec<Hash32>) {
        let mut hasher = ArtifactHasher::new();
        hasher.update(bytes);
        let digest = hasher.finish();
        (
            Artifact {
                name: BoundedString::new(name).unwrap(),
                sha256: digest.sha256,
                size: digest.size,
                chunk_list: digest.chunk_list_hash(),
            },
            digest.chunks,
        )
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 253) as u8).collect()
    }

    #[test]
    fn import_checks_the_manifest_and_serves_verified_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let bytes = sample(2 * CHUNK_SIZE as usize + 10);
        let (artifact, chunks) = artifact_of("tool", &bytes);
        let source = dir.path().join("tool");
        fs::write(&source, &bytes).unwrap();

        let mut wrong = artifact.clone();
        wrong.sha256 = Hash32([0; 32]);
        assert!(matches!(
            store.import(&wrong, &source),
            Err(ArtifactStoreError::Mismatch(ArtifactError::Hash { .. }))
        ));
        assert_eq!(store.state(&wrong.sha256), ArtifactState::Waiting);

        store.import(&artifact, &source).unwrap();
        assert_eq!(store.state(&artifact.sha256), ArtifactState::Verified);
        assert_eq!(fs::read(store.path(&artifact.sha256)).unwrap(), bytes);
        assert_eq!(
            store.chunk_list(&artifact.sha256).unwrap(),
            encode_chunk_list(&chunks)
        );
        assert_eq!(
            store.read_chunk(&artifact.sha256, 2).unwrap(),
            bytes[2 * CHUNK_SIZE as usize..]
        );
        assert!(store.read_chunk(&artifact.sha256, 3).is_none());

        // A verified file damaged on disk is not passed on.
        let f = OpenOptions::new()
            .write(true)
            .open(store.path(&artifact.sha256))
            .unwrap();
        f.write_all_at(b"X", 5).unwrap();
        assert!(store.read_chunk(&artifact.sha256, 0).is_none());
        assert!(store.read_chunk(&artifact.sha256, 1).is_some());
    }

    #[test]
    fn a_download_resumes_from_the_chunks_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = sample(3 * CHUNK_SIZE as usize + 77);
        let (artifact, chunks) = artifact_of("big", &bytes);
        let piece = |i: usize| {
            let start = i * CHUNK_SIZE as usize;
            &bytes[start..(start + CHUNK_SIZE as usize).min(bytes.len())]
        };
        {
            let store = ArtifactStore::open(dir.path()).unwrap();
            let download = store.begin(&artifact, chunks.clone()).unwrap();
            assert_eq!(download.missing, vec![0, 1, 2, 3]);
            store.write_chunk(&artifact.sha256, 1, piece(1)).unwrap();
            store.write_chunk(&artifact.sha256, 3, piece(3)).unwrap();
            assert_eq!(
                store.state(&artifact.sha256),
                ArtifactState::Fetching(CHUNK_SIZE + 77)
            );
            // Peers can already have the chunks this node holds.
            assert_eq!(store.read_chunk(&artifact.sha256, 1).unwrap(), piece(1));
            assert!(store.read_chunk(&artifact.sha256, 0).is_none());
        }
        // A new run (a restart) finds what is on disk.
        let store = ArtifactStore::open(dir.path()).unwrap();
        let saved = store.saved_chunk_list(&artifact).unwrap();
        let download = store.begin(&artifact, saved).unwrap();
        assert_eq!(download.missing, vec![0, 2]);
        store.write_chunk(&artifact.sha256, 0, piece(0)).unwrap();
        store.write_chunk(&artifact.sha256, 2, piece(2)).unwrap();
        store.finish(&artifact).unwrap();
        assert_eq!(fs::read(store.path(&artifact.sha256)).unwrap(), bytes);
        assert!(!store.partial_path(&artifact.sha256).exists());
        assert!(store.saved_chunk_list(&artifact).is_none());
        // Discarding never touches a verified artifact.
        assert!(!store.discard_partial(&artifact.sha256));
        assert_eq!(store.state(&artifact.sha256), ArtifactState::Verified);
    }

    #[test]
    fn an_abandoned_download_is_deleted_from_memory_and_disk() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = sample(CHUNK_SIZE as usize + 9);
        let (artifact, chunks) = artifact_of("old", &bytes);
        {
            let store = ArtifactStore::open(dir.path()).unwrap();
            store.begin(&artifact, chunks.clone()).unwrap();
            store
                .write_chunk(&artifact.sha256, 0, &bytes[..CHUNK_SIZE as usize])
                .unwrap();
            assert!(store.discard_partial(&artifact.sha256));
            assert_eq!(store.state(&artifact.sha256), ArtifactState::Waiting);
            assert!(!store.partial_path(&artifact.sha256).exists());
            assert!(!store.discard_partial(&artifact.sha256));
            store.begin(&artifact, chunks).unwrap();
        }
        // After a restart the download is only on disk; it is found and deleted all the same.
        let store = ArtifactStore::open(dir.path()).unwrap();
        assert!(store.saved_chunk_list(&artifact).is_some());
        assert!(store.discard_partial(&artifact.sha256));
        assert!(store.saved_chunk_list(&artifact).is_none());
        assert!(!store.partial_path(&artifact.sha256).exists());
    }

    #[test]
    fn a_download_with_a_bad_chunk_on_disk_is_not_installed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let bytes = sample(CHUNK_SIZE as usize + 1);
        let (artifact, chunks) = artifact_of("x", &bytes);
        store.begin(&artifact, chunks).unwrap();
        store
            .write_chunk(&artifact.sha256, 0, &bytes[..CHUNK_SIZE as usize])
            .unwrap();
        // The caller skipped the chunk check: finish still refuses the file.
        store.write_chunk(&artifact.sha256, 1, b"?").unwrap();
        assert!(matches!(
            store.finish(&artifact),
            Err(ArtifactStoreError::Mismatch(_))
        ));
        assert_eq!(store.state(&artifact.sha256), ArtifactState::Waiting);
    }

    #[test]
    fn chunk_lists_must_fit_the_manifest() {
        let (artifact, chunks) = artifact_of("y", &sample(CHUNK_SIZE as usize * 2));
        assert!(chunk_list_fits(&artifact, &chunks));
        assert!(!chunk_list_fits(&artifact, &chunks[..1]));
        let mut swapped = chunks.clone();
        swapped.swap(0, 1);
        assert!(!chunk_list_fits(&artifact, &swapped));
    }
}
