//! Steps 2 to 4 of the Sybil rule: uptime qualification, IP dedup, netgroup weights.

mod common;

use common::{World, attestation, key, pk, policy};
use commons_aggregator::{AttestationOutcome, Policy, WEIGHT_SCALE};

#[test]
fn uptime_is_the_qth_largest_value_across_distinct_netgroups() {
    let mut w = World::new(3, 100);
    for (a, ip, seen) in [
        ("a1", "10.1.0.1", 30),
        ("a2", "10.2.0.1", 20),
        ("a3", "10.3.0.1", 10),
    ] {
        w.place(a, ip);
        w.attest(a, "s", "192.0.2.1", seen);
    }
    assert_eq!(w.uptime("s"), 10);
    assert!(w.qualified("s"));
    let status = w.agg.uptime(&pk("s")).unwrap();
    assert_eq!(status.ip, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(status.attester_netgroups, 3);
    assert_eq!(status.netgroup.unwrap().to_string(), "192.0.2.0/24");
    assert!(status.counted);

    // A fourth netgroup raises the third-largest value.
    w.place("a4", "10.4.0.1");
    w.attest("a4", "s", "192.0.2.1", 25);
    assert_eq!(w.uptime("s"), 20);
}

#[test]
fn fewer_than_q_netgroups_give_no_uptime() {
    let mut w = World::new(3, 100);
    // Three attesters, but two share a /24: only two netgroups.
    for (a, ip) in [("a1", "10.1.0.1"), ("a2", "10.2.0.1"), ("a3", "10.2.0.99")] {
        w.place(a, ip);
        w.attest(a, "s", "192.0.2.1", 30);
    }
    let status = w.agg.uptime(&pk("s")).unwrap();
    assert_eq!(
        (
            status.uptime_epochs,
            status.attester_netgroups,
            status.qualified
        ),
        (0, 2, false)
    );
    assert_eq!(w.agg.population(), (0, 0));
}

#[test]
fn within_a_netgroup_the_best_value_counts_once() {
    let mut w = World::new(2, 100);
    for (a, ip, seen) in [
        ("a1", "10.1.0.1", 5),
        ("a2", "10.1.0.2", 25),
        ("b", "10.2.0.1", 20),
    ] {
        w.place(a, ip);
        w.attest(a, "s", "192.0.2.1", seen);
    }
    // Netgroups 10.1.0.0/24 (best 25) and 10.2.0.0/24 (20): the second largest is 20.
    assert_eq!(w.uptime("s"), 20);
}

#[test]
fn an_attester_nobody_attests_cannot_vouch() {
    let mut w = World::new(2, 100);
    w.place("a1", "10.1.0.1");
    w.attest("a1", "s", "192.0.2.1", 30);
    w.attest("ghost", "s", "192.0.2.1", 30);
    assert_eq!(w.uptime("s"), 0);
    // Once someone attests the ghost, it has a netgroup and counts.
    w.place("ghost", "10.9.0.1");
    assert_eq!(w.uptime("s"), 30);
    assert!(w.qualified("s"));
}

#[test]
fn an_attester_is_placed_where_others_see_it_longest() {
    let mut w = World::new(2, 100);
    w.place("a1", "10.1.0.1");
    w.attest("a1", "s", "192.0.2.1", 30);
    // a2 is attested at two addresses; the one with more seen epochs places it.
    w.attest("x", "a2", "10.1.0.7", 2);
    w.attest("y", "a2", "10.5.0.7", 9);
    w.attest("a2", "s", "192.0.2.1", 30);
    assert_eq!(w.uptime("s"), 30, "a2 is in 10.5.0.0/24, not a1's netgroup");
    // A longer-seen attestation moves a2 into a1's netgroup: the quorum is lost.
    w.attest("z", "a2", "10.1.0.8", 20);
    assert_eq!(w.uptime("s"), 0);
}

#[test]
fn self_attestations_never_count() {
    let mut w = World::new(1, 100);
    let network = w.network;
    let own = attestation(&network, &key("s"), pk("s"), "192.0.2.1", 100, 30);
    assert_eq!(
        w.agg.add_attestation(own),
        AttestationOutcome::SelfAttestation
    );
    assert!(w.agg.uptime(&pk("s")).is_none());
}

#[test]
fn attesters_must_agree_on_the_address() {
    let mut w = World::new(2, 100);
    for (a, ip) in [("a1", "10.1.0.1"), ("a2", "10.2.0.1"), ("a3", "10.3.0.1")] {
        w.place(a, ip);
    }
    w.attest("a1", "s", "192.0.2.1", 30);
    w.attest("a2", "s", "198.51.100.1", 30);
    assert_eq!(w.uptime("s"), 0, "two attesters, two addresses, no quorum");
    w.attest("a3", "s", "198.51.100.1", 12);
    let status = w.agg.uptime(&pk("s")).unwrap();
    assert_eq!(
        (status.ip, status.uptime_epochs),
        (Some("198.51.100.1".parse().unwrap()), 12)
    );
}

#[test]
fn the_best_address_wins_and_ties_go_to_the_smaller_address() {
    let mut w = World::new(1, 100);
    w.place("a1", "10.1.0.1");
    w.place("a2", "10.2.0.1");
    w.attest("a1", "s", "198.51.100.9", 10);
    w.attest("a2", "s", "192.0.2.9", 10);
    assert_eq!(
        w.agg.uptime(&pk("s")).unwrap().ip,
        Some("192.0.2.9".parse().unwrap())
    );
    w.attest("a1", "t", "198.51.100.9", 11);
    w.attest("a2", "t", "192.0.2.9", 10);
    assert_eq!(
        w.agg.uptime(&pk("t")).unwrap().ip,
        Some("198.51.100.9".parse().unwrap())
    );
}

#[test]
fn ipv4_mapped_addresses_agree_with_ipv4() {
    let mut w = World::new(2, 100);
    w.place("a1", "10.1.0.1");
    w.place("a2", "10.2.0.1");
    w.attest("a1", "s", "192.0.2.1", 30);
    w.attest("a2", "s", "::ffff:192.0.2.1", 30);
    assert_eq!(w.uptime("s"), 30);
    assert_eq!(
        w.agg.uptime(&pk("s")).unwrap().ip,
        Some("192.0.2.1".parse().unwrap())
    );
}

#[test]
fn attestations_live_for_the_window_only() {
    let mut w = World::new(1, 100);
    w.place("a1", "10.1.0.1");
    w.attest("a1", "s", "192.0.2.1", 5);
    assert!(w.qualified("s"));
    // Window 30: issued at 100, live through epoch 129.
    w.agg.set_epoch(129);
    assert!(w.qualified("s"));
    w.agg.set_epoch(130);
    assert!(!w.qualified("s"));
    assert!(
        w.agg.uptime(&pk("s")).is_none(),
        "expired attestations are forgotten"
    );
    assert_eq!(w.agg.attestations().count(), 0);
    let network = w.network;
    let stale = attestation(&network, &key("a1"), pk("s"), "192.0.2.1", 100, 5);
    assert_eq!(w.agg.add_attestation(stale), AttestationOutcome::Expired);
}

#[test]
fn attestations_from_a_later_epoch_count_from_that_epoch() {
    let mut w = World::new(1, 100);
    let network = w.network;
    w.place("a1", "10.1.0.1");
    let later = attestation(&network, &key("a1"), pk("s"), "192.0.2.1", 101, 9);
    assert_eq!(w.agg.add_attestation(later), AttestationOutcome::New);
    assert!(!w.qualified("s"));
    w.agg.set_epoch(101);
    assert!(w.qualified("s"));
}

#[test]
fn each_attester_counts_with_its_latest_attestation() {
    let mut w = World::new(1, 100);
    let network = w.network;
    let a1 = key("a1");
    w.place("a1", "10.1.0.1");
    let old = attestation(&network, &a1, pk("s"), "192.0.2.1", 99, 20);
    let new = attestation(&network, &a1, pk("s"), "192.0.2.1", 100, 4);
    assert_eq!(w.agg.add_attestation(new.clone()), AttestationOutcome::New);
    assert_eq!(
        w.agg.add_attestation(old.clone()),
        AttestationOutcome::Superseded
    );
    assert_eq!(
        w.agg.add_attestation(new.clone()),
        AttestationOutcome::Duplicate
    );
    assert_eq!(
        w.uptime("s"),
        4,
        "the later attestation wins, though it says less"
    );
    assert!(w.agg.unverified_attestations(&[old, new]).is_empty());
}

#[test]
fn equal_epochs_are_settled_by_canonical_bytes_in_any_order() {
    let network = common::regtest().network_id();
    let a1 = key("a1");
    let x = attestation(&network, &a1, pk("s"), "192.0.2.1", 100, 7);
    let y = attestation(&network, &a1, pk("s"), "192.0.2.1", 100, 8);
    let winner = if x.encode() > y.encode() { 7 } else { 8 };
    for order in [[&x, &y], [&y, &x]] {
        let mut w = World::new(1, 100);
        w.place("a1", "10.1.0.1");
        for a in order {
            w.agg.add_attestation(a.clone());
        }
        assert_eq!(w.uptime("s"), winner);
    }
}

#[test]
fn claims_beyond_the_window_are_cut_to_it() {
    let mut w = World::new(1, 100);
    w.place("a1", "10.1.0.1");
    w.attest("a1", "s", "192.0.2.1", 1_000_000);
    assert_eq!(w.uptime("s"), 30);
}

#[test]
fn a_zero_minimum_still_needs_a_quorum() {
    let mut p = policy(2);
    p.min_uptime_epochs = 0;
    let mut w = World::with_policy(p, 100);
    w.place("a1", "10.1.0.1");
    w.attest("a1", "s", "192.0.2.1", 30);
    assert!(!w.qualified("s"));
}

#[test]
fn unverified_attestations_lists_only_what_would_change_something() {
    let mut w = World::new(1, 100);
    let network = w.network;
    let known = attestation(&network, &key("a1"), pk("s"), "192.0.2.1", 100, 5);
    w.agg.add_attestation(known.clone());
    let fresh = attestation(&network, &key("a2"), pk("s"), "192.0.2.1", 100, 5);
    let expired = attestation(&network, &key("a3"), pk("s"), "192.0.2.1", 10, 5);
    let own = attestation(&network, &key("s"), pk("s"), "192.0.2.1", 100, 5);
    let all = [known, fresh.clone(), expired, own];
    assert_eq!(w.agg.unverified_attestations(&all), vec![&fresh]);
}

#[test]
fn nodes_on_one_address_count_once_longest_uptime_first() {
    let mut w = World::new(2, 100);
    w.qualify("short", "192.0.2.1", 5);
    w.qualify("long", "192.0.2.1", 9);
    w.qualify("other", "192.0.2.2", 5);
    assert!(w.qualified("short") && w.qualified("long"));
    assert!(!w.counted("short"));
    assert!(w.counted("long") && w.counted("other"));
    assert_eq!(w.agg.population().0, 2);
    // The counted node leaves the address: the next one counts.
    w.qualify("long", "192.0.2.3", 30);
    assert!(w.counted("short") && w.counted("long"));
    assert_eq!(w.agg.population().0, 3);
}

#[test]
fn equal_uptimes_on_one_address_go_to_the_smaller_key() {
    let mut w = World::new(2, 100);
    w.qualify("p", "192.0.2.1", 5);
    w.qualify("q", "192.0.2.1", 5);
    let (small, large) = if pk("p") < pk("q") {
        ("p", "q")
    } else {
        ("q", "p")
    };
    assert!(w.counted(small));
    assert!(!w.counted(large));
}

#[test]
fn without_ip_dedup_every_qualified_node_counts() {
    let mut p = policy(2);
    p.ip_dedup = false;
    let mut w = World::with_policy(p, 100);
    for name in ["n1", "n2", "n3"] {
        w.qualify(name, "192.0.2.1", 5);
    }
    assert_eq!(w.agg.population().0, 3);
}

#[test]
fn a_netgroup_of_n_counted_nodes_weighs_sqrt_n() {
    let mut w = World::new(2, 100);
    for i in 0..4 {
        w.qualify(&format!("block {i}"), &format!("192.0.2.{}", 10 + i), 5);
    }
    w.qualify("alone", "198.51.100.1", 5);
    assert_eq!(w.agg.population(), (5, 3 * WEIGHT_SCALE));

    let mut p = policy(2);
    p.sqrt_weighting = false;
    let mut w = World::with_policy(p, 100);
    for i in 0..4 {
        w.qualify(&format!("block {i}"), &format!("192.0.2.{}", 10 + i), 5);
    }
    w.qualify("alone", "198.51.100.1", 5);
    assert_eq!(w.agg.population(), (5, 5 * WEIGHT_SCALE));
}

#[test]
fn on_mainnet_unroutable_addresses_are_one_netgroup() {
    let mut p = Policy::from_spec(&commons_signaling::NetworkSpec::mainnet());
    p.attestation_quorum = 2;
    p.min_uptime_epochs = 3;
    let mut w = World::with_policy(p, 100);
    // Four nodes on four private addresses in four different /24s weigh sqrt(4) together.
    for i in 0..4 {
        w.qualify(&format!("lan {i}"), &format!("192.168.{i}.1"), 5);
    }
    assert_eq!(w.agg.population(), (4, 2 * WEIGHT_SCALE));
    let status = w.agg.uptime(&pk("lan 0")).unwrap();
    assert_eq!(status.netgroup.unwrap().to_string(), "unroutable");
}

#[test]
fn attesters_behind_unroutable_addresses_form_one_netgroup_on_mainnet() {
    let mut p = Policy::from_spec(&commons_signaling::NetworkSpec::mainnet());
    p.attestation_quorum = 2;
    p.min_uptime_epochs = 3;
    let mut w = World::with_policy(p, 100);
    w.place("a1", "10.1.0.1");
    w.place("a2", "192.168.7.1");
    w.attest("a1", "s", "8.8.4.4", 30);
    w.attest("a2", "s", "8.8.4.4", 30);
    assert_eq!(w.uptime("s"), 0);
    w.place("a3", "8.8.8.8");
    w.attest("a3", "s", "8.8.4.4", 30);
    assert_eq!(w.uptime("s"), 30);
}

/// Past the sizes the aggregator keeps in short lists (a subject's attesters, an address's
/// qualified keys), the rule is the same: the aggregator switches to indexed structures
/// there, and a subject with forty attesters or an address with forty keys must neither
/// lose nor double anything, also when attestations are replaced and expire.
#[test]
fn many_attesters_and_many_keys_at_one_address_follow_the_rule() {
    let long_window = Policy {
        uptime_window_epochs: 100,
        ..policy(3)
    };
    let mut w = World::with_policy(long_window.clone(), 100);
    // Forty attesters of one subject in forty netgroups, values 1 to 40: the third largest
    // is 38. The three largest replaced by later attestations of 0 leave 35.
    for i in 0..40u32 {
        let attester = format!("a{i}");
        w.place(&attester, &format!("10.{}.0.1", i + 1));
        w.attest(&attester, "s", "192.0.2.1", i + 1);
    }
    assert_eq!(w.uptime("s"), 38);
    assert_eq!(
        w.agg.uptime(&pk("s")).unwrap().attester_netgroups,
        40,
        "every attester counted once"
    );
    w.epoch += 1;
    w.agg.set_epoch(w.epoch);
    for i in 37..40u32 {
        w.attest(&format!("a{i}"), "s", "192.0.2.1", 0);
    }
    assert_eq!(
        w.uptime("s"),
        35,
        "values 1..=37 left, the replaced ones at 0"
    );
    assert_eq!(w.agg.uptime(&pk("s")).unwrap().attester_netgroups, 40);

    // Forty keys qualified at one address with distinct uptimes: the longest counts; once
    // it stops qualifying the next one takes its place.
    let mut w = World::with_policy(long_window, 100);
    for i in 0..40u32 {
        w.qualify(&format!("k{i}"), "192.0.2.7", 50 + i);
    }
    let counted: Vec<u32> = (0..40).filter(|i| w.counted(&format!("k{i}"))).collect();
    assert_eq!(counted, vec![39]);
    assert_eq!(w.agg.population().0, 1);
    // k39's witnesses now say it was seen for too short a time: it leaves the address.
    w.epoch += 1;
    w.agg.set_epoch(w.epoch);
    for j in 0..3 {
        w.attest(&format!("witness {j}"), "k39", "192.0.2.7", 1);
    }
    let counted: Vec<u32> = (0..40).filter(|i| w.counted(&format!("k{i}"))).collect();
    assert_eq!(counted, vec![38]);
    assert!(!w.qualified("k39"));
    assert_eq!(w.agg.population().0, 1);
    // An epoch boundary recomputes everything and agrees.
    w.agg.set_epoch(w.epoch + 1);
    let counted: Vec<u32> = (0..40).filter(|i| w.counted(&format!("k{i}"))).collect();
    assert_eq!(counted, vec![38]);
}
