//! Commands that talk to a running `commonsd` over JSON-RPC. Human-readable output by
//! default; `--json` prints the node's answer as it is, for scripts.

mod releases;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use serde_json::{Value, json};

use super::Context;
use crate::error::{CliError, Result};
use crate::rpc::RpcClient;

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

    fn call(&self, ctx: &Context, method: &str, params: Value) -> Result<Option<Value>> {
        let result = self.client.call(method, params)?;
        if self.json {
            ctx.say(serde_json::to_string_pretty(&result).expect("JSON values serialize"))?;
            return Ok(None);
        }
        Ok(Some(result))
    }

    /// `getinfo`
    pub fn getinfo(&self, ctx: &Context) -> Result {
        let Some(info) = self.call(ctx, "getinfo", json!({}))? else {
            return Ok(());
        };
        for (label, pointer) in [
            ("network", "/network/name"),
            ("network id", "/network/id"),
            ("peer id", "/peer_id"),
            ("public key", "/public_key"),
            ("epoch", "/epoch"),
            ("peers", "/peers"),
            ("proposals", "/proposals"),
            ("qualified nodes", "/qualified_nodes"),
            ("qualified weight", "/qualified_weight"),
        ] {
            if let Some(value) = info.pointer(pointer) {
                ctx.say(format!("{label:<18} {}", plain(value)))?;
            }
        }
        if let Some(addrs) = info.get("listen").and_then(Value::as_array) {
            for addr in addrs {
                ctx.say(format!("{:<18} {}", "listening on", plain(addr)))?;
            }
        }
        if let Some(uptime) = info.get("uptime") {
            ctx.say(format!("{:<18} {}", "own uptime", describe_uptime(uptime)))?;
        }
        Ok(())
    }

    /// `peers`
    pub fn peers(&self, ctx: &Context) -> Result {
        let Some(peers) = self.call(ctx, "getpeers", json!({}))? else {
            return Ok(());
        };
        let peers = peers.as_array().cloned().unwrap_or_default();
        ctx.say(format!("{} peers", peers.len()))?;
        for peer in peers {
            ctx.say(format!(
                "{}  ip {}  {}",
                plain(peer.get("peer_id").unwrap_or(&Value::Null)),
                plain(peer.get("observed_ip").unwrap_or(&Value::Null)),
                if peer.get("outbound").and_then(Value::as_bool) == Some(true) {
                    "outbound"
                } else {
                    "inbound"
                },
            ))?;
        }
        Ok(())
    }

    /// `proposals`
    pub fn proposals(&self, ctx: &Context) -> Result {
        let Some(list) = self.call(ctx, "listproposals", json!({}))? else {
            return Ok(());
        };
        let list = list.as_array().cloned().unwrap_or_default();
        if list.is_empty() {
            return ctx.say("no proposals");
        }
        for p in list {
            let field = |name: &str| plain(p.get(name).unwrap_or(&Value::Null));
            ctx.say(format!(
                "{}  tier {}  {:<16} {}",
                field("id"),
                field("tier"),
                field("state"),
                field("title")
            ))?;
        }
        Ok(())
    }

    /// `tally ID`
    pub fn tally(&self, ctx: &Context, id: &str) -> Result {
        let Some(t) = self.call(ctx, "gettally", json!({ "id": id }))? else {
            return Ok(());
        };
        let get = |pointer: &str| t.pointer(pointer).map(plain).unwrap_or_default();
        ctx.say(format!("proposal {}  state {}", get("/id"), get("/state")))?;
        ctx.say(format!("{:<10} {:>14} {:>8}", "choice", "weight", "nodes"))?;
        for choice in ["support", "oppose", "override", "abstain"] {
            ctx.say(format!(
                "{choice:<10} {:>14} {:>8}",
                get(&format!("/choices/{choice}/weight")),
                get(&format!("/choices/{choice}/nodes"))
            ))?;
        }
        ctx.say(format!(
            "{:<10} {:>14} {:>8}",
            "qualified",
            get("/total_weight"),
            get("/total_nodes")
        ))?;
        ctx.say(format!(
            "override share: weight {} (needs {}), nodes {} (needs {})",
            get("/override_weight_share"),
            get("/required_weight_share"),
            get("/override_node_share"),
            get("/required_node_share")
        ))
    }

    /// `uptime [KEY]`
    pub fn uptime(&self, ctx: &Context, key: Option<&str>) -> Result {
        let params = match key {
            Some(key) => json!({ "key": key }),
            None => json!({}),
        };
        let Some(status) = self.call(ctx, "getuptime", params)? else {
            return Ok(());
        };
        ctx.say(describe_uptime(&status))
    }

    /// `signal ID CHOICE`
    pub fn signal(&self, ctx: &Context, id: &str, choice: &str) -> Result {
        let params = json!({ "proposal": id, "choice": choice });
        let Some(result) = self.call(ctx, "signal", params)? else {
            return Ok(());
        };
        ctx.say(format!(
            "signalled {choice} on {id} (sequence {}, {})",
            plain(result.get("sequence").unwrap_or(&Value::Null)),
            if result.get("published").and_then(Value::as_bool) == Some(true) {
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
        let params = json!({ "hex": hex::encode(&bytes) });
        let Some(result) = self.call(ctx, "submitproposal", params)? else {
            return Ok(());
        };
        let new = result.get("new").and_then(Value::as_bool) == Some(true);
        ctx.say(format!(
            "proposal {} {}",
            plain(result.get("id").unwrap_or(&Value::Null)),
            if new { "accepted" } else { "was already known" }
        ))
    }
}

/// A JSON value as plain text: strings without quotes.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

fn describe_uptime(status: &Value) -> String {
    if status.is_null() {
        return "no attestations known".to_string();
    }
    let get = |name: &str| plain(status.get(name).unwrap_or(&Value::Null));
    format!(
        "{} epochs at {} ({}, {})",
        get("uptime_epochs"),
        get("ip"),
        if status.get("qualified").and_then(Value::as_bool) == Some(true) {
            "qualified"
        } else {
            "not qualified"
        },
        if status.get("counted").and_then(Value::as_bool) == Some(true) {
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
