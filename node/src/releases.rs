//! Release artifacts: the release state a node owns ([`Releases`]: the artifact files and
//! the counters; the bundles themselves are in the intake's release book), what the RPC views
//! show of a release, serving artifact chunks to peers, and the fetcher that downloads the
//! artifacts of accepted releases from peers it does not trust. The node is reached only
//! through [`ReleaseHost`], so this module does not depend on it.
//!
//! The fetcher works on the newest unexpired release of each channel (an older one would
//! never be installed, so its bytes are not worth fetching). Per artifact it takes the chunk
//! list from any peer whose list hashes to the manifest's `chunk_list`, then asks peers for
//! chunks: at most [`MAX_IN_FLIGHT`] requests at once, [`MAX_PER_PEER`] per peer, and no peer
//! more often than [`PER_PEER_INTERVAL`] allows, which keeps it under the serving side's
//! rate limit. Each chunk is checked against the list before it is written; a peer that
//! sends a bad one is penalised and not asked again during this download, and the chunk goes
//! to another peer. The whole file is checked once more before it is installed. Chunks
//! already on disk survive a restart (see [`crate::artifacts`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use commons_aggregator::rules::{check_threshold, is_safe_file_name};
use commons_p2p::{P2pHandle, PeerId};
use commons_rpc::{Release, ReleaseArtifact};
use commons_signaling::artifact::{chunk_hash, chunk_len, parse_chunk_list};
use commons_signaling::{
    Artifact, BoundedBytes, Hash32, NetworkSpec, ReleaseBundle, ReleaseVersion,
};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{Notify, watch};

use crate::artifacts::{ArtifactState, ArtifactStore, chunk_list_fits};
use crate::fetch::{FetchRequest, FetchResponse};
use crate::metrics::ReleaseMetrics;

/// Chunk requests in flight at once, over all peers (each holds up to 1 MiB).
pub const MAX_IN_FLIGHT: usize = 12;
/// Chunk requests in flight to one peer. A 1 MiB answer takes tens of milliseconds to
/// arrive even on loopback (stream set-up and flow control), so one peer needs several
/// requests outstanding to be kept busy: between two loopback nodes 2 gave 23 MiB/s, 4 gave
/// 52 MiB/s and 8 gave 78 MiB/s, at the cost of a megabyte each in flight.
pub const MAX_PER_PEER: usize = 4;
/// The shortest time between two requests to one peer: 125 a second, below the serving
/// side's default limit of 160.
pub const PER_PEER_INTERVAL: Duration = Duration::from_millis(8);
/// How long a peer that failed a request is left alone.
const PEER_COOLDOWN: Duration = Duration::from_secs(2);
/// How long a peer that did not have a chunk is left alone: short, because peers fetching
/// the same artifact gain chunks every few milliseconds.
const MISSING_COOLDOWN: Duration = Duration::from_millis(200);
/// How often the fetcher looks for work when nothing woke it.
const IDLE_POLL: Duration = Duration::from_secs(10);

/// Where a verified artifact of a release is offered to people: a hard link named after the
/// artifact, `<datadir>/releases/<channel>/<version>/<name>`.
fn named_path(datadir: &Path, bundle: &ReleaseBundle, artifact: &Artifact) -> Option<PathBuf> {
    let channel = bundle.body.channel.as_str();
    let version = bundle.body.release.to_string();
    (is_safe_file_name(channel) && is_safe_file_name(&version)).then(|| {
        datadir
            .join("releases")
            .join(channel)
            .join(version)
            .join(artifact.name.as_str())
    })
}

/// What a release needs from the fetcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReleaseStatus {
    Verified,
    Fetching,
    Superseded,
    Expired,
}

impl ReleaseStatus {
    fn name(self) -> &'static str {
        match self {
            ReleaseStatus::Verified => "verified",
            ReleaseStatus::Fetching => "fetching",
            ReleaseStatus::Superseded => "superseded",
            ReleaseStatus::Expired => "expired",
        }
    }
}

/// The release state a node owns besides the bundles (which its intake holds): the
/// artifact files, the counters, and the fetcher's wake-up.
#[derive(Debug)]
pub struct Releases {
    /// Release artifact files; absent when the node keeps no files (tests of the core).
    artifacts: Option<Arc<ArtifactStore>>,
    metrics: ReleaseMetrics,
    /// Wakes the artifact fetcher when a new release bundle was accepted.
    added: Notify,
}

/// What the release machinery reads from the node that owns it.
pub trait ReleaseHost: Send + Sync {
    /// The node's release state.
    fn releases(&self) -> &Releases;
    /// The release bundles held, by channel, the newest version first.
    fn held_releases(&self) -> Vec<(Hash32, ReleaseBundle)>;
    /// The newest version held on a channel.
    fn newest_release(&self, channel: &str) -> Option<ReleaseVersion>;
    /// Unix seconds now, by the node's clock.
    fn now(&self) -> u64;
    /// The network spec.
    fn spec(&self) -> &NetworkSpec;
    /// The connected peers, to fetch from.
    fn connected_peers(&self) -> Vec<PeerId>;
    /// Called once every artifact of `bundle` is fetched and verified.
    fn release_verified(&self, _bundle: &ReleaseBundle) {}
}

impl Releases {
    /// No artifact files (a core run without a data directory, as in tests).
    pub fn without_artifacts() -> Self {
        Releases {
            artifacts: None,
            metrics: ReleaseMetrics::default(),
            added: Notify::new(),
        }
    }

    /// Keeps release artifacts in `artifacts`.
    pub fn with_artifacts(artifacts: ArtifactStore) -> Self {
        Releases {
            artifacts: Some(Arc::new(artifacts)),
            ..Self::without_artifacts()
        }
    }

    /// The counters of release handling.
    pub fn metrics(&self) -> &ReleaseMetrics {
        &self.metrics
    }

    /// Wakes the artifact fetcher: a new release bundle was accepted.
    pub fn notify_added(&self) {
        self.added.notify_one();
    }

    /// The node's artifact files, when it keeps them.
    pub fn artifact_store(&self) -> Option<&Arc<ArtifactStore>> {
        self.artifacts.as_ref()
    }

    fn artifact_state(&self, artifact: &Artifact) -> ArtifactState {
        self.artifacts
            .as_ref()
            .map_or(ArtifactState::Waiting, |s| s.state(&artifact.sha256))
    }

    fn release_status(&self, host: &dyn ReleaseHost, bundle: &ReleaseBundle) -> ReleaseStatus {
        let verified = bundle
            .body
            .artifacts
            .iter()
            .all(|a| self.artifact_state(a) == ArtifactState::Verified);
        if verified {
            return ReleaseStatus::Verified;
        }
        let newest = host.newest_release(bundle.body.channel.as_str());
        if newest.is_some_and(|v| v > bundle.body.release) {
            ReleaseStatus::Superseded
        } else if host.now() >= bundle.body.expires {
            ReleaseStatus::Expired
        } else {
            ReleaseStatus::Fetching
        }
    }

    /// Whether every artifact of `bundle` is verified (the release's state `verified`).
    pub fn is_verified(&self, host: &dyn ReleaseHost, bundle: &ReleaseBundle) -> bool {
        self.release_status(host, bundle) == ReleaseStatus::Verified
    }

    /// Per channel, the newest release whose artifacts are all verified.
    pub fn newest_verified_releases(&self, host: &dyn ReleaseHost) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (_, bundle) in host.held_releases() {
            let channel = bundle.body.channel.as_str();
            if out.iter().any(|(c, _)| c == channel) {
                continue;
            }
            if self.release_status(host, &bundle) == ReleaseStatus::Verified {
                out.push((channel.to_string(), bundle.body.release.to_string()));
            }
        }
        out
    }

    /// A release as `listreleases` and `getrelease` show it (without the bundle's bytes).
    pub fn release_answer(
        &self,
        host: &dyn ReleaseHost,
        id: &Hash32,
        bundle: &ReleaseBundle,
    ) -> Release {
        let manifest = &bundle.body;
        let signers = host
            .spec()
            .release_class(manifest.class)
            .map_or(0, |class| {
                check_threshold(
                    *id,
                    &bundle.signatures,
                    &class.signers,
                    class.threshold as usize,
                )
                .counted
            });
        let status = self.release_status(host, bundle);
        let artifacts = manifest
            .artifacts
            .iter()
            .map(|a| {
                let (state, have) = match self.artifact_state(a) {
                    ArtifactState::Verified => ("verified", a.size),
                    ArtifactState::Fetching(have) => ("fetching", have),
                    ArtifactState::Waiting => ("waiting", 0),
                };
                let path = match &self.artifacts {
                    Some(store) if state == "verified" => Some(
                        self.datadir()
                            .and_then(|d| named_path(&d, bundle, a))
                            .filter(|p| p.is_file())
                            .unwrap_or_else(|| store.path(&a.sha256))
                            .display()
                            .to_string(),
                    ),
                    _ => None,
                };
                ReleaseArtifact {
                    name: a.name.as_str().to_string(),
                    sha256: a.sha256.to_hex(),
                    size: a.size,
                    state: state.to_string(),
                    have_bytes: have,
                    path,
                }
            })
            .collect();
        Release {
            id: id.to_hex(),
            channel: manifest.channel.as_str().to_string(),
            version: manifest.release.to_string(),
            class: manifest.class.name().to_string(),
            created: manifest.created,
            expires: manifest.expires,
            signers: signers as u64,
            state: status.name().to_string(),
            artifacts,
            bundle: None,
        }
    }

    fn datadir(&self) -> Option<PathBuf> {
        self.artifacts.as_ref().map(|s| s.datadir().to_path_buf())
    }

    /// Gives the verified artifacts of a release their names under `releases/`.
    pub fn link_named(&self, bundle: &ReleaseBundle) {
        let (Some(store), Some(datadir)) = (&self.artifacts, self.datadir()) else {
            return;
        };
        for artifact in bundle.body.artifacts.iter() {
            let Some(target) = named_path(&datadir, bundle, artifact) else {
                continue;
            };
            if target.exists() || !store.is_verified(&artifact.sha256) {
                continue;
            }
            let linked = target
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::hard_link(store.path(&artifact.sha256), &target));
            if let Err(e) = linked {
                tracing::warn!(path = %target.display(), error = %e, "cannot name a verified artifact");
            }
        }
    }

    /// Answers a peer's fetch request; the flag says whether the request was garbage.
    pub async fn serve_fetch(&self, request: &[u8]) -> (Vec<u8>, bool) {
        let Ok(request) = FetchRequest::decode(request) else {
            return (FetchResponse::Missing.encode(), true);
        };
        let Some(store) = self.artifacts.clone() else {
            return (FetchResponse::Missing.encode(), false);
        };
        let response = tokio::task::spawn_blocking(move || match request {
            FetchRequest::ChunkList { artifact } => store
                .chunk_list(&artifact)
                .and_then(|list| BoundedBytes::new(list).ok())
                .map_or(FetchResponse::Missing, |hashes| FetchResponse::ChunkList {
                    hashes,
                }),
            FetchRequest::Chunk { artifact, index } => store
                .read_chunk(&artifact, index)
                .and_then(|data| BoundedBytes::new(data).ok())
                .map_or(FetchResponse::Missing, |data| FetchResponse::Chunk { data }),
        })
        .await
        .unwrap_or(FetchResponse::Missing);
        if let FetchResponse::Chunk { data } = &response {
            self.metrics
                .served_bytes
                .inc_by(data.as_slice().len() as u64);
        }
        (response.encode(), false)
    }

    /// The artifacts the fetcher should get now: those of the newest unexpired release of
    /// each channel that are not verified yet.
    fn wanted_artifacts(&self, host: &dyn ReleaseHost) -> Vec<(ReleaseBundle, Artifact)> {
        let mut wanted = Vec::new();
        for (_, bundle) in host.held_releases() {
            match self.release_status(host, &bundle) {
                ReleaseStatus::Verified => self.link_named(&bundle),
                ReleaseStatus::Fetching => {
                    for artifact in bundle.body.artifacts.iter() {
                        if self.artifact_state(artifact) != ArtifactState::Verified {
                            wanted.push((bundle.clone(), artifact.clone()));
                        }
                    }
                }
                ReleaseStatus::Superseded | ReleaseStatus::Expired => {}
            }
        }
        wanted
    }

    /// Deletes the partial downloads of superseded and expired releases that no release
    /// still fetching shares, which would otherwise hold their disk space for ever; how many.
    pub fn prune_abandoned_downloads(&self, host: &dyn ReleaseHost) -> usize {
        let Some(store) = &self.artifacts else {
            return 0;
        };
        let wanted = self.wanted_artifacts(host);
        let mut pruned = 0;
        for (_, bundle) in host.held_releases() {
            if !matches!(
                self.release_status(host, &bundle),
                ReleaseStatus::Superseded | ReleaseStatus::Expired
            ) {
                continue;
            }
            for artifact in bundle.body.artifacts.iter() {
                let still_wanted = wanted.iter().any(|(_, a)| a.sha256 == artifact.sha256);
                if !still_wanted && store.discard_partial(&artifact.sha256) {
                    tracing::info!(release = %bundle.body.release, artifact = %artifact.name, "dropped the partial download of a superseded or expired release");
                    pruned += 1;
                }
            }
        }
        pruned
    }
}

/// Downloads the artifacts of accepted releases until shutdown.
pub async fn fetch_loop(
    node: Arc<dyn ReleaseHost>,
    net: P2pHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    let releases = node.releases();
    let Some(store) = releases.artifact_store().cloned() else {
        return;
    };
    loop {
        releases.prune_abandoned_downloads(&*node);
        let wanted = releases.wanted_artifacts(&*node);
        let mut progressed = false;
        for (bundle, artifact) in wanted {
            releases.metrics.fetches_in_progress.inc();
            let result = tokio::select! {
                r = fetch_artifact(&*node, &net, &store, &artifact) => Some(r),
                _ = crate::stopped(&mut shutdown) => None,
            };
            releases.metrics.fetches_in_progress.dec();
            match result {
                None => return,
                Some(Ok(())) => {
                    progressed = true;
                    tracing::info!(release = %bundle.body.release, artifact = %artifact.name, size = artifact.size, "artifact fetched and verified");
                    if releases.release_status(&*node, &bundle) == ReleaseStatus::Verified {
                        releases.link_named(&bundle);
                        tracing::info!(release = %bundle.body.release, channel = %bundle.body.channel, "release verified: every artifact matches the signed manifest");
                        node.release_verified(&bundle);
                    }
                }
                Some(Err(reason)) => {
                    tracing::debug!(artifact = %artifact.name, reason, "artifact not fetched yet");
                }
            }
        }
        if progressed {
            continue;
        }
        tokio::select! {
            _ = releases.added.notified() => {}
            _ = tokio::time::sleep(IDLE_POLL) => {}
            _ = crate::stopped(&mut shutdown) => return,
        }
    }
}

/// Which peers to ask, and which to leave alone for now.
#[derive(Default)]
struct PeerBook {
    bad: HashSet<PeerId>,
    busy: HashMap<PeerId, usize>,
    resting_until: HashMap<PeerId, Instant>,
    next_request: HashMap<PeerId, Instant>,
    turn: usize,
}

impl PeerBook {
    fn pick(&mut self, peers: &[PeerId], now: Instant) -> Option<PeerId> {
        if peers.is_empty() {
            return None;
        }
        for step in 0..peers.len() {
            let peer = peers[(self.turn + step) % peers.len()];
            let free = !self.bad.contains(&peer)
                && self.busy.get(&peer).copied().unwrap_or(0) < MAX_PER_PEER
                && self.resting_until.get(&peer).is_none_or(|t| *t <= now)
                && self.next_request.get(&peer).is_none_or(|t| *t <= now);
            if free {
                self.turn = (self.turn + step + 1) % peers.len();
                *self.busy.entry(peer).or_default() += 1;
                self.next_request.insert(peer, now + PER_PEER_INTERVAL);
                return Some(peer);
            }
        }
        None
    }

    fn done(&mut self, peer: &PeerId) {
        if let Some(n) = self.busy.get_mut(peer) {
            *n = n.saturating_sub(1);
        }
    }

    fn rest(&mut self, peer: PeerId, until: Instant) {
        self.resting_until.insert(peer, until);
    }
}

/// Gets the chunk list of an artifact from the first peer whose list matches the manifest.
async fn fetch_chunk_list(
    node: &dyn ReleaseHost,
    net: &P2pHandle,
    artifact: &Artifact,
    book: &mut PeerBook,
) -> Option<Vec<Hash32>> {
    let request = FetchRequest::ChunkList {
        artifact: artifact.sha256,
    }
    .encode();
    for peer in node.connected_peers() {
        if book.bad.contains(&peer) {
            continue;
        }
        let Ok(bytes) = net.request_fetch(peer, request.clone()).await else {
            continue;
        };
        match FetchResponse::decode(&bytes) {
            Ok(FetchResponse::Missing) => {}
            Ok(FetchResponse::ChunkList { hashes }) => match parse_chunk_list(hashes.as_slice()) {
                Some(list) if chunk_list_fits(artifact, &list) => return Some(list),
                _ => {
                    tracing::warn!(%peer, artifact = %artifact.name, "peer sent a chunk list that does not match the manifest; penalising");
                    node.releases().metrics.bad_chunks.inc();
                    book.bad.insert(peer);
                    let _ = net.penalize(peer).await;
                }
            },
            Ok(FetchResponse::Chunk { .. }) | Err(_) => {
                book.bad.insert(peer);
                let _ = net.penalize(peer).await;
            }
        }
    }
    None
}

/// Downloads one artifact; `Err` with a short reason when it cannot finish now (no peer
/// holds it yet), to be retried later.
async fn fetch_artifact(
    node: &dyn ReleaseHost,
    net: &P2pHandle,
    store: &Arc<ArtifactStore>,
    artifact: &Artifact,
) -> Result<(), &'static str> {
    let mut book = PeerBook::default();
    let saved = {
        let (store, artifact) = (store.clone(), artifact.clone());
        tokio::task::spawn_blocking(move || store.saved_chunk_list(&artifact))
            .await
            .ok()
            .flatten()
    };
    let chunks = match saved {
        Some(list) => list,
        None => fetch_chunk_list(node, net, artifact, &mut book)
            .await
            .ok_or("no peer has the chunk list")?,
    };
    let download = {
        let (store, artifact) = (store.clone(), artifact.clone());
        tokio::task::spawn_blocking(move || store.begin(&artifact, chunks))
            .await
            .map_err(|_| "task failed")?
            .map_err(|e| {
                tracing::error!(error = %e, "cannot start an artifact download");
                "disk"
            })?
    };
    // Each node takes the chunks in its own random order, so that nodes fetching the same
    // artifact hold different chunks early and can serve each other, instead of all
    // waiting on the peers that hold the whole file.
    let mut missing = download.missing.clone();
    shuffle(&mut missing);
    let mut queue: VecDeque<u32> = missing.into();
    let mut in_flight = FuturesUnordered::new();
    let mut idle_since = Instant::now();
    while !queue.is_empty() || !in_flight.is_empty() {
        let peers = node.connected_peers();
        let now = Instant::now();
        while in_flight.len() < MAX_IN_FLIGHT && !queue.is_empty() {
            let Some(peer) = book.pick(&peers, now) else {
                break;
            };
            let index = queue.pop_front().expect("queue is not empty");
            let request = FetchRequest::Chunk {
                artifact: artifact.sha256,
                index,
            }
            .encode();
            let net = net.clone();
            in_flight.push(async move { (peer, index, net.request_fetch(peer, request).await) });
        }
        if in_flight.is_empty() {
            // Nobody to ask right now: peers resting, or none holds the chunks yet.
            if idle_since.elapsed() > IDLE_POLL {
                return Err("no peer serves the missing chunks");
            }
            tokio::time::sleep(PER_PEER_INTERVAL).await;
            continue;
        }
        let next = tokio::time::timeout(PER_PEER_INTERVAL, in_flight.next()).await;
        let Ok(Some((peer, index, result))) = next else {
            continue;
        };
        book.done(&peer);
        let now = Instant::now();
        let response = match result {
            Ok(bytes) => FetchResponse::decode(&bytes),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "chunk request failed");
                book.rest(peer, now + PEER_COOLDOWN);
                queue.push_back(index);
                continue;
            }
        };
        let expected_len = chunk_len(download.size, u64::from(index));
        match response {
            Ok(FetchResponse::Chunk { data })
                if Some(data.as_slice().len() as u64) == expected_len
                    && chunk_hash(data.as_slice()) == download.chunks[index as usize] =>
            {
                let len = data.as_slice().len() as u64;
                let (store, sha256) = (store.clone(), artifact.sha256);
                let written = tokio::task::spawn_blocking(move || {
                    store.write_chunk(&sha256, index, data.as_slice())
                })
                .await;
                match written {
                    Ok(Ok(())) => {
                        node.releases().metrics.fetched_bytes.inc_by(len);
                        idle_since = Instant::now();
                    }
                    _ => return Err("disk"),
                }
            }
            Ok(FetchResponse::Missing) => {
                book.rest(peer, now + MISSING_COOLDOWN);
                queue.push_back(index);
            }
            Ok(_) | Err(_) => {
                tracing::warn!(%peer, artifact = %artifact.name, index, "peer sent a chunk that does not match the signed manifest; penalising it and asking another");
                node.releases().metrics.bad_chunks.inc();
                book.bad.insert(peer);
                let _ = net.penalize(peer).await;
                queue.push_front(index);
            }
        }
    }
    let (store, artifact) = (store.clone(), artifact.clone());
    tokio::task::spawn_blocking(move || store.finish(&artifact))
        .await
        .map_err(|_| "task failed")?
        .map_err(|e| {
            tracing::error!(error = %e, "a fetched artifact failed its final check; starting over");
            "final check failed"
        })
}

/// Fisher-Yates with a random seed: the order only spreads load, so no cryptographic
/// strength is needed.
fn shuffle(items: &mut [u32]) {
    let mut state = rand_core::RngCore::next_u64(&mut rand_core::OsRng) | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let j = usize::try_from(state % (i as u64 + 1)).unwrap_or(0);
        items.swap(i, j);
    }
}
