//! Deterministic random numbers for simulations.
//!
//! Every draw comes from ChaCha8 seeded with the run's seed and a stream number, and every
//! sampling method is written out here rather than taken from `rand`: `rand` may change how it
//! maps bits to ranges between versions, which would silently change every published result.
//! With the algorithms fixed here, the same seed gives the same CSV for as long as ChaCha8 is
//! ChaCha8.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// Independent random streams of one run. Each part of the world draws from its own stream,
/// so that changing one part (say, the attacker's size in a sweep) leaves every other draw,
/// such as where the honest nodes live, exactly as it was: sweep points then differ only in
/// what was swept (common random numbers), and curves are smooth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Honest nodes: addresses, uptime, churn, choices.
    Honest,
    /// Which honest peers attest which node, and what they saw.
    Attesters,
    /// Honest node keys.
    HonestKeys,
    /// The i-th attacker (its keys, addresses and attestations).
    Attacker(u32),
    /// The network simulation's topology.
    Topology,
    /// The network simulation's choices of who signals what, who churns, what spam says.
    NetworkEvents,
}

impl Stream {
    fn id(self) -> u64 {
        match self {
            Stream::Honest => 1,
            Stream::Attesters => 2,
            Stream::HonestKeys => 3,
            Stream::Attacker(i) => 1_000 + u64::from(i),
            // Far above any attacker index a scenario can have.
            Stream::Topology => 1 << 40,
            Stream::NetworkEvents => (1 << 40) + 1,
        }
    }
}

/// A seeded ChaCha8 generator with the few sampling methods the simulator needs.
#[derive(Debug, Clone)]
pub struct Rng(ChaCha8Rng);

impl Rng {
    /// The generator of `stream` for the run seeded with `seed`.
    pub fn new(seed: u64, stream: Stream) -> Self {
        let mut inner = ChaCha8Rng::seed_from_u64(seed);
        inner.set_stream(stream.id());
        Rng(inner)
    }

    /// 64 random bits.
    pub fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (`n > 0`), without modulo bias: Lemire's multiply-and-reject.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0) has no value to return");
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in `[0, 1)`, with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// 32 random bytes: a simulated public key.
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        self.0.fill_bytes(&mut out);
        out
    }

    /// An exponentially distributed value with the given mean.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        // 1 - unit() is in (0, 1], so the logarithm is finite.
        -mean * (1.0 - self.unit()).ln()
    }
}

/// A discrete distribution over `0..n`, sampled by binary search in its cumulative weights.
#[derive(Debug, Clone)]
pub struct Discrete {
    cumulative: Vec<f64>,
}

impl Discrete {
    /// Zipf over `n` ranks: rank `r` (from 1) has weight `1 / r^exponent`. Exponent 0 is
    /// uniform.
    pub fn zipf(n: usize, exponent: f64) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|r| {
                total += (r as f64).powf(-exponent);
                total
            })
            .collect();
        Discrete { cumulative }
    }

    /// One draw.
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let total = *self
            .cumulative
            .last()
            .expect("a distribution over at least one value");
        let x = rng.unit() * total;
        self.cumulative
            .partition_point(|&c| c <= x)
            .min(self.cumulative.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_and_stream_give_the_same_numbers() {
        let a: Vec<u64> = {
            let mut r = Rng::new(7, Stream::Honest);
            (0..5).map(|_| r.u64()).collect()
        };
        let mut r = Rng::new(7, Stream::Honest);
        assert_eq!(a, (0..5).map(|_| r.u64()).collect::<Vec<_>>());
        let mut other = Rng::new(7, Stream::Attesters);
        assert_ne!(a[0], other.u64());
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = Rng::new(1, Stream::Honest);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            let v = r.below(7);
            seen[v as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(r.range(5, 5), 5);
    }

    #[test]
    fn zipf_favours_low_ranks() {
        let d = Discrete::zipf(100, 1.0);
        let mut r = Rng::new(3, Stream::Honest);
        let mut counts = [0u32; 100];
        for _ in 0..10_000 {
            counts[d.sample(&mut r)] += 1;
        }
        assert!(counts[0] > counts[10] && counts[10] > counts[90]);
    }
}
