//! The simulated network's nodes: real daemons (`commons_node::Daemon`, the code `commonsd`
//! runs) and, for the share of nodes that drop everything, bare networking stacks that
//! never validate (so never forward) a message.
//!
//! Every node has its own loopback address, its own data directory (RocksDB, key) and its
//! own metrics registry; all run on one Tokio runtime in this process.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use commons_aggregator::SignatureCheck;
use commons_node::config::{Cli, Config};
use commons_node::daemon::{Daemon, Options};
use commons_node::node::Node;
use commons_p2p::prometheus_client::registry::Registry;
use commons_p2p::{Multiaddr, P2pConfig, P2pEvent, P2pHandle, P2pNode, PeerId};
use commons_signaling::SecretKey;
use tokio::task::JoinHandle;

use super::counters::Counters;

/// What a node does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A real daemon that casts the signals.
    Honest,
    /// A bare networking stack: takes every message, validates, stores and forwards none.
    Dropper,
    /// A real daemon (it relays honest traffic) that also publishes invalid signals in the
    /// spam phase.
    Spammer,
}

/// The loopback address of node `index`: from `first` upward, skipping the .0 and .255
/// host numbers, which some tools treat as network and broadcast addresses.
pub fn node_ip(first: Ipv4Addr, index: usize) -> Ipv4Addr {
    let [a, b, c, d] = first.octets();
    let start = u32::from(c) * 254 + u32::from(d.max(1) - 1);
    let n = start + index as u32;
    Ipv4Addr::new(
        a,
        b + (n / (254 * 256)) as u8,
        ((n / 254) % 256) as u8,
        (n % 254 + 1) as u8,
    )
}

enum Running {
    Daemon(Box<Daemon>),
    Dropper {
        handle: P2pHandle,
        task: JoinHandle<()>,
        registry: Box<Registry>,
    },
}

/// What every node of a run shares.
#[derive(Clone)]
pub struct Setup {
    /// Where the nodes' data directories go.
    pub root: PathBuf,
    /// The daemons' `--network`: `regtest`, or the path of a spec file derived from it.
    pub network_arg: String,
    /// The network's name (part of the gossip topics and protocol names).
    pub network_name: String,
    /// The daemons' periodic catch-up with a random peer.
    pub resync_interval: Duration,
    /// The signature check every daemon is given: plain verification, or the run's shared
    /// cache (`--shared-verification`).
    pub signatures: Arc<dyn SignatureCheck>,
}

/// One node of the simulated network, running or not.
pub struct ClusterNode {
    /// Its position in the topology.
    pub index: usize,
    /// What it does.
    pub role: Role,
    /// Its loopback address.
    pub ip: Ipv4Addr,
    base_dir: PathBuf,
    setup: Arc<Setup>,
    /// The p2p port, fixed at the first start so a restarted node keeps its address.
    port: Mutex<u16>,
    /// Its peer id, once started.
    peer_id: Mutex<Option<PeerId>>,
    running: Mutex<Option<Running>>,
    /// The key it runs with when it must be a particular one (a measurer's, which the spec
    /// lists); otherwise the daemon makes its own at the first start.
    key: Mutex<Option<SecretKey>>,
    /// Counters accumulated over the incarnations of the current phase.
    acc: Mutex<Counters>,
    /// The reading at the start of the current phase or incarnation.
    base: Mutex<Counters>,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode")
            .field("index", &self.index)
            .field("role", &self.role)
            .field("ip", &self.ip)
            .finish_non_exhaustive()
    }
}

/// Waits for the networking task to report its listen address and returns its port.
async fn listen_port(net: &P2pHandle) -> Result<u16, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let addrs = net.listen_addrs().await.map_err(|e| e.to_string())?;
        for addr in addrs {
            for p in addr.iter() {
                if let commons_p2p::libp2p::multiaddr::Protocol::Tcp(port) = p
                    && port != 0
                {
                    return Ok(port);
                }
            }
        }
        if Instant::now() > deadline {
            return Err("no listen address after 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl ClusterNode {
    /// A node that is not started yet, with its data under `root`.
    pub fn new(index: usize, role: Role, ip: Ipv4Addr, setup: Arc<Setup>) -> ClusterNode {
        ClusterNode {
            index,
            role,
            ip,
            base_dir: setup.root.join(format!("node-{index}")),
            setup,
            port: Mutex::new(0),
            peer_id: Mutex::new(None),
            running: Mutex::new(None),
            key: Mutex::new(None),
            acc: Mutex::new(Counters::default()),
            base: Mutex::new(Counters::default()),
        }
    }

    /// Makes this node run with `key` and listen on `port`, as a measurer the spec lists at
    /// that address must. Before its first start.
    pub fn run_as(&self, key: SecretKey, port: u16) {
        *self.key.lock().expect("key lock") = Some(key);
        *self.port.lock().expect("port lock") = port;
    }

    /// The address peers dial, once started.
    pub fn multiaddr(&self) -> Option<Multiaddr> {
        let port = *self.port.lock().expect("port lock");
        let peer = (*self.peer_id.lock().expect("peer lock"))?;
        format!("/ip4/{}/tcp/{port}/p2p/{peer}", self.ip)
            .parse()
            .ok()
    }

    /// Whether it runs.
    pub fn is_running(&self) -> bool {
        self.running.lock().expect("running lock").is_some()
    }

    /// The daemon's node core, if it is a running daemon.
    pub fn node(&self) -> Option<Arc<Node>> {
        match &*self.running.lock().expect("running lock") {
            Some(Running::Daemon(d)) => Some(d.node.clone()),
            _ => None,
        }
    }

    /// The networking handle, if it runs.
    pub fn net(&self) -> Option<P2pHandle> {
        match &*self.running.lock().expect("running lock") {
            Some(Running::Daemon(d)) => Some(d.net.clone()),
            Some(Running::Dropper { handle, .. }) => Some(handle.clone()),
            None => None,
        }
    }

    /// Starts the node (again), dialing `bootstrap`. A daemon restarted right after a
    /// shutdown may find its store still locked by a task that has not let go of it yet;
    /// that is retried for a few seconds.
    pub async fn start(&self, bootstrap: &[Multiaddr]) -> Result<(), String> {
        let port = *self.port.lock().expect("port lock");
        let listen = format!("/ip4/{}/tcp/{port}", self.ip);
        let running = match self.role {
            Role::Honest | Role::Spammer => {
                let cli = Cli {
                    datadir: Some(self.base_dir.clone()),
                    network: Some(self.setup.network_arg.clone()),
                    listen: Some(vec![listen.parse().map_err(|e| format!("{listen}: {e}"))?]),
                    bootstrap: Some(bootstrap.to_vec()),
                    rpc_bind: Some(SocketAddr::new(IpAddr::V4(self.ip), 0)),
                    metrics_bind: Some(SocketAddr::new(IpAddr::V4(self.ip), 0)),
                    ..Cli::default()
                };
                let config = Config::resolve(&cli, || Ok(self.base_dir.clone()))
                    .map_err(|e| e.to_string())?;
                let key_path = config.datadir.join(commons_node::daemon::KEY_FILE);
                if let Some(key) = &*self.key.lock().expect("key lock")
                    && !key_path.exists()
                {
                    std::fs::create_dir_all(&config.datadir)
                        .and_then(|()| key.save(&key_path).map_err(std::io::Error::other))
                        .map_err(|e| format!("node {}: cannot write its key: {e}", self.index))?;
                }
                let options = Options {
                    discovery: false,
                    resync_interval: self.setup.resync_interval,
                    signatures: self.setup.signatures.clone(),
                    ..Options::default()
                };
                let mut attempt = 0;
                let daemon = loop {
                    match Daemon::start(&config, options.clone()).await {
                        Ok(d) => break d,
                        Err(e) if attempt < 50 && e.to_string().contains("database") => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(e) => return Err(format!("node {} ({}): {e}", self.index, self.ip)),
                    }
                };
                Running::Daemon(Box::new(daemon))
            }
            Role::Dropper => {
                let mut config = P2pConfig::new(self.setup.network_name.clone());
                config.listen_addrs = vec![listen.parse().map_err(|e| format!("{listen}: {e}"))?];
                config.outbound_source_ip = Some(IpAddr::V4(self.ip));
                config.bootstrap = bootstrap.to_vec();
                config.discovery = false;
                config.ip_colocation_threshold = 1_000;
                // The same key at every start, so a restart keeps the peer id.
                let secret = SecretKey::from_seed(&format!("commons-sim dropper {}", self.index));
                let keypair = commons_p2p::keypair_from_secret(&secret.secret_bytes())
                    .map_err(|e| e.to_string())?;
                let mut registry = Box::new(Registry::default());
                let (handle, mut events, task) = P2pNode::spawn(config, keypair, &mut registry)
                    .map_err(|e| format!("node {} ({}): {e}", self.index, self.ip))?;
                // Takes everything and does nothing: a gossip message without a verdict is
                // never forwarded, and a dropped response channel fails the peer's request
                // at once instead of after its timeout.
                tokio::spawn(async move {
                    while let Some(event) = events.recv().await {
                        match event {
                            P2pEvent::InboundSync { channel, .. }
                            | P2pEvent::InboundFetch { channel, .. } => drop(channel),
                            _ => {}
                        }
                    }
                });
                Running::Dropper {
                    handle,
                    task,
                    registry,
                }
            }
        };
        let net = match &running {
            Running::Daemon(d) => d.net.clone(),
            Running::Dropper { handle, .. } => handle.clone(),
        };
        let bound = listen_port(&net).await?;
        *self.port.lock().expect("port lock") = bound;
        *self.peer_id.lock().expect("peer lock") = Some(net.local_peer_id());
        *self.running.lock().expect("running lock") = Some(running);
        // A fresh registry starts at zero.
        *self.base.lock().expect("base lock") = Counters::default();
        Ok(())
    }

    /// Stops the node (a clean shutdown, as on SIGTERM), keeping its counters.
    pub async fn stop(&self, signal_topic: &str) {
        let reading = self.read_counters(signal_topic);
        let running = self.running.lock().expect("running lock").take();
        if let Some(reading) = reading {
            let base = *self.base.lock().expect("base lock");
            *self.acc.lock().expect("acc lock") += reading - base;
        }
        match running {
            Some(Running::Daemon(d)) => d.shutdown().await,
            Some(Running::Dropper { handle, task, .. }) => {
                let _ = tokio::time::timeout(Duration::from_secs(5), handle.shutdown()).await;
                let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
            }
            None => {}
        }
    }

    /// The node's counters now, if it runs.
    pub fn read_counters(&self, signal_topic: &str) -> Option<Counters> {
        let mut text = String::new();
        match &*self.running.lock().expect("running lock") {
            Some(Running::Daemon(d)) => {
                let registry = d.registry.lock().expect("registry lock");
                commons_p2p::prometheus_client::encoding::text::encode(&mut text, &registry)
                    .ok()?;
            }
            Some(Running::Dropper { registry, .. }) => {
                commons_p2p::prometheus_client::encoding::text::encode(&mut text, registry).ok()?;
            }
            None => return None,
        }
        Some(Counters::parse(&text, signal_topic))
    }

    /// Starts counting for a phase.
    pub fn begin_phase(&self, signal_topic: &str) {
        *self.acc.lock().expect("acc lock") = Counters::default();
        *self.base.lock().expect("base lock") =
            self.read_counters(signal_topic).unwrap_or_default();
    }

    /// What the node counted since [`ClusterNode::begin_phase`], over all its incarnations.
    pub fn end_phase(&self, signal_topic: &str) -> Counters {
        let mut acc = *self.acc.lock().expect("acc lock");
        if let Some(reading) = self.read_counters(signal_topic) {
            let base = *self.base.lock().expect("base lock");
            acc += reading - base;
            *self.base.lock().expect("base lock") = reading;
        }
        *self.acc.lock().expect("acc lock") = Counters::default();
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_skip_network_and_broadcast_host_numbers() {
        let first = Ipv4Addr::new(127, 0, 1, 1);
        assert_eq!(node_ip(first, 0), Ipv4Addr::new(127, 0, 1, 1));
        assert_eq!(node_ip(first, 253), Ipv4Addr::new(127, 0, 1, 254));
        assert_eq!(node_ip(first, 254), Ipv4Addr::new(127, 0, 2, 1));
        assert_eq!(node_ip(first, 1000), Ipv4Addr::new(127, 0, 4, 239));
    }
}
