//! Equivocation evidence between real `commonsd` processes: a raw libp2p peer, holding the
//! stolen keys of two honest nodes, makes each of them equivocate.
//!
//! - It publishes two conflicting signals of one signer (same proposal and sequence, other
//!   choice) to one node only. That node forwards the first, makes evidence of the pair and
//!   publishes it: every node excludes the signer.
//! - A node started later, bootstrapping from another node, gets the proposal, the signals
//!   and the evidence by catch-up sync and reaches the same tally.
//! - It publishes only an evidence message about a second signer, whose own signal had
//!   counted: no node ever sees those two signals on their own, and all of them, the late
//!   one too, exclude that signer and agree.
//!
//! Malformed evidence costs the peer, as any invalid message does.

use std::time::{Duration, Instant};

use commons_e2e::{
    NodeSpec, TallyEssence, TestNode, TestPeer, agreed_tally, now, phases, regtest_proposal,
    start_mesh, wait_until,
};
use commons_p2p::TopicKind;
use commons_rpc::{ProposalFilterParams, SubmitProposalParams, Tally, method};
use commons_signaling::spec::regtest_measurer_key;
use commons_signaling::{Choice, Equivocation, Hash32, NetworkSpec, SecretKey, Signal};

/// Three measurers and a late user node, one regtest netgroup (/30) each, and the raw peer.
/// No other test uses 127.0.0.184-199.
const IPS: [&str; 4] = ["127.0.0.184", "127.0.0.188", "127.0.0.192", "127.0.0.196"];
const RAW_PEER: &str = "127.0.0.199";

const WAIT: Duration = Duration::from_secs(60);

fn signal(key: &SecretKey, proposal: &str, choice: Choice, sequence: u64) -> Signal {
    let network_id = NetworkSpec::regtest().network_id();
    let proposal = proposal.parse::<Hash32>().unwrap();
    commons_test_util::signal(&network_id, key, proposal, choice, sequence, now(), vec![])
}

fn tally(node: &TestNode, id: &str) -> Result<Tally, String> {
    node.tally(id).map_err(|e| format!("{}: {e}", node.name))
}

/// Waits until every node's tally passes `check` and all agree; the agreed tally.
fn agreed(
    nodes: &[TestNode],
    id: &str,
    what: &str,
    check: impl Fn(&Tally) -> bool,
) -> TallyEssence {
    agreed_tally(nodes, id, WAIT, what, check)
}

fn metric(node: &TestNode, series: &str) -> f64 {
    node.metric(series)
}

#[test]
fn equivocators_are_excluded_on_every_node_whatever_each_saw() {
    let started = Instant::now();
    let phase = phases("equivocation");
    phase("three measurers on 127.0.0.184/188/192; a late node on .196 and a raw peer on .199");
    let mut nodes = start_mesh("q", &IPS[..3]);
    let keys: Vec<String> = nodes.iter().map(|n| n.public_key().unwrap()).collect();
    wait_until(WAIT, "the three nodes qualified on every node", || {
        for n in &nodes {
            for key in &keys {
                let u = n.uptime(key).map_err(|e| e.to_string())?;
                if !u.status.as_ref().is_some_and(|s| s.qualified && s.counted) {
                    return Err(format!("{}: {key} {u:?}", n.name));
                }
            }
        }
        Ok(())
    });

    phase("a proposal, and q0's oppose and q1's support counted everywhere");
    let t = now();
    let (id, bytes) = regtest_proposal("e2e equivocation", t - 1, t + 600, 3);
    let r = nodes[0]
        .call::<method::SubmitProposal>(&SubmitProposalParams {
            hex: hex::encode(&bytes),
        })
        .unwrap();
    assert_eq!(r.id, id, "{r:?}");
    wait_until(WAIT, "the proposal on every node", || {
        nodes.iter().try_for_each(|n| tally(n, &id).map(|_| ()))
    });
    nodes[0].cli_ok(&["signal", &id, "oppose"]);
    nodes[1].cli_ok(&["signal", &id, "support"]);
    agreed(&nodes, &id, "two signals counted", |t| {
        t.choices.oppose.nodes == 1 && t.choices.support.nodes == 1 && t.excluded_signers == 0
    });

    let raw = TestPeer::start(
        RAW_PEER,
        vec![nodes[0].multiaddr().unwrap().parse().unwrap()],
        |mut events, _| async move { while events.recv().await.is_some() {} },
    );
    wait_until(
        WAIT,
        "the raw peer in q0's signal and evidence meshes",
        || {
            let (s, e) = (raw.mesh(TopicKind::Signals), raw.mesh(TopicKind::Evidence));
            if s > 0 && e > 0 {
                Ok(())
            } else {
                Err(format!("mesh peers: signals {s}, evidence {e}"))
            }
        },
    );

    phase("the raw peer sends q0 two conflicting signals of q2 (override and support, sequence 5)");
    let q2 = regtest_measurer_key(2);
    let (a, b) = (
        signal(&q2, &id, Choice::Override, 5),
        signal(&q2, &id, Choice::Support, 5),
    );
    raw.publish(TopicKind::Signals, a.encode());
    raw.publish(TopicKind::Signals, b.encode());
    let one = agreed(&nodes, &id, "q2 excluded on every node", |t| {
        t.excluded_signers == 1
            && t.choices.oppose.nodes == 1
            && t.choices.support.nodes == 1
            && t.choices.r#override.nodes == 0
            && t.signers == 3
    });
    assert_eq!(
        metric(
            &nodes[0],
            "commons_equivocation_evidence_total{origin=\"made\"}"
        ),
        1.0
    );
    for n in &nodes[1..] {
        assert_eq!(
            metric(
                n,
                "commons_equivocation_evidence_total{origin=\"received\"}"
            ),
            1.0,
            "{}",
            n.name
        );
        assert_eq!(
            metric(n, "commons_equivocation_evidence_total{origin=\"made\"}"),
            0.0,
            "{} never saw the second signal: it made no evidence",
            n.name
        );
    }
    let evidence = Equivocation::new(a, b).unwrap();
    let listed = nodes[2]
        .call::<method::ListEquivocations>(&ProposalFilterParams::default())
        .unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].signer, keys[2]);
    assert_eq!(listed[0].evidence, hex::encode(evidence.encode()));

    phase("a late node bootstraps from q1 only and catches up by sync");
    let late = TestNode::start(
        &format!("q3@{}", IPS[3]),
        NodeSpec {
            ip: IPS[3].to_string(),
            bootstrap: vec![nodes[1].multiaddr().unwrap()],
            measurer: None,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let joined = Instant::now();
    nodes.push(late);
    let caught_up = agreed(
        &nodes,
        &id,
        "the late node's tally equals the others'",
        |t| t.excluded_signers == 1 && t.choices.oppose.nodes == 1 && t.signers == 3,
    );
    assert_eq!(caught_up.choices, one.choices, "{caught_up:?} vs {one:?}");
    phase(&format!(
        "late node agreed {:.1} s after its start",
        joined.elapsed().as_secs_f64()
    ));
    let late_list = nodes[3]
        .call::<method::ListEquivocations>(&ProposalFilterParams {
            proposal: Some(id.clone()),
        })
        .unwrap();
    assert_eq!(late_list, listed, "the same evidence, with the same id");

    phase("malformed evidence from the raw peer is rejected");
    let rejects = metric(
        &nodes[0],
        "commons_messages_received_total{kind=\"evidence\",verdict=\"reject\"}",
    );
    let swapped = Equivocation {
        first: evidence.second.clone(),
        second: evidence.first.clone(),
        ..evidence.clone()
    };
    raw.publish(TopicKind::Evidence, swapped.encode());
    raw.publish(
        TopicKind::Evidence,
        b"\xa1\x67version\x01 not evidence".to_vec(),
    );
    wait_until(WAIT, "two evidence rejects on q0", || {
        let now = metric(
            &nodes[0],
            "commons_messages_received_total{kind=\"evidence\",verdict=\"reject\"}",
        );
        if now >= rejects + 2.0 {
            Ok(())
        } else {
            Err(format!("evidence rejects {rejects} -> {now}"))
        }
    });

    phase("the raw peer publishes only evidence against q1, whose support had counted");
    let q1 = regtest_measurer_key(1);
    let only = Equivocation::new(
        signal(&q1, &id, Choice::Override, 7),
        signal(&q1, &id, Choice::Oppose, 7),
    )
    .unwrap();
    raw.publish(TopicKind::Evidence, only.encode());
    let two = agreed(
        &nodes,
        &id,
        "q1 excluded on every node, the late one too",
        |t| {
            t.excluded_signers == 2
                && t.choices.support.nodes == 0
                && t.choices.r#override.nodes == 0
                && t.choices.oppose.nodes == 1
                && t.signers == 3
        },
    );
    assert!(
        two.total_nodes >= 3,
        "equivocators still count as nodes: {two:?}"
    );
    for n in &nodes {
        assert_eq!(
            metric(n, &format!("commons_excluded_signers{{proposal=\"{id}\"}}")),
            2.0,
            "{}",
            n.name
        );
    }
    let out = nodes[3].cli_ok(&["equivocations", &id]);
    for key in [&keys[1], &keys[2]] {
        assert!(out.contains(key.as_str()), "{out}");
    }
    let out = nodes[3].cli_ok(&["tally", &id]);
    assert!(out.contains("excluded: 2 signer(s)"), "{out}");

    for n in &mut nodes {
        assert!(n.is_running(), "{} exited:\n{}", n.name, n.log_tail(20));
    }
    phase(&format!(
        "passed in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
}
