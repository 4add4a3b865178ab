//! The accidental-equivocation guard, end to end: a node that lost its database but kept its
//! key signs nothing until a catch-up with a peer gave back its earlier signal, then signs
//! above that signal's sequence number, so no peer ever holds equivocation evidence against it.

use std::time::Duration;

use commons_e2e::{NodeSpec, TestNode, now, phases, regtest_proposal, tally_essence, wait_until};
use commons_rpc::{SignalParams, SubmitProposalParams, method};

/// No other test uses 127.0.91.8-9.
const PEER_IP: &str = "127.0.91.8";
const SIGNER_IP: &str = "127.0.91.9";

const WAIT: Duration = Duration::from_secs(60);

fn signal(node: &TestNode, id: &str, choice: &str) -> anyhow::Result<u64> {
    let params = SignalParams {
        proposal: id.to_string(),
        choice: choice.to_string(),
    };
    Ok(node.call::<method::CastSignal>(&params)?.sequence)
}

#[test]
fn a_node_restarted_with_its_key_and_no_database_does_not_equivocate() {
    let phase = phases("signing_guard");
    let spec = |ip: &str, bootstrap| NodeSpec {
        ip: ip.into(),
        bootstrap,
        measurer: None,
    };
    let mut peer = TestNode::start("peer", spec(PEER_IP, vec![])).unwrap();
    let mut signer =
        TestNode::start("signer", spec(SIGNER_IP, vec![peer.multiaddr().unwrap()])).unwrap();
    let t = now();
    let (id, bytes) = regtest_proposal("signing guard", t - 1, t + 3600, 3);
    signer
        .call::<method::SubmitProposal>(&SubmitProposalParams {
            hex: hex::encode(&bytes),
        })
        .unwrap();
    assert_eq!(signal(&signer, &id, "support").unwrap(), 1);
    assert_eq!(signal(&signer, &id, "oppose").unwrap(), 2);
    // Both signals, the second one too: a peer that held only the first would give back
    // sequence 1, and no node can know of a signal no peer holds.
    let accepted =
        "commons_messages_verdicts_total{kind=\"signal\",verdict=\"accept\",reason=\"new\"}";
    wait_until(WAIT, "the peer holds both of the signer's signals", || {
        let n = peer.metric(accepted);
        (n >= 2.0).then_some(()).ok_or(format!("{accepted} = {n}"))
    });
    let signer_address = signer.multiaddr().unwrap();

    phase("the signer loses its database, keeps its key, and starts alone");
    signer.stop().unwrap();
    peer.stop().unwrap();
    std::fs::remove_dir_all(signer.datadir().join("db")).unwrap();
    assert!(signer.datadir().join("node.key").exists());
    signer.restart().unwrap();
    let refused = signal(&signer, &id, "override").unwrap_err().to_string();
    phase(&format!("refused: {refused}"));
    assert!(refused.contains("-32004"), "{refused}");
    assert!(
        refused.contains("waiting for a catch-up with peers before signing"),
        "{refused}"
    );
    assert!(refused.contains("no peer is connected"), "{refused}");
    assert!(refused.contains("--sign-without-catch-up"), "{refused}");

    phase("a restart before any catch-up keeps the guard armed");
    signer.kill9();
    signer.restart().unwrap();
    let refused = signal(&signer, &id, "override").unwrap_err().to_string();
    assert!(refused.contains("waiting for a catch-up"), "{refused}");

    phase("the peer comes back: after one catch-up the signer signs above its old sequence");
    peer.args = vec!["--bootstrap".into(), signer_address];
    peer.restart().unwrap();
    let sequence = wait_until(WAIT, "the guard lifts after the catch-up", || {
        signal(&signer, &id, "override").map_err(|e| e.to_string())
    });
    assert_eq!(sequence, 3, "one above the sequence 2 the peer gave back");
    wait_until(WAIT, "both nodes hold the new signal", || {
        let (a, b) = (peer.tally(&id), signer.tally(&id));
        match (a, b) {
            (Ok(a), Ok(b)) if tally_essence(&a) == tally_essence(&b) => Ok(()),
            (a, b) => Err(format!("{a:?} vs {b:?}")),
        }
    });
    for node in [&peer, &signer] {
        let evidence = node
            .call::<method::ListEquivocations>(&commons_rpc::ProposalFilterParams {
                proposal: None,
            })
            .unwrap();
        assert!(evidence.is_empty(), "{}: {evidence:?}", node.name);
        let t = node.tally(&id).unwrap();
        assert_eq!((t.signers, t.excluded_signers), (1, 0), "{t:?}");
    }
}
