//! An epoch boundary shared out over threads computes exactly what one thread computes.

mod common;

use std::net::{IpAddr, Ipv4Addr};

use commons_aggregator::Aggregator;
use commons_signaling::{
    AttestationBody, PROTOCOL_VERSION, PublicKey, Signature, Signed, UptimeAttestation, WireIp,
};

/// More nodes than two threads' shares (a thread takes at least 16,384 slots), so the
/// boundary really runs on two.
const NODES: u32 = 40_000;

fn node_key(i: u32) -> PublicKey {
    let mut bytes = [7u8; 32];
    bytes[..4].copy_from_slice(&i.to_be_bytes());
    PublicKey(bytes)
}

/// 256 nodes a /24, and every eleventh shares its neighbour's address, so that IP dedup
/// has winners to pick.
fn node_ip(i: u32) -> IpAddr {
    let i = if i % 11 == 0 { i.saturating_sub(1) } else { i };
    IpAddr::V4(Ipv4Addr::new(11, (i >> 16) as u8, (i >> 8) as u8, i as u8))
}

/// Signatures are the caller's to check (`add_attestation`): a zero one does here.
fn attestation(attester: u32, subject: u32, epoch: u64, seen: u32) -> UptimeAttestation {
    Signed {
        body: AttestationBody {
            version: PROTOCOL_VERSION,
            attester: node_key(attester),
            subject: node_key(subject),
            subject_ip: WireIp(node_ip(subject)),
            epoch,
            seen_epochs: seen,
        },
        signature: Signature::default(),
    }
}

/// Every node attested by up to four others a few netgroups away, with uptimes that put
/// some below the minimum and some short of a quorum, then moved to the epoch that makes
/// it all live.
fn after_boundary(threads: usize) -> Aggregator {
    let mut agg = Aggregator::new(common::regtest(), common::policy(3), 0);
    agg.set_threads(threads);
    for subject in 0..NODES {
        let attesters = if subject % 13 == 0 { 2 } else { 4 };
        for d in 1..=attesters {
            let attester = (subject + d * 977) % NODES;
            agg.add_attestation(attestation(attester, subject, 5, (subject * d) % 40));
        }
    }
    agg.set_epoch(10);
    agg
}

#[test]
fn two_threads_compute_the_standings_one_thread_computes() {
    let one = after_boundary(1);
    let two = after_boundary(2);
    let statuses: Vec<_> = (0..NODES).map(|i| one.uptime(&node_key(i))).collect();
    let qualified = statuses
        .iter()
        .filter(|s| s.as_ref().is_some_and(|s| s.qualified))
        .count();
    let (counted, units) = one.population();
    assert!(
        qualified > 0 && qualified < NODES as usize,
        "some nodes qualify and some do not ({qualified})"
    );
    assert!(
        counted < qualified as u64,
        "IP dedup leaves some out ({counted} of {qualified})"
    );
    assert_eq!(two.population(), (counted, units));
    assert_eq!(two.counted_nodes(), one.counted_nodes());
    for i in 0..NODES {
        let key = node_key(i);
        assert_eq!(two.uptime(&key), statuses[i as usize], "node {i}");
    }
}
