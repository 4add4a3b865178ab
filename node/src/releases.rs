//! Release artifacts: the release state a node owns ([`Releases`]: the artifact files and
//! the counters; the bundles themselves are in the intake's release book), what the RPC views
//! show of a release, serving artifact chunks to peers, and the fetcher that downloads the
//! artifacts of accepted releases from peers it does not trust. The node is reached only
//! through [`ReleaseHost`], so this module does not depend on it.
//!
//! The fetcher works on the newest unexpired release of each channel (an older one would
//! never be installed, so its bytes are not worth fetching). Per artifact it takes the chunk
//! list from any peer whose list hashes to the manifest's `chunk_list`, then asks peers for
//! runs of [`RUN_CHUNKS`] chunks, each run on one `fetch/2` stream: at most
//! [`MAX_RUNS_IN_FLIGHT`] runs at once, one per peer, and no peer more often than
//! [`PER_PEER_INTERVAL`] allows (a peer that speaks only `fetch/1` gets the run's chunks
//! as requests, [`MAX_PER_PEER`] at once). Each chunk is checked against the list before
//! it is written; a peer that
//! sends a bad one is penalised and not asked again during this download, and the chunk goes
//! to another peer. The whole file is checked once more before it is installed. Chunks
//! already on disk survive a restart (see [`crate::artifacts`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use commons_aggregator::rules::{check_threshold, is_safe_file_name};
use commons_p2p::{P2pError, P2pHandle, PeerId};
use commons_rpc::{Release, ReleaseArtifact};
use commons_signaling::artifact::{chunk_hash, chunk_len, parse_chunk_list};
use commons_signaling::{
    Artifact, BoundedBytes, Hash32, NetworkSpec, ReleaseBundle, ReleaseVersion,
};
use futures::stream::FuturesUnordered;
use futures::{AsyncRead, AsyncWrite, AsyncWriteExt, StreamExt};
use tokio::sync::{Notify, Semaphore, watch};

use crate::artifacts::Download;
use crate::artifacts::{ArtifactState, ArtifactStore, chunk_list_fits};
use crate::fetch::{
    ChunkRun, FetchRequest, FetchResponse, MAX_RESPONSE_BYTES, MAX_RUN_REQUEST_BYTES, read_frame,
    write_frame,
};
use crate::metrics::ReleaseMetrics;

/// Chunks asked for on one `fetch/2` stream: 16 MiB, so that stream set-up is rare while a
/// slow peer holds back little of a download.
pub const RUN_CHUNKS: usize = 16;
/// Runs in flight at once, over all peers; one per peer (a run keeps its peer busy: it
/// reads the next chunk from disk while it sends one).
pub const MAX_RUNS_IN_FLIGHT: usize = 8;
/// Chunk requests in flight to a peer that speaks only `fetch/1`. A 1 MiB answer takes tens
/// of milliseconds to arrive even on loopback (a stream set up per request, flow control
/// starting small), so such a peer needs several requests outstanding to be kept busy:
/// between two loopback nodes 2 gave 23 MiB/s, 4 gave 52 MiB/s and 8 gave 78 MiB/s.
pub const MAX_PER_PEER: usize = 4;
/// The shortest time between two runs asked of one peer.
pub const PER_PEER_INTERVAL: Duration = Duration::from_millis(8);
/// The longest wait for one step of a `fetch/2` stream (the request, one answer, the close),
/// on either side: the request timeout of `fetch/1`.
pub const FETCH_STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a peer whose stream closed before its first answer is left alone: it had no room
/// for another stream (see [`crate::serving`]), it is not broken.
const REFUSED_COOLDOWN: Duration = Duration::from_millis(250);
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
            FetchRequest::Chunk { artifact, index } => chunk_answer(&store, &artifact, index),
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

    /// Serves one `fetch/2` stream: reads its [`ChunkRun`], then writes one framed answer per
    /// chunk asked, in order, and closes the stream. The next chunk is read from disk (at most
    /// `reads` reads at once over all streams) while the current one is written, so a stream
    /// holds two chunks at most however long its run. Every step has [`FETCH_STEP_TIMEOUT`]:
    /// a peer that reads slower than that is cut off.
    pub async fn serve_fetch_stream<S>(
        &self,
        stream: &mut S,
        reads: &Arc<Semaphore>,
    ) -> Result<usize, StreamEnd>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let request = step(read_frame(stream, MAX_RUN_REQUEST_BYTES))
            .await?
            .ok_or(StreamEnd::Closed)?;
        let run = ChunkRun::decode(&request).map_err(|_| StreamEnd::Garbage)?;
        let store = self.artifacts.clone();
        let read = |index: u32| {
            let (store, reads) = (store.clone(), reads.clone());
            let artifact = run.artifact;
            tokio::spawn(async move {
                let Some(store) = store else {
                    return FetchResponse::Missing;
                };
                let Ok(_permit) = reads.acquire_owned().await else {
                    return FetchResponse::Missing;
                };
                tokio::task::spawn_blocking(move || chunk_answer(&store, &artifact, index))
                    .await
                    .unwrap_or(FetchResponse::Missing)
            })
        };
        let mut next = Some(read(run.indices[0]));
        for (position, _) in run.indices.iter().enumerate() {
            let Some(reading) = next.take() else { break };
            let answer = reading.await.unwrap_or(FetchResponse::Missing);
            next = run.indices.get(position + 1).map(|&index| read(index));
            let bytes = answer.encode();
            step(write_frame(stream, &bytes, MAX_RESPONSE_BYTES)).await?;
            if let FetchResponse::Chunk { data } = &answer {
                self.metrics
                    .served_bytes
                    .inc_by(data.as_slice().len() as u64);
            }
        }
        step(stream.close()).await?;
        Ok(run.indices.len())
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
    /// Peers that speak only `fetch/1`.
    legacy: HashSet<PeerId>,
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
                && self.busy.get(&peer).is_none_or(|runs| *runs == 0)
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
        while in_flight.len() < MAX_RUNS_IN_FLIGHT && !queue.is_empty() {
            let Some(peer) = book.pick(&peers, now) else {
                break;
            };
            // Shared out among the peers, so that a small artifact still goes to all of them
            // (and a bad one among them is found early), and a large one in full runs.
            let share = queue.len().div_ceil(peers.len()).clamp(1, RUN_CHUNKS);
            let run: Vec<u32> = queue.drain(..share).collect();
            let legacy = book.legacy.contains(&peer);
            in_flight.push(fetch_run(node, net, store, &download, peer, run, legacy));
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
        let Ok(Some(run)) = next else {
            continue;
        };
        let peer = run.peer;
        book.done(&peer);
        let now = Instant::now();
        if run.written > 0 {
            idle_since = now;
        }
        queue.extend(run.left);
        match run.end {
            RunEnd::Complete if run.missing > 0 => book.rest(peer, now + MISSING_COOLDOWN),
            RunEnd::Complete => {}
            RunEnd::Unsupported => {
                tracing::debug!(%peer, "peer does not speak fetch/2; asking it chunk by chunk");
                book.legacy.insert(peer);
            }
            RunEnd::Refused => book.rest(peer, now + REFUSED_COOLDOWN),
            RunEnd::Failed => book.rest(peer, now + PEER_COOLDOWN),
            RunEnd::Bad => {
                tracing::warn!(%peer, artifact = %artifact.name, "peer sent a chunk that does not match the signed manifest; penalising it and asking another");
                node.releases().metrics.bad_chunks.inc();
                book.bad.insert(peer);
                let _ = net.penalize(peer).await;
            }
            RunEnd::Disk => return Err("disk"),
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

/// A chunk for a peer, or `missing` when this node does not hold it (on the blocking pool:
/// it reads and hashes a megabyte).
fn chunk_answer(store: &ArtifactStore, artifact: &Hash32, index: u32) -> FetchResponse {
    store
        .read_chunk(artifact, index)
        .and_then(|data| BoundedBytes::new(data).ok())
        .map_or(FetchResponse::Missing, |data| FetchResponse::Chunk { data })
}

/// Why a `fetch/2` stream was not served to its end.
#[derive(Debug)]
pub enum StreamEnd {
    /// The peer sent something that is not a run request: penalise it.
    Garbage,
    /// The stream ended before a request.
    Closed,
    /// Reading or writing failed.
    Io(std::io::Error),
    /// A step took longer than [`FETCH_STEP_TIMEOUT`].
    TimedOut,
}

/// One read or write of a `fetch/2` stream, within [`FETCH_STEP_TIMEOUT`].
async fn step<T>(io: impl Future<Output = std::io::Result<T>>) -> Result<T, StreamEnd> {
    tokio::time::timeout(FETCH_STEP_TIMEOUT, io)
        .await
        .map_err(|_| StreamEnd::TimedOut)?
        .map_err(StreamEnd::Io)
}

/// How a run of chunks asked of one peer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunEnd {
    /// Every chunk answered (some perhaps `missing`).
    Complete,
    /// The peer speaks only `fetch/1`.
    Unsupported,
    /// The stream closed before its first answer: the peer was busy.
    Refused,
    /// The request, the stream or the connection failed, or the peer was too slow.
    Failed,
    /// The peer sent a chunk that does not match the chunk list, or garbage.
    Bad,
    /// Writing to the local disk failed.
    Disk,
}

/// What a run brought.
struct RunOutcome {
    peer: PeerId,
    /// Chunks written and checked.
    written: usize,
    /// Chunks the peer did not hold.
    missing: usize,
    /// Chunks to ask for again: those missing and those the run did not reach.
    left: Vec<u32>,
    end: RunEnd,
}

/// What became of one chunk received.
enum Checked {
    Written,
    Mismatch,
    Disk,
}

/// Fetches a run of chunks from one peer: on one `fetch/2` stream, or for a `fetch/1` peer
/// with [`MAX_PER_PEER`] requests outstanding. Answers are taken in the order asked; each
/// chunk is checked against the chunk list and written on the blocking pool while the next
/// answer arrives, so at most two chunks of the run are held at once.
async fn fetch_run(
    node: &dyn ReleaseHost,
    net: &P2pHandle,
    store: &Arc<ArtifactStore>,
    download: &Download,
    peer: PeerId,
    run: Vec<u32>,
    legacy: bool,
) -> RunOutcome {
    let mut outcome = RunOutcome {
        peer,
        written: 0,
        missing: 0,
        left: Vec::new(),
        end: RunEnd::Complete,
    };
    let mut answers = if legacy {
        legacy_answers(net, peer, download.sha256, &run)
    } else {
        match stream_answers(net, peer, download.sha256, &run).await {
            Ok(answers) => answers,
            Err(end) => {
                outcome.end = end;
                outcome.left = run;
                return outcome;
            }
        }
    };
    let metrics = &node.releases().metrics;
    let mut writing: Option<(usize, u64, tokio::task::JoinHandle<Checked>)> = None;
    let mut position = 0;
    let end = loop {
        // The previous chunk's write is settled before this answer is looked at, so that a
        // failure can hand back everything from that chunk on.
        let answer = if position < run.len() {
            Some(answers.next().await)
        } else {
            None
        };
        if let Some((at, len, write)) = writing.take() {
            match write.await.unwrap_or(Checked::Disk) {
                Checked::Written => {
                    outcome.written += 1;
                    metrics.fetched_bytes.inc_by(len);
                }
                Checked::Mismatch => {
                    position = at;
                    break RunEnd::Bad;
                }
                Checked::Disk => {
                    position = at;
                    break RunEnd::Disk;
                }
            }
        }
        let Some(answer) = answer else {
            break RunEnd::Complete;
        };
        let index = run[position];
        match answer {
            Some(Ok(FetchResponse::Chunk { data }))
                if Some(data.as_slice().len() as u64)
                    == chunk_len(download.size, u64::from(index)) =>
            {
                let len = data.as_slice().len() as u64;
                let expected = download.chunks[index as usize];
                let (store, sha256) = (store.clone(), download.sha256);
                let write = tokio::task::spawn_blocking(move || {
                    if chunk_hash(data.as_slice()) != expected {
                        return Checked::Mismatch;
                    }
                    match store.write_chunk(&sha256, index, data.as_slice()) {
                        Ok(()) => Checked::Written,
                        Err(_) => Checked::Disk,
                    }
                });
                writing = Some((position, len, write));
            }
            Some(Ok(FetchResponse::Missing)) => {
                outcome.missing += 1;
                outcome.left.push(index);
            }
            Some(Ok(_)) => break RunEnd::Bad,
            Some(Err(end)) => {
                break if end == RunEnd::Failed && position == 0 && !legacy {
                    RunEnd::Refused
                } else {
                    end
                };
            }
            None => {
                break if position == 0 {
                    RunEnd::Refused
                } else {
                    RunEnd::Failed
                };
            }
        }
        position += 1;
    };
    // Every way out of the loop has settled the last write.
    if end != RunEnd::Complete {
        outcome
            .left
            .extend_from_slice(&run[position.min(run.len())..]);
    }
    outcome.end = end;
    outcome
}

type Answers<'a> = futures::stream::BoxStream<'a, Result<FetchResponse, RunEnd>>;

/// The answers of a `fetch/1` peer to a run, one request per chunk.
fn legacy_answers<'a>(
    net: &'a P2pHandle,
    peer: PeerId,
    artifact: Hash32,
    run: &[u32],
) -> Answers<'a> {
    futures::stream::iter(run.to_vec())
        .map(move |index| async move {
            let request = FetchRequest::Chunk { artifact, index }.encode();
            match net.request_fetch(peer, request).await {
                Ok(bytes) => FetchResponse::decode(&bytes).map_err(|_| RunEnd::Bad),
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "chunk request failed");
                    Err(RunEnd::Failed)
                }
            }
        })
        .buffered(MAX_PER_PEER)
        .boxed()
}

/// Opens a `fetch/2` stream for a run and returns its answers as they arrive.
async fn stream_answers(
    net: &P2pHandle,
    peer: PeerId,
    artifact: Hash32,
    run: &[u32],
) -> Result<Answers<'static>, RunEnd> {
    let mut stream = match net.open_fetch_stream(peer).await {
        Ok(stream) => stream,
        Err(P2pError::Unsupported(_)) => return Err(RunEnd::Unsupported),
        Err(e) => {
            tracing::debug!(%peer, error = %e, "no fetch stream");
            return Err(RunEnd::Failed);
        }
    };
    let request = ChunkRun {
        artifact,
        indices: run.to_vec(),
    }
    .encode();
    if step(write_frame(&mut stream, &request, MAX_RUN_REQUEST_BYTES))
        .await
        .is_err()
    {
        return Err(RunEnd::Refused);
    }
    Ok(
        futures::stream::unfold(Some(stream), move |stream| async move {
            let mut stream = stream?;
            match step(read_frame(&mut stream, MAX_RESPONSE_BYTES)).await {
                Ok(Some(frame)) => Some((
                    FetchResponse::decode(&frame).map_err(|_| RunEnd::Bad),
                    Some(stream),
                )),
                // The stream ended early: said once, then nothing more.
                Ok(None) => Some((Err(RunEnd::Failed), None)),
                Err(e) => {
                    tracing::debug!(%peer, error = ?e, "fetch stream failed");
                    Some((Err(RunEnd::Failed), None))
                }
            }
        })
        .boxed(),
    )
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
