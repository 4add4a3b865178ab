//! The simulator and real daemons give identical tallies for the same messages.
//!
//! One fixed set of signed messages (a maintainer-signed regtest proposal; presences of
//! eleven generated keys carrying uptime attestations about them, at addresses spread over
//! five /30 netgroups of 127.0.0.x, with a shared address, a netgroup of three, an
//! under-qualified key and one vouched for by a single netgroup; their signals, one replaced
//! by a later sequence; one signal with a broken signature) goes through the simulator's
//! aggregator path (`commons_sim::replay`) and, as the very same bytes, over gossip into
//! three real `commonsd` processes on loopback. Every daemon's `gettally` must equal the
//! simulator's tally.
//!
//! The daemons and the in-test publishing peer all live in 127.0.0.200/30 (200 to 203), one
//! netgroup: they attest each other, but attesters from one netgroup never make a quorum of
//! two, so none of them qualifies and the population is exactly the fixed set. The made-up
//! addresses of the generated keys lie in 127.0.0.204-231's /30s; nothing listens there.
//! Needs `commonsd` built (`cargo build --workspace --bins`).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use commons_e2e::{TestNode, TestPeer, now, scenario, start_mesh, wait_until};
use commons_p2p::{Multiaddr, P2pEvent, TopicKind};
use commons_signaling::spec::regtest_maintainer_key;
use commons_signaling::{
    AttestationBody, BoundedString, BoundedVec, Choice, Hash32, MessageKind, NetworkSpec,
    PROTOCOL_VERSION, Presence, PresenceBody, Proposal, ProposalBody, SecretKey, Signal,
    SignalBody, Signed, UptimeAttestation, WireIp,
};
use commons_sim::replay::{Replayed, replay};
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
        member(9, [127, 0, 0, 224]),  // vouched for by netgroup A only: no quorum of two
        member(10, [127, 0, 0, 228]), // E: counts, never signals
    ];
    let netgroup = |ip: Ipv4Addr| ip.octets()[3] / 4;
    // One attester per other netgroup, all of which are attested themselves.
    let anchors = [0usize, 3, 5, 6, 10];
    let attest = |attester: &Member, subject: &Member, seen: u32| -> UptimeAttestation {
        let body = AttestationBody {
            version: PROTOCOL_VERSION,
            attester: attester.key.public_key(),
            subject: subject.key.public_key(),
            subject_ip: WireIp(IpAddr::V4(subject.ip)),
            epoch,
            seen_epochs: seen,
        };
        Signed::sign(body, &attester.key, &network)
    };
    let mut out = vec![(MessageKind::Proposal, proposal.encode())];
    for (i, subject) in m.iter().enumerate() {
        let attestations: Vec<UptimeAttestation> = match i {
            9 => vec![attest(&m[0], subject, 6), attest(&m[1], subject, 6)],
            _ => {
                let seen = match i {
                    3 => 6,
                    4 => 5,
                    8 => 2,
                    _ => 4 + i as u32,
                };
                anchors
                    .iter()
                    .filter(|&&a| netgroup(m[a].ip) != netgroup(subject.ip))
                    .take(3)
                    .map(|&a| attest(&m[a], subject, seen))
                    .collect()
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
        .verdicts
        .iter()
        .enumerate()
        .filter(|(_, v)| matches!(v, Replayed::Rejected(_)))
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
