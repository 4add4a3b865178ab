//! The node core: the [`Node`] type, its state and its accessors. Its jobs live beside it,
//! one file each: `restore.rs` (state from the store), `ingest.rs` (received messages),
//! `epoch.rs` (epoch work), `publish.rs` (own messages), `sync.rs` (catch-up serving and
//! client), `methods.rs` (JSON-RPC) and `metrics.rs` (the snapshot for `/metrics`).
//!
//! Everything here is independent of how messages arrive: the daemon feeds gossip and sync
//! through [`Node::ingest`], and tests call the same methods directly. The networking handle
//! is optional so the core runs without a swarm.
//!
//! Locking: one `std::sync::Mutex` guards the intake (with the aggregator) and the node's
//! bookkeeping. It is held only for in-memory work and the store write that records it (so
//! the store sees writes in the order the intake applied them), never across an `.await`,
//! never while a signature of a peer's message is verified (verification runs on tokio's
//! blocking pool) and never for a scan of the store.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use commons_aggregator::{Aggregator, Intake, PlainSignatures, Reason, SignatureCheck};
use commons_p2p::{P2pHandle, Verdict};
use commons_signaling::{
    Hash32, NetworkSpec, PublicKey, ReleaseBundle, ReleaseVersion, SecretKey, UptimeAttestation,
};

use crate::artifacts::ArtifactStore;
use crate::epoch::UptimeObserver;
use crate::metrics::{IngestMetrics, ReleaseMetrics};
use crate::releases::{ReleaseHost, Releases};
use crate::selfcheck::{BinarySource, BinaryStatus, SelfCheck};
use crate::store::{Batch, Store, StoreError};

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

/// What became of a received message: the verdict for gossipsub and the reason for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Accept (forward), Reject (penalise the sender) or Ignore.
    pub verdict: Verdict,
    /// Why, from the intake's vocabulary (`reason.label()` for logs and metrics).
    pub reason: Reason,
}

impl Outcome {
    /// The outcome of a reason: its verdict, mapped to the gossip layer's.
    pub fn of(reason: Reason) -> Self {
        Outcome {
            verdict: crate::ingest::gossip_verdict(reason),
            reason,
        }
    }

    /// The verdict as a metrics label.
    pub fn verdict_name(&self) -> &'static str {
        self.reason.verdict().label()
    }
}

pub use crate::epoch::Observed;

pub(crate) struct State {
    /// The decision about every received message, with the aggregator, the presence book
    /// and the release book.
    pub(crate) intake: Intake,
    /// Overrides already persisted.
    pub(crate) overrides: HashSet<Hash32>,
    /// What this node sees of its peers.
    pub(crate) observer: UptimeObserver,
    /// On a measurer: the latest attestation it issued about each node, kept for the
    /// window so a node that visits gets what it earned (empty on other nodes).
    pub(crate) measured: HashMap<PublicKey, UptimeAttestation>,
    /// Rotation proposals naming a spec version this node does not hold that it already
    /// warned of in its log, so each is logged once a run.
    pub(crate) warned_rotations: HashSet<Hash32>,
}

impl State {
    /// The aggregator.
    pub(crate) fn agg(&self) -> &Aggregator {
        self.intake.aggregator()
    }

    /// The aggregator, for this node's own messages.
    pub(crate) fn agg_mut(&mut self) -> &mut Aggregator {
        self.intake.aggregator_mut()
    }

    /// A release bundle held.
    pub(crate) fn release(&self, id: &Hash32) -> Option<&ReleaseBundle> {
        self.intake.releases().get(id)
    }

    /// How many peers are connected.
    pub(crate) fn peer_count(&self) -> usize {
        self.observer.peer_count()
    }

    /// What this node observed of a peer.
    pub(crate) fn observed_peer(&self, key: &PublicKey) -> Option<&Observed> {
        self.observer.observed(key)
    }
}

/// The node core. Cheap to share: hold it in an `Arc`.
pub struct Node {
    /// The network's first spec; the version in force is the aggregator's.
    pub(crate) spec: Arc<NetworkSpec>,
    /// The measurers of every spec version the node holds: it measures, and is measured by,
    /// the measurers of versions not yet in force too, so that a rotated-in measurer's
    /// attestations are there when its version comes into force.
    pub(crate) measurers: Vec<commons_signaling::spec::MeasurerSpec>,
    pub(crate) network_id: Hash32,
    pub(crate) key: SecretKey,
    pub(crate) me: PublicKey,
    pub(crate) store: Arc<Store>,
    pub(crate) state: Mutex<State>,
    pub(crate) net: Option<P2pHandle>,
    pub(crate) metrics: IngestMetrics,
    pub(crate) clock: Clock,
    pub(crate) started: Instant,
    /// Own messages that no peer took yet (no peer subscribed), retried by the daemon; the
    /// lock is held while publishing, so that own messages go out in the order they were made.
    pub(crate) unpublished: tokio::sync::Mutex<crate::publish::Outbox>,
    /// Release artifacts and their counters.
    pub(crate) releases: Releases,
    /// The self-check of the running executable (`--verify-binary`).
    pub(crate) binary: SelfCheck,
    /// What received signatures are checked with (see [`Node::with_signature_check`]).
    pub(crate) signatures: Arc<dyn SignatureCheck>,
    /// The recount files `exportproposal` is serving.
    pub(crate) exports: crate::export::Exports,
    /// The signing guard is armed: this node may have signed before with sequence numbers
    /// its store does not hold (see [`Node::cast_signal`]).
    pub(crate) history_unverified: std::sync::atomic::AtomicBool,
    /// Woken whenever what the node holds may have changed (messages applied, an epoch
    /// boundary): what `waitforsigners` waits on.
    pub(crate) changed: tokio::sync::Notify,
    /// The attestations this node's last published presence carried (see
    /// [`Node::signal_attestations`]).
    pub(crate) presence_carried: Mutex<Vec<UptimeAttestation>>,
}

/// The most own messages kept for a retry of their publication; older ones are dropped (peers
/// still get them through catch-up sync).
pub(crate) const MAX_UNPUBLISHED: usize = 256;

impl ReleaseHost for Node {
    fn releases(&self) -> &Releases {
        &self.releases
    }

    fn held_releases(&self) -> Vec<(Hash32, ReleaseBundle)> {
        let mut all: Vec<(Hash32, ReleaseBundle)> = self
            .state()
            .intake
            .releases()
            .iter()
            .map(|(id, b)| (*id, b.clone()))
            .collect();
        all.sort_by(|a, b| {
            (a.1.body.channel.as_str(), &b.1.body.release)
                .cmp(&(b.1.body.channel.as_str(), &a.1.body.release))
        });
        all
    }

    fn newest_release(&self, channel: &str) -> Option<ReleaseVersion> {
        self.state().intake.releases().newest(channel).cloned()
    }

    fn now(&self) -> u64 {
        Node::now(self)
    }

    fn spec(&self) -> &NetworkSpec {
        &self.spec
    }

    fn connected_peers(&self) -> Vec<commons_p2p::PeerId> {
        Node::connected_peers(self)
    }

    fn release_verified(&self, _bundle: &ReleaseBundle) {
        // The digest is known; this is a lookup, logged if the status changes.
        self.refresh_binary();
    }
}

impl BinarySource for Node {
    fn binary_status(&self) -> BinaryStatus {
        self.refresh_binary()
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("network", &self.spec.name)
            .field("key", &self.me)
            .finish()
    }
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
        Self::with_successors(spec, Vec::new(), key, store, net, clock)
    }

    /// [`Node::new`] for a network whose spec bundle holds later versions (`successors`,
    /// checked from the anchor): each comes into force when its rotation proposal activates,
    /// also while replaying the store, so a restart comes back under the same version.
    pub fn with_successors(
        spec: NetworkSpec,
        successors: Vec<NetworkSpec>,
        key: SecretKey,
        store: Arc<Store>,
        net: Option<P2pHandle>,
        clock: Clock,
    ) -> Result<Self, StoreError> {
        let network_id = spec.network_id();
        let mut measurers = spec.measurers.clone();
        for later in &successors {
            for measurer in &later.measurers {
                if !measurers.iter().any(|m| m.key == measurer.key) {
                    measurers.push(measurer.clone());
                }
            }
        }
        let state = State::restore(&spec, successors, key.public_key(), &store, clock())?;
        let history_unverified = store.history_unverified()?;
        Ok(Node {
            history_unverified: std::sync::atomic::AtomicBool::new(history_unverified),
            changed: tokio::sync::Notify::new(),
            presence_carried: Mutex::new(Vec::new()),
            measurers,
            network_id,
            me: key.public_key(),
            key,
            store,
            state: Mutex::new(state),
            net,
            metrics: IngestMetrics::default(),
            clock,
            started: Instant::now(),
            unpublished: tokio::sync::Mutex::new(crate::publish::Outbox::default()),
            releases: Releases::without_artifacts(),
            binary: SelfCheck::off(),
            signatures: Arc::new(PlainSignatures),
            exports: Default::default(),
            spec: Arc::new(spec),
        })
    }

    /// Checks received signatures through `check` instead of verifying each one itself: for
    /// an embedder running many nodes in one process, which may share one cache of
    /// verified signatures between them. The node's decisions stay its own.
    pub fn with_signature_check(mut self, check: Arc<dyn SignatureCheck>) -> Self {
        self.signatures = check;
        self
    }

    /// Keeps release artifacts in `artifacts`: the node then fetches the artifacts of the
    /// releases it accepts, and serves them.
    pub fn with_artifacts(mut self, artifacts: ArtifactStore) -> Self {
        self.releases = Releases::with_artifacts(artifacts);
        self
    }

    /// Checks the running executable against the verified releases with `check`
    /// (`--verify-binary`).
    pub fn with_self_check(mut self, check: SelfCheck) -> Self {
        self.binary = check;
        self
    }

    /// The self-check of the running executable.
    pub fn self_check(&self) -> &SelfCheck {
        &self.binary
    }

    /// The executable's status against the releases held now, logged when it changed.
    pub fn refresh_binary(&self) -> BinaryStatus {
        self.binary.refresh(self)
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
        self.releases.metrics()
    }

    /// The node's artifact files, when it keeps them.
    pub fn artifact_store(&self) -> Option<&Arc<ArtifactStore>> {
        self.releases.artifact_store()
    }

    /// Per channel, the newest release whose artifacts are all verified.
    pub fn newest_verified_releases(&self) -> Vec<(String, String)> {
        self.releases.newest_verified_releases(self)
    }

    /// Answers a peer's fetch request; the flag says whether the request was garbage.
    pub async fn serve_fetch(&self, request: &[u8]) -> (Vec<u8>, bool) {
        self.releases.serve_fetch(request).await
    }

    /// Serves a peer's `fetch/2` stream (see [`Releases::serve_fetch_stream`]); how many
    /// chunks it asked for.
    pub async fn serve_fetch_stream(
        &self,
        stream: &mut commons_p2p::Stream,
        reads: &Arc<tokio::sync::Semaphore>,
    ) -> Result<usize, crate::releases::StreamEnd> {
        self.releases.serve_fetch_stream(stream, reads).await
    }

    /// Deletes the partial downloads of superseded and expired releases that no release
    /// still fetching shares; how many.
    pub fn prune_abandoned_downloads(&self) -> usize {
        self.releases.prune_abandoned_downloads(self)
    }

    /// A release as the RPC shows it.
    pub(crate) fn release_answer(
        &self,
        id: &Hash32,
        bundle: &ReleaseBundle,
    ) -> commons_rpc::Release {
        self.releases.release_answer(self, id, bundle)
    }

    /// Gives the verified artifacts of a release their names under `releases/`.
    pub(crate) fn link_named(&self, bundle: &ReleaseBundle) {
        self.releases.link_named(bundle);
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

    /// Writes a batch the node applied in memory; whether it is on disk now. A batch that
    /// cannot be written waits in the store for the disk (see [`Store::write`]); the first
    /// failure is logged as an error, those while the store stays degraded only at debug.
    pub(crate) fn write(&self, batch: Batch) -> bool {
        match self.store.write(batch) {
            Ok(()) => true,
            Err(StoreError::Degraded { waiting, last }) => {
                tracing::debug!(waiting, error = %last, "store still cannot write");
                false
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    path = %self.store.path().display(),
                    "store write failed; the node refuses new messages until the disk takes writes again (free space on it), and keeps what it could not write to write it then"
                );
                false
            }
        }
    }

    /// Whether the store takes writes, trying the disk again if it did not: the node applies
    /// nothing new while it does not (so memory never runs ahead of the disk by more than the
    /// writes that failed), and answers RPC writes with the error.
    pub(crate) fn store_writable(&self) -> Result<(), StoreError> {
        match self.store.retry_unwritten() {
            Ok(false) => Ok(()),
            Ok(true) => {
                tracing::info!(
                    "the store writes again; wrote what waited for the disk, and catches up with peers for what it refused meanwhile"
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the store became writable again since the last call (the daemon then catches
    /// up with its peers for the messages refused meanwhile).
    pub fn take_store_recovered(&self) -> bool {
        // Recorded by the store, so that a heal through any write (an epoch's bookkeeping,
        // say) counts, not only one through a retry.
        self.store.take_recovered()
    }

    /// Tries the disk again if the store is degraded (the daemon calls this every few
    /// seconds, so the node heals without traffic).
    pub fn retry_store(&self) {
        let _ = self.store_writable();
    }

    /// Whether this node may sign now without risking a second signal with a sequence number
    /// it used before (see [`Node::cast_signal`]): `false` while its signing history is
    /// unverified and no catch-up with a peer completed.
    pub fn history_verified(&self) -> bool {
        !self
            .history_unverified
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Arms the signing guard: this node's key is older than its database, so it may have
    /// signed before with sequence numbers its store does not hold. Persisted, so that a
    /// restart before the first catch-up keeps it armed.
    pub fn arm_signing_guard(&self) -> Result<(), StoreError> {
        self.store.set_history_unverified(true)?;
        self.history_unverified
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Disarms the signing guard (`--sign-without-catch-up`, or a completed catch-up).
    pub fn disarm_signing_guard(&self) {
        if self
            .history_unverified
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            if let Err(e) = self.store.set_history_unverified(false) {
                tracing::warn!(error = %e, "cannot record that the signing history is verified");
            }
        }
    }

    /// A catch-up with a peer completed: what the network holds of this node's own signals
    /// is now held here, so its next sequence numbers are above them.
    pub(crate) fn caught_up(&self) {
        if !self.history_verified() && self.store.degraded().is_none() {
            tracing::info!(
                "caught up with a peer: this node's own earlier signals are known; signing allowed"
            );
            self.disarm_signing_guard();
        }
    }
}
