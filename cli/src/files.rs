//! Reading and writing the files commands work on.
//!
//! Reads are bounded before anything is allocated. Writes go to a temporary file in the
//! target's directory that is then renamed over the target, so a file is always either its
//! old or its new version, never half written; new files are never written over existing
//! ones.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use commons_signaling::artifact::{ArtifactDigest, ArtifactHasher};

/// The size of the buffer files are streamed through.
const CHUNK: usize = 64 * 1024;

/// A file problem in the words a person expects: `FILE: no such file or directory`.
pub fn io_error(path: &Path, error: &io::Error) -> anyhow::Error {
    let problem = match error.kind() {
        io::ErrorKind::NotFound => "no such file or directory".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        io::ErrorKind::IsADirectory => "is a directory, not a file".to_string(),
        _ => error.to_string(),
    };
    anyhow!("{}: {problem}", path.display())
}

/// Reads a whole file that must hold at most `max` bytes; `what` names its kind in errors.
pub fn read_bounded(path: &Path, max: usize, what: &str) -> anyhow::Result<Vec<u8>> {
    let file = fs::File::open(path).map_err(|e| io_error(path, &e))?;
    let metadata = file.metadata().map_err(|e| io_error(path, &e))?;
    if !metadata.is_file() {
        bail!("{}: not a regular file", path.display());
    }
    let too_large = |len: u64| {
        anyhow!(
            "{}: {len} bytes, larger than any {what} ({max} bytes at most)",
            path.display()
        )
    };
    if metadata.len() > max as u64 {
        return Err(too_large(metadata.len()));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, &e))?;
    if bytes.len() > max {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// The directory a file lives in, for its temporary sibling.
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A temporary file next to `path`, holding `bytes`, flushed to disk.
fn staged(path: &Path, bytes: &[u8]) -> anyhow::Result<tempfile::NamedTempFile> {
    let dir = parent_dir(path);
    let mut temp = tempfile::Builder::new()
        .prefix(".commons-cli-")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .with_context(|| format!("{}: cannot create a temporary file", dir.display()))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("{}: cannot write", path.display()))?;
    Ok(temp)
}

/// Writes a new file; fails, leaving everything as it was, when `path` exists.
pub fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temp = staged(path, bytes)?;
    // The temporary file is 0600; a message file is public, so give it the usual mode.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = temp
            .as_file()
            .set_permissions(fs::Permissions::from_mode(0o644));
    }
    temp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == io::ErrorKind::AlreadyExists {
            anyhow!(
                "{}: exists already; refusing to overwrite it",
                path.display()
            )
        } else {
            anyhow!("{}: cannot write: {}", path.display(), e.error)
        }
    })?;
    Ok(())
}

/// Writes a new file that holds a secret: mode 0600 from the start (the temporary file is
/// created so), never over an existing file, never half written.
pub fn write_new_secret(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let temp = staged(path, bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o600))
            .with_context(|| format!("{}: cannot set permissions", path.display()))?;
    }
    temp.persist_noclobber(path).map_err(|e| {
        if e.error.kind() == io::ErrorKind::AlreadyExists {
            anyhow!(
                "{}: file exists already; refusing to overwrite a key",
                path.display()
            )
        } else {
            anyhow!("{}: cannot write: {}", path.display(), e.error)
        }
    })?;
    Ok(())
}

/// Replaces an existing file's content, keeping its permissions.
pub fn replace(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let permissions = fs::metadata(path)
        .map_err(|e| io_error(path, &e))?
        .permissions();
    let temp = staged(path, bytes)?;
    temp.as_file()
        .set_permissions(permissions)
        .with_context(|| format!("{}: cannot set permissions", path.display()))?;
    temp.persist(path)
        .map_err(|e| anyhow!("{}: cannot write: {}", path.display(), e.error))?;
    Ok(())
}

/// Streams a reader through the artifact hasher (whole file and per chunk), reading at
/// most `limit` bytes, never all at once.
pub fn digest_reader(mut reader: impl Read, limit: u64) -> io::Result<ArtifactDigest> {
    let mut hasher = ArtifactHasher::new();
    let mut buffer = vec![0u8; CHUNK];
    while hasher.size() < limit {
        let want = (limit - hasher.size()).min(CHUNK as u64) as usize;
        let n = match reader.read(&mut buffer[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..n]);
    }
    Ok(hasher.finish())
}

/// Streams a regular file through the artifact hasher, reading at most `limit` bytes and
/// counting them on `progress`.
pub fn digest_file(
    path: &Path,
    limit: u64,
    progress: &crate::progress::Progress,
) -> io::Result<ArtifactDigest> {
    let file = fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    digest_reader(progress.reader(file), limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn hashes_in_chunks_and_stops_at_the_limit() {
        let data = vec![7u8; CHUNK * 2 + 5];
        let all = digest_reader(&data[..], u64::MAX).unwrap();
        assert_eq!(all.size, data.len() as u64);
        assert_eq!(all.sha256.0, <[u8; 32]>::from(Sha256::digest(&data)));
        let part = digest_reader(&data[..], 10).unwrap();
        assert_eq!(part.size, 10);
    }

    #[test]
    fn new_files_are_never_overwritten_and_replace_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.cbor");
        write_new(&path, b"one").unwrap();
        let err = write_new(&path, b"two").unwrap_err().to_string();
        assert!(err.contains("exists already"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"one");
        replace(&path, b"three").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"three");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o644
            );
        }
        let leftovers = fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary files left behind");
    }

    #[cfg(unix)]
    #[test]
    fn secrets_are_written_for_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        write_new_secret(&path, b"secret").unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let err = write_new_secret(&path, b"other").unwrap_err().to_string();
        assert!(err.contains("exists already"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"secret");
    }

    #[test]
    fn bounded_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        fs::write(&path, vec![0u8; 100]).unwrap();
        assert!(read_bounded(&path, 100, "thing").is_ok());
        let err = read_bounded(&path, 99, "thing").unwrap_err().to_string();
        assert!(err.contains("larger than any thing"), "{err}");
    }
}
