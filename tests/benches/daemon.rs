//! Daemon benchmark: real release `commonsd` processes on loopback (127.0.0.80-127), as the
//! daemon issue asks:
//!
//! 1. propagation: time for a signal cast with RPC `signal` on one node of a 20-node network
//!    to show in the signer count of every other node's tally (p50 and p99), each node
//!    asked with `waitforsigners`, which answers as soon as it counts the signal;
//! 2. ingest: signals per second one node takes in; 100,000 pre-signed signals from 100,000
//!    keys are served to it over the catch-up sync protocol by an in-process libp2p peer
//!    (gossip from one peer is capped at 50/s, burst 200, by the default per-peer rate limit,
//!    so sync is the fastest path a node accepts); and, through gossip, a burst of 5,000
//!    signals from 25 publishing peers (200 each, within the per-peer burst);
//! 3. resident memory (VmRSS) of one node idle and holding 100,000 signals;
//! 4. restart time with 100,000 signals stored: SIGTERM, start again, until RPC answers
//!    with the full tally;
//! 5. floods (only with `COMMONS_BENCH_ONLY=flood`): honest propagation on the 20-node
//!    network without load, then while one peer floods node 0 with invalid signatures and
//!    another with valid duplicates, each as fast as it can and under a new identity each
//!    time the node drops it; what the node dropped and its memory.
//!
//! Ingest via sync (2a) is compared with the rate one core verifies the same signals'
//! signatures in the same run (2c, 2d); 2e feeds the same pages again (every one a
//! duplicate).
//!
//! Run with `cargo bench -p commons-e2e --bench daemon` (it needs `commonsd` and
//! `commons-cli` built with `--release` in the same target directory). Without `--bench`
//! (as under `cargo test --all-targets`) or with `--quick` it only checks that it can
//! build its messages. `COMMONS_BENCH_SIGNALS`, `COMMONS_BENCH_NODES` and
//! `COMMONS_BENCH_CASTS` change the sizes; `COMMONS_BENCH_ONLY=gossip,load,propagation,flood`
//! picks phases; `COMMONS_BENCH_METRICS_DIR=DIR` writes every node's `/metrics` there
//! after the propagation and flood phases (and before the flood, as `flood-before-*`), and
//! `COMMONS_BENCH_SAMPLES_FILE=FILE` appends the flood phase's samples to FILE
//! (`COMMONS_BENCH_CASTS`, default 60, casts up to one per node and
//! proposal, on as many proposals as that takes). Every daemon is killed when dropped and every wait
//! is bounded.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use commons_e2e::{NodeSpec, TestNode, now};
use commons_node::sync::{SyncCursor, SyncItem, SyncRequest, SyncResponse};
use commons_p2p::{
    P2pConfig, P2pError, P2pEvent, P2pHandle, P2pNode, RateLimit, TopicKind, Verdict,
};
use commons_rpc::{
    NoParams, ProposalReceipt, SignalParams, SubmitProposalParams, WaitSignersParams, method,
};
use commons_signaling::{
    BoundedBytes, BoundedVec, Choice, Hash32, MessageKind, NetworkSpec, SecretKey, Signal,
};

/// Signals on the signal items of one catch-up page (the node's own page limit).
const PAGE_ITEMS: usize = 4000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A tier-1 regtest proposal signed by maintainers 0-2; its id and bytes.
fn proposal(title: &str) -> (Hash32, Vec<u8>) {
    let network = NetworkSpec::regtest().network_id();
    let t = now();
    let p = commons_test_util::proposal(&network, 1, title, t - 1, t + 3600, 0..3);
    (p.id(&network), p.encode())
}

/// `count` signals on `proposal`, each from its own key, signed on all cores.
fn signals(proposal: Hash32, count: usize, seed: &str) -> Vec<Vec<u8>> {
    let network = NetworkSpec::regtest().network_id();
    let time = now();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let chunk = count.div_ceil(threads).max(1);
    let ranges: Vec<(usize, usize)> = (0..count)
        .step_by(chunk)
        .map(|s| (s, (s + chunk).min(count)))
        .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = ranges
            .iter()
            .map(|&(start, end)| {
                scope.spawn(move || {
                    (start..end)
                        .map(|i| {
                            let key = SecretKey::from_seed(&format!("{seed} {i}"));
                            let choice = [Choice::Support, Choice::Oppose, Choice::Override][i % 3];
                            commons_test_util::signal(
                                &network,
                                &key,
                                proposal,
                                choice,
                                1,
                                time,
                                vec![],
                            )
                            .encode()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("signing thread"))
            .collect()
    })
}

/// Catch-up pages: the proposal first, then the signals; page `i` carries cursor `i + 1`.
fn pages(proposal: &[u8], signals: &[Vec<u8>]) -> anyhow::Result<Vec<Vec<u8>>> {
    let item = |kind, bytes: &[u8]| -> anyhow::Result<SyncItem> {
        Ok(SyncItem {
            kind,
            bytes: BoundedBytes::new(bytes.to_vec()).map_err(|e| anyhow!("{e:?}"))?,
        })
    };
    let mut out = Vec::new();
    let mut items = vec![item(MessageKind::Proposal, proposal)?];
    let chunks: Vec<&[Vec<u8>]> = signals.chunks(PAGE_ITEMS).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        for s in chunk.iter() {
            items.push(item(MessageKind::Signal, s)?);
        }
        let next = (i + 1 < chunks.len()).then(|| SyncCursor {
            table: 2,
            key: BoundedBytes::new(((i + 1) as u64).to_be_bytes().to_vec()).expect("8 bytes"),
        });
        let batch = SyncResponse::Batch {
            items: BoundedVec::new(std::mem::take(&mut items)).map_err(|e| anyhow!("{e:?}"))?,
            next,
        };
        out.push(batch.encode());
    }
    if out.is_empty() {
        out.push(
            SyncResponse::Batch {
                items: BoundedVec::new(items).map_err(|e| anyhow!("{e:?}"))?,
                next: None,
            }
            .encode(),
        );
    }
    Ok(out)
}

/// The page a catch-up request asks for.
fn page_index(request: &[u8]) -> Option<usize> {
    match SyncRequest::decode(request).ok()? {
        SyncRequest::Catchup { after: None } => Some(0),
        SyncRequest::Catchup { after: Some(c) } => {
            let bytes: [u8; 8] = c.key.as_slice().try_into().ok()?;
            Some(u64::from_be_bytes(bytes) as usize)
        }
        SyncRequest::Deliver { .. } => None,
    }
}

/// An in-process libp2p peer that serves `pages` to whoever asks for catch-up.
struct Feeder {
    handle: P2pHandle,
    first_request: Arc<AtomicU64>,
    started: Instant,
}

impl Feeder {
    fn spawn(
        ip: Ipv4Addr,
        bootstrap: &str,
        pages: Vec<Vec<u8>>,
        seed: &str,
    ) -> anyhow::Result<Feeder> {
        let mut config = P2pConfig::new("regtest");
        config.listen_addrs = vec![format!("/ip4/{ip}/tcp/0").parse()?];
        config.bootstrap = vec![bootstrap.parse()?];
        config.outbound_source_ip = Some(IpAddr::V4(ip));
        config.discovery = false;
        config.ip_colocation_threshold = 1_000;
        let high = RateLimit::new(100_000, 100_000);
        config.rate_limits.requests_per_peer = high;
        config.rate_limits.requests_per_ip = high;
        config.rate_limits.gossip_per_peer = high;
        config.rate_limits.gossip_per_ip = high;
        config.request_timeout = Duration::from_secs(120);
        let secret = SecretKey::from_seed(seed).secret_bytes();
        let keypair = commons_p2p::keypair_from_secret(&secret)?;
        let mut registry = commons_p2p::prometheus_client::registry::Registry::default();
        let (handle, mut events, _task) = P2pNode::spawn(config, keypair, &mut registry)?;
        let first_request = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let (net, first) = (handle.clone(), first_request.clone());
        let pages = Arc::new(pages);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    P2pEvent::InboundSync {
                        request, channel, ..
                    } => {
                        let index = page_index(&request);
                        if index == Some(0) {
                            let _ = first.compare_exchange(
                                0,
                                started.elapsed().as_micros() as u64 + 1,
                                Ordering::SeqCst,
                                Ordering::SeqCst,
                            );
                        }
                        let response = match index.and_then(|i| pages.get(i)) {
                            Some(page) => page.clone(),
                            None => SyncResponse::refused("not served").encode(),
                        };
                        let _ = net.respond(channel, response).await;
                    }
                    P2pEvent::Message {
                        message_id,
                        propagation_source,
                        ..
                    } => {
                        let _ = net
                            .report_validation(message_id, propagation_source, Verdict::Ignore)
                            .await;
                    }
                    _ => {}
                }
            }
        });
        Ok(Feeder {
            handle,
            first_request,
            started,
        })
    }

    /// When the node first asked for catch-up.
    fn first_request(&self) -> Option<Instant> {
        match self.first_request.load(Ordering::SeqCst) {
            0 => None,
            us => Some(self.started + Duration::from_micros(us - 1)),
        }
    }
}

/// Polls `check` every `every` until it gives `Some`, for at most `timeout`.
fn poll<T>(
    timeout: Duration,
    every: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
}

fn signers(node: &TestNode, id: &Hash32) -> Option<u64> {
    Some(node.tally(&id.to_hex()).ok()?.signers)
}

/// Hands `bytes`, a signed proposal, to `node`.
fn submit(node: &TestNode, bytes: &[u8]) -> anyhow::Result<ProposalReceipt> {
    node.call::<method::SubmitProposal>(&SubmitProposalParams {
        hex: hex::encode(bytes),
    })
}

/// VmRSS of a running node, in MiB.
fn rss_mib(node: &TestNode) -> anyhow::Result<f64> {
    let kib = node
        .memory_kib("VmRSS")
        .ok_or_else(|| anyhow!("{} is not running", node.name))?;
    Ok(kib as f64 / 1024.0)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Signatures per second one thread verifies: the signals' own BIP340 checks, decoded
/// beforehand, over (at most) the first 20,000 of them: the baseline that ingest on every core
/// is compared against.
fn single_core_verify_rate(signed: &[Vec<u8>]) -> f64 {
    let network = NetworkSpec::regtest().network_id();
    let decoded: Vec<Signal> = signed
        .iter()
        .take(20_000)
        .filter_map(|bytes| Signal::decode(bytes).ok())
        .collect();
    let started = Instant::now();
    let valid = decoded.iter().filter(|s| s.verify(&network)).count();
    let took = started.elapsed();
    assert_eq!(valid, decoded.len(), "the bench's own signals verify");
    decoded.len() as f64 / took.as_secs_f64()
}

/// Signatures per second all cores verify together, one thread per core on an equal share
/// of the same signals as [`single_core_verify_rate`]: the ceiling ingest could reach if it
/// did nothing but verify, which says how much of the second core this machine really gives
/// (a virtual machine's cores may share a physical one).
fn every_core_verify_rate(signed: &[Vec<u8>]) -> (usize, f64) {
    let network = NetworkSpec::regtest().network_id();
    let decoded: Vec<Signal> = signed
        .iter()
        .take(20_000)
        .filter_map(|bytes| Signal::decode(bytes).ok())
        .collect();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let share = decoded.len().div_ceil(cores).max(1);
    let started = Instant::now();
    let valid: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = decoded
            .chunks(share)
            .map(|chunk| {
                let network = &network;
                scope.spawn(move || chunk.iter().filter(|s| s.verify(network)).count())
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a verifying thread panicked"))
            .sum()
    });
    let took = started.elapsed();
    assert_eq!(valid, decoded.len(), "the bench's own signals verify");
    (cores, decoded.len() as f64 / took.as_secs_f64())
}

/// Messages the node dropped as duplicates before checking their signatures.
fn duplicates(node: &TestNode) -> f64 {
    node.metrics()
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("commons_duplicates_dropped_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Table rows: figure -> value.
type Rows = BTreeMap<String, String>;

/// Figures 2, 3 and 4 on one node (127.0.0.100) fed by a peer on 127.0.0.101.
fn stored_load(rows: &mut Rows, count: usize) -> anyhow::Result<()> {
    let mut node = TestNode::start(
        "load",
        NodeSpec {
            ip: "127.0.0.100".into(),
            bootstrap: vec![],
            measurer: None,
        },
    )?;
    std::thread::sleep(Duration::from_secs(5));
    rows.insert(
        "3a. VmRSS, idle node (no peers, 5 s after start)".into(),
        format!("{:.1} MiB", rss_mib(&node)?),
    );

    let (id, proposal_bytes) = proposal("bench load");
    let t = Instant::now();
    let signed = signals(id, count, "commons-bench signer");
    let signing = t.elapsed();
    eprintln!("daemon bench: signed {count} signals in {signing:?}");
    let pages = pages(&proposal_bytes, &signed)?;
    let single_core = single_core_verify_rate(&signed);
    let (cores, every_core) = every_core_verify_rate(&signed);
    drop(signed);

    let runtime = tokio::runtime::Runtime::new()?;
    let _guard = runtime.enter();
    let pages_again = pages.clone();
    let feeder = Feeder::spawn(
        Ipv4Addr::new(127, 0, 0, 101),
        &node.multiaddr()?,
        pages,
        "commons-bench feeder",
    )?;
    let done = poll(
        Duration::from_secs(900),
        Duration::from_millis(20),
        "the fed node's tally",
        || (signers(&node, &id)? >= count as u64).then(Instant::now),
    )
    .with_context(|| format!("last tally: {:?}", signers(&node, &id)))?;
    let start = feeder
        .first_request()
        .ok_or_else(|| anyhow!("no catch-up request seen"))?;
    let took = done - start;
    rows.insert(
        format!("2a. ingest via catch-up sync, {count} signals (1 peer)"),
        format!(
            "{:.0} signals/s ({:.2} s)",
            count as f64 / took.as_secs_f64(),
            took.as_secs_f64()
        ),
    );
    let ingest_rate = count as f64 / took.as_secs_f64();
    rows.insert(
        "2c. raw BIP340 verification on one core (same signals, this run)".into(),
        format!("{single_core:.0} signatures/s"),
    );
    rows.insert(
        "2d. ingest via catch-up sync / one-core verification (goal >= 1.6)".into(),
        format!("{:.2}", ingest_rate / single_core),
    );
    rows.insert(
        format!("2f. raw BIP340 verification on {cores} threads at once (same signals, this run)"),
        format!(
            "{every_core:.0} signatures/s ({:.2}x one core)",
            every_core / single_core
        ),
    );
    rows.insert(
        "2g. ingest via catch-up sync / verification on every core".into(),
        format!("{:.2}", ingest_rate / every_core),
    );
    // The same pages again from a second peer: every signal is a duplicate, dropped before
    // its signature is checked.
    let before = duplicates(&node);
    let again = Feeder::spawn(
        Ipv4Addr::new(127, 0, 0, 126),
        &node.multiaddr()?,
        pages_again,
        "commons-bench feeder again",
    )?;
    let done = poll(
        Duration::from_secs(600),
        Duration::from_millis(20),
        "the duplicates to be dropped",
        || (duplicates(&node) >= before + count as f64).then(Instant::now),
    )?;
    if let Some(start) = again.first_request() {
        let took = done - start;
        rows.insert(
            format!("2e. duplicates via catch-up sync, {count} signals (whole path)"),
            format!(
                "{:.0} signals/s ({:.2} us each)",
                count as f64 / took.as_secs_f64(),
                took.as_secs_f64() * 1e6 / count as f64
            ),
        );
    }
    runtime.block_on(async {
        let _ = feeder.handle.shutdown().await;
        let _ = again.handle.shutdown().await;
    });
    drop(_guard);
    drop(runtime);
    std::thread::sleep(Duration::from_secs(3));
    rows.insert(
        format!("3b. VmRSS, holding {count} signals"),
        format!("{:.1} MiB", rss_mib(&node)?),
    );

    let t = Instant::now();
    node.stop()?;
    let stop = t.elapsed();
    let t = Instant::now();
    node.restart()?;
    let rpc_up = t.elapsed();
    poll(
        Duration::from_secs(600),
        Duration::from_millis(10),
        "the restarted tally",
        || (signers(&node, &id)? >= count as u64).then_some(()),
    )?;
    let full = t.elapsed();
    rows.insert(
        format!("4a. stop on SIGTERM, {count} signals stored"),
        ms(stop),
    );
    rows.insert(
        format!("4b. restart until RPC answers, {count} stored"),
        ms(rpc_up),
    );
    rows.insert(
        format!("4c. restart until full tally ({count}), {count} stored"),
        ms(full),
    );
    rows.insert(
        format!("3c. VmRSS after restart, {count} stored"),
        format!("{:.1} MiB", rss_mib(&node)?),
    );
    Ok(())
}

/// Figure 2 through gossip: one node (127.0.0.102) and `publishers` peers on 127.0.0.103
/// upward, each publishing `per_publisher` signals back to back (within the node's default
/// per-peer burst of 200, so none is throttled).
fn gossip_ingest(rows: &mut Rows, publishers: usize, per_publisher: usize) -> anyhow::Result<()> {
    let node = TestNode::start(
        "gossip",
        NodeSpec {
            ip: "127.0.0.102".into(),
            bootstrap: vec![],
            measurer: None,
        },
    )?;
    let (id, bytes) = proposal("bench gossip");
    submit(&node, &bytes)?;
    let total = publishers * per_publisher;
    let signed = signals(id, total, "commons-bench gossip signer");
    let runtime = tokio::runtime::Runtime::new()?;
    let _guard = runtime.enter();
    let addr = node.multiaddr()?;
    let mut feeders = Vec::new();
    for i in 0..publishers {
        feeders.push(Feeder::spawn(
            Ipv4Addr::new(127, 0, 0, 103 + i as u8),
            &addr,
            Vec::new(),
            &format!("commons-bench publisher {i}"),
        )?);
    }
    // Each publisher must be connected; publishing retries while the node's subscription
    // has not reached it yet.
    poll(
        Duration::from_secs(60),
        Duration::from_millis(100),
        "publishers to connect to the node",
        || {
            runtime.block_on(async {
                for f in &feeders {
                    if f.handle.peers().await.ok()?.is_empty() {
                        return None;
                    }
                }
                Some(())
            })
        },
    )?;
    std::thread::sleep(Duration::from_secs(2));
    let start = Instant::now();
    let tasks: Vec<_> = feeders
        .iter()
        .zip(signed.chunks(per_publisher))
        .map(|(f, chunk)| {
            let (net, chunk) = (f.handle.clone(), chunk.to_vec());
            runtime.spawn(async move {
                let mut failed = 0usize;
                for s in chunk {
                    let deadline = Instant::now() + Duration::from_secs(5);
                    loop {
                        match net.publish(TopicKind::Signals, s.clone()).await {
                            Ok(_) => break,
                            Err(P2pError::NoPeers) if Instant::now() < deadline => {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            Err(e) => {
                                if failed == 0 {
                                    eprintln!("daemon bench: publish failed: {e}");
                                }
                                failed += 1;
                                break;
                            }
                        }
                    }
                }
                failed
            })
        })
        .collect();
    let failed: usize = runtime.block_on(async {
        let mut sum = 0;
        for t in tasks {
            sum += t.await.unwrap_or(0);
        }
        sum
    });
    let published = start.elapsed();
    // Until every published signal is counted, or the count has not moved for 10 s (the
    // node may have throttled some): the rate is over what arrived.
    let want = (total - failed) as u64;
    let (mut got, mut last_change) = (0u64, Instant::now());
    let hard = Instant::now() + Duration::from_secs(300);
    while got < want && last_change.elapsed() < Duration::from_secs(10) && Instant::now() < hard {
        let now_got = signers(&node, &id).unwrap_or(got);
        if now_got > got {
            (got, last_change) = (now_got, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = last_change - start;
    // Why some may not have arrived: the node's own counters.
    let metrics = node.metrics().unwrap_or_default();
    let counter = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(0.0, |a, b| a + b)
    };
    let dropped = counter("commons_p2p_events_dropped");
    let limited = counter("commons_p2p_rate_limited");
    rows.insert(
        format!("2b. ingest via gossip, {total} signals ({publishers} peers x {per_publisher})"),
        format!(
            "{:.0} signals/s ({got} counted in {:.2} s; published in {:.2} s; {failed} publish \
             errors; node: {dropped} events dropped, {limited} rate-limited)",
            got as f64 / took.as_secs_f64(),
            took.as_secs_f64(),
            published.as_secs_f64()
        ),
    );
    runtime.block_on(async {
        for f in &feeders {
            let _ = f.handle.shutdown().await;
        }
    });
    Ok(())
}

/// `n` nodes at 127.0.0.80 upward, each bootstrapping from the first and the one before it,
/// with a proposal every node holds and the gossipsub meshes settled; the proposal's id.
fn propagation_network(n: usize, title: &str) -> anyhow::Result<(Vec<TestNode>, Hash32)> {
    let mut nodes: Vec<TestNode> = Vec::new();
    for i in 0..n {
        let mut bootstrap = Vec::new();
        if i > 0 {
            bootstrap.push(nodes[0].multiaddr()?);
        }
        if i > 1 {
            bootstrap.push(nodes[i - 1].multiaddr()?);
        }
        nodes.push(TestNode::start(
            &format!("n{i}"),
            NodeSpec {
                ip: format!("127.0.0.{}", 80 + i),
                bootstrap,
                measurer: (i < commons_signaling::spec::REGTEST_MEASURERS).then_some(i),
            },
        )?);
    }
    let want_peers = 2.min(n - 1);
    poll(
        Duration::from_secs(120),
        Duration::from_millis(250),
        "every node to have peers",
        || {
            nodes
                .iter()
                .all(|node| {
                    node.call::<method::GetPeers>(&NoParams {})
                        .is_ok_and(|p| p.len() >= want_peers)
                })
                .then_some(())
        },
    )?;
    let (id, _) = next_proposal(&nodes, title)?;
    // Let gossipsub meshes settle (heartbeats every 500 ms).
    std::thread::sleep(Duration::from_secs(5));
    Ok((nodes, id))
}

/// How long signals take to reach the other nodes: `casts` signals on `id`, each cast with
/// RPC on a different node (node `k % n` casts the k-th), one every 300 ms, each followed
/// until every other node counts it. `before` is the number of signers already counted.
/// Sorted: the time until the last node counted each signal, and every node's time.
struct Reach {
    last: Vec<Duration>,
    all: Vec<Duration>,
    /// (Signal, node) pairs not counted within 30 s; left out of `all` and `last`.
    lost: usize,
}

fn measure_reach(
    nodes: &[TestNode],
    id: &Hash32,
    casts: usize,
    before: u64,
) -> anyhow::Result<Reach> {
    let n = nodes.len();
    let mut all: Vec<Duration> = Vec::new();
    let mut last: Vec<Duration> = Vec::new();
    let mut lost = 0;
    for k in 0..casts {
        let caster = k % n;
        let want = before + k as u64 + 1;
        let start = Instant::now();
        let results: Vec<anyhow::Result<Duration>> = std::thread::scope(|scope| {
            let pollers: Vec<_> = nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != caster)
                .map(|(_, node)| {
                    // The node answers as soon as it counts the signal: polling from 19
                    // threads took more of the two cores than the 20 daemons did.
                    scope.spawn(move || {
                        let tally = node.call::<method::WaitForSigners>(&WaitSignersParams {
                            id: id.to_hex(),
                            signers: want,
                            timeout: Some(25_000),
                        })?;
                        let took = start.elapsed();
                        anyhow::ensure!(
                            tally.signers >= want,
                            "the signal was not counted within 25 s ({} of {want} signers)",
                            tally.signers
                        );
                        Ok(took)
                    })
                })
                .collect();
            let cast = SignalParams {
                proposal: id.to_hex(),
                choice: "support".to_string(),
            };
            if let Err(e) = nodes[caster].call::<method::CastSignal>(&cast) {
                eprintln!("daemon bench: signal on n{caster} failed: {e}");
            }
            pollers
                .into_iter()
                .map(|p| p.join().expect("poller"))
                .collect()
        });
        let mut worst = Some(Duration::ZERO);
        for r in results {
            match r {
                Ok(d) => {
                    worst = worst.map(|w| w.max(d));
                    all.push(d);
                }
                Err(e) => {
                    eprintln!("daemon bench: signal {k} cast on n{caster}: {e}");
                    lost += 1;
                    worst = None;
                }
            }
        }
        last.extend(worst);
        std::thread::sleep(Duration::from_millis(300));
    }
    all.sort();
    last.sort();
    Ok(Reach { last, all, lost })
}

impl Reach {
    fn p50_p99(sorted: &[Duration]) -> String {
        format!(
            "{} / {}",
            ms(percentile(sorted, 50.0)),
            ms(percentile(sorted, 99.0))
        )
    }

    /// The figures of `last`, and how many deliveries were lost.
    fn summary(&self) -> String {
        format!("{} ({} lost)", Reach::p50_p99(&self.last), self.lost)
    }
}

/// A new proposal submitted at node 0, once every node holds it; its id and bytes.
fn next_proposal(nodes: &[TestNode], title: &str) -> anyhow::Result<(Hash32, Vec<u8>)> {
    let (id, bytes) = proposal(title);
    submit(&nodes[0], &bytes)?;
    poll(
        Duration::from_secs(60),
        Duration::from_millis(50),
        "the proposal on every node",
        || {
            nodes
                .iter()
                .all(|node| signers(node, &id).is_some())
                .then_some(())
        },
    )?;
    Ok((id, bytes))
}

/// `casts` signals on `nodes`, at most one per node and proposal: in rounds of `n` casts,
/// each round on a proposal of its own (the first is `first`).
fn reach_in_rounds(
    nodes: &[TestNode],
    first: Hash32,
    casts: usize,
    label: &str,
) -> anyhow::Result<Reach> {
    let n = nodes.len();
    let mut reach = Reach {
        last: Vec::new(),
        all: Vec::new(),
        lost: 0,
    };
    let mut id = first;
    let mut done = 0;
    let mut round = 0;
    while done < casts {
        if round > 0 {
            id = next_proposal(nodes, &format!("bench {label} round {round}"))?.0;
        }
        let this = (casts - done).min(n);
        let r = measure_reach(nodes, &id, this, 0)?;
        reach.last.extend(r.last);
        reach.all.extend(r.all);
        reach.lost += r.lost;
        done += this;
        round += 1;
    }
    reach.last.sort();
    reach.all.sort();
    Ok(reach)
}

/// Figure 1 on `n` nodes at 127.0.0.80 upward: `casts` signals, each cast on a different node
/// (more than `n` casts go to further proposals).
fn propagation(rows: &mut Rows, n: usize, casts: usize) -> anyhow::Result<()> {
    let (nodes, id) = propagation_network(n, "bench propagation")?;
    let reach = reach_in_rounds(&nodes, id, casts, "propagation")?;
    dump_metrics(&nodes, "propagation");
    rows.insert(
        format!(
            "1a. signal reaches all {n} nodes (p50 / p99 of {} signals)",
            reach.last.len()
        ),
        reach.summary(),
    );
    rows.insert(
        format!(
            "1b. signal reaches one node (p50 / p99 of {} samples)",
            reach.all.len()
        ),
        Reach::p50_p99(&reach.all),
    );
    Ok(())
}

/// Signals each flooding identity has at hand (it is banned long before it sends them all).
const FLOOD_SIGNALS: usize = 10_000;

/// What a flooding peer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flood {
    /// Signals whose signatures do not verify, each distinct (so that no duplicate cache
    /// drops them before the signature check).
    InvalidSignatures,
    /// Valid signals the node already holds (from catch-up with the flooder): new to its
    /// gossipsub, duplicates to its intake.
    ValidDuplicates,
}

/// What one flooder achieved.
#[derive(Debug, Default)]
struct FloodTally {
    identities: usize,
    published: usize,
}

/// Floods the node at `target` from `ip` with `messages`, as fast as gossipsub takes them,
/// from when `go` is set until `stop`: one identity after another, each used until the node
/// drops it (a publish finds no peer), as a flooder with many keys would. The first identity
/// serves `preload` for catch-up.
async fn flood_from(
    ip: Ipv4Addr,
    target: String,
    kind: Flood,
    messages: Arc<Vec<Vec<u8>>>,
    preload: Vec<Vec<u8>>,
    go: Arc<std::sync::atomic::AtomicBool>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> FloodTally {
    let mut tally = FloodTally::default();
    let mut preload = Some(preload);
    let mut next = 0usize;
    while !stop.load(Ordering::SeqCst) {
        let seed = format!("commons-bench flooder {kind:?} {}", tally.identities);
        let pages = preload.take().unwrap_or_default();
        let Ok(feeder) = Feeder::spawn(ip, &target, pages, &seed) else {
            break;
        };
        tally.identities += 1;
        let connected = Instant::now() + Duration::from_secs(10);
        while feeder.handle.peers().await.map_or(true, |p| p.is_empty()) {
            if Instant::now() > connected || stop.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The node's subscriptions take a moment to reach a new peer.
        tokio::time::sleep(Duration::from_millis(200)).await;
        while !go.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut refused = 0;
        while !stop.load(Ordering::SeqCst) && refused < 50 {
            let bytes = messages[next % messages.len()].clone();
            match feeder.handle.publish(TopicKind::Signals, bytes).await {
                Ok(_) => {
                    tally.published += 1;
                    next += 1;
                    refused = 0;
                }
                Err(P2pError::Duplicate) => next += 1,
                Err(_) => {
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            if tally.published % 64 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let _ = feeder.handle.shutdown().await;
    }
    tally
}

/// Copies of `signed` whose signatures no longer verify.
fn spoiled(signed: &[Vec<u8>]) -> Vec<Vec<u8>> {
    signed
        .iter()
        .filter_map(|bytes| {
            let mut signal = Signal::decode(bytes).ok()?;
            signal.signature.0[63] ^= 1;
            Some(signal.encode())
        })
        .collect()
}

/// With `COMMONS_BENCH_METRICS_DIR` set, writes every node's `/metrics` there
/// (`<phase>-<node>.txt`), to see where a phase's time went.
fn dump_metrics(nodes: &[TestNode], phase: &str) {
    let Some(dir) = std::env::var_os("COMMONS_BENCH_METRICS_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    for node in nodes {
        if let Ok(text) = node.metrics() {
            let path = dir.join(format!("{phase}-{}.txt", node.name));
            if let Err(e) = std::fs::write(&path, text) {
                eprintln!("daemon bench: cannot write {}: {e}", path.display());
            }
        }
    }
}

/// With `COMMONS_BENCH_SAMPLES_FILE` set, appends each sample there as `<label> <ms>`, so
/// that the samples of several runs can be pooled (a p99 of 10 samples is their maximum).
fn append_samples(sets: &[(&str, &[Duration])]) {
    let Some(path) = std::env::var_os("COMMONS_BENCH_SAMPLES_FILE") else {
        return;
    };
    let mut text = String::new();
    for (label, samples) in sets {
        for sample in *samples {
            text.push_str(&format!("{label} {:.3}\n", sample.as_secs_f64() * 1e3));
        }
    }
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| std::io::Write::write_all(&mut file, text.as_bytes()));
    if let Err(e) = appended {
        eprintln!(
            "daemon bench: cannot append to {}: {e}",
            path.to_string_lossy()
        );
    }
}

/// A counter of the node's `/metrics`, summed over its labels.
fn metric_sum(node: &TestNode, name: &str) -> f64 {
    node.metrics()
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Figures 5 (floods): on `n` nodes, honest propagation without load, then while two peers
/// on 127.0.0.120 and .121, connected to node 0 only, flood it with invalid signatures and
/// with valid duplicates (a new identity each time one is dropped); whether they are
/// dropped, and node 0's memory.
fn flood(rows: &mut Rows, n: usize, casts: usize) -> anyhow::Result<()> {
    let (nodes, id) = propagation_network(n, "bench flood")?;
    let quiet = reach_in_rounds(&nodes, id, casts, "flood quiet")?;
    let (target, target_bytes) = next_proposal(&nodes, "bench flood target")?;
    let valid = signals(target, FLOOD_SIGNALS, "commons-bench flood signer");
    let invalid = spoiled(&signals(
        target,
        FLOOD_SIGNALS,
        "commons-bench spoiled signer",
    ));
    let preload = pages(&target_bytes, &valid)?;
    let rss_before = rss_mib(&nodes[0])?;
    let banned_before = metric_sum(&nodes[0], "commons_p2p_peers_banned");
    let limited_before = metric_sum(&nodes[0], "commons_p2p_rate_limited");

    let runtime = tokio::runtime::Runtime::new()?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let go = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let addr = nodes[0].multiaddr()?;
    let dup = runtime.spawn(flood_from(
        Ipv4Addr::new(127, 0, 0, 121),
        addr.clone(),
        Flood::ValidDuplicates,
        Arc::new(valid),
        preload,
        go.clone(),
        stop.clone(),
    ));
    // The duplicates must be held before they are duplicates.
    poll(
        Duration::from_secs(300),
        Duration::from_millis(50),
        "node 0 to catch up with the duplicate flooder",
        || (signers(&nodes[0], &target)? >= FLOOD_SIGNALS as u64).then_some(()),
    )?;
    let bad = runtime.spawn(flood_from(
        Ipv4Addr::new(127, 0, 0, 120),
        addr,
        Flood::InvalidSignatures,
        Arc::new(invalid),
        Vec::new(),
        go.clone(),
        stop.clone(),
    ));
    std::thread::sleep(Duration::from_secs(1));
    dump_metrics(&nodes, "flood-before");
    let shed_before = metric_sum(&nodes[0], "commons_gossip_shed_total");
    go.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let id = next_proposal(&nodes, "bench flood loaded")?.0;
    let loaded = reach_in_rounds(&nodes, id, casts, "flood loaded");
    let flooded = started.elapsed();
    let rss_during = rss_mib(&nodes[0])?;
    stop.store(true, Ordering::SeqCst);
    let (dup, bad) = runtime.block_on(async { (dup.await, bad.await) });
    let (dup, bad) = (dup.unwrap_or_default(), bad.unwrap_or_default());
    let loaded = loaded?;
    dump_metrics(&nodes, "flood");
    let peak = nodes[0].memory_kib("VmHWM").unwrap_or(0) as f64 / 1024.0;
    let banned = metric_sum(&nodes[0], "commons_p2p_peers_banned") - banned_before;
    let limited = metric_sum(&nodes[0], "commons_p2p_rate_limited") - limited_before;
    let shed = metric_sum(&nodes[0], "commons_gossip_shed_total") - shed_before;
    append_samples(&[("unloaded", &quiet.last), ("flooded", &loaded.last)]);
    let ratio = |loaded: &[Duration], quiet: &[Duration]| {
        percentile(loaded, 99.0).as_secs_f64() / percentile(quiet, 99.0).as_secs_f64().max(1e-9)
    };
    rows.insert(
        format!(
            "5a. floods: signal reaches all {n} nodes, unloaded (p50 / p99 of {})",
            quiet.last.len()
        ),
        Reach::p50_p99(&quiet.last),
    );
    rows.insert(
        format!(
            "5b. floods: signal reaches all {n} nodes, flooded (p50 / p99 of {})",
            loaded.last.len()
        ),
        format!(
            "{} (p99 {:.2}x unloaded; goal < 2x)",
            loaded.summary(),
            ratio(&loaded.last, &quiet.last)
        ),
    );
    rows.insert(
        "5c. floods: signal reaches one node, unloaded / flooded (p99)".into(),
        format!(
            "{} / {}",
            ms(percentile(&quiet.all, 99.0)),
            ms(percentile(&loaded.all, 99.0))
        ),
    );
    let secs = flooded.as_secs_f64().max(1e-9);
    rows.insert(
        "5d. floods: invalid-signature flooder".into(),
        format!(
            "{} published in {:.1} s ({:.0}/s) by {} identities",
            bad.published,
            secs,
            bad.published as f64 / secs,
            bad.identities
        ),
    );
    rows.insert(
        "5e. floods: valid-duplicate flooder".into(),
        format!(
            "{} published in {:.1} s ({:.0}/s) by {} identities",
            dup.published,
            secs,
            dup.published as f64 / secs,
            dup.identities
        ),
    );
    rows.insert(
        "5f. floods: node 0 banned / rate-limited / shed".into(),
        format!(
            "{banned} peers banned, {limited} messages rate-limited, {shed} shed before ingest"
        ),
    );
    rows.insert(
        "5g. floods: node 0 VmRSS before / during / peak (VmHWM)".into(),
        format!("{rss_before:.1} / {rss_during:.1} / {peak:.1} MiB"),
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("daemon: bench");
        return;
    }
    let quick = !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--quick");
    if quick {
        let (id, bytes) = proposal("bench quick");
        let signed = signals(id, 10, "commons-bench quick");
        let pages = pages(&bytes, &signed).expect("pages build");
        assert_eq!(
            page_index(&SyncRequest::Catchup { after: None }.encode()),
            Some(0)
        );
        assert!(SyncResponse::decode(&pages[0]).is_ok());
        println!("daemon bench: quick mode (run `cargo bench -p commons-e2e --bench daemon`)");
        return;
    }
    let count = env_usize("COMMONS_BENCH_SIGNALS", 100_000);
    let n = env_usize("COMMONS_BENCH_NODES", 20).clamp(2, 20);
    let casts = env_usize("COMMONS_BENCH_CASTS", 60);
    let only = std::env::var("COMMONS_BENCH_ONLY").unwrap_or_default();
    let run = |phase: &str| only.is_empty() || only.split(',').any(|p| p == phase);
    let mut rows = Rows::new();
    let per_publisher = env_usize("COMMONS_BENCH_GOSSIP_EACH", 200);
    if run("gossip")
        && let Err(e) = gossip_ingest(&mut rows, 25, per_publisher)
    {
        eprintln!("daemon bench: gossip ingest figure incomplete: {e:#}");
    }
    print_table(&rows);
    if run("load")
        && let Err(e) = stored_load(&mut rows, count)
    {
        eprintln!("daemon bench: single-node figures incomplete: {e:#}");
    }
    print_table(&rows);
    if run("propagation")
        && let Err(e) = propagation(&mut rows, n, casts)
    {
        eprintln!("daemon bench: propagation figures incomplete: {e:#}");
    }
    print_table(&rows);
    // Not in the default run: it takes minutes and loads the machine on purpose.
    if only.split(',').any(|p| p == "flood")
        && let Err(e) = flood(&mut rows, n, casts)
    {
        eprintln!("daemon bench: flood figures incomplete: {e:#}");
    }
    print_table(&rows);
}

fn print_table(rows: &Rows) {
    let width = rows.keys().map(String::len).max().unwrap_or(10);
    println!("\n| {:width$} | value |", "figure");
    println!("|{}|-------|", "-".repeat(width + 2));
    for (k, v) in rows {
        println!("| {k:width$} | {v} |");
    }
}
