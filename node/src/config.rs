//! Command line, environment and config file of `commonsd`.
//!
//! Every setting can come from a flag, a `COMMONS_*` environment variable or the config file
//! (`--conf FILE`, else `<datadir>/commonsd.toml`), in that order of precedence, and else
//! from a default that depends on the network (like bitcoind's ports and per-network data
//! directories). The file and its discovery are `commons_rpc::local`'s, which `commons-cli`
//! uses too, so the client finds the node by the same rules.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Parser;
use commons_signaling::spec_bundle::SpecBundle;
use commons_signaling::{Hash32, NetworkSpec};
use libp2p::Multiaddr;
use serde::Serialize;

use crate::rpc::RpcLimits;
use crate::selfcheck::VerifyBinary;

/// The name of the config file inside the base data directory.
pub const CONFIG_FILE: &str = commons_rpc::local::CONFIG_FILE;

/// Command-line flags. Each also reads a `COMMONS_*` environment variable; a flag given on
/// the command line wins over the variable.
#[derive(Debug, Clone, Default, Parser)]
#[command(
    name = "commonsd",
    version,
    about = "The commons-signal peer daemon: gossips, verifies and tallies signed signals on \
             time-locked governance proposals"
)]
pub struct Cli {
    /// Base data directory. Networks other than mainnet use a subdirectory named after the
    /// network. The config file `commonsd.toml` is read from here. [default: ~/.commons-signal]
    #[arg(long, env = "COMMONS_DATADIR", value_name = "DIR")]
    pub datadir: Option<PathBuf>,

    /// Config file to read instead of `<datadir>/commonsd.toml`; it must exist. A relative
    /// spec path in it is relative to the file.
    #[arg(long, env = "COMMONS_CONF", value_name = "FILE")]
    pub conf: Option<PathBuf>,

    /// Network: mainnet, testnet, regtest, or the path of a network spec file or of a spec
    /// bundle (every version of a spec with its maintainer signatures, which the node checks
    /// from its anchor). [default: mainnet]
    #[arg(long, env = "COMMONS_NETWORK", value_name = "NAME|PATH")]
    pub network: Option<String>,

    /// The spec id of the first spec of the network this node trusts (`commons-cli spec id`
    /// on it): a spec bundle must start from it, a spec file must be it. Without it a bundle
    /// whose first spec is named after a built-in network must start from that built-in spec.
    #[arg(long, env = "COMMONS_SPEC_ANCHOR", value_name = "SPEC_ID")]
    pub spec_anchor: Option<commons_signaling::Hash32>,

    /// Address to listen on for peers (repeatable; comma-separated in the environment).
    /// [default: /ip4/0.0.0.0/tcp/<port of the network>]
    #[arg(
        long,
        env = "COMMONS_LISTEN",
        value_name = "MULTIADDR",
        value_delimiter = ','
    )]
    pub listen: Option<Vec<Multiaddr>>,

    /// Peers to connect to at start (repeatable; comma-separated in the environment), in
    /// addition to those of the network spec.
    #[arg(long, env = "COMMONS_BOOTSTRAP", value_name = "MULTIADDR", value_delimiter = ',', num_args = 1..)]
    pub bootstrap: Option<Vec<Multiaddr>>,

    /// Address of the JSON-RPC server. It has cookie authentication but no TLS: keep it on
    /// loopback. [default: 127.0.0.1:<RPC port of the network>]
    #[arg(long, env = "COMMONS_RPC_BIND", value_name = "ADDR")]
    pub rpc_bind: Option<SocketAddr>,

    /// Address of the Prometheus `/metrics` endpoint.
    /// [default: 127.0.0.1:<metrics port of the network>]
    #[arg(long, env = "COMMONS_METRICS_BIND", value_name = "ADDR")]
    pub metrics_bind: Option<SocketAddr>,

    /// Who may read the RPC cookie and the RPC address file: owner (mode 0600), group
    /// (0640: operators in the daemon's group can run commons-cli) or all (0644).
    /// [default: owner]
    #[arg(long, env = "COMMONS_RPC_COOKIE_PERMS", value_name = "WHO", value_parser = parse_cookie_perms)]
    pub rpc_cookie_perms: Option<CookiePerms>,

    /// The most RPC connections open at once. At the limit a new connection closes the
    /// oldest one with no authorised request under way; only when every one is busy is it
    /// refused (HTTP 503). [default: 128]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub rpc_max_connections: Option<u64>,

    /// Seconds an RPC client has to send a request's headers (an idle connection is closed
    /// after it) and, again, its body. [default: 30]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub rpc_timeout: Option<u64>,

    /// The largest RPC request body in bytes; a larger one is answered with HTTP 413 and a
    /// JSON-RPC error. [default: 1048576]
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1024..=1_073_741_824))]
    pub rpc_max_body_bytes: Option<u64>,

    /// Also write the log to FILE (default `commonsd.log`; a relative path is inside the
    /// network's data directory), appending, and reopen it on SIGHUP so logrotate can move
    /// it. Without it the log goes to stderr only.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "commonsd.log")]
    pub log_file: Option<PathBuf>,

    /// Hash the running executable at start and check it against the verified releases the
    /// node holds: `off`, `warn` (report it in getinfo, /metrics and the log) or `require`
    /// (also refuse to start unless it is verified). [default: off]
    #[arg(long, env = "COMMONS_VERIFY_BINARY", value_name = "MODE")]
    pub verify_binary: Option<VerifyBinary>,

    /// Let `signal` sign before a first catch-up with a peer although the node's key is older
    /// than its database. Such a node (its data directory was lost or replaced, its key kept)
    /// otherwise waits for one catch-up, so that it never signs a second signal with a
    /// sequence number it used before (proven equivocation excludes the signer). Only for a
    /// node that is alone (a single-node regtest) or whose key never signed before.
    #[arg(long)]
    pub sign_without_catch_up: bool,

    /// Print the resolved configuration as JSON and exit, without touching the data
    /// directory beyond reading the config file.
    #[arg(long)]
    pub print_config: bool,

    /// Print the shell completion script of commonsd and exit, e.g. `commonsd
    /// --print-completions bash > /etc/bash_completion.d/commonsd`.
    #[arg(long, value_name = "SHELL", help_heading = "Packaging")]
    pub print_completions: Option<clap_complete::Shell>,

    /// Write the man page commonsd.1 into DIR and exit.
    #[arg(long, value_name = "DIR", help_heading = "Packaging")]
    pub write_man_page: Option<PathBuf>,
}

pub use commons_rpc::local::{CookiePerms, FileConfig, OneOrMany};

fn parse_cookie_perms(value: &str) -> Result<CookiePerms, String> {
    value.parse()
}

pub use commons_signaling::spec::DefaultPorts;

pub use commons_signaling::spec::{default_ports, network_dir};

/// The default base data directory, `~/.commons-signal`.
pub fn default_base_dir() -> Result<PathBuf, ConfigError> {
    commons_rpc::local::default_base_dir().map_err(|e| ConfigError(e.0))
}

/// A configuration problem, as one line for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The resolved configuration the daemon runs with.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// The base data directory (holds the config file).
    pub base_dir: PathBuf,
    /// This network's data directory (key, database, cookie).
    pub datadir: PathBuf,
    /// What `--network` said (name or path), for messages telling the user what to run.
    pub network_arg: String,
    /// The network's rules: its first spec (version 1).
    #[serde(skip)]
    pub spec: NetworkSpec,
    /// The later versions of the spec a bundle held, checked from the anchor; each comes
    /// into force when its rotation proposal activates.
    #[serde(skip)]
    pub successors: Vec<NetworkSpec>,
    /// Peer-to-peer listen addresses.
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peers: the operator's, then the spec's.
    pub bootstrap: Vec<Multiaddr>,
    /// JSON-RPC address.
    pub rpc_bind: SocketAddr,
    /// `/metrics` address.
    pub metrics_bind: SocketAddr,
    /// Who may read the RPC cookie.
    pub rpc_cookie_perms: CookiePerms,
    /// What the RPC server holds open for its clients.
    pub rpc_limits: RpcLimits,
    /// Startup self-verification of the executable.
    pub verify_binary: VerifyBinary,
    /// Sign before a first catch-up even when the key is older than the database.
    pub sign_without_catch_up: bool,
}

impl Config {
    /// Merges flags (and environment, which clap already folded into `cli`), the config file
    /// and defaults. `home_base` is the base directory used when neither flag nor environment
    /// names one.
    pub fn resolve(
        cli: &Cli,
        home_base: impl FnOnce() -> Result<PathBuf, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let base_dir = match &cli.datadir {
            Some(dir) => dir.clone(),
            None => home_base()?,
        };
        let (conf_path, conf_given) =
            commons_rpc::local::config_path(cli.conf.as_deref(), &base_dir);
        let file = commons_rpc::local::read_config(&conf_path, conf_given)
            .map_err(|e| ConfigError(e.0))?;
        let conf = conf_path.display();

        let network_arg = match (&cli.network, &file.network) {
            (Some(n), _) => n.clone(),
            (None, Some(n)) => commons_rpc::local::network_from_file(n, &conf_path, |n| {
                NetworkSpec::builtin(n).is_some()
            }),
            (None, None) => commons_rpc::local::DEFAULT_NETWORK.to_string(),
        };
        let (spec, successors) = load_network(&network_arg, cli.spec_anchor)?;
        let ports = default_ports(&spec.name);

        let listen = match (&cli.listen, file.listen) {
            (Some(v), _) => v.clone(),
            (None, Some(v)) => parse_addrs(v.into_vec(), &format!("{conf}: listen"))?,
            (None, None) => vec![
                format!("/ip4/0.0.0.0/tcp/{}", ports.p2p)
                    .parse()
                    .expect("static multiaddr parses"),
            ],
        };
        if listen.is_empty() {
            return Err(ConfigError(
                "--listen: at least one address is needed".into(),
            ));
        }
        let mut bootstrap = match (&cli.bootstrap, file.bootstrap) {
            (Some(v), _) => v.clone(),
            (None, Some(v)) => parse_addrs(v.into_vec(), &format!("{conf}: bootstrap"))?,
            (None, None) => Vec::new(),
        };
        for peer in &spec.bootstrap {
            let addr: Multiaddr = peer.parse().map_err(|e| {
                ConfigError(format!(
                    "network spec {}: bootstrap peer {peer:?}: {e}",
                    spec.name
                ))
            })?;
            if !bootstrap.contains(&addr) {
                bootstrap.push(addr);
            }
        }
        let loopback = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let rpc_bind = pick_socket(cli.rpc_bind, file.rpc_bind, &format!("{conf}: rpc-bind"))?
            .unwrap_or(loopback(ports.rpc));
        let metrics_bind = pick_socket(
            cli.metrics_bind,
            file.metrics_bind,
            &format!("{conf}: metrics-bind"),
        )?
        .unwrap_or(loopback(ports.metrics));
        let rpc_cookie_perms = match (cli.rpc_cookie_perms, &file.rpc_cookie_perms) {
            (Some(perms), _) => perms,
            (None, Some(v)) => v
                .parse()
                .map_err(|e| ConfigError(format!("{conf}: rpc-cookie-perms: {e}")))?,
            (None, None) => CookiePerms::default(),
        };
        let rpc_limits = rpc_limits(
            cli,
            [
                file.rpc_max_connections,
                file.rpc_timeout,
                file.rpc_max_body_bytes,
            ],
            &conf.to_string(),
        )?;
        let verify_binary = match (cli.verify_binary, &file.verify_binary) {
            (Some(mode), _) => mode,
            (None, Some(text)) => VerifyBinary::parse(text).ok_or_else(|| {
                ConfigError(format!(
                    "{conf}: verify-binary: {text:?}: expected off, warn or require"
                ))
            })?,
            (None, None) => VerifyBinary::Off,
        };
        let datadir = network_dir(&base_dir, &spec.name);
        Ok(Config {
            base_dir,
            datadir,
            network_arg,
            spec,
            successors,
            listen,
            bootstrap,
            rpc_bind,
            metrics_bind,
            rpc_cookie_perms,
            rpc_limits,
            verify_binary,
            sign_without_catch_up: cli.sign_without_catch_up,
        })
    }

    /// The command that queries this node with `commons-cli`: only what the client cannot
    /// find on its own. It reads the same config file and, from the data directory, the
    /// address the RPC server listens on, so `--rpc-url` is never needed; `--datadir`,
    /// `--conf` and `--network` only when the command line (`cli`, environment included)
    /// gave them.
    pub fn cli_hint(&self, cli: &Cli) -> String {
        let mut cmd = "commons-cli".to_string();
        if cli.datadir.is_some() {
            cmd.push_str(&format!(" --datadir {}", self.base_dir.display()));
        }
        if let Some(conf) = &cli.conf {
            cmd.push_str(&format!(" --conf {}", conf.display()));
        }
        if cli.network.is_some() {
            cmd.push_str(&format!(" --network {}", self.network_arg));
        }
        cmd.push_str(" getinfo");
        cmd
    }
}

/// The first spec of the network `arg` names (a built-in name, a spec file or a spec bundle)
/// and the later versions a bundle holds, each checked: a bundle's chain from the anchor
/// (`--spec-anchor`, else the built-in network its first spec is named after), a spec file
/// against `--spec-anchor` when given.
pub fn load_network(
    arg: &str,
    anchor: Option<Hash32>,
) -> Result<(NetworkSpec, Vec<NetworkSpec>), ConfigError> {
    let fail = |e: &dyn std::fmt::Display| ConfigError(format!("--network {arg}: {e}"));
    let check_anchor = |spec: &NetworkSpec| match anchor {
        Some(anchor) if anchor != spec.spec_id() => Err(fail(&format_args!(
            "the spec has id {}, not the --spec-anchor {anchor}",
            spec.spec_id()
        ))),
        _ => Ok(()),
    };
    let path = std::path::Path::new(arg);
    let bundle_text = match NetworkSpec::builtin(arg) {
        Some(_) => None,
        None if path.is_file() => {
            let text = std::fs::read_to_string(path).map_err(|e| fail(&e))?;
            SpecBundle::is_bundle_text(&text).then_some(text)
        }
        None => None,
    };
    let Some(text) = bundle_text else {
        let spec = NetworkSpec::resolve(arg).map_err(|e| fail(&e))?;
        if spec.version() > 1 {
            return Err(fail(&format_args!(
                "the spec is version {} of its network; give the spec bundle that holds every \
                 version from 1 (commons-cli spec bundle)",
                spec.version()
            )));
        }
        check_anchor(&spec)?;
        return Ok((spec, Vec::new()));
    };
    let bundle = SpecBundle::parse(&text, arg).map_err(|e| ConfigError(e.to_string()))?;
    let genesis = &bundle.versions[0].spec;
    let (anchor, why) = match anchor {
        Some(anchor) => (anchor, "--spec-anchor".to_string()),
        None => match NetworkSpec::builtin(&genesis.name) {
            Some(builtin) => (
                builtin.spec_id(),
                format!(
                    "the built-in {} network; give --spec-anchor to trust another",
                    builtin.name
                ),
            ),
            None => {
                return Err(fail(&format_args!(
                    "a spec bundle needs an anchor: --spec-anchor <the spec id of its version 1, \
                     from `commons-cli spec id` on the first spec>; version 1 here has id {}",
                    genesis.spec_id()
                )));
            }
        },
    };
    let mut specs = bundle.verify(&anchor, &why).map_err(|e| fail(&e))?;
    let genesis = specs.remove(0);
    Ok((genesis, specs))
}

fn parse_addrs(values: Vec<String>, what: &str) -> Result<Vec<Multiaddr>, ConfigError> {
    values
        .into_iter()
        .map(|v| {
            v.parse()
                .map_err(|e| ConfigError(format!("{what}: {v:?}: {e}")))
        })
        .collect()
}

/// The RPC limits: flag, then config file, then default; the file's values get the ranges
/// the flags have.
/// `file` holds the file's `rpc-max-connections`, `rpc-timeout` and `rpc-max-body-bytes`.
fn rpc_limits(cli: &Cli, file: [Option<u64>; 3], conf: &str) -> Result<RpcLimits, ConfigError> {
    let [file_connections, file_timeout, file_body] = file;
    let defaults = RpcLimits::default();
    let pick = |flag: Option<u64>,
                value: Option<u64>,
                key: &str,
                range: std::ops::RangeInclusive<u64>|
     -> Result<Option<u64>, ConfigError> {
        match (flag, value) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(v)) if range.contains(&v) => Ok(Some(v)),
            (None, Some(v)) => Err(ConfigError(format!(
                "{conf}: {key}: {v} is not in {}..={}",
                range.start(),
                range.end()
            ))),
            (None, None) => Ok(None),
        }
    };
    let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    Ok(RpcLimits {
        max_connections: pick(
            cli.rpc_max_connections,
            file_connections,
            "rpc-max-connections",
            1..=1_000_000,
        )?
        .map_or(defaults.max_connections, to_usize),
        timeout: pick(cli.rpc_timeout, file_timeout, "rpc-timeout", 1..=86_400)?
            .map_or(defaults.timeout, std::time::Duration::from_secs),
        max_body_bytes: pick(
            cli.rpc_max_body_bytes,
            file_body,
            "rpc-max-body-bytes",
            1024..=1_073_741_824,
        )?
        .map_or(defaults.max_body_bytes, to_usize),
    })
}

fn pick_socket(
    flag: Option<SocketAddr>,
    file: Option<String>,
    what: &str,
) -> Result<Option<SocketAddr>, ConfigError> {
    if flag.is_some() {
        return Ok(flag);
    }
    file.map(|v| {
        v.parse()
            .map_err(|e| ConfigError(format!("{what}: {v:?}: {e} (expected IP:PORT)")))
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("commonsd").chain(args.iter().copied())).unwrap()
    }

    fn no_home() -> Result<PathBuf, ConfigError> {
        Err(ConfigError("no home in tests".into()))
    }

    #[test]
    fn defaults_per_network() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let c = Config::resolve(&parse(&["--datadir", d]), no_home).unwrap();
        assert_eq!(c.spec.name, "mainnet");
        assert_eq!(c.datadir, dir.path());
        assert_eq!(c.rpc_bind, "127.0.0.1:8732".parse().unwrap());
        assert_eq!(c.listen, vec!["/ip4/0.0.0.0/tcp/8733".parse().unwrap()]);

        let cli = parse(&["--datadir", d, "--network", "regtest"]);
        let c = Config::resolve(&cli, no_home).unwrap();
        assert_eq!(c.datadir, dir.path().join("regtest"));
        assert_eq!(c.rpc_bind, "127.0.0.1:28732".parse().unwrap());
        assert_eq!(c.metrics_bind, "127.0.0.1:29733".parse().unwrap());
        assert_eq!(
            c.cli_hint(&cli),
            format!("commons-cli --datadir {d} --network regtest getinfo")
        );
    }

    #[test]
    fn rpc_limits_from_flags_file_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let c = Config::resolve(&parse(&["--datadir", d]), no_home).unwrap();
        assert_eq!(c.rpc_limits, RpcLimits::default());
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "rpc-max-connections = 10\nrpc-timeout = 5\nrpc-max-body-bytes = 4096\n",
        )
        .unwrap();
        let c = Config::resolve(&parse(&["--datadir", d]), no_home).unwrap();
        assert_eq!(
            c.rpc_limits,
            RpcLimits {
                max_connections: 10,
                timeout: std::time::Duration::from_secs(5),
                max_body_bytes: 4096,
            }
        );
        let cli = parse(&["--datadir", d, "--rpc-timeout", "7"]);
        let c = Config::resolve(&cli, no_home).unwrap();
        assert_eq!(c.rpc_limits.timeout, std::time::Duration::from_secs(7));
        assert_eq!(c.rpc_limits.max_connections, 10);
        // Out of range: the flag is refused by clap, the file's value with its key named.
        assert!(Cli::try_parse_from(["commonsd", "--rpc-max-connections", "0"]).is_err());
        std::fs::write(dir.path().join(CONFIG_FILE), "rpc-max-body-bytes = 10\n").unwrap();
        let e = Config::resolve(&parse(&["--datadir", d]), no_home).unwrap_err();
        assert!(
            e.0.contains("rpc-max-body-bytes: 10 is not in 1024..="),
            "{e}"
        );
    }

    #[test]
    fn flag_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "network = \"testnet\"\nrpc-bind = \"127.0.0.1:1111\"\nlisten = \"/ip4/127.0.0.1/tcp/2222\"\n\
             bootstrap = [\"/ip4/127.0.0.2/tcp/3333\"]\n",
        )
        .unwrap();
        let c = Config::resolve(&parse(&["--datadir", d]), no_home).unwrap();
        assert_eq!(c.spec.name, "testnet");
        assert_eq!(c.datadir, dir.path().join("testnet"));
        assert_eq!(c.rpc_bind, "127.0.0.1:1111".parse().unwrap());
        assert_eq!(c.listen, vec!["/ip4/127.0.0.1/tcp/2222".parse().unwrap()]);
        assert_eq!(
            c.bootstrap,
            vec!["/ip4/127.0.0.2/tcp/3333".parse().unwrap()]
        );
        // The default metrics port follows the network the file chose.
        assert_eq!(c.metrics_bind, "127.0.0.1:19733".parse().unwrap());

        let c = Config::resolve(
            &parse(&[
                "--datadir",
                d,
                "--network",
                "regtest",
                "--rpc-bind",
                "127.0.0.1:4444",
            ]),
            no_home,
        )
        .unwrap();
        assert_eq!(c.spec.name, "regtest");
        assert_eq!(c.rpc_bind, "127.0.0.1:4444".parse().unwrap());
        assert_eq!(c.listen, vec!["/ip4/127.0.0.1/tcp/2222".parse().unwrap()]);
    }

    #[test]
    fn bad_file_is_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "rpc-bnd = \"x\"\n").unwrap();
        let e = Config::resolve(&parse(&["--datadir", d]), no_home).unwrap_err();
        assert!(!e.0.contains('\n'), "{e}");
        assert!(e.0.contains("rpc-bnd"), "{e}");
        std::fs::write(dir.path().join(CONFIG_FILE), "rpc-bind = \"nonsense\"\n").unwrap();
        let e = Config::resolve(&parse(&["--datadir", d]), no_home).unwrap_err();
        assert!(e.0.contains("rpc-bind") && !e.0.contains('\n'), "{e}");
        std::fs::write(dir.path().join(CONFIG_FILE), "listen = [\"/nope\"]\n").unwrap();
        let e = Config::resolve(&parse(&["--datadir", d]), no_home).unwrap_err();
        assert!(e.0.contains("listen") && !e.0.contains('\n'), "{e}");
    }

    #[test]
    fn verify_binary_from_flag_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let c = Config::resolve(&parse(&["--datadir", d]), no_home).unwrap();
        assert_eq!(c.verify_binary, VerifyBinary::Off);
        std::fs::write(dir.path().join(CONFIG_FILE), "verify-binary = \"warn\"\n").unwrap();
        let c = Config::resolve(&parse(&["--datadir", d]), no_home).unwrap();
        assert_eq!(c.verify_binary, VerifyBinary::Warn);
        let cli = parse(&["--datadir", d, "--verify-binary", "require"]);
        assert_eq!(
            Config::resolve(&cli, no_home).unwrap().verify_binary,
            VerifyBinary::Require
        );
        std::fs::write(dir.path().join(CONFIG_FILE), "verify-binary = \"yes\"\n").unwrap();
        let e = Config::resolve(&parse(&["--datadir", d]), no_home).unwrap_err();
        assert!(
            e.0.contains("verify-binary") && e.0.contains("\"yes\"") && !e.0.contains('\n'),
            "{e}"
        );
    }

    #[test]
    fn unknown_network_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let e =
            Config::resolve(&parse(&["--datadir", d, "--network", "moon"]), no_home).unwrap_err();
        assert!(e.0.contains("unknown network"), "{e}");
    }

    #[test]
    fn spec_file_relative_to_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let mut spec = NetworkSpec::regtest();
        spec.name = "lab".into();
        std::fs::write(dir.path().join("lab.toml"), spec.to_toml()).unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "network = \"lab.toml\"\n").unwrap();
        let c = Config::resolve(&parse(&["--datadir", d]), no_home).unwrap();
        assert_eq!(c.spec.name, "lab");
        assert_eq!(c.datadir, dir.path().join("lab"));
        assert_eq!(c.rpc_bind.port(), 38732);
    }

    #[test]
    fn conf_names_a_file_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        let mut spec = NetworkSpec::regtest();
        spec.name = "lab".into();
        std::fs::write(etc.join("lab.toml"), spec.to_toml()).unwrap();
        let conf = etc.join("node.toml");
        std::fs::write(
            &conf,
            "network = \"lab.toml\"\nrpc-bind = \"127.0.0.1:7\"\n",
        )
        .unwrap();
        let base = dir.path().join("data");
        let (b, f) = (base.to_str().unwrap(), conf.to_str().unwrap());
        let cli = parse(&["--datadir", b, "--conf", f]);
        let c = Config::resolve(&cli, no_home).unwrap();
        // The spec path is relative to the file that names it.
        assert_eq!(c.spec.name, "lab");
        assert_eq!(c.datadir, base.join("lab"));
        assert_eq!(c.rpc_bind, "127.0.0.1:7".parse().unwrap());
        // The client reads the same file, so the hint names it and not the network.
        assert_eq!(
            c.cli_hint(&cli),
            format!("commons-cli --datadir {b} --conf {f} getinfo")
        );
        // A file named on purpose must exist.
        let missing = dir.path().join("nope.toml");
        let e = Config::resolve(
            &parse(&["--datadir", b, "--conf", missing.to_str().unwrap()]),
            no_home,
        )
        .unwrap_err();
        assert!(e.0.contains("nope.toml"), "{e}");
        // The default data directory and network need no options at all.
        let cli = parse(&[]);
        let c = Config::resolve(&cli, || Ok(base.clone())).unwrap();
        assert_eq!(c.cli_hint(&cli), "commons-cli getinfo");
    }

    #[test]
    fn spec_bundles_are_checked_from_their_anchor() {
        use commons_signaling::spec::regtest_maintainer_key;
        use commons_signaling::spec_bundle::SignedSpec;
        use commons_signaling::spec_signatures::sign_spec;
        let dir = tempfile::tempdir().unwrap();
        let signed = |spec: &NetworkSpec| SignedSpec {
            spec: spec.clone(),
            signatures: (0..5)
                .map(|i| sign_spec(spec, &regtest_maintainer_key(i)))
                .collect(),
        };
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        // The built-in regtest spec, signed: anchored by the binary itself.
        let regtest = NetworkSpec::regtest();
        let mut bundle = SpecBundle::new(signed(&regtest));
        let v2 = regtest.successor_draft();
        bundle.versions.push(signed(&v2));
        let path = write("regtest.toml", bundle.to_toml());
        let (genesis, successors) = load_network(&path, None).unwrap();
        assert_eq!(genesis, regtest);
        assert_eq!(successors, std::slice::from_ref(&v2));

        // A first spec named regtest that is not the built-in one.
        let mut other = NetworkSpec::regtest();
        other.epoch_secs = 3;
        let path = write("other.toml", SpecBundle::new(signed(&other)).to_toml());
        let e = load_network(&path, None).unwrap_err();
        assert!(e.0.contains("the built-in regtest network"), "{e}");
        assert!(load_network(&path, Some(other.spec_id())).is_ok());

        // Another name needs an anchor.
        other.name = "elsewhere".into();
        let path = write("elsewhere.toml", SpecBundle::new(signed(&other)).to_toml());
        let e = load_network(&path, None).unwrap_err();
        assert!(e.0.contains("needs an anchor: --spec-anchor"), "{e}");

        // A plain spec file: version 1 only, and the anchor when given.
        let path = write("v2.toml", v2.to_toml());
        let e = load_network(&path, None).unwrap_err();
        assert!(e.0.contains("give the spec bundle"), "{e}");
        let path = write("v1.toml", other.to_toml());
        let e = load_network(&path, Some(regtest.spec_id())).unwrap_err();
        assert!(e.0.contains("not the --spec-anchor"), "{e}");
        assert!(load_network(&path, Some(other.spec_id())).is_ok());
    }
}
