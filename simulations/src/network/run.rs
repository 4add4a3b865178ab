//! A whole run: the nodes started in the chosen topology, the proposal handed out, the warm-up
//! until every daemon counts every daemon, then the phases.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use commons_p2p::{Multiaddr, TopicKind};
use commons_signaling::spec::{MeasurerSpec, regtest_maintainer_key};
use commons_signaling::{
    BoundedString, NetworkSpec, PROTOCOL_VERSION, Proposal, ProposalBody, PublicKey, SecretKey,
};

use super::args::{NetworkArgs, check};
use super::cluster::{self, ClusterNode, Role, node_ip};
use super::phase::{run_phase, unix_now};
use super::report::{NodeRow, PhaseReport, Report, UncountedNode, UncountedRow};
use super::shared_verify::SharedVerification;
use super::topology;
use crate::error::SimError;
use crate::progress::StageLog;
use crate::rng::{Rng, Stream};

/// Open files each node may hold: its RocksDB files (about nine on a fresh store, more as
/// it flushes), three listening sockets (p2p, RPC, metrics) and a socket per connection.
/// Measured: about 22 per node at 20 nodes of degree 6; the rest is room for flushes.
const FILES_PER_NODE: u64 = 32;

/// Raises the soft limit on open files to what `nodes` need (and the hard limit too, where
/// the process may): every node's store and sockets are in this one process, so a thousand
/// nodes need more than the usual 1,024 or even 20,000. Refuses the run, before anything
/// starts, when the limit cannot be raised that far.
fn raise_open_file_limit(nodes: usize) -> Result<(), SimError> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let needed = nodes as u64 * FILES_PER_NODE + 256;
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if soft >= needed {
        return Ok(());
    }
    let raised = |maximum: u64| {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(needed.min(maximum)),
                maximum: Some(maximum),
            },
        )
    };
    // Above the hard limit only with CAP_SYS_RESOURCE (root); otherwise up to it.
    if hard < needed && raised(needed).is_ok() {
        return Ok(());
    }
    let _ = raised(hard);
    let now = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    if now >= needed {
        return Ok(());
    }
    Err(SimError::Usage(format!(
        "{nodes} nodes in one process need about {needed} open files, but this process may open only {now} \
         (hard limit {hard}); raise it (ulimit -n {needed}, as root or within the hard limit) or run fewer nodes"
    )))
}

/// Runs the simulation and returns what it measured.
pub fn run(args: &NetworkArgs) -> Result<Report, SimError> {
    check(args)?;
    raise_open_file_limit(args.nodes)?;
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

/// The network a run uses, with the epoch length of `epoch_secs`. Without `measurers`,
/// regtest under rule v1 (peer attestations): the run measures propagation over a chosen
/// topology, and under the measurer rule every node also connects to every measurer, a
/// shortcut through it. With them (`--measurers`), regtest's own measurer rule with these
/// measurers instead of its well-known three, and quorum a majority of them.
pub fn network_spec(epoch_secs: u64, measurers: &[MeasurerSpec]) -> NetworkSpec {
    if !measurers.is_empty() {
        let regtest = NetworkSpec::regtest();
        return NetworkSpec {
            name: format!("regtest-m{}-epoch{epoch_secs}", measurers.len()),
            epoch_secs,
            measurers: measurers.to_vec(),
            measurer_quorum: (measurers.len() / 2 + 1) as u32,
            ..regtest
        };
    }
    let mut spec = NetworkSpec::regtest_peer_attested();
    if epoch_secs != spec.epoch_secs {
        spec.name = format!("regtest-v1-epoch{epoch_secs}");
        spec.epoch_secs = epoch_secs;
    }
    spec
}

/// The key of the run's measurer `i` (`--measurers`).
fn measurer_key(i: usize) -> SecretKey {
    SecretKey::from_seed(&format!("commons-sim measurer {i}"))
}

/// Where measurer `i` listens: a fixed port, since the spec that lists its address is
/// written before any node starts (every node has a loopback address of its own, so one
/// port serves all).
const MEASURER_PORT: u16 = 19_000;

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

async fn simulate(args: &NetworkArgs, root: PathBuf) -> Result<Report, SimError> {
    let started = Instant::now();
    let log = StageLog::new(started, !args.quiet);
    let n = args.nodes;
    let measurers: Vec<MeasurerSpec> = (0..args.measurers)
        .map(|i| MeasurerSpec {
            key: measurer_key(i).public_key(),
            addresses: vec![format!(
                "/ip4/{}/tcp/{MEASURER_PORT}",
                node_ip(args.first_address, i)
            )],
        })
        .collect();
    let spec = network_spec(args.epoch_secs, &measurers);
    spec.validate("the simulated network")
        .map_err(|e| SimError::Runtime(format!("internal: {e}")))?;
    let network_arg = if spec == NetworkSpec::regtest() {
        "regtest".to_string()
    } else {
        let path = root.join("network.toml");
        std::fs::write(&path, spec.to_toml())
            .map_err(|e| SimError::Runtime(format!("cannot write {}: {e}", path.display())))?;
        path.display().to_string()
    };
    let shared = args
        .shared_verification
        .then(|| Arc::new(SharedVerification::default()));
    let setup = Arc::new(cluster::Setup {
        root: root.clone(),
        network_arg,
        network_name: spec.name.clone(),
        resync_interval: Duration::from_secs_f64(args.resync_interval),
        signatures: match &shared {
            Some(cache) => cache.clone(),
            None => Arc::new(commons_aggregator::PlainSignatures),
        },
    });
    let mut topo_rng = Rng::new(args.seed, Stream::Topology);
    let edges = topology::edges(args.topology, n, args.degree, &mut topo_rng);
    let neighbours = topology::neighbours(n, &edges);

    // Roles: a seeded shuffle; node 0 (which submits the proposal) and the measurers always
    // honest.
    let droppers = (args.drop_share * n as f64).round() as usize;
    let spammers = (args.spam * n as f64).round() as usize;
    let mut order: Vec<usize> = (args.measurers.max(1)..n).collect();
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
    let nodes: Arc<Vec<ClusterNode>> = Arc::new(
        (0..n)
            .map(|i| {
                let node =
                    ClusterNode::new(i, roles[i], node_ip(args.first_address, i), setup.clone());
                if i < args.measurers {
                    node.run_as(measurer_key(i), MEASURER_PORT);
                }
                node
            })
            .collect(),
    );
    let honest: Vec<usize> = (0..n).filter(|&i| roles[i] == Role::Honest).collect();
    let daemons: Vec<usize> = (0..n).filter(|&i| roles[i] != Role::Dropper).collect();
    let signal_topic = TopicKind::Signals.topic(&spec.name).hash().to_string();

    log.line(&format!(
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

    log.line("warming up: every daemon must count every daemon as qualified");
    let qualifiable_nodes = qualifiable(&spec, &nodes, &neighbours, &daemons);
    let expected = qualifiable_nodes.len() as u64;
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
            log.line(&format!(
                "  qualified counts {lo}..{hi} of {expected}; proposal on {with_proposal} of {}",
                daemons.len()
            ));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let warmup_secs = warm_start.elapsed().as_secs_f64();
    log.line(&format!(
        "warm after {warmup_secs:.1} s: qualified counts {}..{} of {expected}",
        qualified_range.0, qualified_range.1
    ));
    let warmup_uncounted = uncounted(&nodes, &daemons, &qualifiable_nodes);
    if !warmup_uncounted.is_empty() {
        let missing: usize = warmup_uncounted.iter().map(|u| u.missing.len()).sum();
        let mut nodes_missed: BTreeSet<usize> = BTreeSet::new();
        for u in &warmup_uncounted {
            nodes_missed.extend(u.missing.iter().map(|m| m.node));
        }
        log.line(&format!(
            "  {} daemons do not count {missing} node(s) they should ({} distinct: {}); \
             summary.json's warmup_uncounted says what each held about them",
            warmup_uncounted.len(),
            nodes_missed.len(),
            abbreviated(&nodes_missed)
        ));
    }

    let mut phases = Vec::new();
    let phase_names: &[&str] = if spammers > 0 {
        &["baseline", "spam"]
    } else {
        &["baseline"]
    };
    for name in phase_names {
        let spam = *name == "spam";
        log.line(&format!(
            "phase {name}: {} signals at {}/s",
            args.signals, args.rate
        ));
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
        log.line(&format!(
            "phase {name} done in {:.1} s; tallies {}",
            phase.duration_secs,
            tally_outcome(&phase)
        ));
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
        measurers: (!measurers.is_empty()).then_some((measurers.len(), spec.measurer_quorum)),
        epoch_secs: spec.epoch_secs,
        poll_ms: args.poll_ms,
        start_secs,
        warmup_secs,
        expected_qualified: expected,
        qualified_range,
        warmup_uncounted,
        phases,
        runtime_secs: started.elapsed().as_secs_f64(),
        peak_rss_mib: peak_rss_mib(),
        shared_verification: shared.map(|cache| cache.counts()),
    })
}

/// How many daemons the topology lets qualify. A daemon's uptime is attested by the daemons
/// it is connected to (dropping nodes attest nobody), at the address they see; it qualifies
/// when those attesters sit in at least the spec's quorum of netgroups, by the aggregator's
/// own netgroup rule. With addresses handed out in order, a daemon whose neighbours all
/// share one /30 never qualifies. Under the measurer rule (`--measurers`) every daemon does.
fn qualifiable(
    spec: &NetworkSpec,
    nodes: &[ClusterNode],
    neighbours: &[Vec<usize>],
    daemons: &[usize],
) -> Vec<usize> {
    if spec.qualification == commons_signaling::QualificationRule::Measurers {
        // Every daemon visits every measurer, which attests it whatever its neighbours.
        return daemons.to_vec();
    }
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
        .copied()
        .collect()
}

/// Per running daemon that does not count every node of `qualifiable`: the ones it leaves
/// out and what its aggregator holds about each, so that a warm-up that never completes says
/// whether attestations were missing (too few netgroups) or late (too little uptime).
fn uncounted(nodes: &[ClusterNode], daemons: &[usize], qualifiable: &[usize]) -> Vec<UncountedRow> {
    let keys: Vec<(usize, PublicKey)> = qualifiable
        .iter()
        .filter_map(|&j| nodes[j].node().map(|n| (j, n.public_key())))
        .collect();
    let mut rows = Vec::new();
    for &i in daemons {
        let Some(node) = nodes[i].node() else {
            continue;
        };
        let missing: Vec<UncountedNode> = node.with_aggregator(|agg| {
            let counted: BTreeSet<std::net::IpAddr> =
                agg.counted_nodes().into_iter().map(|(_, ip)| ip).collect();
            keys.iter()
                .filter(|(j, _)| !counted.contains(&std::net::IpAddr::V4(nodes[*j].ip)))
                .map(|(j, key)| {
                    let status = agg.uptime(key);
                    UncountedNode {
                        node: *j,
                        uptime_epochs: status.as_ref().map_or(0, |s| s.uptime_epochs),
                        attester_netgroups: status.as_ref().map_or(0, |s| s.attester_netgroups),
                        qualified: status.is_some_and(|s| s.qualified),
                    }
                })
                .collect()
        });
        if !missing.is_empty() {
            rows.push(UncountedRow { node: i, missing });
        }
    }
    rows
}

/// Up to ten numbers, then how many more.
fn abbreviated(values: &BTreeSet<usize>) -> String {
    let shown: Vec<String> = values.iter().take(10).map(usize::to_string).collect();
    match values.len().saturating_sub(10) {
        0 => shown.join(", "),
        more => format!("{}, and {more} more", shown.join(", ")),
    }
}

async fn stop_all(nodes: &Arc<Vec<ClusterNode>>, signal_topic: &str) {
    for node in nodes.iter() {
        node.stop(signal_topic).await;
    }
}

/// The process's peak resident memory (VmHWM), MiB, where `/proc` has it.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// How a phase's tallies ended, for the log: agreed, agreed on the signals only (and the
/// denominators they differed in), or not at all.
fn tally_outcome(phase: &PhaseReport) -> String {
    match (phase.tally_converged_ms, phase.choices_converged_ms) {
        (Some(t), _) => format!("agreed {t:.0} ms after the last signal"),
        (None, Some(c)) => format!(
            "counted the same signals {c:.0} ms after the last one but never agreed in full: \
             their qualified populations differed ({})",
            phase
                .tally_total_nodes_range
                .map_or_else(|| "-".into(), |(lo, hi)| format!("{lo}..{hi} nodes"))
        ),
        (None, None) => "did not agree".into(),
    }
}
