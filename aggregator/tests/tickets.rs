//! Anchored ticket admission: tickets start at the spec's anchors, flow outward over
//! attestation edges and are used up; a node holding tickets from K anchors is admitted, and
//! only admitted attesters vouch. Real keys and signatures throughout.

mod common;

use common::{attestation, key, policy, presence, proposal, signal_with};
use commons_aggregator::{Aggregator, Qualification, WEIGHT_SCALE};
use commons_signaling::spec::TicketSpec;
use commons_signaling::{
    Choice, Hash32, NetworkSpec, PublicKey, QualificationRule, SecretKey, UptimeAttestation,
};
use commons_test_util::shuffle;
use proptest::prelude::*;

const EPOCH: u64 = 500;
const LOCK_START: u64 = 1_000;
const ANCHORS: usize = 3;

fn anchor(i: usize) -> SecretKey {
    SecretKey::from_seed(&format!("commons-aggregator test anchor {i}"))
}

fn spec(anchors: usize, tickets: u32, required: u32) -> NetworkSpec {
    let spec = NetworkSpec {
        qualification: QualificationRule::Tickets,
        tickets: TicketSpec {
            anchors: (0..anchors).map(|i| anchor(i).public_key()).collect(),
            tickets_per_anchor: tickets,
            anchors_required: required,
        },
        ..NetworkSpec::regtest()
    };
    spec.validate("test").unwrap();
    spec
}

/// An aggregator under the tickets rule (quorum 2, netgroups /24, minimum uptime 3) with one
/// tier-2 proposal.
fn aggregator(spec: &NetworkSpec, epoch: u64) -> (Aggregator, Hash32) {
    let mut agg = Aggregator::new(spec.clone(), policy(2), epoch);
    let p = proposal(
        spec,
        2,
        "tickets",
        LOCK_START,
        LOCK_START + 500,
        &[0, 1, 2, 3],
    );
    let id = p.id(agg.network_id());
    agg.add_proposal(p).unwrap();
    (agg, id)
}

/// Feeds attestations carried by their subject, in presences.
fn carry(agg: &mut Aggregator, subject: &SecretKey, attestations: Vec<UptimeAttestation>) {
    for chunk in attestations.chunks(64) {
        let p = presence(agg.network_id(), subject, agg.epoch(), chunk.to_vec());
        agg.apply_presence(p);
    }
}

fn attest(agg: &mut Aggregator, by: &SecretKey, subject: &SecretKey, ip: &str, seen: u32) {
    let a = attestation(
        agg.network_id(),
        by,
        subject.public_key(),
        ip,
        agg.epoch(),
        seen,
    );
    carry(agg, subject, vec![a]);
}

fn anchor_ip(i: usize) -> String {
    format!("11.{i}.0.1")
}

fn honest_ip(i: usize) -> String {
    format!("10.{}.{}.7", i / 200, i % 200)
}

fn signal(agg: &mut Aggregator, id: Hash32, who: &SecretKey, choice: Choice) {
    let s = signal_with(agg.network_id(), who, id, choice, 1, LOCK_START, vec![]);
    agg.apply_signal(s, LOCK_START).unwrap();
}

/// The anchors attest each other, and every anchor attests `n` honest nodes, who signal
/// support. Returns the honest keys.
fn honest_network(agg: &mut Aggregator, id: Hash32, n: usize) -> Vec<SecretKey> {
    let anchors: Vec<SecretKey> = (0..ANCHORS).map(anchor).collect();
    for (i, a) in anchors.iter().enumerate() {
        for (j, b) in anchors.iter().enumerate() {
            if i != j {
                attest(agg, b, a, &anchor_ip(i), 10);
            }
        }
    }
    let honest: Vec<SecretKey> = (0..n).map(|i| key(&format!("honest {i}"))).collect();
    for (i, h) in honest.iter().enumerate() {
        for a in &anchors {
            attest(agg, a, h, &honest_ip(i), 10);
        }
        signal(agg, id, h, Choice::Support);
    }
    honest
}

fn admitted(agg: &Aggregator, key: &PublicKey) -> bool {
    agg.admission(key).expect("the tickets rule").0
}

fn counted(agg: &Aggregator, key: &PublicKey) -> bool {
    agg.uptime(key).is_some_and(|s| s.counted)
}

#[test]
fn tickets_are_used_up_along_a_chain() {
    let spec = spec(1, 4, 1);
    let (mut agg, _) = aggregator(&spec, EPOCH);
    let chain: Vec<SecretKey> = (0..6).map(|i| key(&format!("link {i}"))).collect();
    let mut by = anchor(0);
    for (i, link) in chain.iter().enumerate() {
        attest(&mut agg, &by, link, &honest_ip(i), 10);
        by = link.clone();
    }
    // The anchor keeps one of its four tickets and passes three; each link keeps one.
    assert_eq!(agg.admission(&anchor(0).public_key()), Some((true, 1)));
    for (i, link) in chain.iter().enumerate() {
        let expected = if i < 3 { (true, 1) } else { (false, 0) };
        assert_eq!(
            agg.admission(&link.public_key()),
            Some(expected),
            "link {i}"
        );
    }
    assert_eq!(
        Aggregator::new(NetworkSpec::regtest(), policy(2), EPOCH).admission(&chain[0].public_key()),
        None
    );
    assert!(matches!(agg.qualification(), Qualification::Tickets(t) if t.tickets_per_anchor == 4));
}

#[test]
fn honest_nodes_reached_by_k_anchors_qualify_and_count() {
    let spec = spec(ANCHORS, 100, 2);
    let (mut agg, id) = aggregator(&spec, EPOCH);
    let honest = honest_network(&mut agg, id, 20);
    for h in &honest {
        assert_eq!(agg.admission(&h.public_key()), Some((true, ANCHORS as u32)));
        assert!(counted(&agg, &h.public_key()));
    }
    for i in 0..ANCHORS {
        assert!(counted(&agg, &anchor(i).public_key()));
    }
    assert_eq!(agg.population().0, 20 + ANCHORS as u64);
    // Attesters no admitted node vouches for vouch for nothing, even placed in q netgroups
    // (which under rule v1 qualifies the outsider).
    let outsider = key("outsider");
    for j in 0..3 {
        let peer = key(&format!("unadmitted peer {j}"));
        attest(&mut agg, &key("placer"), &peer, &format!("12.{j}.0.1"), 10);
        attest(&mut agg, &peer, &outsider, "198.51.100.1", 30);
        assert!(!admitted(&agg, &peer.public_key()));
    }
    assert!(!admitted(&agg, &outsider.public_key()));
    assert!(!counted(&agg, &outsider.public_key()));
    // An admitted node's vouch passes tickets on: the outsider is admitted through it.
    attest(&mut agg, &honest[0], &outsider, "198.51.100.1", 30);
    assert!(admitted(&agg, &outsider.public_key()));
}

/// `made_up` keys vouched for by `colluders` admitted real nodes (the first honest ones),
/// attesting each other in a ring and signalling override; the number of them admitted.
fn colluding_real(
    made_up: usize,
    colluders: usize,
    tickets: u32,
    honest_n: usize,
) -> (u64, u64, u64) {
    let spec = spec(ANCHORS, tickets, 2);
    let (mut agg, id) = aggregator(&spec, EPOCH);
    let honest = honest_network(&mut agg, id, honest_n);
    let fake: Vec<SecretKey> = (0..made_up).map(|i| key(&format!("made up {i}"))).collect();
    for (i, f) in fake.iter().enumerate() {
        let ip = format!("203.{}.{}.9", i / 250, i % 250);
        let mut about: Vec<UptimeAttestation> = honest[..colluders]
            .iter()
            .map(|c| attestation(agg.network_id(), c, f.public_key(), &ip, EPOCH, 30))
            .collect();
        let prev = &fake[(i + made_up - 1) % made_up];
        about.push(attestation(
            agg.network_id(),
            prev,
            f.public_key(),
            &ip,
            EPOCH,
            30,
        ));
        carry(&mut agg, f, about);
        signal(&mut agg, id, f, Choice::Override);
    }
    let admitted_fake = fake
        .iter()
        .filter(|f| admitted(&agg, &f.public_key()))
        .count() as u64;
    let counted_fake = fake
        .iter()
        .filter(|f| counted(&agg, &f.public_key()))
        .count() as u64;
    for h in &honest {
        assert!(
            counted(&agg, &h.public_key()),
            "an honest node lost its standing"
        );
    }
    let override_units = agg
        .tally(&id)
        .unwrap()
        .choice(Choice::Override)
        .weight_units;
    (admitted_fake, counted_fake, override_units)
}

#[test]
fn colluding_real_nodes_admit_a_bounded_number_of_made_up_keys() {
    let (colluders, tickets, honest) = (2, 30, 9);
    // Each anchor splits its 29 spare tickets among its 11 children, so a colluder holds at
    // most 3 and passes at most 2 on; K = 2 anchors are needed per admitted key.
    let per_child = (tickets as u64 - 1).div_ceil(honest as u64 + ANCHORS as u64 - 1);
    let bound = colluders as u64 * (per_child - 1) * ANCHORS as u64 / 2;
    let mut admitted = vec![];
    for made_up in [20, 200] {
        let (a, c, units) = colluding_real(made_up, colluders, tickets, honest);
        assert!(
            a <= bound,
            "{a} of {made_up} made-up keys admitted, bound {bound}"
        );
        assert!(c <= a);
        assert!(units <= c * WEIGHT_SCALE);
        admitted.push(a);
    }
    assert!(
        admitted[1] <= bound,
        "more made-up keys buy nothing: {admitted:?}"
    );

    // The same world under rule v1 counts every made-up key.
    let mut v1 = Aggregator::with_qualification(
        spec(ANCHORS, tickets, 2),
        policy(2),
        Qualification::PeerAttestations,
        EPOCH,
    );
    let honest_keys: Vec<SecretKey> = (0..2).map(|i| key(&format!("honest {i}"))).collect();
    for (i, h) in honest_keys.iter().enumerate() {
        attest(&mut v1, &anchor(0), h, &honest_ip(i), 10);
        attest(&mut v1, &anchor(1), h, &honest_ip(i), 10);
    }
    for i in 0..20 {
        let f = key(&format!("made up {i}"));
        for c in &honest_keys {
            attest(&mut v1, c, &f, &format!("203.0.{i}.9"), 30);
        }
    }
    assert!(v1.population().0 >= 20);
}

#[derive(Debug, Clone)]
struct Graph {
    nodes: usize,
    edges: Vec<(usize, usize, u8, u32)>,
}

/// Keys 0..ANCHORS are the anchors, the rest are nodes; edges are attestations.
fn graph() -> impl Strategy<Value = Graph> {
    (ANCHORS + 2..ANCHORS + 14).prop_flat_map(|nodes| {
        (
            Just(nodes),
            prop::collection::vec((0..nodes, 0..nodes, 0u8..8, 0u32..=30), 0..70),
        )
            .prop_map(|(nodes, edges)| Graph { nodes, edges })
    })
}

fn graph_key(i: usize) -> SecretKey {
    if i < ANCHORS {
        anchor(i)
    } else {
        key(&format!("graph node {i}"))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// A clique of forged keys with any attestation graph among themselves, and any claims
    /// about honest nodes, but no edge from an admitted node, is admitted nowhere and weighs
    /// nothing.
    #[test]
    fn a_forged_clique_without_an_anchor_edge_weighs_nothing(
        keys in 2usize..14,
        edges in prop::collection::vec((0usize..14, 0usize..14, 0u8..6, 0u32..=40), 0..60),
        about_honest in prop::collection::vec((0usize..14, 0usize..8, 0u32..=40), 0..10),
    ) {
        let spec = spec(ANCHORS, 60, 2);
        let (mut agg, id) = aggregator(&spec, EPOCH);
        let honest = honest_network(&mut agg, id, 8);
        let before = agg.population();
        let forged: Vec<SecretKey> = (0..keys).map(|i| key(&format!("forged {i}"))).collect();
        let net = *agg.network_id();
        for &(a, s, ip, seen) in &edges {
            let (a, s) = (a % keys, s % keys);
            let x = attestation(&net, &forged[a], forged[s].public_key(), format!("203.0.{ip}.66"), EPOCH, seen);
            carry(&mut agg, &forged[s], vec![x]);
        }
        for &(a, h, seen) in &about_honest {
            agg.add_attestation(attestation(&net, &forged[a % keys], honest[h].public_key(), "198.51.100.66", EPOCH, seen));
        }
        for f in &forged {
            signal(&mut agg, id, f, Choice::Override);
            prop_assert!(!admitted(&agg, &f.public_key()));
            prop_assert!(!counted(&agg, &f.public_key()));
        }
        prop_assert_eq!(agg.tally(&id).unwrap().choice(Choice::Override).weight_units, 0);
        prop_assert_eq!(agg.population(), before);
    }

    /// R real admitted nodes vouching for any number of made-up keys admit at most the
    /// tickets they hold, whatever the number of keys (the budget reaches all six honest
    /// nodes: 9 tickets or more for the eight children of each anchor).
    #[test]
    fn colluding_real_nodes_admit_at_most_their_tickets(
        made_up in 1usize..120,
        colluders in 1usize..4,
        tickets in 9u32..60,
    ) {
        let honest = 6;
        let (a, c, units) = colluding_real(made_up, colluders, tickets, honest);
        let per_child = (u64::from(tickets) - 1).div_ceil(honest as u64 + ANCHORS as u64 - 1);
        let bound = colluders as u64 * per_child.saturating_sub(1) * ANCHORS as u64 / 2;
        prop_assert!(a <= bound, "{} admitted, bound {}", a, bound);
        prop_assert!(c <= a && units <= c * WEIGHT_SCALE);
    }

    /// Admission, standings and tallies depend on the set of attestations only: any order,
    /// incrementally or at an epoch boundary, gives the same.
    #[test]
    fn order_does_not_matter_under_tickets(g in graph(), tickets in 1u32..20, required in 1u32..=3, seed in 1u64..) {
        let spec = spec(ANCHORS, tickets, required);
        let keys: Vec<SecretKey> = (0..g.nodes).map(graph_key).collect();
        let probe = Aggregator::new(spec.clone(), policy(2), EPOCH);
        let net = *probe.network_id();
        let messages: Vec<(usize, UptimeAttestation)> = g
            .edges
            .iter()
            .map(|&(a, s, ip, seen)| {
                (s, attestation(&net, &keys[a], keys[s].public_key(), format!("10.{ip}.0.{}", s + 1), EPOCH, seen))
            })
            .collect();
        let run = |mut order: Vec<(usize, UptimeAttestation)>, seed: u64, start: u64| {
            shuffle(&mut order, seed);
            let (mut agg, id) = aggregator(&spec, start);
            for k in &keys {
                let s = signal_with(&net, k, id, Choice::Override, 1, LOCK_START, vec![]);
                agg.apply_signal(s, LOCK_START).unwrap();
            }
            for (s, a) in order {
                carry(&mut agg, &keys[s], vec![a]);
            }
            if start != EPOCH {
                agg.set_epoch(EPOCH);
            }
            let standings: Vec<String> = keys
                .iter()
                .map(|k| format!("{:?} {:?}", agg.admission(&k.public_key()), agg.uptime(&k.public_key())))
                .collect();
            (agg.tally(&id).unwrap(), agg.population(), standings)
        };
        let first = run(messages.clone(), seed, EPOCH);
        prop_assert_eq!(&run(messages.clone(), seed.rotate_left(23) ^ 0x5bd1, EPOCH), &first);
        prop_assert_eq!(&run(messages, seed, EPOCH - 1), &first);
    }
}
