//! The daemon's log file: appended to, and reopened on SIGHUP so that logrotate (or an
//! operator) can move it away and the node writes to a fresh file at the same path, as
//! bitcoind does with `debug.log`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A log file that can be reopened at its path. `&LogFile` is an [`io::Write`], so an
/// `Arc<LogFile>` is a `tracing_subscriber` writer; each event is one `write` under the lock.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: Mutex<File>,
}

fn open(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o640);
    options.open(path)
}

impl LogFile {
    /// Opens (creating or appending to) the log file at `path`.
    pub fn open(path: &Path) -> io::Result<LogFile> {
        Ok(LogFile {
            path: path.to_path_buf(),
            file: Mutex::new(open(path)?),
        })
    }

    /// Where the log goes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the path again, so writing continues in whatever file is there now (a new one
    /// if the old was moved). On failure the old file stays in use.
    pub fn reopen(&self) -> io::Result<()> {
        let fresh = open(&self.path)?;
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }
}

impl Write for &LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_log_is_replaced_by_a_fresh_file_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("commonsd.log");
        let log = LogFile::open(&path).unwrap();
        (&log).write_all(b"before\n").unwrap();
        std::fs::rename(&path, dir.path().join("commonsd.log.1")).unwrap();
        (&log).write_all(b"still the old file\n").unwrap();
        log.reopen().unwrap();
        (&log).write_all(b"after\n").unwrap();
        let old = std::fs::read_to_string(dir.path().join("commonsd.log.1")).unwrap();
        assert_eq!(old, "before\nstill the old file\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
    }
}
