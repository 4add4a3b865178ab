//! The node core: the aggregator, the store that backs it, the ingest pipeline, the epoch
//! work (attestations, presences) and the RPC methods.
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
use commons_rpc::{
    ChoiceTally, Choices, Method, NetworkInfo, NodeInfo, Observation, PeerInfo, ProposalReceipt,
    ProposalSummary, SignalReceipt, Tally, UptimeReport, method,
};
use commons_signaling::messages::{MAX_PRESENCE_ATTESTATIONS, MAX_SIGNAL_ATTESTATIONS};
use commons_signaling::{
    AttestationBody, BoundedBytes, BoundedVec, Choice, DecodeError, Hash32, MessageKind,
    NetworkSpec, PROTOCOL_VERSION, Presence, PresenceBody, Proposal, PublicKey, ReleaseBundle,
    ReleaseVersion, SecretKey, Signal, SignalBody, Signed, UptimeAttestation, WireIp,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    fn accept() -> Self {
        Outcome {
            verdict: Verdict::Accept,
            reason: "new",
        }
    }
    fn reject(reason: &'static str) -> Self {
        Outcome {
            verdict: Verdict::Reject,
            reason,
        }
    }
    fn ignore(reason: &'static str) -> Self {
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

/// The message kind that travels on a gossip topic.
pub fn topic_kind(topic: TopicKind) -> MessageKind {
    match topic {
        TopicKind::Signals => MessageKind::Signal,
        TopicKind::Proposals => MessageKind::Proposal,
        TopicKind::Presences => MessageKind::Presence,
        TopicKind::Releases => MessageKind::Release,
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
struct ConnectedPeer {
    key: Option<PublicKey>,
    ip: Option<IpAddr>,
}

pub(crate) struct State {
    agg: Aggregator,
    /// Latest presence per node: its epoch and signature, to drop repeats cheaply.
    presences: HashMap<PublicKey, (u64, [u8; 64])>,
    /// The release bundles held, by id.
    pub(crate) releases: HashMap<Hash32, ReleaseBundle>,
    /// The newest release version held per channel, for rollback checks.
    pub(crate) newest_release: HashMap<String, ReleaseVersion>,
    /// Overrides already persisted.
    overrides: HashSet<Hash32>,
    /// Connected peers.
    peers: HashMap<PeerId, ConnectedPeer>,
    /// Peers (by key) connected at some time during the current epoch, at the IP seen.
    seen_this_epoch: HashMap<PublicKey, IpAddr>,
    /// What this node observed of each peer over the window.
    observed: HashMap<PublicKey, Observed>,
}

/// The node core. Cheap to share: hold it in an `Arc`.
pub struct Node {
    spec: NetworkSpec,
    network_id: Hash32,
    key: SecretKey,
    me: PublicKey,
    store: Arc<Store>,
    state: Mutex<State>,
    net: Option<P2pHandle>,
    metrics: IngestMetrics,
    clock: Clock,
    started: Instant,
    /// Own messages that no peer took yet (no peer subscribed), retried by the daemon.
    unpublished: Mutex<Vec<(TopicKind, Vec<u8>)>>,
    /// Release artifact files; absent when the node keeps no files (tests of the core).
    pub(crate) artifacts: Option<Arc<ArtifactStore>>,
    /// Counters of release handling.
    pub(crate) release_metrics: ReleaseMetrics,
    /// Wakes the artifact fetcher when a new release bundle was accepted.
    pub(crate) release_added: tokio::sync::Notify,
}

/// The most own messages kept for a retry of their publication; older ones are dropped (peers
/// still get them through catch-up sync).
const MAX_UNPUBLISHED: usize = 256;

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("network", &self.spec.name)
            .field("key", &self.me)
            .finish()
    }
}

fn meta_key(prefix: &str, bytes: &[u8; 32]) -> String {
    format!("{prefix}/{}", hex::encode(bytes))
}

fn hex32(key: &str, prefix: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(key.strip_prefix(prefix)?.strip_prefix('/')?, &mut out).ok()?;
    Some(out)
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// Whether `a` replaces the presence `held` (epoch, signature): a later epoch, or the same
/// epoch and larger signature bytes, so every node keeps the same one.
fn presence_supersedes(epoch: u64, signature: &[u8; 64], held: &(u64, [u8; 64])) -> bool {
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
        let now = clock();
        let epoch = spec.epoch_at(now);
        let mut agg = Aggregator::new(spec.clone(), Policy::from_spec(&spec), epoch);
        let mut skipped = 0usize;
        for proposal in store.proposals()? {
            if agg.add_proposal(proposal).is_err() {
                skipped += 1;
            }
        }
        for attestation in store.attestations()? {
            agg.add_attestation(attestation);
        }
        for signal in store.signals()? {
            if agg.apply_signal(signal, now).is_err() {
                skipped += 1;
            }
        }
        let mut overrides = HashSet::new();
        for (key, value) in store.meta_prefix("override/")? {
            if let (Some(id), Some(at)) = (hex32(&key, "override"), be_u64(&value)) {
                agg.restore_override(&Hash32(id), at);
                overrides.insert(Hash32(id));
            }
        }
        let mut releases = HashMap::new();
        let mut newest_release: HashMap<String, ReleaseVersion> = HashMap::new();
        for bundle in store.releases()? {
            let channel = bundle.body.channel.as_str().to_string();
            let version = bundle.body.release.clone();
            if newest_release.get(&channel).is_none_or(|v| version > *v) {
                newest_release.insert(channel, version);
            }
            releases.insert(bundle.id(&network_id), bundle);
        }
        let presences = store
            .presences()?
            .into_iter()
            .map(|p| (p.body.node, (p.body.epoch, p.signature.0)))
            .collect();
        let mut observed = HashMap::new();
        for (key, value) in store.meta_prefix("observed/")? {
            if let (Some(k), Ok(o)) = (hex32(&key, "observed"), serde_json::from_slice(&value)) {
                observed.insert(PublicKey(k), o);
            }
        }
        if skipped > 0 {
            // Records become invalid only if the spec changed under the data directory.
            tracing::warn!(
                skipped,
                "stored messages no longer valid under this network spec"
            );
        }
        let me = key.public_key();
        tracing::info!(
            proposals = agg.proposals().len(),
            signals = agg.signals().count(),
            attestations = agg.attestations().count(),
            epoch,
            "state restored from the store"
        );
        Ok(Node {
            network_id,
            me,
            key,
            store,
            state: Mutex::new(State {
                agg,
                presences,
                releases,
                newest_release,
                overrides,
                peers: HashMap::new(),
                seen_this_epoch: HashMap::new(),
                observed,
            }),
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
        self.state().agg.epoch()
    }

    /// Runs `f` with the aggregator, for inspection.
    pub fn with_aggregator<T>(&self, f: impl FnOnce(&Aggregator) -> T) -> T {
        f(&self.state().agg)
    }

    fn write(&self, batch: Batch) -> bool {
        match self.store.write(batch) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "store write failed");
                false
            }
        }
    }

    // ---------------------------------------------------------------- ingest pipeline

    /// Runs a received message through the pipeline: size bound, decode, cheap checks,
    /// duplicate check before signature verification, verification off the reactor,
    /// aggregation, persistence. Returns the verdict to report to gossipsub.
    pub async fn ingest(&self, kind: MessageKind, bytes: &[u8]) -> Outcome {
        let outcome = if bytes.len() > kind.max_bytes() {
            Outcome::reject("too_large")
        } else {
            match kind {
                MessageKind::Signal => self.ingest_signal(bytes).await,
                MessageKind::Proposal => self.ingest_proposal(bytes).await,
                MessageKind::Presence => self.ingest_presence(bytes).await,
                MessageKind::Attestation => self.ingest_attestation(bytes).await,
                MessageKind::Release => self.ingest_release(bytes).await,
            }
        };
        if outcome.reason == "duplicate" {
            self.metrics.duplicate(kind.name());
        }
        self.metrics.received(kind.name(), outcome.verdict_name());
        tracing::debug!(
            kind = kind.name(),
            verdict = outcome.verdict_name(),
            reason = outcome.reason,
            "ingested"
        );
        outcome
    }

    fn decode_failure(error: &DecodeError) -> Outcome {
        match error {
            // A newer protocol version may be valid to nodes that speak it; not the sender's
            // fault that this node does not.
            DecodeError::UnknownVersion { .. } => Outcome::ignore("unknown_version"),
            DecodeError::TooLarge { .. } => Outcome::reject("too_large"),
            _ => Outcome::reject("malformed"),
        }
    }

    fn signal_rejection(rejection: &SignalRejection) -> Outcome {
        match rejection {
            // Could become valid once the proposal arrives (sync fills it in).
            SignalRejection::UnknownProposal(_) => Outcome::ignore("unknown_proposal"),
            SignalRejection::FromFuture { .. } => Outcome::ignore("too_early"),
            // An older signal can still be in flight after a newer one; the relay did
            // nothing wrong.
            SignalRejection::Replay { .. } => Outcome::ignore("replay"),
            SignalRejection::Equivocation { .. } => Outcome::ignore("equivocation"),
            // Deterministic, clock-independent invalidity: no honest node forwards it.
            SignalRejection::AfterLockEnd { .. } => Outcome::reject("after_lock_end"),
        }
    }

    /// The latest epoch a message may carry: the epoch at now plus the allowed clock skew.
    fn max_epoch(&self, now: u64) -> u64 {
        self.spec
            .epoch_at(now.saturating_add(self.spec.max_clock_skew_secs))
    }

    /// Checks attestations carried by a message of `carrier`: each must be about the carrier
    /// (they vouch for its uptime) and not issued in the future.
    fn check_carried(
        &self,
        carrier: &PublicKey,
        attestations: &[UptimeAttestation],
        now: u64,
    ) -> Option<Outcome> {
        if attestations.iter().any(|a| a.body.subject != *carrier) {
            return Some(Outcome::reject("attestation_not_about_carrier"));
        }
        let max_epoch = self.max_epoch(now);
        if attestations.iter().any(|a| a.body.epoch > max_epoch) {
            return Some(Outcome::ignore("too_early"));
        }
        None
    }

    /// Verifies a message and attestations on the blocking pool.
    async fn verify_off_reactor(
        &self,
        check: impl FnOnce(&Hash32) -> bool + Send + 'static,
        attestations: Vec<UptimeAttestation>,
    ) -> bool {
        let network_id = self.network_id;
        tokio::task::spawn_blocking(move || {
            check(&network_id) && attestations.iter().all(|a| a.verify(&network_id))
        })
        .await
        .unwrap_or(false)
    }

    async fn ingest_signal(&self, bytes: &[u8]) -> Outcome {
        // The cheapest duplicate check there is: the signature at the end of the bytes.
        if self.state().agg.holds_signal_encoding(bytes) {
            return Outcome::ignore("duplicate");
        }
        let signal = match Signal::decode(bytes) {
            Ok(s) => s,
            Err(e) => return Self::decode_failure(&e),
        };
        let now = self.now();
        if let Some(outcome) =
            self.check_carried(&signal.body.signer, &signal.body.attestations, now)
        {
            return outcome;
        }
        let to_verify: Vec<UptimeAttestation> = {
            let st = self.state();
            match st.agg.precheck_signal(&signal, now) {
                Ok(Precheck::Duplicate) => return Outcome::ignore("duplicate"),
                Err(e) => return Self::signal_rejection(&e),
                Ok(Precheck::New) => st
                    .agg
                    .unverified_attestations(&signal.body.attestations)
                    .into_iter()
                    .cloned()
                    .collect(),
            }
        };
        let copy = signal.clone();
        if !self
            .verify_off_reactor(move |id| copy.verify(id), to_verify)
            .await
        {
            return Outcome::reject("bad_signature");
        }
        let mut st = self.state();
        // What is new can only have shrunk since the check above, so all of it was verified.
        let new_attestations: Vec<UptimeAttestation> = st
            .agg
            .unverified_attestations(&signal.body.attestations)
            .into_iter()
            .cloned()
            .collect();
        match st.agg.apply_signal(signal.clone(), now) {
            Ok(SignalOutcome::Duplicate) => Outcome::ignore("duplicate"),
            Ok(_) => {
                let mut batch = Batch::new();
                batch.put_signal(&signal);
                for a in &new_attestations {
                    batch.put_attestation(a);
                }
                if self.write(batch) {
                    Outcome::accept()
                } else {
                    Outcome::ignore("store_failed")
                }
            }
            Err(e) => Self::signal_rejection(&e),
        }
    }

    async fn ingest_proposal(&self, bytes: &[u8]) -> Outcome {
        let proposal = match Proposal::decode(bytes) {
            Ok(p) => p,
            Err(e) => return Self::decode_failure(&e),
        };
        let id = proposal.id(&self.network_id);
        if self.state().agg.proposal(&id).is_some() {
            return Outcome::ignore("duplicate");
        }
        let spec = self.spec.clone();
        let copy = proposal.clone();
        if !self
            .verify_off_reactor(
                move |nid| verify_proposal(&copy, &spec, nid).is_ok(),
                Vec::new(),
            )
            .await
        {
            return Outcome::reject("invalid_proposal");
        }
        let mut st = self.state();
        // add_proposal checks the signatures again; proposals are rare and carry at most a
        // handful, so that is cheap next to keeping the aggregator's own guarantee.
        match st.agg.add_proposal(proposal.clone()) {
            Ok(ProposalOutcome::New) => {
                let mut batch = Batch::new();
                batch.put_proposal(&id, &proposal);
                tracing::info!(proposal = %id, title = %proposal.body.title, "new proposal");
                if self.write(batch) {
                    Outcome::accept()
                } else {
                    Outcome::ignore("store_failed")
                }
            }
            Ok(ProposalOutcome::Duplicate) => Outcome::ignore("duplicate"),
            Err(_) => Outcome::reject("invalid_proposal"),
        }
    }

    async fn ingest_presence(&self, bytes: &[u8]) -> Outcome {
        let presence = match Presence::decode(bytes) {
            Ok(p) => p,
            Err(e) => return Self::decode_failure(&e),
        };
        let body = &presence.body;
        if body.node == self.me {
            return Outcome::ignore("own");
        }
        let now = self.now();
        if let Some(outcome) = self.check_carried(&body.node, &body.attestations, now) {
            return outcome;
        }
        if body.epoch > self.max_epoch(now) {
            return Outcome::ignore("too_early");
        }
        let to_verify: Vec<UptimeAttestation> = {
            let st = self.state();
            // A presence from earlier in the window may still carry live attestations (a
            // peer serves the latest it holds of a node that went offline); older ones cannot.
            if body.epoch + u64::from(self.spec.uptime_window_epochs) < st.agg.epoch() {
                return Outcome::ignore("stale");
            }
            match st.presences.get(&body.node) {
                Some(held) if held.1 == presence.signature.0 => {
                    return Outcome::ignore("duplicate");
                }
                Some(held) if !presence_supersedes(body.epoch, &presence.signature.0, held) => {
                    return Outcome::ignore("superseded");
                }
                _ => {}
            }
            st.agg
                .unverified_attestations(&body.attestations)
                .into_iter()
                .cloned()
                .collect()
        };
        let copy = presence.clone();
        if !self
            .verify_off_reactor(move |id| copy.verify(id), to_verify)
            .await
        {
            return Outcome::reject("bad_signature");
        }
        let mut st = self.state();
        if let Some(held) = st.presences.get(&presence.body.node)
            && !presence_supersedes(presence.body.epoch, &presence.signature.0, held)
        {
            return Outcome::ignore("duplicate");
        }
        let new_attestations: Vec<UptimeAttestation> = st
            .agg
            .unverified_attestations(&presence.body.attestations)
            .into_iter()
            .cloned()
            .collect();
        st.presences.insert(
            presence.body.node,
            (presence.body.epoch, presence.signature.0),
        );
        let mut batch = Batch::new();
        batch.put_presence(&presence);
        for a in &new_attestations {
            batch.put_attestation(a);
        }
        st.agg.apply_presence(presence);
        if self.write(batch) {
            Outcome::accept()
        } else {
            Outcome::ignore("store_failed")
        }
    }

    /// A bare attestation: only one about this node counts, handed over by its attester
    /// (a sync `deliver`), because an attestation counts only when its subject carries it
    /// (docs/PROTOCOL.md, "Who carries attestations"); this node then carries it in its
    /// presence and signals.
    async fn ingest_attestation(&self, bytes: &[u8]) -> Outcome {
        let attestation = match UptimeAttestation::decode(bytes) {
            Ok(a) => a,
            Err(e) => return Self::decode_failure(&e),
        };
        if attestation.body.subject != self.me {
            return Outcome::ignore("not_carried_by_subject");
        }
        if attestation.body.epoch > self.max_epoch(self.now()) {
            return Outcome::ignore("too_early");
        }
        if self
            .state()
            .agg
            .unverified_attestations(std::slice::from_ref(&attestation))
            .is_empty()
        {
            // Held, superseded, expired or a self-attestation: nothing it could change.
            return Outcome::ignore("duplicate");
        }
        let copy = attestation.clone();
        if !self
            .verify_off_reactor(move |id| copy.verify(id), Vec::new())
            .await
        {
            return Outcome::reject("bad_signature");
        }
        let mut st = self.state();
        let mut batch = Batch::new();
        batch.put_attestation(&attestation);
        match st.agg.add_carried_attestation(&self.me, attestation) {
            AttestationOutcome::New => {
                if self.write(batch) {
                    Outcome::accept()
                } else {
                    Outcome::ignore("store_failed")
                }
            }
            _ => Outcome::ignore("duplicate"),
        }
    }

    async fn ingest_release(&self, bytes: &[u8]) -> Outcome {
        let bundle = match ReleaseBundle::decode(bytes) {
            Ok(b) => b,
            Err(e) => {
                let outcome = Self::decode_failure(&e);
                self.release_metrics.rejected(outcome.reason);
                return outcome;
            }
        };
        let id = bundle.id(&self.network_id);
        if self.state().releases.contains_key(&id) {
            return Outcome::ignore("duplicate");
        }
        if let Err(e) = self.verify_release_off_reactor(&bundle).await {
            let reason = release_error_reason(&e);
            self.release_metrics.rejected(reason);
            return match e {
                // A superseded or expired bundle was valid once; relays may still hold it.
                ReleaseError::Rollback { .. } | ReleaseError::Expired { .. } => {
                    Outcome::ignore(reason)
                }
                _ => Outcome::reject(reason),
            };
        }
        match self.accept_release(id, &bundle) {
            Ok(true) => Outcome::accept(),
            Ok(false) => Outcome::ignore("duplicate"),
            Err(reason) => {
                self.release_metrics.rejected(reason);
                Outcome::ignore(reason)
            }
        }
    }

    /// Checks a bundle against the network's release rules and the newest release held on
    /// its channel, on the blocking pool.
    pub(crate) async fn verify_release_off_reactor(
        &self,
        bundle: &ReleaseBundle,
    ) -> Result<(), ReleaseError> {
        let newest = self
            .state()
            .newest_release
            .get(bundle.body.channel.as_str())
            .cloned();
        let spec = self.spec.clone();
        let now = self.now();
        let copy = bundle.clone();
        tokio::task::spawn_blocking(move || {
            verify_release(&copy, &spec, &spec.network_id(), newest.as_ref(), now).map(|_| ())
        })
        .await
        .unwrap_or_else(|_| {
            Err(ReleaseError::BadArtifacts(
                "verification task failed".into(),
            ))
        })
    }

    /// Records a verified bundle: `Ok(false)` when it was held already, `Err(reason)` when a
    /// newer one for its channel arrived meanwhile or the store failed.
    pub(crate) fn accept_release(
        &self,
        id: Hash32,
        bundle: &ReleaseBundle,
    ) -> Result<bool, &'static str> {
        let channel = bundle.body.channel.as_str().to_string();
        {
            let mut st = self.state();
            if st.releases.contains_key(&id) {
                return Ok(false);
            }
            if st
                .newest_release
                .get(&channel)
                .is_some_and(|v| bundle.body.release <= *v)
            {
                return Err("rollback");
            }
            let mut batch = Batch::new();
            batch.put_release(&id, bundle);
            if !self.write(batch) {
                return Err("store_failed");
            }
            st.releases.insert(id, bundle.clone());
            st.newest_release
                .insert(channel, bundle.body.release.clone());
        }
        tracing::info!(release = %bundle.body.release, channel = %bundle.body.channel, id = %id, "new release bundle");
        self.release_added.notify_one();
        Ok(true)
    }

    // ---------------------------------------------------------------- peers and epochs

    /// Records a new connection: the peer counts as seen in this epoch at the IP observed on
    /// the connection.
    pub fn peer_connected(&self, peer: PeerId, ip: Option<IpAddr>) {
        let key = peer_xonly_key(&peer).map(PublicKey);
        let mut st = self.state();
        if let (Some(key), Some(ip)) = (key, ip) {
            st.seen_this_epoch.insert(key, ip);
        }
        st.peers.insert(peer, ConnectedPeer { key, ip });
    }

    /// Records that the last connection to a peer closed.
    pub fn peer_disconnected(&self, peer: &PeerId) {
        self.state().peers.remove(peer);
    }

    /// Number of connected peers.
    pub fn peer_count(&self) -> usize {
        self.state().peers.len()
    }

    /// What this node observed of a peer.
    pub fn observed(&self, key: &PublicKey) -> Option<Observed> {
        self.state().observed.get(key).cloned()
    }

    /// The epoch work at the start of `epoch`: moves the aggregator on (latching and
    /// persisting overrides), records which peers were online during the epoch that ended,
    /// and issues and returns this node's attestations about them; the caller delivers each
    /// to its subject, which carries it in its presence. Expired attestations are pruned
    /// from the store.
    pub fn on_epoch(&self, epoch: u64) -> Vec<(PeerId, UptimeAttestation)> {
        let window = u64::from(self.spec.uptime_window_epochs);
        let mut batch = Batch::new();
        let mut issued = Vec::new();
        {
            let mut st = self.state();
            if epoch > st.agg.epoch() {
                st.agg.set_epoch(epoch);
            }
            let latched: Vec<(Hash32, u64)> = st
                .agg
                .proposals()
                .into_iter()
                .filter_map(|(id, _)| st.agg.overridden_at(id).map(|at| (*id, at)))
                .filter(|(id, _)| !st.overrides.contains(id))
                .collect();
            for (id, at) in latched {
                tracing::info!(proposal = %id, epoch = at, "proposal overridden");
                batch.put_meta(&meta_key("override", &id.0), &at.to_be_bytes());
                st.overrides.insert(id);
            }

            // Who was online in the epoch that just ended: everyone seen during it, and
            // everyone still connected. The connected ones start the new epoch as seen.
            let closing = epoch.saturating_sub(1);
            let mut seen = std::mem::take(&mut st.seen_this_epoch);
            let connected: Vec<(PeerId, PublicKey, IpAddr)> = st
                .peers
                .iter()
                .filter_map(|(id, p)| Some((*id, p.key?, p.ip?)))
                .collect();
            for (_, key, ip) in &connected {
                seen.insert(*key, *ip);
                st.seen_this_epoch.insert(*key, *ip);
            }
            let peer_of: HashMap<PublicKey, PeerId> =
                connected.iter().map(|(id, k, _)| (*k, *id)).collect();
            for (key, ip) in seen {
                if key == self.me {
                    continue;
                }
                let observed = st.observed.entry(key).or_default();
                if observed.ip != Some(ip) {
                    *observed = Observed {
                        ip: Some(ip),
                        epochs: BTreeSet::new(),
                    };
                }
                observed.epochs.insert(closing);
                let oldest = epoch.saturating_sub(window);
                observed.epochs.retain(|e| *e >= oldest && *e < epoch);
                let seen_epochs = u32::try_from(observed.epochs.len()).unwrap_or(u32::MAX);
                batch.put_meta(
                    &meta_key("observed", &key.0),
                    &serde_json::to_vec(&*observed).expect("serializable"),
                );
                // Only peers still connected get an attestation delivered; the others get
                // theirs when they are seen again.
                if let Some(peer) = peer_of.get(&key) {
                    let body = AttestationBody {
                        version: PROTOCOL_VERSION,
                        attester: self.me,
                        subject: key,
                        subject_ip: WireIp(ip),
                        epoch,
                        seen_epochs,
                    };
                    issued.push((*peer, Signed::sign(body, &self.key, &self.network_id)));
                }
            }
            // Forget peers not seen over a whole window.
            let stale: Vec<PublicKey> = st
                .observed
                .iter()
                .filter(|(_, o)| o.epochs.last().is_none_or(|last| last + window < epoch))
                .map(|(k, _)| *k)
                .collect();
            for key in stale {
                st.observed.remove(&key);
                batch.delete_meta(&meta_key("observed", &key.0));
            }
            // Presences older than the window tell nothing any more.
            st.presences.retain(|_, (e, _)| *e + window >= epoch);
            // Attestations the aggregator no longer holds have expired: drop them from the
            // store too, so catch-up never serves them.
            let live: HashSet<(PublicKey, PublicKey)> = st
                .agg
                .attestations()
                .map(|a| (a.body.subject, a.body.attester))
                .collect();
            match self.store.attestations() {
                Ok(stored) => {
                    for a in stored {
                        let pair = (a.body.subject, a.body.attester);
                        if !live.contains(&pair) && a.body.epoch + window < epoch {
                            batch.delete_attestation(&pair.0, &pair.1);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not scan attestations for pruning"),
            }
            self.write(batch);
        }
        // This node's own attestations count nowhere until their subjects carry them in their
        // presences, which every node, this one included, absorbs.
        if !issued.is_empty() {
            tracing::debug!(epoch, attested = issued.len(), "issued uptime attestations");
        }
        issued
    }

    /// The live attestations about this node, latest first, at most `max`.
    pub fn attestations_about_me(&self, max: usize) -> Vec<UptimeAttestation> {
        let window = u64::from(self.spec.uptime_window_epochs);
        let epoch = self.epoch();
        let mut about = match self.store.attestations_about(&self.me) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "could not read attestations about this node");
                return Vec::new();
            }
        };
        about.retain(|a| a.body.epoch + window >= epoch && a.body.attester != self.me);
        about.sort_by(|a, b| {
            b.body
                .epoch
                .cmp(&a.body.epoch)
                .then(a.body.attester.cmp(&b.body.attester))
        });
        about.truncate(max);
        about
    }

    /// This node's presence for `epoch`, carrying the attestations others made about it.
    pub fn make_presence(&self, epoch: u64) -> Presence {
        let body = PresenceBody {
            version: PROTOCOL_VERSION,
            node: self.me,
            epoch,
            attestations: BoundedVec::truncating(
                self.attestations_about_me(MAX_PRESENCE_ATTESTATIONS),
            ),
        };
        Signed::sign(body, &self.key, &self.network_id)
    }

    /// Publishes a message if the node has a network; whether it went out. A message no
    /// peer took (none subscribed yet, as right after start) is kept and retried by
    /// [`Node::retry_unpublished`].
    pub async fn publish(&self, topic: TopicKind, bytes: Vec<u8>) -> bool {
        let Some(net) = &self.net else { return false };
        match net.publish(topic, bytes.clone()).await {
            Ok(_) => true,
            Err(commons_p2p::P2pError::Duplicate) => true,
            Err(e) => {
                tracing::debug!(topic = %topic, error = %e, "not published yet");
                // Presences are only worth their own epoch; a newer one follows anyway.
                if topic != TopicKind::Presences {
                    let mut queue = self.unpublished.lock().expect("unpublished lock poisoned");
                    if queue.len() >= MAX_UNPUBLISHED {
                        queue.remove(0);
                    }
                    queue.push((topic, bytes));
                }
                false
            }
        }
    }

    /// Publishes again the own messages that did not go out; returns how many went out now.
    pub async fn retry_unpublished(&self) -> usize {
        let Some(net) = &self.net else { return 0 };
        let queue =
            std::mem::take(&mut *self.unpublished.lock().expect("unpublished lock poisoned"));
        let mut sent = 0;
        let mut keep = Vec::new();
        for (topic, bytes) in queue {
            match net.publish(topic, bytes.clone()).await {
                Ok(_) | Err(commons_p2p::P2pError::Duplicate) => sent += 1,
                Err(_) => keep.push((topic, bytes)),
            }
        }
        if !keep.is_empty() {
            let mut queue = self.unpublished.lock().expect("unpublished lock poisoned");
            keep.append(&mut queue);
            *queue = keep;
        }
        sent
    }

    /// Connected peers, for picking one to resynchronise with.
    pub fn connected_peers(&self) -> Vec<PeerId> {
        self.state().peers.keys().copied().collect()
    }

    // ---------------------------------------------------------------- sync

    /// Answers a sync request from `peer` (its key, when known). Returns the response and
    /// whether the peer misbehaved (a request that does not decode, or delivered garbage).
    pub async fn serve_sync(&self, peer: Option<PublicKey>, request: &[u8]) -> (Vec<u8>, bool) {
        let request = match SyncRequest::decode(request) {
            Ok(r) => r,
            Err(e) => {
                return (
                    SyncResponse::refused(&format!("bad request: {e}")).encode(),
                    true,
                );
            }
        };
        match request {
            SyncRequest::Catchup { after } => {
                let store = self.store.clone();
                let page = tokio::task::spawn_blocking(move || catchup_page(&store, after)).await;
                match page {
                    Ok(Ok(response)) => (response.encode(), false),
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "catch-up page failed");
                        (SyncResponse::refused("store error").encode(), false)
                    }
                    Err(_) => (SyncResponse::refused("internal error").encode(), false),
                }
            }
            SyncRequest::Deliver { attestations } => {
                let mut accepted = 0u32;
                let mut bad = false;
                for blob in attestations.iter() {
                    // Only the attester hands over its own attestations about us; anything
                    // else is not what this request is for.
                    let fits = UptimeAttestation::decode(blob.as_slice())
                        .is_ok_and(|a| a.body.subject == self.me && Some(a.body.attester) == peer);
                    if !fits {
                        bad = true;
                        continue;
                    }
                    let outcome = self.ingest(MessageKind::Attestation, blob.as_slice()).await;
                    match outcome.verdict {
                        Verdict::Accept => accepted += 1,
                        Verdict::Reject => bad = true,
                        Verdict::Ignore => {}
                    }
                }
                (SyncResponse::Delivered { accepted }.encode(), bad)
            }
        }
    }

    // ---------------------------------------------------------------- RPC methods

    async fn rpc_getinfo(&self) -> Result<NodeInfo, RpcError> {
        let (listen, peer_id) = match &self.net {
            Some(net) => (
                net.listen_addrs()
                    .await
                    .unwrap_or_default()
                    .iter()
                    .map(|a| a.to_string())
                    .collect(),
                Some(net.local_peer_id().to_string()),
            ),
            None => (Vec::new(), None),
        };
        let st = self.state();
        let (nodes, units) = st.agg.population();
        Ok(NodeInfo {
            version: VERSION.to_string(),
            network: NetworkInfo {
                name: self.spec.name.clone(),
                id: self.network_id.to_hex(),
            },
            peer_id,
            public_key: self.me.to_hex(),
            listen,
            epoch: st.agg.epoch(),
            epoch_secs: self.spec.epoch_secs,
            time: self.now(),
            peers: st.peers.len() as u64,
            proposals: st.agg.proposals().len() as u64,
            qualified_nodes: nodes,
            qualified_weight: units_to_weight(units),
            uptime: st.agg.uptime(&self.me).map(uptime_status),
            running_secs: self.started.elapsed().as_secs(),
        })
    }

    async fn rpc_getpeers(&self) -> Result<Vec<PeerInfo>, RpcError> {
        let Some(net) = &self.net else {
            return Ok(Vec::new());
        };
        let peers = net.peers().await.map_err(RpcError::internal)?;
        let st = self.state();
        let out = peers
            .iter()
            .map(|p| {
                let key = p.xonly_key.map(PublicKey);
                let observed = key.and_then(|k| st.observed.get(&k));
                PeerInfo {
                    peer_id: p.peer_id.to_string(),
                    public_key: key.map(|k| k.to_hex()),
                    addrs: p.addrs.iter().map(|a| a.to_string()).collect(),
                    listen_addrs: p.listen_addrs.iter().map(|a| a.to_string()).collect(),
                    observed_ip: p.observed_ip,
                    connected_since: p
                        .connected_since
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0),
                    outbound: p.outbound,
                    agent: p.agent_version.clone(),
                    gossip_score: p.gossip_score,
                    seen_epochs: observed.map_or(0, |o| o.epochs.len() as u64),
                    uptime: key.and_then(|k| st.agg.uptime(&k)).map(uptime_status),
                }
            })
            .collect();
        Ok(out)
    }

    fn state_name(st: &State, id: &Hash32, now: u64) -> &'static str {
        st.agg
            .state(id, now)
            .map(ProposalState::name)
            .unwrap_or("unknown")
    }

    fn rpc_listproposals(&self) -> Vec<ProposalSummary> {
        let now = self.now();
        let st = self.state();
        st.agg
            .proposals()
            .into_iter()
            .map(|(id, p)| ProposalSummary {
                id: id.to_hex(),
                tier: p.body.tier,
                title: p.body.title.as_str().to_string(),
                reference: p.body.reference.as_str().to_string(),
                state: Self::state_name(&st, id, now).to_string(),
                lock_start: p.body.lock_start,
                lock_end: p.body.lock_end,
                signatures: p.signatures.len() as u64,
                overridden_at_epoch: st.agg.overridden_at(id),
            })
            .collect()
    }

    pub(crate) fn parse_id(params: &Params, name: &str) -> Result<Hash32, RpcError> {
        let text = params.required_str(name, 0)?;
        Hash32::from_str(text).map_err(|_| {
            RpcError::invalid_params(format!("`{name}` must be 64 hex characters, not {text:?}"))
        })
    }

    fn rpc_gettally(&self, params: &Params) -> Result<Tally, RpcError> {
        params.only(&["id"])?;
        let id = Self::parse_id(params, "id")?;
        let now = self.now();
        let st = self.state();
        let tally = st
            .agg
            .tally(&id)
            .ok_or_else(|| RpcError::new(rpc::NOT_FOUND, format!("unknown proposal {id}")))?;
        let count = |choice: Choice| {
            let c = tally.choice(choice);
            ChoiceTally {
                weight: c.weight,
                nodes: c.nodes,
            }
        };
        Ok(Tally {
            id: id.to_hex(),
            tier: tally.tier,
            epoch: tally.epoch,
            state: Self::state_name(&st, &id, now).to_string(),
            choices: Choices {
                support: count(Choice::Support),
                oppose: count(Choice::Oppose),
                r#override: count(Choice::Override),
                abstain: count(Choice::Abstain),
            },
            total_nodes: tally.total_nodes,
            total_weight: tally.total_weight,
            override_weight_share: tally.override_weight_share,
            override_node_share: tally.override_node_share,
            required_weight_share: tally.required_weight_share,
            required_node_share: tally.required_node_share,
            override_met: tally.override_met,
            signers: tally.signers,
            uncounted_signers: tally.uncounted_signers,
        })
    }

    fn rpc_getuptime(&self, params: &Params) -> Result<UptimeReport, RpcError> {
        params.only(&["key"])?;
        let key = match params.optional_str("key", 0)? {
            Some(text) => PublicKey::from_str(text)
                .map_err(|e| RpcError::invalid_params(format!("`key`: {e}")))?,
            None => self.me,
        };
        let st = self.state();
        Ok(UptimeReport {
            key: key.to_hex(),
            epoch: st.agg.epoch(),
            min_uptime_epochs: self.spec.min_uptime_epochs,
            status: st.agg.uptime(&key).map(uptime_status),
            observed_by_this_node: st.observed.get(&key).map(|o| Observation {
                ip: o.ip,
                seen_epochs: o.epochs.len() as u64,
            }),
        })
    }

    /// Signs, applies, stores and publishes this node's signal on a proposal.
    pub async fn cast_signal(
        &self,
        proposal: Hash32,
        choice: Choice,
    ) -> Result<(Signal, bool), RpcError> {
        let now = self.now();
        let attestations =
            BoundedVec::truncating(self.attestations_about_me(MAX_SIGNAL_ATTESTATIONS));
        let signal = {
            let mut st = self.state();
            if st.agg.proposal(&proposal).is_none() {
                return Err(RpcError::new(
                    rpc::NOT_FOUND,
                    format!("unknown proposal {proposal}"),
                ));
            }
            // The sequence is persisted separately from the signal so that it never goes
            // back, even if the stored signal is replaced by a peer's view of it.
            let seq_key = meta_key("seq", &proposal.0);
            let stored = self
                .store
                .meta(&seq_key)
                .map_err(RpcError::internal)?
                .and_then(|v| be_u64(&v));
            let held = st.agg.signal(&proposal, &self.me).map(|s| s.body.sequence);
            let sequence = stored.max(held).map_or(1, |s| s + 1);
            let body = SignalBody {
                version: PROTOCOL_VERSION,
                proposal,
                choice,
                sequence,
                time: now,
                signer: self.me,
                attestations,
            };
            let signal = Signed::sign(body, &self.key, &self.network_id);
            st.agg
                .apply_signal(signal.clone(), now)
                .map_err(|e| RpcError::new(rpc::REJECTED, format!("signal refused: {e}")))?;
            let mut batch = Batch::new();
            batch.put_signal(&signal);
            batch.put_meta(&seq_key, &sequence.to_be_bytes());
            self.store.write(batch).map_err(RpcError::internal)?;
            signal
        };
        let published = self.publish(TopicKind::Signals, signal.encode()).await;
        tracing::info!(proposal = %proposal, choice = %choice, sequence = signal.body.sequence, published, "signal cast");
        Ok((signal, published))
    }

    async fn rpc_signal(&self, params: &Params) -> Result<SignalReceipt, RpcError> {
        params.only(&["proposal", "choice"])?;
        let proposal = Self::parse_id(params, "proposal")?;
        let choice_text = params.required_str("choice", 1)?;
        let choice = Choice::from_str(choice_text).map_err(RpcError::invalid_params)?;
        let (signal, published) = self.cast_signal(proposal, choice).await?;
        Ok(SignalReceipt {
            proposal: proposal.to_hex(),
            choice: choice.name().to_string(),
            sequence: signal.body.sequence,
            time: signal.body.time,
            attestations: signal.body.attestations.len() as u64,
            published,
        })
    }

    /// Verifies, stores and publishes a signed proposal given as canonical CBOR.
    pub async fn submit_proposal(&self, bytes: &[u8]) -> Result<(Hash32, bool, bool), RpcError> {
        let proposal = Proposal::decode(bytes)
            .map_err(|e| RpcError::invalid_params(format!("not a signed proposal: {e}")))?;
        let id = proposal.id(&self.network_id);
        let spec = self.spec.clone();
        let copy = proposal.clone();
        let verified = tokio::task::spawn_blocking(move || {
            verify_proposal(&copy, &spec, &spec.network_id()).map(|_| ())
        })
        .await
        .map_err(RpcError::internal)?;
        verified.map_err(|e| RpcError::new(rpc::REJECTED, format!("proposal refused: {e}")))?;
        let new = {
            let mut st = self.state();
            match st.agg.add_proposal(proposal.clone()) {
                Ok(ProposalOutcome::New) => {
                    let mut batch = Batch::new();
                    batch.put_proposal(&id, &proposal);
                    self.store.write(batch).map_err(RpcError::internal)?;
                    true
                }
                Ok(ProposalOutcome::Duplicate) => false,
                Err(e) => {
                    return Err(RpcError::new(
                        rpc::REJECTED,
                        format!("proposal refused: {e}"),
                    ));
                }
            }
        };
        // Published again even when already held: the submitter wants it out, and peers
        // drop a duplicate cheaply.
        let published = self.publish(TopicKind::Proposals, bytes.to_vec()).await;
        if new {
            tracing::info!(proposal = %id, title = %proposal.body.title, published, "proposal submitted");
        }
        Ok((id, new, published))
    }

    async fn rpc_submitproposal(&self, params: &Params) -> Result<ProposalReceipt, RpcError> {
        params.only(&["hex"])?;
        let text = params.required_str("hex", 0)?;
        let bytes = hex::decode(text.trim())
            .map_err(|e| RpcError::invalid_params(format!("`hex` is not hex: {e}")))?;
        let (id, new, published) = self.submit_proposal(&bytes).await?;
        Ok(ProposalReceipt {
            id: id.to_hex(),
            new,
            published,
        })
    }
}

/// Builds one catch-up page from the store.
fn catchup_page(store: &Store, after: Option<SyncCursor>) -> Result<SyncResponse, StoreError> {
    let (mut table, mut after_key) = match after {
        Some(c) => (
            usize::from(c.table),
            Some(c.key.as_slice().to_vec()).filter(|k| !k.is_empty()),
        ),
        None => (0, None),
    };
    let mut items = Vec::new();
    let mut used = 0usize;
    let cursor = |table: usize, key: Vec<u8>| SyncCursor {
        table: u8::try_from(table).unwrap_or(u8::MAX),
        key: BoundedBytes::new(key).unwrap_or_default(),
    };
    let next = loop {
        if table >= SYNC_TABLES.len() {
            break None;
        }
        if items.len() >= MAX_PAGE_ITEMS || used >= PAGE_BYTES {
            break Some(cursor(table, after_key.unwrap_or_default()));
        }
        let kind = SYNC_TABLES[table];
        let (records, more) = store.page(
            kind,
            after_key.as_deref(),
            MAX_PAGE_ITEMS - items.len(),
            PAGE_BYTES - used,
        )?;
        let last_key = records.last().map(|(k, _)| k.clone());
        for (_, value) in records {
            used += value.len();
            match BoundedBytes::new(value) {
                Ok(bytes) => items.push(SyncItem { kind, bytes }),
                Err(_) => tracing::warn!(kind = kind.name(), "stored record too large to serve"),
            }
        }
        if more {
            break Some(cursor(table, last_key.or(after_key).unwrap_or_default()));
        }
        table += 1;
        after_key = None;
    };
    Ok(SyncResponse::Batch {
        items: BoundedVec::truncating(items),
        next,
    })
}

impl RpcHandler for Node {
    fn call<'a>(&'a self, method: &'a str, params: Params) -> RpcFuture<'a> {
        Box::pin(async move {
            match method {
                method::GetInfo::NAME => {
                    params.only(&[])?;
                    answer::<method::GetInfo>(self.rpc_getinfo().await)
                }
                method::GetPeers::NAME => {
                    params.only(&[])?;
                    answer::<method::GetPeers>(self.rpc_getpeers().await)
                }
                method::ListProposals::NAME => {
                    params.only(&[])?;
                    answer::<method::ListProposals>(Ok(self.rpc_listproposals()))
                }
                method::GetTally::NAME => answer::<method::GetTally>(self.rpc_gettally(&params)),
                method::GetUptime::NAME => answer::<method::GetUptime>(self.rpc_getuptime(&params)),
                method::CastSignal::NAME => {
                    answer::<method::CastSignal>(self.rpc_signal(&params).await)
                }
                method::SubmitProposal::NAME => {
                    answer::<method::SubmitProposal>(self.rpc_submitproposal(&params).await)
                }
                method::ListReleases::NAME => {
                    params.only(&[])?;
                    answer::<method::ListReleases>(Ok(self.rpc_listreleases()))
                }
                method::GetRelease::NAME => {
                    answer::<method::GetRelease>(self.rpc_getrelease(&params))
                }
                method::PublishRelease::NAME => {
                    answer::<method::PublishRelease>(self.rpc_publishrelease(&params).await)
                }
                _ => {
                    let (last, rest) = method::NAMES.split_last().expect("methods exist");
                    Err(RpcError::new(
                        rpc::METHOD_NOT_FOUND,
                        format!(
                            "unknown method {method:?}: use {} or {last}",
                            rest.join(", ")
                        ),
                    ))
                }
            }
        })
    }
}

impl SnapshotSource for Node {
    fn snapshot(&self) -> Snapshot {
        let now = self.now();
        let newest_verified_releases = self.newest_verified_releases();
        let st = self.state();
        let (nodes, units) = st.agg.population();
        let proposals = st
            .agg
            .proposals()
            .into_iter()
            .filter_map(|(id, _)| {
                let tally = st.agg.tally(id)?;
                Some(ProposalMetrics {
                    id: id.to_hex(),
                    state: Self::state_name(&st, id, now).to_string(),
                    choices: tally
                        .choices
                        .iter()
                        .map(|c| (c.choice.name().to_string(), c.weight, c.nodes))
                        .collect(),
                    override_ratio: tally.override_weight_share,
                })
            })
            .collect();
        Snapshot {
            proposals,
            states: ProposalState::ALL
                .iter()
                .map(|s| s.name().to_string())
                .collect(),
            qualified_nodes: nodes,
            qualified_weight: units_to_weight(units),
            peers: st.peers.len() as u64,
            store_bytes: self.store.size_bytes(),
            newest_verified_releases,
        }
    }
}

/// A method's answer as the JSON `result` the server sends.
fn answer<M: Method>(result: Result<M::Response, RpcError>) -> Result<Value, RpcError> {
    result.map(|response| commons_rpc::response_json::<M>(&response))
}

/// The aggregator's uptime status as the RPC answers carry it.
fn uptime_status(status: commons_aggregator::UptimeStatus) -> commons_rpc::UptimeStatus {
    commons_rpc::UptimeStatus {
        ip: status.ip,
        uptime_epochs: status.uptime_epochs,
        attester_netgroups: status.attester_netgroups,
        qualified: status.qualified,
        counted: status.counted,
        netgroup: status.netgroup.map(|n| n.to_string()),
    }
}
