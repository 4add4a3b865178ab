//! The network task (owns the swarm) and the handle the application drives it with.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use libp2p::core::Transport as _;
use libp2p::core::upgrade::Version;
use libp2p::gossipsub::{self, MessageAcceptance, MessageId, PublishError, TopicHash};
use libp2p::identity::Keypair;
use libp2p::metrics::Recorder;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, InboundRequestId, OutboundRequestId};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, identify, kad, noise, tcp};
use libp2p::{swarm::ConnectionError, yamux};

use crate::transport::SourceBoundTcp;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::behaviour::{self, Behaviour, BehaviourEvent};
use crate::config::P2pConfig;
use crate::identity::peer_xonly_key;
use crate::limits::{Decision, Limiter, Scope};
use crate::metrics::{LimitLabels, LimitedKind, P2pMetrics};
use crate::topics::TopicKind;

/// Score units taken from a peer per [`P2pHandle::penalize`] call. Eight penalties in a short
/// time put a peer under the graylist threshold (-80); the penalty halves every 10 minutes.
const APP_PENALTY: f64 = 10.0;
/// Score units taken from a peer that delivered an invalid signature
/// ([`P2pHandle::penalize_invalid`]): past the graylist threshold (-80) at once.
const INVALID_PENALTY: f64 = 100.0;
/// Half-life of application penalties.
const APP_PENALTY_HALF_LIFE: Duration = Duration::from_secs(600);
/// Listen addresses kept per peer from identify (a peer chooses what it claims, so bound it).
const MAX_PEER_LISTEN_ADDRS: usize = 16;
/// Longest agent version kept per peer.
const MAX_AGENT_VERSION_LEN: usize = 128;
/// Events kept while the application is not reading (beyond this they are dropped).
const MAX_EVENT_BACKLOG: usize = 64 * 1024;
/// What a queued event costs besides its payload (the event itself, ids, bookkeeping).
const EVENT_OVERHEAD_BYTES: usize = 256;
/// Pending commands from handles.
const COMMAND_BUFFER: usize = 256;
/// Housekeeping tick: ban expiry, penalty decay, redials.
const TICK: Duration = Duration::from_secs(1);
/// Ticks between garbage collections of idle rate limiter state.
const GC_TICKS: u64 = 60;

/// Errors of the networking layer.
#[derive(Debug, thiserror::Error)]
pub enum P2pError {
    /// The configuration was rejected.
    #[error("invalid p2p configuration: {0}")]
    Config(String),
    /// The transport could not be built.
    #[error("transport: {0}")]
    Transport(String),
    /// Listening on an address failed (e.g. address in use).
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// A dial could not be started.
    #[error("dial failed: {0}")]
    Dial(String),
    /// No connected peer subscribes to the topic. The message is not queued: the application
    /// keeps it and peers get it through sync later.
    #[error("no peers subscribed to the topic")]
    NoPeers,
    /// The same payload was already published or received (message ids are content hashes).
    #[error("duplicate message")]
    Duplicate,
    /// Publishing failed for another reason.
    #[error("publish failed: {0}")]
    Publish(String),
    /// A payload is larger than the configured limit.
    #[error("payload of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Payload size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// An outbound request failed (timeout, connection closed, unsupported, refused...).
    #[error("request failed: {0}")]
    Request(String),
    /// The response could not be sent: the request timed out or its connection closed.
    #[error("response channel closed")]
    ResponseChannelClosed,
    /// The peer does not speak the protocol asked for (an older version, say).
    #[error("the peer does not support {0}")]
    Unsupported(String),
    /// Somebody already takes this node's inbound streams of the protocol.
    #[error("inbound streams of {0} are already taken")]
    AlreadyAccepting(String),
    /// The network task has stopped.
    #[error("the p2p task has shut down")]
    Shutdown,
}

/// The application's verdict on a received gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: gossipsub forwards it to the mesh.
    Accept,
    /// Invalid: not forwarded, and the propagation source is penalised in its peer score.
    Reject,
    /// Not forwarded, no penalty (duplicate at the application level, not yet checkable...).
    Ignore,
}

impl From<Verdict> for MessageAcceptance {
    fn from(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Accept => MessageAcceptance::Accept,
            Verdict::Reject => MessageAcceptance::Reject,
            Verdict::Ignore => MessageAcceptance::Ignore,
        }
    }
}

/// The two request-response protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// `/commons/<network>/sync/1`: catch-up sync of signals, proposals, presences.
    Sync,
    /// `/commons/<network>/fetch/1`: chunked release artifact fetching.
    Fetch,
}

/// Where to send the response to an inbound request; pass it to [`P2pHandle::respond`].
/// Dropping it without responding fails the request on the remote side.
#[derive(Debug)]
pub struct ResponseChannel {
    kind: RequestKind,
    request_id: InboundRequestId,
    inner: request_response::ResponseChannel<Vec<u8>>,
}

impl ResponseChannel {
    /// The protocol the request came in on.
    pub fn kind(&self) -> RequestKind {
        self.kind
    }
}

/// What the network task tells the application.
#[derive(Debug)]
pub enum P2pEvent {
    /// A gossip message awaiting a verdict: call [`P2pHandle::report_validation`] with the
    /// `message_id` and `propagation_source`. Nothing is forwarded before that.
    Message {
        /// Topic it arrived on.
        topic: TopicKind,
        /// The payload.
        data: Vec<u8>,
        /// Content hash of `data` (SHA-256).
        message_id: MessageId,
        /// The directly connected peer that delivered it (not necessarily its author: the
        /// envelope names no author, the payload's own signature does).
        propagation_source: PeerId,
        /// IP of `propagation_source`, as seen on our connection to it.
        source_ip: Option<IpAddr>,
    },
    /// First connection to a peer established.
    PeerConnected {
        /// The peer.
        peer: PeerId,
        /// Its IP as seen on the connection (the socket address, not what the peer claims).
        remote_ip: Option<IpAddr>,
        /// Whether we dialed it.
        outbound: bool,
    },
    /// Last connection to a peer closed.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// A sync request; answer with [`P2pHandle::respond`] within the request timeout.
    InboundSync {
        /// The requesting peer.
        peer: PeerId,
        /// The request payload.
        request: Vec<u8>,
        /// Where the response goes.
        channel: ResponseChannel,
    },
    /// A fetch request; answer with [`P2pHandle::respond`] within the request timeout.
    InboundFetch {
        /// The requesting peer.
        peer: PeerId,
        /// The request payload.
        request: Vec<u8>,
        /// Where the response goes.
        channel: ResponseChannel,
    },
    /// The node listens on a new address.
    NewListenAddr(Multiaddr),
}

impl P2pEvent {
    /// The bytes a peer sent with the event (a message's or a request's payload).
    fn payload_len(&self) -> usize {
        match self {
            P2pEvent::Message { data, .. } => data.len(),
            P2pEvent::InboundSync { request, .. } | P2pEvent::InboundFetch { request, .. } => {
                request.len()
            }
            _ => 0,
        }
    }
}

/// A connected peer as reported by [`P2pHandle::peers`].
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    /// The peer.
    pub peer_id: PeerId,
    /// Its BIP340 x-only key, recovered from the peer id.
    pub xonly_key: Option<[u8; 32]>,
    /// Remote addresses of the open connections (socket addresses, not claims).
    pub addrs: Vec<Multiaddr>,
    /// Addresses the peer says it listens on (from identify; unverified).
    pub listen_addrs: Vec<Multiaddr>,
    /// IP of its oldest open connection, as seen on the socket.
    pub observed_ip: Option<IpAddr>,
    /// When its current run of connections began.
    pub connected_since: SystemTime,
    /// Whether we dialed its first connection.
    pub outbound: bool,
    /// Agent version from identify.
    pub agent_version: Option<String>,
    /// Its gossipsub peer score.
    pub gossip_score: Option<f64>,
}

type ResponseReply = oneshot::Sender<Result<Vec<u8>, P2pError>>;

#[derive(Debug)]
enum Command {
    Publish {
        topic: TopicKind,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<MessageId, P2pError>>,
    },
    Validate {
        message_id: MessageId,
        source: PeerId,
        verdict: Verdict,
        reply: oneshot::Sender<bool>,
    },
    Request {
        kind: RequestKind,
        peer: PeerId,
        data: Vec<u8>,
        reply: ResponseReply,
    },
    Respond {
        channel: ResponseChannel,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<(), P2pError>>,
    },
    Peers(oneshot::Sender<Vec<PeerInfo>>),
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    MeshPeers(TopicKind, oneshot::Sender<Vec<PeerId>>),
    Dial(Multiaddr, oneshot::Sender<Result<(), P2pError>>),
    Connect(Vec<PeerId>, Vec<Multiaddr>, oneshot::Sender<bool>),
    Penalize(PeerId, oneshot::Sender<()>),
    PenalizeInvalid(PeerId, oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// Cloneable handle to the network task. Every method that goes through the task fails with
/// [`P2pError::Shutdown`] once the task has stopped (streams fail as their connections close).
#[derive(Debug, Clone)]
pub struct P2pHandle {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
    max_request: usize,
    request_timeout: Duration,
    streams: StreamControl,
}

/// Opens and accepts streams of `fetch/2` without going through the network task: stream
/// set-up is the connection tasks' business, and the bytes never pass the swarm's loop.
#[derive(Clone)]
struct StreamControl {
    control: libp2p_stream::Control,
    fetch: StreamProtocol,
}

impl std::fmt::Debug for StreamControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamControl")
            .field("fetch", &self.fetch)
            .finish_non_exhaustive()
    }
}

impl P2pHandle {
    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    async fn call<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, P2pError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(command(tx))
            .await
            .map_err(|_| P2pError::Shutdown)?;
        rx.await.map_err(|_| P2pError::Shutdown)
    }

    /// Publishes a payload on a topic of this network; returns its message id.
    pub async fn publish(&self, topic: TopicKind, data: Vec<u8>) -> Result<MessageId, P2pError> {
        self.call(|reply| Command::Publish { topic, data, reply })
            .await?
    }

    /// Reports the verdict on a received message. Returns false if gossipsub no longer holds
    /// the message (verdict later than the validation window, or reported twice).
    pub async fn report_validation(
        &self,
        message_id: MessageId,
        propagation_source: PeerId,
        verdict: Verdict,
    ) -> Result<bool, P2pError> {
        self.call(|reply| Command::Validate {
            message_id,
            source: propagation_source,
            verdict,
            reply,
        })
        .await
    }

    /// Hands the verdict on a received message to the network task without waiting for it
    /// to be applied (only for room in the command queue): for a pipeline that must not
    /// wait for the network task between two messages.
    pub async fn send_validation(
        &self,
        message_id: MessageId,
        propagation_source: PeerId,
        verdict: Verdict,
    ) -> Result<(), P2pError> {
        // Nobody waits for the answer: the network task's send to the dropped receiver
        // fails quietly.
        let (reply, _) = oneshot::channel();
        self.commands
            .send(Command::Validate {
                message_id,
                source: propagation_source,
                verdict,
                reply,
            })
            .await
            .map_err(|_| P2pError::Shutdown)
    }

    async fn request(
        &self,
        kind: RequestKind,
        peer: PeerId,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, P2pError> {
        if data.len() > self.max_request {
            return Err(P2pError::TooLarge {
                size: data.len(),
                max: self.max_request,
            });
        }
        self.call(|reply| Command::Request {
            kind,
            peer,
            data,
            reply,
        })
        .await?
    }

    /// Sends a sync request and waits for the response (bounded by the request timeout).
    pub async fn request_sync(&self, peer: PeerId, request: Vec<u8>) -> Result<Vec<u8>, P2pError> {
        self.request(RequestKind::Sync, peer, request).await
    }

    /// Sends a fetch request and waits for the response (bounded by the request timeout).
    pub async fn request_fetch(&self, peer: PeerId, request: Vec<u8>) -> Result<Vec<u8>, P2pError> {
        self.request(RequestKind::Fetch, peer, request).await
    }

    /// Opens a `fetch/2` stream to a connected peer, within the request timeout. A peer that
    /// only speaks `fetch/1` gives [`P2pError::Unsupported`].
    pub async fn open_fetch_stream(&self, peer: PeerId) -> Result<libp2p::Stream, P2pError> {
        let mut control = self.streams.control.clone();
        let opened = control.open_stream(peer, self.streams.fetch.clone());
        match tokio::time::timeout(self.request_timeout, opened).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(libp2p_stream::OpenStreamError::UnsupportedProtocol(protocol))) => {
                Err(P2pError::Unsupported(protocol.to_string()))
            }
            Ok(Err(e)) => Err(P2pError::Request(e.to_string())),
            Err(_) => Err(P2pError::Request(
                "no stream opened within the request timeout".into(),
            )),
        }
    }

    /// The `fetch/2` streams peers open to this node, from now on; one taker at a time.
    /// Until somebody takes them, and after the taker drops them, peers are told that this
    /// node does not speak `fetch/2`. Take each stream promptly: one that arrives while the
    /// previous one waits is dropped (the peer sees it closed and asks again).
    pub fn accept_fetch_streams(&self) -> Result<libp2p_stream::IncomingStreams, P2pError> {
        let mut control = self.streams.control.clone();
        control
            .accept(self.streams.fetch.clone())
            .map_err(|_| P2pError::AlreadyAccepting(self.streams.fetch.to_string()))
    }

    /// Answers an inbound sync or fetch request, and returns once the answer was written to
    /// the peer's stream (or could not be). Until then it is in memory, so a caller that
    /// bounds how many answers it prepares at once by when this returns also bounds the
    /// memory they take, however slowly peers read.
    pub async fn respond(
        &self,
        channel: ResponseChannel,
        response: Vec<u8>,
    ) -> Result<(), P2pError> {
        let sent = self.call(|reply| Command::Respond {
            channel,
            data: response,
            reply,
        });
        tokio::time::timeout(self.request_timeout, sent)
            .await
            .map_err(|_| P2pError::Request("the peer did not take the response in time".into()))??
    }

    /// The connected peers.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, P2pError> {
        self.call(Command::Peers).await
    }

    /// The addresses the node listens on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, P2pError> {
        self.call(Command::ListenAddrs).await
    }

    /// The peers in our gossipsub mesh for a topic.
    pub async fn mesh_peers(&self, topic: TopicKind) -> Result<Vec<PeerId>, P2pError> {
        self.call(|reply| Command::MeshPeers(topic, reply)).await
    }

    /// Starts dialing an address (with or without `/p2p/<peer id>`). Success means the dial
    /// started; a `PeerConnected` event follows if it succeeds.
    pub async fn dial(&self, addr: Multiaddr) -> Result<(), P2pError> {
        self.call(|reply| Command::Dial(addr, reply)).await?
    }

    /// Makes sure the node is connected to one peer that may have any of the ids `peer`
    /// (the candidates of one key, see [`crate::peer_ids_of_key`]): when none is connected,
    /// dials `addrs` and, with discovery on, the ids at the addresses kad knows, and starts a
    /// kad lookup of each so a later call finds them. Returns whether one was connected
    /// already.
    pub async fn connect(
        &self,
        peer: Vec<PeerId>,
        addrs: Vec<Multiaddr>,
    ) -> Result<bool, P2pError> {
        self.call(|reply| Command::Connect(peer, addrs, reply))
            .await
    }

    /// Reports application-level misbehaviour of a peer (malformed sync response, bad chunk):
    /// lowers its gossipsub score and counts as a rate-limit violation, so repeated
    /// misbehaviour gets it banned.
    pub async fn penalize(&self, peer: PeerId) -> Result<(), P2pError> {
        self.call(|reply| Command::Penalize(peer, reply)).await
    }

    /// Reports a peer that delivered a message whose signature does not verify: no honest
    /// peer does (every node verifies before it forwards), so its score drops below the
    /// graylist at once and it is banned, as it would be for repeated misbehaviour.
    pub async fn penalize_invalid(&self, peer: PeerId) -> Result<(), P2pError> {
        self.call(|reply| Command::PenalizeInvalid(peer, reply))
            .await
    }

    /// Stops the network task, closing all connections; returns once it has stopped.
    pub async fn shutdown(&self) -> Result<(), P2pError> {
        self.call(Command::Shutdown).await
    }
}

#[derive(Debug)]
struct Connection {
    id: ConnectionId,
    remote_addr: Multiaddr,
    ip: Option<IpAddr>,
}

#[derive(Debug)]
struct PeerState {
    connections: Vec<Connection>,
    connected_since: SystemTime,
    outbound: bool,
    listen_addrs: Vec<Multiaddr>,
    agent_version: Option<String>,
}

impl PeerState {
    fn ip(&self) -> Option<IpAddr> {
        self.connections.iter().find_map(|c| c.ip)
    }
}

/// The network task: owns the swarm, executes commands and reports events.
///
/// Build it with [`P2pNode::new`] and drive it with [`P2pNode::run`], or do both with
/// [`P2pNode::spawn`].
pub struct P2pNode {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<P2pEvent>,
    /// Events waiting for room in `events`, in arrival order, each with the bytes it counts
    /// against `config.event_backlog_bytes` (0 for control events, which are never shed).
    /// The task never blocks on a slow application: beyond the byte budget, gossip messages
    /// and requests are shed.
    backlog: VecDeque<(P2pEvent, usize)>,
    /// Bytes of sheddable events in `backlog`.
    backlog_bytes: usize,
    config: P2pConfig,
    topics: HashMap<TopicHash, TopicKind>,
    topic_hashes: HashMap<TopicKind, TopicHash>,
    peers: HashMap<PeerId, PeerState>,
    pending: HashMap<(RequestKind, OutboundRequestId), ResponseReply>,
    /// Responses handed to libp2p whose sending has not finished yet.
    responding: HashMap<(RequestKind, InboundRequestId), oneshot::Sender<Result<(), P2pError>>>,
    limiter: Limiter,
    app_penalties: HashMap<PeerId, f64>,
    libp2p_metrics: libp2p::metrics::Metrics,
    metrics: P2pMetrics,
    identify_version: String,
    kad_protocol: StreamProtocol,
    ticks: u64,
}

impl std::fmt::Debug for P2pNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P2pNode")
            .field("local_peer_id", self.swarm.local_peer_id())
            .field("network", &self.config.network)
            .field("peers", &self.peers.len())
            .finish_non_exhaustive()
    }
}

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

fn split_peer_id(addr: &Multiaddr) -> (Multiaddr, Option<PeerId>) {
    let mut base = addr.clone();
    match base.pop() {
        Some(Protocol::P2p(peer)) => (base, Some(peer)),
        _ => (addr.clone(), None),
    }
}

/// Whether a claimed listen address is worth storing and dialing.
fn is_dialable(addr: &Multiaddr) -> bool {
    let mut has_tcp = false;
    for protocol in addr.iter() {
        match protocol {
            Protocol::Ip4(ip) if ip.is_unspecified() => return false,
            Protocol::Ip6(ip) if ip.is_unspecified() => return false,
            Protocol::Tcp(0) => return false,
            Protocol::Tcp(_) => has_tcp = true,
            _ => {}
        }
    }
    has_tcp
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl P2pNode {
    /// Builds the swarm, starts listening and dials the bootstrap peers. Must be called from
    /// within a Tokio runtime (the listeners register with its reactor).
    ///
    /// libp2p's metrics (swarm, identify, kad, ping, gossipsub, bandwidth) are registered in
    /// `registry` under the `libp2p` prefix, this crate's own under `commons_p2p_`.
    pub fn new(
        config: P2pConfig,
        keypair: Keypair,
        registry: &mut Registry,
    ) -> Result<(Self, P2pHandle, mpsc::Receiver<P2pEvent>), P2pError> {
        config.validate().map_err(P2pError::Config)?;
        let limiter = Limiter::new(&config.rate_limits).map_err(P2pError::Config)?;
        let kad_protocol = behaviour::kad_protocol(&config.network).map_err(P2pError::Config)?;
        let libp2p_metrics = libp2p::metrics::Metrics::new(registry);
        let behaviour = Behaviour::new(
            &keypair,
            &config,
            registry.sub_registry_with_prefix("libp2p"),
        )
        .map_err(P2pError::Config)?;
        let metrics = P2pMetrics::register(registry);

        let idle_timeout = config.idle_connection_timeout;
        let mut swarm = SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_other_transport(|keypair| {
                let tcp = SourceBoundTcp::new(
                    tcp::Config::default().nodelay(true),
                    config.outbound_source_ip,
                );
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                    tcp.upgrade(Version::V1)
                        .authenticate(noise::Config::new(keypair)?)
                        .multiplex(yamux::Config::default()),
                )
            })
            .map_err(|e| P2pError::Transport(e.to_string()))?
            .with_bandwidth_metrics(registry)
            .with_behaviour(|_| behaviour)
            .map_err(|e| match e {})?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle_timeout))
            .build();

        for addr in &config.listen_addrs {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| P2pError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
        }

        let topics: HashMap<TopicHash, TopicKind> = TopicKind::ALL
            .iter()
            .map(|kind| (kind.topic(&config.network).hash(), *kind))
            .collect();
        let topic_hashes = topics
            .iter()
            .map(|(hash, kind)| (*kind, hash.clone()))
            .collect();
        let (command_tx, command_rx) = mpsc::channel(COMMAND_BUFFER);
        let (event_tx, event_rx) = mpsc::channel(config.event_buffer);
        let handle = P2pHandle {
            commands: command_tx,
            local_peer_id: *swarm.local_peer_id(),
            max_request: config.max_request_size,
            request_timeout: config.request_timeout,
            streams: StreamControl {
                control: swarm.behaviour().streams.new_control(),
                fetch: behaviour::fetch_stream_protocol(&config.network)
                    .map_err(P2pError::Config)?,
            },
        };
        let mut node = Self {
            swarm,
            commands: command_rx,
            events: event_tx,
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            identify_version: behaviour::identify_protocol_version(&config.network),
            kad_protocol,
            config,
            topics,
            topic_hashes,
            peers: HashMap::new(),
            pending: HashMap::new(),
            responding: HashMap::new(),
            limiter,
            app_penalties: HashMap::new(),
            libp2p_metrics,
            metrics,
            ticks: 0,
        };
        node.dial_bootstrap(true);
        Ok((node, handle, event_rx))
    }

    /// [`P2pNode::new`], then runs the task on the current Tokio runtime.
    pub fn spawn(
        config: P2pConfig,
        keypair: Keypair,
        registry: &mut Registry,
    ) -> Result<(P2pHandle, mpsc::Receiver<P2pEvent>, JoinHandle<()>), P2pError> {
        let (node, handle, events) = Self::new(config, keypair, registry)?;
        Ok((handle, events, tokio::spawn(node.run())))
    }

    /// Runs until [`P2pHandle::shutdown`] is called or every handle is dropped.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A permit borrows its sender for as long as select! keeps the branch outputs, which
        // would conflict with the handlers' `&mut self`; a second sender avoids that.
        let events = self.events.clone();
        let shutdown_reply = loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown(reply)) => break Some(reply),
                    Some(command) => self.on_command(command),
                    None => break None,
                },
                permit = events.reserve(), if !self.backlog.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some((event, bytes)) = self.backlog.pop_front() {
                            self.backlog_bytes -= bytes;
                            permit.send(event);
                        }
                    }
                    // The application dropped its receiver: nobody will read the backlog.
                    Err(_) => {
                        self.backlog.clear();
                        self.backlog_bytes = 0;
                    }
                },
                _ = tick.tick() => self.housekeeping(),
            }
        };
        info!("p2p task stopping");
        // Dropping the swarm closes every connection and listener before we confirm.
        drop(self);
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    /// Delivers an event; returns whether it was sent or queued. When the application is
    /// behind, events queue in arrival order (so a peer's messages never overtake its
    /// `PeerConnected`); sheddable events (gossip messages, inbound requests) only while the
    /// queue holds less than `event_backlog_bytes` of them, after which they are dropped so
    /// the caller can refuse them.
    fn deliver(&mut self, event: P2pEvent, sheddable: bool) -> bool {
        let event = if self.backlog.is_empty() {
            match self.events.try_send(event) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
                Err(mpsc::error::TrySendError::Full(event)) => event,
            }
        } else {
            event
        };
        let bytes = if sheddable {
            event.payload_len() + EVENT_OVERHEAD_BYTES
        } else {
            0
        };
        let over_budget = self.backlog_bytes + bytes > self.config.event_backlog_bytes;
        if self.backlog.len() >= MAX_EVENT_BACKLOG || (sheddable && over_budget) {
            self.metrics.events_dropped.inc();
            return false;
        }
        self.backlog_bytes += bytes;
        self.backlog.push_back((event, bytes));
        true
    }

    fn peer_ip(&self, peer: &PeerId) -> Option<IpAddr> {
        self.peers.get(peer).and_then(PeerState::ip)
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.libp2p_metrics.record(&event);
        match event {
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                if peer_xonly_key(&peer_id).is_none() {
                    // Only secp256k1 identities map to signing keys; nothing else belongs here.
                    debug!(peer = %peer_id, "closing connection to non-secp256k1 peer");
                    self.swarm.close_connection(connection_id);
                    return;
                }
                let remote_addr = endpoint.get_remote_address().clone();
                let ip = ip_of(&remote_addr);
                let outbound = endpoint.is_dialer();
                let is_new = !self.peers.contains_key(&peer_id);
                let state = self.peers.entry(peer_id).or_insert_with(|| PeerState {
                    connections: Vec::new(),
                    connected_since: SystemTime::now(),
                    outbound,
                    listen_addrs: Vec::new(),
                    agent_version: None,
                });
                state.connections.push(Connection {
                    id: connection_id,
                    remote_addr,
                    ip,
                });
                if is_new {
                    debug!(peer = %peer_id, ?ip, outbound, "peer connected");
                    self.metrics.connected_peers.set(self.peers.len() as i64);
                    let _ = self.deliver(
                        P2pEvent::PeerConnected {
                            peer: peer_id,
                            remote_ip: ip,
                            outbound,
                        },
                        false,
                    );
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                let Some(state) = self.peers.get_mut(&peer_id) else {
                    return;
                };
                state.connections.retain(|c| c.id != connection_id);
                if num_established == 0 {
                    self.peers.remove(&peer_id);
                    debug!(peer = %peer_id, cause = ?cause.as_ref().map(ConnectionError::to_string), "peer disconnected");
                    self.metrics.connected_peers.set(self.peers.len() as i64);
                    let _ = self.deliver(P2pEvent::PeerDisconnected { peer: peer_id }, false);
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                let _ = self.deliver(P2pEvent::NewListenAddr(address), false);
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(peer = ?peer_id, %error, "outgoing connection failed");
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                debug!(%send_back_addr, %error, "incoming connection failed");
            }
            SwarmEvent::ListenerError { error, .. } => warn!(%error, "listener error"),
            SwarmEvent::ListenerClosed {
                addresses, reason, ..
            } => {
                warn!(?addresses, ?reason, "listener closed");
            }
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(event) => {
                self.libp2p_metrics.record(&event);
                if let gossipsub::Event::Message {
                    propagation_source,
                    message_id,
                    message,
                } = event
                {
                    self.on_gossip_message(propagation_source, message_id, message);
                }
            }
            BehaviourEvent::Identify(event) => {
                self.libp2p_metrics.record(&event);
                if let identify::Event::Received { peer_id, info, .. } = event {
                    self.on_identify(peer_id, info);
                }
            }
            BehaviourEvent::Kad(event) => {
                self.libp2p_metrics.record(&event);
                if let kad::Event::RoutingUpdated {
                    peer,
                    addresses,
                    is_new_peer: true,
                    ..
                } = event
                {
                    self.maybe_dial_discovered(peer, addresses.into_vec());
                }
            }
            BehaviourEvent::Ping(event) => self.libp2p_metrics.record(&event),
            BehaviourEvent::Sync(event) => self.on_request_event(RequestKind::Sync, event),
            BehaviourEvent::Fetch(event) => self.on_request_event(RequestKind::Fetch, event),
            BehaviourEvent::Streams(()) => {}
            BehaviourEvent::Limits(never) | BehaviourEvent::Blocked(never) => match never {},
        }
    }

    fn report(&mut self, message_id: &MessageId, source: &PeerId, verdict: Verdict) -> bool {
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(message_id, source, verdict.into())
    }

    fn on_gossip_message(
        &mut self,
        propagation_source: PeerId,
        message_id: MessageId,
        message: gossipsub::Message,
    ) {
        let Some(topic) = self.topics.get(&message.topic).copied() else {
            self.report(&message_id, &propagation_source, Verdict::Ignore);
            return;
        };
        if message.data.len() > self.config.max_gossip_message_size {
            // The author's node would never have published it, so whoever relays it is faulty.
            self.report(&message_id, &propagation_source, Verdict::Reject);
            return;
        }
        let source_ip = self.peer_ip(&propagation_source);
        let (decision, scope) =
            self.limiter
                .check_gossip(propagation_source, source_ip, Instant::now());
        if decision != Decision::Allow {
            self.report(&message_id, &propagation_source, Verdict::Ignore);
            self.on_limited(propagation_source, LimitedKind::Gossip, scope, decision);
            return;
        }
        let event = P2pEvent::Message {
            topic,
            data: message.data,
            message_id: message_id.clone(),
            propagation_source,
            source_ip,
        };
        if !self.deliver(event, true) {
            self.report(&message_id, &propagation_source, Verdict::Ignore);
        }
    }

    fn on_limited(
        &mut self,
        peer: PeerId,
        kind: LimitedKind,
        scope: Option<Scope>,
        decision: Decision,
    ) {
        let scope = scope.unwrap_or(Scope::Peer).into();
        self.metrics
            .rate_limited
            .get_or_create(&LimitLabels { kind, scope })
            .inc();
        debug!(%peer, ?kind, ?scope, "rate limited");
        if decision == Decision::Ban {
            self.ban(peer, "repeatedly exceeded rate limits");
        }
    }

    fn ban(&mut self, peer: PeerId, reason: &str) {
        if self.limiter.ban(peer, Instant::now()) {
            warn!(%peer, reason, ban = ?self.config.rate_limits.ban_duration, "banning peer");
            self.metrics.peers_banned.inc();
            // Closes its connections and refuses new ones in both directions until unblocked.
            self.swarm.behaviour_mut().blocked.block_peer(peer);
            self.swarm.behaviour_mut().kad.remove_peer(&peer);
        }
    }

    fn on_identify(&mut self, peer: PeerId, info: identify::Info) {
        if info.protocol_version != self.identify_version {
            debug!(%peer, version = %info.protocol_version, "peer of another network, disconnecting");
            let _ = self.swarm.disconnect_peer_id(peer);
            return;
        }
        let addrs: Vec<Multiaddr> = info
            .listen_addrs
            .into_iter()
            .filter(is_dialable)
            .take(MAX_PEER_LISTEN_ADDRS)
            .collect();
        if self.config.discovery && info.protocols.contains(&self.kad_protocol) {
            for addr in &addrs {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, addr.clone());
            }
        }
        if let Some(state) = self.peers.get_mut(&peer) {
            state.listen_addrs = addrs;
            state.agent_version = Some(truncate(info.agent_version, MAX_AGENT_VERSION_LEN));
        }
    }

    fn maybe_dial_discovered(&mut self, peer: PeerId, addresses: Vec<Multiaddr>) {
        if !self.config.discovery
            || self.peers.len() >= self.config.target_peers
            || self.peers.contains_key(&peer)
            || self.limiter.is_banned(&peer)
            || peer == *self.swarm.local_peer_id()
        {
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .addresses(addresses)
            .build();
        if let Err(error) = self.swarm.dial(opts) {
            debug!(%peer, %error, "dialing discovered peer failed");
        }
    }

    fn on_request_event(
        &mut self,
        kind: RequestKind,
        event: request_response::Event<Vec<u8>, Vec<u8>>,
    ) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request,
                        channel,
                        request_id,
                    },
                ..
            } => {
                let ip = self.peer_ip(&peer);
                let fetch = kind == RequestKind::Fetch;
                let (decision, scope) = self.limiter.check_request(peer, ip, fetch, Instant::now());
                if decision != Decision::Allow {
                    // Dropping the channel fails the request on the remote side.
                    drop(channel);
                    self.on_limited(peer, LimitedKind::Request, scope, decision);
                    return;
                }
                let channel = ResponseChannel {
                    kind,
                    request_id,
                    inner: channel,
                };
                let event = match kind {
                    RequestKind::Sync => P2pEvent::InboundSync {
                        peer,
                        request,
                        channel,
                    },
                    RequestKind::Fetch => P2pEvent::InboundFetch {
                        peer,
                        request,
                        channel,
                    },
                };
                let _ = self.deliver(event, true);
            }
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.pending.remove(&(kind, request_id)) {
                    let _ = reply.send(Ok(response));
                }
            }
            Event::OutboundFailure {
                request_id,
                error,
                peer,
                ..
            } => {
                debug!(%peer, ?kind, %error, "outbound request failed");
                if let Some(reply) = self.pending.remove(&(kind, request_id)) {
                    let _ = reply.send(Err(P2pError::Request(error.to_string())));
                }
            }
            Event::InboundFailure {
                peer,
                error,
                request_id,
                ..
            } => {
                debug!(%peer, ?kind, %error, "inbound request failed");
                if let Some(reply) = self.responding.remove(&(kind, request_id)) {
                    let _ = reply.send(Err(P2pError::Request(error.to_string())));
                }
            }
            Event::ResponseSent { request_id, .. } => {
                if let Some(reply) = self.responding.remove(&(kind, request_id)) {
                    let _ = reply.send(Ok(()));
                }
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { topic, data, reply } => {
                let _ = reply.send(self.publish(topic, data));
            }
            Command::Validate {
                message_id,
                source,
                verdict,
                reply,
            } => {
                let known = self.report(&message_id, &source, verdict);
                if !known {
                    self.metrics.late_verdicts.inc();
                }
                let _ = reply.send(known);
            }
            Command::Request {
                kind,
                peer,
                data,
                reply,
            } => {
                let behaviour = self.swarm.behaviour_mut();
                let id = match kind {
                    RequestKind::Sync => behaviour.sync.send_request(&peer, data),
                    RequestKind::Fetch => behaviour.fetch.send_request(&peer, data),
                };
                self.pending.insert((kind, id), reply);
            }
            Command::Respond {
                channel,
                data,
                reply,
            } => {
                let key = (channel.kind, channel.request_id);
                match self.respond(channel, data) {
                    Ok(()) => {
                        self.responding.insert(key, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Command::Peers(reply) => {
                let _ = reply.send(self.peer_infos());
            }
            Command::ListenAddrs(reply) => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::MeshPeers(topic, reply) => {
                let hash = &self.topic_hashes[&topic];
                let peers = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .mesh_peers(hash)
                    .copied()
                    .collect();
                let _ = reply.send(peers);
            }
            Command::Dial(addr, reply) => {
                let result = self
                    .swarm
                    .dial(addr)
                    .map_err(|e| P2pError::Dial(e.to_string()));
                let _ = reply.send(result);
            }
            Command::Connect(candidates, addrs, reply) => {
                let _ = reply.send(self.connect(&candidates, addrs));
            }
            Command::Penalize(peer, reply) => {
                self.penalize(peer);
                let _ = reply.send(());
            }
            Command::PenalizeInvalid(peer, reply) => {
                self.penalize_invalid(peer);
                let _ = reply.send(());
            }
            Command::Shutdown(reply) => {
                // Handled by the run loop; reaching here means a logic error, so just confirm.
                let _ = reply.send(());
            }
        }
    }

    fn publish(&mut self, topic: TopicKind, data: Vec<u8>) -> Result<MessageId, P2pError> {
        let max = self.config.max_gossip_message_size;
        if data.len() > max {
            return Err(P2pError::TooLarge {
                size: data.len(),
                max,
            });
        }
        let hash = self.topic_hashes[&topic].clone();
        self.swarm
            .behaviour_mut()
            .gossipsub
            .publish(hash, data)
            .map_err(|e| match e {
                PublishError::NoPeersSubscribedToTopic => P2pError::NoPeers,
                PublishError::Duplicate => P2pError::Duplicate,
                other => P2pError::Publish(other.to_string()),
            })
    }

    fn respond(&mut self, channel: ResponseChannel, data: Vec<u8>) -> Result<(), P2pError> {
        let max = self.config.max_response_size;
        if data.len() > max {
            return Err(P2pError::TooLarge {
                size: data.len(),
                max,
            });
        }
        let behaviour = self.swarm.behaviour_mut();
        let sent = match channel.kind {
            RequestKind::Sync => behaviour.sync.send_response(channel.inner, data),
            RequestKind::Fetch => behaviour.fetch.send_response(channel.inner, data),
        };
        sent.map_err(|_| P2pError::ResponseChannelClosed)
    }

    fn penalize(&mut self, peer: PeerId) {
        self.lower_application_score(peer, |held| held - APP_PENALTY);
        if self.limiter.record_violation(peer, Instant::now()) {
            self.ban(peer, "repeated application-level misbehaviour");
        }
    }

    fn penalize_invalid(&mut self, peer: PeerId) {
        self.lower_application_score(peer, |held| held.min(0.0) - INVALID_PENALTY);
        self.ban(peer, "sent a message with an invalid signature");
    }

    /// Sets the peer's application score (what this node holds against it) to `lower` of the
    /// one held, and hands it to gossipsub.
    fn lower_application_score(&mut self, peer: PeerId, lower: impl FnOnce(f64) -> f64) {
        let penalty = self.app_penalties.entry(peer).or_insert(0.0);
        *penalty = lower(*penalty);
        let score = *penalty;
        self.swarm
            .behaviour_mut()
            .gossipsub
            .set_application_score(&peer, score);
    }

    fn peer_infos(&self) -> Vec<PeerInfo> {
        let gossipsub = &self.swarm.behaviour().gossipsub;
        let mut infos: Vec<PeerInfo> = self
            .peers
            .iter()
            .map(|(peer, state)| PeerInfo {
                peer_id: *peer,
                xonly_key: peer_xonly_key(peer),
                addrs: state
                    .connections
                    .iter()
                    .map(|c| c.remote_addr.clone())
                    .collect(),
                listen_addrs: state.listen_addrs.clone(),
                observed_ip: state.ip(),
                connected_since: state.connected_since,
                outbound: state.outbound,
                agent_version: state.agent_version.clone(),
                gossip_score: gossipsub.peer_score(peer),
            })
            .collect();
        infos.sort_by_key(|info| info.connected_since);
        infos
    }

    fn housekeeping(&mut self) {
        let now = Instant::now();
        self.ticks += 1;
        // Responders that gave up waiting (their handle's timeout) need no answer any more.
        self.responding.retain(|_, reply| !reply.is_closed());
        for peer in self.limiter.expire_bans(now) {
            info!(%peer, "ban expired");
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
        }
        self.decay_penalties();
        if self.ticks % GC_TICKS == 0 {
            self.limiter.garbage_collect(now);
        }
        let redial_ticks = (self.config.redial_interval.as_millis() / TICK.as_millis()).max(1);
        if u128::from(self.ticks) % redial_ticks == 0 && self.peers.len() < self.config.mesh_n_low {
            self.dial_bootstrap(false);
            self.dial_known_peers();
        }
    }

    fn decay_penalties(&mut self) {
        if self.app_penalties.is_empty() {
            return;
        }
        let factor = 0.5f64.powf(TICK.as_secs_f64() / APP_PENALTY_HALF_LIFE.as_secs_f64());
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        self.app_penalties.retain(|peer, penalty| {
            *penalty *= factor;
            // Below one tenth of a point the penalty no longer matters; forget it.
            let keep = *penalty < -0.1;
            gossipsub.set_application_score(peer, if keep { *penalty } else { 0.0 });
            keep
        });
    }

    /// Dials the bootstrap peers. At startup every address is dialed; later (when short of
    /// peers) addresses with a peer id are dialed only if not connected, and those without
    /// one only when the node has no peer at all, since a connected one cannot be recognised.
    fn dial_bootstrap(&mut self, startup: bool) {
        let local = *self.swarm.local_peer_id();
        let mut seeded = false;
        for addr in self.config.bootstrap.clone() {
            let (base, peer) = split_peer_id(&addr);
            let result = match peer {
                Some(peer) if peer == local || self.limiter.is_banned(&peer) => continue,
                Some(peer) => {
                    if self.config.discovery {
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .add_address(&peer, base.clone());
                        seeded = true;
                    }
                    self.swarm.dial(
                        DialOpts::peer_id(peer)
                            .condition(PeerCondition::DisconnectedAndNotDialing)
                            .addresses(vec![base])
                            .build(),
                    )
                }
                None if startup || self.peers.is_empty() => self.swarm.dial(addr.clone()),
                None => continue,
            };
            if let Err(error) = result {
                debug!(%addr, %error, "dialing bootstrap peer failed");
            }
        }
        if seeded && startup {
            // Kad also bootstraps by itself once peers enter the routing table; starting now
            // just saves the throttle delay.
            let _ = self.swarm.behaviour_mut().kad.bootstrap();
        }
    }

    /// See [`P2pHandle::connect`].
    fn connect(&mut self, candidates: &[PeerId], addrs: Vec<Multiaddr>) -> bool {
        if candidates.iter().any(|p| self.peers.contains_key(p)) {
            return true;
        }
        let local = *self.swarm.local_peer_id();
        for addr in addrs {
            if let Err(error) = self.swarm.dial(addr.clone()) {
                debug!(%addr, %error, "dialing a wanted peer failed");
            }
        }
        if self.config.discovery {
            for peer in candidates.iter().filter(|p| **p != local) {
                // Succeeds only where kad knows an address; the lookup finds one for next time.
                let _ = self.swarm.dial(
                    DialOpts::peer_id(*peer)
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build(),
                );
                self.swarm.behaviour_mut().kad.get_closest_peers(*peer);
            }
        }
        false
    }

    /// Dials peers from the kad routing table while short of peers.
    fn dial_known_peers(&mut self) {
        if !self.config.discovery {
            return;
        }
        let wanted = self.config.target_peers.saturating_sub(self.peers.len());
        let mut candidates = Vec::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for entry in bucket.iter() {
                let peer = *entry.node.key.preimage();
                if !self.peers.contains_key(&peer) {
                    candidates.push((peer, entry.node.value.clone().into_vec()));
                }
            }
        }
        for (peer, addrs) in candidates.into_iter().take(wanted) {
            self.maybe_dial_discovered(peer, addrs);
        }
    }
}
