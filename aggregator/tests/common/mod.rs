//! Real keys and real signatures for the aggregator's tests.
#![allow(dead_code)]

use commons_aggregator::{Aggregator, Policy};
use commons_signaling::{Choice, Hash32, NetworkSpec, Proposal, PublicKey, SecretKey, Signal};

/// A key everyone in the tests can derive from a name.
pub fn key(name: &str) -> SecretKey {
    SecretKey::from_seed(&format!("commons-aggregator test {name}"))
}

pub fn pk(name: &str) -> PublicKey {
    key(name).public_key()
}

/// The regtest network, whose maintainer keys are well known.
pub fn regtest() -> NetworkSpec {
    NetworkSpec::regtest_peer_attested()
}

/// A policy for tests: public-style /24 and /48 netgroups, quorum `q`, window 30, minimum 3,
/// and unroutable addresses (the documentation ranges used here) with netgroups of their own.
pub fn policy(q: u32) -> Policy {
    Policy {
        attestation_quorum: q,
        min_uptime_epochs: 3,
        uptime_window_epochs: 30,
        netgroup_ipv4_prefix: 24,
        netgroup_ipv6_prefix: 48,
        allow_unroutable: true,
        ip_dedup: true,
        sqrt_weighting: true,
    }
}

// Not every suite that includes this module builds each of them.
#[allow(unused_imports)]
pub use commons_test_util::{attestation, presence, signal as signal_with};

/// `signer`'s signal, carrying no attestations.
pub fn signal(
    network: &Hash32,
    signer: &SecretKey,
    proposal: Hash32,
    choice: Choice,
    sequence: u64,
    time: u64,
) -> Signal {
    signal_with(network, signer, proposal, choice, sequence, time, vec![])
}

/// A proposal signed by the regtest maintainers `signers`.
pub fn proposal(
    spec: &NetworkSpec,
    tier: u8,
    title: &str,
    lock_start: u64,
    lock_end: u64,
    signers: &[usize],
) -> Proposal {
    commons_test_util::proposal(
        &spec.network_id(),
        tier,
        title,
        lock_start,
        lock_end,
        signers.iter().copied(),
    )
}

/// A test world: an aggregator, and a "placer" key that attests attesters at their
/// addresses so that they have a netgroup (the rule ignores attesters nobody attests).
pub struct World {
    pub agg: Aggregator,
    pub network: Hash32,
    pub epoch: u64,
    placer: SecretKey,
}

impl World {
    pub fn new(q: u32, epoch: u64) -> Self {
        Self::with_policy(policy(q), epoch)
    }

    pub fn with_policy(policy: Policy, epoch: u64) -> Self {
        let spec = regtest();
        let network = spec.network_id();
        World {
            agg: Aggregator::new(spec, policy, epoch),
            network,
            epoch,
            placer: key("placer"),
        }
    }

    /// Gives `attester` a netgroup: attested at `ip` by the placer.
    pub fn place(&mut self, attester: &str, ip: &str) {
        let a = attestation(&self.network, &self.placer, pk(attester), ip, self.epoch, 1);
        self.agg.add_attestation(a);
    }

    /// `attester` attests `subject` at `ip` for `seen` epochs, at the current epoch.
    pub fn attest(&mut self, attester: &str, subject: &str, ip: &str, seen: u32) {
        let a = attestation(
            &self.network,
            &key(attester),
            pk(subject),
            ip,
            self.epoch,
            seen,
        );
        self.agg.add_attestation(a);
    }

    /// Qualifies `subject` at `ip` with `uptime`: attested by `q` witnesses placed in
    /// distinct, routable netgroups.
    pub fn qualify(&mut self, subject: &str, ip: &str, uptime: u32) {
        let q = self.agg.policy().attestation_quorum.max(1);
        for i in 0..q {
            let attester = format!("witness {i}");
            self.place(&attester, &format!("11.{}.0.1", 100 + i));
            self.attest(&attester, subject, ip, uptime);
        }
    }

    pub fn uptime(&self, name: &str) -> u32 {
        self.agg.uptime(&pk(name)).map_or(0, |s| s.uptime_epochs)
    }

    pub fn qualified(&self, name: &str) -> bool {
        self.agg.uptime(&pk(name)).is_some_and(|s| s.qualified)
    }

    pub fn counted(&self, name: &str) -> bool {
        self.agg.uptime(&pk(name)).is_some_and(|s| s.counted)
    }

    /// Adds a tier-1 proposal locked over [lock_start, lock_end) and returns its id.
    pub fn add_proposal(&mut self, tier: u8, lock_start: u64, lock_end: u64) -> Hash32 {
        let spec = regtest();
        let p = proposal(
            &spec,
            tier,
            "test proposal",
            lock_start,
            lock_end,
            &[0, 1, 2, 3, 4],
        );
        let id = p.id(&self.network);
        self.agg.add_proposal(p).expect("a valid proposal");
        id
    }

    pub fn signal(&mut self, signer: &str, id: Hash32, choice: Choice, sequence: u64, time: u64) {
        let s = signal(&self.network, &key(signer), id, choice, sequence, time);
        self.agg
            .apply_signal(s, time)
            .expect("an acceptable signal");
    }
}
