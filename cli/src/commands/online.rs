//! Commands that talk to a running `commonsd` over JSON-RPC. Human-readable output by
//! default; `--json` prints the node's answer as it is, for scripts.

mod releases;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use commons_rpc::{
    IdParams, Method, NoParams, SignalParams, SubmitProposalParams, UptimeParams, UptimeStatus,
    method,
};

use super::Context;
use crate::error::{CliError, Result};
use crate::rpc::{RpcClient, parse_answer};

/// How to reach the node: from `--rpc-url`, `--rpc-cookie` and `--datadir`, with the
/// network's default port and data layout for what is not given.
pub struct Online {
    client: RpcClient,
    json: bool,
}

impl Online {
    /// Resolves the node's address and cookie.
    pub fn new(
        ctx: &Context,
        datadir: Option<&Path>,
        rpc_url: Option<&str>,
        rpc_cookie: Option<&Path>,
        wait: Option<Duration>,
        json: bool,
    ) -> Result<Self> {
        let network = &ctx.network()?.spec.name;
        let address = match rpc_url {
            Some(url) => url.to_string(),
            None => format!(
                "127.0.0.1:{}",
                commons_signaling::spec::default_ports(network).rpc
            ),
        };
        let cookie = match rpc_cookie {
            Some(path) => path.to_path_buf(),
            None => {
                let base = match datadir {
                    Some(dir) => dir.to_path_buf(),
                    None => default_base_dir()?,
                };
                commons_signaling::spec::network_dir(&base, network).join(".cookie")
            }
        };
        Ok(Online {
            client: RpcClient::new(&address, cookie)?.with_wait(wait),
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
        ))
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
        ctx.say(format!(
            "override share: weight {} (needs {}), nodes {} (needs {})",
            number(t.override_weight_share),
            number(t.required_weight_share),
            number(t.override_node_share),
            number(t.required_node_share)
        ))
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

/// An optional value, `-` when absent.
fn optional(value: Option<&impl std::fmt::Display>) -> String {
    value.map_or_else(|| "-".to_string(), ToString::to_string)
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

fn default_base_dir() -> Result<PathBuf> {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".commons-signal")),
        _ => Err(anyhow!("HOME is not set: pass --datadir").into()),
    }
}
