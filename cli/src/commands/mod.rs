//! The commands, one module per command group, and what they share: the [`Context`]
//! (network, clock, standard output) and loading of message files.
//!
//! Every command in this module works offline on files. Online commands belong in modules
//! of their own beside these, dispatched from [`run`]. The [`Context`] finds the network and
//! the node by the daemon's own rules (`commons_rpc::local`): `--network`, else the config
//! file's, else mainnet.

mod decode;
mod key;
mod network;
mod online;
mod packaging;
mod proposal;
mod recount;
mod release;
mod spec;

use std::cell::OnceCell;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::anyhow;
use commons_aggregator::rules::{SignatureFate, ThresholdReport};
use commons_signaling::messages::MultiSignedBody;
use commons_signaling::{
    AnyMessage, BoundedString, Hash32, MaintainerSignature, MessageKind, MultiSigned, NetworkSpec,
    ProposalBody, PublicKey, ReleaseManifest, wire,
};

use crate::cli::{Cli, Command, KeyCommand, NetworkCommand, ProposalCommand, ReleaseCommand};
use crate::error::{CliError, Result, spec_error};

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result {
    let ctx = Context::new(Locate {
        network: cli.network,
        datadir: cli.datadir,
        conf: cli.conf,
    })
    .with_output(cli.json, cli.quiet);
    let online = || {
        online::Online::new(
            &ctx,
            cli.rpc_url.as_deref(),
            cli.rpc_cookie.as_deref(),
            cli.rpc_wait.map(std::time::Duration::from_secs),
            cli.json,
        )
    };
    match cli.command {
        Command::Completions { shell } => packaging::completions(shell),
        Command::ManPages { dir } => packaging::man_pages(&ctx, &dir),
        Command::Help { method } => online::help(&ctx, method.as_deref()),
        Command::Call { method, params } => online()?.call_any(&ctx, &method, &params),
        Command::Stop => online()?.stop(&ctx),
        Command::Deployments => online()?.deployments(&ctx),
        Command::Getinfo => online()?.getinfo(&ctx),
        Command::Peers => online()?.peers(&ctx),
        Command::Proposals => online()?.proposals(&ctx),
        Command::Tally { id } => online()?.tally(&ctx, &id),
        Command::Equivocations { proposal } => online()?.equivocations(&ctx, proposal.as_deref()),
        Command::Uptime { key } => online()?.uptime(&ctx, key.as_deref()),
        Command::Signal { id, choice } => online()?.signal(&ctx, &id, &choice),
        Command::Proposal(ProposalCommand::Export { id, out }) => {
            online()?.export_proposal(&ctx, &id, &out)
        }
        Command::Recount { file } => recount::recount(&ctx, &file),
        Command::Proposal(ProposalCommand::Submit { file }) => {
            online()?.submit_proposal(&ctx, &file)
        }
        Command::Release(ReleaseCommand::Publish { file, artifacts }) => {
            online()?.publish_release(&ctx, &file, &artifacts)
        }
        Command::Release(ReleaseCommand::VerifyBinary { path }) => {
            online()?.verify_binary(&ctx, &path)
        }
        Command::Release(ReleaseCommand::List) => online()?.list_releases(&ctx),
        Command::Release(ReleaseCommand::Show { release, version }) => {
            online()?.show_release(&ctx, &release, version.as_ref())
        }
        Command::Key(KeyCommand::Generate {
            out,
            encrypt,
            passphrase,
        }) => key::generate(&ctx, &out, encrypt.then_some(passphrase)),
        Command::Key(KeyCommand::Encrypt { file, passphrase }) => {
            key::encrypt(&ctx, &file, passphrase)
        }
        Command::Key(KeyCommand::Export {
            file,
            out,
            passphrase,
        }) => key::export(&ctx, &file, out.as_deref(), passphrase),
        Command::Key(KeyCommand::Import {
            out,
            encrypt,
            passphrase,
        }) => key::import(&ctx, &out, encrypt.then_some(passphrase)),
        Command::Key(KeyCommand::SignDigest {
            digest,
            key,
            out,
            passphrase,
        }) => key::sign_digest(&ctx, &digest, &key, &out, passphrase),
        Command::Key(KeyCommand::Show { file }) => key::show(&ctx, &file),
        Command::Key(KeyCommand::RegtestMaintainer { index, out }) => {
            key::regtest_maintainer(&ctx, index, &out)
        }
        Command::Key(KeyCommand::RegtestMeasurer { index, out }) => {
            key::regtest_measurer(&ctx, index, &out)
        }
        Command::Network(NetworkCommand::Init(args)) => network::init(&ctx, &args),
        Command::Spec(command) => spec::run(&ctx, command),
        Command::Proposal(ProposalCommand::Create(args)) => proposal::create(&ctx, &args),
        Command::Proposal(ProposalCommand::Sign {
            file,
            key,
            passphrase,
        }) => proposal::sign(&ctx, &file, &key, passphrase),
        Command::Proposal(ProposalCommand::Digest { file }) => proposal::digest(&ctx, &file),
        Command::Proposal(ProposalCommand::Attach { file, signatures }) => {
            proposal::attach(&ctx, &file, &signatures)
        }
        Command::Proposal(ProposalCommand::Verify { file }) => proposal::verify(&ctx, &file),
        Command::Release(ReleaseCommand::Create(args)) => release::create(&ctx, &args),
        Command::Release(ReleaseCommand::Sign {
            file,
            key,
            detached,
            passphrase,
        }) => release::sign(&ctx, &file, &key, detached.as_deref(), passphrase),
        Command::Release(ReleaseCommand::Digest { file, stamp_file }) => {
            release::digest(&ctx, &file, stamp_file.as_deref())
        }
        Command::Release(ReleaseCommand::Combine { file, signatures }) => {
            release::combine(&ctx, &file, &signatures)
        }
        Command::Release(ReleaseCommand::Verify {
            file,
            artifacts,
            newest,
            timestamp,
        }) => release::verify(
            &ctx,
            &file,
            artifacts.as_deref(),
            newest.as_ref(),
            &timestamp,
        ),
        Command::Decode(args) => decode::decode(&ctx, &args.file),
    }
}

/// A resolved network: its rules and its id.
#[derive(Debug)]
pub struct Network {
    /// The rules.
    pub spec: NetworkSpec,
    /// The id every signature on it is bound to.
    pub id: Hash32,
}

impl Network {
    /// `name (first 16 hex digits of the id)`, for output.
    pub fn label(&self) -> String {
        format!("{} ({})", self.spec.name, &self.id.to_hex()[..16])
    }
}

/// Where the node and its network are, as the command line, the environment and the config
/// file say (the same rules as commonsd's).
#[derive(Debug, Clone, Default)]
pub struct Locate {
    /// `--network` or `COMMONS_NETWORK`.
    pub network: Option<String>,
    /// `--datadir` or `COMMONS_DATADIR`.
    pub datadir: Option<PathBuf>,
    /// `--conf` or `COMMONS_CONF`.
    pub conf: Option<PathBuf>,
}

/// What every command may need: the network (resolved on first use, so commands that do not
/// need one are not broken by a bad `--network` or config file), the node's config file,
/// the clock, standard output (text or JSON) and progress bars.
pub struct Context {
    locate: Locate,
    config: OnceCell<(PathBuf, commons_rpc::local::FileConfig)>,
    network_arg: OnceCell<String>,
    network: OnceCell<Network>,
    json: bool,
    quiet: bool,
}

impl Context {
    /// A context for the options given.
    pub fn new(locate: Locate) -> Self {
        Context {
            locate,
            config: OnceCell::new(),
            network_arg: OnceCell::new(),
            network: OnceCell::new(),
            json: false,
            quiet: false,
        }
    }

    /// The same context printing JSON (`--json`) and drawing no progress (`--quiet`).
    pub fn with_output(mut self, json: bool, quiet: bool) -> Self {
        self.json = json;
        self.quiet = quiet;
        self
    }

    /// Whether the command prints one JSON document instead of text (`--json`).
    pub fn json(&self) -> bool {
        self.json
    }

    /// Prints `document` as the command's one JSON document, indented.
    pub fn emit(&self, document: &impl serde::Serialize) -> Result {
        let text = serde_json::to_string_pretty(document)
            .map_err(|e| CliError::Input(anyhow!("formatting JSON: {e}")))?;
        self.say(text)
    }

    /// A progress bar over `total` bytes, drawn on standard error only when a person watches
    /// it there: standard error is a terminal, and neither `--json` nor `--quiet` was given.
    pub fn progress(&self, total: u64, label: &str) -> crate::progress::Progress {
        crate::progress::Progress::bytes(self.shows_progress(), total, label)
    }

    /// A spinner with `message`, drawn under the same rule as [`Context::progress`].
    pub fn spinner(&self, message: String) -> crate::progress::Progress {
        crate::progress::Progress::spinner(self.shows_progress(), message)
    }

    fn shows_progress(&self) -> bool {
        use std::io::IsTerminal;
        !self.json && !self.quiet && std::io::stderr().is_terminal()
    }

    /// The node's base data directory: `--datadir`, else `~/.commons-signal`.
    pub fn base_dir(&self) -> Result<PathBuf> {
        match &self.locate.datadir {
            Some(dir) => Ok(dir.clone()),
            None => {
                commons_rpc::local::default_base_dir().map_err(|e| CliError::Input(anyhow!("{e}")))
            }
        }
    }

    /// The node's config file (its path and contents): `--conf`, which must exist, else
    /// `<datadir>/commonsd.toml`, empty when absent.
    pub fn config(&self) -> Result<&(PathBuf, commons_rpc::local::FileConfig)> {
        if let Some(config) = self.config.get() {
            return Ok(config);
        }
        let base = self.base_dir()?;
        let (path, required) = commons_rpc::local::config_path(self.locate.conf.as_deref(), &base);
        let file = commons_rpc::local::read_config(&path, required)
            .map_err(|e| CliError::Input(anyhow!("{e}")))?;
        Ok(self.config.get_or_init(|| (path, file)))
    }

    /// The network: `--network` (a built-in name, a spec file, or a directory holding
    /// `spec.toml`), else the config file's `network`, else mainnet.
    pub fn network(&self) -> Result<&Network> {
        if let Some(network) = self.network.get() {
            return Ok(network);
        }
        let arg = match &self.locate.network {
            Some(arg) => arg.clone(),
            None => {
                let (path, file) = self.config()?;
                match &file.network {
                    Some(value) => commons_rpc::local::network_from_file(value, path, |n| {
                        NetworkSpec::builtin(n).is_some()
                    }),
                    None => commons_rpc::local::DEFAULT_NETWORK.to_string(),
                }
            }
        };
        let dir_spec = Path::new(&arg).join("spec.toml");
        let spec = if NetworkSpec::builtin(&arg).is_none() && Path::new(&arg).is_dir() {
            NetworkSpec::load(&dir_spec).map_err(spec_error)?
        } else if NetworkSpec::builtin(&arg).is_none() && spec::is_bundle(Path::new(&arg)) {
            // The node checks the chain; the client signs under the newest version's keys.
            let bundle = commons_signaling::spec_bundle::SpecBundle::load(Path::new(&arg))
                .map_err(|e| CliError::Input(anyhow!("{e}")))?;
            bundle.versions.last().expect("not empty").spec.clone()
        } else {
            NetworkSpec::resolve(&arg).map_err(spec_error)?
        };
        let id = spec.network_id();
        let _ = self.network_arg.set(arg);
        Ok(self.network.get_or_init(|| Network { spec, id }))
    }

    /// The network as given (`--network`'s value or the config file's), for hints that tell
    /// the user what to run next.
    pub fn network_arg(&self) -> &str {
        self.network_arg
            .get()
            .map(String::as_str)
            .or(self.locate.network.as_deref())
            .unwrap_or(commons_rpc::local::DEFAULT_NETWORK)
    }

    /// The current Unix time in seconds.
    pub fn now(&self) -> Result<u64> {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .map_err(|_| CliError::Input(anyhow!("the system clock is set before 1970")))
    }

    /// Prints one line to standard output.
    pub fn say(&self, line: impl fmt::Display) -> Result {
        let text = line.to_string();
        writeln!(
            std::io::stdout().lock(),
            "{}",
            crate::format::terminal_safe(&text)
        )
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                // The reader has gone (`commons-cli tally ID | head -n 1`): nothing left to
                // say to anyone. Exit as a C tool would on SIGPIPE, but with status 0, so a
                // script under `set -o pipefail` does not fail for output it chose to cut.
                std::process::exit(0);
            }
            CliError::Input(anyhow!("writing to standard output: {e}"))
        })
    }
}

/// A text option that must not be empty and has at most `N` bytes, or an error naming the
/// option.
fn text<const N: usize>(option: &str, value: &str) -> Result<BoundedString<N>> {
    if value.trim().is_empty() {
        return Err(anyhow!("{option} must not be empty").into());
    }
    BoundedString::new(value).map_err(|e| anyhow!("{option} is {e}").into())
}

/// The largest message file of any kind.
fn max_message_bytes() -> usize {
    MessageKind::ALL
        .iter()
        .map(|k| k.max_bytes())
        .max()
        .unwrap_or(0)
}

/// The largest detached signature file: a signer, a signature and CBOR framing.
const MAX_DETACHED_BYTES: usize = 256;

/// Decodes a detached signature file's bytes.
fn decode_detached(bytes: &[u8]) -> Option<MaintainerSignature> {
    wire::decode::<MaintainerSignature>(bytes, MAX_DETACHED_BYTES).ok()
}

/// Reads a maintainer-signed message of one kind, explaining a file of another kind.
fn load_multi<B: MultiSignedBody>(path: &Path) -> Result<MultiSigned<B>> {
    load_multi_bytes(path).map(|(_, message)| message)
}

/// Reads a maintainer-signed message of one kind, and gives its file's bytes too.
fn load_multi_bytes<B: MultiSignedBody>(path: &Path) -> Result<(Vec<u8>, MultiSigned<B>)> {
    let what = B::KIND.name();
    let bytes = crate::files::read_bounded(path, max_message_bytes(), "message")?;
    let message = MultiSigned::<B>::decode(&bytes).map_err(|error| {
        let name = path.display();
        if let Ok(other) = AnyMessage::decode(&bytes) {
            anyhow!(
                "{name}: this is a {} message, not a {what}",
                other.kind().name()
            )
        } else if decode_detached(&bytes).is_some() {
            anyhow!("{name}: this is a detached signature, not a {what}")
        } else {
            anyhow!("{name}: not a valid {what}: {error}")
        }
    })?;
    Ok((bytes, message))
}

/// Reads a proposal file.
pub fn load_proposal(path: &Path) -> Result<MultiSigned<ProposalBody>> {
    load_multi(path)
}

/// Reads a release bundle file.
pub fn load_release(path: &Path) -> Result<MultiSigned<ReleaseManifest>> {
    load_multi(path)
}

/// Reads a release bundle file, with the file's bytes (which are what the node is sent).
pub fn load_release_bytes(path: &Path) -> Result<(Vec<u8>, MultiSigned<ReleaseManifest>)> {
    load_multi_bytes(path)
}

/// Reads a detached signature file.
pub fn load_detached(path: &Path) -> Result<MaintainerSignature> {
    let bytes = crate::files::read_bounded(path, max_message_bytes(), "message")?;
    if let Some(signature) = decode_detached(&bytes) {
        return Ok(signature);
    }
    let name = path.display();
    Err(match AnyMessage::decode(&bytes) {
        Ok(other) => anyhow!(
            "{name}: this is a {} message, not a detached signature",
            other.kind().name()
        ),
        Err(_) => anyhow!(
            "{name}: not a detached signature (made by `release sign --detached`, `spec sign` or \
             `key sign-digest`)"
        ),
    }
    .into())
}

/// One line per signature: the key, who it is on this network, and its fate.
fn signature_lines(report: &ThresholdReport, allowed: &[PublicKey], role: &str) -> Vec<String> {
    if report.signatures.is_empty() {
        return vec!["  (none)".to_string()];
    }
    report
        .signatures
        .iter()
        .map(|(key, fate)| {
            let who = match allowed.iter().position(|k| k == key) {
                Some(i) => format!("{role} {}", i + 1),
                None => "-".to_string(),
            };
            format!("  {key}  {who:<13} {}", crate::format::fate(*fate))
        })
        .collect()
}

/// The signatures of a report as JSON: each signer, its place among the allowed keys (from
/// 1, `null` when it is not one) and its fate.
fn signatures_json(report: &ThresholdReport, allowed: &[PublicKey]) -> serde_json::Value {
    report
        .signatures
        .iter()
        .map(|(key, fate)| {
            serde_json::json!({
                "signer": key,
                "index": allowed.iter().position(|k| k == key).map(|i| i + 1),
                "fate": crate::format::fate_name(*fate),
            })
        })
        .collect()
}

/// What `proposal digest` and `release digest` print with `--json`: the digest signers sign,
/// which is the message's id on the network, so both fields hold the same hash (`digest`
/// names it as `spec digest` does, for `key sign-digest`).
fn digest_json(net: &Network, id: &Hash32, file: &Path) -> serde_json::Value {
    serde_json::json!({
        "digest": id,
        "id": id,
        "network": net.spec.name,
        "network_id": net.id,
        "file": file.display().to_string(),
    })
}

/// What `proposal sign` and `release sign` print once the signature is in the file: the id,
/// the signer (and whether it replaced an earlier signature of theirs), and the count against
/// the threshold. `what` names the message ("proposal", "release").
fn signed_report(
    ctx: &Context,
    what: &str,
    signer: &PublicKey,
    replaced: bool,
    report: &ThresholdReport,
    file: &Path,
) -> Result {
    if ctx.json() {
        return ctx.emit(&serde_json::json!({
            "id": report.id,
            "signer": signer,
            "replaced": replaced,
            "counted": report.counted,
            "required": report.required,
            "threshold_met": report.is_met(),
            "file": file.display().to_string(),
        }));
    }
    let verb = if replaced {
        "replaced the earlier signature of"
    } else {
        "signed as"
    };
    ctx.say(format_args!("{what:<11} {}", report.id))?;
    ctx.say(format_args!("{verb} {signer}"))?;
    counted_line(ctx, report)
}

/// The line that says how many signatures count against the threshold.
fn counted_line(ctx: &Context, report: &ThresholdReport) -> Result {
    ctx.say(format_args!(
        "counted     {} of {} required{}",
        report.counted,
        report.required,
        if report.is_met() {
            " (threshold met)"
        } else {
            ""
        }
    ))
}

/// What `proposal attach` and `release combine` print with `--json`: the signatures added
/// from each file, and the count against the threshold afterwards.
fn added_json(
    report: &ThresholdReport,
    added: &[(PublicKey, &PathBuf)],
    file: &Path,
) -> serde_json::Value {
    serde_json::json!({
        "id": report.id,
        "added": added.iter().map(|(signer, path)| serde_json::json!({
            "signer": signer,
            "file": path.display().to_string(),
        })).collect::<Vec<_>>(),
        "counted": report.counted,
        "required": report.required,
        "threshold_met": report.is_met(),
        "file": file.display().to_string(),
    })
}

/// A hint for a report in which no signature counts for one reason: the usual causes.
fn bad_signature_hint(report: &ThresholdReport) -> &'static str {
    let all = |wanted: SignatureFate| {
        !report.signatures.is_empty() && report.signatures.iter().all(|(_, fate)| *fate == wanted)
    };
    if all(SignatureFate::BadSignature) {
        " (no signature verifies: the file was changed after signing, or signed for another network)"
    } else if all(SignatureFate::UnknownKey) {
        " (no signer is authorised on this network: is --network right?)"
    } else {
        ""
    }
}
