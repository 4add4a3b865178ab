//! The command line, declared with clap's derive API.
//!
//! Global options live on [`Cli`]; each command group is a subcommand enum. Online commands
//! (talking to `commonsd` over JSON-RPC) are further variants of [`Command`], with their
//! options (`--datadir`, `--conf`, `--rpc-url`, ...) on [`Cli`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use commons_signaling::{Hash32, ReleaseClass, ReleaseVersion};

/// Thirty days, the default lifetime of a release manifest.
pub const DEFAULT_RELEASE_EXPIRY_SECS: u64 = 30 * 86_400;

/// Command-line tool of commons-signal: keys, networks, proposals and release bundles.
#[derive(Debug, Parser)]
// `help` is the node's method list (as in bitcoin-cli); `--help` describes the commands.
#[command(
    name = "commons-cli",
    version,
    about,
    long_about = None,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Network whose rules apply: regtest, testnet, mainnet, or the path of a spec file (or of
    /// a directory holding spec.toml, as `network init` writes). Default: the `network` of
    /// the node's config file, else mainnet, as for commonsd.
    #[arg(long, global = true, value_name = "NAME|PATH", env = "COMMONS_NETWORK")]
    pub network: Option<String>,

    /// Base data directory of the node to talk to (its cookie and RPC address are in the
    /// network's subdirectory, as commonsd lays it out). Default: ~/.commons-signal.
    #[arg(long, global = true, value_name = "DIR", env = "COMMONS_DATADIR")]
    pub datadir: Option<PathBuf>,

    /// The node's config file, instead of DIR/commonsd.toml: its `network` and `rpc-bind`
    /// apply as they do to commonsd.
    #[arg(long, global = true, value_name = "FILE", env = "COMMONS_CONF")]
    pub conf: Option<PathBuf>,

    /// Address of the node's JSON-RPC server (HOST:PORT). Default: where the running node
    /// says it listens (the RPC address file beside its cookie), else `rpc-bind` from
    /// COMMONS_RPC_BIND or the config file, else 127.0.0.1 and the network's RPC port.
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub rpc_url: Option<String>,

    /// Cookie file to authenticate with, instead of the one in the data directory.
    #[arg(long, global = true, value_name = "FILE")]
    pub rpc_cookie: Option<PathBuf>,

    /// Wait up to SECS for the node to come up (no cookie yet, connection refused) instead
    /// of failing at once: for scripts that have just started commonsd.
    #[arg(long, global = true, value_name = "SECS")]
    pub rpc_wait: Option<u64>,

    /// Print one JSON document on standard output instead of text, for scripts (the node's
    /// answer as it came, for the online commands); errors still go to standard error.
    #[arg(long, global = true)]
    pub json: bool,

    /// Show no progress bars (they are drawn on standard error, and only on a terminal).
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate and inspect secret key files.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Create a local test network, every key on this machine.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Build a network spec from public keys, show it, sign it and verify its signatures.
    #[command(subcommand)]
    Spec(SpecCommand),
    /// Create, sign and verify time-locked proposals.
    #[command(subcommand)]
    Proposal(ProposalCommand),
    /// Create, sign, combine and verify release bundles.
    #[command(subcommand)]
    Release(ReleaseCommand),
    /// Print any message file (or detached signature) as JSON.
    Decode(DecodeArgs),
    /// Recompute a tally offline from a recount file (`proposal export`), verifying every
    /// signature with the network's rules (`--network`), and say whether it matches the
    /// node's numbers bit for bit or which message makes them differ; exit code 0 only when
    /// it matches.
    Recount {
        /// The recount file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Show the running node: network, identity, peers, epoch, its own uptime, the spec
    /// version in force and any key rotation.
    Getinfo,
    /// List the node's peers.
    Peers,
    /// List the proposals the node knows, with their states.
    Proposals,
    /// Show the tally of a proposal.
    Tally {
        /// The proposal id (64 hex characters).
        #[arg(value_name = "ID")]
        id: String,
    },
    /// List the equivocations the node holds evidence of: signers that signed two different
    /// signals with one sequence number, and so count no more on that proposal.
    #[command(visible_alias = "listequivocations")]
    Equivocations {
        /// Only this proposal (64 hex characters).
        #[arg(value_name = "PROPOSAL")]
        proposal: Option<String>,
    },
    /// Show the attested uptime of a node (default: the node itself).
    Uptime {
        /// The node's public key (64 hex characters).
        #[arg(value_name = "KEY")]
        key: Option<String>,
    },
    /// Cast the node's signal on a proposal: support, oppose, override or abstain.
    Signal {
        /// The proposal id (64 hex characters).
        #[arg(value_name = "ID")]
        id: String,
        /// What the node says.
        #[arg(value_name = "CHOICE", value_parser = ["support", "oppose", "override", "abstain"])]
        choice: String,
    },
    /// Every proposal at a glance: tier, state, lock, time left, the next state, and the
    /// override's shares against the tier's thresholds (like bitcoind's getdeploymentinfo).
    #[command(visible_alias = "getdeploymentinfo")]
    Deployments,
    /// Stop the node cleanly, as SIGTERM does.
    Stop,
    /// List the node's JSON-RPC methods with their parameters, or describe one. Needs no
    /// node: the list is this commons-cli's own.
    Help {
        /// The method to describe.
        #[arg(value_name = "METHOD")]
        method: Option<String>,
    },
    /// Call any JSON-RPC method and print its answer as the node gave it: parameters as one
    /// JSON object or array, or as NAME=VALUE words (a VALUE is a string where the method
    /// takes a string, else JSON when it parses as JSON).
    Call {
        /// The method (`commons-cli help` lists them).
        #[arg(value_name = "METHOD")]
        method: String,
        /// `{"id": "..."}`, `["..."]`, or `id=...` words.
        #[arg(value_name = "JSON|NAME=VALUE", allow_hyphen_values = true)]
        params: Vec<String>,
    },
    /// Print the shell completion script of commons-cli, e.g. `commons-cli completions bash
    /// > /etc/bash_completion.d/commons-cli`.
    Completions {
        /// The shell.
        #[arg(value_name = "SHELL", value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages of commons-cli into DIR: commons-cli.1 and one page per command
    /// (commons-cli-key-generate.1, ...).
    ManPages {
        /// Where to write them, e.g. /usr/local/share/man/man1.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// Where the passphrase of an encrypted key file comes from. Never from an argument's value:
/// every user of the machine can read those.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct PassphraseArgs {
    /// Read the passphrase from file descriptor N (its first line; `3< FILE` opens one)
    /// instead of COMMONS_PASSPHRASE or a prompt on the terminal.
    #[arg(long, value_name = "N")]
    pub passphrase_fd: Option<u32>,
}

/// `key ...`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate a secret key file (mode 0600) and print its x-only public key.
    Generate {
        /// Where to write the key; an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Encrypt the key with a passphrase (asked twice on the terminal), as a maintainer's
        /// or measurer's key should be; a node key stays plain so the node starts unattended.
        #[arg(long)]
        encrypt: bool,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Encrypt a plain secret key file with a passphrase, in place.
    Encrypt {
        /// The plain secret key file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Print a secret key as a paper backup (bech32m, in groups of four), or write it to a
    /// new file (mode 0600). The output is the secret itself: keep it like the key.
    Export {
        /// The secret key file, plain or encrypted.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Write the backup to this new file instead of standard output.
        #[arg(long, value_name = "OUT")]
        out: Option<PathBuf>,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Restore a secret key file from a paper backup read from standard input (asked for
    /// without echo on a terminal), and print its public key.
    Import {
        /// Where to write the key; an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Encrypt the restored key with a passphrase.
        #[arg(long)]
        encrypt: bool,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Sign a bare 32-byte digest (from `proposal digest`, `release digest` or `spec
    /// digest`) into a detached signature file, on a machine that never sees the message.
    SignDigest {
        /// The digest: 64 hex characters.
        #[arg(value_name = "DIGEST", value_parser = parse_hash)]
        digest: Hash32,
        /// The signer's secret key file, plain or encrypted.
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// The detached signature file to write; an existing file is never overwritten.
        #[arg(long, value_name = "OUT")]
        out: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Print the x-only public key of a secret key file (never the secret).
    Show {
        /// The secret key file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Write one of the well-known regtest maintainer keys (mode 0600) and print its public
    /// key. Everyone knows these keys (they derive from public seeds): they exist so that
    /// local regtest networks can sign proposals and releases, and sign nothing elsewhere.
    RegtestMaintainer {
        /// Which key: 0 to 4 sign proposals, 0 to 6 sign consensus releases.
        #[arg(value_name = "INDEX", value_parser = clap::value_parser!(u8).range(0..7))]
        index: u8,
        /// Where to write the key; an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Write one of the well-known regtest measurer keys (mode 0600) and print its public
    /// key. A regtest `commonsd` whose data directory holds it as `node.key` runs as that
    /// measurer. Everyone knows these keys: regtest only.
    RegtestMeasurer {
        /// Which measurer: 0 to 2.
        #[arg(value_name = "INDEX", value_parser = clap::value_parser!(u8).range(0..3))]
        index: u8,
        /// Where to write the key; an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// `network ...`
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// For local test networks only: write DIR/spec.toml, a regtest-style network with N
    /// fresh maintainer keys, and every key as DIR/maintainer-1.key ... (mode 0600, plain).
    /// All secrets on one machine: a real network is built with `spec` from keys that each
    /// maintainer generated alone (docs/KEYS.md).
    Init(NetworkInitArgs),
}

/// The built-in networks a new spec can start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BaseArg {
    /// Day-long epochs, 90 days of uptime, locks of days to months.
    Mainnet,
    /// Hour-long epochs, a day of uptime, locks of hours.
    Testnet,
    /// Two-second epochs and locks of seconds, on loopback.
    Regtest,
}

/// `spec ...`
#[derive(Debug, Subcommand)]
pub enum SpecCommand {
    /// Write a new spec with a built-in network's parameters and no keys at all.
    New {
        /// The network's name: 1 to 32 characters of a-z, 0-9 and -.
        #[arg(long)]
        name: String,
        /// Whose parameters (epochs, uptime, locks, thresholds) to start from.
        #[arg(long, value_enum, default_value = "mainnet")]
        base: BaseArg,
        /// Where to write the spec (TOML); an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Add a maintainer, who signs proposals of every tier, to a spec file, in place.
    AddMaintainer {
        /// The spec file.
        #[arg(value_name = "SPEC")]
        file: PathBuf,
        /// The maintainer's public key (64 hex characters, from `key generate`).
        #[arg(value_name = "KEY")]
        key: String,
    },
    /// Remove a maintainer from a spec file, in place.
    RemoveMaintainer {
        /// The spec file.
        #[arg(value_name = "SPEC")]
        file: PathBuf,
        /// The maintainer's public key.
        #[arg(value_name = "KEY")]
        key: String,
    },
    /// Add a release signer of some release classes to a spec file, in place.
    AddReleaseSigner {
        /// The spec file.
        #[arg(value_name = "SPEC")]
        file: PathBuf,
        /// The signer's public key.
        #[arg(value_name = "KEY")]
        key: String,
        /// The classes it signs.
        #[arg(long, value_enum, required = true, num_args = 1..)]
        class: Vec<ClassArg>,
    },
    /// Remove a release signer from a spec file (from every class unless --class says
    /// which), in place.
    RemoveReleaseSigner {
        /// The spec file.
        #[arg(value_name = "SPEC")]
        file: PathBuf,
        /// The signer's public key.
        #[arg(value_name = "KEY")]
        key: String,
        /// Only from these classes.
        #[arg(long, value_enum, num_args = 1..)]
        class: Vec<ClassArg>,
    },
    /// Add a measurer, with the addresses nodes dial it at, to a spec file, in place.
    AddMeasurer {
        /// The spec file.
        #[arg(value_name = "SPEC")]
        file: PathBuf,
        /// The measurer's public key (its node key's).
        #[arg(value_name = "KEY")]
        key: String,
        /// A multiaddr to dial it at, like /dns4/m1.example.org/tcp/8733; may be repeated.
        #[arg(long = "address", value_name = "MULTIADDR")]
        addresses: Vec<String>,
    },
    /// Remove a measurer from a spec file, in place.
    RemoveMeasurer {
        /// The spec file.
        #[arg(value_name = "SPEC")]
        file: PathBuf,
        /// The measurer's public key.
        #[arg(value_name = "KEY")]
        key: String,
    },
    /// Set how many signatures tiers or release classes need, or the measurer quorum, in
    /// place.
    #[command(group = clap::ArgGroup::new("what").required(true))]
    SetThreshold {
        /// The spec file.
        #[arg(value_name = "SPEC")]
        file: PathBuf,
        /// The new threshold.
        #[arg(value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        threshold: u32,
        /// The tiers whose maintainer signatures it counts.
        #[arg(long, value_name = "T", group = "what", num_args = 1..)]
        tier: Vec<u8>,
        /// The release classes whose signatures it counts.
        #[arg(long, value_enum, group = "what", num_args = 1..)]
        class: Vec<ClassArg>,
        /// The measurer quorum.
        #[arg(long, group = "what")]
        measurers: bool,
    },
    /// Show a spec: its id, keys, thresholds, and what it still lacks.
    Show {
        /// The spec file.
        #[arg(value_name = "SPEC")]
        file: PathBuf,
    },
    /// Print a spec's network id, which every signature on the network is bound to.
    Id {
        /// The spec file.
        #[arg(value_name = "SPEC")]
        file: PathBuf,
    },
    /// Print the digest a maintainer signs to vouch for a spec (for `key sign-digest`).
    Digest {
        /// The spec file.
        #[arg(value_name = "SPEC")]
        file: PathBuf,
    },
    /// Write the draft of a spec's next version (a key rotation): the same rules and keys,
    /// naming the spec it replaces; edit it with the other `spec` commands.
    Next {
        /// The spec in force: a spec file, or a spec bundle (its newest version).
        #[arg(value_name = "SPEC|BUNDLE")]
        file: PathBuf,
        /// Where to write the new version (TOML); an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Sign a spec as one of its maintainers, into a detached signature file.
    Sign {
        /// The spec file.
        #[arg(value_name = "SPEC")]
        file: PathBuf,
        /// For a version 2 or later: the version it replaces (a spec file, or the bundle
        /// whose newest version it is), whose maintainers sign it.
        #[arg(long, value_name = "SPEC|BUNDLE")]
        previous: Option<PathBuf>,
        /// The maintainer's secret key file, plain or encrypted.
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// The detached signature file to write; an existing file is never overwritten.
        #[arg(long, value_name = "OUT")]
        out: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Check that a spec's maintainers signed it, as many as its strictest tier needs; exit
    /// code 0 only when they did.
    Verify {
        /// The spec file.
        #[arg(value_name = "SPEC")]
        file: PathBuf,
        /// Detached signature files from `spec sign` or `key sign-digest`.
        #[arg(value_name = "SIG", required = true)]
        signatures: Vec<PathBuf>,
        /// For a version 2 or later: the version it replaces, whose maintainers sign it.
        #[arg(long, value_name = "SPEC|BUNDLE")]
        previous: Option<PathBuf>,
    },
    /// Write a spec bundle, the file `commonsd --network` checks from its anchor: a first
    /// spec with its signatures, or (`--onto`) an existing bundle with one more version.
    Bundle {
        /// The spec to add: version 1 for a new bundle, the next version with `--onto`.
        #[arg(value_name = "SPEC")]
        file: PathBuf,
        /// Detached signatures over it, by the threshold of the version before it (of its
        /// own maintainers for version 1).
        #[arg(value_name = "SIG", required = true)]
        signatures: Vec<PathBuf>,
        /// The bundle holding every earlier version.
        #[arg(long, value_name = "BUNDLE")]
        onto: Option<PathBuf>,
        /// The bundle to write; an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Check a spec bundle's whole chain, as a node does at start; exit code 0 only when
    /// every version is signed by the threshold of the one before it.
    VerifyBundle {
        /// The bundle file.
        #[arg(value_name = "BUNDLE")]
        file: PathBuf,
        /// The spec id version 1 must have (what the node's `--spec-anchor` says). Without
        /// it the chain is checked from whatever version 1 the bundle holds.
        #[arg(long, value_name = "SPEC_ID")]
        anchor: Option<commons_signaling::Hash32>,
    },
}

/// Arguments of `network init`.
#[derive(Debug, Args)]
pub struct NetworkInitArgs {
    /// Directory to create; it must not exist or be empty.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// How many maintainers (and maintainer keys) the network has.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=16))]
    pub maintainers: u32,
    /// The network's name: 1 to 32 characters of a-z, 0-9 and -.
    #[arg(long, default_value = "local")]
    pub name: String,
    /// How many keys sign releases [default: N]. The maintainer keys come first; when M is
    /// larger than N, the others are written as DIR/release-signer-K.key.
    #[arg(long, value_name = "M", value_parser = clap::value_parser!(u32).range(1..=16))]
    pub release_signers: Option<u32>,
}

/// `proposal ...`
#[derive(Debug, Subcommand)]
pub enum ProposalCommand {
    /// Write a new, unsigned proposal.
    Create(ProposalCreateArgs),
    /// Add a maintainer signature to a proposal file, in place.
    Sign {
        /// The proposal file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The maintainer's secret key file, plain or encrypted.
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Print the digest maintainers sign for a proposal (its id on the network), for
    /// `key sign-digest` on a machine that never sees the proposal.
    Digest {
        /// The proposal file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Add detached signatures (from `key sign-digest`) to a proposal file, in place; each
    /// is checked first.
    Attach {
        /// The proposal file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Detached signature files.
        #[arg(value_name = "SIG", required = true)]
        signatures: Vec<PathBuf>,
    },
    /// Check a proposal against the network's rules; exit code 0 only when it is valid.
    Verify {
        /// The proposal file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Write every message behind the running node's tally of a proposal (the proposal, its
    /// signals, the equivocation evidence, the presences and attestations that make the
    /// population) and the tally itself into one recount file, for `commons-cli recount`.
    Export {
        /// The proposal id (64 hex characters).
        #[arg(value_name = "ID")]
        id: String,
        /// Where to write the recount file; an existing file is never overwritten.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Hand a signed proposal to the running node, which checks it, stores it and gossips it.
    Submit {
        /// The proposal file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// Arguments of `proposal create`.
#[derive(Debug, Args)]
pub struct ProposalCreateArgs {
    /// Governance tier (1 routine, 2 feature, 3 consensus-adjacent, 4 emergency, 5 governance
    /// on the built-in networks).
    #[arg(long, value_name = "T")]
    pub tier: u8,
    /// One-line title, at most 200 bytes.
    #[arg(long)]
    pub title: String,
    /// What the change is: a repository and commit, or a pull request; at most 400 bytes.
    #[arg(long, value_name = "R")]
    pub reference: String,
    /// When the lock starts: Unix seconds, `now`, or `+SECS` from now.
    #[arg(long, default_value = "now", value_name = "UNIX|now|+SECS", value_parser = parse_lock_start)]
    pub lock_start: TimeArg,
    /// When the lock ends: Unix seconds, or `+SECS` after the lock start [default: lock start
    /// plus the tier's shortest lock].
    #[arg(long, value_name = "UNIX|+SECS", value_parser = parse_lock_end)]
    pub lock_end: Option<TimeArg>,
    /// Where to write the proposal; an existing file is never overwritten.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// A point in time given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeArg {
    /// The current time.
    Now,
    /// Absolute Unix seconds.
    At(u64),
    /// Seconds after a reference time (now for a lock start, the lock start for its end).
    After(u64),
}

fn parse_time(s: &str, allow_now: bool) -> Result<TimeArg, String> {
    let expected = if allow_now {
        "expected Unix seconds, `now` or `+SECS`"
    } else {
        "expected Unix seconds or `+SECS`"
    };
    if s == "now" && allow_now {
        return Ok(TimeArg::Now);
    }
    let (relative, digits) = match s.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(expected.to_string());
    }
    let value: u64 = digits.parse().map_err(|_| format!("{s} is too large"))?;
    Ok(if relative {
        TimeArg::After(value)
    } else {
        TimeArg::At(value)
    })
}

fn parse_lock_start(s: &str) -> Result<TimeArg, String> {
    parse_time(s, true)
}

fn parse_lock_end(s: &str) -> Result<TimeArg, String> {
    parse_time(s, false)
}

/// Parses 64 hex characters.
fn parse_hash(s: &str) -> Result<Hash32, String> {
    s.parse()
        .map_err(|_| "expected 64 hex characters (a SHA-256 hash)".to_string())
}

fn parse_version(s: &str) -> Result<ReleaseVersion, String> {
    s.parse()
}

/// The release classes, as command-line values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClassArg {
    /// Consensus binaries.
    Consensus,
    /// Protocol software.
    Protocol,
    /// Applications.
    Application,
}

impl From<ClassArg> for ReleaseClass {
    fn from(class: ClassArg) -> Self {
        match class {
            ClassArg::Consensus => ReleaseClass::Consensus,
            ClassArg::Protocol => ReleaseClass::Protocol,
            ClassArg::Application => ReleaseClass::Application,
        }
    }
}

/// `release ...`
#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Write a new, unsigned release bundle, hashing each artifact.
    Create(ReleaseCreateArgs),
    /// Sign a release bundle: in place, or into a detached signature file.
    Sign {
        /// The release bundle file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The signer's secret key file, plain or encrypted.
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// Write only the signature, to this new file, and leave FILE unchanged.
        #[arg(long, value_name = "OUT")]
        detached: Option<PathBuf>,
        #[command(flatten)]
        passphrase: PassphraseArgs,
    },
    /// Print the digest release signers sign for a bundle (its id on the network), for
    /// `key sign-digest` on a machine that never sees the bundle; `release combine` adds
    /// the signatures.
    Digest {
        /// The release bundle file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Also write, to this new file, the bytes whose SHA-256 is the release id: stamp
        /// it with `ots stamp OUT`, and the proof it makes is the release's timestamp.
        #[arg(long, value_name = "OUT")]
        stamp_file: Option<PathBuf>,
    },
    /// Add detached signatures (from `release sign --detached` or `key sign-digest`) to a
    /// release bundle, in place.
    Combine {
        /// The release bundle file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Detached signature files.
        #[arg(value_name = "SIG", required = true)]
        signatures: Vec<PathBuf>,
    },
    /// Check a release bundle (and optionally its artifacts); exit code 0 only when all pass.
    Verify {
        /// The release bundle file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Directory holding the artifacts, each checked for size and SHA-256.
        #[arg(long, value_name = "DIR")]
        artifacts: Option<PathBuf>,
        /// The newest version already known on the channel; the bundle must be newer.
        #[arg(long, value_name = "VERSION", value_parser = parse_version)]
        newest: Option<ReleaseVersion>,
        #[command(flatten)]
        timestamp: TimestampArgs,
    },
    /// Hand a signed bundle and its artifacts to the running node, which verifies and stores
    /// them, then gossips the bundle.
    Publish {
        /// The release bundle file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Directory holding the artifacts. The node reads them itself, so it must be a
        /// directory on the node's machine that the node's user can read.
        #[arg(long, value_name = "DIR")]
        artifacts: PathBuf,
    },
    /// Tell whether a local file is, byte for byte, an artifact of a release the running node
    /// holds as verified; exit code 0 only when it is.
    VerifyBinary {
        /// The file to check, such as the commonsd binary about to be run.
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// List the releases the running node knows, newest version first in each channel.
    List,
    /// Show one release the running node knows, with the state of each artifact: by its id,
    /// or by its channel and version (`release show stable 1.4.0`).
    Show {
        /// The release id (64 hex characters, as `release list` shows it), or the release's
        /// channel when VERSION follows.
        #[arg(value_name = "ID|CHANNEL")]
        release: String,
        /// The release's version, to name it by channel and version.
        #[arg(value_name = "VERSION", value_parser = parse_version)]
        version: Option<ReleaseVersion>,
    },
}

/// The OpenTimestamps proof of a release, and where the headers of the blocks it names come
/// from.
#[derive(Debug, Args)]
pub struct TimestampArgs {
    /// The OpenTimestamps proof of the release id (default: FILE.ots, when it exists).
    #[arg(long, value_name = "PROOF")]
    pub ots: Option<PathBuf>,
    /// A Bitcoin block header (80 bytes, or hex as `bitcoin-cli getblockheader HASH false`
    /// prints it) to check the proof against; repeat for a proof naming several blocks.
    #[arg(long, value_name = "FILE", conflicts_with = "bitcoin_rpc")]
    pub block_header: Vec<PathBuf>,
    /// A bitcoind JSON-RPC URL (http://127.0.0.1:8332/) to ask for the header at each
    /// height the proof names.
    #[arg(long, value_name = "URL")]
    pub bitcoin_rpc: Option<String>,
    /// bitcoind's cookie file (`user:password`, such as ~/.bitcoin/.cookie) for --bitcoin-rpc.
    #[arg(long, value_name = "FILE", requires = "bitcoin_rpc")]
    pub bitcoin_rpc_cookie: Option<PathBuf>,
}

/// Arguments of `release create`.
#[derive(Debug, Args)]
pub struct ReleaseCreateArgs {
    /// Release channel ("stable", "beta", ...); versions increase per channel.
    #[arg(long, value_name = "C")]
    pub channel: String,
    /// Release version: one to four dot-separated numbers, like 1.2.3.
    #[arg(long, value_name = "V", value_parser = parse_version)]
    pub version: ReleaseVersion,
    /// Kind of software, which sets the signature threshold.
    #[arg(long, value_enum)]
    pub class: ClassArg,
    /// Files of the release; each is listed under its file name.
    #[arg(long = "artifact", value_name = "PATH", required = true, num_args = 1..)]
    pub artifacts: Vec<PathBuf>,
    /// The commit the release was built from.
    #[arg(long, value_name = "X")]
    pub source_commit: String,
    /// SHA-256 of the build description.
    #[arg(long, value_name = "H", value_parser = parse_hash)]
    pub build_hash: Option<Hash32>,
    /// SHA-256 of the network spec the release was built for.
    #[arg(long, value_name = "H", value_parser = parse_hash)]
    pub spec_hash: Option<Hash32>,
    /// SHA-256 of the test results.
    #[arg(long, value_name = "H", value_parser = parse_hash)]
    pub test_results_hash: Option<Hash32>,
    /// Seconds until the manifest expires and is refused.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_RELEASE_EXPIRY_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub expires_in: u64,
    /// Where to write the bundle; an existing file is never overwritten.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Arguments of `decode`.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// A message file of any kind, or a detached signature.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every command that honours `--json`, as the words that reach it. Online commands print
    /// the node's answer; `call` prints it as JSON even when it is a string.
    const PRINTS_JSON: &[&str] = &[
        "key generate",
        "key encrypt",
        "key export",
        "key import",
        "key sign-digest",
        "key show",
        "key regtest-maintainer",
        "key regtest-measurer",
        "network init",
        "spec new",
        "spec add-maintainer",
        "spec remove-maintainer",
        "spec add-release-signer",
        "spec remove-release-signer",
        "spec add-measurer",
        "spec remove-measurer",
        "spec set-threshold",
        "spec show",
        "spec id",
        "spec digest",
        "spec next",
        "spec sign",
        "spec verify",
        "spec bundle",
        "spec verify-bundle",
        "proposal create",
        "proposal sign",
        "proposal digest",
        "proposal attach",
        "proposal verify",
        "proposal submit",
        "proposal export",
        "recount",
        "release create",
        "release sign",
        "release digest",
        "release combine",
        "release verify",
        "release publish",
        "release verify-binary",
        "release list",
        "release show",
        "getinfo",
        "peers",
        "proposals",
        "tally",
        "equivocations",
        "uptime",
        "signal",
        "deployments",
        "stop",
        "help",
        "call",
        "man-pages",
    ];

    /// Commands whose output is the same with and without `--json`, each for its reason.
    const NO_JSON_FORM: &[&str] = &[
        // A shell script for the shell to source: there is no report to put in JSON.
        "completions",
        // Its output is a JSON document already, with or without `--json`.
        "decode",
    ];

    /// Every leaf of the command tree, as the words that reach it (`key generate`).
    fn leaves(command: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        for sub in command.get_subcommands() {
            let name = format!("{prefix}{}", sub.get_name());
            if sub.has_subcommands() {
                leaves(sub, &format!("{name} "), out);
            } else {
                out.push(name);
            }
        }
    }

    /// A new command must be added to [`PRINTS_JSON`], with its JSON form in docs/CLI.md, or
    /// to [`NO_JSON_FORM`] with the reason; and neither list may name a command that is gone.
    #[test]
    fn every_command_has_a_json_form_or_a_reason() {
        let mut all = Vec::new();
        leaves(&Cli::command(), "", &mut all);
        for name in &all {
            let listed = PRINTS_JSON.contains(&name.as_str()) as u8
                + NO_JSON_FORM.contains(&name.as_str()) as u8;
            assert_eq!(
                listed, 1,
                "`commons-cli {name}` must be in exactly one of PRINTS_JSON (give it a --json \
                 form, documented in docs/CLI.md, and a test in cli/tests/json.rs) and \
                 NO_JSON_FORM (say why it has none)"
            );
        }
        for name in PRINTS_JSON.iter().chain(NO_JSON_FORM) {
            assert!(
                all.iter().any(|c| c == name),
                "`{name}` is listed but is no command"
            );
        }
    }

    /// The section "Output for scripts" of docs/CLI.md names every command of [`PRINTS_JSON`]
    /// (in backquotes, alone or followed by its arguments), so none is left undocumented.
    #[test]
    fn every_json_form_is_documented() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/CLI.md");
        let doc = std::fs::read_to_string(&path).expect("docs/CLI.md");
        let start = doc
            .find("## Output for scripts")
            .expect("docs/CLI.md has a section \"Output for scripts\"");
        let section = &doc[start..];
        let section = &section[..section[2..].find("\n## ").map_or(section.len(), |i| i + 2)];
        for name in PRINTS_JSON.iter().chain(NO_JSON_FORM) {
            assert!(
                section.contains(&format!("`{name}`")) || section.contains(&format!("`{name} ")),
                "docs/CLI.md, \"Output for scripts\", does not mention `{name}`"
            );
        }
    }

    #[test]
    fn lock_times() {
        assert_eq!(parse_lock_start("now"), Ok(TimeArg::Now));
        assert_eq!(parse_lock_start("+60"), Ok(TimeArg::After(60)));
        assert_eq!(
            parse_lock_start("1700000000"),
            Ok(TimeArg::At(1_700_000_000))
        );
        assert!(parse_lock_end("now").is_err());
        assert!(parse_lock_end("+").is_err());
        assert!(parse_lock_end("-5").is_err());
        assert!(parse_lock_end("99999999999999999999999").is_err());
    }
}
