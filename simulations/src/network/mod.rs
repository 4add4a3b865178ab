//! `commons-sim network`: how fast signals spread and tallies converge on a network of real
//! node stacks.
//!
//! Every node is the daemon's own code (`commons_node::Daemon`: libp2p swarm, ingest
//! pipeline, RocksDB store, epoch work), on its own loopback address and data directory, all
//! in this process on one Tokio runtime, on the regtest network (2 s epochs, /30
//! netgroups, quorum 2). The run:
//!
//! 1. starts the nodes, each dialing its neighbours in the chosen topology;
//! 2. hands a maintainer-signed proposal to one node and waits until every node holds it
//!    and every daemon counts every daemon as qualified (the warm-up: uptime attestations
//!    need a few epochs);
//! 3. runs the baseline phase: `--signals` signals cast at `--rate` per second by random
//!    honest nodes through `Node::cast_signal` (the RPC `signal` path), while a watcher
//!    thread records when each node first holds each signal and when every node's tally
//!    of the proposal is the same;
//! 4. with `--spam`, runs the same again while the spamming nodes publish invalid signals;
//! 5. prints a table and, with `--out`, writes `summary.json` and `signals.csv`.

pub mod cluster;
pub mod counters;
pub mod topology;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use commons_aggregator::Tally;
use commons_p2p::{Multiaddr, TopicKind};
use commons_signaling::spec::regtest_maintainer_key;
use commons_signaling::{
    BoundedString, BoundedVec, Choice, Hash32, NetworkSpec, PROTOCOL_VERSION, Proposal,
    ProposalBody, PublicKey, SecretKey, Signal, SignalBody,
};
use serde::Serialize;

use crate::error::SimError;
use crate::rng::{Rng, Stream};
use cluster::{Role, SimNode, node_ip};
use counters::Counters;
use topology::Topology;

/// The most nodes a run accepts: addresses come from one /16 of loopback space.
pub const MAX_NODES: usize = 10_000;

/// Arguments of `commons-sim network`.
#[derive(Debug, Clone, clap::Args)]
pub struct NetworkArgs {
    /// Number of nodes.
    #[arg(long)]
    pub nodes: usize,
    /// How nodes connect.
    #[arg(long, value_enum, default_value = "regular")]
    pub topology: Topology,
    /// Neighbours per node (regular), or the ring's width (ring: degree / 2 on each side).
    #[arg(long, default_value_t = 6)]
    pub degree: usize,
    /// Signals cast per phase.
    #[arg(long, default_value_t = 50)]
    pub signals: usize,
    /// Signals cast per second, network-wide.
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    /// Share of honest nodes that leave and rejoin: every `--churn-interval` seconds that
    /// many go down (a clean shutdown) and come back `--churn-downtime` seconds later on the
    /// same address and data directory.
    #[arg(long, default_value_t = 0.0)]
    pub churn: f64,
    /// Seconds between churn rounds.
    #[arg(long, default_value_t = 4.0)]
    pub churn_interval: f64,
    /// Seconds a churned node stays down.
    #[arg(long, default_value_t = 3.0)]
    pub churn_downtime: f64,
    /// Share of nodes that drop everything: they take every message and never validate,
    /// store or forward one.
    #[arg(long = "drop", default_value_t = 0.0)]
    pub drop_share: f64,
    /// Share of nodes that spam: real daemons that, in the spam phase, also publish invalid
    /// signals (garbage bytes and forged signatures, alternately). A second phase with spam
    /// runs when this is above 0.
    #[arg(long, default_value_t = 0.0)]
    pub spam: f64,
    /// Invalid messages per second from each spamming node.
    #[arg(long, default_value_t = 20.0)]
    pub spam_rate: f64,
    /// How often each daemon catches up with one random peer besides at each new
    /// connection, in seconds (the daemon's default is 600). Messages a node learned only by
    /// catch-up are not gossiped on, so under churn this bounds how late they reach nodes
    /// whose neighbours restarted.
    #[arg(long, default_value_t = 600.0)]
    pub resync_interval: f64,
    /// Epoch length in seconds. 2 is regtest itself; any other value runs a network whose
    /// spec is regtest's with only the epoch changed (written to a spec file the daemons
    /// load). Every daemon publishes a presence and attests each neighbour once per epoch,
    /// so the background load grows as nodes^2 x degree / epoch.
    #[arg(long, default_value_t = 2)]
    pub epoch_secs: u64,
    /// Seed of the topology, the roles and the choice of casters, choices and churned nodes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The first node's loopback address; the others follow (.0 and .255 skipped).
    #[arg(long, default_value = "127.0.1.1")]
    pub first_address: Ipv4Addr,
    /// How often the watcher looks at every node (milliseconds): the resolution of the
    /// propagation times.
    #[arg(long, default_value_t = 5)]
    pub poll_ms: u64,
    /// Longest wait for the warm-up (every daemon qualified on every daemon), in seconds.
    #[arg(long, default_value_t = 120)]
    pub warmup_timeout: u64,
    /// Longest wait, after the last signal of a phase, for every signal to reach every node
    /// and the tallies to agree, in seconds.
    #[arg(long, default_value_t = 60)]
    pub settle_timeout: u64,
    /// Write `summary.json` and `signals.csv` here (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Worker threads of the runtime. Default: one per core.
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// How long a signal took to reach a share of the nodes: percentiles over the phase's signals.
#[derive(Debug, Clone, Serialize)]
pub struct ReachRow {
    /// The share of the honest nodes (0.5, 0.9, 0.99, 1.0).
    pub share: f64,
    /// Signals that reached that share before the phase ended.
    pub signals_reaching: usize,
    /// Median over those signals, milliseconds.
    pub p50_ms: Option<f64>,
    /// 90th percentile, milliseconds.
    pub p90_ms: Option<f64>,
    /// 99th percentile, milliseconds.
    pub p99_ms: Option<f64>,
    /// The slowest, milliseconds.
    pub max_ms: Option<f64>,
}

/// One signal of a phase.
#[derive(Debug, Clone, Serialize)]
pub struct SignalRow {
    /// Its position in the phase.
    pub signal: usize,
    /// The node that cast it.
    pub caster: usize,
    /// Its sequence number (the caster's count of signals on the proposal).
    pub sequence: u64,
    /// Honest nodes that held it (or a later signal of the caster) by the end.
    pub reached: usize,
    /// Milliseconds until 50%, 90%, 99% and 100% of the honest nodes held it.
    pub reach_ms: [Option<f64>; 4],
    /// The honest nodes that never held it.
    pub missing: Vec<usize>,
}

/// The figures of one phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// `baseline` or `spam`.
    pub name: String,
    /// Signals cast.
    pub signals: usize,
    /// Honest nodes: the shares and the per-node figures count these (dropping nodes take
    /// nothing in, and spamming nodes are graylisted by their peers once they spam).
    pub measured_nodes: usize,
    /// Time to reach each share.
    pub reach: Vec<ReachRow>,
    /// Milliseconds from the last signal's cast until every running honest node's tally of the
    /// proposal was the same (and included every signal); `None` if not within the settle
    /// timeout.
    pub tally_converged_ms: Option<f64>,
    /// Per honest node and per signal cast: gossip messages received on the signals topic
    /// (duplicates included; in the spam phase spam included).
    pub gossip_received_per_node_per_signal: f64,
    /// Of those, duplicates that gossipsub dropped before the node saw them.
    pub gossip_duplicates_per_node_per_signal: f64,
    /// Duplicates that reached the node and were dropped before signature verification
    /// (arrived through gossip and catch-up sync).
    pub node_duplicates_per_node_per_signal: f64,
    /// Bytes received on the signals topic, duplicates included.
    pub gossip_bytes_received_per_node_per_signal: f64,
    /// Bytes sent on the signals topic.
    pub gossip_bytes_sent_per_node_per_signal: f64,
    /// All bytes in and out of each node per second over the phase, every protocol,
    /// including the background presences, attestations and sync.
    pub transport_bytes_per_node_per_sec: f64,
    /// Signals the honest nodes' ingest pipelines rejected.
    pub signals_rejected: f64,
    /// Invalid messages the spammers published.
    pub spam_published: u64,
    /// Churn: nodes taken down during the phase.
    pub churn_stops: usize,
    /// Seconds from the first cast to the end of the phase.
    pub duration_secs: f64,
    /// Counter sums over the honest nodes.
    pub counters: Counters,
    /// Each node's counters over the phase (by node index; dropping nodes too), to find out
    /// what happened to a node that missed signals.
    pub per_node: Vec<Counters>,
    /// Per signal.
    pub per_signal: Vec<SignalRow>,
}

/// One node of the run.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    /// Its index.
    pub index: usize,
    /// Its loopback address.
    pub ip: Ipv4Addr,
    /// What it does.
    pub role: Role,
    /// The nodes it connects to.
    pub neighbours: Vec<usize>,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Nodes.
    pub nodes: usize,
    /// Topology.
    pub topology: Topology,
    /// Degree.
    pub degree: usize,
    /// Connections between nodes.
    pub edges: usize,
    /// Each node: its address, role and neighbours.
    pub node_list: Vec<NodeRow>,
    /// Signals per phase.
    pub signals: usize,
    /// Cast rate per second.
    pub rate: f64,
    /// Churn share, interval and downtime (seconds).
    pub churn: (f64, f64, f64),
    /// Honest, dropping and spamming nodes.
    pub roles: (usize, usize, usize),
    /// Spam rate per spamming node.
    pub spam_rate: f64,
    /// Seed.
    pub seed: u64,
    /// The network: regtest, or regtest with another epoch length.
    pub network: String,
    /// Its epoch length, seconds.
    pub epoch_secs: u64,
    /// Watcher resolution, milliseconds.
    pub poll_ms: u64,
    /// Seconds to start every node.
    pub start_secs: f64,
    /// Seconds of warm-up until every daemon counted every daemon (or the timeout).
    pub warmup_secs: f64,
    /// The qualified population every daemon should count: the daemons whose daemon
    /// neighbours (their attesters) lie in at least a quorum of netgroups.
    pub expected_qualified: u64,
    /// The smallest and largest qualified population the daemons counted after warm-up.
    pub qualified_range: (u64, u64),
    /// The phases.
    pub phases: Vec<PhaseReport>,
    /// Wall-clock seconds of the whole run.
    pub runtime_secs: f64,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mib: Option<f64>,
}

fn progress(args: &NetworkArgs, started: Instant, text: &str) {
    if !args.quiet {
        eprintln!("[{:>6.1}s] {text}", started.elapsed().as_secs_f64());
    }
}

/// A finite number above zero (NaN is not).
fn positive(v: f64) -> bool {
    v > 0.0 && v.is_finite()
}

fn check(args: &NetworkArgs) -> Result<(), SimError> {
    let usage = |m: String| Err(SimError::Usage(m));
    if args.nodes < 2 || args.nodes > MAX_NODES {
        return usage(format!("--nodes must be between 2 and {MAX_NODES}"));
    }
    if !positive(args.rate) {
        return usage("--rate must be positive".into());
    }
    if args.signals == 0 {
        return usage("--signals must be at least 1".into());
    }
    for (name, v) in [
        ("--churn", args.churn),
        ("--drop", args.drop_share),
        ("--spam", args.spam),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return usage(format!("{name} must be a share between 0 and 1"));
        }
    }
    if args.drop_share + args.spam >= 1.0 {
        return usage("--drop and --spam leave no honest node".into());
    }
    if args.spam > 0.0 && !positive(args.spam_rate) {
        return usage("--spam-rate must be positive".into());
    }
    if args.topology != Topology::Full && (args.degree < 2 || args.degree >= args.nodes) {
        return usage("--degree must be at least 2 and below --nodes".into());
    }
    if args.topology == Topology::Full && args.nodes > 90 {
        // A node accepts 96 inbound connections (commons-p2p's connection limits).
        return usage("--topology full is limited to 90 nodes by the connection limits".into());
    }
    if args.epoch_secs == 0 {
        return usage("--epoch-secs must be at least 1".into());
    }
    if args.poll_ms == 0
        || !positive(args.churn_interval)
        || args.churn_downtime.is_nan()
        || args.churn_downtime < 0.0
        || !positive(args.resync_interval)
        || args.resync_interval < 1.0
    {
        return usage(
            "--poll-ms and --churn-interval must be positive, --resync-interval at least 1".into(),
        );
    }
    Ok(())
}

/// Runs `commons-sim network` and prints its table.
pub fn main(args: &NetworkArgs) -> Result<(), SimError> {
    let report = run(args)?;
    print!("{}", table(&report));
    if let Some(dir) = &args.out {
        write_outputs(dir, &report)?;
    }
    Ok(())
}

/// Runs the simulation and returns what it measured.
pub fn run(args: &NetworkArgs) -> Result<Report, SimError> {
    check(args)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| SimError::Runtime(format!("cannot start the runtime: {e}")))?;
    let root = tempfile::Builder::new()
        .prefix("commons-sim-network-")
        .tempdir()
        .map_err(|e| SimError::Runtime(format!("cannot create a temporary directory: {e}")))?;
    let result = runtime.block_on(async {
        tokio::select! {
            result = simulate(args, root.path().to_path_buf()) => result,
            // Ctrl-C: drop the nodes and let the temporary directory (hundreds of MB of
            // RocksDB files on a large run) be removed rather than left behind.
            _ = tokio::signal::ctrl_c() => Err(SimError::Runtime("interrupted".into())),
        }
    });
    // Daemons are stopped inside; what is left (tasks finishing) goes with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(10));
    result
}

/// The network a run uses: regtest, with the epoch length of `epoch_secs`.
pub fn network_spec(epoch_secs: u64) -> NetworkSpec {
    let mut spec = NetworkSpec::regtest();
    if epoch_secs != spec.epoch_secs {
        spec.name = format!("regtest-epoch{epoch_secs}");
        spec.epoch_secs = epoch_secs;
    }
    spec
}

/// A tier-1 proposal signed by three of the well-known regtest maintainer keys (the
/// maintainers of regtest and of the networks [`network_spec`] derives from it), locked from
/// just before `now` for an hour.
pub fn regtest_proposal(spec: &NetworkSpec, now: u64) -> Proposal {
    let network = spec.network_id();
    let mut proposal = Proposal::new(ProposalBody {
        version: PROTOCOL_VERSION,
        tier: 1,
        title: BoundedString::new("commons-sim network propagation").expect("short title"),
        reference: BoundedString::new("https://example.invalid/commons-signal/sim")
            .expect("short reference"),
        lock_start: now.saturating_sub(1),
        lock_end: now + 3600,
    });
    for i in 0..3 {
        proposal
            .add_signature(&regtest_maintainer_key(i), &network)
            .expect("room for three signatures");
    }
    proposal
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A tally with the epoch left out: nodes cross an epoch boundary a few milliseconds apart,
/// and the epoch alone does not make two tallies differ.
fn comparable(mut tally: Tally) -> Tally {
    tally.epoch = 0;
    tally
}

/// One tracked signal.
struct Tracked {
    signer: PublicKey,
    sequence: u64,
    caster: usize,
    cast_at: Instant,
    /// Per node: when it first held the signal, after the cast.
    reached: Vec<Option<Duration>>,
}

/// What the watcher thread and the driver share.
struct Watch {
    proposal: Hash32,
    signals: Vec<Tracked>,
    /// Set at the last cast of a phase: from then on the watcher checks the tallies too.
    last_cast: Option<Instant>,
    converged: Option<Duration>,
}

impl Watch {
    fn complete(&self, targets: &[usize]) -> bool {
        self.signals
            .iter()
            .all(|s| targets.iter().all(|&n| s.reached[n].is_some()))
    }
}

/// Looks at every running daemon every `poll` until `stop`: records when each holds each
/// tracked signal, and once the phase's last signal is out, when all tallies agree. A plain
/// thread, so that a busy runtime delays the nodes but not the clock that measures them.
fn watcher(
    nodes: Arc<Vec<SimNode>>,
    targets: Vec<usize>,
    watch: Arc<Mutex<Watch>>,
    stop: Arc<AtomicBool>,
    poll: Duration,
) {
    while !stop.load(Ordering::Relaxed) {
        let (proposal, pending, last_cast, converged) = {
            let w = watch.lock().expect("watch lock");
            let pending: Vec<(usize, PublicKey, u64, Instant)> = w
                .signals
                .iter()
                .enumerate()
                .filter(|(_, s)| targets.iter().any(|&n| s.reached[n].is_none()))
                .map(|(i, s)| (i, s.signer, s.sequence, s.cast_at))
                .collect();
            (w.proposal, pending, w.last_cast, w.converged)
        };
        let mut found: Vec<(usize, usize, Duration)> = Vec::new();
        let check_tally = last_cast.is_some() && converged.is_none() && pending.is_empty();
        let mut tallies: Vec<Option<Tally>> = Vec::new();
        for &n in &targets {
            let Some(node) = nodes[n].node() else {
                continue;
            };
            node.with_aggregator(|agg| {
                let now = Instant::now();
                for &(i, signer, sequence, cast_at) in &pending {
                    let held = agg
                        .signal(&proposal, &signer)
                        .is_some_and(|s| s.body.sequence >= sequence);
                    if held {
                        found.push((i, n, now.saturating_duration_since(cast_at)));
                    }
                }
                if check_tally {
                    tallies.push(agg.tally(&proposal).map(comparable));
                }
            });
        }
        {
            let mut w = watch.lock().expect("watch lock");
            for (i, n, at) in found {
                w.signals[i].reached[n].get_or_insert(at);
            }
            if check_tally
                && !tallies.is_empty()
                && tallies.iter().all(|t| t.is_some() && *t == tallies[0])
                && let Some(last) = w.last_cast
            {
                w.converged = Some(last.elapsed());
            }
        }
        std::thread::sleep(poll);
    }
}

/// The p-th percentile (nearest rank) of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

const SHARES: [f64; 4] = [0.5, 0.9, 0.99, 1.0];

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 1e2
}

/// Per signal, the time until each share of `targets` held it.
fn signal_rows(watch: &Watch, targets: &[usize]) -> Vec<SignalRow> {
    watch
        .signals
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut times: Vec<Duration> = targets.iter().filter_map(|&n| s.reached[n]).collect();
            times.sort();
            let reach_ms = SHARES.map(|share| {
                let need = ((share * targets.len() as f64).ceil() as usize).max(1);
                times.get(need - 1).map(|d| ms(*d))
            });
            SignalRow {
                signal: i,
                caster: s.caster,
                sequence: s.sequence,
                reached: times.len(),
                reach_ms,
                missing: targets
                    .iter()
                    .copied()
                    .filter(|&n| s.reached[n].is_none())
                    .collect(),
            }
        })
        .collect()
}

fn reach_rows(rows: &[SignalRow]) -> Vec<ReachRow> {
    SHARES
        .iter()
        .enumerate()
        .map(|(k, &share)| {
            let mut v: Vec<f64> = rows.iter().filter_map(|r| r.reach_ms[k]).collect();
            v.sort_by(f64::total_cmp);
            ReachRow {
                share,
                signals_reaching: v.len(),
                p50_ms: percentile(&v, 0.5),
                p90_ms: percentile(&v, 0.9),
                p99_ms: percentile(&v, 0.99),
                max_ms: v.last().copied(),
            }
        })
        .collect()
}

/// An invalid message for the signals topic: garbage bytes, or a signal on the real
/// proposal whose signature does not verify (the costlier kind: it passes every cheap check
/// and fails only at verification). Every one differs, so gossip cannot drop it as a repeat.
fn spam_message(n: u64, proposal: Hash32, key: &SecretKey, network: &Hash32) -> Vec<u8> {
    if n % 2 == 0 {
        let mut bytes = format!("commons-sim spam {n} ").into_bytes();
        bytes.resize(200, 0x5a);
        bytes
    } else {
        let body = SignalBody {
            version: PROTOCOL_VERSION,
            proposal,
            choice: Choice::Override,
            sequence: n,
            time: unix_now(),
            signer: key.public_key(),
            attestations: BoundedVec::default(),
        };
        let mut bytes = Signal::sign(body, key, network).encode();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        bytes
    }
}

async fn simulate(args: &NetworkArgs, root: PathBuf) -> Result<Report, SimError> {
    let started = Instant::now();
    let n = args.nodes;
    let spec = network_spec(args.epoch_secs);
    let network_arg = if spec == NetworkSpec::regtest() {
        "regtest".to_string()
    } else {
        let path = root.join("network.toml");
        std::fs::write(&path, spec.to_toml())
            .map_err(|e| SimError::Runtime(format!("cannot write {}: {e}", path.display())))?;
        path.display().to_string()
    };
    let setup = Arc::new(cluster::Setup {
        root: root.clone(),
        network_arg,
        network_name: spec.name.clone(),
        resync_interval: Duration::from_secs_f64(args.resync_interval),
    });
    let mut topo_rng = Rng::new(args.seed, Stream::Topology);
    let edges = topology::edges(args.topology, n, args.degree, &mut topo_rng);
    let neighbours = topology::neighbours(n, &edges);

    // Roles: a seeded shuffle; node 0 (which submits the proposal) always honest.
    let droppers = (args.drop_share * n as f64).round() as usize;
    let spammers = (args.spam * n as f64).round() as usize;
    let mut order: Vec<usize> = (1..n).collect();
    let mut events = Rng::new(args.seed, Stream::NetworkEvents);
    for i in (1..order.len()).rev() {
        let j = events.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    let mut roles = vec![Role::Honest; n];
    for &i in order.iter().take(droppers) {
        roles[i] = Role::Dropper;
    }
    for &i in order.iter().skip(droppers).take(spammers) {
        roles[i] = Role::Spammer;
    }
    let nodes: Arc<Vec<SimNode>> = Arc::new(
        (0..n)
            .map(|i| SimNode::new(i, roles[i], node_ip(args.first_address, i), setup.clone()))
            .collect(),
    );
    let honest: Vec<usize> = (0..n).filter(|&i| roles[i] == Role::Honest).collect();
    let daemons: Vec<usize> = (0..n).filter(|&i| roles[i] != Role::Dropper).collect();
    let signal_topic = TopicKind::Signals.topic(&spec.name).hash().to_string();

    progress(
        args,
        started,
        &format!(
            "starting {n} nodes ({} honest, {droppers} dropping, {spammers} spamming), {} edges, from {}",
            honest.len(),
            edges.len(),
            nodes[0].ip
        ),
    );
    let bootstrap_of = |i: usize, only_earlier: bool| -> Vec<Multiaddr> {
        neighbours[i]
            .iter()
            .filter(|&&j| !only_earlier || j < i)
            .filter_map(|&j| nodes[j].multiaddr())
            .collect()
    };
    for i in 0..n {
        let result = nodes[i].start(&bootstrap_of(i, true)).await;
        if let Err(e) = result {
            stop_all(&nodes, &signal_topic).await;
            return Err(SimError::Runtime(format!("cannot start node {i}: {e}")));
        }
    }
    let start_secs = started.elapsed().as_secs_f64();

    // Gossip goes to mesh peers; a message published before the meshes formed reaches only
    // part of the network (the rest would get it at their next periodic catch-up), so the
    // proposal waits until every daemon has a mesh peer on every topic it uses.
    let mesh_deadline = Instant::now() + Duration::from_secs(60);
    for &i in &daemons {
        let Some(net) = nodes[i].net() else { continue };
        for topic in [
            TopicKind::Proposals,
            TopicKind::Presences,
            TopicKind::Signals,
        ] {
            while net.mesh_peers(topic).await.map_or(0, |p| p.len()) == 0
                && Instant::now() < mesh_deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    // The proposal, handed to node 0 as `submitproposal` would.
    let proposal = regtest_proposal(&spec, unix_now());
    let network = spec.network_id();
    let proposal_id = proposal.id(&network);
    let node0 = nodes[0].node().expect("node 0 is a running daemon");
    node0
        .submit_proposal(&proposal.encode())
        .await
        .map_err(|e| SimError::Runtime(format!("proposal refused: {e:?}")))?;

    progress(
        args,
        started,
        "warming up: every daemon must count every daemon as qualified",
    );
    let expected = qualifiable(&spec, &nodes, &neighbours, &daemons);
    let warm_start = Instant::now();
    let warm_deadline = warm_start + Duration::from_secs(args.warmup_timeout);
    let mut last_report = Instant::now();
    let qualified_range = loop {
        let mut lo = u64::MAX;
        let mut hi = 0;
        let mut with_proposal = 0;
        for &i in &daemons {
            if let Some(node) = nodes[i].node() {
                let (count, has) = node.with_aggregator(|agg| {
                    (agg.population().0, agg.proposal(&proposal_id).is_some())
                });
                lo = lo.min(count);
                hi = hi.max(count);
                with_proposal += usize::from(has);
            }
        }
        if (lo == expected && with_proposal == daemons.len()) || Instant::now() > warm_deadline {
            break (lo, hi);
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            progress(
                args,
                started,
                &format!(
                    "  qualified counts {lo}..{hi} of {expected}; proposal on {with_proposal} of {}",
                    daemons.len()
                ),
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let warmup_secs = warm_start.elapsed().as_secs_f64();
    progress(
        args,
        started,
        &format!(
            "warm after {warmup_secs:.1} s: qualified counts {}..{} of {expected}",
            qualified_range.0, qualified_range.1
        ),
    );

    let mut phases = Vec::new();
    let phase_names: &[&str] = if spammers > 0 {
        &["baseline", "spam"]
    } else {
        &["baseline"]
    };
    for name in phase_names {
        let spam = *name == "spam";
        progress(
            args,
            started,
            &format!("phase {name}: {} signals at {}/s", args.signals, args.rate),
        );
        let phase = run_phase(
            args,
            &nodes,
            &neighbours,
            &honest,
            &spec,
            proposal_id,
            &signal_topic,
            spam,
            name,
            &mut events,
        )
        .await;
        progress(
            args,
            started,
            &format!(
                "phase {name} done in {:.1} s; tallies {}",
                phase.duration_secs,
                match phase.tally_converged_ms {
                    Some(t) => format!("agreed {t:.0} ms after the last signal"),
                    None => "did not agree".into(),
                }
            ),
        );
        phases.push(phase);
    }

    stop_all(&nodes, &signal_topic).await;
    Ok(Report {
        nodes: n,
        topology: args.topology,
        degree: args.degree,
        edges: edges.len(),
        node_list: nodes
            .iter()
            .map(|node| NodeRow {
                index: node.index,
                ip: node.ip,
                role: node.role,
                neighbours: neighbours[node.index].clone(),
            })
            .collect(),
        signals: args.signals,
        rate: args.rate,
        churn: (args.churn, args.churn_interval, args.churn_downtime),
        roles: (honest.len(), droppers, spammers),
        spam_rate: args.spam_rate,
        seed: args.seed,
        network: spec.name.clone(),
        epoch_secs: spec.epoch_secs,
        poll_ms: args.poll_ms,
        start_secs,
        warmup_secs,
        expected_qualified: expected,
        qualified_range,
        phases,
        runtime_secs: started.elapsed().as_secs_f64(),
        peak_rss_mib: peak_rss_mib(),
    })
}

/// How many daemons the topology lets qualify. A daemon's uptime is attested by the daemons
/// it is connected to (dropping nodes attest nobody), at the address they see; it qualifies
/// when those attesters sit in at least the spec's quorum of netgroups, by the aggregator's
/// own netgroup rule. With addresses handed out in order, a daemon whose neighbours all
/// share one /30 never qualifies.
fn qualifiable(
    spec: &NetworkSpec,
    nodes: &[SimNode],
    neighbours: &[Vec<usize>],
    daemons: &[usize],
) -> u64 {
    let policy = commons_aggregator::Policy::from_spec(spec);
    let quorum = spec.attestation_quorum.max(1) as usize;
    daemons
        .iter()
        .filter(|&&i| {
            let groups: BTreeSet<_> = neighbours[i]
                .iter()
                .filter(|&&j| nodes[j].role != Role::Dropper)
                .map(|&j| policy.netgroup(std::net::IpAddr::V4(nodes[j].ip)))
                .collect();
            groups.len() >= quorum
        })
        .count() as u64
}

async fn stop_all(nodes: &Arc<Vec<SimNode>>, signal_topic: &str) {
    for node in nodes.iter() {
        node.stop(signal_topic).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_phase(
    args: &NetworkArgs,
    nodes: &Arc<Vec<SimNode>>,
    neighbours: &[Vec<usize>],
    honest: &[usize],
    spec: &NetworkSpec,
    proposal: Hash32,
    signal_topic: &str,
    spam: bool,
    name: &str,
    rng: &mut Rng,
) -> PhaseReport {
    let targets = honest;
    for node in nodes.iter() {
        node.begin_phase(signal_topic);
    }
    let watch = Arc::new(Mutex::new(Watch {
        proposal,
        signals: Vec::new(),
        last_cast: None,
        converged: None,
    }));
    let stop_watcher = Arc::new(AtomicBool::new(false));
    let watcher_thread = {
        let (nodes, targets, watch, stop) = (
            nodes.clone(),
            targets.to_vec(),
            watch.clone(),
            stop_watcher.clone(),
        );
        let poll = Duration::from_millis(args.poll_ms);
        std::thread::spawn(move || watcher(nodes, targets, watch, stop, poll))
    };

    // Spam: each spamming node publishes invalid signals at its rate until the phase ends.
    let stop_spam = Arc::new(AtomicBool::new(false));
    let spam_published = Arc::new(AtomicU64::new(0));
    let mut spam_tasks = Vec::new();
    if spam {
        let network = spec.network_id();
        for node in nodes.iter().filter(|n| n.role == Role::Spammer) {
            let Some(net) = node.net() else { continue };
            let (stop, count) = (stop_spam.clone(), spam_published.clone());
            let key = SecretKey::from_seed(&format!("commons-sim spammer {}", node.index));
            let every = Duration::from_secs_f64(1.0 / args.spam_rate);
            let salt = (node.index as u64) << 32;
            spam_tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let bytes = spam_message(salt + k, proposal, &key, &network);
                    k += 1;
                    if net.publish(TopicKind::Signals, bytes).await.is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }

    // Churn: a task that takes random honest nodes down and brings them back.
    let stop_churn = Arc::new(AtomicBool::new(false));
    let churn_stops = Arc::new(AtomicU64::new(0));
    let churn_task = if args.churn > 0.0 {
        let per_round = ((args.churn * honest.len() as f64).round() as usize).max(1);
        let (nodes, stop, stops) = (nodes.clone(), stop_churn.clone(), churn_stops.clone());
        let neighbours = neighbours.to_vec();
        // Node 0 stays up: it holds the proposal for late joiners in every run.
        let candidates: Vec<usize> = honest.iter().copied().filter(|&i| i != 0).collect();
        let mut churn_rng = Rng::new(rng.u64(), Stream::NetworkEvents);
        let interval = Duration::from_secs_f64(args.churn_interval);
        let downtime = Duration::from_secs_f64(args.churn_downtime);
        let topic = signal_topic.to_string();
        Some(tokio::spawn(async move {
            let mut restarts = tokio::task::JoinSet::new();
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(interval).await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let up: Vec<usize> = candidates
                    .iter()
                    .copied()
                    .filter(|&i| nodes[i].is_running())
                    .collect();
                let mut picked = BTreeSet::new();
                while picked.len() < per_round.min(up.len()) {
                    picked.insert(up[churn_rng.below(up.len() as u64) as usize]);
                }
                for i in picked {
                    nodes[i].stop(&topic).await;
                    stops.fetch_add(1, Ordering::Relaxed);
                    let (nodes, neighbours, stop) =
                        (nodes.clone(), neighbours.clone(), stop.clone());
                    restarts.spawn(async move {
                        // Down for the downtime, or until the churn stops, whichever is first.
                        let back = Instant::now() + downtime;
                        while Instant::now() < back && !stop.load(Ordering::Relaxed) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        let bootstrap: Vec<Multiaddr> = neighbours[i]
                            .iter()
                            .filter_map(|&j| nodes[j].multiaddr())
                            .collect();
                        if let Err(e) = nodes[i].start(&bootstrap).await {
                            eprintln!("churn: cannot restart node {i}: {e}");
                        }
                    });
                }
            }
            while restarts.join_next().await.is_some() {}
        }))
    } else {
        None
    };

    // The signals.
    let phase_start = Instant::now();
    let every = Duration::from_secs_f64(1.0 / args.rate);
    let choices = [Choice::Support, Choice::Oppose, Choice::Override];
    for k in 0..args.signals {
        tokio::time::sleep_until((phase_start + every * k as u32).into()).await;
        // A random honest node that is up (under churn the first one up from a random start).
        let start = rng.below(honest.len() as u64) as usize;
        let choice = choices[rng.below(3) as usize];
        let Some((caster, node)) = (0..honest.len())
            .map(|d| honest[(start + d) % honest.len()])
            .find_map(|i| nodes[i].node().map(|node| (i, node)))
        else {
            continue;
        };
        let cast_at = Instant::now();
        match node.cast_signal(proposal, choice).await {
            Ok((signal, _published)) => {
                let mut reached = vec![None; nodes.len()];
                reached[caster] = Some(Duration::ZERO);
                watch.lock().expect("watch lock").signals.push(Tracked {
                    signer: signal.body.signer,
                    sequence: signal.body.sequence,
                    caster,
                    cast_at,
                    reached,
                });
            }
            Err(e) => eprintln!("node {caster}: signal refused: {e:?}"),
        }
    }
    watch.lock().expect("watch lock").last_cast = Some(Instant::now());

    // Churned nodes come back now, so every node can hold every signal in the end.
    stop_churn.store(true, Ordering::Relaxed);
    if let Some(task) = churn_task {
        let _ = task.await;
    }
    let deadline = Instant::now() + Duration::from_secs(args.settle_timeout);
    loop {
        {
            let w = watch.lock().expect("watch lock");
            if w.complete(targets) && w.converged.is_some() {
                break;
            }
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_spam.store(true, Ordering::Relaxed);
    for task in spam_tasks {
        let _ = task.await;
    }
    stop_watcher.store(true, Ordering::Relaxed);
    let _ = watcher_thread.join();
    let duration = phase_start.elapsed();

    let mut sum = Counters::default();
    let mut per_node = Vec::with_capacity(nodes.len());
    for node in nodes.iter() {
        let c = node.end_phase(signal_topic);
        if node.role == Role::Honest {
            sum += c;
        }
        per_node.push(c);
    }
    let w = watch.lock().expect("watch lock");
    let per_signal = signal_rows(&w, targets);
    let cast = w.signals.len().max(1) as f64;
    let per = |v: f64| v / targets.len() as f64 / cast;
    PhaseReport {
        name: name.to_string(),
        signals: w.signals.len(),
        measured_nodes: targets.len(),
        reach: reach_rows(&per_signal),
        tally_converged_ms: w.converged.map(ms),
        gossip_received_per_node_per_signal: per(sum.signal_msgs_received_all),
        gossip_duplicates_per_node_per_signal: per(
            sum.signal_msgs_received_all - sum.signal_msgs_received_first
        ),
        node_duplicates_per_node_per_signal: per(sum.ingest_signal_duplicate),
        gossip_bytes_received_per_node_per_signal: per(sum.signal_bytes_received_all),
        gossip_bytes_sent_per_node_per_signal: per(sum.signal_bytes_sent),
        transport_bytes_per_node_per_sec: (sum.transport_bytes_in + sum.transport_bytes_out)
            / targets.len() as f64
            / duration.as_secs_f64().max(1e-9),
        signals_rejected: sum.ingest_signal_reject,
        spam_published: spam_published.load(Ordering::Relaxed),
        churn_stops: churn_stops.load(Ordering::Relaxed) as usize,
        duration_secs: duration.as_secs_f64(),
        counters: sum,
        per_node,
        per_signal,
    }
}

/// The process's peak resident memory (VmHWM), MiB, where `/proc` has it.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

/// The report as the table `commons-sim network` prints.
pub fn table(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "commons-sim network: {} nodes ({} honest, {} dropping, {} spamming at {}/s), {:?} degree {}, {} edges, {} ({} s epochs), seed {}",
        r.nodes,
        r.roles.0,
        r.roles.1,
        r.roles.2,
        r.spam_rate,
        r.topology,
        r.degree,
        r.edges,
        r.network,
        r.epoch_secs,
        r.seed
    );
    let _ = writeln!(
        s,
        "{} signals per phase at {}/s; churn {} every {} s for {} s; watcher every {} ms",
        r.signals, r.rate, r.churn.0, r.churn.1, r.churn.2, r.poll_ms
    );
    let _ = writeln!(
        s,
        "start {:.1} s, warm-up {:.1} s (qualified {}..{} of {}), run {:.1} s, peak memory {} MiB",
        r.start_secs,
        r.warmup_secs,
        r.qualified_range.0,
        r.qualified_range.1,
        r.expected_qualified,
        r.runtime_secs,
        opt(r.peak_rss_mib)
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<9} {:>6} {:>9} {:>8} {:>8} {:>8} {:>8}",
        "phase", "reach", "signals", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for p in &r.phases {
        for row in &p.reach {
            let _ = writeln!(
                s,
                "{:<9} {:>5}% {:>4}/{:<4} {:>8} {:>8} {:>8} {:>8}",
                p.name,
                row.share * 100.0,
                row.signals_reaching,
                p.signals,
                opt(row.p50_ms),
                opt(row.p90_ms),
                opt(row.p99_ms),
                opt(row.max_ms)
            );
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10} {:>9}",
        "phase",
        "recv/n/s",
        "dup/n/s",
        "nodedup",
        "B in/n/s",
        "B out/n/s",
        "all B/n/sec",
        "tally ms",
        "rejected"
    );
    for p in &r.phases {
        let _ = writeln!(
            s,
            "{:<9} {:>10.2} {:>10.2} {:>10.3} {:>10.0} {:>10.0} {:>12.0} {:>10} {:>9.0}",
            p.name,
            p.gossip_received_per_node_per_signal,
            p.gossip_duplicates_per_node_per_signal,
            p.node_duplicates_per_node_per_signal,
            p.gossip_bytes_received_per_node_per_signal,
            p.gossip_bytes_sent_per_node_per_signal,
            p.transport_bytes_per_node_per_sec,
            opt(p.tally_converged_ms),
            p.signals_rejected
        );
    }
    for p in &r.phases {
        if p.spam_published > 0 || p.churn_stops > 0 {
            let _ = writeln!(
                s,
                "{}: {} spam messages published, {} churn stops",
                p.name, p.spam_published, p.churn_stops
            );
        }
    }
    s
}

fn write_outputs(dir: &std::path::Path, r: &Report) -> Result<(), SimError> {
    let fail = |what: &str, e: std::io::Error| {
        SimError::Runtime(format!("cannot write {}: {e}", dir.join(what).display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("", e))?;
    let json = serde_json::to_string_pretty(r).expect("the report serialises");
    std::fs::write(dir.join("summary.json"), json + "\n").map_err(|e| fail("summary.json", e))?;
    let mut csv = String::from(
        "phase,signal,caster,sequence,reached,measured_nodes,reach50_ms,reach90_ms,reach99_ms,reach100_ms\n",
    );
    for p in &r.phases {
        for row in &p.per_signal {
            let t = row
                .reach_ms
                .map(|v| v.map_or(String::new(), |v| format!("{v}")));
            csv.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{}\n",
                p.name,
                row.signal,
                row.caster,
                row.sequence,
                row.reached,
                p.measured_nodes,
                t[0],
                t[1],
                t[2],
                t[3]
            ));
        }
    }
    std::fs::write(dir.join("signals.csv"), csv).map_err(|e| fail("signals.csv", e))?;
    Ok(())
}
