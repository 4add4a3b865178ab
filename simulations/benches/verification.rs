//! What one message costs a daemon of `commons-sim network` in signature checks, and what
//! that means for how many daemons two cores can run.
//!
//! `cargo bench --workspace --bench verification` prints a table: a BIP340 verification (the
//! node's check of a signal, presence or attestation, `PublicKey::verify`) and a hit of the
//! simulator's shared verification cache; then the CPU a network of regtest daemons needs
//! per second of wall clock for those checks alone, with and without the cache: every node
//! publishes a presence carrying about `degree` new attestations each epoch, and every node
//! verifies every presence and those attestations (nodes² x (degree + 1) BIP340 checks per
//! epoch). Gossip envelopes are anonymous, so gossipsub checks no signature of its own.

use std::hint::black_box;
use std::time::{Duration, Instant};

use commons_aggregator::SignatureCheck;
use commons_signaling::{Hash32, SecretKey};
use commons_sim::network::shared_verify::SharedVerification;

const KEYS: usize = 500;
const ROUNDS: usize = 5;
const DEGREE: f64 = 6.0;

fn best(mut f: impl FnMut() -> Duration) -> Duration {
    (0..ROUNDS).map(|_| f()).min().expect("rounds")
}

fn main() {
    let keys: Vec<SecretKey> = (0..KEYS)
        .map(|i| SecretKey::from_seed(&format!("verification bench {i}")))
        .collect();
    let digests: Vec<Hash32> = (0..KEYS).map(|i| Hash32([(i % 251) as u8; 32])).collect();
    let bip340: Vec<_> = keys
        .iter()
        .zip(&digests)
        .map(|(k, d)| (k.public_key(), *d, k.sign_with_aux(d, &[0; 32])))
        .collect();
    let per_op = |d: Duration| d.as_secs_f64() / KEYS as f64;
    let schnorr = per_op(best(|| {
        let t = Instant::now();
        for (key, digest, sig) in &bip340 {
            assert!(key.verify(black_box(digest), sig));
        }
        t.elapsed()
    }));
    let cache = SharedVerification::default();
    for (key, digest, sig) in &bip340 {
        assert!(cache.check(key, digest, sig));
    }
    let hit = per_op(best(|| {
        let t = Instant::now();
        for (key, digest, sig) in &bip340 {
            assert!(cache.check(black_box(key), digest, sig));
        }
        t.elapsed()
    }));

    println!("| check (one core, best of {ROUNDS} x {KEYS}) | µs | per second |");
    println!("|---|---|---|");
    for (name, s) in [
        ("BIP340 verification (k256, the node's check)", schnorr),
        ("shared verification cache hit", hit),
    ] {
        println!("| {name} | {:.2} | {:.0} |", s * 1e6, 1.0 / s);
    }
    println!();
    println!(
        "| nodes | epoch s | BIP340 checks/s | cores without the cache | cores with the cache |"
    );
    println!("|---|---|---|---|---|");
    for (nodes, epoch) in [
        (50.0, 2.0),
        (100.0, 2.0),
        (100.0, 10.0),
        (300.0, 10.0),
        (300.0, 30.0),
        (1000.0, 60.0),
        (1000.0, 120.0),
    ] {
        let n2: f64 = nodes * nodes;
        let schnorr_per_sec = n2 * (DEGREE + 1.0) / epoch;
        // With the cache each distinct signature is verified once and every other check is
        // a hit.
        let distinct = nodes * (DEGREE + 1.0) / epoch;
        let without = schnorr_per_sec * schnorr;
        let with = distinct * schnorr + (schnorr_per_sec - distinct) * hit;
        println!("| {nodes:.0} | {epoch:.0} | {schnorr_per_sec:.0} | {without:.2} | {with:.2} |");
    }
}
