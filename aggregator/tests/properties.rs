//! Properties of the Sybil rule over random message sets, with real keys and signatures.

mod common;

use common::{World, attestation, key, pk, policy, presence, proposal, regtest, signal_with};
use commons_aggregator::{
    Aggregator, ProposalState, SignalOutcome, SignalRejection, Tally, WEIGHT_SCALE,
};
use commons_signaling::{Choice, Equivocation, Hash32, Presence, Signal, UptimeAttestation};
use commons_test_util::shuffle;
use proptest::prelude::*;

const EPOCH: u64 = 100;
const T: u64 = 200;
const NODES: usize = 10;
const IPS: [&str; 8] = [
    "192.0.2.1",
    "192.0.2.2",
    "192.0.2.3",
    "198.51.100.7",
    "203.0.113.9",
    "2001:db8:1::1",
    "2001:db8:1::2",
    "::ffff:192.0.2.1",
];

#[derive(Debug, Clone)]
enum Msg {
    Attestation(UptimeAttestation),
    Signal(Signal),
    Presence(Presence),
    Evidence(Equivocation),
}

/// A random message set: attestations among four placed witnesses and the nodes (who also
/// attest each other), signals with several sequence numbers on two proposals, presences.
#[derive(Debug, Clone)]
struct Scenario {
    attestations: Vec<(usize, usize, usize, u64, u32)>,
    signals: Vec<(usize, usize, usize, u64, usize)>,
    presences: Vec<usize>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let attestation = (
        0..NODES + 4,
        0..NODES,
        0..IPS.len(),
        EPOCH - 2..=EPOCH + 1,
        0u32..40,
    );
    let signal = (0..NODES, 0..2usize, 0..4usize, 1u64..4, 0..3usize);
    (
        prop::collection::vec(attestation, 20..80),
        prop::collection::vec(signal, 1..30),
        prop::collection::vec(0..NODES, 0..4),
    )
        .prop_map(|(attestations, signals, presences)| Scenario {
            attestations,
            signals,
            presences,
        })
}

fn attester_name(i: usize) -> String {
    if i < NODES {
        format!("node {i}")
    } else {
        format!("witness {}", i - NODES)
    }
}

struct Built {
    proposals: Vec<commons_signaling::Proposal>,
    ids: Vec<Hash32>,
    messages: Vec<Msg>,
}

fn build(s: &Scenario) -> Built {
    let spec = regtest();
    let net = spec.network_id();
    let proposals = vec![
        proposal(&spec, 1, "first", T, T + 100, &[0, 1, 2]),
        proposal(&spec, 2, "second", T - 50, T + 200, &[1, 2, 3, 4]),
    ];
    let ids: Vec<Hash32> = proposals.iter().map(|p| p.id(&net)).collect();
    let mut messages = Vec::new();
    // The witnesses have netgroups of their own.
    for i in 0..4 {
        let ip = format!("11.{i}.0.1");
        let a = attestation(
            &net,
            &key("placer"),
            pk(&attester_name(NODES + i)),
            &ip,
            EPOCH,
            1,
        );
        messages.push(Msg::Attestation(a));
    }
    let mut made: Vec<UptimeAttestation> = Vec::new();
    for &(attester, subject, ip, epoch, seen) in &s.attestations {
        let a = attestation(
            &net,
            &key(&attester_name(attester)),
            pk(&attester_name(subject)),
            IPS[ip],
            epoch,
            seen,
        );
        made.push(a.clone());
        messages.push(Msg::Attestation(a));
    }
    for &(signer, p, choice, sequence, carried) in &s.signals {
        let name = attester_name(signer);
        let about: Vec<UptimeAttestation> = made
            .iter()
            .filter(|a| a.body.subject == pk(&name))
            .take(carried)
            .cloned()
            .collect();
        let sig = signal_with(
            &net,
            &key(&name),
            ids[p],
            Choice::ALL[choice],
            sequence,
            T + sequence,
            about,
        );
        messages.push(Msg::Signal(sig));
    }
    for &node in &s.presences {
        let name = attester_name(node);
        let about: Vec<UptimeAttestation> = made
            .iter()
            .filter(|a| a.body.subject == pk(&name))
            .cloned()
            .collect();
        messages.push(Msg::Presence(presence(&net, &key(&name), EPOCH, about)));
    }
    let evidence = evidence_of_every_equivocator(&messages);
    messages.extend(evidence.into_iter().map(Msg::Evidence));
    Built {
        proposals,
        ids,
        messages,
    }
}

/// One evidence message per signer and proposal that signed two bodies with one sequence
/// number: what the network holds once any node that saw such a pair published it. A
/// node that sees the higher sequence first never notices the pair itself, so a message
/// set is only order-independent with the evidence in it (docs/PROTOCOL.md, "Equivocation").
fn evidence_of_every_equivocator(messages: &[Msg]) -> Vec<Equivocation> {
    let signals: Vec<&Signal> = messages
        .iter()
        .filter_map(|m| match m {
            Msg::Signal(s) => Some(s),
            _ => None,
        })
        .collect();
    let mut proven: Vec<(Hash32, commons_signaling::PublicKey)> = Vec::new();
    let mut out = Vec::new();
    for (i, a) in signals.iter().enumerate() {
        for b in &signals[i + 1..] {
            let who = (a.body.proposal, a.body.signer);
            if proven.contains(&who) {
                continue;
            }
            if let Ok(e) = Equivocation::new((*a).clone(), (*b).clone()) {
                proven.push(who);
                out.push(e);
            }
        }
    }
    out
}

fn apply_all(agg: &mut Aggregator, messages: &[Msg]) {
    for m in messages {
        match m {
            Msg::Attestation(a) => {
                agg.add_attestation(a.clone());
            }
            Msg::Signal(s) => {
                let _ = agg.apply_signal(s.clone(), T + 10);
            }
            Msg::Presence(p) => {
                agg.apply_presence(p.clone());
            }
            Msg::Evidence(e) => {
                let _ = agg.apply_evidence(e.clone(), T + 10);
            }
        }
    }
}

fn fresh(b: &Built) -> Aggregator {
    let mut agg = Aggregator::new(regtest(), policy(2), EPOCH);
    for p in &b.proposals {
        agg.add_proposal(p.clone()).unwrap();
    }
    agg
}

/// Everything observable about an aggregator's verdicts: tallies, states over time, node
/// standings and the population.
type Observed = (Vec<Tally>, Vec<Vec<ProposalState>>, Vec<String>, (u64, u64));

fn observe(agg: &Aggregator, ids: &[Hash32]) -> Observed {
    let tallies = ids.iter().map(|id| agg.tally(id).unwrap()).collect();
    let states = ids
        .iter()
        .map(|id| {
            [T - 60, T, T + 99, T + 150, T + 500]
                .iter()
                .map(|&t| agg.state(id, t).unwrap())
                .collect()
        })
        .collect();
    let uptimes = (0..NODES + 4)
        .map(|i| format!("{:?}", agg.uptime(&pk(&attester_name(i)))))
        .collect();
    (tallies, states, uptimes, agg.population())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any order of the same messages, with any duplicates, gives bit-identical tallies,
    /// standings and states, equal to a full recompute.
    #[test]
    fn order_and_duplicates_do_not_matter(s in scenario(), seed in 1u64.., dups in prop::collection::vec(any::<prop::sample::Index>(), 0..20)) {
        let b = build(&s);
        let mut first = fresh(&b);
        apply_all(&mut first, &b.messages);
        let expected = observe(&first, &b.ids);

        let mut reordered = b.messages.clone();
        for d in &dups {
            reordered.push(d.get(&b.messages).clone());
        }
        shuffle(&mut reordered, seed);
        let mut second = fresh(&b);
        apply_all(&mut second, &reordered);
        prop_assert_eq!(&observe(&second, &b.ids), &expected);

        // Incremental upkeep equals recomputing from scratch (which may latch overrides, so
        // states are left out here).
        first.set_epoch(EPOCH);
        let recomputed = observe(&first, &b.ids);
        prop_assert_eq!((&recomputed.0, &recomputed.2, recomputed.3), (&expected.0, &expected.2, expected.3));

        // Applying everything again changes nothing.
        apply_all(&mut second, &b.messages);
        prop_assert_eq!(&observe(&second, &b.ids), &expected);
    }

    /// Equivocation evidence makes the tally independent of the order of arrival: a node
    /// that saw every conflicting signal (noticing some pairs itself, depending on the
    /// order, and getting the evidence before or after any signal) and a node that saw only
    /// the evidence of the equivocators, never their other signals, reach the same tallies,
    /// states, standings and population; every equivocator is excluded, and whatever
    /// evidence a node made itself is valid evidence against an equivocator.
    #[test]
    fn equivocation_evidence_is_order_independent(s in scenario(), seed in 1u64.., seed2 in 1u64..) {
        let b = build(&s);
        let evidence: Vec<&Equivocation> = b
            .messages
            .iter()
            .filter_map(|m| match m {
                Msg::Evidence(e) => Some(e),
                _ => None,
            })
            .collect();
        let proven: Vec<(Hash32, commons_signaling::PublicKey)> =
            evidence.iter().map(|e| (*e.proposal(), *e.signer())).collect();

        let mut everything = b.messages.clone();
        shuffle(&mut everything, seed);
        let mut saw_all = fresh(&b);
        apply_all(&mut saw_all, &everything);
        let expected = observe(&saw_all, &b.ids);

        // Only the evidence of the equivocators, none of their own signals on that
        // proposal (the attestations those carried arrive on their own, as presences
        // carry them).
        let mut only_evidence: Vec<Msg> = b
            .messages
            .iter()
            .filter(|m| match m {
                Msg::Signal(sig) => !proven.contains(&(sig.body.proposal, sig.body.signer)),
                _ => true,
            })
            .cloned()
            .collect();
        shuffle(&mut only_evidence, seed2);
        let mut saw_evidence = fresh(&b);
        apply_all(&mut saw_evidence, &only_evidence);
        prop_assert_eq!(&observe(&saw_evidence, &b.ids), &expected);

        // The signals first, the evidence last: what a node that noticed nothing itself
        // holds once the evidence reaches it.
        let (mut signals_first, mut late): (Vec<Msg>, Vec<Msg>) = b
            .messages
            .iter()
            .cloned()
            .partition(|m| !matches!(m, Msg::Evidence(_)));
        shuffle(&mut signals_first, seed2);
        let mut noticed = fresh(&b);
        apply_all(&mut noticed, &signals_first);
        let made: Vec<Equivocation> = noticed.evidence(None).into_iter().cloned().collect();
        let net = regtest().network_id();
        for e in &made {
            prop_assert!(e.check_shape().is_ok() && e.verify(&net), "made invalid evidence {e:?}");
            prop_assert!(proven.contains(&(*e.proposal(), *e.signer())));
        }
        shuffle(&mut late, seed);
        apply_all(&mut noticed, &late);
        prop_assert_eq!(&observe(&noticed, &b.ids), &expected);

        for (id, signer) in &proven {
            prop_assert!(saw_all.is_excluded(id, signer));
            prop_assert!(saw_all.signal(id, signer).is_some(), "an equivocator's signal is held");
        }
        let excluded: u64 = b.ids.iter().map(|id| saw_all.tally(id).unwrap().excluded_signers).sum();
        prop_assert_eq!(excluded, proven.len() as u64);
    }

    /// Attestations handed over in batches give the outcomes, standings and tallies that
    /// one at a time give, and so do both after the next boundary (which applies what the
    /// batches left for it).
    #[test]
    fn batches_of_attestations_are_one_at_a_time(s in scenario(), cuts in prop::collection::vec(1usize..12, 1..40)) {
        let b = build(&s);
        let mut single = fresh(&b);
        let mut batched = fresh(&b);
        let (mut one_by_one, mut in_batches) = (Vec::new(), Vec::new());
        let mut cut = cuts.iter().cycle();
        let mut pending: Vec<UptimeAttestation> = Vec::new();
        let mut limit = *cut.next().expect("at least one cut");
        for m in &b.messages {
            if let Msg::Attestation(a) = m {
                one_by_one.push(single.add_attestation(a.clone()));
                pending.push(a.clone());
                if pending.len() == limit {
                    in_batches.extend(batched.add_attestations(std::mem::take(&mut pending)));
                    limit = *cut.next().expect("cycles");
                }
            } else {
                in_batches.extend(batched.add_attestations(std::mem::take(&mut pending)));
                apply_all(&mut single, std::slice::from_ref(m));
                apply_all(&mut batched, std::slice::from_ref(m));
            }
        }
        in_batches.extend(batched.add_attestations(pending));
        prop_assert_eq!(&in_batches, &one_by_one);
        prop_assert_eq!(observe(&batched, &b.ids), observe(&single, &b.ids));
        for agg in [&mut single, &mut batched] {
            agg.set_epoch(EPOCH + 1);
        }
        prop_assert_eq!(observe(&batched, &b.ids), observe(&single, &b.ids));
    }

    /// k of the n counted nodes of one netgroup weigh k/sqrt(n), within one unit; the
    /// whole netgroup weighs sqrt(n).
    #[test]
    fn a_netgroup_weighs_the_square_root_of_its_size(n in 1usize..24, k_frac in 0.0f64..=1.0) {
        let k = ((n as f64) * k_frac).round() as usize;
        let mut w = World::new(2, EPOCH);
        for i in 0..n {
            w.qualify(&format!("member {i}"), &format!("192.0.2.{}", i + 1), 10);
        }
        let id = w.add_proposal(1, T, T + 100);
        for i in 0..k {
            w.signal(&format!("member {i}"), id, Choice::Support, 1, T);
        }
        let scale = WEIGHT_SCALE as f64;
        let (nodes, units) = w.agg.population();
        prop_assert_eq!(nodes, n as u64);
        prop_assert!((units as f64 - (n as f64).sqrt() * scale).abs() <= 1.0);
        let support = w.agg.tally(&id).unwrap().choice(Choice::Support).weight_units;
        prop_assert!((support as f64 - k as f64 / (n as f64).sqrt() * scale).abs() <= 1.0);
    }

    /// q-1 colluding attesters cannot raise a node's uptime above what an honest attester,
    /// in a netgroup with no colluder, vouches for; with no such attester it stays 0.
    #[test]
    fn fewer_than_q_colluders_cannot_inflate_uptime(
        q in 1u32..5,
        honest in prop::collection::vec((0u8..8, 0u32..=30), 0..8),
        colluder_groups in prop::collection::vec(0u8..8, 4),
        lie in 0u32..=30,
    ) {
        let mut w = World::new(q, EPOCH);
        for (i, &(group, seen)) in honest.iter().enumerate() {
            let name = format!("honest {i}");
            w.place(&name, &format!("11.{group}.0.{}", i + 1));
            w.attest(&name, "subject", "203.0.113.5", seen);
        }
        let colluders = &colluder_groups[..q as usize - 1];
        for (i, &group) in colluders.iter().enumerate() {
            let name = format!("colluder {i}");
            w.place(&name, &format!("11.{group}.0.{}", 100 + i));
            w.attest(&name, "subject", "203.0.113.5", lie);
        }
        let bound = honest
            .iter()
            .filter(|(group, _)| !colluders.contains(group))
            .map(|&(_, seen)| seen)
            .max()
            .unwrap_or(0);
        prop_assert!(w.uptime("subject") <= bound, "uptime {} above honest bound {}", w.uptime("subject"), bound);
    }

    /// Of the qualified nodes on one address exactly one counts: the longest uptime, ties
    /// to the smaller key.
    #[test]
    fn nodes_on_one_address_count_once(uptimes in prop::collection::vec(3u32..=30, 1..8)) {
        let mut w = World::new(2, EPOCH);
        for (i, &u) in uptimes.iter().enumerate() {
            w.qualify(&format!("tenant {i}"), "198.51.100.42", u);
        }
        prop_assert_eq!(w.agg.population(), (1, WEIGHT_SCALE));
        let winner = (0..uptimes.len())
            .min_by_key(|&i| (std::cmp::Reverse(uptimes[i]), pk(&format!("tenant {i}"))))
            .unwrap();
        for i in 0..uptimes.len() {
            prop_assert_eq!(w.counted(&format!("tenant {i}")), i == winner);
        }
    }

    /// A lower sequence number is a replay; an equal one with another body proves an
    /// equivocation (the signer then counts nowhere on the proposal), and one with the same
    /// body loses unless its encoding is larger; either way every order keeps the same
    /// signal.
    #[test]
    fn replays_are_rejected(a in 1u64..5, b in 1u64..5, ca in 0..4usize, cb in 0..4usize) {
        let spec = regtest();
        let net = spec.network_id();
        let p = proposal(&spec, 1, "replays", T, T + 100, &[0, 1, 2]);
        let id = p.id(&net);
        let first = signal_with(&net, &key("signer"), id, Choice::ALL[ca], a, T, vec![]);
        let second = signal_with(&net, &key("signer"), id, Choice::ALL[cb], b, T, vec![]);
        let best = if (b, second.encode()) > (a, first.encode()) { &second } else { &first };
        let proves = a == b && first.body != second.body;
        for (x, y) in [(&first, &second), (&second, &first)] {
            let mut agg = Aggregator::new(spec.clone(), policy(2), EPOCH);
            agg.add_proposal(p.clone()).unwrap();
            agg.apply_signal(x.clone(), T).unwrap();
            let result = agg.apply_signal(y.clone(), T);
            let (sx, sy) = (x.body.sequence, y.body.sequence);
            if sy < sx {
                prop_assert_eq!(result, Err(SignalRejection::Replay { latest: sx, offered: sy }));
            } else if proves {
                prop_assert_eq!(result, Ok(SignalOutcome::Equivocated { stored: y == best }));
            } else if sy == sx && y != best {
                prop_assert_eq!(result, Err(SignalRejection::Equivocation { sequence: sy }));
            } else {
                prop_assert!(result.is_ok());
            }
            prop_assert_eq!(agg.signal(&id, &pk("signer")), Some(best));
            prop_assert_eq!(agg.is_excluded(&id, &pk("signer")), proves);
        }
    }
}
