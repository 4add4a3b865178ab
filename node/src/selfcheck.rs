//! Startup self-verification (`--verify-binary`): is the executable this process runs one
//! that the maintainers signed?
//!
//! At start the node hashes its own executable (`/proc/self/exe`, which names the file the
//! kernel is running even after an upgrade renamed another over its path) and looks for its
//! size and SHA-256 among the artifacts of the releases it holds as verified, the same rule
//! `commons-cli release verify-binary` applies. The digest is computed once per process; a
//! release verified later (published over RPC or fetched from peers) only needs a lookup, so
//! the status is recomputed whenever it is asked for, and logged whenever it changes.
//!
//! Hashing a debug build of several hundred megabytes costs a noticeable part of a second at
//! every start, so the digest is cached in the data directory ([`CACHE_FILE`]) under the
//! file's identity: device, inode, size, modification and status-change times. Replacing the
//! binary (a new inode), or writing into it (new times), misses the cache and hashes again.
//! The status-change time cannot be set from user space, so a rewritten file cannot be dressed
//! up with the old times. The cache is as trustworthy as the data directory: whoever can write
//! there can also replace the node key.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use commons_rpc::{BinaryInfo, BinaryRelease};
use commons_signaling::Hash32;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::releases::ReleaseHost;

/// The cache of the executable's digest, in the network's data directory.
pub const CACHE_FILE: &str = "binary-digest";

/// The first word of the cache's one line: a different format is a cache miss.
const CACHE_VERSION: &str = "v1";

/// Bytes read at a time while hashing: the file is streamed, never read whole.
const READ_BUFFER: usize = 1 << 20;

/// What `--verify-binary` asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum VerifyBinary {
    /// No check (the default): nothing is hashed.
    #[default]
    Off,
    /// Check, report, and warn in the log when the executable is not verified.
    Warn,
    /// Check, and refuse to start unless the executable is verified.
    Require,
}

impl VerifyBinary {
    /// The setting as written on the command line and in the config file.
    pub fn name(self) -> &'static str {
        match self {
            VerifyBinary::Off => "off",
            VerifyBinary::Warn => "warn",
            VerifyBinary::Require => "require",
        }
    }

    /// Reads a config-file value; `None` for anything but `off`, `warn` and `require`.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Off, Self::Warn, Self::Require]
            .into_iter()
            .find(|m| m.name() == text)
    }
}

/// What identifies one version of a file without reading it: a file replaced or written to
/// gets another identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    /// The device holding it.
    pub dev: u64,
    /// Its inode on that device.
    pub ino: u64,
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time, in nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
    /// Its status-change time, in nanoseconds since the Unix epoch.
    pub ctime_ns: i128,
}

impl FileIdentity {
    /// The identity of the file `meta` describes.
    pub fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        let ns = |secs: i64, nanos: i64| i128::from(secs) * 1_000_000_000 + i128::from(nanos);
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }

    fn cache_line(&self, sha256: &Hash32) -> String {
        format!(
            "{CACHE_VERSION} {} {} {} {} {} {}\n",
            self.dev,
            self.ino,
            self.size,
            self.mtime_ns,
            self.ctime_ns,
            sha256.to_hex()
        )
    }

    fn parse_cache_line(line: &str) -> Option<(Self, Hash32)> {
        let mut words = line.split_whitespace();
        if words.next()? != CACHE_VERSION {
            return None;
        }
        let identity = FileIdentity {
            dev: words.next()?.parse().ok()?,
            ino: words.next()?.parse().ok()?,
            size: words.next()?.parse().ok()?,
            mtime_ns: words.next()?.parse().ok()?,
            ctime_ns: words.next()?.parse().ok()?,
        };
        let sha256 = words.next()?.parse().ok()?;
        words.next().is_none().then_some((identity, sha256))
    }
}

/// The digest of an executable, and how it was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExeDigest {
    /// The executable's path, for people.
    pub path: PathBuf,
    /// Its SHA-256.
    pub sha256: Hash32,
    /// Its size in bytes.
    pub size: u64,
    /// Whether the digest came from the cache rather than from reading the file.
    pub cached: bool,
    /// How long obtaining it took.
    pub elapsed: Duration,
}

/// The SHA-256 of the file at `open`, shown as `shown`, from the cache at `cache` when the
/// cache holds the file's current identity, else by reading it (then the cache is rewritten).
/// The identity is taken from the opened file itself, so the bytes hashed are those of the
/// file identified. A cache that cannot be read or written only costs a rehash: a warning,
/// not an error.
pub fn digest_file(open: &Path, shown: &Path, cache: &Path) -> io::Result<ExeDigest> {
    let started = Instant::now();
    let mut file = File::open(open)?;
    let identity = FileIdentity::of(&file.metadata()?);
    let cached = std::fs::read_to_string(cache)
        .ok()
        .and_then(|text| FileIdentity::parse_cache_line(&text))
        .filter(|(id, _)| *id == identity)
        .map(|(_, sha256)| sha256);
    if let Some(sha256) = cached {
        return Ok(ExeDigest {
            path: shown.to_path_buf(),
            sha256,
            size: identity.size,
            cached: true,
            elapsed: started.elapsed(),
        });
    }
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut read = 0u64;
    loop {
        let n = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buffer[..n]);
        read += n as u64;
    }
    if read != identity.size || FileIdentity::of(&file.metadata()?) != identity {
        return Err(io::Error::other(format!(
            "{} changed while it was hashed",
            shown.display()
        )));
    }
    let sha256 = Hash32(hasher.finalize().into());
    if let Err(e) = write_cache(cache, &identity.cache_line(&sha256)) {
        tracing::warn!(path = %cache.display(), error = %e, "cannot cache the executable's digest; it will be hashed again at the next start");
    }
    Ok(ExeDigest {
        path: shown.to_path_buf(),
        sha256,
        size: identity.size,
        cached: false,
        elapsed: started.elapsed(),
    })
}

/// Replaces the cache atomically (a temporary file renamed over it), so a crash leaves the
/// old line or the new one.
fn write_cache(cache: &Path, line: &str) -> io::Result<()> {
    let mut temp = cache.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    let mut file = File::create(&temp)?;
    file.write_all(line.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temp, cache)
}

/// [`digest_file`] of the executable this process runs, with the cache in `datadir`.
pub fn digest_running_executable(datadir: &Path) -> io::Result<ExeDigest> {
    let shown = std::env::current_exe()?;
    // `/proc/self/exe` opens the file being run even when its path now names another file
    // (an upgrade renamed a new binary over it) or none (it was deleted).
    let proc_exe = Path::new("/proc/self/exe");
    let open = if proc_exe.exists() {
        proc_exe
    } else {
        shown.as_path()
    };
    digest_file(open, &shown, &datadir.join(CACHE_FILE))
}

/// A release artifact with the executable's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRef {
    /// The release id.
    pub id: Hash32,
    /// Its channel.
    pub channel: String,
    /// Its version.
    pub version: String,
    /// The artifact's name.
    pub artifact: String,
}

/// The outcome of the self-check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinaryStatus {
    /// `--verify-binary off`: nothing checked.
    Off,
    /// A release the node holds as verified lists the executable.
    Verified(ReleaseRef),
    /// No release the node holds as verified lists it.
    Unverified,
    /// The executable could not be hashed.
    Error(String),
}

impl BinaryStatus {
    /// Every status name, so each gets a metrics series.
    pub const NAMES: [&'static str; 4] = ["off", "verified", "unverified", "error"];

    /// The status's name, as `getinfo` and the metrics show it.
    pub fn name(&self) -> &'static str {
        match self {
            BinaryStatus::Off => "off",
            BinaryStatus::Verified(_) => "verified",
            BinaryStatus::Unverified => "unverified",
            BinaryStatus::Error(_) => "error",
        }
    }

    /// Whether the executable is verified.
    pub fn is_verified(&self) -> bool {
        matches!(self, BinaryStatus::Verified(_))
    }
}

/// The newest release (on the first channel that has one) that the node holds as verified
/// and that lists an artifact of `size` bytes with `sha256`: the rule of `commons-cli release
/// verify-binary`, so the two never disagree.
pub fn find_release(host: &dyn ReleaseHost, sha256: &Hash32, size: u64) -> Option<ReleaseRef> {
    host.held_releases().into_iter().find_map(|(id, bundle)| {
        let artifact = bundle
            .body
            .artifacts
            .iter()
            .find(|a| a.sha256 == *sha256 && a.size == size)?;
        host.releases()
            .is_verified(host, &bundle)
            .then(|| ReleaseRef {
                id,
                channel: bundle.body.channel.as_str().to_string(),
                version: bundle.body.release.to_string(),
                artifact: artifact.name.as_str().to_string(),
            })
    })
}

/// The self-check a node carries: the setting, the executable's digest (taken once), and
/// the status last logged.
#[derive(Debug)]
pub struct SelfCheck {
    mode: VerifyBinary,
    /// `None` when off; else the digest, or why there is none.
    exe: Option<Result<ExeDigest, String>>,
    logged: Mutex<Option<BinaryStatus>>,
}

impl Default for SelfCheck {
    fn default() -> Self {
        Self::off()
    }
}

impl SelfCheck {
    /// No check.
    pub fn off() -> Self {
        SelfCheck {
            mode: VerifyBinary::Off,
            exe: None,
            logged: Mutex::new(None),
        }
    }

    /// A check in `mode` (not off) of an executable hashed to `exe`, or that could not be.
    pub fn new(mode: VerifyBinary, exe: Result<ExeDigest, String>) -> Self {
        if mode == VerifyBinary::Off {
            return Self::off();
        }
        SelfCheck {
            mode,
            exe: Some(exe),
            logged: Mutex::new(None),
        }
    }

    /// The setting.
    pub fn mode(&self) -> VerifyBinary {
        self.mode
    }

    /// The executable's digest, once hashed.
    pub fn digest(&self) -> Option<&ExeDigest> {
        self.exe.as_ref().and_then(|e| e.as_ref().ok())
    }

    /// The status against the releases `host` holds now.
    pub fn status(&self, host: &dyn ReleaseHost) -> BinaryStatus {
        match &self.exe {
            None => BinaryStatus::Off,
            Some(Err(why)) => BinaryStatus::Error(why.clone()),
            Some(Ok(exe)) => find_release(host, &exe.sha256, exe.size)
                .map_or(BinaryStatus::Unverified, BinaryStatus::Verified),
        }
    }

    /// [`Self::status`], logged when it differs from the status last logged (the first call
    /// logs it too, unless off).
    pub fn refresh(&self, host: &dyn ReleaseHost) -> BinaryStatus {
        let status = self.status(host);
        let mut logged = self.logged.lock().expect("self-check lock poisoned");
        if logged.as_ref() != Some(&status) {
            self.log(&status, logged.is_some());
            *logged = Some(status.clone());
        }
        status
    }

    fn log(&self, status: &BinaryStatus, changed: bool) {
        let (path, sha256) = self.digest().map_or((String::new(), String::new()), |d| {
            (d.path.display().to_string(), d.sha256.to_hex())
        });
        let mode = self.mode.name();
        match status {
            BinaryStatus::Off => {}
            BinaryStatus::Verified(r) => tracing::info!(
                mode,
                path,
                sha256,
                release = %r.id,
                "binary verified: this commonsd is artifact {} of release {} {}",
                r.artifact,
                r.channel,
                r.version
            ),
            BinaryStatus::Unverified if changed && self.mode == VerifyBinary::Require => {
                tracing::error!(
                    mode,
                    path,
                    sha256,
                    "binary no longer verified: no release the node holds as verified lists this commonsd; the next start will be refused"
                )
            }
            BinaryStatus::Unverified => tracing::warn!(
                mode,
                path,
                sha256,
                "binary not verified: no release the node holds as verified lists this commonsd (expected for a binary built locally)"
            ),
            BinaryStatus::Error(why) => {
                tracing::warn!(mode, error = %why, "binary not checked: cannot hash the executable")
            }
        }
    }

    /// The check as `getinfo` reports it.
    pub fn info(&self, status: &BinaryStatus) -> BinaryInfo {
        let digest = self.digest();
        BinaryInfo {
            mode: self.mode.name().to_string(),
            status: status.name().to_string(),
            path: digest.map(|d| d.path.display().to_string()),
            sha256: digest.map(|d| d.sha256.to_hex()),
            size: digest.map(|d| d.size),
            release: match status {
                BinaryStatus::Verified(r) => Some(BinaryRelease {
                    id: r.id.to_hex(),
                    channel: r.channel.clone(),
                    version: r.version.clone(),
                    artifact: r.artifact.clone(),
                }),
                _ => None,
            },
            error: match status {
                BinaryStatus::Error(why) => Some(why.clone()),
                _ => None,
            },
        }
    }

    /// The one line `commonsd` exits with when `require` finds `status`; `None` when it may
    /// start.
    pub fn refusal(&self, status: &BinaryStatus, datadir: &Path) -> Option<String> {
        if self.mode != VerifyBinary::Require || status.is_verified() {
            return None;
        }
        Some(match (status, self.digest()) {
            (BinaryStatus::Error(why), _) => {
                format!("--verify-binary require: cannot hash the executable: {why}")
            }
            (_, Some(d)) => format!(
                "--verify-binary require: {} (SHA-256 {}, {} bytes) is not an artifact of any release verified in {}; \
                 publish or fetch its release first (start with --verify-binary warn until `commons-cli release list` shows it verified)",
                d.path.display(),
                d.sha256,
                d.size,
                datadir.display()
            ),
            (_, None) => "--verify-binary require: the executable was not hashed".to_string(),
        })
    }
}

/// Where the metrics collector reads the status from.
pub trait BinarySource: Send + Sync + 'static {
    /// The status now (logging a change, as every reader does).
    fn binary_status(&self) -> BinaryStatus;
}

/// Exports `commons_binary_verified` and `commons_binary_status{status}` at each scrape.
pub struct BinaryCollector<S> {
    source: Arc<S>,
}

impl<S> std::fmt::Debug for BinaryCollector<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BinaryCollector")
    }
}

impl<S: BinarySource> BinaryCollector<S> {
    /// A collector reading `source`.
    pub fn new(source: Arc<S>) -> Self {
        BinaryCollector { source }
    }
}

impl<S: BinarySource> Collector for BinaryCollector<S> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let status = self.source.binary_status();
        let verified = ConstGauge::new(i64::from(status.is_verified()));
        let metric = encoder.encode_descriptor(
            "commons_binary_verified",
            "1 when the running commonsd is an artifact of a release this node verified (--verify-binary)",
            None,
            verified.metric_type(),
        )?;
        verified.encode(metric)?;
        let states: Family<Vec<(&'static str, &'static str)>, Gauge> = Family::default();
        for name in BinaryStatus::NAMES {
            states
                .get_or_create(&vec![("status", name)])
                .set(i64::from(name == status.name()));
        }
        let metric = encoder.encode_descriptor(
            "commons_binary_status",
            "1 for the status of the executable's self-check (off, verified, unverified, error), 0 for the others",
            None,
            states.metric_type(),
        )?;
        states.encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256_of(bytes: &[u8]) -> Hash32 {
        Hash32(Sha256::digest(bytes).into())
    }

    #[test]
    fn a_cached_digest_is_used_only_for_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("commonsd");
        let cache = dir.path().join(CACHE_FILE);
        let bytes: Vec<u8> = (0..3 * READ_BUFFER + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(&exe, &bytes).unwrap();

        let first = digest_file(&exe, &exe, &cache).unwrap();
        assert!(!first.cached);
        assert_eq!(first.sha256, sha256_of(&bytes));
        assert_eq!(first.size, bytes.len() as u64);
        let again = digest_file(&exe, &exe, &cache).unwrap();
        assert!(again.cached, "the same file is not hashed twice");
        assert_eq!(again.sha256, first.sha256);

        // A cache that lies about the digest is believed only while the identity matches:
        // proof that the second answer came from the cache, not from reading.
        let text = std::fs::read_to_string(&cache).unwrap();
        let forged = text.replace(&first.sha256.to_hex(), &"00".repeat(32));
        std::fs::write(&cache, &forged).unwrap();
        assert_eq!(
            digest_file(&exe, &exe, &cache).unwrap().sha256,
            Hash32([0; 32])
        );

        // Replaced by another file of the same size (a new inode, as `install` and package
        // managers do): hashed again.
        let mut other = bytes.clone();
        other[5] ^= 1;
        let new = dir.path().join("commonsd.new");
        std::fs::write(&new, &other).unwrap();
        std::fs::rename(&new, &exe).unwrap();
        let replaced = digest_file(&exe, &exe, &cache).unwrap();
        assert!(!replaced.cached);
        assert_eq!(replaced.sha256, sha256_of(&other));

        // Written in place (same inode, new times): hashed again.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&exe, &bytes).unwrap();
        let rewritten = digest_file(&exe, &exe, &cache).unwrap();
        assert!(!rewritten.cached);
        assert_eq!(rewritten.sha256, sha256_of(&bytes));

        // A damaged cache is a miss, and is rewritten.
        std::fs::write(&cache, "nonsense\n").unwrap();
        assert!(!digest_file(&exe, &exe, &cache).unwrap().cached);
        assert!(digest_file(&exe, &exe, &cache).unwrap().cached);
    }

    #[test]
    fn an_unwritable_cache_only_costs_a_rehash() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("commonsd");
        std::fs::write(&exe, b"binary").unwrap();
        let cache = dir.path().join("missing-dir").join(CACHE_FILE);
        let d = digest_file(&exe, &exe, &cache).unwrap();
        assert_eq!(d.sha256, sha256_of(b"binary"));
        assert!(!digest_file(&exe, &exe, &cache).unwrap().cached);
        assert!(digest_file(&dir.path().join("absent"), &exe, &cache).is_err());
    }

    #[test]
    fn cache_lines_round_trip_and_refuse_other_formats() {
        let id = FileIdentity {
            dev: 2049,
            ino: 77,
            size: 5,
            mtime_ns: -1_500_000_000,
            ctime_ns: 1_700_000_000_123_456_789,
        };
        let sha = Hash32([7; 32]);
        let line = id.cache_line(&sha);
        assert_eq!(FileIdentity::parse_cache_line(&line), Some((id, sha)));
        assert_eq!(
            FileIdentity::parse_cache_line(&line.replace("v1", "v2")),
            None
        );
        assert_eq!(
            FileIdentity::parse_cache_line(&format!("{} extra", line.trim())),
            None
        );
        assert_eq!(FileIdentity::parse_cache_line(""), None);
    }

    #[test]
    fn this_test_binary_hashes_like_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = digest_running_executable(dir.path()).unwrap();
        let mut hasher = Sha256::new();
        io::copy(
            &mut File::open(std::env::current_exe().unwrap()).unwrap(),
            &mut hasher,
        )
        .unwrap();
        assert_eq!(d.sha256, Hash32(hasher.finalize().into()));
        assert!(dir.path().join(CACHE_FILE).is_file());
        assert!(digest_running_executable(dir.path()).unwrap().cached);
    }

    #[test]
    fn settings_parse_and_refusals_are_one_line() {
        assert_eq!(VerifyBinary::parse("require"), Some(VerifyBinary::Require));
        assert_eq!(VerifyBinary::parse("Require"), None);
        let exe = ExeDigest {
            path: "/usr/local/bin/commonsd".into(),
            sha256: Hash32([1; 32]),
            size: 9,
            cached: false,
            elapsed: Duration::ZERO,
        };
        let datadir = Path::new("/var/lib/commons");
        let require = SelfCheck::new(VerifyBinary::Require, Ok(exe.clone()));
        let line = require.refusal(&BinaryStatus::Unverified, datadir).unwrap();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("/usr/local/bin/commonsd") && line.contains(&"01".repeat(32)));
        let verified = BinaryStatus::Verified(ReleaseRef {
            id: Hash32([2; 32]),
            channel: "stable".into(),
            version: "1.0.0".into(),
            artifact: "commonsd".into(),
        });
        assert_eq!(require.refusal(&verified, datadir), None);
        let broken = SelfCheck::new(VerifyBinary::Require, Err("permission denied".into()));
        assert!(
            broken
                .refusal(&BinaryStatus::Error("permission denied".into()), datadir)
                .unwrap()
                .contains("permission denied")
        );
        let warn = SelfCheck::new(VerifyBinary::Warn, Ok(exe));
        assert_eq!(warn.refusal(&BinaryStatus::Unverified, datadir), None);
        let info = warn.info(&verified);
        assert_eq!(
            (info.status.as_str(), info.mode.as_str()),
            ("verified", "warn")
        );
        assert_eq!(info.release.unwrap().version, "1.0.0");
        let off = SelfCheck::new(VerifyBinary::Off, Err("ignored".into()));
        assert_eq!(off.info(&BinaryStatus::Off).sha256, None);
    }
}
