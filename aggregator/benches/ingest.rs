//! The signal ingest path against raw BIP340 verification, measured in the same run.
//!
//! `cargo bench -p commons-aggregator --bench ingest` prints a table: raw k256 verifications
//! per second, signals per second through decode, duplicate check, signature verification and
//! aggregation, their ratio (the goal is at least 0.9), the cost of a duplicate, which is
//! caught before the signature check (the goal is under 2 µs), and the cost of validating and
//! applying one equivocation evidence message (two signature checks).

use std::hint::black_box;
use std::time::{Duration, Instant};

use commons_aggregator::{Aggregator, Policy, Precheck};
use commons_signaling::{
    Choice, Equivocation, Hash32, NetworkSpec, SecretKey, Signal, UptimeAttestation,
};

const SIGNERS: usize = 2_000;
const ROUNDS: usize = 5;

struct Fixture {
    aggregator: Aggregator,
    signals: Vec<Vec<u8>>,
    raw: Vec<([u8; 32], [u8; 32], [u8; 64])>,
    now: u64,
}

fn attest(
    net: &Hash32,
    attester: &SecretKey,
    subject: &SecretKey,
    ip: String,
    epoch: u64,
) -> UptimeAttestation {
    commons_test_util::attestation(net, attester, subject.public_key(), ip, epoch, 10)
}

/// A network of qualified signers (each attested by two attesters in distinct netgroups, the
/// attesters placed by a third key), one locked proposal, and one signal per signer whose
/// attestations the aggregator already knows, as it would from presences.
fn fixture() -> Fixture {
    let spec = NetworkSpec::regtest_peer_attested();
    let net = spec.network_id();
    let policy = Policy {
        allow_unroutable: true,
        netgroup_ipv4_prefix: 24,
        ..Policy::from_spec(&spec)
    };
    let now = 1_800_000_000;
    let epoch = spec.epoch_at(now);
    let mut aggregator = Aggregator::new(spec.clone(), policy, epoch);

    let proposal = commons_test_util::proposal(&net, 1, "bench", now - 10, now + 3_600, 0..3);
    let proposal_id = proposal.id(&net);
    aggregator.add_proposal(proposal).expect("valid proposal");

    let placer = SecretKey::from_seed("bench placer");
    let attesters = [
        SecretKey::from_seed("bench attester 0"),
        SecretKey::from_seed("bench attester 1"),
    ];
    for (i, attester) in attesters.iter().enumerate() {
        aggregator.add_attestation(attest(
            &net,
            &placer,
            attester,
            format!("198.51.{i}.1"),
            epoch,
        ));
        aggregator.add_attestation(attest(
            &net,
            &attesters[1 - i],
            attester,
            format!("198.51.{i}.1"),
            epoch,
        ));
    }

    let mut signals = Vec::with_capacity(SIGNERS);
    let mut raw = Vec::with_capacity(SIGNERS);
    for n in 0..SIGNERS {
        let signer = SecretKey::from_seed(&format!("bench signer {n}"));
        let ip = format!("10.{}.{}.{}", n / 65_536, (n / 256) % 256, n % 256);
        let carried: Vec<UptimeAttestation> = attesters
            .iter()
            .map(|a| attest(&net, a, &signer, ip.clone(), epoch))
            .collect();
        for a in &carried {
            aggregator.add_attestation(a.clone());
        }
        let signal = commons_test_util::signal(
            &net,
            &signer,
            proposal_id,
            Choice::ALL[n % 3],
            1,
            now - 5,
            carried,
        );
        raw.push((
            signal.body.signer.0,
            signal.digest(&net).0,
            signal.signature.0,
        ));
        signals.push(signal.encode());
    }
    aggregator.set_epoch(epoch);
    Fixture {
        aggregator,
        signals,
        raw,
        now,
    }
}

fn raw_verifications(raw: &[([u8; 32], [u8; 32], [u8; 64])]) -> Duration {
    let start = Instant::now();
    for (key, digest, sig) in raw {
        let key = k256::schnorr::VerifyingKey::from_bytes(key).expect("valid key");
        let sig = k256::schnorr::Signature::try_from(&sig[..]).expect("64 bytes");
        assert!(key.verify_raw(black_box(digest), &sig).is_ok());
    }
    start.elapsed()
}

/// What the node does for a signal from gossip: drop a held one by its signature before
/// decoding; decode, computing the signing digest from the input; the cheap checks; verify the
/// signal and any attestation it carries that is not yet known; aggregate.
fn ingest(aggregator: &mut Aggregator, bytes: &[u8], now: u64) -> bool {
    if aggregator.holds_signal_encoding(bytes) {
        return false;
    }
    let net = *aggregator.network_id();
    let (signal, digest) = Signal::decode_with_digest(bytes, &net).expect("valid bytes");
    match aggregator.precheck_signal(&signal, now) {
        // A conflicting body is verified like a new signal (it may prove an equivocation).
        Ok(Precheck::New | Precheck::Equivocates) => {}
        Ok(Precheck::Duplicate) | Err(_) => return false,
    }
    if !signal.verify_digest(&digest) {
        return false;
    }
    let fresh: Vec<UptimeAttestation> = aggregator
        .unverified_attestations(&signal.body.attestations)
        .into_iter()
        .cloned()
        .collect();
    for attestation in fresh {
        if attestation.verify(&net) {
            aggregator.add_attestation(attestation);
        }
    }
    aggregator.apply_signal(signal, now).is_ok()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("ingest: bench");
        return;
    }
    eprintln!("preparing {SIGNERS} qualified signers per round ...");
    let mut raw_best = Duration::MAX;
    let mut pipeline_best = Duration::MAX;
    let mut duplicate_best = Duration::MAX;
    for _ in 0..ROUNDS {
        let Fixture {
            mut aggregator,
            signals,
            raw,
            now,
        } = fixture();
        raw_best = raw_best.min(raw_verifications(&raw));

        let start = Instant::now();
        for bytes in &signals {
            assert!(ingest(&mut aggregator, bytes, now));
        }
        pipeline_best = pipeline_best.min(start.elapsed());

        let start = Instant::now();
        for bytes in &signals {
            assert!(!ingest(&mut aggregator, bytes, now));
        }
        duplicate_best = duplicate_best.min(start.elapsed());

        let id = *aggregator.proposals()[0].0;
        let tally = aggregator.tally(&id).expect("tally");
        assert_eq!(tally.signers as usize, SIGNERS);
        assert_eq!(
            tally.uncounted_signers, 0,
            "every signer qualified and counted"
        );
    }
    // The same duplicates once more, this time through a full decode and the cheap checks:
    // what a duplicate costs when it is not caught by its signature.
    let Fixture {
        mut aggregator,
        signals,
        now,
        ..
    } = fixture();
    for bytes in &signals {
        assert!(ingest(&mut aggregator, bytes, now));
    }
    let start = Instant::now();
    for bytes in &signals {
        let signal = Signal::decode(bytes).expect("valid bytes");
        assert_eq!(
            aggregator.precheck_signal(&signal, now),
            Ok(Precheck::Duplicate)
        );
    }
    let decoded_duplicate = start.elapsed();

    // Equivocation evidence against every held signal: each pairs it with a conflicting
    // body (another choice, no attestations) of the same signer and sequence. Validating one
    // is what a node does for an evidence message: decode (which checks the pair's shape),
    // the cheap checks, both signatures, then excluding the signer and applying the signals.
    let net = *aggregator.network_id();
    let id = *aggregator.proposals()[0].0;
    let evidence: Vec<Vec<u8>> = (0..SIGNERS)
        .map(|n| {
            let signer = SecretKey::from_seed(&format!("bench signer {n}"));
            let held = aggregator
                .signal(&id, &signer.public_key())
                .expect("held")
                .clone();
            let mut body = held.body.clone();
            body.choice = Choice::ALL[(n + 1) % 3];
            body.attestations = Default::default();
            let other = commons_signaling::Signed::sign(body, &signer, &net);
            Equivocation::new(held, other).expect("a conflict").encode()
        })
        .collect();
    let start = Instant::now();
    for bytes in &evidence {
        let e = Equivocation::decode(bytes).expect("valid evidence");
        assert!(!aggregator.is_excluded(e.proposal(), e.signer()));
        assert!(e.verify(&net));
        aggregator.apply_evidence(e, now).expect("known proposal");
    }
    let evidence_cost = start.elapsed();
    assert_eq!(
        aggregator.tally(&id).expect("tally").excluded_signers as usize,
        SIGNERS
    );
    let start = Instant::now();
    for bytes in &evidence {
        let e = Equivocation::decode(bytes).expect("valid evidence");
        assert!(aggregator.is_excluded(e.proposal(), e.signer()));
    }
    let proven_cost = start.elapsed();

    let per_sec = |d: Duration| SIGNERS as f64 / d.as_secs_f64();
    let raw = per_sec(raw_best);
    let pipeline = per_sec(pipeline_best);
    println!("| measure ({SIGNERS} signals, best of {ROUNDS} rounds) | value |");
    println!("|---|---|");
    println!("| raw k256 BIP340 verifications per second | {raw:.0} |");
    println!("| signals per second through the ingest path | {pipeline:.0} |");
    println!(
        "| ratio ingest / raw verification (goal >= 0.9) | {:.3} |",
        pipeline / raw
    );
    let micros = |d: Duration| d.as_secs_f64() * 1e6 / SIGNERS as f64;
    println!(
        "| cost of a duplicate signal, caught by its signature (goal < 2 us) | {:.3} us |",
        micros(duplicate_best)
    );
    println!(
        "| cost of a duplicate signal, full decode + cheap checks | {:.3} us |",
        micros(decoded_duplicate)
    );
    println!(
        "| cost of one evidence message: decode, checks, two verifications, apply | {:.3} us |",
        micros(evidence_cost)
    );
    println!(
        "| cost of evidence against a signer already proven (decode + lookup) | {:.3} us |",
        micros(proven_cost)
    );
    println!(
        "| evidence message size ({} B held signal and a bare conflicting one) | {} B |",
        signals[0].len(),
        evidence[0].len()
    );
}
