//! The cost of a recount file: taking a node's snapshot, writing the file, reading it back and
//! recounting it, for proposals with many signals.
//!
//! `cargo bench -p commons-aggregator --bench recount` prints one row per size: the signals,
//! the file's size, the snapshot (what a node does under its state lock), writing the file
//! (outside the lock), reading it, and the recount on one and on every available thread
//! (dominated by signature checks: each signal and its two measurer attestations). Sizes
//! from the command line (`-- 1000 10000`), else 1 000 and 10 000.

use std::time::Instant;

use commons_aggregator::Intake;
use commons_aggregator::recount::{self, RecountFile, Snapshot};
use commons_signaling::spec::regtest_measurer_key;
use commons_signaling::{Choice, NetworkSpec, SecretKey};

/// A regtest node holding one proposal and `signers` signals, each signer measured by two of
/// the three measurers at an address of its own and carrying those attestations in its
/// signal, as nodes do.
fn node(signers: usize) -> (Intake, commons_signaling::Hash32, u64) {
    let spec = NetworkSpec::regtest();
    let network = spec.network_id();
    let now = 1_800_000_000;
    let epoch = spec.epoch_at(now);
    let mut intake = Intake::new(spec.clone(), epoch, None);
    let lock = spec.tier(1).expect("tier 1").min_lock_secs;
    let proposal = commons_test_util::proposal(&network, 1, "bench", now - 10, now + lock, 0..3);
    let id = proposal.id(&network);
    let agg = intake.aggregator_mut();
    agg.add_proposal(proposal).expect("valid proposal");
    let measurers = [regtest_measurer_key(0), regtest_measurer_key(1)];
    for i in 0..signers {
        let key = SecretKey::from_seed(&format!("bench recount signer {i}"));
        let ip = format!("10.{}.{}.{}", i >> 14, (i >> 6) & 0xff, 4 * (i & 0x3f) + 1);
        let attestations = measurers
            .iter()
            .map(|m| {
                commons_test_util::attestation(
                    &network,
                    m,
                    key.public_key(),
                    ip.as_str(),
                    epoch,
                    10,
                )
            })
            .collect();
        let choice = Choice::ALL[i % 3];
        let signal =
            commons_test_util::signal(&network, &key, id, choice, 1, now - 5, attestations);
        agg.apply_signal(signal, now).expect("a valid signal");
    }
    (intake, id, now)
}

fn millis(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000]
    } else {
        sizes
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let spec = NetworkSpec::regtest();
    println!(
        "| signals | file bytes | snapshot ms | write ms | read ms | recount ms (1 thread) | recount ms ({threads} threads) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for signers in sizes {
        let (intake, id, now) = node(signers);
        let exporter = SecretKey::from_seed("bench exporter").public_key();
        let start = Instant::now();
        let snapshot = Snapshot::take(intake.aggregator(), &id, now, exporter).expect("held");
        let snapshot_ms = millis(start);
        let start = Instant::now();
        let bytes = snapshot.into_file(Vec::new()).encode();
        let write_ms = millis(start);
        let start = Instant::now();
        let file = RecountFile::decode(&bytes).expect("reads back");
        let read_ms = millis(start);
        let mut recount_ms = Vec::new();
        for t in [1, threads] {
            let start = Instant::now();
            let report = recount::recount(&file, &spec, t).expect("recounts");
            recount_ms.push(millis(start));
            assert!(report.matches(), "{:?}", report.findings.first());
        }
        println!(
            "| {signers} | {} | {snapshot_ms:.1} | {write_ms:.1} | {read_ms:.1} | {:.0} | {:.0} |",
            bytes.len(),
            recount_ms[0],
            recount_ms[1]
        );
    }
}
