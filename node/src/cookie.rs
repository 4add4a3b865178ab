//! Cookie authentication for the JSON-RPC server, as bitcoind does it.
//!
//! At each start the daemon writes `<datadir>/.cookie` holding `__cookie__:<64 hex>` with mode
//! 0600; a client that can read the file (the same user) sends it as HTTP Basic credentials.
//! The secret changes at every start, so a leaked cookie is useless after a restart, and the
//! file is removed on a clean shutdown.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
pub use commons_rpc::local::CookiePerms;

/// The file name of the cookie inside the network's data directory.
pub const COOKIE_FILE: &str = commons_rpc::local::COOKIE_FILE;
/// The user name part of the cookie.
pub const COOKIE_USER: &str = "__cookie__";

/// The credentials of this run and the file that publishes them.
#[derive(Debug)]
pub struct Cookie {
    path: PathBuf,
    /// `__cookie__:<hex>`, exactly what the file holds.
    credentials: String,
}

impl Cookie {
    /// Generates a fresh secret and writes it to `<datadir>/.cookie` with the mode `perms`
    /// names (0600 for the owner only), replacing a cookie left behind by a run that did
    /// not shut down cleanly.
    pub fn create(datadir: &Path, perms: CookiePerms) -> std::io::Result<Self> {
        let mut secret = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
        let credentials = format!("{COOKIE_USER}:{}", hex::encode(secret));
        let path = datadir.join(COOKIE_FILE);
        // Remove rather than truncate: an old file may have looser permissions, and
        // create_new then guarantees the mode below applies to the file holding the secret.
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path)?;
        // Widened only after creation and explicitly: the mode given at creation is reduced
        // by the umask, which would silently undo `group` under systemd's UMask=0027.
        #[cfg(unix)]
        if perms != CookiePerms::Owner {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(perms.file_mode()))?;
        }
        file.write_all(credentials.as_bytes())?;
        file.sync_all()?;
        Ok(Cookie { path, credentials })
    }

    /// Credentials not backed by a file, for tests and embedding.
    pub fn in_memory(secret_hex: &str) -> Self {
        Cookie {
            path: PathBuf::new(),
            credentials: format!("{COOKIE_USER}:{secret_hex}"),
        }
    }

    /// Where the cookie was written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `user:password`, as the file holds it.
    pub fn credentials(&self) -> &str {
        &self.credentials
    }

    /// The value of an `Authorization` header carrying these credentials.
    pub fn authorization_header(&self) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(&self.credentials)
        )
    }

    /// Whether an `Authorization` header value carries these credentials.
    pub fn check(&self, header: Option<&[u8]>) -> bool {
        let Some(header) = header else { return false };
        let Some(encoded) = header.strip_prefix(b"Basic ") else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim_ascii())
        else {
            return false;
        };
        constant_time_eq(&decoded, self.credentials.as_bytes())
    }

    /// Deletes the cookie file (on clean shutdown); a missing file is fine.
    pub fn remove(&self) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        if let Err(e) = fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove the RPC cookie");
        }
    }
}

/// Compares without an early exit, so response timing does not reveal how many leading
/// bytes of a guess were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_has_mode_0600_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let cookie = Cookie::create(dir.path(), CookiePerms::Owner).unwrap();
        let text = fs::read_to_string(dir.path().join(COOKIE_FILE)).unwrap();
        assert_eq!(text, cookie.credentials());
        assert!(text.starts_with("__cookie__:") && text.len() == 11 + 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(cookie.path()).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(cookie.check(Some(cookie.authorization_header().as_bytes())));
        assert!(!cookie.check(None));
        assert!(!cookie.check(Some(b"Basic X19jb29raWVfXzp3cm9uZw==")));
        // A second start replaces the secret.
        let again = Cookie::create(dir.path(), CookiePerms::Group).unwrap();
        assert_ne!(again.credentials(), cookie.credentials());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(again.path()).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o640, "readable by the group when asked");
        }
        again.remove();
        assert!(!dir.path().join(COOKIE_FILE).exists());
    }
}
