//! What the aggregator costs a node that knows N others: loading their attestations, the
//! epoch boundary (every standing recomputed), and the memory it holds, at mainnet's rule
//! parameters, under rule v1 and under the measurer rule.
//!
//! `cargo bench -p commons-aggregator --bench epoch` prints the unit costs of
//! docs/SCALING.md (message sizes, a signature check, signing an attestation), then one row
//! per configuration. Without `--bench` (as under `cargo test --all-targets`) it runs 200
//! nodes under each rule and checks that every node counts. Each
//! runs in a child process of its own (this executable, re-run with `--one`), so that the
//! peak memory it reports (`VmHWM` less the resident size before the aggregator existed) is
//! that configuration's alone. `COMMONS_BENCH_NODES` sets the sizes (default
//! `10000,100000`; `1000000` takes about a minute per row on two cores). Times are the CPU
//! time of the measuring thread, so that other work on the machine does not count, except
//! the last two columns: the wall time of a boundary on one thread and on two, which is what
//! a node sharing the boundary over its cores waits for.
//!
//! The attestations carry zero signatures: like the simulator, this measures the rule, not
//! BIP340, whose cost per verification `--bench ingest` measures. Every node has its own
//! /24, so every attester is in a netgroup of its own and every node qualifies.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use commons_aggregator::{Aggregator, AttestationOutcome, MeasurerPolicy, Policy, Qualification};
use commons_signaling::{
    AttestationBody, Choice, NetworkSpec, PROTOCOL_VERSION, PublicKey, SecretKey, Signature,
    Signed, UptimeAttestation, WireIp,
};

/// Peer attesters per node: one per connection a node keeps (`target_peers`, 16), which is
/// what its presence carries under rule v1.
const PEERS: u64 = 16;
/// Peer attestations a node carries beside the measurers' under the measurer rule
/// (`commons_node::AUDIT_PEER_ATTESTATIONS`; this crate cannot depend on the node).
const AUDIT_PEERS: usize = 4;
/// Mainnet's intended measurer set.
const MEASURERS: u64 = 9;
/// Seen epochs in every attestation: above mainnet's 90-epoch minimum.
const SEEN: u32 = 100;
/// The tally epoch: far enough from 0 that the load at epoch 0 holds nothing live.
const EPOCH: u64 = 1_000;

/// A key from a counter, spread over all 32 bytes like a real key (splitmix64).
fn key(n: u64) -> PublicKey {
    let mut out = [0u8; 32];
    let mut x = n.wrapping_add(0x5eed);
    for chunk in out.chunks_mut(8) {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    PublicKey(out)
}

/// Node `i`'s address: the first host of a /24 of its own.
fn address(i: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0b00_0001 + ((i as u32) << 8)))
}

fn attestation(
    attester: PublicKey,
    subject: PublicKey,
    ip: IpAddr,
    epoch: u64,
) -> UptimeAttestation {
    Signed {
        body: AttestationBody {
            version: PROTOCOL_VERSION,
            attester,
            subject,
            subject_ip: WireIp(ip),
            epoch,
            seen_epochs: SEEN,
        },
        signature: Signature::default(),
    }
}

/// The attestations about node `i` of `n`: from `PEERS` other nodes spread over the
/// network, and under the measurer rule from every measurer too.
fn about(i: u64, n: u64, measurers: &[PublicKey], epoch: u64) -> Vec<UptimeAttestation> {
    let subject = key(i);
    let ip = address(i);
    let mut out: Vec<UptimeAttestation> = (1..=PEERS)
        .map(|j| attestation(key((i + j * 7_919) % n), subject, ip, epoch))
        .collect();
    out.extend(
        measurers
            .iter()
            .map(|m| attestation(*m, subject, ip, epoch)),
    );
    out
}

/// CPU time this thread has run, from the scheduler (`/proc/thread-self/schedstat`, in
/// nanoseconds): on a machine shared with other work, wall time measures the other work
/// too. Falls back to wall time where the file does not exist.
#[derive(Clone, Copy)]
struct Clock(Instant, Option<u64>);

impl Clock {
    fn now() -> Self {
        let cpu = std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok());
        Clock(Instant::now(), cpu)
    }

    fn elapsed(self) -> Duration {
        match (self.1, Clock::now().1) {
            (Some(start), Some(end)) => Duration::from_nanos(end.saturating_sub(start)),
            _ => self.0.elapsed(),
        }
    }
}

fn resident_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One configuration, in this process: prints `load_ms boundary_ms next_ms add_us peak_kib
/// attestations counted wall_1_thread_ms wall_2_threads_ms held`, and checks that every node
/// counts.
fn one(nodes: u64, rule: &str) {
    let before = resident_kib("VmRSS:");
    let spec = NetworkSpec::mainnet();
    let policy = Policy {
        allow_unroutable: true,
        ..Policy::from_spec(&spec)
    };
    let measurers: Vec<PublicKey> = match rule {
        "measurers" => (0..MEASURERS).map(|m| key(u64::MAX - m)).collect(),
        _ => Vec::new(),
    };
    let qualification = match rule {
        "measurers" => Qualification::Measurers(MeasurerPolicy {
            measurers: measurers.iter().copied().collect::<BTreeSet<_>>(),
            quorum: spec.measurer_quorum,
            liveness_epochs: spec.liveness_epochs,
        }),
        _ => Qualification::PeerAttestations,
    };
    let mut agg = Aggregator::with_qualification(spec, policy, qualification, 0);

    // Carried by their subject, as presences bring them: under the measurer rule the
    // peers' attestations weigh nothing and are not held (`Aggregator::weighs`).
    let start = Clock::now();
    let (mut attestations, mut held) = (0u64, 0u64);
    for i in 0..nodes {
        for a in about(i, nodes, &measurers, EPOCH) {
            if agg.add_carried_attestation(&key(i), a) == AttestationOutcome::New {
                held += 1;
            }
            attestations += 1;
        }
    }
    let load = start.elapsed();

    let start = Clock::now();
    agg.set_epoch(EPOCH);
    let boundary = start.elapsed();
    let (qualified, _) = agg.population();

    // The daily boundary after it (the attestations of the new epoch have not come yet,
    // every standing is recomputed), then a thousand nodes' attestations of the new epoch
    // arriving between boundaries, as presences bring them: the incremental path.
    let start = Clock::now();
    agg.set_epoch(EPOCH + 1);
    let next = start.elapsed();
    let sample = nodes.min(1_000);
    let start = Clock::now();
    let mut added = 0u64;
    for i in 0..sample {
        for a in about(i, nodes, &measurers, EPOCH + 1) {
            agg.add_carried_attestation(&key(i), a);
            added += 1;
        }
    }
    let add = start.elapsed();
    let peak = resident_kib("VmHWM:").saturating_sub(before);
    // What the node waits for: it shares the boundary over its cores
    // (`Aggregator::set_threads`), so wall time, on one thread and then on two.
    let mut walls = [0u128; 2];
    for (threads, wall) in [1, 2].into_iter().zip(&mut walls) {
        agg.set_threads(threads);
        let start = Instant::now();
        agg.set_epoch(EPOCH + 1 + threads as u64);
        *wall = start.elapsed().as_millis();
    }
    println!(
        "{} {} {} {:.2} {} {} {} {} {} {}",
        load.as_millis(),
        boundary.as_millis(),
        next.as_millis(),
        add.as_secs_f64() * 1e6 / added.max(1) as f64,
        peak,
        attestations,
        qualified,
        walls[0],
        walls[1],
        held
    );
    assert_eq!(
        qualified, nodes,
        "every node counts ({rule}, {nodes} nodes)"
    );
    drop(agg);
}

/// The unit costs the scaling model multiplies (docs/SCALING.md): the encoded size of each
/// message a node receives every epoch, and the time of one signature check as the node
/// makes it (digest of the body, then BIP340).
fn unit_costs() {
    let spec = NetworkSpec::mainnet();
    let net = spec.network_id();
    let node = SecretKey::from_seed("scaling node");
    let attesters: Vec<SecretKey> = (0..PEERS + MEASURERS)
        .map(|i| SecretKey::from_seed(&format!("scaling attester {i}")))
        .collect();
    let attested: Vec<UptimeAttestation> = attesters
        .iter()
        .map(|a| {
            commons_test_util::attestation(&net, a, node.public_key(), "203.0.113.7", EPOCH, SEEN)
        })
        .collect();
    let peers_only = &attested[..PEERS as usize];
    let presence_v1 = commons_test_util::presence(&net, &node, EPOCH, peers_only.to_vec());
    let presence_v2 = commons_test_util::presence(&net, &node, EPOCH, attested.clone());
    // What a node sends under the measurer rule: every measurer's and 4 peers'
    // (`commons_node::AUDIT_PEER_ATTESTATIONS`).
    let sent_v2: Vec<UptimeAttestation> = attested[PEERS as usize..]
        .iter()
        .chain(&attested[..AUDIT_PEERS])
        .cloned()
        .collect();
    let presence_v2_sent = commons_test_util::presence(&net, &node, EPOCH, sent_v2);
    let presence_bare = commons_test_util::presence(&net, &node, EPOCH, vec![]);
    let signal = commons_test_util::signal(
        &net,
        &node,
        commons_signaling::Hash32([7; 32]),
        Choice::Support,
        1,
        1_800_000_000,
        attested[..16.min(attested.len())].to_vec(),
    );
    println!("| message | encoded bytes |");
    println!("|---|---|");
    println!("| attestation | {} |", attested[0].encode().len());
    println!(
        "| presence, no attestation | {} |",
        presence_bare.encode().len()
    );
    println!(
        "| presence, {PEERS} peer attestations (rule v1) | {} |",
        presence_v1.encode().len()
    );
    println!(
        "| presence, {MEASURERS} measurer + {PEERS} peer attestations | {} |",
        presence_v2.encode().len()
    );
    println!(
        "| presence, {MEASURERS} measurer + {AUDIT_PEERS} peer attestations (sent under the measurer rule) | {} |",
        presence_v2_sent.encode().len()
    );
    println!("| signal, 16 attestations | {} |", signal.encode().len());

    let many: Vec<UptimeAttestation> = (0..2_000)
        .map(|i| {
            commons_test_util::attestation(
                &net,
                &attesters[i % attesters.len()],
                key(i as u64),
                "203.0.113.7",
                EPOCH,
                SEEN,
            )
        })
        .collect();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let start = Clock::now();
        for a in &many {
            assert!(black_box(a).verify(&net));
        }
        best = best.min(start.elapsed().as_secs_f64() / many.len() as f64);
    }
    // What a measurer spends per node it attests: signing one attestation.
    let mut best_sign = f64::MAX;
    for _ in 0..3 {
        let start = Clock::now();
        for (i, a) in many.iter().take(500).enumerate() {
            black_box(commons_test_util::attestation(
                &net,
                &attesters[i % attesters.len()],
                a.body.subject,
                "203.0.113.7",
                EPOCH,
                SEEN,
            ));
        }
        best_sign = best_sign.min(start.elapsed().as_secs_f64() / 500.0);
    }
    println!();
    println!(
        "one signature check (digest + BIP340, best of 3 x {}): {:.1} µs, {:.0} per second on one core",
        many.len(),
        best * 1e6,
        1.0 / best
    );
    println!(
        "one attestation signed (best of 3 x 500): {:.1} µs, {:.0} per second on one core",
        best_sign * 1e6,
        1.0 / best_sign
    );
    println!();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--one") {
        let nodes = args[at + 1].parse().expect("a node count");
        one(nodes, &args[at + 2]);
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        // Under `cargo test --all-targets`: a small network under each rule, in process,
        // checks the bench still runs (and that every node qualifies).
        one(200, "v1");
        one(200, "measurers");
        return;
    }
    let sizes: Vec<u64> = std::env::var("COMMONS_BENCH_NODES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("COMMONS_BENCH_NODES: comma-separated counts")
        })
        .collect();
    unit_costs();
    let exe = std::env::current_exe().expect("own executable");
    println!(
        "| rule | nodes | attestations carried | held | load | boundary (first) | boundary (next) | add one carried attestation | aggregator peak memory | bytes per attestation held | boundary wall, 1 thread | 2 threads |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for rule in ["v1", "measurers"] {
        for &nodes in &sizes {
            let out = Command::new(&exe)
                .args(["--one", &nodes.to_string(), rule])
                .output()
                .expect("run one configuration");
            let text = String::from_utf8_lossy(&out.stdout);
            let f: Vec<&str> = text.split_whitespace().collect();
            if f.len() != 10 {
                panic!(
                    "configuration {rule} {nodes} failed: {text} {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let (peak_kib, attestations, held): (u64, u64, u64) = (
                f[4].parse().unwrap(),
                f[5].parse().unwrap(),
                f[9].parse().unwrap(),
            );
            let rule_name = match rule {
                "v1" => format!("v1, {PEERS} peers"),
                _ => format!("measurers ({MEASURERS}) + {PEERS} peers"),
            };
            println!(
                "| {rule_name} | {nodes} | {attestations} | {held} | {} ms | {} ms | {} ms | {} µs | {:.0} MiB | {} | {} ms | {} ms |",
                f[0],
                f[1],
                f[2],
                f[3],
                peak_kib as f64 / 1024.0,
                peak_kib * 1024 / held.max(1),
                f[7],
                f[8],
            );
            assert_eq!(
                f[6],
                nodes.to_string(),
                "every node qualifies ({rule}, {nodes})"
            );
        }
    }
}
