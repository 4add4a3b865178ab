//! Where a local `commonsd` keeps what a client needs to reach it, and the rules both
//! `commonsd` and `commons-cli` use to find it: the base data directory, the config file and
//! the environment, the network's data directory, the cookie and the RPC address file.
//!
//! One implementation for both sides, so `commons-cli` finds the node exactly where the
//! daemon put it: a config file the daemon accepts is one the client reads the same way.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The config file's name inside the base data directory.
pub const CONFIG_FILE: &str = "commonsd.toml";
/// The cookie's file name inside the network's data directory.
pub const COOKIE_FILE: &str = ".cookie";
/// The file, beside the cookie, in which a running daemon records the address its JSON-RPC
/// server listens on (`127.0.0.1:28732` and a newline), written once the port is bound and
/// removed on a clean shutdown.
pub const RPC_ADDRESS_FILE: &str = ".rpc-address";

/// The environment variables of the daemon that a client reads too.
pub mod env {
    /// The base data directory.
    pub const DATADIR: &str = "COMMONS_DATADIR";
    /// The config file, instead of `<datadir>/commonsd.toml`.
    pub const CONF: &str = "COMMONS_CONF";
    /// The network.
    pub const NETWORK: &str = "COMMONS_NETWORK";
    /// The JSON-RPC address.
    pub const RPC_BIND: &str = "COMMONS_RPC_BIND";
}

/// The network when neither a flag, the environment nor the config file names one.
pub const DEFAULT_NETWORK: &str = "mainnet";

/// A problem finding or reading the node's files, as one line for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocateError(pub String);

impl std::fmt::Display for LocateError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LocateError {}

/// The default base data directory, `~/.commons-signal`.
pub fn default_base_dir() -> Result<PathBuf, LocateError> {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".commons-signal")),
        _ => Err(LocateError("HOME is not set: pass --datadir DIR".into())),
    }
}

/// The config file: the daemon's settings by the names of its flags (without `datadir`,
/// which locates the file, and `conf`, which names it).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// The network: a built-in name, or a spec file's path relative to the config file.
    pub network: Option<String>,
    /// Peer-to-peer listen addresses.
    pub listen: Option<OneOrMany>,
    /// Bootstrap peers.
    pub bootstrap: Option<OneOrMany>,
    /// The JSON-RPC address.
    pub rpc_bind: Option<String>,
    /// The `/metrics` address.
    pub metrics_bind: Option<String>,
    /// Who may read the RPC cookie: `owner`, `group` or `all`.
    pub rpc_cookie_perms: Option<String>,
    /// Startup self-verification of the executable: `off`, `warn` or `require`.
    pub verify_binary: Option<String>,
    /// The most RPC connections open at once.
    pub rpc_max_connections: Option<u64>,
    /// Seconds an RPC client has to send each request's headers, and its body.
    pub rpc_timeout: Option<u64>,
    /// The largest RPC request body, in bytes.
    pub rpc_max_body_bytes: Option<u64>,
}

/// Who may read the files through which a client reaches the node (the RPC cookie and the
/// RPC address), as bitcoind's `-rpccookieperms`: an operator in the daemon's group can use
/// `commons-cli` without becoming the daemon's user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CookiePerms {
    /// Mode 0600: the daemon's user only.
    #[default]
    Owner,
    /// Mode 0640: the daemon's user and its group.
    Group,
    /// Mode 0644: every local user (any of them can then vote through this node's RPC).
    All,
}

impl CookiePerms {
    /// The file mode of the cookie and the RPC address file.
    pub fn file_mode(self) -> u32 {
        match self {
            CookiePerms::Owner => 0o600,
            CookiePerms::Group => 0o640,
            CookiePerms::All => 0o644,
        }
    }

    /// The mode of a data directory the daemon creates: whoever may read the cookie may
    /// also pass through the directory to it (but not list it).
    pub fn dir_mode(self) -> u32 {
        match self {
            CookiePerms::Owner => 0o700,
            CookiePerms::Group => 0o710,
            CookiePerms::All => 0o711,
        }
    }
}

impl std::str::FromStr for CookiePerms {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "owner" => Ok(CookiePerms::Owner),
            "group" => Ok(CookiePerms::Group),
            "all" => Ok(CookiePerms::All),
            other => Err(format!(
                "{other:?} is not one of owner, group, all (who may read the RPC cookie)"
            )),
        }
    }
}

impl std::fmt::Display for CookiePerms {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            CookiePerms::Owner => "owner",
            CookiePerms::Group => "group",
            CookiePerms::All => "all",
        })
    }
}

/// A config-file value that may be one string or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single value.
    One(String),
    /// A list of values.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Which config file applies: `conf` when given (by `--conf` or `COMMONS_CONF`), which must
/// then exist, else `<base_dir>/commonsd.toml`, which may be absent.
pub fn config_path(conf: Option<&Path>, base_dir: &Path) -> (PathBuf, bool) {
    match conf {
        Some(path) => (path.to_path_buf(), true),
        None => (base_dir.join(CONFIG_FILE), false),
    }
}

/// Reads the config file at `path`; a missing file is an empty config unless `required`.
/// Errors are one line naming the file (and the line, for a syntax error).
pub fn read_config(path: &Path, required: bool) -> Result<FileConfig, LocateError> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            // toml's messages span several lines (a source excerpt); the first names the
            // position and the last the problem, which together make one readable line.
            let msg = e
                .message()
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(": ");
            let at = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            LocateError(format!("{}: {msg}{at}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            Ok(FileConfig::default())
        }
        Err(e) => Err(LocateError(format!("{}: {e}", path.display()))),
    }
}

/// The network a config file at `config_path` names, as `--network` would take it: a spec
/// path relative to the file is made relative to the file's directory, not to wherever the
/// program happens to be started from; a built-in name (`is_builtin`) stays as it is.
pub fn network_from_file(
    value: &str,
    config_path: &Path,
    is_builtin: impl Fn(&str) -> bool,
) -> String {
    if is_builtin(value) || Path::new(value).is_absolute() {
        return value.to_string();
    }
    let dir = config_path.parent().unwrap_or(Path::new(""));
    dir.join(value).display().to_string()
}

/// Records `addr` in `<datadir>/.rpc-address` with mode 0600 (like the cookie): written to a
/// temporary file and renamed over the old one, so a reader sees the old address or the new
/// one, never half of one.
pub fn write_rpc_address(
    datadir: &Path,
    addr: SocketAddr,
    perms: CookiePerms,
) -> std::io::Result<PathBuf> {
    use std::io::Write;
    let path = datadir.join(RPC_ADDRESS_FILE);
    let temp = datadir.join(format!("{RPC_ADDRESS_FILE}.tmp"));
    match std::fs::remove_file(&temp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, perms.file_mode());
    let mut file = options.open(&temp)?;
    // Explicitly, because the mode at creation is reduced by the umask.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(
        perms.file_mode(),
    ))?;
    file.write_all(format!("{addr}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temp, &path)?;
    Ok(path)
}

/// The address recorded in `<datadir>/.rpc-address`; `None` when there is no such file (no
/// node runs there, or one older than the file). A file that does not hold an address is an
/// error naming it.
pub fn read_rpc_address(datadir: &Path) -> Result<Option<SocketAddr>, LocateError> {
    let path = datadir.join(RPC_ADDRESS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map(Some).map_err(|_| {
            LocateError(format!(
                "{}: not an IP:PORT address ({:?}); commonsd writes it at start",
                path.display(),
                text.trim()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LocateError(format!("{}: {e}", path.display()))),
    }
}

/// The address a client on the same machine connects to for a server bound to `bind`: the
/// loopback address of the same family in place of an unspecified one (`0.0.0.0`, `::`).
pub fn connect_address(bind: SocketAddr) -> SocketAddr {
    match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bind.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), bind.port())
        }
        _ => bind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_address_file_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_rpc_address(dir.path()).unwrap(), None);
        let addr: SocketAddr = "127.0.0.9:4567".parse().unwrap();
        let path = write_rpc_address(dir.path(), addr, CookiePerms::Owner).unwrap();
        assert_eq!(read_rpc_address(dir.path()).unwrap(), Some(addr));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // A second start replaces it, and leaves no temporary file behind.
        let again: SocketAddr = "[::1]:80".parse().unwrap();
        write_rpc_address(dir.path(), again, CookiePerms::Group).unwrap();
        assert_eq!(read_rpc_address(dir.path()).unwrap(), Some(again));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o640, "readable by the group when asked");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        std::fs::write(&path, "nonsense").unwrap();
        let e = read_rpc_address(dir.path()).unwrap_err();
        assert!(
            e.0.contains(RPC_ADDRESS_FILE) && e.0.contains("nonsense"),
            "{e}"
        );
    }

    #[test]
    fn unspecified_binds_are_reached_on_loopback() {
        let v4: SocketAddr = "0.0.0.0:5".parse().unwrap();
        assert_eq!(connect_address(v4), "127.0.0.1:5".parse().unwrap());
        let v6: SocketAddr = "[::]:5".parse().unwrap();
        assert_eq!(connect_address(v6), "[::1]:5".parse().unwrap());
        let own: SocketAddr = "127.0.0.7:5".parse().unwrap();
        assert_eq!(connect_address(own), own);
    }

    #[test]
    fn config_file_rules() {
        let dir = tempfile::tempdir().unwrap();
        let (path, required) = config_path(None, dir.path());
        assert_eq!(path, dir.path().join(CONFIG_FILE));
        assert!(!required);
        assert!(read_config(&path, false).unwrap().network.is_none());
        assert!(
            read_config(&path, true)
                .unwrap_err()
                .0
                .contains(CONFIG_FILE)
        );
        std::fs::write(&path, "network = \"lab.toml\"\n").unwrap();
        let file = read_config(&path, false).unwrap();
        let builtin = |n: &str| n == "regtest";
        let network = network_from_file(file.network.as_deref().unwrap(), &path, builtin);
        assert_eq!(network, dir.path().join("lab.toml").display().to_string());
        assert_eq!(network_from_file("regtest", &path, builtin), "regtest");
        std::fs::write(&path, "rpc-bnd = 1\n").unwrap();
        let e = read_config(&path, false).unwrap_err();
        assert!(e.0.contains("rpc-bnd") && !e.0.contains('\n'), "{e}");
    }
}
