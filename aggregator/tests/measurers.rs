//! The measurer rule: only measurers named in the spec vouch for uptime, a quorum q_m of
//! them must agree on an address, and a node counts only while a measurer saw it within the
//! liveness window. Real keys and signatures throughout.

mod common;

use common::{attestation, key, policy, presence, proposal, signal_with};
use commons_aggregator::{
    Aggregator, AttestationOutcome, Checked, Intake, Qualification, Reason, Record, WEIGHT_SCALE,
};
use commons_signaling::spec::MeasurerSpec;
use commons_signaling::{
    Choice, Hash32, MessageKind, NetworkSpec, Presence, PublicKey, QualificationRule, SecretKey,
    UptimeAttestation,
};
use commons_test_util::shuffle;
use proptest::prelude::*;

const EPOCH: u64 = 500;
const LOCK_START: u64 = 1_000;
const LOCK_END: u64 = 2_000;
/// A (measurers listed), q_m, L.
const A: usize = 5;
const QM: u32 = 3;
const L: u32 = 5;

fn measurer(i: usize) -> SecretKey {
    SecretKey::from_seed(&format!("commons-aggregator test measurer {i}"))
}

/// Regtest's maintainers and tiers under the measurer rule with A measurers, quorum q_m and
/// liveness L.
fn spec() -> NetworkSpec {
    let spec = NetworkSpec {
        qualification: QualificationRule::Measurers,
        measurers: (0..A)
            .map(|i| MeasurerSpec {
                key: measurer(i).public_key(),
                addresses: vec![],
            })
            .collect(),
        measurer_quorum: QM,
        liveness_epochs: L,
        ..NetworkSpec::regtest()
    };
    spec.validate("test").unwrap();
    spec
}

/// An aggregator under the measurer rule (netgroups /24 and /48, minimum uptime 3, window 30)
/// with one tier-2 proposal locked over [LOCK_START, LOCK_END).
fn aggregator(epoch: u64) -> (Aggregator, Hash32) {
    let spec = spec();
    let mut agg = Aggregator::new(spec.clone(), policy(2), epoch);
    let p = proposal(&spec, 2, "measured", LOCK_START, LOCK_END, &[0, 1, 2, 3]);
    let id = p.id(agg.network_id());
    agg.add_proposal(p).unwrap();
    (agg, id)
}

/// The address of the i-th honest node, one per /24.
fn honest_ip(i: usize) -> String {
    format!("10.{}.{}.7", i / 200, i % 200)
}

/// Measurer `m` attests `subject` at `ip`, issued at `epoch`.
fn measure(
    agg: &Aggregator,
    m: usize,
    subject: PublicKey,
    ip: &str,
    epoch: u64,
    seen: u32,
) -> UptimeAttestation {
    attestation(agg.network_id(), &measurer(m), subject, ip, epoch, seen)
}

/// Feeds the attestations the way a node gets them: carried by their subject in a presence.
fn carry(agg: &mut Aggregator, subject: &SecretKey, attestations: Vec<UptimeAttestation>) {
    for chunk in attestations.chunks(64) {
        let p = presence(agg.network_id(), subject, agg.epoch(), chunk.to_vec());
        agg.apply_presence(p);
    }
}

/// `n` honest nodes, each measured by the measurers in `up` at its own address for 10
/// epochs, issued at the current epoch; each signals support.
fn honest_network(agg: &mut Aggregator, id: Hash32, n: usize, up: &[usize]) -> Vec<SecretKey> {
    let epoch = agg.epoch();
    (0..n)
        .map(|i| {
            let node = key(&format!("honest {i}"));
            let about = up
                .iter()
                .map(|&m| measure(agg, m, node.public_key(), &honest_ip(i), epoch, 10))
                .collect();
            carry(agg, &node, about);
            let s = signal_with(
                agg.network_id(),
                &node,
                id,
                Choice::Support,
                1,
                LOCK_START,
                vec![],
            );
            agg.apply_signal(s, LOCK_START).unwrap();
            node
        })
        .collect()
}

fn counted(agg: &Aggregator, key: &PublicKey) -> bool {
    agg.uptime(key).is_some_and(|s| s.counted)
}

fn qualified(agg: &Aggregator, key: &PublicKey) -> bool {
    agg.uptime(key).is_some_and(|s| s.qualified)
}

#[test]
fn the_spec_picks_the_rule_and_regtest_runs_measurers() {
    let agg = Aggregator::new(NetworkSpec::regtest_peer_attested(), policy(2), EPOCH);
    assert_eq!(agg.qualification(), &Qualification::PeerAttestations);
    let agg = Aggregator::new(NetworkSpec::regtest(), policy(2), EPOCH);
    let Qualification::Measurers(m) = agg.qualification() else {
        panic!("regtest runs the measurer rule");
    };
    assert_eq!(m.measurers.len(), 3);
    assert_eq!((m.quorum, m.liveness_epochs), (2, 10));
}

#[test]
fn uptime_is_the_qm_th_largest_value_of_measurers_agreeing_on_the_address() {
    let (mut agg, _) = aggregator(EPOCH);
    let node = key("node");
    let values = [12, 9, 7, 4];
    let about: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(m, &seen)| measure(&agg, m, node.public_key(), "192.0.2.10", EPOCH, seen))
        .collect();
    // A fifth measurer places it elsewhere: a minority address loses.
    let elsewhere = measure(&agg, 4, node.public_key(), "198.51.100.1", EPOCH, 30);
    carry(&mut agg, &node, [about, vec![elsewhere]].concat());
    let status = agg.uptime(&node.public_key()).unwrap();
    assert_eq!(status.ip, Some("192.0.2.10".parse().unwrap()));
    assert_eq!(status.uptime_epochs, 7, "the third largest of 12, 9, 7, 4");
    assert_eq!(status.attester_netgroups, 4);
    assert!(status.qualified && status.counted);
    assert_eq!(agg.population(), (1, WEIGHT_SCALE));
}

#[test]
fn fewer_than_qm_measurers_qualify_nobody() {
    let (mut agg, _) = aggregator(EPOCH);
    let node = key("node");
    let about: Vec<_> = (0..QM as usize - 1)
        .map(|m| measure(&agg, m, node.public_key(), "192.0.2.10", EPOCH, 30))
        .collect();
    carry(&mut agg, &node, about);
    let status = agg.uptime(&node.public_key()).unwrap();
    assert_eq!((status.uptime_epochs, status.qualified), (0, false));
    assert_eq!(agg.population(), (0, 0));
}

#[test]
fn peer_attestations_weigh_nothing_and_are_not_held() {
    // Under rule v1 this world qualifies the subject: five placed peers in five netgroups.
    let build = |qualification: Qualification| {
        let spec = spec();
        let mut agg = Aggregator::with_qualification(spec, policy(2), qualification, EPOCH);
        let net = *agg.network_id();
        let subject = key("subject");
        let mut about = vec![];
        for i in 0..5 {
            let peer = key(&format!("peer {i}"));
            let placing = attestation(
                &net,
                &key("placer"),
                peer.public_key(),
                format!("11.{i}.0.1"),
                EPOCH,
                1,
            );
            carry(&mut agg, &peer, vec![placing]);
            about.push(attestation(
                &net,
                &peer,
                subject.public_key(),
                "192.0.2.10",
                EPOCH,
                20,
            ));
        }
        carry(&mut agg, &subject, about);
        (agg, subject)
    };
    let (v1, subject) = build(Qualification::PeerAttestations);
    assert!(counted(&v1, &subject.public_key()));
    let (mut measured, subject) = build(Qualification::from_spec(&spec()));
    for recomputed in [false, true] {
        if recomputed {
            measured.set_epoch(EPOCH);
        }
        // Nothing about the subject is held, so the aggregator does not even know it.
        assert_eq!(measured.uptime(&subject.public_key()), None);
        assert_eq!(measured.population(), (0, 0));
    }
    // Rule v1 held all ten; the measurer rule holds none (they stay in the presences).
    assert_eq!(v1.attestations().count(), 10);
    assert_eq!(measured.attestations().count(), 0);
}

/// `subject`'s presence at EPOCH carrying two measurers' attestations and a peer's whose
/// signature is forged, with the three attestations.
fn presence_with_forged_peer(
    net: &Hash32,
    subject: &SecretKey,
) -> (Presence, Vec<UptimeAttestation>, UptimeAttestation) {
    let ip = "192.0.2.10";
    let measured: Vec<UptimeAttestation> = (0..2)
        .map(|m| attestation(net, &measurer(m), subject.public_key(), ip, EPOCH, 10))
        .collect();
    let mut forged = attestation(net, &key("peer"), subject.public_key(), ip, EPOCH, 10);
    forged.signature.0[0] ^= 1;
    let mut carried = measured.clone();
    carried.push(forged.clone());
    (presence(net, subject, EPOCH, carried), measured, forged)
}

/// Unix time in the middle of EPOCH.
fn in_epoch(spec: &NetworkSpec) -> u64 {
    EPOCH * spec.epoch_secs + spec.epoch_secs / 2
}

#[test]
fn the_intake_checks_and_persists_only_the_measurer_attestations_a_presence_carries() {
    let spec = spec();
    let now = in_epoch(&spec);
    let net = spec.network_id();
    let mut intake = Intake::new(spec.clone(), EPOCH, Some(key("me").public_key()));
    let subject = key("subject");
    let (p, measured, forged) = presence_with_forged_peer(&net, &subject);
    let Checked::Verify(pending) = intake.check(MessageKind::Presence, &p.encode(), now) else {
        panic!("a new presence needs verifying");
    };
    assert_eq!(pending.attestations(), &measured[..]);
    let applied = intake.apply(pending.verify(&spec, now), now);
    assert_eq!(applied.reason, Reason::New);
    // The presence is kept whole (the forged peer attestation inside it, for audits); only
    // the measurers' are kept on their own.
    let [
        Record::Presence(kept),
        Record::Attestation(a0),
        Record::Attestation(a1),
    ] = &applied.persist[..]
    else {
        panic!("unexpected records: {:?}", applied.persist);
    };
    assert!(kept.body.attestations.contains(&forged));
    assert_eq!(vec![a0.clone(), a1.clone()], measured);
    let held: Vec<UptimeAttestation> = intake.aggregator().attestations().collect();
    assert_eq!(held.len(), 2);
    assert!(!held.contains(&forged));
    assert_eq!(
        intake
            .aggregator_mut()
            .add_carried_attestation(&subject.public_key(), forged),
        AttestationOutcome::Weightless
    );
    // Two measurers agree, quorum three: known, measured, not qualified.
    let status = intake.aggregator().uptime(&subject.public_key()).unwrap();
    assert_eq!(status.attester_netgroups, 2);
}

#[test]
fn under_rule_v1_the_same_forged_peer_attestation_refuses_the_presence() {
    let spec = NetworkSpec {
        qualification: QualificationRule::PeerAttestations,
        ..spec()
    };
    let now = in_epoch(&spec);
    let mut intake = Intake::new(spec.clone(), EPOCH, Some(key("me").public_key()));
    let (p, _, forged) = presence_with_forged_peer(&spec.network_id(), &key("subject"));
    let Checked::Verify(pending) = intake.check(MessageKind::Presence, &p.encode(), now) else {
        panic!("a new presence needs verifying");
    };
    assert!(pending.attestations().contains(&forged));
    assert_eq!(
        intake.apply(pending.verify(&spec, now), now).reason,
        Reason::BadSignature
    );
}

#[test]
fn a_peer_attestation_about_the_node_itself_is_checked_and_held_for_its_presences() {
    let spec = spec();
    let now = in_epoch(&spec);
    let net = spec.network_id();
    let me = key("me");
    let mut intake = Intake::new(spec.clone(), EPOCH, Some(me.public_key()));
    let about_me = attestation(&net, &key("peer"), me.public_key(), "192.0.2.11", EPOCH, 4);
    let applied = intake.ingest(MessageKind::Attestation, &about_me.encode(), now);
    assert_eq!(applied.reason, Reason::New);
    assert!(matches!(&applied.persist[..], [Record::Attestation(a)] if *a == about_me));
    assert_eq!(
        intake
            .ingest(MessageKind::Attestation, &about_me.encode(), now)
            .reason,
        Reason::Duplicate
    );
    let mut forged = about_me.clone();
    forged.body.seen_epochs = 5;
    assert_eq!(
        intake
            .ingest(MessageKind::Attestation, &forged.encode(), now)
            .reason,
        Reason::BadSignature
    );
}

#[test]
fn a_staged_versions_measurer_weighs_before_it_comes_into_force() {
    let spec = spec();
    let (agg, _) = aggregator(EPOCH);
    let newcomer = key("next measurer");
    let about = attestation(
        agg.network_id(),
        &newcomer,
        key("s").public_key(),
        "192.0.2.12",
        EPOCH,
        3,
    );
    assert!(!agg.weighs(&about));
    let mut next = spec.successor_draft();
    next.measurers.push(MeasurerSpec {
        key: newcomer.public_key(),
        addresses: vec![],
    });
    next.validate("test").unwrap();
    let mut agg = agg;
    agg.stage_successors(vec![next]).unwrap();
    assert!(agg.weighs(&about));
    assert!(agg.weighs(&measure(
        &agg,
        0,
        key("s").public_key(),
        "192.0.2.12",
        EPOCH,
        3
    )));
}

#[test]
fn liveness_drops_a_node_no_measurer_saw_for_l_epochs() {
    let (mut agg, _) = aggregator(EPOCH);
    let gone = key("gone");
    let staying = key("staying");
    let about = |agg: &Aggregator, who: &SecretKey, ip: &str, epoch| -> Vec<UptimeAttestation> {
        (0..A)
            .map(|m| measure(agg, m, who.public_key(), ip, epoch, 10))
            .collect()
    };
    let first = about(&agg, &gone, "192.0.2.10", EPOCH);
    carry(&mut agg, &gone, first);
    for e in EPOCH..EPOCH + u64::from(L) + 3 {
        agg.set_epoch(e);
        let fresh = about(&agg, &staying, "198.51.100.3", e);
        carry(&mut agg, &staying, fresh);
        let expected = e < EPOCH + u64::from(L);
        assert_eq!(counted(&agg, &gone.public_key()), expected, "epoch {e}");
        assert!(counted(&agg, &staying.public_key()), "epoch {e}");
    }
    // Its attestations are still live (the window is 30 epochs): liveness, not expiry,
    // removed it, and a new sighting brings it back.
    assert_eq!(
        agg.attestations()
            .filter(|a| a.body.subject == gone.public_key())
            .count(),
        A
    );
    let back = about(&agg, &gone, "192.0.2.10", agg.epoch());
    carry(&mut agg, &gone, back);
    assert!(counted(&agg, &gone.public_key()));
}

#[test]
fn a_node_that_moved_counts_at_its_fresh_address() {
    let (mut agg, _) = aggregator(EPOCH);
    let node = key("mover");
    let old: Vec<_> = (0..A)
        .map(|m| measure(&agg, m, node.public_key(), "192.0.2.10", EPOCH, 30))
        .collect();
    carry(&mut agg, &node, old);
    agg.set_epoch(EPOCH + u64::from(L));
    // Three measurers have seen it at its new address since; two still hold the old one.
    let new: Vec<_> = (0..QM as usize)
        .map(|m| {
            measure(
                &agg,
                m,
                node.public_key(),
                "198.51.100.9",
                EPOCH + u64::from(L),
                4,
            )
        })
        .collect();
    carry(&mut agg, &node, new);
    let status = agg.uptime(&node.public_key()).unwrap();
    assert_eq!(status.ip, Some("198.51.100.9".parse().unwrap()));
    assert!(status.counted);
}

/// A forged world: `keys` made-up keys with any attestations among themselves (and about
/// honest nodes), optionally vouched for by `colluding` measurers.
#[derive(Debug, Clone)]
struct Forgery {
    keys: usize,
    edges: Vec<(usize, usize, u8, u32, u64)>,
    about_honest: Vec<(usize, usize, u8, u32)>,
    colluding: Vec<usize>,
    lies: Vec<(usize, u8, u32)>,
}

fn forgery(max_colluding: usize) -> impl Strategy<Value = Forgery> {
    (2usize..16).prop_flat_map(move |keys| {
        (
            Just(keys),
            prop::collection::vec(
                (0..keys, 0..keys, 0u8..6, 0u32..=40, EPOCH - 3..=EPOCH),
                0..60,
            ),
            prop::collection::vec((0..keys, 0usize..6, 0u8..6, 0u32..=40), 0..10),
            prop::sample::subsequence((0..A).collect::<Vec<_>>(), 0..=max_colluding),
            prop::collection::vec((0..keys, 0u8..6, 0u32..=40), 0..30),
        )
            .prop_map(|(keys, edges, about_honest, colluding, lies)| Forgery {
                keys,
                edges,
                about_honest,
                colluding,
                lies,
            })
    })
}

fn forged_ip(i: u8) -> String {
    format!("203.0.{i}.66")
}

/// Builds an honest network of six nodes measured by every measurer, then the forgery, with
/// every forged key signalling override; returns the aggregator, the proposal, the honest
/// and the forged keys.
fn attack(f: &Forgery) -> (Aggregator, Hash32, Vec<SecretKey>, Vec<SecretKey>) {
    let (mut agg, id) = aggregator(EPOCH);
    let honest = honest_network(&mut agg, id, 6, &(0..A).collect::<Vec<_>>());
    let forged: Vec<SecretKey> = (0..f.keys).map(|i| key(&format!("forged {i}"))).collect();
    let net = *agg.network_id();
    let mut about: Vec<Vec<UptimeAttestation>> = vec![vec![]; f.keys];
    for &(a, s, ip, seen, epoch) in &f.edges {
        about[s].push(attestation(
            &net,
            &forged[a],
            forged[s].public_key(),
            forged_ip(ip),
            epoch,
            seen,
        ));
    }
    for (i, &m) in f.colluding.iter().enumerate() {
        for &(s, ip, seen) in f.lies.iter().skip(i) {
            about[s].push(measure(
                &agg,
                m,
                forged[s].public_key(),
                &forged_ip(ip),
                EPOCH,
                seen,
            ));
        }
    }
    for (s, about) in about.into_iter().enumerate() {
        carry(&mut agg, &forged[s], about);
    }
    // Forged keys also sign claims about honest nodes at their own addresses; handed to
    // the aggregator directly, as if a subject had carried them.
    for &(a, h, ip, seen) in &f.about_honest {
        agg.add_attestation(attestation(
            &net,
            &forged[a],
            honest[h].public_key(),
            forged_ip(ip),
            EPOCH,
            seen,
        ));
    }
    for k in &forged {
        let s = signal_with(&net, k, id, Choice::Override, 1, LOCK_START, vec![]);
        agg.apply_signal(s, LOCK_START).unwrap();
    }
    (agg, id, honest, forged)
}

#[test]
fn a_measurement_of_the_next_epoch_waits_for_it_and_the_one_in_force_still_counts() {
    // Nodes cross a boundary at slightly different instants: a measurer's attestation of
    // epoch E + 1 reaches a node still in E. Exactly a quorum measured this node at E.
    let (mut agg, id) = aggregator(EPOCH);
    let nodes = honest_network(&mut agg, id, 1, &(0..QM as usize).collect::<Vec<_>>());
    let node = &nodes[0];
    assert!(counted(&agg, &node.public_key()));
    let before = agg.uptime(&node.public_key()).unwrap();

    let next = measure(&agg, 0, node.public_key(), &honest_ip(0), EPOCH + 1, 11);
    carry(&mut agg, node, vec![next.clone()]);
    assert_eq!(
        agg.uptime(&node.public_key()).unwrap(),
        before,
        "E's record is in force"
    );
    assert_eq!(agg_support(&agg, id), WEIGHT_SCALE);
    // Held: offered again it is a duplicate, and an older one is superseded.
    assert!(
        agg.unverified_attestations(std::slice::from_ref(&next))
            .is_empty()
    );
    let stale = measure(&agg, 0, node.public_key(), &honest_ip(0), EPOCH - 1, 9);
    assert_eq!(agg.add_attestation(stale), AttestationOutcome::Superseded);
    let held = |agg: &Aggregator| {
        let mut epochs: Vec<u64> = agg
            .attestations()
            .filter(|a| {
                a.body.subject == node.public_key() && a.body.attester == measurer(0).public_key()
            })
            .map(|a| a.body.epoch)
            .collect();
        epochs.sort();
        epochs
    };
    assert_eq!(held(&agg), [EPOCH, EPOCH + 1]);

    agg.set_epoch(EPOCH + 1);
    assert!(counted(&agg, &node.public_key()));
    assert_eq!(
        held(&agg),
        [EPOCH + 1],
        "the later record is in force, the earlier gone"
    );
    assert!(
        agg.unverified_attestations(std::slice::from_ref(&next))
            .is_empty()
    );
}

fn agg_support(agg: &Aggregator, id: Hash32) -> u64 {
    agg.tally(&id).unwrap().choice(Choice::Support).weight_units
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Measurer attestations of epochs around the current one, in any order: every node ends
    /// with the same records, and the one in force for each measurer is its latest live one.
    #[test]
    fn the_record_in_force_does_not_depend_on_arrival_order(
        issued in prop::collection::vec((0..A, 0u64..5, 1u32..20), 1..16),
        seed in any::<u64>(),
    ) {
        let node = key("node");
        let (mut first, _) = aggregator(EPOCH);
        let attestations: Vec<UptimeAttestation> = issued
            .iter()
            .map(|&(m, offset, seen)| {
                measure(&first, m, node.public_key(), "192.0.2.10", EPOCH - 2 + offset, seen)
            })
            .collect();
        let mut shuffled = attestations.clone();
        shuffle(&mut shuffled, seed);
        let (mut second, _) = aggregator(EPOCH);
        for a in &attestations {
            first.add_attestation(a.clone());
        }
        for a in shuffled {
            second.add_attestation(a);
        }

        // At the epoch they all arrived in: each measurer's latest live one, by epoch, then
        // canonical bytes.
        let mut values: Vec<u32> = (0..A)
            .filter_map(|m| {
                attestations
                    .iter()
                    .filter(|a| a.body.attester == measurer(m).public_key())
                    .filter(|a| a.body.epoch <= EPOCH)
                    .max_by_key(|a| (a.body.epoch, a.encode()))
                    .map(|a| a.body.seen_epochs)
            })
            .collect();
        values.sort_unstable_by(|a, b| b.cmp(a));
        let uptime = values.get(QM as usize - 1).copied().unwrap_or(0);
        let status = first.uptime(&node.public_key());
        prop_assert_eq!(status.as_ref().map_or(0, |s| s.uptime_epochs), uptime);
        prop_assert_eq!(status.is_some_and(|s| s.qualified), uptime >= 3);

        let records = |agg: &Aggregator| {
            let mut all: Vec<Vec<u8>> = agg.attestations().map(|a| a.encode()).collect();
            all.sort();
            all
        };
        for epoch in EPOCH..EPOCH + 4 {
            if epoch > EPOCH {
                first.set_epoch(epoch);
                second.set_epoch(epoch);
            }
            prop_assert_eq!(first.uptime(&node.public_key()), second.uptime(&node.public_key()));
            prop_assert_eq!(records(&first), records(&second));
            // At most the record in force and one later one per measurer.
            prop_assert!(records(&first).len() <= 2 * A);
        }
    }

    /// A clique of forged keys, with any attestation graph among themselves and any claims
    /// about honest nodes, weighs nothing and moves no honest node.
    #[test]
    fn a_forged_clique_weighs_nothing(f in forgery(0)) {
        let (mut agg, id, honest, forged) = attack(&f);
        // As the messages arrived, and recomputed from scratch at the epoch boundary.
        for recomputed in [false, true] {
            if recomputed {
                agg.set_epoch(EPOCH);
            }
            for k in &forged {
                prop_assert!(!qualified(&agg, &k.public_key()));
            }
            let tally = agg.tally(&id).unwrap();
            prop_assert_eq!(tally.choice(Choice::Override).weight_units, 0);
            prop_assert_eq!(tally.choice(Choice::Override).nodes, 0);
            prop_assert_eq!(agg.population(), (6, 6 * WEIGHT_SCALE));
            for (i, h) in honest.iter().enumerate() {
                let status = agg.uptime(&h.public_key()).unwrap();
                prop_assert_eq!(status.ip, Some(honest_ip(i).parse().unwrap()));
                prop_assert!(status.counted);
            }
        }
    }

    /// Fewer than q_m colluding measurers, lying about any key at any address for any
    /// uptime, qualify none of them.
    #[test]
    fn fewer_than_qm_colluding_measurers_qualify_nothing(f in forgery(QM as usize - 1)) {
        let (mut agg, id, _, forged) = attack(&f);
        for recomputed in [false, true] {
            if recomputed {
                agg.set_epoch(EPOCH);
            }
            for k in &forged {
                prop_assert!(!qualified(&agg, &k.public_key()));
            }
            prop_assert_eq!(agg.tally(&id).unwrap().choice(Choice::Override).weight_units, 0);
            prop_assert_eq!(agg.population(), (6, 6 * WEIGHT_SCALE));
        }
    }

    /// With A - q_m measurers down for the whole window, every honest node still counts at
    /// its address with the same weight.
    #[test]
    fn a_minus_qm_measurers_down_lose_no_honest_node(
        down in prop::sample::subsequence((0..A).collect::<Vec<_>>(), 0..=A - QM as usize),
        n in 1usize..12,
    ) {
        let up: Vec<usize> = (0..A).filter(|m| !down.contains(m)).collect();
        let (mut all, id) = aggregator(EPOCH);
        honest_network(&mut all, id, n, &(0..A).collect::<Vec<_>>());
        let (mut some, id2) = aggregator(EPOCH);
        let nodes = honest_network(&mut some, id2, n, &up);
        prop_assert_eq!(some.population(), all.population());
        prop_assert_eq!(some.population().0, n as u64);
        for node in &nodes {
            prop_assert!(counted(&some, &node.public_key()));
        }
        let (some_tally, all_tally) = (some.tally(&id2).unwrap(), all.tally(&id).unwrap());
        prop_assert_eq!(some_tally.choice(Choice::Support), all_tally.choice(Choice::Support));
    }

    /// Any order of the same measurer and peer attestations, presences and signals gives the
    /// same standings and tallies, equal to a recompute at the epoch boundary.
    #[test]
    fn order_does_not_matter_under_measurers(
        f in forgery(A),
        honest_lies in prop::collection::vec((0usize..6, 0usize..A, 0u8..6, 0u32..=40), 0..20),
        seed in 1u64..,
    ) {
        let (agg, id, honest, forged) = attack(&f);
        let mut messages: Vec<UptimeAttestation> = agg.attestations().collect();
        for &(h, m, ip, seen) in &honest_lies {
            messages.push(measure(&agg, m, honest[h].public_key(), &forged_ip(ip), EPOCH - 1, seen));
        }
        let signals: Vec<_> = agg.signals().cloned().collect();
        let everyone: Vec<PublicKey> = honest.iter().chain(&forged).map(|k| k.public_key()).collect();
        let observe = |agg: &Aggregator| {
            let uptimes: Vec<String> = everyone.iter().map(|k| format!("{:?}", agg.uptime(k))).collect();
            (agg.tally(&id).unwrap(), agg.population(), uptimes)
        };
        let run = |mut order: Vec<UptimeAttestation>, seed: u64, start: u64| {
            shuffle(&mut order, seed);
            let (mut agg, _) = aggregator(start);
            for s in &signals {
                agg.apply_signal(s.clone(), LOCK_START).unwrap();
            }
            for a in order {
                agg.add_attestation(a);
            }
            if start != EPOCH {
                agg.set_epoch(EPOCH);
            }
            agg
        };
        let first = observe(&run(messages.clone(), seed, EPOCH));
        let second = observe(&run(messages.clone(), seed.rotate_left(17) ^ 0x9e37, EPOCH));
        let boundary = observe(&run(messages, seed, EPOCH - 1));
        prop_assert_eq!(&first, &second);
        prop_assert_eq!(&first, &boundary);
    }
}
