//! One measured phase: signals cast at the chosen rate while churn takes nodes down and spammers
//! publish invalid messages, then the wait until every signal reached every node.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use commons_p2p::{Multiaddr, TopicKind};
use commons_signaling::{
    BoundedVec, Choice, Hash32, NetworkSpec, PROTOCOL_VERSION, SecretKey, Signal, SignalBody,
};

use super::args::NetworkArgs;
use super::cluster::{ClusterNode, Role};
use super::counters::Counters;
use super::report::{PhaseReport, ms, reach_rows, signal_rows};
use super::watch::{Tracked, Watch, watcher};
use crate::rng::{Rng, Stream};

/// Unix seconds now (0 before 1970): signals carry the time they were made.
pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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

/// Runs one phase and returns its figures.
#[allow(clippy::too_many_arguments)]
pub(super) async fn run_phase(
    args: &NetworkArgs,
    nodes: &Arc<Vec<ClusterNode>>,
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
        choices_converged: None,
        total_nodes_range: None,
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
        choices_converged_ms: w.choices_converged.map(ms),
        tally_total_nodes_range: w.total_nodes_range,
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
