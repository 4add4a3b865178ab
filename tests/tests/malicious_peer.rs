//! A misbehaving peer: an in-test libp2p swarm (commons-p2p, its own key, on its own
//! loopback address) joins a real `commonsd` and publishes invalid messages on the node's
//! gossip topics. The node must stay up, count none of them, show the rejects in `/metrics`
//! and penalise the sender.

use std::time::Duration;

use commons_e2e::{
    TallyEssence, TestNode, TestPeer, now, phases, regtest_proposal, start_mesh, tally_essence,
    wait_until,
};
use commons_p2p::TopicKind;
use commons_rpc::{NoParams, PeerInfo, SubmitProposalParams, method};
use commons_signaling::{Choice, Hash32, NetworkSpec, SecretKey};

/// Three honest nodes (a node qualifies with attestations from two other netgroups), each
/// in a regtest netgroup of its own, and the attacker. No other test uses 127.0.0.56-67.
const HONEST: [&str; 3] = ["127.0.0.56", "127.0.0.60", "127.0.0.64"];
const ATTACKER: &str = "127.0.0.67";

const WAIT: Duration = Duration::from_secs(45);

fn proposal(title: &str, signers: usize) -> (String, Vec<u8>) {
    let t = now();
    regtest_proposal(title, t - 1, t + 300, signers)
}

/// A signal signed with `key` (the honest node's own key, stolen from its data directory).
fn signal(key: &SecretKey, proposal: &str, choice: Choice, sequence: u64) -> Vec<u8> {
    let network_id = NetworkSpec::regtest().network_id();
    let proposal = proposal.parse::<Hash32>().unwrap();
    commons_test_util::signal(&network_id, key, proposal, choice, sequence, now(), vec![]).encode()
}

/// `commons_messages_received_total{kind, verdict}` from a node's `/metrics`.
fn received(node: &TestNode, kind: &str, verdict: &str) -> f64 {
    node.metric(&format!(
        "commons_messages_received_total{{kind=\"{kind}\",verdict=\"{verdict}\"}}"
    ))
}

#[test]
fn malicious_peer_is_rejected_and_penalised() {
    let phase = phases("malicious_peer");
    phase("three honest commonsd on 127.0.0.56/60/64, an attacker swarm on .67");
    let mut nodes = start_mesh("h", &HONEST);
    let target = &nodes[0];
    let keys: Vec<String> = nodes.iter().map(|n| n.public_key().unwrap()).collect();
    wait_until(WAIT, "the honest nodes qualified on the target", || {
        for key in &keys {
            let u = target.uptime(key).map_err(|e| e.to_string())?;
            if !u.status.as_ref().is_some_and(|s| s.qualified && s.counted) {
                return Err(format!("{u:?}"));
            }
        }
        Ok(())
    });

    phase("a real proposal with a counted signal (sequence 2) from the target");
    let (id, bytes) = proposal("e2e malicious peer", 3);
    let r = target
        .call::<method::SubmitProposal>(&SubmitProposalParams {
            hex: hex::encode(&bytes),
        })
        .unwrap();
    assert_eq!(r.id, id, "{r:?}");
    target.cli_ok(&["signal", &id, "oppose"]);
    let out = target.cli_ok(&["signal", &id, "support"]);
    assert!(out.contains("support"), "{out}");
    let before = wait_until(WAIT, "the target's support counted on every node", || {
        let mut first: Option<TallyEssence> = None;
        for n in &nodes {
            let t = n.tally(&id).map_err(|e| e.to_string())?;
            if t.choices.support.nodes != 1 || t.signers != 1 {
                return Err(format!("{}: {t:?}", n.name));
            }
            let e = tally_essence(&t);
            match &first {
                None => first = Some(e),
                Some(f) if *f != e => {
                    return Err(format!("{} disagrees: {e:?} vs {f:?}", n.name));
                }
                Some(_) => {}
            }
        }
        Ok(first.unwrap())
    });

    // The attacker validates nothing and answers no request (an attacker forwards
    // nothing; the node's catch-up requests to it time out).
    let attacker = TestPeer::start(
        ATTACKER,
        vec![target.multiaddr().unwrap().parse().unwrap()],
        |mut events, _| async move { while events.recv().await.is_some() {} },
    );
    let attacker_id = attacker.peer_id();
    wait_until(WAIT, "the attacker in the target's gossip meshes", || {
        let (s, p) = (
            attacker.mesh(TopicKind::Signals),
            attacker.mesh(TopicKind::Proposals),
        );
        if s > 0 && p > 0 {
            Ok(())
        } else {
            Err(format!("mesh peers: signals {s}, proposals {p}"))
        }
    });
    let peer = |peers: &[PeerInfo]| peers.iter().find(|p| p.peer_id == attacker_id).cloned();
    let peers = target.call::<method::GetPeers>(&NoParams {}).unwrap();
    let score_before = peer(&peers)
        .unwrap_or_else(|| panic!("attacker not a peer: {peers:?}"))
        .gossip_score
        .unwrap_or(0.0);

    let sig_rejects = received(target, "signal", "reject");
    let prop_rejects = received(target, "proposal", "reject");
    let sig_ignores = received(target, "signal", "ignore");

    phase(
        "the attacker publishes garbage, an oversized message, a 1-of-3 proposal, a replay, a bad signature",
    );
    let stolen = SecretKey::load(&target.datadir().join("node.key")).unwrap();
    // Garbage (rejected: malformed).
    attacker.publish(
        TopicKind::Signals,
        b"\x01not a signal at all, just bytes".to_vec(),
    );
    // Oversized: above the 8 KiB bound of a proposal, below gossipsub's transmit limit.
    attacker.publish(TopicKind::Proposals, vec![0x5a; 9 * 1024]);
    // Below threshold: a tier-1 proposal with one maintainer signature of three.
    let (weak_id, weak) = proposal("e2e under-signed", 1);
    attacker.publish(TopicKind::Proposals, weak);
    // A replay: a correctly signed signal older (sequence 1) than the one held (sequence 2).
    attacker.publish(
        TopicKind::Signals,
        signal(&stolen, &id, Choice::Override, 1),
    );
    // A wrong signature: a newer override in the target's name, one signature bit flipped.
    // Last, since it gets the attacker banned and whatever it sent after dropped unchecked.
    let mut forged = signal(&stolen, &id, Choice::Override, 7);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    attacker.publish(TopicKind::Signals, forged);

    wait_until(WAIT, "the rejects in the target's /metrics", || {
        let (s, p, i) = (
            received(target, "signal", "reject"),
            received(target, "proposal", "reject"),
            received(target, "signal", "ignore"),
        );
        if s >= sig_rejects + 2.0 && p >= prop_rejects + 2.0 && i >= sig_ignores + 1.0 {
            Ok(())
        } else {
            Err(format!(
                "signal rejects {sig_rejects} -> {s}, proposal rejects {prop_rejects} -> {p}, signal ignores {sig_ignores} -> {i}"
            ))
        }
    });

    phase("nothing counted, the node alive, the attacker penalised");
    for n in &nodes {
        let after = n.tally(&id).unwrap();
        assert_eq!(before, tally_essence(&after), "{}: tally changed", n.name);
        let list = n.call::<method::ListProposals>(&NoParams {}).unwrap();
        assert!(
            !list.iter().any(|p| p.id == weak_id),
            "{}: the under-signed proposal is listed: {list:?}",
            n.name
        );
    }
    let penalty = wait_until(WAIT, "a negative gossip score or a disconnect", || {
        let peers = target
            .call::<method::GetPeers>(&NoParams {})
            .map_err(|e| e.to_string())?;
        match peer(&peers) {
            None => Ok("disconnected".to_string()),
            Some(p) => match p.gossip_score {
                Some(s) if s < 0.0 && s < score_before => {
                    Ok(format!("gossip score {score_before} -> {s}"))
                }
                _ => Err(format!("attacker still in good standing: {p:?}")),
            },
        }
    });
    phase(&format!("attacker penalised: {penalty}"));
    for n in &mut nodes {
        assert!(n.is_running(), "{} exited:\n{}", n.name, n.log_tail(20));
    }
    phase("passed");
}
