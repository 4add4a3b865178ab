//! `--shared-verification`: one cache of verified signatures for every daemon of the run.
//!
//! In one process, every node verifies every other node's presences and attestations at the
//! same instants, so a large network measures the machine's verification throughput rather
//! than propagation. A signature valid for one node is valid for all, so the daemons can
//! share the answer: each distinct valid signature is verified once for the whole process.
//! The daemons still run their own decision code around it (the intake's checks, the
//! duplicate check before verification, the blocking pool, apply and store); the cache sits
//! behind `commons_aggregator::SignatureCheck`, the node's injection point, which `commonsd`
//! never sets. Invalid signatures are not cached: each node pays for every forged signature
//! it receives, as a real node does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use commons_aggregator::SignatureCheck;
use commons_signaling::{Hash32, PublicKey, Signature};

/// Shards, so that concurrent checks rarely wait for one another.
const SHARDS: usize = 16;
/// Entries a shard's current generation holds before it becomes the previous one (and the
/// previous one is dropped): memory stays bounded (about 2 x 16 x 16,384 entries of 128
/// bytes plus the map's overhead, under 100 MiB) while a signature stays cached for many
/// epochs even at a thousand nodes.
const GENERATION: usize = 16_384;

#[derive(Default)]
struct Shard {
    current: HashMap<(PublicKey, Hash32), Signature>,
    previous: HashMap<(PublicKey, Hash32), Signature>,
}

impl Shard {
    fn holds(&self, key: &(PublicKey, Hash32), signature: &Signature) -> bool {
        self.current.get(key) == Some(signature) || self.previous.get(key) == Some(signature)
    }

    fn insert(&mut self, key: (PublicKey, Hash32), signature: Signature) {
        if self.current.len() >= GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, signature);
    }
}

/// Verified signatures shared by every daemon of a run, with counts of the work it saved.
pub struct SharedVerification {
    shards: Vec<Mutex<Shard>>,
    verified: AtomicU64,
    served: AtomicU64,
}

/// What the cache did over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SharedVerificationCounts {
    /// Signatures really verified (the cache did not hold them, or they were invalid).
    pub verified: u64,
    /// Checks answered from the cache, without a verification.
    pub served: u64,
}

impl Default for SharedVerification {
    fn default() -> Self {
        SharedVerification {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            verified: AtomicU64::new(0),
            served: AtomicU64::new(0),
        }
    }
}

impl SharedVerification {
    /// The counts so far.
    pub fn counts(&self) -> SharedVerificationCounts {
        SharedVerificationCounts {
            verified: self.verified.load(Ordering::Relaxed),
            served: self.served.load(Ordering::Relaxed),
        }
    }

    fn shard(&self, digest: &Hash32) -> &Mutex<Shard> {
        &self.shards[usize::from(digest.0[0]) % SHARDS]
    }
}

impl SignatureCheck for SharedVerification {
    fn check(&self, signer: &PublicKey, digest: &Hash32, signature: &Signature) -> bool {
        let key = (*signer, *digest);
        let shard = self.shard(digest);
        if shard.lock().expect("cache shard").holds(&key, signature) {
            self.served.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        // Verified outside the lock: two nodes may verify the same signature at once,
        // which costs a verification, not a wrong answer.
        self.verified.fetch_add(1, Ordering::Relaxed);
        let valid = signer.verify(digest, signature);
        if valid {
            shard.lock().expect("cache shard").insert(key, *signature);
        }
        valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commons_signaling::SecretKey;

    #[test]
    fn answers_as_the_plain_check_and_verifies_a_valid_signature_once() {
        let key = SecretKey::from_seed("shared verification test");
        let digest = Hash32([7; 32]);
        let good = key.sign_with_aux(&digest, &[0; 32]);
        let mut forged = good;
        forged.0[5] ^= 1;
        let cache = SharedVerification::default();
        let signer = key.public_key();
        for _ in 0..3 {
            assert!(cache.check(&signer, &digest, &good));
            assert!(!cache.check(&signer, &digest, &forged));
            // The same signature over another digest, or by another key, is not valid.
            assert!(!cache.check(&signer, &Hash32([8; 32]), &good));
            assert!(!cache.check(&SecretKey::from_seed("other").public_key(), &digest, &good));
        }
        // The valid one verified once and then served; every invalid check verified.
        assert_eq!(
            cache.counts(),
            SharedVerificationCounts {
                verified: 1 + 3 * 3,
                served: 2
            }
        );
    }

    #[test]
    fn stays_bounded_and_keeps_the_previous_generation() {
        let cache = SharedVerification::default();
        let key = SecretKey::from_seed("generations");
        let signer = key.public_key();
        let digest = |i: usize| {
            let mut d = [0u8; 32];
            d[0] = 0; // one shard
            d[1..9].copy_from_slice(&(i as u64).to_le_bytes());
            Hash32(d)
        };
        let mut shard = cache.shard(&digest(0)).lock().unwrap();
        let sig = key.sign_with_aux(&digest(0), &[0; 32]);
        for i in 0..3 * GENERATION {
            shard.insert((signer, digest(i)), sig);
        }
        assert!(shard.current.len() + shard.previous.len() <= 2 * GENERATION);
        assert!(shard.holds(&(signer, digest(3 * GENERATION - 1)), &sig));
        assert!(!shard.holds(&(signer, digest(0)), &sig));
    }
}
