//! Wiring: data directory, key, store, swarm, node core, RPC and metrics servers, the event
//! loop that feeds gossip and sync into the node, and the epoch scheduler.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use commons_aggregator::{PlainSignatures, SignatureCheck};
use commons_p2p::{Multiaddr, P2pConfig, P2pEvent, P2pHandle, P2pNode, PeerId, TopicKind, Verdict};
use commons_signaling::{BoundedBytes, BoundedVec, PublicKey, SecretKey, UptimeAttestation};
use futures::StreamExt;
use prometheus_client::registry::Registry;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::gossip_queue::{GossipScheduler, Priority, Pushed, QueueLimits};
use tokio::task::JoinHandle;

use crate::artifacts::ArtifactStore;
use crate::config::Config;
use crate::cookie::{Cookie, CookiePerms};
use crate::methods::DaemonRpc;
use crate::metrics::{self, SharedRegistry};
use crate::node::{Clock, Node, system_clock};
use crate::rpc;
use crate::selfcheck::{self, BinaryCollector, SelfCheck, VerifyBinary};
use crate::serving::{Lane, LaneLimits};
use crate::store::{OpenFailure, Store, StoreError};
use crate::sync::{MAX_DELIVERED, Relay, SyncRequest, SyncResponse, catch_up};
use crate::topics::topic_kind;

/// The node key's file name in the network's data directory.
pub const KEY_FILE: &str = "node.key";
/// The database directory's name in the network's data directory.
pub const DB_DIR: &str = "db";
/// Gossip messages in the pipeline at once, per core: enough to keep every core verifying
/// while others are applied, few enough that a message taken in turn (see
/// [`GossipScheduler`]) finds only a handful of others ahead of it on the cores.
const INGEST_WORKERS_PER_CORE: usize = 4;
/// At most this many gossip messages in the pipeline at once, however many cores.
const MAX_INGEST_WORKERS: usize = 16;
/// Artifact chunks read from disk at once (on the blocking pool).
const MAX_CONCURRENT_FETCH_READS: usize = 8;
/// Answers to artifact fetches held at once (a chunk of up to 1 MiB each) until their peers
/// took them: 32 MiB at most, whatever the peers' reading speed.
pub const FETCH_LANE: LaneLimits = LaneLimits {
    in_flight: 32,
    queued: 256,
    // A downloading node keeps this many requests outstanding per peer.
    per_peer: crate::releases::MAX_PER_PEER,
    per_ip: 2 * crate::releases::MAX_PER_PEER,
};
/// Runs of chunks served at once on `fetch/2` streams, each holding two chunks at most (one
/// being sent, the next read ahead): 32 MiB at most. A fetcher keeps one run per peer under
/// way; a second place lets its next run start while the last one's close is on its way.
pub const FETCH_STREAM_LANE: LaneLimits = LaneLimits {
    in_flight: 16,
    queued: 64,
    per_peer: 2,
    per_ip: 4,
};
/// Catch-up pages held at once (up to about 1 MiB each) until their peers took them. A
/// catch-up asks for the next page while it checks one, so an honest peer has two under way,
/// four if it connected twice.
pub const SYNC_LANE: LaneLimits = LaneLimits {
    in_flight: 32,
    queued: 256,
    per_peer: 4,
    per_ip: 8,
};
/// Messages waiting to be relayed; beyond this, catch-up finds stop being relayed.
const RELAY_QUEUE: usize = 1024;
/// Time between two relayed messages (20 a second), well below what peers accept from one
/// peer (50 a second), so relaying never gets this node throttled.
const RELAY_INTERVAL: Duration = Duration::from_millis(50);
/// Knobs that tests and embedders may turn; the daemon uses the defaults.
#[derive(Clone)]
pub struct Options {
    /// The clock the node reads.
    pub clock: Clock,
    /// Kademlia discovery (off in tests with a fixed topology).
    pub discovery: bool,
    /// How often own messages that found no peer are published again.
    pub retry_interval: Duration,
    /// How often the node catches up with one random peer besides at each new connection,
    /// so that messages lost to a partition or a full queue still arrive.
    pub resync_interval: Duration,
    /// The check every received signature goes through ([`PlainSignatures`]: verify it).
    /// Only an embedder running many nodes in one process (the network simulator) puts a
    /// cache shared between them here; `commonsd` never does.
    pub signatures: Arc<dyn SignatureCheck>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: system_clock(),
            discovery: true,
            retry_interval: Duration::from_secs(5),
            resync_interval: Duration::from_secs(600),
            signatures: Arc::new(PlainSignatures),
        }
    }
}

/// A running daemon.
pub struct Daemon {
    /// The node core.
    pub node: Arc<Node>,
    /// The networking handle.
    pub net: P2pHandle,
    /// Where JSON-RPC listens.
    pub rpc_addr: SocketAddr,
    /// Where `/metrics` listens.
    pub metrics_addr: SocketAddr,
    /// The RPC credentials of this run.
    pub cookie: Arc<Cookie>,
    /// The metrics registry (node and libp2p).
    pub registry: SharedRegistry,
    /// Where the RPC address is recorded for `commons-cli` (removed at shutdown).
    rpc_address_file: PathBuf,
    /// Turned true by the `stop` RPC.
    stop: Arc<watch::Sender<bool>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    p2p_task: JoinHandle<()>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("node", &self.node)
            .field("rpc", &self.rpc_addr)
            .finish()
    }
}

/// Creates the data directory: mode 0700 (it holds the key and the cookie), or passable
/// (not listable) by whoever `perms` lets read the cookie.
pub fn create_datadir(dir: &Path, perms: CookiePerms) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, perms.dir_mode());
    builder
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))
}

/// The directories on the way to the cookie that those `perms` names cannot pass through:
/// the cookie's mode alone would not let them read it. The daemon does not change the
/// mode of a directory it did not create; it says which to change.
pub fn cookie_unreachable_through(config: &Config) -> Vec<(PathBuf, u32)> {
    let needed = match config.rpc_cookie_perms {
        CookiePerms::Owner => return Vec::new(),
        CookiePerms::Group => 0o010,
        CookiePerms::All => 0o001,
    };
    let mut dirs = vec![config.datadir.clone()];
    if config.base_dir != config.datadir {
        dirs.push(config.base_dir.clone());
    }
    let mut blocked = Vec::new();
    #[cfg(unix)]
    for dir in dirs {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(&dir) {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & needed == 0 {
                blocked.push((dir, mode));
            }
        }
    }
    blocked
}

/// The start-up error of a database that does not open or replay: what is wrong, naming the
/// file RocksDB names, and what the operator can do.
fn open_error(db_path: &Path, e: &StoreError) -> anyhow::Error {
    let path = db_path.display();
    match e.open_failure() {
        OpenFailure::Damaged => anyhow!(
            "the database {path} is damaged: {e}. The node does not start on a damaged database (it would run on part of its records). Keep the damaged copy and start afresh: `mv {path} {path}.damaged`, then start commonsd again; it catches up with its peers, which hold every signed message (its own signals too: it signs again only after that catch-up). See docs/OPERATING.md, \"A damaged database\""
        ),
        OpenFailure::Locked => anyhow!(
            "cannot open the database {path}: {e} (another commonsd uses this data directory)"
        ),
        OpenFailure::Other => anyhow!("cannot open the database {path}: {e}"),
    }
}

/// Loads the node key, creating it on first start.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<SecretKey> {
    if path.exists() {
        return SecretKey::load(path).map_err(|e| anyhow!("{e}"));
    }
    let key = SecretKey::generate();
    key.save(path).map_err(|e| anyhow!("{e}"))?;
    tracing::info!(path = %path.display(), key = %key.public_key(), "created a new node key");
    Ok(key)
}

/// A measurer's connection limits: sized for a network of ten thousand nodes that all stay
/// connected (the file-descriptor limit must allow it; `commonsd` warns when it does not).
/// Larger networks visit once an epoch rather than stay.
const MEASURER_CONNECTION_LIMITS: commons_p2p::ConnectionLimitsConfig =
    commons_p2p::ConnectionLimitsConfig {
        max_established: 12_000,
        max_established_incoming: 11_500,
        max_established_per_peer: 2,
        max_pending_incoming: 512,
    };

fn p2p_config(config: &Config, options: &Options, me: &PublicKey) -> P2pConfig {
    let mut p2p = P2pConfig::new(config.spec.name.clone());
    p2p.listen_addrs = config.listen.clone();
    p2p.bootstrap = config.bootstrap.clone();
    p2p.discovery = options.discovery;
    // Peers attest the address they see our connections come from. A node listening on one
    // specific address (one of several on a host, or on the loopback range on regtest)
    // must dial from it too, or peers would attest an address it does not listen on.
    p2p.outbound_source_ip = config.listen.iter().find_map(|addr| {
        addr.iter().find_map(|p| match p {
            libp2p::multiaddr::Protocol::Ip4(ip) if !ip.is_unspecified() => {
                Some(std::net::IpAddr::V4(ip))
            }
            libp2p::multiaddr::Protocol::Ip6(ip) if !ip.is_unspecified() => {
                Some(std::net::IpAddr::V6(ip))
            }
            _ => None,
        })
    });
    p2p.agent_version = format!("commonsd/{}", crate::node::VERSION);
    let versions = std::iter::once(&config.spec).chain(&config.successors);
    if versions
        .flat_map(|spec| &spec.measurers)
        .any(|m| m.key == *me)
    {
        // Every node of the network visits every measurer once an epoch.
        p2p.connection_limits = MEASURER_CONNECTION_LIMITS;
    }
    if config.spec.allow_unroutable {
        // Networks that give loopback and private addresses netgroups of their own run
        // many nodes on one host (regtest); gossipsub must not penalise them for sharing
        // an IP.
        p2p.ip_colocation_threshold = 1_000;
    }
    p2p
}

impl Daemon {
    /// Starts everything; on failure returns a one-line reason.
    pub async fn start(config: &Config, options: Options) -> anyhow::Result<Daemon> {
        if config.spec.qualification == commons_signaling::QualificationRule::Tickets {
            // Ticket admission recomputes every anchor's flow over every attestation edge
            // whenever an edge out of a ticket holder changes: fine for `commons-sim`, a lever
            // for anyone with attestations to spend on a live node.
            bail!(
                "network {}: qualification \"tickets\" is a research rule that commonsd does not run (commons-sim compares it); use \"measurers\" or \"peer-attestations\"",
                config.spec.name
            );
        }
        create_datadir(&config.datadir, config.rpc_cookie_perms)?;
        for (dir, mode) in cookie_unreachable_through(config) {
            tracing::warn!(
                "rpc-cookie-perms {}: {} has mode {mode:04o}, so they cannot reach the cookie; allow passing through it with `chmod {} {}`",
                config.rpc_cookie_perms,
                dir.display(),
                if config.rpc_cookie_perms == CookiePerms::Group {
                    "g+x"
                } else {
                    "o+x"
                },
                dir.display()
            );
        }
        // Hashed on the blocking pool while the store opens and replays.
        let hashing = (config.verify_binary != VerifyBinary::Off).then(|| {
            let datadir = config.datadir.clone();
            tokio::task::spawn_blocking(move || selfcheck::digest_running_executable(&datadir))
        });
        let key_path = config.datadir.join(KEY_FILE);
        let key_existed = key_path.exists();
        let key = load_or_create_key(&key_path)?;
        let db_path = config.datadir.join(DB_DIR);
        // RocksDB writes CURRENT when it creates a database.
        let db_existed = db_path.join("CURRENT").exists();
        let store = Arc::new(Store::open(&db_path).map_err(|e| open_error(&db_path, &e))?);
        let mut registry = Registry::default();
        let keypair =
            commons_p2p::keypair_from_secret(&key.secret_bytes()).map_err(|e| anyhow!("{e}"))?;
        let (p2p_node, net, events) = P2pNode::new(
            p2p_config(config, &options, &key.public_key()),
            keypair,
            &mut registry,
        )
        .map_err(|e| anyhow!("cannot start networking: {e}"))?;
        if let Some(newest) = config.successors.last() {
            tracing::info!(
                versions = config.successors.len() + 1,
                newest = newest.version(),
                newest_spec_id = %newest.spec_id(),
                "spec bundle checked from its anchor; later versions come into force when \
                 their rotation proposals activate"
            );
        }
        let node = Node::with_successors(
            config.spec.clone(),
            config.successors.clone(),
            key,
            store,
            Some(net.clone()),
            options.clock.clone(),
        )
        .map_err(|e| open_error(&db_path, &e))?
        .with_artifacts(ArtifactStore::open(&config.datadir).with_context(|| {
            format!(
                "cannot create the artifact directory in {}",
                config.datadir.display()
            )
        })?);
        let check = match hashing {
            None => SelfCheck::off(),
            Some(task) => SelfCheck::new(
                config.verify_binary,
                match task.await {
                    Ok(Ok(digest)) => Ok(digest),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(format!("the hashing task failed: {e}")),
                },
            ),
        };
        let node = Arc::new(
            node.with_self_check(check)
                .with_signature_check(options.signatures.clone()),
        );
        if config.sign_without_catch_up {
            node.disarm_signing_guard();
        } else if key_existed && !db_existed {
            node.arm_signing_guard()
                .map_err(|e| open_error(&db_path, &e))?;
        }
        if !node.history_verified() {
            tracing::warn!(
                "this node's key is older than its database: it signs only after a first catch-up with a peer, so that it never reuses a sequence number (see --sign-without-catch-up)"
            );
        }
        if let Some(digest) = node.self_check().digest() {
            tracing::info!(
                path = %digest.path.display(),
                sha256 = %digest.sha256,
                size = digest.size,
                cached = digest.cached,
                ms = digest.elapsed.as_millis() as u64,
                "hashed the running executable"
            );
        }
        let binary = node.refresh_binary();
        // Refused before the swarm runs, so a node that may not start never talks to peers.
        if let Some(refusal) = node.self_check().refusal(&binary, &config.datadir) {
            bail!("{refusal}");
        }
        let p2p_task = tokio::spawn(p2p_node.run());
        // The swarm reports its listen addresses a moment after it binds; wait for them so
        // that a started node answers `getinfo` with the address peers can dial.
        let listening_by = std::time::Instant::now() + Duration::from_secs(5);
        while net.listen_addrs().await.map_or(true, |a| a.is_empty())
            && std::time::Instant::now() < listening_by
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        metrics::register(
            &mut registry,
            node.ingest_metrics(),
            node.release_metrics(),
            node.clone(),
        );
        registry.register_collector(Box::new(BinaryCollector::new(node.clone())));
        let rpc_metrics = rpc::RpcMetrics::default();
        rpc_metrics.register(&mut registry);
        let registry: SharedRegistry = Arc::new(Mutex::new(registry));

        let rpc_listener = rpc::bind(config.rpc_bind).await?;
        let metrics_listener = metrics::bind(config.metrics_bind).await?;
        let rpc_addr = rpc_listener.local_addr()?;
        let metrics_addr = metrics_listener.local_addr()?;
        // The address first: a client that finds the new cookie finds the address with it.
        let rpc_address_file = commons_rpc::local::write_rpc_address(
            &config.datadir,
            rpc_addr,
            config.rpc_cookie_perms,
        )
        .with_context(|| {
            format!(
                "cannot record the RPC address in {}",
                config.datadir.display()
            )
        })?;
        let cookie = Arc::new(
            Cookie::create(&config.datadir, config.rpc_cookie_perms).with_context(|| {
                format!(
                    "cannot write the RPC cookie in {}",
                    config.datadir.display()
                )
            })?,
        );
        let stop = Arc::new(watch::channel(false).0);

        let (shutdown, shutdown_rx) = watch::channel(false);
        let (relay, relay_rx) = mpsc::channel(RELAY_QUEUE);
        let tasks = vec![
            tokio::spawn(rpc::serve(
                rpc_listener,
                cookie.clone(),
                Arc::new(DaemonRpc::new(node.clone(), stop.clone())),
                config.rpc_limits,
                rpc_metrics,
                shutdown_rx.clone(),
            )),
            tokio::spawn(metrics::serve(
                metrics_listener,
                registry.clone(),
                shutdown_rx.clone(),
            )),
            tokio::spawn(event_loop(
                node.clone(),
                net.clone(),
                events,
                relay.clone(),
                shutdown_rx.clone(),
            )),
            tokio::spawn(epoch_loop(node.clone(), net.clone(), shutdown_rx.clone())),
            tokio::spawn(crate::releases::fetch_loop(
                node.clone(),
                net.clone(),
                shutdown_rx.clone(),
            )),
            tokio::spawn(relay_loop(net.clone(), relay_rx, shutdown_rx.clone())),
            tokio::spawn(maintenance_loop(
                node.clone(),
                net.clone(),
                options.clone(),
                relay,
                shutdown_rx,
            )),
        ];
        tracing::info!(
            network = %config.spec,
            key = %node.public_key(),
            peer_id = %net.local_peer_id(),
            rpc = %rpc_addr,
            metrics = %metrics_addr,
            "commonsd started"
        );
        Ok(Daemon {
            node,
            net,
            rpc_addr,
            metrics_addr,
            cookie,
            registry,
            rpc_address_file,
            stop,
            shutdown,
            tasks,
            p2p_task,
        })
    }

    /// Resolves once a client asked the node to stop (the `stop` RPC); the caller then shuts
    /// it down as it does on SIGTERM.
    pub async fn stop_requested(&self) {
        let mut requests = self.stop.subscribe();
        crate::stopped(&mut requests).await
    }

    /// Stops accepting RPC and network work, closes connections, flushes the store and
    /// removes the cookie and the RPC address file.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            // The loops end at the signal; bound the wait so a stuck task cannot hold the
            // store open forever.
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        let _ = self.net.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.p2p_task).await;
        match self.node.store().flush() {
            Ok(()) => tracing::info!("store flushed"),
            Err(e) => tracing::error!(error = %e, "store flush failed"),
        }
        self.cookie.remove();
        if let Err(e) = std::fs::remove_file(&self.rpc_address_file)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.rpc_address_file.display(), error = %e, "could not remove the RPC address file");
        }
    }
}

/// The path of the cookie for a config (for the start-up hint).
pub fn cookie_path(config: &Config) -> PathBuf {
    config.datadir.join(crate::cookie::COOKIE_FILE)
}

async fn event_loop(
    node: Arc<Node>,
    net: P2pHandle,
    mut events: mpsc::Receiver<P2pEvent>,
    relay: Relay,
    mut shutdown: watch::Receiver<bool>,
) {
    let gossip = Arc::new(GossipScheduler::new(
        QueueLimits {
            bulk_in_flight: crate::ingest::cores(),
            ..QueueLimits::default()
        },
        |&(_, priority): &GossipKey| priority,
        node.metrics.queued.clone(),
    ));
    let workers = (crate::ingest::cores() * INGEST_WORKERS_PER_CORE).clamp(4, MAX_INGEST_WORKERS);
    for _ in 0..workers {
        tokio::spawn(ingest_worker(
            node.clone(),
            net.clone(),
            gossip.clone(),
            shutdown.clone(),
        ));
    }
    let reads = Arc::new(Semaphore::new(MAX_CONCURRENT_FETCH_READS));
    let (sync_lane, fetch_lane) = (Lane::new(SYNC_LANE), Lane::new(FETCH_LANE));
    let stream_lane = Lane::new(FETCH_STREAM_LANE);
    // Taken here, in the loop that knows each peer's IP, and promptly: a stream that arrives
    // while the previous one waits to be taken is dropped by libp2p.
    let mut fetch_streams = match net.accept_fetch_streams() {
        Ok(streams) => Some(streams),
        Err(e) => {
            tracing::error!(error = %e, "not serving fetch/2 streams");
            None
        }
    };
    // The IP of each connected peer, for the lanes' per-IP shares.
    let mut peer_ips: HashMap<PeerId, std::net::IpAddr> = HashMap::new();
    loop {
        let event = tokio::select! {
            event = events.recv() => match event {
                Some(event) => event,
                None => break,
            },
            Some((peer, stream)) = next_fetch_stream(&mut fetch_streams) => {
                serve_fetch_stream(&node, &net, &stream_lane, &reads, peer_ips.get(&peer).copied(), peer, stream);
                continue;
            }
            _ = crate::stopped(&mut shutdown) => break,
        };
        match event {
            P2pEvent::Message {
                topic,
                data,
                message_id,
                propagation_source,
                ..
            } => {
                let received = Received {
                    kind: topic_kind(topic),
                    data,
                    message_id,
                };
                let key = (propagation_source, priority_of(received.kind));
                let shed = match gossip.push(key, received) {
                    Pushed::Queued => None,
                    Pushed::Refused(shed) => Some((propagation_source, shed, "peer_queue_full")),
                    Pushed::Displaced((peer, _), shed) => Some((peer, shed, "queue_full")),
                };
                if let Some((peer, shed, cause)) = shed {
                    // Never forwarded; gossipsub remembers it as seen, so a copy from
                    // another peer is dropped too, until catch-up brings it.
                    node.metrics.gossip_shed(cause, 1);
                    let _ = net
                        .send_validation(shed.message_id, peer, Verdict::Ignore)
                        .await;
                }
            }
            P2pEvent::PeerConnected {
                peer,
                remote_ip,
                outbound,
            } => {
                tracing::debug!(%peer, ip = ?remote_ip, outbound, "peer connected");
                if let Some(ip) = remote_ip {
                    peer_ips.insert(peer, ip);
                }
                if let Some(earned) = node.peer_connected(peer, remote_ip) {
                    deliver(&net, vec![(peer, earned)]);
                }
                tokio::spawn(catch_up(node.clone(), net.clone(), relay.clone(), peer));
            }
            P2pEvent::PeerDisconnected { peer } => {
                tracing::debug!(%peer, "peer disconnected");
                peer_ips.remove(&peer);
                node.peer_disconnected(&peer);
            }
            P2pEvent::InboundSync {
                peer,
                request,
                channel,
            } => {
                // Dropping the channel refuses the request: the peer has its share under
                // way (its slow reading delays only its own requests) or the queue is full.
                let ticket = match sync_lane.admit(peer, peer_ips.get(&peer).copied()) {
                    Ok(ticket) => ticket,
                    Err(why) => {
                        tracing::debug!(%peer, limit = why.label(), "sync request refused");
                        continue;
                    }
                };
                let (node, net) = (node.clone(), net.clone());
                tokio::spawn(async move {
                    let Some(_answer) = ticket.in_flight().await else {
                        return;
                    };
                    let key = commons_p2p::peer_xonly_key(&peer).map(commons_signaling::PublicKey);
                    let (response, misbehaved) = node.serve_sync(key, &request).await;
                    if misbehaved {
                        let _ = net.penalize(peer).await;
                    }
                    if let Err(e) = net.respond(channel, response).await {
                        tracing::debug!(%peer, error = %e, "sync response not sent");
                    }
                });
            }
            P2pEvent::InboundFetch {
                peer,
                request,
                channel,
            } => {
                // Chunks are read from disk on the blocking pool, a few at a time; the answers
                // wait for their peers in a lane of their own (see `serving`).
                let ticket = match fetch_lane.admit(peer, peer_ips.get(&peer).copied()) {
                    Ok(ticket) => ticket,
                    Err(why) => {
                        tracing::debug!(%peer, limit = why.label(), "fetch request refused");
                        continue;
                    }
                };
                let reads = reads.clone();
                let (node, net) = (node.clone(), net.clone());
                tokio::spawn(async move {
                    let Some(_answer) = ticket.in_flight().await else {
                        return;
                    };
                    let Ok(read) = reads.acquire_owned().await else {
                        return;
                    };
                    let (response, misbehaved) = node.serve_fetch(&request).await;
                    drop(read);
                    if misbehaved {
                        let _ = net.penalize(peer).await;
                    }
                    if let Err(e) = net.respond(channel, response).await {
                        tracing::debug!(%peer, error = %e, "fetch response not sent");
                    }
                });
            }
            P2pEvent::NewListenAddr(addr) => tracing::info!(%addr, "listening for peers"),
        }
    }
}

/// The next `fetch/2` stream a peer opened; never, when this node does not take them.
async fn next_fetch_stream(
    streams: &mut Option<commons_p2p::IncomingStreams>,
) -> Option<(PeerId, commons_p2p::Stream)> {
    match streams {
        Some(streams) => streams.next().await,
        None => std::future::pending().await,
    }
}

/// Serves a `fetch/2` stream on a task of its own, when the peer and its IP have room in the
/// lane; otherwise the stream is dropped, which the peer sees as closed before any answer.
fn serve_fetch_stream(
    node: &Arc<Node>,
    net: &P2pHandle,
    lane: &Lane,
    reads: &Arc<Semaphore>,
    ip: Option<std::net::IpAddr>,
    peer: PeerId,
    mut stream: commons_p2p::Stream,
) {
    let ticket = match lane.admit(peer, ip) {
        Ok(ticket) => ticket,
        Err(why) => {
            tracing::debug!(%peer, limit = why.label(), "fetch stream refused");
            return;
        }
    };
    let (node, net, reads) = (node.clone(), net.clone(), reads.clone());
    tokio::spawn(async move {
        let Some(_serving) = ticket.in_flight().await else {
            return;
        };
        match node.serve_fetch_stream(&mut stream, &reads).await {
            Ok(_) => {}
            Err(crate::releases::StreamEnd::Garbage) => {
                tracing::debug!(%peer, "fetch stream with a malformed request; penalising");
                let _ = net.penalize(peer).await;
            }
            Err(end) => tracing::debug!(%peer, ?end, "fetch stream not served to its end"),
        }
    });
}

/// A gossip message waiting for its turn in the ingest pipeline.
struct Received {
    kind: commons_signaling::MessageKind,
    data: Vec<u8>,
    message_id: commons_p2p::MessageId,
}

/// Received gossip waits per propagation source and priority.
type GossipKey = (PeerId, Priority);

/// The priority of a kind of message: presences (and attestations) are the bulk every
/// node publishes at about the same moment of each epoch and only need to arrive before the
/// next boundary; what a person waits for goes first.
fn priority_of(kind: commons_signaling::MessageKind) -> Priority {
    use commons_signaling::MessageKind;
    match kind {
        MessageKind::Presence | MessageKind::Attestation => Priority::Bulk,
        MessageKind::Signal
        | MessageKind::Proposal
        | MessageKind::Release
        | MessageKind::Evidence => Priority::Urgent,
    }
}

/// Takes received gossip messages in turn (see [`GossipScheduler`]) through the pipeline and
/// reports each verdict. A message whose signature does not verify gets its sender banned
/// (no honest node forwards one: each verifies before forwarding) and the rest of its
/// queue dropped unverified.
async fn ingest_worker(
    node: Arc<Node>,
    net: P2pHandle,
    gossip: Arc<GossipScheduler<GossipKey, Received>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (key, received, waited) = tokio::select! {
            next = gossip.next() => next,
            _ = crate::stopped(&mut shutdown) => return,
        };
        node.metrics.gossip_waited(received.kind.name(), waited);
        let outcome = node.ingest(received.kind, &received.data).await;
        // Dropped before this worker takes its next message, so that no worker takes more
        // of the peer's backlog meanwhile.
        let peer = key.0;
        let dropped = if outcome.reason == commons_aggregator::Reason::BadSignature {
            // Only the queue the message came in: what waits in the other one arrived before
            // it as often as after (the peer's presences behind its signals), and the ban
            // that follows closes the peer's connections anyway.
            let dropped = gossip.punish(&key);
            node.metrics.gossip_shed("invalid_signature", dropped.len());
            Some(dropped)
        } else {
            None
        };
        gossip.done(&key);
        if outcome.verdict == Verdict::Reject {
            tracing::debug!(%peer, kind = received.kind.name(), reason = outcome.reason.label(), "rejected gossip message");
        }
        let _ = net
            .send_validation(received.message_id, peer, outcome.verdict)
            .await;
        if let Some(dropped) = dropped {
            tracing::debug!(%peer, kind = received.kind.name(), dropped = dropped.len(), "invalid signature: banning the peer and dropping its queued messages");
            let _ = net.penalize_invalid(peer).await;
            for shed in dropped {
                let _ = net
                    .send_validation(shed.message_id, peer, Verdict::Ignore)
                    .await;
            }
        }
    }
}

/// Publishes the messages catch-up found new, one every [`RELAY_INTERVAL`]. Peers that have
/// one already drop it as a duplicate before checking its signature.
async fn relay_loop(
    net: P2pHandle,
    mut queue: mpsc::Receiver<(TopicKind, Vec<u8>)>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (topic, bytes) = tokio::select! {
            item = queue.recv() => match item {
                Some(item) => item,
                None => return,
            },
            _ = crate::stopped(&mut shutdown) => return,
        };
        match net.publish(topic, bytes).await {
            Ok(_) | Err(commons_p2p::P2pError::Duplicate) => {}
            Err(e) => {
                tracing::debug!(topic = %topic, error = %e, "relaying a caught-up message failed")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RELAY_INTERVAL) => {}
            _ = crate::stopped(&mut shutdown) => return,
        }
    }
}

/// Hands each subject the attestations this node just made about it.
fn deliver(net: &P2pHandle, issued: Vec<(PeerId, UptimeAttestation)>) {
    let mut by_peer: HashMap<PeerId, Vec<BoundedBytes<{ crate::sync::MAX_ITEM_BYTES }>>> =
        HashMap::new();
    for (peer, attestation) in issued {
        if let Ok(blob) = BoundedBytes::new(attestation.encode()) {
            by_peer.entry(peer).or_default().push(blob);
        }
    }
    for (peer, blobs) in by_peer {
        let mut blobs = blobs;
        blobs.truncate(MAX_DELIVERED);
        let request = SyncRequest::Deliver {
            attestations: BoundedVec::truncating(blobs),
        }
        .encode();
        let net = net.clone();
        tokio::spawn(async move {
            match net.request_sync(peer, request).await {
                Ok(bytes) => {
                    if !matches!(
                        SyncResponse::decode(&bytes),
                        Ok(SyncResponse::Delivered { .. })
                    ) {
                        tracing::debug!(%peer, "unexpected answer to an attestation delivery");
                    }
                }
                Err(e) => tracing::debug!(%peer, error = %e, "attestation delivery failed"),
            }
        });
    }
}

/// Warns when the soft limit on open files (from `/proc/self/limits`) is below `wanted`: a
/// measurer holds a connection, so a descriptor, per node of the network.
fn warn_if_few_descriptors(wanted: u32) {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            limits
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse::<u64>().ok())
        });
    if let Some(soft) = soft.filter(|soft| *soft < u64::from(wanted)) {
        tracing::warn!(
            open_files = soft,
            wanted,
            "this node is a measurer but may open only {soft} files; raise the limit (ulimit -n, or LimitNOFILE= in its systemd unit) to serve the whole network"
        );
    }
}

/// Connects to every measurer this node is not connected to, at the addresses the spec
/// lists and, with discovery on, wherever kad finds its peer id: a node is measured only by
/// the measurers it visits in an epoch.
async fn visit_measurers(node: &Node, net: &P2pHandle) {
    for (key, addresses) in node.measurers_to_visit() {
        let addrs: Vec<Multiaddr> = addresses
            .iter()
            .filter_map(|a| match a.parse() {
                Ok(addr) => Some(addr),
                Err(e) => {
                    tracing::warn!(measurer = %key, address = %a, error = %e, "unusable measurer address in the spec");
                    None
                }
            })
            .collect();
        match net
            .connect(commons_p2p::peer_ids_of_key(&key.0), addrs)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::debug!(measurer = %key, "visiting a measurer"),
            Err(e) => tracing::debug!(measurer = %key, error = %e, "cannot visit a measurer"),
        }
    }
}

/// Sleeps until the node's clock reaches `target` (Unix seconds): in one sleep up to a second
/// before it, then in short steps, so that a clock a test moves is followed too.
async fn sleep_until(node: &Node, target: u64, shutdown: &mut watch::Receiver<bool>) -> bool {
    loop {
        let now = node.now();
        if now >= target {
            return true;
        }
        let wait = if target - now > 1 {
            Duration::from_secs(target - now - 1)
        } else {
            Duration::from_millis(50)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = crate::stopped(shutdown) => return false,
        }
    }
}

/// How long after its epoch work a node publishes its presence: half an epoch, so that the
/// attestations peers made at the boundary have arrived, plus a share of a quarter epoch
/// drawn from the node's key and the epoch. Every node computes the same boundaries: without
/// the spread every presence of the network arrives at every node, and is verified, in the
/// same instant, and a signal cast then waits behind all of them (on 20 loopback nodes, 0.2
/// to 0.4 s instead of 30 ms). Still well before the next boundary, where the attestations
/// the presence carries must be in.
fn presence_delay(epoch_secs: u64, key: &PublicKey, epoch: u64) -> Duration {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"commons presence delay")
        .chain_update(key.0)
        .chain_update(epoch.to_be_bytes())
        .finalize();
    let draw = u64::from_be_bytes(digest[..8].try_into().expect("32-byte digest"));
    let share = draw as f64 / (u64::MAX as f64 + 1.0);
    Duration::from_secs_f64(epoch_secs as f64 * (0.5 + 0.25 * share))
}

/// Sleeps until the next epoch boundary by the node's clock, does the epoch work, and
/// publishes the node's presence half to three quarters of an epoch later
/// ([`presence_delay`]), once the attestations peers made at the boundary arrived.
async fn epoch_loop(node: Arc<Node>, net: P2pHandle, mut shutdown: watch::Receiver<bool>) {
    let epoch_secs = node.spec().epoch_secs.max(1);
    if node.is_measurer() {
        warn_if_few_descriptors(MEASURER_CONNECTION_LIMITS.max_established);
    }
    visit_measurers(&node, &net).await;
    loop {
        let next = (node.spec().epoch_at(node.now()) + 1) * epoch_secs;
        if !sleep_until(&node, next, &mut shutdown).await {
            return;
        }
        let epoch = node.spec().epoch_at(node.now());
        let issued = node.on_epoch(epoch);
        deliver(&net, issued);
        visit_measurers(&node, &net).await;
        let delay = presence_delay(epoch_secs, &node.public_key(), epoch);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = crate::stopped(&mut shutdown) => return,
        }
        node.publish_presence(epoch).await;
    }
}

/// Retries own messages that found no peer, and now and then catches up with a random peer.
async fn maintenance_loop(
    node: Arc<Node>,
    net: P2pHandle,
    options: Options,
    relay: Relay,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut retry = tokio::time::interval(options.retry_interval);
    let mut resync = tokio::time::interval(options.resync_interval);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Both fire at once on the first tick; the connections made at start catch up anyway.
    resync.tick().await;
    let mut resyncs = 0usize;
    loop {
        tokio::select! {
            _ = retry.tick() => {
                node.retry_store();
                if node.take_store_recovered() {
                    // Messages refused while the disk was full come back from the peers.
                    for peer in node.connected_peers() {
                        tokio::spawn(catch_up(node.clone(), net.clone(), relay.clone(), peer));
                    }
                }
                let sent = node.retry_unpublished().await;
                if sent > 0 {
                    tracing::debug!(sent, "published own messages that were waiting for peers");
                }
            }
            _ = resync.tick() => {
                let peers = node.connected_peers();
                if !peers.is_empty() {
                    // Which peer does not matter much; take them in turn.
                    resyncs = resyncs.wrapping_add(1);
                    let pick = peers[resyncs % peers.len()];
                    tokio::spawn(catch_up(node.clone(), net.clone(), relay.clone(), pick));
                }
            }
            _ = crate::stopped(&mut shutdown) => return,
        }
    }
}

/// Listens for SIGINT and SIGTERM from the moment it is called (in the runtime), and waits
/// for one when awaited. Called before the node starts: a SIGTERM that came before anyone
/// listened (systemd stopping a node that just said it was ready) would kill the process
/// with no clean shutdown.
pub fn wait_for_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let listeners = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        )
    };
    async move {
        #[cfg(unix)]
        match listeners {
            (Ok(mut term), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }
            (term, interrupt) => {
                if let Some(e) = term.err().or(interrupt.err()) {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM or SIGINT");
                }
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presences_spread_over_the_second_quarter_of_an_epoch_after_its_middle() {
        let keys: Vec<PublicKey> = (0..200)
            .map(|i| SecretKey::from_seed(&format!("node {i}")).public_key())
            .collect();
        let delays: Vec<Duration> = keys.iter().map(|k| presence_delay(2, k, 7)).collect();
        for d in &delays {
            assert!(
                *d >= Duration::from_secs(1) && *d < Duration::from_millis(1500),
                "{d:?}"
            );
        }
        // The same node and epoch always give the same moment; another epoch, another one.
        assert_eq!(presence_delay(2, &keys[0], 7), delays[0]);
        assert_ne!(presence_delay(2, &keys[0], 8), delays[0]);
        // Spread: each tenth of the range holds some of the 200 nodes.
        let mut tenths = [0usize; 10];
        for d in &delays {
            tenths[((d.as_secs_f64() - 1.0) / 0.05) as usize] += 1;
        }
        assert!(tenths.iter().all(|&n| n > 0), "{tenths:?}");
        // A day's epoch: between 12 and 18 hours.
        let day = presence_delay(86_400, &keys[1], 20_000);
        assert!(day >= Duration::from_secs(43_200) && day < Duration::from_secs(64_800));
    }
}
