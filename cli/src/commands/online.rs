//! Commands that talk to a running `commonsd` over JSON-RPC. Human-readable output by
//! default; `--json` prints the node's answer as it is, for scripts.

mod export;
mod releases;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use commons_rpc::{
    BinaryInfo, Deployment, IdParams, Method, NoParams, ProposalFilterParams, RotationInfo,
    SignalParams, SpecInfo, SubmitProposalParams, UptimeParams, UptimeStatus, method,
};
use serde_json::Value;

use super::Context;
use crate::error::{CliError, Result};
use crate::rpc::{RpcClient, parse_answer};

/// How to reach the node: `--rpc-url`, else the address the running node recorded in its
/// data directory; the cookie from `--rpc-cookie`, else the data directory's.
pub struct Online {
    client: RpcClient,
    json: bool,
}

impl Online {
    /// Resolves the node's address and cookie: the network and data directory as commonsd
    /// resolves them (flags, `COMMONS_*`, config file, defaults).
    pub fn new(
        ctx: &Context,
        rpc_url: Option<&str>,
        rpc_cookie: Option<&Path>,
        wait: Option<Duration>,
        json: bool,
    ) -> Result<Self> {
        let network = ctx.network()?.spec.name.clone();
        let datadir = commons_signaling::spec::network_dir(&ctx.base_dir()?, &network);
        let cookie = match rpc_cookie {
            Some(path) => path.to_path_buf(),
            None => datadir.join(commons_rpc::local::COOKIE_FILE),
        };
        let client = match rpc_url {
            Some(url) => RpcClient::new(url, cookie)?,
            None => RpcClient::recorded(datadir, configured_rpc_address(ctx, &network)?, cookie),
        };
        Ok(Online {
            client: client.with_wait(wait),
            json,
        })
    }

    /// Calls the method `M`. With `--json` the node's answer is printed as it came and
    /// `None` returned; else it is read as `M`'s answer.
    fn call<M: Method>(&self, ctx: &Context, params: &M::Params) -> Result<Option<M::Response>> {
        let result = self
            .client
            .call(M::NAME, commons_rpc::params_json::<M>(params))?;
        if self.json {
            ctx.say(serde_json::to_string_pretty(&result).expect("JSON values serialize"))?;
            return Ok(None);
        }
        parse_answer::<M>(result).map(Some)
    }

    /// `getinfo`
    pub fn getinfo(&self, ctx: &Context) -> Result {
        let Some(info) = self.call::<method::GetInfo>(ctx, &NoParams {})? else {
            return Ok(());
        };
        for (label, value) in [
            ("network", info.network.name.clone()),
            ("network id", info.network.id.clone()),
            ("peer id", optional(info.peer_id.as_ref())),
            ("public key", info.public_key.clone()),
            ("epoch", info.epoch.to_string()),
            ("peers", info.peers.to_string()),
            ("proposals", info.proposals.to_string()),
            ("qualified nodes", info.qualified_nodes.to_string()),
            ("qualified weight", number(info.qualified_weight)),
        ] {
            ctx.say(format!("{label:<18} {value}"))?;
        }
        for addr in &info.listen {
            ctx.say(format!("{:<18} {addr}", "listening on"))?;
        }
        ctx.say(format!(
            "{:<18} {}",
            "own uptime",
            describe_uptime(info.uptime.as_ref())
        ))?;
        if let Some(binary) = &info.binary {
            ctx.say(format!("{:<18} {}", "binary", describe_binary(binary)))?;
        }
        if let Some(spec) = &info.spec {
            for (label, value) in describe_spec(spec) {
                ctx.say(format!("{label:<18} {value}"))?;
            }
        }
        Ok(())
    }

    /// `peers`
    pub fn peers(&self, ctx: &Context) -> Result {
        let Some(peers) = self.call::<method::GetPeers>(ctx, &NoParams {})? else {
            return Ok(());
        };
        ctx.say(format!("{} peers", peers.len()))?;
        for peer in peers {
            ctx.say(format!(
                "{}  ip {}  {}",
                peer.peer_id,
                optional(peer.observed_ip.as_ref()),
                if peer.outbound { "outbound" } else { "inbound" },
            ))?;
        }
        Ok(())
    }

    /// `proposals`
    pub fn proposals(&self, ctx: &Context) -> Result {
        let Some(list) = self.call::<method::ListProposals>(ctx, &NoParams {})? else {
            return Ok(());
        };
        if list.is_empty() {
            return ctx.say("no proposals");
        }
        for p in list {
            ctx.say(format!(
                "{}  tier {}  {:<16} {}",
                p.id, p.tier, p.state, p.title
            ))?;
        }
        Ok(())
    }

    /// `tally ID`
    pub fn tally(&self, ctx: &Context, id: &str) -> Result {
        let Some(t) = self.call::<method::GetTally>(ctx, &IdParams::new(id))? else {
            return Ok(());
        };
        print_tally(ctx, &t)
    }

    /// `equivocations [PROPOSAL]`
    pub fn equivocations(&self, ctx: &Context, proposal: Option<&str>) -> Result {
        let params = ProposalFilterParams {
            proposal: proposal.map(str::to_string),
        };
        let Some(list) = self.call::<method::ListEquivocations>(ctx, &params)? else {
            return Ok(());
        };
        if list.is_empty() {
            return ctx.say("no equivocations");
        }
        for e in list {
            let choices: Vec<&str> = e.signals.iter().map(|s| s.choice.as_str()).collect();
            ctx.say(format!(
                "proposal {}  signer {}  sequence {}  signed {}",
                e.proposal,
                e.signer,
                e.sequence,
                choices.join(" and ")
            ))?;
        }
        Ok(())
    }

    /// `uptime [KEY]`
    pub fn uptime(&self, ctx: &Context, key: Option<&str>) -> Result {
        let params = UptimeParams {
            key: key.map(str::to_string),
        };
        let Some(report) = self.call::<method::GetUptime>(ctx, &params)? else {
            return Ok(());
        };
        ctx.say(describe_uptime(report.status.as_ref()))
    }

    /// `signal ID CHOICE`
    pub fn signal(&self, ctx: &Context, id: &str, choice: &str) -> Result {
        let params = SignalParams {
            proposal: id.to_string(),
            choice: choice.to_string(),
        };
        let Some(receipt) = self.call::<method::CastSignal>(ctx, &params)? else {
            return Ok(());
        };
        ctx.say(format!(
            "signalled {choice} on {id} (sequence {}, {})",
            receipt.sequence,
            if receipt.published {
                "sent to peers"
            } else {
                "stored; it goes to peers when they connect"
            }
        ))
    }

    /// `proposal submit FILE`
    pub fn submit_proposal(&self, ctx: &Context, file: &Path) -> Result {
        let bytes = crate::files::read_bounded(
            file,
            commons_signaling::MessageKind::Proposal.max_bytes(),
            "proposal",
        )?;
        commons_signaling::Proposal::decode(&bytes)
            .map_err(|e| CliError::Input(anyhow!("{}: {e}", file.display())))?;
        let params = SubmitProposalParams {
            hex: hex::encode(&bytes),
        };
        let Some(receipt) = self.call::<method::SubmitProposal>(ctx, &params)? else {
            return Ok(());
        };
        ctx.say(format!(
            "proposal {} {}",
            receipt.id,
            if receipt.new {
                "accepted"
            } else {
                "was already known"
            }
        ))
    }
}

/// A number as the node wrote it in JSON (`2.0`, `0.4142135623730951`, `-` for what JSON
/// cannot carry).
fn number(value: f64) -> String {
    match serde_json::Number::from_f64(value) {
        Some(n) => n.to_string(),
        None => "-".to_string(),
    }
}

/// A tally as `commons-cli tally` prints it: per choice weight and nodes, the denominator,
/// the excluded signers and the override's shares against the tier's thresholds.
pub(crate) fn print_tally(ctx: &Context, t: &commons_rpc::Tally) -> Result {
    ctx.say(format!("proposal {}  state {}", t.id, t.state))?;
    ctx.say(format!("{:<10} {:>14} {:>8}", "choice", "weight", "nodes"))?;
    for (choice, counted) in t.choices.named() {
        ctx.say(format!(
            "{choice:<10} {:>14} {:>8}",
            number(counted.weight),
            counted.nodes
        ))?;
    }
    ctx.say(format!(
        "{:<10} {:>14} {:>8}",
        "qualified",
        number(t.total_weight),
        t.total_nodes
    ))?;
    if t.excluded_signers > 0 {
        ctx.say(format!(
            "excluded: {} signer(s) proven to equivocate (commons-cli equivocations {})",
            t.excluded_signers, t.id
        ))?;
    }
    ctx.say(format!(
        "override share: weight {} (needs {}), nodes {} (needs {})",
        number(t.override_weight_share),
        number(t.required_weight_share),
        number(t.override_node_share),
        number(t.required_node_share)
    ))
}

/// An optional value, `-` when absent.
fn optional(value: Option<&impl std::fmt::Display>) -> String {
    value.map_or_else(|| "-".to_string(), ToString::to_string)
}

/// The `binary` line of `getinfo`: the node's check of its own executable.
fn describe_binary(binary: &BinaryInfo) -> String {
    let one = crate::format::one_line;
    match (binary.status.as_str(), &binary.release) {
        ("verified", Some(r)) => format!(
            "verified: {} of release {} {}",
            one(&r.artifact),
            one(&r.channel),
            one(&r.version)
        ),
        ("unverified", _) => format!(
            "unverified: no verified release lists SHA-256 {}",
            one(binary.sha256.as_deref().unwrap_or("-"))
        ),
        ("error", _) => format!(
            "not checked: {}",
            one(binary.error.as_deref().unwrap_or("unknown error"))
        ),
        ("off", _) => "not checked (--verify-binary off)".to_string(),
        (other, _) => one(other),
    }
}

/// The spec lines of `getinfo`: the version in force, the later ones held, each rotation
/// proposal, and the node's warning when one names a version it does not hold.
fn describe_spec(spec: &SpecInfo) -> Vec<(&'static str, String)> {
    let one = crate::format::one_line;
    let since = match spec.since_epoch {
        0 => "in force from the network's start".to_string(),
        epoch => format!("in force since epoch {epoch}"),
    };
    let mut lines = vec![
        ("spec version", format!("{} ({since})", spec.version)),
        ("spec id", one(&spec.spec_id)),
    ];
    for held in &spec.staged {
        lines.push((
            "spec held",
            format!(
                "version {} {} (not in force yet)",
                held.version,
                one(&held.spec_id)
            ),
        ));
    }
    for rotation in &spec.rotations {
        lines.push(("rotation", describe_rotation(rotation)));
    }
    if let Some(warning) = &spec.warning {
        lines.push(("WARNING", one(warning)));
    }
    lines
}

/// One rotation proposal: the version it names, where it stands, and the proposal.
fn describe_rotation(rotation: &RotationInfo) -> String {
    let one = crate::format::one_line;
    let version = match rotation.version {
        Some(v) => format!("version {v} {}", one(&rotation.spec_id)),
        None => format!("spec id {} (NOT HELD)", one(&rotation.spec_id)),
    };
    let epoch = rotation.activation_epoch;
    let state = match rotation.state.as_str() {
        "pending" => format!("pending, activates at epoch {epoch}"),
        "activated" => format!("activated at epoch {epoch}"),
        "stalled" => format!("passed, activation epoch {epoch}, not in force here"),
        "overridden" => "overridden".to_string(),
        other => one(other),
    };
    format!("{version}: {state} (proposal {})", one(&rotation.proposal))
}

fn describe_uptime(status: Option<&UptimeStatus>) -> String {
    let Some(status) = status else {
        return "no attestations known".to_string();
    };
    format!(
        "{} epochs at {} ({}, {})",
        status.uptime_epochs,
        optional(status.ip.as_ref()),
        if status.qualified {
            "qualified"
        } else {
            "not qualified"
        },
        if status.counted {
            "counted"
        } else {
            "not counted"
        }
    )
}

/// Where the node's RPC server should be when it recorded no address: `COMMONS_RPC_BIND`,
/// else the config file's `rpc-bind`, else 127.0.0.1 and the network's RPC port, as
/// commonsd chooses where to bind.
fn configured_rpc_address(ctx: &Context, network: &str) -> Result<SocketAddr> {
    let bind = match std::env::var(commons_rpc::local::env::RPC_BIND) {
        Ok(value) => Some(value.parse::<SocketAddr>().map_err(|_| {
            anyhow!(
                "{}={value:?} is not an IP:PORT address",
                commons_rpc::local::env::RPC_BIND
            )
        })?),
        Err(_) => {
            let (path, file) = ctx.config()?;
            match &file.rpc_bind {
                Some(value) => Some(value.parse::<SocketAddr>().map_err(|e| {
                    anyhow!(
                        "{}: rpc-bind: {value:?}: {e} (expected IP:PORT)",
                        path.display()
                    )
                })?),
                None => None,
            }
        }
    };
    let default = SocketAddr::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        commons_signaling::spec::default_ports(network).rpc,
    );
    Ok(commons_rpc::local::connect_address(bind.unwrap_or(default)))
}

/// `help [METHOD]`: the JSON-RPC methods from this commons-cli's own table, so it works with
/// no node running.
pub fn help(ctx: &Context, name: Option<&str>) -> Result {
    let help = match name {
        None => None,
        Some(name) => Some(method::help(name).ok_or_else(|| {
            CliError::Input(anyhow!(
                "help: unknown method {name:?}; `commons-cli help` lists them"
            ))
        })?),
    };
    if ctx.json() {
        return match help {
            None => ctx.emit(&method::HELP.iter().map(help_json).collect::<Vec<_>>()),
            Some(help) => ctx.emit(&help_json(help)),
        };
    }
    let Some(help) = help else {
        ctx.say("JSON-RPC methods of commonsd (`commons-cli help METHOD` describes one; `commons-cli call METHOD ...` calls any; `commons-cli --help` lists the commands):")?;
        for help in method::HELP {
            ctx.say(format!("  {}", help.usage()))?;
        }
        return Ok(());
    };
    ctx.say(help.text().trim_end())
}

/// One method's help as JSON: `{name, summary, params: [{name, type, required,
/// description}], result}`.
fn help_json(help: &commons_rpc::method::MethodHelp) -> Value {
    serde_json::json!({
        "name": help.name,
        "summary": help.summary,
        "params": help.params.iter().map(|p| serde_json::json!({
            "name": p.name,
            "type": p.kind,
            "required": p.required,
            "description": p.description,
        })).collect::<Vec<_>>(),
        "result": help.result,
    })
}

/// The parameters of `call METHOD ARGS...`: one JSON object or array as it stands, or
/// NAME=VALUE words, VALUE a string where the method's help says the parameter is one, else
/// JSON when it parses (`42`, `true`), else a string.
pub fn call_params(name: &str, args: &[String]) -> Result<Value> {
    if let [only] = args
        && matches!(only.trim_start().chars().next(), Some('{' | '['))
    {
        return serde_json::from_str(only)
            .map_err(|e| anyhow!("call {name}: the parameters are not valid JSON: {e}").into());
    }
    let help = method::help(name);
    let mut params = serde_json::Map::new();
    for arg in args {
        let Some((key, value)) = arg.split_once('=') else {
            return Err(anyhow!(
                "call {name}: {arg:?} is neither NAME=VALUE nor a JSON object or array"
            )
            .into());
        };
        if key.is_empty() {
            return Err(anyhow!("call {name}: {arg:?} has no parameter name before `=`").into());
        }
        let is_string = help
            .and_then(|h| h.params.iter().find(|p| p.name == key))
            .is_some_and(|p| p.kind == "string");
        let value = if is_string {
            Value::String(value.to_string())
        } else {
            serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()))
        };
        if params.insert(key.to_string(), value).is_some() {
            return Err(anyhow!("call {name}: parameter `{key}` is given twice").into());
        }
    }
    Ok(Value::Object(params))
}

impl Online {
    /// `call METHOD ARGS...`: any method, its answer printed as it came (a string as
    /// text, anything else as pretty JSON).
    pub fn call_any(&self, ctx: &Context, name: &str, args: &[String]) -> Result {
        let params = call_params(name, args)?;
        let result = match self.client.call_raw(name, params)? {
            Ok(result) => result,
            // Not "the node is older": with a free-form name, a typo is far likelier.
            Err(error) if error.code == crate::rpc::code::METHOD_NOT_FOUND => {
                return Err(CliError::Input(anyhow!("call: {}", error.message)));
            }
            Err(error) => return Err(error.into_cli(name)),
        };
        match result {
            Value::String(text) if !self.json => ctx.say(text.trim_end()),
            other => ctx.say(serde_json::to_string_pretty(&other).expect("JSON values serialize")),
        }
    }

    /// `stop`
    pub fn stop(&self, ctx: &Context) -> Result {
        let Some(answer) = self.call::<method::Stop>(ctx, &NoParams {})? else {
            return Ok(());
        };
        ctx.say(answer)
    }

    /// `deployments`: every proposal's state and time left.
    pub fn deployments(&self, ctx: &Context) -> Result {
        let Some(info) = self.call::<method::GetDeploymentInfo>(ctx, &NoParams {})? else {
            return Ok(());
        };
        ctx.say(format!(
            "epoch {}  qualified nodes {}  weight {}  time {}",
            info.epoch,
            info.qualified_nodes,
            number(info.qualified_weight),
            crate::format::utc(info.time)
        ))?;
        if info.proposals.is_empty() {
            return ctx.say("no proposals");
        }
        for d in &info.proposals {
            describe_deployment(ctx, d, info.time)?;
        }
        Ok(())
    }
}

fn describe_deployment(ctx: &Context, d: &Deployment, now: u64) -> Result {
    ctx.say(format!(
        "{}  tier {} ({})  {}  {}",
        d.id, d.tier, d.tier_name, d.state, d.title
    ))?;
    let left = if d.lock_secs_left == 0 {
        "ended".to_string()
    } else if now < d.lock_start {
        format!(
            "starts in {}, ends in {}",
            crate::format::approx(d.lock_start - now),
            crate::format::approx(d.lock_secs_left)
        )
    } else {
        format!("{} left", crate::format::approx(d.lock_secs_left))
    };
    ctx.say(format!(
        "  lock      {} to {} ({left})",
        crate::format::utc(d.lock_start),
        crate::format::utc(d.lock_end)
    ))?;
    if let (Some(next), Some(at)) = (&d.next_state, d.next_state_at) {
        ctx.say(format!(
            "  next      {next} in {} ({}) unless overridden first",
            crate::format::approx(at.saturating_sub(now)),
            crate::format::utc(at)
        ))?;
    }
    ctx.say(format!(
        "  override  weight {} of {} needed, nodes {} of {} needed: {}{}",
        number(d.override_weight_share),
        number(d.required_weight_share),
        number(d.override_node_share),
        number(d.required_node_share),
        if d.override_met { "met" } else { "not met" },
        d.overridden_at_epoch
            .map(|e| format!(", latched at epoch {e}"))
            .unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getinfo_names_the_spec_version_each_rotation_and_the_warning() {
        let rotation = |proposal: &str, version, state: &str| RotationInfo {
            proposal: proposal.repeat(32),
            spec_id: "34".repeat(32),
            version,
            activation_epoch: 90,
            state: state.into(),
        };
        let spec = SpecInfo {
            version: 1,
            spec_id: "ab".repeat(32),
            since_epoch: 0,
            staged: vec![commons_rpc::SpecVersion {
                version: 2,
                spec_id: "34".repeat(32),
            }],
            rotations: vec![
                rotation("56", Some(2), "pending"),
                rotation("78", None, "stalled"),
            ],
            warning: Some("a rotation names\na version".into()),
        };
        let lines: Vec<String> = describe_spec(&spec)
            .into_iter()
            .map(|(label, value)| format!("{label}: {value}"))
            .collect();
        let (id, other, p1, p2) = (
            "ab".repeat(32),
            "34".repeat(32),
            "56".repeat(32),
            "78".repeat(32),
        );
        assert_eq!(
            lines,
            [
                "spec version: 1 (in force from the network's start)".to_string(),
                format!("spec id: {id}"),
                format!("spec held: version 2 {other} (not in force yet)"),
                format!(
                    "rotation: version 2 {other}: pending, activates at epoch 90 (proposal {p1})"
                ),
                format!(
                    "rotation: spec id {other} (NOT HELD): passed, activation epoch 90, not in force here (proposal {p2})"
                ),
                "WARNING: a rotation names\\na version".to_string(),
            ]
        );
    }

    fn words(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_binary_line_names_the_release_or_says_why_not() {
        let mut b = BinaryInfo {
            mode: "warn".into(),
            status: "verified".into(),
            path: Some("/usr/local/bin/commonsd".into()),
            sha256: Some("ab".repeat(32)),
            size: Some(10),
            release: Some(commons_rpc::BinaryRelease {
                id: "cd".repeat(32),
                channel: "stable".into(),
                version: "1.0.0".into(),
                artifact: "commonsd\nforged line".into(),
            }),
            error: None,
        };
        let line = describe_binary(&b);
        assert!(line.starts_with("verified: commonsd") && line.ends_with("release stable 1.0.0"));
        assert!(!line.contains('\n'), "{line}");
        b.status = "unverified".into();
        b.release = None;
        assert!(describe_binary(&b).contains(&"ab".repeat(32)));
        b.status = "error".into();
        b.error = Some("permission denied".into());
        assert_eq!(describe_binary(&b), "not checked: permission denied");
    }

    #[test]
    fn call_parameters_by_name_or_as_json() {
        // A hex id of digits only stays a string: the help says `id` is one.
        let id = "1".repeat(64);
        let p = call_params("gettally", &words(&[&format!("id={id}")])).unwrap();
        assert_eq!(p, serde_json::json!({ "id": id }));
        let p = call_params("gettally", &words(&[r#"{"id":"ab"}"#])).unwrap();
        assert_eq!(p, serde_json::json!({ "id": "ab" }));
        let p = call_params("gettally", &words(&[r#"["ab"]"#])).unwrap();
        assert_eq!(p, serde_json::json!(["ab"]));
        // Unknown names are passed on for the node to judge; their values as JSON if they
        // parse.
        let p = call_params("nosuch", &words(&["n=42", "s=text", "b=true"])).unwrap();
        assert_eq!(p, serde_json::json!({ "n": 42, "s": "text", "b": true }));
        assert_eq!(call_params("getinfo", &[]).unwrap(), serde_json::json!({}));
        for bad in [&["{nope"][..], &["id"], &["=x"], &["id=a", "id=b"]] {
            let e = call_params("gettally", &words(bad)).unwrap_err();
            assert_eq!(e.exit_code(), crate::error::EXIT_INPUT, "{bad:?}");
        }
    }
}
