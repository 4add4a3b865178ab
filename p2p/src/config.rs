//! Configuration of the networking layer.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use libp2p::Multiaddr;

/// A suggested TCP port for nodes that want a stable address others can bootstrap from.
pub const DEFAULT_PORT: u16 = 8733;

/// Smallest IP colocation threshold accepted: several honest nodes behind one NAT, or several
/// test nodes on one loopback address, must not be penalised for sharing an IP.
pub const MIN_IP_COLOCATION_THRESHOLD: u32 = 3;

/// A token-bucket limit: `per_second` sustained, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained number of items per second.
    pub per_second: u32,
    /// Largest number of items accepted back to back.
    pub burst: u32,
}

impl RateLimit {
    /// A limit of `per_second` sustained with bursts of `burst`.
    pub const fn new(per_second: u32, burst: u32) -> Self {
        Self { per_second, burst }
    }

    pub(crate) fn quota(self) -> Option<governor::Quota> {
        let rate = NonZeroU32::new(self.per_second)?;
        let burst = NonZeroU32::new(self.burst)?;
        Some(governor::Quota::per_second(rate).allow_burst(burst))
    }
}

/// Per-peer and per-IP limits on inbound traffic, and when a peer gets banned for exceeding them.
///
/// Only messages a peer is the first to deliver count (gossipsub drops duplicates before they
/// reach the limiter), so a well-behaved peer stays under the gossip limits unless the whole
/// network produces more than that rate. Signals and presences are sparse: the defaults are
/// two orders of magnitude above the expected rate and only stop floods.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimits {
    /// Gossip messages accepted from one peer (as propagation source).
    pub gossip_per_peer: RateLimit,
    /// Gossip messages accepted from all peers connected from one IP.
    pub gossip_per_ip: RateLimit,
    /// Sync requests served to one peer.
    pub requests_per_peer: RateLimit,
    /// Sync requests served to all peers connected from one IP.
    pub requests_per_ip: RateLimit,
    /// Artifact fetch requests (chunk lists and 1 MiB chunks) served to one peer. Well-behaved
    /// fetchers pace themselves below it (commonsd asks one peer for at most 125 chunks
    /// a second).
    pub fetches_per_peer: RateLimit,
    /// Artifact fetch requests served to all peers connected from one IP.
    pub fetches_per_ip: RateLimit,
    /// A peer with more than this many violations (throttled items or application penalties)
    /// within `violation_window` is disconnected and banned.
    pub max_violations: u32,
    /// Sliding window over which violations are counted.
    pub violation_window: Duration,
    /// How long a banned peer is refused.
    pub ban_duration: Duration,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            gossip_per_peer: RateLimit::new(50, 200),
            gossip_per_ip: RateLimit::new(100, 400),
            requests_per_peer: RateLimit::new(5, 20),
            requests_per_ip: RateLimit::new(10, 40),
            fetches_per_peer: RateLimit::new(160, 320),
            fetches_per_ip: RateLimit::new(320, 640),
            max_violations: 50,
            violation_window: Duration::from_secs(60),
            ban_duration: Duration::from_secs(30 * 60),
        }
    }
}

/// Connection limits enforced by libp2p's `connection_limits` behaviour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimitsConfig {
    /// Established connections in total, both directions.
    pub max_established: u32,
    /// Established inbound connections; kept below the total so that a flood of inbound
    /// connections cannot stop the node from dialing out.
    pub max_established_incoming: u32,
    /// Established connections per peer. Two allows a simultaneous dial from both sides.
    pub max_established_per_peer: u32,
    /// Inbound connections still in their handshake.
    pub max_pending_incoming: u32,
}

impl Default for ConnectionLimitsConfig {
    fn default() -> Self {
        Self {
            max_established: 128,
            max_established_incoming: 96,
            max_established_per_peer: 2,
            max_pending_incoming: 32,
        }
    }
}

/// Configuration of the networking layer. Start from [`P2pConfig::new`] and adjust.
#[derive(Debug, Clone, PartialEq)]
pub struct P2pConfig {
    /// Network name (from the network spec): part of the topic, protocol and kad names, so
    /// nodes of different networks never exchange messages. `[a-z0-9._-]`, at most 32 chars.
    pub network: String,
    /// Addresses to listen on, e.g. `/ip4/0.0.0.0/tcp/8733`.
    pub listen_addrs: Vec<Multiaddr>,
    /// The local address outbound connections leave from; `None` lets the operating system
    /// choose. Peers attest the address they observe on a connection, so a node that listens
    /// on one specific address of a multi-homed host (or one of several nodes on the loopback
    /// range, as on regtest) sets this to that address.
    pub outbound_source_ip: Option<IpAddr>,
    /// Bootstrap peers. An address ending in `/p2p/<peer id>` also seeds the kad routing
    /// table; one without a peer id is only dialed (identify then tells us who it is).
    pub bootstrap: Vec<Multiaddr>,
    /// Kademlia discovery: when on, the node bootstraps kad, walks the DHT periodically and
    /// dials discovered peers while it has fewer than `target_peers`. When off, it only
    /// connects to bootstrap peers and explicit dials (fixed topologies in tests), but still
    /// answers kad queries of others.
    pub discovery: bool,
    /// Number of connected peers below which discovered peers are dialed.
    pub target_peers: usize,
    /// Agent version announced over identify.
    pub agent_version: String,
    /// Largest gossip payload accepted or published, in bytes. Signals, presences, proposals
    /// and release manifests are all far smaller than the 256 KiB default.
    pub max_gossip_message_size: usize,
    /// Largest sync or fetch request, in bytes.
    pub max_request_size: usize,
    /// Largest sync or fetch response, in bytes (a sync batch or one artifact chunk).
    pub max_response_size: usize,
    /// Time for a peer to answer a request (and for the application to answer an inbound one).
    pub request_timeout: Duration,
    /// How long a connection without any open stream stays up. Long (1 hour) because signals
    /// are sparse and uptime attestations need peers to stay connected between them.
    pub idle_connection_timeout: Duration,
    /// Gossipsub heartbeat (mesh maintenance and gossip emission). 500 ms converges quickly
    /// in small and test networks at a negligible cost for sparse topics.
    pub heartbeat_interval: Duration,
    /// Time the application has to report a verdict on a received message before gossipsub
    /// forgets it (its message cache then spans `validation_window / heartbeat_interval`
    /// heartbeats). A verdict reported later has no effect.
    pub validation_window: Duration,
    /// Gossipsub `D_low`: below this many mesh peers per topic, more are grafted. 2 lets a
    /// node in a line topology (two neighbours) keep a full mesh.
    pub mesh_n_low: usize,
    /// Gossipsub `D`: target mesh degree per topic.
    pub mesh_n: usize,
    /// Gossipsub `D_high`: above this many mesh peers, some are pruned.
    pub mesh_n_high: usize,
    /// Peers sharing one IP beyond this number are penalised by gossipsub's IP colocation
    /// factor (squared surplus). At least [`MIN_IP_COLOCATION_THRESHOLD`]. Regtest networks
    /// running many nodes on loopback must raise it or whitelist the address.
    pub ip_colocation_threshold: u32,
    /// IPs exempt from the colocation penalty (e.g. 127.0.0.1 on regtest).
    pub ip_colocation_whitelist: Vec<IpAddr>,
    /// Inbound rate limits and bans.
    pub rate_limits: RateLimits,
    /// Connection limits.
    pub connection_limits: ConnectionLimitsConfig,
    /// Interval of the periodic kad random walk when `discovery` is on.
    pub kad_bootstrap_interval: Duration,
    /// How often bootstrap peers are redialed while the node has fewer than `mesh_n_low`
    /// peers (e.g. when it started before them, or lost them).
    pub redial_interval: Duration,
    /// Capacity of the event channel to the application.
    pub event_buffer: usize,
    /// Bytes of gossip messages and inbound requests (payload plus a fixed overhead each)
    /// queued inside the network task while the event channel is full. A burst waits here
    /// for the application instead of being lost: a message reported `Ignore` for lack of
    /// room counts as seen, so gossipsub would drop every later copy of it too. Beyond this
    /// budget messages are ignored and requests refused rather than stalling the task.
    pub event_backlog_bytes: usize,
}

impl P2pConfig {
    /// Defaults for a network, listening on all IPv4 interfaces at [`DEFAULT_PORT`].
    pub fn new(network: impl Into<String>) -> Self {
        let listen = format!("/ip4/0.0.0.0/tcp/{DEFAULT_PORT}")
            .parse()
            .expect("static multiaddr parses");
        Self {
            network: network.into(),
            listen_addrs: vec![listen],
            outbound_source_ip: None,
            bootstrap: Vec::new(),
            discovery: true,
            target_peers: 16,
            agent_version: concat!("commons-p2p/", env!("CARGO_PKG_VERSION")).to_owned(),
            max_gossip_message_size: 256 * 1024,
            max_request_size: 64 * 1024,
            max_response_size: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            idle_connection_timeout: Duration::from_secs(60 * 60),
            heartbeat_interval: Duration::from_millis(500),
            validation_window: Duration::from_secs(10),
            mesh_n_low: 2,
            mesh_n: 4,
            mesh_n_high: 8,
            ip_colocation_threshold: MIN_IP_COLOCATION_THRESHOLD,
            ip_colocation_whitelist: Vec::new(),
            rate_limits: RateLimits::default(),
            connection_limits: ConnectionLimitsConfig::default(),
            kad_bootstrap_interval: Duration::from_secs(5 * 60),
            redial_interval: Duration::from_secs(30),
            event_buffer: 1024,
            event_backlog_bytes: 32 * 1024 * 1024,
        }
    }

    /// Checks the settings that libp2p would reject later or that would break an invariant.
    pub fn validate(&self) -> Result<(), String> {
        let name_ok = !self.network.is_empty()
            && self.network.len() <= 32
            && self
                .network
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if !name_ok {
            return Err(format!("invalid network name {:?}", self.network));
        }
        if !(1 <= self.mesh_n_low
            && self.mesh_n_low <= self.mesh_n
            && self.mesh_n <= self.mesh_n_high)
        {
            return Err(
                "mesh parameters must satisfy 1 <= mesh_n_low <= mesh_n <= mesh_n_high".into(),
            );
        }
        if self.ip_colocation_threshold < MIN_IP_COLOCATION_THRESHOLD {
            return Err(format!(
                "ip_colocation_threshold must be at least {MIN_IP_COLOCATION_THRESHOLD}"
            ));
        }
        if self.heartbeat_interval < Duration::from_millis(50) {
            return Err("heartbeat_interval must be at least 50 ms".into());
        }
        if self.validation_window < self.heartbeat_interval {
            return Err("validation_window must be at least one heartbeat".into());
        }
        if self.max_gossip_message_size < 1024 {
            return Err("max_gossip_message_size must be at least 1 KiB".into());
        }
        if self.max_request_size == 0 || self.max_response_size == 0 {
            return Err("request and response size limits must be positive".into());
        }
        if self.request_timeout.is_zero() {
            return Err("request_timeout must be positive".into());
        }
        if self.event_buffer == 0 {
            return Err("event_buffer must be positive".into());
        }
        let limits = &self.rate_limits;
        for (name, limit) in [
            ("gossip_per_peer", limits.gossip_per_peer),
            ("gossip_per_ip", limits.gossip_per_ip),
            ("requests_per_peer", limits.requests_per_peer),
            ("requests_per_ip", limits.requests_per_ip),
            ("fetches_per_peer", limits.fetches_per_peer),
            ("fetches_per_ip", limits.fetches_per_ip),
        ] {
            if limit.quota().is_none() {
                return Err(format!(
                    "rate limit {name} must have a positive rate and burst"
                ));
            }
        }
        if limits.violation_window.is_zero() || limits.ban_duration.is_zero() {
            return Err("violation_window and ban_duration must be positive".into());
        }
        let conn = &self.connection_limits;
        if conn.max_established == 0 || conn.max_established_per_peer == 0 {
            return Err("connection limits must be positive".into());
        }
        Ok(())
    }

    /// Gossipsub message cache length in heartbeats, covering the validation window.
    pub(crate) fn history_length(&self) -> usize {
        let beats = self.validation_window.as_millis() / self.heartbeat_interval.as_millis().max(1);
        usize::try_from(beats)
            .unwrap_or(usize::MAX)
            .max(GOSSIP_HISTORY)
    }
}

impl Default for P2pConfig {
    fn default() -> Self {
        Self::new("mainnet")
    }
}

/// Heartbeats of message ids advertised in IHAVE gossip (the gossipsub default).
pub(crate) const GOSSIP_HISTORY: usize = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        P2pConfig::default().validate().unwrap();
        assert!(P2pConfig::default().history_length() >= GOSSIP_HISTORY);
    }

    #[test]
    fn rejects_bad_values() {
        let mut c = P2pConfig::new("Bad Name");
        assert!(c.validate().is_err());
        c = P2pConfig::new("regtest");
        c.ip_colocation_threshold = 2;
        assert!(c.validate().is_err());
        c = P2pConfig::new("regtest");
        c.mesh_n_low = 5;
        assert!(c.validate().is_err());
    }
}
