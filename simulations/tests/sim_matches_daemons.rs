//! The simulator and real daemons give identical tallies for the same messages.
//!
//! One fixed set of signed messages (a maintainer-signed regtest proposal; presences of
//! eleven generated keys carrying the regtest measurers' uptime attestations about them, at
//! addresses spread over five /30 netgroups of 127.0.0.x, with a shared address, a netgroup of
//! three, an under-qualified key and one measured by a single measurer, below the measurer
//! quorum of two; their signals, one replaced
//! by a later sequence; one signal with a broken signature) goes through the simulator's
//! aggregator path (`commons_sim::replay`) and, as the very same bytes, over gossip into
//! three real `commonsd` processes on loopback. Every daemon's `gettally` must equal the
//! simulator's tally.
//!
//! The daemons and the in-test publishing peer all live in 127.0.0.200/30 (200 to 203). None
//! of them is a measurer and no measurer runs, so none of them qualifies (they attest each
//! other, which counts for nothing under regtest's measurer rule) and the population is
//! exactly the fixed set. The made-up
//! addresses of the generated keys lie in 127.0.0.204-231's /30s; nothing listens there.
//! Needs `commonsd` built (`cargo build --workspace --bins`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use commons_aggregator::Reason;
use commons_e2e::{NodeSpec, TestNode, TestPeer, now, scenario, start_mesh, wait_until};
use commons_p2p::{Multiaddr, P2pEvent, TopicKind};
use commons_signaling::spec::{REGTEST_MEASURERS, regtest_maintainer_key, regtest_measurer_key};
use commons_signaling::{
    AttestationBody, BoundedString, BoundedVec, Choice, Hash32, MessageKind, NetworkSpec,
    PROTOCOL_VERSION, Presence, PresenceBody, Proposal, ProposalBody, SecretKey, Signal,
    SignalBody, Signed, UptimeAttestation, WireIp,
};
use commons_sim::replay::replay;
use serde_json::{Value, json};

const DAEMONS: [&str; 3] = ["127.0.0.200", "127.0.0.201", "127.0.0.202"];
const PUBLISHER: &str = "127.0.0.203";
const WAIT: Duration = Duration::from_secs(60);

/// A generated key: its made-up address and how its attesters saw it.
struct Member {
    key: SecretKey,
    ip: Ipv4Addr,
}

fn member(i: usize, ip: [u8; 4]) -> Member {
    Member {
        key: SecretKey::from_seed(&format!("sim-matches-daemons member {i}")),
        ip: Ipv4Addr::from(ip),
    }
}

/// The fixed message set, in publishing order, with the proposal id.
fn messages(t: u64) -> (Hash32, Vec<(MessageKind, Vec<u8>)>) {
    let spec = NetworkSpec::regtest();
    let network = spec.network_id();
    let epoch = spec.epoch_at(t);

    let mut proposal = Proposal::new(ProposalBody {
        version: PROTOCOL_VERSION,
        tier: 1,
        title: BoundedString::new("sim matches daemons").unwrap(),
        reference: BoundedString::new("https://example.invalid/commons-signal/pull/5").unwrap(),
        lock_start: t - 1,
        lock_end: t + 600,
    });
    for i in 0..3 {
        proposal
            .add_signature(&regtest_maintainer_key(i), &network)
            .unwrap();
    }
    let id = proposal.id(&network);

    // Netgroups (/30): A = .204-.207, B = .208-.211, C = .212-.215, D = .216-.219,
    // E = .228-.231; .220 and .224 hold the two that do not qualify.
    let m = [
        member(0, [127, 0, 0, 204]),  // A
        member(1, [127, 0, 0, 205]),  // A
        member(2, [127, 0, 0, 206]),  // A: a netgroup of three, each weighs 1/sqrt(3)
        member(3, [127, 0, 0, 208]),  // B: shares its address with 4 and has the longer uptime
        member(4, [127, 0, 0, 208]),  // B: loses the address to 3 (IP dedup)
        member(5, [127, 0, 0, 212]),  // C
        member(6, [127, 0, 0, 216]),  // D
        member(7, [127, 0, 0, 217]),  // D
        member(8, [127, 0, 0, 220]),  // seen 2 epochs, below the regtest minimum of 3
        member(9, [127, 0, 0, 224]),  // measured by one measurer only: no quorum of two
        member(10, [127, 0, 0, 228]), // E: counts, never signals
    ];
    // The well-known regtest measurers vouch; a quorum of two must agree on an address.
    let measurers: Vec<SecretKey> = (0..REGTEST_MEASURERS).map(regtest_measurer_key).collect();
    let attest = |measurer: &SecretKey, subject: &Member, seen: u32| -> UptimeAttestation {
        let body = AttestationBody {
            version: PROTOCOL_VERSION,
            attester: measurer.public_key(),
            subject: subject.key.public_key(),
            subject_ip: WireIp(IpAddr::V4(subject.ip)),
            epoch,
            seen_epochs: seen,
        };
        Signed::sign(body, measurer, &network)
    };
    let mut out = vec![(MessageKind::Proposal, proposal.encode())];
    for (i, subject) in m.iter().enumerate() {
        let attestations: Vec<UptimeAttestation> = match i {
            9 => vec![attest(&measurers[0], subject, 6)],
            _ => {
                let seen = match i {
                    3 => 6,
                    4 => 5,
                    8 => 2,
                    _ => 4 + i as u32,
                };
                measurers.iter().map(|k| attest(k, subject, seen)).collect()
            }
        };
        let body = PresenceBody {
            version: PROTOCOL_VERSION,
            node: subject.key.public_key(),
            epoch,
            attestations: BoundedVec::truncating(attestations),
        };
        let presence: Presence = Signed::sign(body, &subject.key, &network);
        out.push((MessageKind::Presence, presence.encode()));
    }
    let signal = |who: &Member, choice: Choice, sequence: u64| -> Vec<u8> {
        let body = SignalBody {
            version: PROTOCOL_VERSION,
            proposal: id,
            choice,
            sequence,
            time: t,
            signer: who.key.public_key(),
            attestations: BoundedVec::default(),
        };
        let signed: Signal = Signed::sign(body, &who.key, &network);
        signed.encode()
    };
    let casts = [
        (0, Choice::Support, 1),
        (1, Choice::Oppose, 1),
        (2, Choice::Override, 1),
        (3, Choice::Override, 1),
        (4, Choice::Support, 1),
        (5, Choice::Support, 1),
        (5, Choice::Override, 2),
        (6, Choice::Abstain, 1),
        (7, Choice::Oppose, 1),
        (8, Choice::Override, 1),
        (9, Choice::Support, 1),
    ];
    for (who, choice, sequence) in casts {
        out.push((MessageKind::Signal, signal(&m[who], choice, sequence)));
    }
    // A forged override in 10's name: the signature does not verify.
    let mut forged = signal(&m[10], Choice::Override, 1);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    out.push((MessageKind::Signal, forged));
    (id, out)
}

/// The fields of `gettally` that the tally rule decides, from a node's answer.
fn essence(tally: &Value) -> Value {
    json!({
        "choices": tally["choices"],
        "total_nodes": tally["total_nodes"],
        "total_weight": tally["total_weight"],
        "override_weight_share": tally["override_weight_share"],
        "override_node_share": tally["override_node_share"],
        "override_met": tally["override_met"],
        "signers": tally["signers"],
        "uncounted_signers": tally["uncounted_signers"],
    })
}

/// The same fields from the simulator's tally.
fn sim_essence(tally: &commons_aggregator::Tally) -> Value {
    let mut choices = serde_json::Map::new();
    for c in &tally.choices {
        choices.insert(
            c.choice.name().to_string(),
            json!({ "weight": c.weight, "nodes": c.nodes }),
        );
    }
    essence(&json!({
        "choices": choices,
        "total_nodes": tally.total_nodes,
        "total_weight": tally.total_weight,
        "override_weight_share": tally.override_weight_share,
        "override_node_share": tally.override_node_share,
        "override_met": tally.override_met,
        "signers": tally.signers,
        "uncounted_signers": tally.uncounted_signers,
    }))
}

/// The publishing peer: validates nothing and answers no request.
fn start_publisher(bootstrap: Multiaddr) -> TestPeer {
    TestPeer::start(PUBLISHER, vec![bootstrap], |mut events, _| async move {
        while let Some(event) = events.recv().await {
            if let P2pEvent::InboundSync { channel, .. } = event {
                drop(channel);
            }
        }
    })
}

fn topic(kind: MessageKind) -> TopicKind {
    match kind {
        MessageKind::Proposal => TopicKind::Proposals,
        MessageKind::Presence => TopicKind::Presences,
        MessageKind::Signal => TopicKind::Signals,
        other => panic!("no gossip topic for {other:?} in this test"),
    }
}

fn tally(node: &TestNode, id: &str) -> Result<Value, String> {
    node.rpc("gettally", json!({ "id": id }))
        .map_err(|e| e.to_string())
}

#[test]
fn simulator_and_daemons_give_identical_tallies() {
    scenario("sim_matches_daemons: three commonsd on 127.0.0.200-202, a publisher on .203");
    let nodes = start_mesh("d", &DAEMONS);
    let publisher = start_publisher(nodes[0].multiaddr().unwrap().parse().unwrap());
    wait_until(WAIT, "the publisher in the gossip meshes", || {
        let meshes = [
            TopicKind::Proposals,
            TopicKind::Presences,
            TopicKind::Signals,
        ]
        .map(|t| publisher.mesh(t));
        if meshes.iter().all(|&m| m > 0) {
            Ok(())
        } else {
            Err(format!("mesh peers per topic: {meshes:?}"))
        }
    });

    // Built now, so every attestation, presence and signal is current on regtest's 2 s
    // epochs for the rest of the test (the window is 30 epochs).
    let t = now();
    let (id, messages) = messages(t);
    let id_hex = id.to_hex();

    let sim = replay(&NetworkSpec::regtest(), &messages, t);
    let rejected: Vec<usize> = sim
        .verdicts()
        .iter()
        .enumerate()
        .filter(|(_, v)| **v == commons_aggregator::Verdict::Reject)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        rejected,
        vec![messages.len() - 1],
        "only the forged signal is invalid"
    );
    let expected = sim.tally(&id).expect("the proposal was applied");
    // What the rule must give, by hand: 8 counted (3 in A, 3 on .208 with 4 deduplicated,
    // 5, 6 and 7, 10), 10 signers of which 4 (lost the address), 8 and 9 do not count.
    assert_eq!(expected.total_nodes, 8, "{expected:?}");
    assert_eq!(expected.signers, 10, "{expected:?}");
    assert_eq!(expected.uncounted_signers, 3, "{expected:?}");
    let want = sim_essence(&expected);
    scenario(&format!("sim_matches_daemons: simulator's tally {want}"));

    let (proposal, rest) = messages.split_first().unwrap();
    publisher.publish(topic(proposal.0), proposal.1.clone());
    wait_until(WAIT, "the proposal on every daemon", || {
        for n in &nodes {
            tally(n, &id_hex)?;
        }
        Ok(())
    });
    for (kind, bytes) in rest {
        publisher.publish(topic(*kind), bytes.clone());
    }

    let got = wait_until(
        WAIT,
        "every daemon's tally equal to the simulator's",
        || {
            let mut all = Vec::new();
            for n in &nodes {
                let got = essence(&tally(n, &id_hex)?);
                if got != want {
                    return Err(format!("{}: {got}", n.name));
                }
                all.push(got);
            }
            Ok(all)
        },
    );
    assert_eq!(got.len(), DAEMONS.len());
    for n in &nodes {
        let t = tally(n, &id_hex).unwrap();
        assert_eq!(essence(&t), want, "{}", n.name);
    }
}

// ------------------------------------------------------------------ verdict agreement

/// One message of the verdict corpus: its kind, its bytes, which publisher sends it (so that
/// no publisher sends enough invalid messages to be graylisted), and the reason both sides
/// must give it.
struct Entry {
    kind: MessageKind,
    bytes: Vec<u8>,
    publisher: usize,
    want: Reason,
}

const VERDICT_DAEMON: &str = "127.0.0.232";
/// The publishers: the first sends the valid messages, the last only the forged signal (a
/// bad signature gets its sender banned at once, and what it sent after dropped unchecked),
/// the others two invalid ones each.
const VERDICT_PUBLISHERS: [&str; 6] = [
    "127.0.0.233",
    "127.0.0.234",
    "127.0.0.235",
    "127.0.0.240",
    "127.0.0.241",
    "127.0.0.242",
];
/// The publisher of the forged signal.
const FORGER: usize = VERDICT_PUBLISHERS.len() - 1;

/// The verdict corpus, in phases: within a phase every verdict is independent of the order
/// of arrival (the daemon verifies several messages at once), and each phase is published
/// only once the daemon decided the one before.
fn verdict_corpus(t: u64) -> (Hash32, Vec<Vec<Entry>>) {
    let spec = NetworkSpec::regtest();
    let network = spec.network_id();
    let epoch = spec.epoch_at(t);
    let (id, base) = messages(t);
    let entry = |kind, bytes: Vec<u8>, publisher, want| Entry {
        kind,
        bytes,
        publisher,
        want,
    };
    let signal_by = |key: &SecretKey, proposal: Hash32, choice, sequence, time, version| {
        let body = SignalBody {
            version,
            proposal,
            choice,
            sequence,
            time,
            signer: key.public_key(),
            attestations: BoundedVec::default(),
        };
        Signed::sign(body, key, &network)
    };
    let member_key = |i: usize| SecretKey::from_seed(&format!("sim-matches-daemons member {i}"));
    let presence_of = |key: &SecretKey, epoch: u64, attestations: Vec<UptimeAttestation>| {
        let body = PresenceBody {
            version: PROTOCOL_VERSION,
            node: key.public_key(),
            epoch,
            attestations: BoundedVec::truncating(attestations),
        };
        let presence: Presence = Signed::sign(body, key, &network);
        presence.encode()
    };
    let proposal_titled = |title: &str, signers: usize| {
        let mut proposal = Proposal::new(ProposalBody {
            version: PROTOCOL_VERSION,
            tier: 1,
            title: BoundedString::new(title).unwrap(),
            reference: BoundedString::new("https://example.invalid/commons-signal/pull/5").unwrap(),
            lock_start: t - 1,
            lock_end: t + 600,
        });
        for i in 0..signers {
            proposal
                .add_signature(&regtest_maintainer_key(i), &network)
                .unwrap();
        }
        proposal.encode()
    };

    // Phase 1: the proposal. Phase 2: the presences and the first signals of the tally test
    // (its forged signal included). Phase 3: the later signal of member 5.
    let (proposal, rest) = base.split_first().unwrap();
    let phase1 = vec![entry(proposal.0, proposal.1.clone(), 0, Reason::New)];
    let mut phase2 = Vec::new();
    let mut phase3 = Vec::new();
    let last = rest.len() - 1;
    for (i, (kind, bytes)) in rest.iter().enumerate() {
        let later = *kind == MessageKind::Signal
            && Signal::decode(bytes).is_ok_and(|s| s.body.sequence > 1);
        if i == last {
            phase2.push(entry(*kind, bytes.clone(), FORGER, Reason::BadSignature));
        } else if later {
            phase3.push(entry(*kind, bytes.clone(), 0, Reason::New));
        } else {
            phase2.push(entry(*kind, bytes.clone(), 0, Reason::New));
        }
    }

    // Phase 4: what depends on the held state, now settled.
    let mut phase4 = Vec::new();
    // The same proposal with one more maintainer signature: other bytes, the same id.
    phase4.push(entry(
        MessageKind::Proposal,
        proposal_titled("sim matches daemons", 4),
        0,
        Reason::Duplicate,
    ));
    // Member 5 signalled with sequence 2; a sequence 1 is a replay.
    let replay = signal_by(&member_key(5), id, Choice::Oppose, 1, t, PROTOCOL_VERSION);
    phase4.push(entry(
        MessageKind::Signal,
        replay.encode(),
        0,
        Reason::Replay,
    ));
    // Member 0's held signal with a body byte changed keeps its signature: a duplicate
    // dropped before decoding.
    let held_by = |i: usize| {
        base.iter()
            .find(|(k, b)| {
                *k == MessageKind::Signal
                    && Signal::decode(b).is_ok_and(|s| s.body.signer == member_key(i).public_key())
            })
            .expect("the member signalled")
            .1
            .clone()
    };
    let held = held_by(0);
    let mut changed = held.clone();
    changed[4] ^= 0x01;
    phase4.push(entry(MessageKind::Signal, changed, 0, Reason::Duplicate));
    // Member 7 holds (oppose, 1); another sequence-1 signal with smaller bytes loses.
    let held7 = held_by(7);
    let loser = (1..64)
        .flat_map(|dt| {
            [
                Choice::Oppose,
                Choice::Support,
                Choice::Override,
                Choice::Abstain,
            ]
            .map(|c| signal_by(&member_key(7), id, c, 1, t - dt, PROTOCOL_VERSION).encode())
        })
        .find(|b| *b < held7)
        .expect("some signal encodes below the held one");
    phase4.push(entry(MessageKind::Signal, loser, 0, Reason::Equivocation));
    // Member 0's presence of the epoch before the held one.
    phase4.push(entry(
        MessageKind::Presence,
        presence_of(&member_key(0), epoch - 1, Vec::new()),
        0,
        Reason::Superseded,
    ));

    // Phase 5: decided whatever else is held.
    let stranger = SecretKey::from_seed("sim-matches-daemons stranger");
    let about_other = {
        let body = AttestationBody {
            version: PROTOCOL_VERSION,
            attester: member_key(3).public_key(),
            subject: member_key(2).public_key(),
            subject_ip: WireIp(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 206))),
            epoch,
            seen_epochs: 9,
        };
        let a: UptimeAttestation = Signed::sign(body, &member_key(3), &network);
        let body = SignalBody {
            version: PROTOCOL_VERSION,
            proposal: id,
            choice: Choice::Override,
            sequence: 1,
            time: t,
            signer: stranger.public_key(),
            attestations: BoundedVec::truncating(vec![a]),
        };
        let s: Signal = Signed::sign(body, &stranger, &network);
        s.encode()
    };
    let phase5 = vec![
        entry(
            MessageKind::Signal,
            signal_by(
                &stranger,
                Hash32([7; 32]),
                Choice::Support,
                1,
                t,
                PROTOCOL_VERSION,
            )
            .encode(),
            0,
            Reason::UnknownProposal,
        ),
        entry(
            MessageKind::Signal,
            signal_by(&stranger, id, Choice::Support, 1, t + 300, PROTOCOL_VERSION).encode(),
            0,
            Reason::TooEarly,
        ),
        entry(
            MessageKind::Signal,
            signal_by(&stranger, id, Choice::Support, 1, t, PROTOCOL_VERSION + 1).encode(),
            0,
            Reason::UnknownVersion,
        ),
        entry(
            MessageKind::Presence,
            presence_of(&stranger, epoch - 40, Vec::new()),
            0,
            Reason::Stale,
        ),
        entry(
            MessageKind::Presence,
            presence_of(&stranger, epoch + 100, Vec::new()),
            0,
            Reason::TooEarly,
        ),
        entry(
            MessageKind::Signal,
            signal_by(
                &stranger,
                id,
                Choice::Override,
                1,
                t + 700,
                PROTOCOL_VERSION,
            )
            .encode(),
            1,
            Reason::AfterLockEnd,
        ),
        entry(
            MessageKind::Signal,
            b"not a signal".to_vec(),
            2,
            Reason::Malformed,
        ),
        entry(
            MessageKind::Signal,
            vec![0xa5; MessageKind::Signal.max_bytes() + 1],
            2,
            Reason::TooLarge,
        ),
        entry(
            MessageKind::Signal,
            about_other,
            3,
            Reason::AttestationNotAboutCarrier,
        ),
        entry(
            MessageKind::Proposal,
            proposal_titled("one signature is not a threshold", 1),
            3,
            Reason::InvalidProposal,
        ),
        entry(
            MessageKind::Presence,
            b"not a presence".to_vec(),
            4,
            Reason::Malformed,
        ),
        entry(
            MessageKind::Release,
            b"not a release".to_vec(),
            4,
            Reason::Malformed,
        ),
    ];
    (id, vec![phase1, phase2, phase3, phase4, phase5])
}

fn gossip_topic(kind: MessageKind) -> TopicKind {
    match kind {
        MessageKind::Release => TopicKind::Releases,
        other => topic(other),
    }
}

/// The daemon's `commons_messages_verdicts_total` series: (kind, verdict, reason) -> count,
/// the ones at zero left out.
fn daemon_verdicts(node: &TestNode) -> Result<BTreeMap<(String, String, String), u64>, String> {
    let text = node.metrics().map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("commons_messages_verdicts_total{") else {
            continue;
        };
        let (labels, value) = rest.split_once("} ").ok_or(line.to_string())?;
        let label = |name: &str| {
            labels
                .split(',')
                .find_map(|l| l.strip_prefix(&format!("{name}=\""))?.strip_suffix('"'))
                .unwrap_or_default()
                .to_string()
        };
        let count = value.trim().parse::<f64>().map_err(|e| e.to_string())? as u64;
        if count > 0 {
            out.insert((label("kind"), label("verdict"), label("reason")), count);
        }
    }
    Ok(out)
}

/// The same counts from the replay's reasons.
fn replay_verdicts(
    messages: &[(MessageKind, Vec<u8>)],
    reasons: &[Reason],
) -> BTreeMap<(String, String, String), u64> {
    let mut out = BTreeMap::new();
    for ((kind, _), reason) in messages.iter().zip(reasons) {
        *out.entry((
            kind.name().to_string(),
            reason.verdict().label().to_string(),
            reason.label().to_string(),
        ))
        .or_default() += 1;
    }
    out
}

#[test]
fn daemon_and_replay_give_every_message_the_same_verdict() {
    scenario("verdict agreement: one commonsd on 127.0.0.232, six publishers");
    let node = TestNode::start(
        "verdicts",
        NodeSpec {
            ip: VERDICT_DAEMON.into(),
            bootstrap: Vec::new(),
            measurer: None,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let bootstrap: Multiaddr = node.multiaddr().unwrap().parse().unwrap();
    let publishers: Vec<TestPeer> = VERDICT_PUBLISHERS
        .iter()
        .map(|ip| {
            TestPeer::start(ip, vec![bootstrap.clone()], |mut events, _| async move {
                while let Some(event) = events.recv().await {
                    if let P2pEvent::InboundSync { channel, .. } = event {
                        drop(channel);
                    }
                }
            })
        })
        .collect();
    wait_until(
        WAIT,
        "every publisher in the daemon's gossip meshes",
        || {
            for (i, p) in publishers.iter().enumerate() {
                let meshes = TopicKind::ALL.map(|t| p.mesh(t));
                if meshes.contains(&0) {
                    return Err(format!("publisher {i}: mesh peers per topic {meshes:?}"));
                }
            }
            Ok(())
        },
    );

    let t = now();
    let (id, phases) = verdict_corpus(t);
    let messages: Vec<(MessageKind, Vec<u8>)> = phases
        .iter()
        .flatten()
        .map(|e| (e.kind, e.bytes.clone()))
        .collect();

    // The simulator's side, pinned: a change of either side's decision for any one kind of
    // message shows here or in the comparison with the daemon below.
    let sim = replay(&NetworkSpec::regtest(), &messages, t);
    let want: Vec<Reason> = phases.iter().flatten().map(|e| e.want).collect();
    assert_eq!(sim.reasons, want, "the replay's reasons");
    let kinds_covered: BTreeSet<&str> = messages.iter().map(|(k, _)| k.name()).collect();
    assert_eq!(kinds_covered.len(), 4, "{kinds_covered:?}");

    let mut sent = 0u64;
    for (n, phase) in phases.iter().enumerate() {
        for e in phase {
            publishers[e.publisher].publish(gossip_topic(e.kind), e.bytes.clone());
        }
        sent += phase.len() as u64;
        wait_until(
            WAIT,
            &format!("the daemon's verdicts on phase {}", n + 1),
            || {
                let decided: u64 = daemon_verdicts(&node)?.values().sum();
                if decided == sent {
                    Ok(())
                } else {
                    Err(format!("{decided} of {sent} decided"))
                }
            },
        );
    }

    let daemon = daemon_verdicts(&node).unwrap();
    let expected = replay_verdicts(&messages, &sim.reasons);
    assert_eq!(
        daemon, expected,
        "the daemon's verdicts against the replay's"
    );
    for verdict in ["accept", "reject", "ignore"] {
        let by_verdict: u64 = daemon
            .iter()
            .filter(|((_, v, _), _)| v == verdict)
            .map(|(_, c)| c)
            .sum();
        assert!(by_verdict > 0, "the corpus has {verdict}ed messages");
    }
    let want_tally = sim_essence(&sim.tally(&id).expect("the proposal was applied"));
    assert_eq!(essence(&tally(&node, &id.to_hex()).unwrap()), want_tally);
}
