//! The node core: the [`Node`] type, its state and its accessors. Its jobs live beside it,
//! one file each: `restore.rs` (state from the store), `ingest.rs` (received messages),
//! `epoch.rs` (epoch work), `publish.rs` (own messages), `sync.rs` (catch-up serving and
//! client), `methods.rs` (JSON-RPC) and `metrics.rs` (the snapshot for `/metrics`).
//!
//! Everything here is independent of how messages arrive: the daemon feeds gossip and sync
//! through [`Node::ingest`], and tests call the same methods directly. The networking handle
//! is optional so the core runs without a swarm.
//!
//! Locking: one `std::sync::Mutex` guards the aggregator and the node's bookkeeping. It is
//! held only for in-memory work and the store write that records it (so the store sees writes
//! in the order the aggregator applied them), never across an `.await`, and never while a
//! signature of a peer's message is verified: verification runs on tokio's blocking pool.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use commons_aggregator::rules::{ReleaseError, verify_proposal, verify_release};
use commons_aggregator::{
    Aggregator, AttestationOutcome, Policy, Precheck, ProposalOutcome, ProposalState,
    SignalOutcome, SignalRejection, units_to_weight,
};
use commons_p2p::{P2pHandle, PeerId, TopicKind, Verdict, peer_xonly_key};
use commons_signaling::messages::{MAX_PRESENCE_ATTESTATIONS, MAX_SIGNAL_ATTESTATIONS};
use commons_signaling::{
    AttestationBody, BoundedBytes, BoundedVec, Choice, DecodeError, Hash32, MessageKind,
    NetworkSpec, PROTOCOL_VERSION, Presence, PresenceBody, Proposal, PublicKey, ReleaseBundle,
    ReleaseVersion, SecretKey, Signal, SignalBody, Signed, UptimeAttestation, WireIp,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::artifacts::ArtifactStore;
use crate::metrics::{IngestMetrics, ProposalMetrics, ReleaseMetrics, Snapshot, SnapshotSource};
use crate::releases::release_error_reason;
use crate::rpc::{self, Params, RpcError, RpcFuture, RpcHandler};
use crate::store::{Batch, Store, StoreError};
use crate::sync::{
    MAX_PAGE_ITEMS, PAGE_BYTES, SYNC_TABLES, SyncCursor, SyncItem, SyncRequest, SyncResponse,
};

/// The daemon's version, reported by `getinfo`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Unix seconds now; replaceable so tests can move time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    })
}

/// What became of a received message: the verdict for gossipsub and a short reason for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Accept (forward), Reject (penalise the sender) or Ignore.
    pub verdict: Verdict,
    /// Why, as a short snake_case code.
    pub reason: &'static str,
}

impl Outcome {
    pub(crate) fn accept() -> Self {
        Outcome {
            verdict: Verdict::Accept,
            reason: "new",
        }
    }
    pub(crate) fn reject(reason: &'static str) -> Self {
        Outcome {
            verdict: Verdict::Reject,
            reason,
        }
    }
    pub(crate) fn ignore(reason: &'static str) -> Self {
        Outcome {
            verdict: Verdict::Ignore,
            reason,
        }
    }

    /// The verdict as a metrics label.
    pub fn verdict_name(&self) -> &'static str {
        match self.verdict {
            Verdict::Accept => "accept",
            Verdict::Reject => "reject",
            Verdict::Ignore => "ignore",
        }
    }
}


/// How long this node has seen a peer online at one IP: the epochs of the uptime window in
/// which it was connected. Persisted so a restart does not reset what the node attests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// The IP the epochs were seen at; a new IP starts over.
    pub ip: Option<IpAddr>,
    /// Epochs in which the peer was connected.
    pub epochs: BTreeSet<u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct ConnectedPeer {
    pub(crate) key: Option<PublicKey>,
    pub(crate) ip: Option<IpAddr>,
}

pub(crate) struct State {
    pub(crate) agg: Aggregator,
    /// Latest presence per node: its epoch and signature, to drop repeats cheaply.
    pub(crate) presences: HashMap<PublicKey, (u64, [u8; 64])>,
    /// The release bundles held, by id.
    pub(crate) releases: HashMap<Hash32, ReleaseBundle>,
    /// The newest release version held per channel, for rollback checks.
    pub(crate) newest_release: HashMap<String, ReleaseVersion>,
    /// Overrides already persisted.
    pub(crate) overrides: HashSet<Hash32>,
    /// Connected peers.
    pub(crate) peers: HashMap<PeerId, ConnectedPeer>,
    /// Peers (by key) connected at some time during the current epoch, at the IP seen.
    pub(crate) seen_this_epoch: HashMap<PublicKey, IpAddr>,
    /// What this node observed of each peer over the window.
    pub(crate) observed: HashMap<PublicKey, Observed>,
}

impl State {
    /// The aggregator.
    pub(crate) fn agg(&self) -> &Aggregator {
        &self.agg
    }

    /// The aggregator, for this node's own messages.
    pub(crate) fn agg_mut(&mut self) -> &mut Aggregator {
        &mut self.agg
    }

    /// A release bundle held.
    pub(crate) fn release(&self, id: &Hash32) -> Option<&ReleaseBundle> {
        self.releases.get(id)
    }

    /// Whether a release bundle is held.
    pub(crate) fn holds_release(&self, id: &Hash32) -> bool {
        self.releases.contains_key(id)
    }

    /// How many peers are connected.
    pub(crate) fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// What this node observed of a peer.
    pub(crate) fn observed_peer(&self, key: &PublicKey) -> Option<&Observed> {
        self.observed.get(key)
    }
}

/// The node core. Cheap to share: hold it in an `Arc`.
pub struct Node {
    pub(crate) spec: NetworkSpec,
    pub(crate) network_id: Hash32,
    pub(crate) key: SecretKey,
    pub(crate) me: PublicKey,
    pub(crate) store: Arc<Store>,
    pub(crate) state: Mutex<State>,
    pub(crate) net: Option<P2pHandle>,
    pub(crate) metrics: IngestMetrics,
    pub(crate) clock: Clock,
    pub(crate) started: Instant,
    /// Own messages that no peer took yet (no peer subscribed), retried by the daemon.
    pub(crate) unpublished: Mutex<Vec<(TopicKind, Vec<u8>)>>,
    /// Release artifact files; absent when the node keeps no files (tests of the core).
    pub(crate) artifacts: Option<Arc<ArtifactStore>>,
    /// Counters of release handling.
    pub(crate) release_metrics: ReleaseMetrics,
    /// Wakes the artifact fetcher when a new release bundle was accepted.
    pub(crate) release_added: tokio::sync::Notify,
}

/// The most own messages kept for a retry of their publication; older ones are dropped (peers
/// still get them through catch-up sync).
pub(crate) const MAX_UNPUBLISHED: usize = 256;

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("network", &self.spec.name)
            .field("key", &self.me)
            .finish()
    }
}

pub(crate) fn meta_key(prefix: &str, bytes: &[u8; 32]) -> String {
    format!("{prefix}/{}", hex::encode(bytes))
}

pub(crate) fn hex32(key: &str, prefix: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(key.strip_prefix(prefix)?.strip_prefix('/')?, &mut out).ok()?;
    Some(out)
}

pub(crate) fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// Whether `a` replaces the presence `held` (epoch, signature): a later epoch, or the same
/// epoch and larger signature bytes, so every node keeps the same one.
pub(crate) fn presence_supersedes(epoch: u64, signature: &[u8; 64], held: &(u64, [u8; 64])) -> bool {
    (epoch, signature) > (held.0, &held.1)
}

impl Node {
    /// Builds the node and replays the store into a fresh aggregator, so a restart (also
    /// after a crash) comes back with the tallies it had.
    pub fn new(
        spec: NetworkSpec,
        key: SecretKey,
        store: Arc<Store>,
        net: Option<P2pHandle>,
        clock: Clock,
    ) -> Result<Self, StoreError> {
        let network_id = spec.network_id();
        let state = State::restore(&spec, &store, clock())?;
        Ok(Node {
            network_id,
            me: key.public_key(),
            key,
            store,
            state: Mutex::new(state),
            net,
            metrics: IngestMetrics::default(),
            clock,
            started: Instant::now(),
            unpublished: Mutex::new(Vec::new()),
            artifacts: None,
            release_metrics: ReleaseMetrics::default(),
            release_added: tokio::sync::Notify::new(),
            spec,
        })
    }

    /// Keeps release artifacts in `artifacts`: the node then fetches the artifacts of the
    /// releases it accepts, and serves them.
    pub fn with_artifacts(mut self, artifacts: ArtifactStore) -> Self {
        self.artifacts = Some(Arc::new(artifacts));
        self
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("node state lock poisoned")
    }

    /// The counters the ingest pipeline updates, to register with the metrics registry.
    pub fn ingest_metrics(&self) -> &IngestMetrics {
        &self.metrics
    }

    /// The counters of release handling.
    pub fn release_metrics(&self) -> &ReleaseMetrics {
        &self.release_metrics
    }

    /// This node's signing key (and libp2p identity).
    pub fn public_key(&self) -> PublicKey {
        self.me
    }

    /// The network spec.
    pub fn spec(&self) -> &NetworkSpec {
        &self.spec
    }

    /// The network id.
    pub fn network_id(&self) -> &Hash32 {
        &self.network_id
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The networking handle, when the node runs with a swarm.
    pub fn net(&self) -> Option<&P2pHandle> {
        self.net.as_ref()
    }

    /// Unix seconds now, by the node's clock.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// The aggregator's current epoch.
    pub fn epoch(&self) -> u64 {
        self.state().agg().epoch()
    }

    /// Runs `f` with the aggregator, for inspection.
    pub fn with_aggregator<T>(&self, f: impl FnOnce(&Aggregator) -> T) -> T {
        f(self.state().agg())
    }

    pub(crate) fn write(&self, batch: Batch) -> bool {
        match self.store.write(batch) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "store write failed");
                false
            }
        }
    }
}
