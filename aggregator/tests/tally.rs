//! Step 5 of the Sybil rule: signals, tallies and the time-lock state machine.

mod common;

use common::{World, attestation, key, pk, presence, proposal, regtest, signal, signal_with};
use commons_aggregator::rules::ProposalError;
use commons_aggregator::{
    Aggregator, EvidenceOutcome, Precheck, ProposalOutcome, ProposalState, SignalOutcome,
    SignalRejection, WEIGHT_SCALE,
};
use commons_signaling::{Choice, Equivocation, Hash32, Signed};

/// Epoch 100 of regtest (2-second epochs) starts at t = 200.
const EPOCH: u64 = 100;
const T: u64 = 200;

/// A world with `n` counted nodes "n0".."n{n-1}", each alone in its netgroup, and a tier-1
/// proposal locked over [T, T + 100).
fn world(n: usize) -> (World, Hash32) {
    world_locked(n, T, T + 100)
}

fn world_locked(n: usize, lock_start: u64, lock_end: u64) -> (World, Hash32) {
    let mut w = World::new(2, EPOCH);
    for i in 0..n {
        w.qualify(&format!("n{i}"), &format!("198.51.{i}.1"), 10);
    }
    let id = w.add_proposal(1, lock_start, lock_end);
    (w, id)
}

fn units(w: &World, id: &Hash32, c: Choice) -> (u64, u64) {
    let t = w.agg.tally(id).unwrap();
    (t.choice(c).nodes, t.choice(c).weight_units)
}

/// The tally after a full recompute at the same epoch must equal the incremental one.
fn assert_incremental_matches_recompute(w: &mut World, id: &Hash32) {
    let before = w.agg.tally(id).unwrap();
    let epoch = w.agg.epoch();
    w.agg.set_epoch(epoch);
    assert_eq!(w.agg.tally(id).unwrap(), before);
}

#[test]
fn a_tally_counts_the_latest_signal_of_each_counted_signer() {
    let (mut w, id) = world(4);
    w.signal("n0", id, Choice::Support, 1, T);
    w.signal("n1", id, Choice::Oppose, 1, T);
    w.signal("n2", id, Choice::Override, 1, T);
    w.signal("stranger", id, Choice::Override, 1, T);
    let t = w.agg.tally(&id).unwrap();
    assert_eq!(t.choice(Choice::Support).nodes, 1);
    assert_eq!(t.choice(Choice::Oppose).nodes, 1);
    assert_eq!(t.choice(Choice::Override).nodes, 1);
    assert_eq!(t.choice(Choice::Override).weight_units, WEIGHT_SCALE);
    assert_eq!(t.choice(Choice::Override).weight, 1.0);
    assert_eq!((t.total_nodes, t.total_weight_units), (4, 4 * WEIGHT_SCALE));
    assert_eq!((t.signers, t.uncounted_signers), (4, 1));
    assert_eq!(t.override_weight_share, 0.25);
    assert_eq!(t.override_node_share, 0.25);
    assert!(t.override_met, "tier 1 needs 25% of both");
    assert_incremental_matches_recompute(&mut w, &id);
}

#[test]
fn a_later_signal_replaces_the_earlier_and_abstain_withdraws() {
    let (mut w, id) = world(2);
    w.signal("n0", id, Choice::Support, 1, T);
    assert_eq!(units(&w, &id, Choice::Support), (1, WEIGHT_SCALE));
    let s = signal(&w.network, &key("n0"), id, Choice::Abstain, 2, T + 1);
    assert_eq!(
        w.agg.apply_signal(s, T + 1),
        Ok(SignalOutcome::Replaced {
            previous_sequence: 1
        })
    );
    assert_eq!(units(&w, &id, Choice::Support), (0, 0));
    let t = w.agg.tally(&id).unwrap();
    assert_eq!(t.choice(Choice::Abstain).nodes, 1, "abstain is reported");
    assert_eq!(t.override_node_share, 0.0);
    assert_eq!(
        t.total_nodes, 2,
        "and the abstainer still counts in the denominator"
    );
    assert_incremental_matches_recompute(&mut w, &id);
}

#[test]
fn signals_are_checked_before_they_count() {
    let (mut w, id) = world(1);
    let net = w.network;
    let n0 = key("n0");
    let unknown = Hash32([7; 32]);
    let s = signal(&net, &n0, unknown, Choice::Support, 1, T);
    assert_eq!(
        w.agg.precheck_signal(&s, T),
        Err(SignalRejection::UnknownProposal(unknown))
    );

    let late = signal(&net, &n0, id, Choice::Support, 1, T + 100);
    let e = w.agg.precheck_signal(&late, T + 100).unwrap_err();
    assert_eq!(
        e,
        SignalRejection::AfterLockEnd {
            time: T + 100,
            lock_end: T + 100
        }
    );
    assert_eq!(
        commons_aggregator::Reason::of_signal_rejection(&e).label(),
        "after_lock_end"
    );

    let future = signal(&net, &n0, id, Choice::Support, 1, T + 31);
    assert_eq!(
        w.agg.apply_signal(future.clone(), T),
        Err(SignalRejection::FromFuture {
            time: T + 31,
            now: T,
            max_skew: 30
        })
    );
    assert_eq!(
        w.agg.precheck_signal(&future, T + 1),
        Ok(Precheck::New),
        "within the skew"
    );

    let first = signal(&net, &n0, id, Choice::Support, 5, T);
    assert_eq!(w.agg.precheck_signal(&first, T), Ok(Precheck::New));
    assert_eq!(w.agg.apply_signal(first.clone(), T), Ok(SignalOutcome::New));
    assert_eq!(w.agg.precheck_signal(&first, T), Ok(Precheck::Duplicate));
    assert_eq!(
        w.agg.apply_signal(first.clone(), T),
        Ok(SignalOutcome::Duplicate)
    );
    // A duplicate is recognised even once the lock is over.
    assert_eq!(
        w.agg.precheck_signal(&first, T + 500),
        Ok(Precheck::Duplicate)
    );

    let lower = signal(&net, &n0, id, Choice::Override, 4, T);
    assert_eq!(
        w.agg.apply_signal(lower, T),
        Err(SignalRejection::Replay {
            latest: 5,
            offered: 4
        })
    );
    assert_eq!(w.agg.signal(&id, &pk("n0")), Some(&first));
}

#[test]
fn equivocation_keeps_the_larger_encoding_and_excludes_the_signer_in_any_order() {
    let (w0, id) = world(2);
    let net = w0.network;
    let x = signal(&net, &key("n0"), id, Choice::Support, 3, T);
    let y = signal(&net, &key("n0"), id, Choice::Override, 3, T);
    let winner = if x.encode() > y.encode() { &x } else { &y };
    let evidence = Equivocation::new(x.clone(), y.clone()).unwrap();
    let mut tallies = Vec::new();
    for (first, second) in [(&x, &y), (&y, &x)] {
        let (mut w, id) = world(2);
        w.signal("n1", id, Choice::Oppose, 1, T);
        w.agg.apply_signal(first.clone(), T).unwrap();
        assert_eq!(
            w.agg.precheck_signal(second, T),
            Ok(Precheck::Equivocates),
            "the second body needs verifying: it proves something"
        );
        let result = w.agg.apply_signal(second.clone(), T);
        assert_eq!(
            result,
            Ok(SignalOutcome::Equivocated {
                stored: second == winner
            })
        );
        assert_eq!(w.agg.signal(&id, &pk("n0")), Some(winner));
        assert_eq!(w.agg.evidence_of(&id, &pk("n0")), Some(&evidence));
        let t = w.agg.tally(&id).unwrap();
        assert_eq!(t.choice(winner.body.choice).nodes, 0, "{t:?}");
        assert_eq!(t.choice(Choice::Oppose).nodes, 1);
        assert_eq!(
            (t.signers, t.uncounted_signers, t.excluded_signers),
            (2, 0, 1)
        );
        // The signer still counts in the population: it is a node, its signals do not count.
        assert_eq!(t.total_nodes, 2);
        // Once proven, a third body at that sequence needs no verification: nothing new.
        let z = signal(&net, &key("n0"), id, Choice::Oppose, 3, T);
        let expected = if z.encode() > winner.encode() {
            Ok(Precheck::New)
        } else {
            Err(SignalRejection::Equivocation { sequence: 3 })
        };
        assert_eq!(w.agg.precheck_signal(&z, T), expected);
        assert_incremental_matches_recompute(&mut w, &id);
        tallies.push(w.agg.tally(&id).unwrap());
    }
    assert_eq!(tallies[0], tallies[1]);
}

#[test]
fn the_same_body_signed_twice_is_no_equivocation() {
    let (w0, id) = world(1);
    let net = w0.network;
    let x = signal(&net, &key("n0"), id, Choice::Support, 3, T);
    // BIP340 signing draws fresh randomness: one body, two signatures, two encodings.
    let again = Signed::sign(x.body.clone(), &key("n0"), &net);
    assert_ne!(x, again);
    let winner = if x.encode() > again.encode() {
        &x
    } else {
        &again
    };
    for (first, second) in [(&x, &again), (&again, &x)] {
        let (mut w, id) = world(1);
        w.agg.apply_signal(first.clone(), T).unwrap();
        let result = w.agg.apply_signal(second.clone(), T);
        if second == winner {
            assert_eq!(
                result,
                Ok(SignalOutcome::Replaced {
                    previous_sequence: 3
                })
            );
        } else {
            assert_eq!(result, Err(SignalRejection::Equivocation { sequence: 3 }));
        }
        assert_eq!(w.agg.signal(&id, &pk("n0")), Some(winner));
        let t = w.agg.tally(&id).unwrap();
        assert_eq!(
            (t.choice(Choice::Support).nodes, t.excluded_signers),
            (1, 0)
        );
    }
}

#[test]
fn evidence_excludes_a_signer_whatever_it_signs_before_or_after() {
    let (w0, id) = world(3);
    let net = w0.network;
    let a = signal(&net, &key("n0"), id, Choice::Support, 2, T);
    let b = signal(&net, &key("n0"), id, Choice::Override, 2, T);
    let later = signal(&net, &key("n0"), id, Choice::Override, 5, T + 1);
    let evidence = Equivocation::new(a.clone(), b.clone()).unwrap();

    // Evidence first, then a later signal: stored (so every node holds the same), not counted.
    let (mut w, id) = world(3);
    assert_eq!(
        w.agg.apply_evidence(evidence.clone(), T),
        Ok(EvidenceOutcome::New)
    );
    let held = w.agg.signal(&id, &pk("n0")).cloned().unwrap();
    assert_eq!(held.body.sequence, 2, "the evidence's signals are applied");
    w.agg.apply_signal(later.clone(), T + 1).unwrap();
    assert_eq!(w.agg.signal(&id, &pk("n0")), Some(&later));
    w.signal("n1", id, Choice::Override, 1, T);
    let t = w.agg.tally(&id).unwrap();
    assert_eq!(t.choice(Choice::Override).nodes, 1, "only n1: {t:?}");
    assert_eq!(t.excluded_signers, 1);
    assert_eq!(
        w.agg.apply_evidence(evidence.clone(), T),
        Ok(EvidenceOutcome::AlreadyProven)
    );

    // The later signal first, counted, then the evidence (of an older sequence) arrives: the
    // signer stops counting from then on.
    let (mut w2, id2) = world(3);
    w2.agg.apply_signal(later.clone(), T + 1).unwrap();
    w2.signal("n1", id2, Choice::Override, 1, T);
    assert_eq!(units(&w2, &id2, Choice::Override).0, 2);
    // The conflicting signals themselves are replays here: nothing is noticed.
    assert!(w2.agg.apply_signal(a.clone(), T).is_err());
    assert!(w2.agg.apply_signal(b.clone(), T).is_err());
    assert_eq!(units(&w2, &id2, Choice::Override).0, 2);
    w2.agg.apply_evidence(evidence, T).unwrap();
    assert_eq!(w2.agg.tally(&id2).unwrap(), t);
    assert_incremental_matches_recompute(&mut w2, &id2);

    // Evidence on a proposal not held is for later (sync brings the proposal first).
    let (mut w3, _) = world(1);
    let mut elsewhere = a.clone();
    elsewhere.body.proposal = Hash32([9; 32]);
    let other = Equivocation::new(Signed::sign(elsewhere.body.clone(), &key("n0"), &net), {
        let mut body = elsewhere.body.clone();
        body.choice = Choice::Oppose;
        Signed::sign(body, &key("n0"), &net)
    })
    .unwrap();
    assert_eq!(
        w3.agg.apply_evidence(other, T),
        Err(SignalRejection::UnknownProposal(Hash32([9; 32])))
    );
}

#[test]
fn an_excluded_signer_moving_in_the_population_moves_no_tally() {
    let (mut w, id) = world(2);
    let net = w.network;
    let a = signal(&net, &key("n0"), id, Choice::Override, 1, T);
    let b = signal(&net, &key("n0"), id, Choice::Support, 1, T);
    w.agg
        .apply_evidence(Equivocation::new(a, b).unwrap(), T)
        .unwrap();
    w.signal("n1", id, Choice::Override, 1, T);
    // A third node joins n0's netgroup, then n0 loses its standing by a newer address.
    w.qualify("n2", "198.51.0.2", 10);
    w.qualify("n0", "203.0.113.77", 20);
    let t = w.agg.tally(&id).unwrap();
    assert_eq!(t.choice(Choice::Override).nodes, 1, "{t:?}");
    assert_eq!(t.choice(Choice::Support).nodes, 0, "{t:?}");
    assert_incremental_matches_recompute(&mut w, &id);
}

#[test]
fn a_signer_that_qualifies_later_is_counted_then() {
    let (mut w, id) = world(1);
    w.signal("late", id, Choice::Override, 1, T);
    assert_eq!(units(&w, &id, Choice::Override), (0, 0));
    w.qualify("late", "203.0.113.1", 10);
    assert_eq!(units(&w, &id, Choice::Override), (1, WEIGHT_SCALE));
    assert_incremental_matches_recompute(&mut w, &id);
}

#[test]
fn attestations_carried_by_a_signal_qualify_its_signer() {
    let (mut w, id) = world(1);
    let net = w.network;
    // Place two attesters, then let the signal carry their attestations of the signer.
    w.place("c1", "11.1.0.1");
    w.place("c2", "11.2.0.1");
    let atts = vec![
        attestation(&net, &key("c1"), pk("carrier"), "203.0.113.7", EPOCH, 10),
        attestation(&net, &key("c2"), pk("carrier"), "203.0.113.7", EPOCH, 10),
    ];
    let s = signal_with(
        &net,
        &key("carrier"),
        id,
        Choice::Oppose,
        1,
        T,
        atts.clone(),
    );
    assert_eq!(w.agg.unverified_attestations(&s.body.attestations).len(), 2);
    w.agg.apply_signal(s, T).unwrap();
    assert!(w.counted("carrier"));
    assert_eq!(units(&w, &id, Choice::Oppose), (1, WEIGHT_SCALE));
    assert!(w.agg.unverified_attestations(&atts).is_empty());
}

#[test]
fn presences_carry_attestations() {
    let mut w = World::new(2, EPOCH);
    let net = w.network;
    w.place("c1", "11.1.0.1");
    w.place("c2", "11.2.0.1");
    let atts = vec![
        attestation(&net, &key("c1"), pk("p"), "203.0.113.7", EPOCH, 10),
        attestation(&net, &key("c2"), pk("p"), "203.0.113.7", EPOCH, 10),
    ];
    let p = presence(&net, &key("p"), EPOCH, atts);
    assert_eq!(w.agg.apply_presence(p.clone()), 2);
    assert_eq!(w.agg.apply_presence(p), 0);
    assert_eq!(w.agg.population(), (1, WEIGHT_SCALE));
}

#[test]
fn only_a_subject_carries_attestations_about_itself() {
    // Two keys try to move honest node "h" to a sink address by announcing attestations
    // about it in their own presences and signals: none of them is taken.
    let (mut w, id) = world(0);
    let net = w.network;
    w.qualify("h", "198.51.7.1", 5);
    w.place("c1", "11.1.0.1");
    w.place("c2", "11.2.0.1");
    let hijack =
        |attester: &str| attestation(&net, &key(attester), pk("h"), "203.0.113.99", EPOCH, 30);
    let p = presence(&net, &key("c1"), EPOCH, vec![hijack("c1"), hijack("c2")]);
    assert_eq!(w.agg.apply_presence(p), 0);
    let s = signal_with(
        &net,
        &key("c2"),
        id,
        Choice::Support,
        1,
        T,
        vec![hijack("c1"), hijack("c2")],
    );
    w.agg.apply_signal(s, T).unwrap();
    assert_eq!(
        w.agg.add_carried_attestation(&pk("c1"), hijack("c1")),
        commons_aggregator::AttestationOutcome::NotCarriedBySubject
    );
    let status = w.agg.uptime(&pk("h")).unwrap();
    assert_eq!(status.ip, Some("198.51.7.1".parse().unwrap()));
    assert_eq!(status.uptime_epochs, 5);
}

#[test]
fn weights_within_a_netgroup_are_shared() {
    let mut w = World::new(2, EPOCH);
    for i in 0..4 {
        w.qualify(&format!("b{i}"), &format!("192.0.2.{}", i + 1), 10);
    }
    let id = w.add_proposal(1, T, T + 100);
    w.signal("b0", id, Choice::Support, 1, T);
    assert_eq!(units(&w, &id, Choice::Support), (1, WEIGHT_SCALE / 2));
    w.signal("b1", id, Choice::Support, 1, T);
    assert_eq!(units(&w, &id, Choice::Support), (2, WEIGHT_SCALE));
    // A fifth node joins the netgroup: every member's weight falls to 1/sqrt(5).
    w.qualify("b4", "192.0.2.5", 10);
    assert_eq!(units(&w, &id, Choice::Support), (2, 894_427_191));
    assert_eq!(w.agg.population(), (5, 2_236_067_977));
    assert_incremental_matches_recompute(&mut w, &id);
}

#[test]
fn the_time_lock_runs_through_the_activation_stages() {
    let (w, id) = world(3);
    let state = |now| w.agg.state(&id, now).unwrap();
    // Regtest: ready 60 s, then 30 s each of testnet, signet and mainnet opt-in.
    assert_eq!(state(T - 1), ProposalState::Pending);
    assert_eq!(state(T), ProposalState::Locked);
    assert_eq!(state(T + 99), ProposalState::Locked);
    assert_eq!(state(T + 100), ProposalState::Ready);
    assert_eq!(state(T + 160), ProposalState::Testnet);
    assert_eq!(state(T + 190), ProposalState::Signet);
    assert_eq!(state(T + 220), ProposalState::MainnetOptIn);
    assert_eq!(state(T + 250), ProposalState::MainnetDefault);
    assert_eq!(w.agg.state(&Hash32([1; 32]), T), None);
}

#[test]
fn an_override_is_latched_when_the_epoch_closes_and_stays() {
    let (mut w, id) = world(4);
    w.signal("n0", id, Choice::Override, 1, T);
    // Met now (25% of both): reported at once, latched at the epoch boundary.
    assert_eq!(w.agg.state(&id, T + 1), Some(ProposalState::Overridden));
    assert_eq!(w.agg.overridden_at(&id), None);
    w.agg.set_epoch(EPOCH + 1);
    assert_eq!(w.agg.overridden_at(&id), Some(EPOCH));
    // A withdrawal does not undo it, nor does the lock ending.
    w.signal("n0", id, Choice::Abstain, 2, T + 3);
    assert!(!w.agg.tally(&id).unwrap().override_met);
    assert_eq!(w.agg.state(&id, T + 3), Some(ProposalState::Overridden));
    assert_eq!(
        w.agg.state(&id, T + 10_000),
        Some(ProposalState::Overridden)
    );

    // A restarted node replays the messages but must restore the latch.
    let mut fresh = Aggregator::new(regtest(), w.agg.policy().clone(), w.agg.epoch());
    replay(&w.agg, &mut fresh, T + 3);
    assert_eq!(fresh.tally(&id), w.agg.tally(&id));
    assert_eq!(fresh.state(&id, T + 3), Some(ProposalState::Locked));
    assert!(fresh.restore_override(&id, EPOCH));
    assert_eq!(fresh.state(&id, T + 3), Some(ProposalState::Overridden));
    assert!(!fresh.restore_override(&Hash32([1; 32]), EPOCH));
}

/// What a restarting node does: replays stored proposals, attestations and signals.
fn replay(from: &Aggregator, to: &mut Aggregator, now: u64) {
    for (_, p) in from.proposals() {
        assert_eq!(to.add_proposal(p.clone()), Ok(ProposalOutcome::New));
    }
    for a in from.attestations() {
        to.add_attestation(a);
    }
    for s in from.signals() {
        to.apply_signal(s.clone(), now).unwrap();
    }
}

#[test]
fn an_override_needs_both_shares() {
    // Four nodes in one /24 weigh 2, six alone weigh 6: 40% of nodes, 25% of weight.
    let mut w = World::new(2, EPOCH);
    for i in 0..4 {
        w.qualify(&format!("b{i}"), &format!("192.0.2.{}", i + 1), 10);
    }
    for i in 0..6 {
        w.qualify(&format!("s{i}"), &format!("198.51.{i}.1"), 10);
    }
    let id = w.add_proposal(2, T, T + 200); // tier 2: 30% of both
    for i in 0..4 {
        w.signal(&format!("b{i}"), id, Choice::Override, 1, T);
    }
    let t = w.agg.tally(&id).unwrap();
    assert_eq!(
        (t.override_node_share, t.override_weight_share),
        (0.4, 0.25)
    );
    assert!(!t.override_met);
    w.agg.set_epoch(EPOCH + 1);
    assert_eq!(w.agg.state(&id, T + 3), Some(ProposalState::Locked));
    // One lone node more: 5 of 10 nodes, weight 3 of 8.
    w.signal("s0", id, Choice::Override, 1, T + 3);
    let t = w.agg.tally(&id).unwrap();
    assert_eq!(
        (t.override_node_share, t.override_weight_share),
        (0.5, 0.375)
    );
    assert!(t.override_met);
}

#[test]
fn the_verdict_is_frozen_after_the_lock() {
    // The lock [T, T + 36) spans epochs 100 to 117; the verdict is final when epoch 118
    // closes. One override among five is 20%, under tier 1's 25%.
    let (mut w, id) = world_locked(5, T, T + 36);
    w.signal("n0", id, Choice::Override, 1, T);
    w.agg.set_epoch(EPOCH + 19);
    assert_eq!(w.agg.state(&id, T + 38), Some(ProposalState::Ready));
    // Later only n0's attestations are renewed; the others expire at epoch 130. Override is
    // then all of the population, but the lock is long over: the verdict stands.
    let net = w.network;
    for i in 0..2 {
        let witness = format!("witness {i}");
        let a = attestation(&net, &key(&witness), pk("n0"), "198.51.0.1", EPOCH + 20, 10);
        w.agg.add_attestation(a);
        let ip = format!("11.{}.0.1", 100 + i);
        let b = attestation(&net, &key("placer"), pk(&witness), &ip, EPOCH + 20, 1);
        w.agg.add_attestation(b);
    }
    w.agg.set_epoch(EPOCH + 35);
    assert_eq!(w.agg.population().0, 1);
    assert!(w.agg.tally(&id).unwrap().override_met);
    assert_eq!(
        w.agg.state(&id, T + 36 + 150),
        Some(ProposalState::MainnetDefault)
    );
    assert_eq!(w.agg.overridden_at(&id), None);
}

#[test]
fn the_final_verdict_is_taken_in_the_epoch_after_the_lock() {
    // The lock ends at T + 36, the start of epoch 118: signals cast before it that arrive
    // during epoch 118 still count.
    let (mut w, id) = world_locked(4, T, T + 36);
    w.agg.set_epoch(EPOCH + 18);
    w.signal("n0", id, Choice::Override, 1, T + 35);
    assert_eq!(w.agg.state(&id, T + 37), Some(ProposalState::Overridden));
    w.agg.set_epoch(EPOCH + 19);
    assert_eq!(w.agg.overridden_at(&id), Some(EPOCH + 18));
    assert_eq!(w.agg.state(&id, T + 1000), Some(ProposalState::Overridden));

    // One epoch later is too late.
    let (mut w, id) = world_locked(4, T, T + 36);
    w.agg.set_epoch(EPOCH + 19);
    w.signal("n0", id, Choice::Override, 1, T + 35);
    assert_eq!(w.agg.state(&id, T + 39), Some(ProposalState::Ready));
    w.agg.set_epoch(EPOCH + 20);
    assert_eq!(w.agg.overridden_at(&id), None);
}

#[test]
fn override_signals_before_the_lock_count_once_it_starts() {
    let mut w = World::new(2, EPOCH);
    w.qualify("n0", "198.51.0.1", 10);
    let id = w.add_proposal(1, T + 20, T + 120);
    w.signal("n0", id, Choice::Override, 1, T);
    assert_eq!(w.agg.state(&id, T), Some(ProposalState::Pending));
    w.agg.set_epoch(EPOCH + 5);
    assert_eq!(
        w.agg.overridden_at(&id),
        None,
        "epoch 105 starts before the lock"
    );
    w.agg.set_epoch(EPOCH + 10);
    assert_eq!(w.agg.overridden_at(&id), Some(EPOCH + 10));
}

#[test]
fn an_emergency_proposal_has_no_lock() {
    let mut w = World::new(2, EPOCH);
    w.qualify("n0", "198.51.0.1", 10);
    let spec = regtest();
    let p = proposal(&spec, 4, "emergency fix", T + 10, T + 10, &[0, 1, 2, 3]);
    let id = p.id(&w.network);
    assert_eq!(w.agg.add_proposal(p.clone()), Ok(ProposalOutcome::New));
    assert_eq!(w.agg.add_proposal(p), Ok(ProposalOutcome::Duplicate));
    w.signal("n0", id, Choice::Override, 1, T);
    assert!(
        w.agg.tally(&id).unwrap().override_met,
        "tier 4 needs 100%, which it has"
    );
    assert_eq!(w.agg.state(&id, T), Some(ProposalState::Pending));
    assert_eq!(w.agg.state(&id, T + 10), Some(ProposalState::Ready));
    w.agg.set_epoch(EPOCH + 5);
    w.agg.set_epoch(EPOCH + 6);
    assert_eq!(w.agg.overridden_at(&id), None);
    let s = signal(&w.network, &key("n0"), id, Choice::Override, 2, T + 10);
    assert!(matches!(
        w.agg.apply_signal(s, T + 10),
        Err(SignalRejection::AfterLockEnd { .. })
    ));
}

#[test]
fn invalid_proposals_are_refused() {
    let mut w = World::new(2, EPOCH);
    let spec = regtest();
    let p = proposal(&spec, 1, "two signatures", T, T + 100, &[0, 1]);
    assert!(matches!(
        w.agg.add_proposal(p),
        Err(ProposalError::BelowThreshold(_))
    ));
    assert!(w.agg.proposals().is_empty());
}

#[test]
fn proposals_are_listed_by_lock_start() {
    let mut w = World::new(2, EPOCH);
    let late = w.add_proposal(1, T + 50, T + 150);
    let early = w.add_proposal(1, T, T + 100);
    let ids: Vec<Hash32> = w.agg.proposals().into_iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![early, late]);
    assert!(w.agg.proposal(&early).is_some());
}

#[test]
fn a_held_signal_is_recognised_by_its_encoding_until_it_is_replaced() {
    let (mut w, id) = world(1);
    let first = signal(&w.network, &key("n0"), id, Choice::Support, 1, T);
    let bytes = first.encode();
    assert!(!w.agg.holds_signal_encoding(&bytes));
    w.agg.apply_signal(first, T).unwrap();
    assert!(w.agg.holds_signal_encoding(&bytes));
    assert!(!w.agg.holds_signal_encoding(&bytes[..10]));

    let second = signal(&w.network, &key("n0"), id, Choice::Oppose, 2, T);
    let second_bytes = second.encode();
    w.agg.apply_signal(second, T).unwrap();
    assert!(w.agg.holds_signal_encoding(&second_bytes));
    assert!(
        !w.agg.holds_signal_encoding(&bytes),
        "a replaced signal is no longer held, so it goes through the checks (and is a replay)"
    );
}

#[test]
fn evidence_voids_a_latch_the_equivocators_override_helped_reach() {
    // n0's override latches the proposal (25% of four nodes) on a node that had not yet got
    // the evidence against n0; a node that had the evidence first never latches.
    let (w0, id) = world(4);
    let net = w0.network;
    let a = signal(&net, &key("n0"), id, Choice::Override, 2, T);
    let b = signal(&net, &key("n0"), id, Choice::Support, 2, T);
    let evidence = Equivocation::new(a.clone(), b.clone()).unwrap();

    let (mut first_signal, _) = world(4);
    first_signal.agg.apply_signal(a.clone(), T).unwrap();
    first_signal.agg.set_epoch(EPOCH + 1);
    assert_eq!(first_signal.agg.overridden_at(&id), Some(EPOCH));
    first_signal
        .agg
        .apply_evidence(evidence.clone(), T + 2)
        .unwrap();
    assert_eq!(first_signal.agg.overridden_at(&id), None);
    assert_eq!(
        first_signal.agg.state(&id, T + 3),
        Some(ProposalState::Locked)
    );

    let (mut first_evidence, _) = world(4);
    first_evidence
        .agg
        .apply_evidence(evidence.clone(), T)
        .unwrap();
    first_evidence.agg.set_epoch(EPOCH + 1);
    assert_eq!(first_evidence.agg.overridden_at(&id), None);
    assert_eq!(
        first_evidence.agg.tally(&id),
        first_signal.agg.tally(&id),
        "both orders end in the same tally"
    );

    // n1's override met the thresholds without n0's (25% of four): the latch stands, as
    // taken again without n0, even once the override epochs are over.
    let (mut enough, _) = world(4);
    enough.agg.apply_signal(a.clone(), T).unwrap();
    enough.signal("n1", id, Choice::Override, 1, T);
    enough.agg.set_epoch(EPOCH + 1);
    enough.agg.set_epoch(EPOCH + 5_000);
    enough
        .agg
        .apply_evidence(evidence.clone(), T + 10_000)
        .unwrap();
    assert_eq!(enough.agg.overridden_at(&id), Some(EPOCH));

    // Void while the override epochs last: an epoch closing with enough overrides latches
    // again.
    let (mut again, _) = world(4);
    again.agg.apply_signal(a.clone(), T).unwrap();
    again.agg.set_epoch(EPOCH + 1);
    again.agg.apply_evidence(evidence.clone(), T + 2).unwrap();
    assert_eq!(again.agg.overridden_at(&id), None);
    again.signal("n1", id, Choice::Override, 1, T + 3);
    again.agg.set_epoch(EPOCH + 2);
    assert_eq!(again.agg.overridden_at(&id), Some(EPOCH + 1));

    // A latch n0 had no part in stays: evidence against a signer that supported.
    let (mut other, _) = world(4);
    other.agg.apply_signal(b.clone(), T).unwrap();
    other.signal("n1", id, Choice::Override, 1, T);
    other.agg.set_epoch(EPOCH + 1);
    other.agg.apply_evidence(evidence.clone(), T + 2).unwrap();
    assert_eq!(other.agg.overridden_at(&id), Some(EPOCH));

    // After a restart the latch does not know who reached it: the held signal decides.
    let (mut fresh, _) = world(4);
    fresh.agg.apply_signal(a, T).unwrap();
    assert!(fresh.agg.restore_override(&id, EPOCH));
    fresh.agg.apply_evidence(evidence, T + 2).unwrap();
    assert_eq!(fresh.agg.overridden_at(&id), None);
}
