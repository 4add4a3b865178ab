//! Prometheus metrics and the `/metrics` endpoint.
//!
//! Counters are updated as messages arrive. Tallies, states and gauges are computed from the
//! node at scrape time by a [`Collector`], so a scrape always shows one consistent state and
//! nothing is recomputed between scrapes. Everything lives in the same [`Registry`] as the
//! libp2p metrics of the networking layer, so one scrape shows both.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::node::Node;
use commons_aggregator::{ProposalState, Reason, units_to_weight};

/// Labels of `commons_messages_received_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReceivedLabels {
    /// Message kind: proposal, signal, presence, attestation, release.
    pub kind: String,
    /// What became of it: accept, reject or ignore.
    pub verdict: String,
}

/// Labels of `commons_messages_verdicts_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct VerdictLabels {
    /// Message kind.
    pub kind: String,
    /// What became of it: accept, reject or ignore.
    pub verdict: String,
    /// Why (`commons_aggregator::Reason::label`).
    pub reason: String,
}

/// Labels carrying only a message kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KindLabels {
    /// Message kind.
    pub kind: String,
}

/// The counters and latency histograms the ingest pipeline updates.
#[derive(Debug, Clone)]
pub struct IngestMetrics {
    /// Messages received from peers, by kind and verdict.
    pub received: Family<ReceivedLabels, Counter>,
    /// Messages dropped as duplicates before their signature was checked.
    pub duplicates: Family<KindLabels, Counter>,
    /// Messages received from peers, by kind, verdict and reason.
    pub verdicts: Family<VerdictLabels, Counter>,
    /// Uptime attestations this node issued as a measurer (zero on other nodes).
    pub measured: Counter,
    /// Seconds from a message entering the pipeline to its verdict (verification, apply and
    /// store write included), by kind.
    pub ingest_seconds: Family<KindLabels, Histogram, fn() -> Histogram>,
    /// Seconds a message's signature checks took on the blocking pool, by kind.
    pub verify_seconds: Family<KindLabels, Histogram, fn() -> Histogram>,
    /// Seconds a message waited for a blocking-pool thread before its checks started: the
    /// queueing that turns a burst of messages into delivery latency.
    pub verify_wait_seconds: Family<KindLabels, Histogram, fn() -> Histogram>,
    /// Equivocation evidence stored, by origin: `received` from a peer, `made` by this node
    /// from two conflicting signals it received.
    pub evidence: Family<OriginLabels, Counter>,
    /// Seconds a received gossip message waited for its turn (its peer's queue served in
    /// turn with the others) before entering the pipeline, by kind.
    pub queue_wait_seconds: Family<KindLabels, Histogram, fn() -> Histogram>,
    /// Received gossip messages waiting for their turn.
    pub queued: Gauge,
    /// Received gossip messages dropped before the pipeline (reported `Ignore`), by cause:
    /// `peer_queue_full`, `queue_full` (shed from the longest backlog) or
    /// `invalid_signature` (the queue of a peer that sent one).
    pub shed: Family<CauseLabels, Counter>,
}

/// Labels of `commons_gossip_shed_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CauseLabels {
    /// Why the message was dropped.
    pub cause: String,
}

/// Labels of `commons_equivocation_evidence_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OriginLabels {
    /// `received` or `made`.
    pub origin: String,
}

/// Buckets from 5 microseconds (a duplicate dropped before verification) to about 0.75 s
/// (a release bundle, or a pipeline stalled behind a burst), a factor 2.5 apart.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(5e-6, 2.5, 14))
}

impl Default for IngestMetrics {
    fn default() -> Self {
        IngestMetrics {
            received: Family::default(),
            duplicates: Family::default(),
            verdicts: Family::default(),
            measured: Counter::default(),
            ingest_seconds: Family::new_with_constructor(latency_histogram),
            verify_seconds: Family::new_with_constructor(latency_histogram),
            verify_wait_seconds: Family::new_with_constructor(latency_histogram),
            evidence: Family::default(),
            queue_wait_seconds: Family::new_with_constructor(latency_histogram),
            queued: Gauge::default(),
            shed: Family::default(),
        }
    }
}

impl IngestMetrics {
    /// Counts a received message, with the reason for its verdict.
    pub fn received(&self, kind: &str, verdict: &str, reason: &str) {
        self.received
            .get_or_create(&ReceivedLabels {
                kind: kind.into(),
                verdict: verdict.into(),
            })
            .inc();
        self.verdicts
            .get_or_create(&VerdictLabels {
                kind: kind.into(),
                verdict: verdict.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// Records how long one message took through the pipeline.
    pub fn ingested_in(&self, kind: &str, elapsed: std::time::Duration) {
        self.ingest_seconds
            .get_or_create(&KindLabels { kind: kind.into() })
            .observe(elapsed.as_secs_f64());
    }

    /// Records how long one message waited for, and then took in, signature verification.
    pub fn verified_in(
        &self,
        kind: &str,
        waited: std::time::Duration,
        verifying: std::time::Duration,
    ) {
        let labels = KindLabels { kind: kind.into() };
        self.verify_wait_seconds
            .get_or_create(&labels)
            .observe(waited.as_secs_f64());
        self.verify_seconds
            .get_or_create(&labels)
            .observe(verifying.as_secs_f64());
    }

    /// Counts equivocation evidence stored, `received` or `made`.
    pub fn evidence(&self, origin: &str) {
        self.evidence
            .get_or_create(&OriginLabels {
                origin: origin.into(),
            })
            .inc();
    }

    /// Records how long a received gossip message waited for its turn.
    pub fn gossip_waited(&self, kind: &str, waited: std::time::Duration) {
        self.queue_wait_seconds
            .get_or_create(&KindLabels { kind: kind.into() })
            .observe(waited.as_secs_f64());
    }

    /// Counts `count` received gossip messages dropped before the pipeline.
    pub fn gossip_shed(&self, cause: &str, count: usize) {
        self.shed
            .get_or_create(&CauseLabels {
                cause: cause.into(),
            })
            .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    }

    /// Counts a duplicate dropped before verification.
    pub fn duplicate(&self, kind: &str) {
        self.duplicates
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }
}

/// Labels carrying a reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why, as a snake_case code.
    pub reason: String,
}

/// The reasons a release bundle is refused, so each has a series from the first scrape.
pub const RELEASE_REJECT_REASONS: [Reason; 11] = [
    Reason::Malformed,
    Reason::TooLarge,
    Reason::UnknownVersion,
    Reason::UnknownClass,
    Reason::BelowThreshold,
    Reason::Rollback,
    Reason::Expired,
    Reason::ExpiryBeforeCreation,
    Reason::BadArtifacts,
    Reason::ArtifactMismatch,
    Reason::StoreFailed,
];

/// The counters of release handling.
#[derive(Debug, Clone, Default)]
pub struct ReleaseMetrics {
    /// Artifact bytes fetched from peers and verified chunk by chunk.
    pub fetched_bytes: Counter,
    /// Artifact bytes served to peers.
    pub served_bytes: Counter,
    /// Chunks (or chunk lists) from peers that did not match the manifest.
    pub bad_chunks: Counter,
    /// Release bundles refused (from peers or publishers), by reason.
    pub rejected: Family<ReasonLabels, Counter>,
    /// Artifacts being fetched now.
    pub fetches_in_progress: Gauge,
}

impl ReleaseMetrics {
    /// Counts a refused bundle.
    pub fn rejected(&self, reason: &str) {
        self.rejected
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }
}

/// One proposal's numbers at scrape time.
#[derive(Debug, Clone, PartialEq)]
pub struct ProposalMetrics {
    /// The proposal id, hex.
    pub id: String,
    /// The current state's name.
    pub state: String,
    /// Per choice: name, summed weight, node count.
    pub choices: Vec<(String, f64, u64)>,
    /// Weighted share of `override` in the qualified population.
    pub override_ratio: f64,
    /// Signers proven to equivocate on it, whose signals count nowhere.
    pub excluded_signers: u64,
}

/// Everything the collector shows, read from the node at scrape time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Every known proposal.
    pub proposals: Vec<ProposalMetrics>,
    /// Every state a proposal can be in, so each gets a 0 or 1 series.
    pub states: Vec<String>,
    /// Qualified, counted nodes in the current window.
    pub qualified_nodes: u64,
    /// Their total weight.
    pub qualified_weight: f64,
    /// Connected peers.
    pub peers: u64,
    /// Bytes the store uses.
    pub store_bytes: u64,
    /// Store writes that failed since start (retries included).
    pub store_write_errors: u64,
    /// Whether the store cannot write now (writes wait for the disk).
    pub store_degraded: bool,
    /// Per channel, the newest release whose artifacts are all verified: (channel, version).
    pub newest_verified_releases: Vec<(String, String)>,
    /// The `commonsd` version.
    pub version: String,
    /// The network's name.
    pub network: String,
    /// The epoch the node last did its epoch work for (the aggregator's epoch).
    pub epoch: u64,
    /// The network's epoch length in seconds.
    pub epoch_secs: u64,
    /// This node's own standing; `None` while no attestation about it is known.
    pub own: Option<OwnStanding>,
    /// The spec version in force.
    pub spec_version: u32,
    /// Whether a rotation proposal that passed or is pending names a spec version this node
    /// does not hold.
    pub spec_version_missing: bool,
}

/// This node's own standing in the population, as every other node computes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OwnStanding {
    /// A quorum attests it for the spec's minimum uptime.
    pub qualified: bool,
    /// Qualified, and the one node counted for its address.
    pub counted: bool,
    /// Its attested uptime in epochs.
    pub uptime_epochs: u32,
}

/// Where the collector reads a [`Snapshot`] from.
pub trait SnapshotSource: Send + Sync + 'static {
    /// The numbers as of now.
    fn snapshot(&self) -> Snapshot;
}

/// Computes the node's gauges at each scrape.
pub struct NodeCollector<S> {
    source: Arc<S>,
}

impl<S> fmt::Debug for NodeCollector<S> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("NodeCollector")
    }
}

type Labels = Vec<(&'static str, String)>;

fn encode_family<M: EncodeMetric + prometheus_client::metrics::TypedMetric + Default>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    family: &Family<Labels, M>,
) -> fmt::Result {
    let metric = encoder.encode_descriptor(name, help, unit, family.metric_type())?;
    family.encode(metric)
}

fn encode_gauge<T: prometheus_client::encoding::EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: T,
) -> fmt::Result {
    let gauge = ConstGauge::new(value);
    let metric = encoder.encode_descriptor(name, help, unit, gauge.metric_type())?;
    gauge.encode(metric)
}

impl<S: SnapshotSource> Collector for NodeCollector<S> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let snap = self.source.snapshot();
        let weight: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>> = Family::default();
        let nodes: Family<Labels, Gauge> = Family::default();
        let ratio: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>> = Family::default();
        let state: Family<Labels, Gauge> = Family::default();
        let excluded: Family<Labels, Gauge> = Family::default();
        for p in &snap.proposals {
            excluded
                .get_or_create(&vec![("proposal", p.id.clone())])
                .set(i64::try_from(p.excluded_signers).unwrap_or(i64::MAX));
            for (choice, w, n) in &p.choices {
                let labels = vec![("proposal", p.id.clone()), ("choice", choice.clone())];
                weight.get_or_create(&labels).set(*w);
                nodes
                    .get_or_create(&labels)
                    .set(i64::try_from(*n).unwrap_or(i64::MAX));
            }
            ratio
                .get_or_create(&vec![("proposal", p.id.clone())])
                .set(p.override_ratio);
            for s in &snap.states {
                state
                    .get_or_create(&vec![("proposal", p.id.clone()), ("state", s.clone())])
                    .set(i64::from(*s == p.state));
            }
        }
        encode_family(
            &mut encoder,
            "commons_tally_weight",
            "Summed square-root weight of the latest signals per proposal and choice",
            None,
            &weight,
        )?;
        encode_family(
            &mut encoder,
            "commons_tally_nodes",
            "Counted signers per proposal and choice",
            None,
            &nodes,
        )?;
        encode_family(
            &mut encoder,
            "commons_override_ratio",
            "Weighted share of the qualified population signalling override",
            None,
            &ratio,
        )?;
        encode_family(
            &mut encoder,
            "commons_proposal_state",
            "1 for the state each proposal is in, 0 for the others",
            None,
            &state,
        )?;
        encode_family(
            &mut encoder,
            "commons_excluded_signers",
            "Signers proven to equivocate per proposal (evidence held), whose signals count in no choice",
            None,
            &excluded,
        )?;
        encode_gauge(
            &mut encoder,
            "commons_qualified_nodes",
            "Qualified nodes counted after IP dedup in the current window",
            None,
            i64::try_from(snap.qualified_nodes).unwrap_or(i64::MAX),
        )?;
        encode_gauge(
            &mut encoder,
            "commons_qualified_weight",
            "Total square-root weight of the qualified nodes (the tally denominator)",
            None,
            snap.qualified_weight,
        )?;
        encode_gauge(
            &mut encoder,
            "commons_peers",
            "Directly connected peers",
            None,
            i64::try_from(snap.peers).unwrap_or(i64::MAX),
        )?;
        encode_gauge(
            &mut encoder,
            "commons_store",
            "Approximate size of the RocksDB store (SST files and memtables)",
            Some(&Unit::Bytes),
            i64::try_from(snap.store_bytes).unwrap_or(i64::MAX),
        )?;
        encode_gauge(
            &mut encoder,
            "commons_store_degraded",
            "1 while the store cannot write (a full or failing disk): the node refuses new messages and RPC writes until it can",
            None,
            i64::from(snap.store_degraded),
        )?;
        let errors = ConstCounter::new(snap.store_write_errors);
        let metric = encoder.encode_descriptor(
            "commons_store_write_errors",
            "Store writes that failed since start (each retry that fails counts)",
            None,
            errors.metric_type(),
        )?;
        errors.encode(metric)?;
        let newest: Family<Labels, Gauge> = Family::default();
        for (channel, version) in &snap.newest_verified_releases {
            newest
                .get_or_create(&vec![
                    ("channel", channel.clone()),
                    ("version", version.clone()),
                ])
                .set(1);
        }
        encode_family(
            &mut encoder,
            "commons_release_newest_verified",
            "1 for the newest release of each channel whose artifacts are all verified (the version is a label)",
            None,
            &newest,
        )?;
        let build = Info::new(vec![
            ("version", snap.version.clone()),
            ("network", snap.network.clone()),
        ]);
        let metric = encoder.encode_descriptor(
            "commons_build",
            "The running commonsd: its version and network (always 1)",
            None,
            build.metric_type(),
        )?;
        build.encode(metric)?;
        encode_gauge(
            &mut encoder,
            "commons_epoch",
            "The epoch the node last did its epoch work for (attestations, latched overrides)",
            None,
            i64::try_from(snap.epoch).unwrap_or(i64::MAX),
        )?;
        encode_gauge(
            &mut encoder,
            "commons_epoch_boundary_timestamp",
            "Unix time that epoch began: more than two epoch lengths ago means the epoch work is late",
            Some(&Unit::Seconds),
            i64::try_from(snap.epoch.saturating_mul(snap.epoch_secs)).unwrap_or(i64::MAX),
        )?;
        encode_gauge(
            &mut encoder,
            "commons_epoch_length",
            "The network's epoch length",
            Some(&Unit::Seconds),
            i64::try_from(snap.epoch_secs).unwrap_or(i64::MAX),
        )?;
        let own = snap.own.unwrap_or_default();
        encode_gauge(
            &mut encoder,
            "commons_own_qualified",
            "1 when a quorum attests this node for the minimum uptime",
            None,
            i64::from(own.qualified),
        )?;
        encode_gauge(
            &mut encoder,
            "commons_own_counted",
            "1 when this node counts in every tally (qualified and the one node of its address)",
            None,
            i64::from(own.counted),
        )?;
        encode_gauge(
            &mut encoder,
            "commons_own_uptime_epochs",
            "This node's attested uptime in epochs",
            None,
            i64::from(own.uptime_epochs),
        )?;
        encode_gauge(
            &mut encoder,
            "commons_spec_version",
            "The network spec version in force (1 until a key rotation activates)",
            None,
            i64::from(snap.spec_version),
        )?;
        encode_gauge(
            &mut encoder,
            "commons_spec_version_missing",
            "1 while a rotation proposal that passed or is pending names a spec version this node does not hold (restart it on the bundle that holds it)",
            None,
            i64::from(snap.spec_version_missing),
        )?;
        Ok(())
    }
}

/// The process metrics Prometheus' client libraries conventionally export
/// (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...), read from
/// `/proc/self` at each scrape; prometheus-client has no collector of its own for them.
/// Nothing is exported where `/proc` is not there.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// What `/proc/self` says about the process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time.
    pub cpu_seconds: f64,
    /// Resident memory.
    pub resident_bytes: u64,
    /// Virtual memory.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit on open file descriptors; `None` when unlimited.
    pub max_fds: Option<u64>,
    /// Unix time the process started.
    pub start_time_seconds: f64,
}

/// The kernel reports CPU times and start times in `USER_HZ` ticks, which the kernel fixes
/// at 100 a second for user space on every architecture Linux supports, whatever its
/// internal tick rate.
const USER_HZ: f64 = 100.0;

impl ProcessStats {
    /// Reads `/proc/self`; `None` when it cannot be read or parsed.
    pub fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let system = std::fs::read_to_string("/proc/stat").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        Self::parse(&stat, &status, &limits, &system, open_fds)
    }

    /// Parses the files [`ProcessStats::read`] reads.
    pub fn parse(
        stat: &str,
        status: &str,
        limits: &str,
        system: &str,
        open_fds: u64,
    ) -> Option<Self> {
        // The command name (field 2) is in parentheses and may hold spaces; the fields
        // after the last `)` are plain numbers, the first of them being field 3.
        let after = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
        let (utime, stime, start_ticks, vsize) = (field(14)?, field(15)?, field(22)?, field(23)?);
        let kib = |name: &str| -> Option<u64> {
            status.lines().find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix(':')?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
        };
        let boot: u64 = system
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
        let max_fds = limits.lines().find_map(|l| {
            let rest = l.strip_prefix("Max open files")?;
            let soft = rest.split_whitespace().next()?;
            Some(soft.parse().ok())
        })?;
        Some(ProcessStats {
            cpu_seconds: (utime + stime) as f64 / USER_HZ,
            resident_bytes: kib("VmRSS")? * 1024,
            virtual_bytes: vsize,
            open_fds,
            max_fds,
            start_time_seconds: boot as f64 + start_ticks as f64 / USER_HZ,
        })
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let Some(p) = ProcessStats::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(p.cpu_seconds);
        let metric = encoder.encode_descriptor(
            "process_cpu",
            "User and system CPU time spent",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?;
        cpu.encode(metric)?;
        let bytes = |b: u64| i64::try_from(b).unwrap_or(i64::MAX);
        encode_gauge(
            &mut encoder,
            "process_resident_memory",
            "Resident memory size",
            Some(&Unit::Bytes),
            bytes(p.resident_bytes),
        )?;
        encode_gauge(
            &mut encoder,
            "process_virtual_memory",
            "Virtual memory size",
            Some(&Unit::Bytes),
            bytes(p.virtual_bytes),
        )?;
        encode_gauge(
            &mut encoder,
            "process_open_fds",
            "Open file descriptors",
            None,
            bytes(p.open_fds),
        )?;
        if let Some(max) = p.max_fds {
            encode_gauge(
                &mut encoder,
                "process_max_fds",
                "The soft limit on open file descriptors",
                None,
                bytes(max),
            )?;
        }
        encode_gauge(
            &mut encoder,
            "process_start_time",
            "Unix time the process started",
            Some(&Unit::Seconds),
            p.start_time_seconds,
        )
    }
}

/// The shared registry: the networking layer registers into it while the swarm is built,
/// and the endpoint encodes it at each scrape.
pub type SharedRegistry = Arc<Mutex<Registry>>;

/// Registers the node's counters (updated through `metrics`, which shares its series with
/// the registered copy) and its scrape-time collector.
pub fn register<S: SnapshotSource>(
    registry: &mut Registry,
    metrics: &IngestMetrics,
    releases: &ReleaseMetrics,
    source: Arc<S>,
) {
    registry.register_with_unit(
        "commons_release_fetched",
        "Release artifact bytes fetched from peers, each chunk verified",
        Unit::Bytes,
        releases.fetched_bytes.clone(),
    );
    registry.register_with_unit(
        "commons_release_served",
        "Release artifact bytes served to peers",
        Unit::Bytes,
        releases.served_bytes.clone(),
    );
    registry.register(
        "commons_release_bad_chunks",
        "Artifact chunks or chunk lists from peers that did not match the signed manifest",
        releases.bad_chunks.clone(),
    );
    registry.register(
        "commons_release_rejected",
        "Release bundles refused, from peers or publishers, by reason",
        releases.rejected.clone(),
    );
    registry.register(
        "commons_release_fetches_in_progress",
        "Release artifacts being fetched",
        releases.fetches_in_progress.clone(),
    );
    for reason in RELEASE_REJECT_REASONS {
        let _ = releases.rejected.get_or_create(&ReasonLabels {
            reason: reason.label().into(),
        });
    }
    // The encoder adds the `_total` suffix to counters.
    registry.register(
        "commons_messages_received",
        "Messages received from peers, by kind and verdict (accept, reject, ignore)",
        metrics.received.clone(),
    );
    registry.register(
        "commons_messages_verdicts",
        "Messages received from peers, by kind, verdict and the reason for it",
        metrics.verdicts.clone(),
    );
    registry.register(
        "commons_duplicates_dropped",
        "Messages dropped as duplicates before signature verification",
        metrics.duplicates.clone(),
    );
    registry.register(
        "commons_measurer_attestations_issued",
        "Uptime attestations this node issued as one of the spec's measurers",
        metrics.measured.clone(),
    );
    registry.register_with_unit(
        "commons_ingest_duration",
        "Time from a message entering the ingest pipeline to its verdict, by kind",
        Unit::Seconds,
        metrics.ingest_seconds.clone(),
    );
    registry.register_with_unit(
        "commons_verification_duration",
        "Time the signature checks of one message took, by kind",
        Unit::Seconds,
        metrics.verify_seconds.clone(),
    );
    registry.register_with_unit(
        "commons_verification_wait",
        "Time a message waited for a verification thread, by kind",
        Unit::Seconds,
        metrics.verify_wait_seconds.clone(),
    );
    registry.register_with_unit(
        "commons_gossip_queue_wait",
        "Time a received gossip message waited for its turn before the ingest pipeline, by kind",
        Unit::Seconds,
        metrics.queue_wait_seconds.clone(),
    );
    registry.register(
        "commons_gossip_queued",
        "Received gossip messages waiting for their turn (per-peer queues served in turn)",
        metrics.queued.clone(),
    );
    registry.register(
        "commons_gossip_shed",
        "Received gossip messages dropped before the ingest pipeline (reported ignore), by cause",
        metrics.shed.clone(),
    );
    for cause in ["peer_queue_full", "queue_full", "invalid_signature"] {
        let _ = metrics.shed.get_or_create(&CauseLabels {
            cause: cause.into(),
        });
    }
    registry.register(
        "commons_equivocation_evidence",
        "Equivocation evidence stored (each excludes a signer from one proposal), by origin",
        metrics.evidence.clone(),
    );
    for origin in ["received", "made"] {
        let _ = metrics.evidence.get_or_create(&OriginLabels {
            origin: origin.into(),
        });
    }
    registry.register_collector(Box::new(NodeCollector { source }));
    registry.register_collector(Box::new(ProcessCollector));
    // Every series exists from the first scrape, so rate() and alerts see a 0 before the
    // first message rather than a missing series.
    for kind in commons_signaling::MessageKind::ALL {
        for verdict in ["accept", "reject", "ignore"] {
            let _ = metrics.received.get_or_create(&ReceivedLabels {
                kind: kind.name().into(),
                verdict: verdict.into(),
            });
        }
        let _ = metrics.duplicates.get_or_create(&KindLabels {
            kind: kind.name().into(),
        });
    }
}

/// Encodes the registry in the OpenMetrics text format.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("writing metrics into a String cannot fail");
    out
}

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The content type of [`to_classic_text`]'s output.
pub const CONTENT_TYPE_CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rewrites OpenMetrics text into the classic Prometheus text format (version 0.0.4), for
/// scrapers and tools that do not ask for OpenMetrics (promtool, older servers, curl). The
/// formats differ in what matters here: a counter's HELP and TYPE name its `_total` samples,
/// `info` metrics are gauges named `_info`, and there are no `# UNIT` or `# EOF` lines.
pub fn to_classic_text(openmetrics: &str) -> String {
    let mut renamed = std::collections::HashMap::new();
    for line in openmetrics.lines() {
        let mut parts = line.splitn(4, ' ');
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        {
            match kind {
                "counter" => renamed.insert(name.to_string(), (format!("{name}_total"), "counter")),
                "info" => renamed.insert(name.to_string(), (format!("{name}_info"), "gauge")),
                "unknown" => renamed.insert(name.to_string(), (name.to_string(), "untyped")),
                _ => None,
            };
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let mut parts = line.splitn(4, ' ');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("#"), Some("HELP"), Some(name), rest) if renamed.contains_key(name) => {
                out.push_str(&format!(
                    "# HELP {} {}",
                    renamed[name].0,
                    rest.unwrap_or("")
                ));
            }
            (Some("#"), Some("TYPE"), Some(name), Some(_)) if renamed.contains_key(name) => {
                let (new_name, kind) = &renamed[name];
                out.push_str(&format!("# TYPE {new_name} {kind}"));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Whether a scraper's `Accept` header asks for OpenMetrics.
fn wants_openmetrics(accept: Option<&hyper::header::HeaderValue>) -> bool {
    accept
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"))
}

async fn serve_request(
    registry: SharedRegistry,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = if request.method() != Method::GET {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "use GET\n".to_string(),
        )
    } else if request.uri().path() != "/metrics" {
        (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "metrics are served at /metrics\n".to_string(),
        )
    } else {
        let text = encode(&registry.lock().expect("metrics registry lock poisoned"));
        if wants_openmetrics(request.headers().get(hyper::header::ACCEPT)) {
            (StatusCode::OK, CONTENT_TYPE_OPENMETRICS, text)
        } else {
            (StatusCode::OK, CONTENT_TYPE_CLASSIC, to_classic_text(&text))
        }
    };
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("metrics response is valid")
}

/// Serves `/metrics` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    registry: SharedRegistry,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = crate::stopped(&mut shutdown) => break,
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let registry = registry.clone();
                async move { Ok::<_, Infallible>(serve_request(registry, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Binds the metrics address, failing with a one-line message.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("cannot listen for metrics on {addr}: {e} (is another commonsd running? see --metrics-bind)")
    })
}

impl SnapshotSource for Node {
    fn snapshot(&self) -> Snapshot {
        let now = self.now();
        let newest_verified_releases = self.newest_verified_releases();
        let st = self.state();
        let (nodes, units) = st.agg().population();
        let proposals = st
            .agg()
            .proposals()
            .into_iter()
            .filter_map(|(id, _)| {
                let tally = st.agg().tally(id)?;
                Some(ProposalMetrics {
                    id: id.to_hex(),
                    state: Node::state_name(&st, id, now).to_string(),
                    choices: tally
                        .choices
                        .iter()
                        .map(|c| (c.choice.name().to_string(), c.weight, c.nodes))
                        .collect(),
                    override_ratio: tally.override_weight_share,
                    excluded_signers: tally.excluded_signers,
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
            peers: st.peer_count() as u64,
            store_bytes: self.store.size_bytes(),
            store_write_errors: self.store.write_errors(),
            store_degraded: self.store.degraded().is_some(),
            newest_verified_releases,
            version: crate::node::VERSION.to_string(),
            network: self.spec.name.clone(),
            epoch: st.agg().epoch(),
            epoch_secs: self.spec.epoch_secs,
            own: st.agg().uptime(&self.me).map(|u| OwnStanding {
                qualified: u.qualified,
                counted: u.counted,
                uptime_epochs: u.uptime_epochs,
            }),
            spec_version: st.agg().spec().version(),
            spec_version_missing: crate::specinfo::missing(&st.agg().rotations())
                .next()
                .is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_text_names_counters_by_their_samples() {
        let open = "# HELP x_messages Messages.\n# TYPE x_messages counter\nx_messages_total{kind=\"a\"} 3\n\
                    # HELP x_store Store size.\n# TYPE x_store gauge\n# UNIT x_store bytes\nx_store_bytes 7\n\
                    # HELP x_build Build.\n# TYPE x_build info\nx_build_info{v=\"1\"} 1\n# EOF\n";
        let classic = to_classic_text(open);
        assert_eq!(
            classic,
            "# HELP x_messages_total Messages.\n# TYPE x_messages_total counter\nx_messages_total{kind=\"a\"} 3\n\
             # HELP x_store Store size.\n# TYPE x_store gauge\nx_store_bytes 7\n\
             # HELP x_build_info Build.\n# TYPE x_build_info gauge\nx_build_info{v=\"1\"} 1\n"
        );
        let accept = hyper::header::HeaderValue::from_static(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        );
        assert!(wants_openmetrics(Some(&accept)));
        assert!(!wants_openmetrics(None));
    }

    struct Fixed;
    impl SnapshotSource for Fixed {
        fn snapshot(&self) -> Snapshot {
            Snapshot {
                proposals: vec![ProposalMetrics {
                    id: "ab".into(),
                    state: "locked".into(),
                    choices: vec![("support".into(), 1.5, 2), ("override".into(), 0.5, 1)],
                    override_ratio: 0.25,
                    excluded_signers: 1,
                }],
                states: vec!["pending".into(), "locked".into()],
                qualified_nodes: 3,
                qualified_weight: 2.0,
                peers: 4,
                store_bytes: 1000,
                store_write_errors: 2,
                store_degraded: true,
                newest_verified_releases: vec![("stable".into(), "1.4.0".into())],
                version: "0.1.0".into(),
                network: "regtest".into(),
                epoch: 50,
                epoch_secs: 2,
                own: Some(OwnStanding {
                    qualified: true,
                    counted: false,
                    uptime_epochs: 7,
                }),
                spec_version: 2,
                spec_version_missing: true,
            }
        }
    }

    #[test]
    fn text_format() {
        let mut registry = Registry::default();
        let ingest = IngestMetrics::default();
        let releases = ReleaseMetrics::default();
        register(&mut registry, &ingest, &releases, Arc::new(Fixed));
        ingest.received("signal", "accept", "new");
        ingest.duplicate("signal");
        ingest.ingested_in("signal", std::time::Duration::from_millis(3));
        ingest.verified_in(
            "signal",
            std::time::Duration::from_micros(20),
            std::time::Duration::from_micros(90),
        );
        ingest.evidence("made");
        releases.fetched_bytes.inc_by(1 << 20);
        releases.rejected("rollback");
        let text = encode(&registry);
        for line in [
            "commons_tally_weight{proposal=\"ab\",choice=\"support\"} 1.5",
            "commons_tally_nodes{proposal=\"ab\",choice=\"override\"} 1",
            "commons_override_ratio{proposal=\"ab\"} 0.25",
            "commons_excluded_signers{proposal=\"ab\"} 1",
            "commons_equivocation_evidence_total{origin=\"made\"} 1",
            "commons_equivocation_evidence_total{origin=\"received\"} 0",
            "commons_proposal_state{proposal=\"ab\",state=\"locked\"} 1",
            "commons_proposal_state{proposal=\"ab\",state=\"pending\"} 0",
            "commons_qualified_nodes 3",
            "commons_qualified_weight 2.0",
            "commons_peers 4",
            "commons_store_bytes 1000",
            "commons_store_degraded 1",
            "commons_store_write_errors_total 2",
            "commons_messages_received_total{kind=\"signal\",verdict=\"accept\"} 1",
            "commons_messages_verdicts_total{kind=\"signal\",verdict=\"accept\",reason=\"new\"} 1",
            "commons_duplicates_dropped_total{kind=\"signal\"} 1",
            "commons_release_newest_verified{channel=\"stable\",version=\"1.4.0\"} 1",
            "commons_release_fetched_bytes_total 1048576",
            "commons_release_served_bytes_total 0",
            "commons_release_rejected_total{reason=\"rollback\"} 1",
            "commons_release_rejected_total{reason=\"below_threshold\"} 0",
            "commons_release_fetches_in_progress 0",
            "commons_build_info{version=\"0.1.0\",network=\"regtest\"} 1",
            "commons_epoch 50",
            "commons_epoch_boundary_timestamp_seconds 100",
            "commons_epoch_length_seconds 2",
            "commons_own_qualified 1",
            "commons_own_counted 0",
            "commons_own_uptime_epochs 7",
            "commons_spec_version 2",
            "commons_spec_version_missing 1",
            "# TYPE commons_ingest_duration_seconds histogram",
            "commons_ingest_duration_seconds_sum{kind=\"signal\"} 0.003",
            "commons_ingest_duration_seconds_count{kind=\"signal\"} 1",
            "commons_verification_duration_seconds_count{kind=\"signal\"} 1",
            "commons_verification_wait_seconds_sum{kind=\"signal\"} 0.00002",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn latency_buckets_place_each_observation() {
        let ingest = IngestMetrics::default();
        // 3 ms lies between the buckets 1.22 ms and 3.05 ms.
        ingest.ingested_in("signal", std::time::Duration::from_millis(3));
        let mut registry = Registry::default();
        registry.register("h", "h", ingest.ingest_seconds.clone());
        let text = encode(&registry);
        let bucket = |le: &str| {
            text.lines()
                .find(|l| l.starts_with(&format!("h_bucket{{le=\"{le}")))
                .and_then(|l| l.rsplit(' ').next())
                .map(str::to_string)
                .unwrap_or_else(|| panic!("no bucket {le} in\n{text}"))
        };
        assert_eq!(bucket("0.00122"), "0");
        assert_eq!(bucket("0.00305"), "1");
        assert_eq!(bucket("+Inf"), "1");
    }

    #[test]
    fn process_stats_from_proc() {
        let stat = "4242 (commons d) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 12345 104857600 2000 18446744073709551615";
        let status = "Name:\tcommonsd\nVmRSS:\t    8000 kB\nThreads:\t9\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        let system = "cpu  1 2 3\nbtime 1700000000\n";
        let p = ProcessStats::parse(stat, status, limits, system, 17).unwrap();
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.resident_bytes, 8000 * 1024);
        assert_eq!(p.virtual_bytes, 104_857_600);
        assert_eq!(p.open_fds, 17);
        assert_eq!(p.max_fds, Some(1024));
        assert!((p.start_time_seconds - 1_700_000_123.45).abs() < 1e-3);
        let unlimited = limits.replace("1024 ", "unlimited ");
        assert_eq!(
            ProcessStats::parse(stat, status, &unlimited, system, 1)
                .unwrap()
                .max_fds,
            None
        );
        assert!(ProcessStats::parse("garbage", status, limits, system, 1).is_none());
        // This process, for real: it started before now and has a descriptor open.
        let me = ProcessStats::read().expect("/proc/self on Linux");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            me.start_time_seconds <= now + 1.0 && me.start_time_seconds > now - 86_400.0 * 365.0
        );
        assert!(me.open_fds > 0 && me.resident_bytes > 0);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ProcessCollector));
        let text = encode(&registry);
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "{name} missing in\n{text}"
            );
        }
    }
}
