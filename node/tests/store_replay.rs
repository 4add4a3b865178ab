//! The store is the source of truth: what is written comes back after reopening, and a node
//! rebuilt from it reports the same tallies.

mod common;

use std::sync::Arc;

use commons_node::node::{Clock, Node};
use commons_node::store::{Batch, Store};
use commons_p2p::Verdict;
use commons_rpc::{IdParams, Tally, method};
use commons_signaling::{Choice, MessageKind, NetworkSpec, SecretKey};

fn fixed(t: u64) -> Clock {
    Arc::new(move || t)
}

#[test]
fn records_survive_reopen() {
    let spec = NetworkSpec::regtest_peer_attested();
    let dir = tempfile::tempdir().unwrap();
    let t = 1_000_000;
    let p = common::proposal(&spec, "reopen", t, 100);
    let id = p.id(&spec.network_id());
    let (keys, about) = common::clique(&spec, 3, spec.epoch_at(t));
    let s = common::signal(
        &spec,
        &keys[0],
        id,
        Choice::Support,
        1,
        t + 1,
        about[0].clone(),
    );
    {
        let store = Store::open(&dir.path().join("db")).unwrap();
        let mut batch = Batch::new();
        batch.put_proposal(&id, &p);
        batch.put_signal(&s);
        for a in about.iter().flatten() {
            batch.put_attestation(a);
        }
        batch.put_meta("seq/x", &7u64.to_be_bytes());
        store.write(batch).unwrap();
        assert!(store.size_bytes() > 0);
        // No flush: reopening must replay the write-ahead log, as after a crash.
    }
    let store = Store::open(&dir.path().join("db")).unwrap();
    assert_eq!(store.proposals().unwrap(), vec![p.clone()]);
    assert_eq!(store.proposal(&id).unwrap(), Some(p));
    assert_eq!(store.signals().unwrap(), vec![s.clone()]);
    assert_eq!(store.signal(&id, &keys[0].public_key()).unwrap(), Some(s));
    assert_eq!(store.attestations().unwrap().len(), 6);
    assert_eq!(
        store
            .attestations_about(&keys[1].public_key())
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        store.meta("seq/x").unwrap(),
        Some(7u64.to_be_bytes().to_vec())
    );
    store.flush().unwrap();
}

#[tokio::test]
async fn node_replays_to_the_same_tally() {
    let spec = NetworkSpec::regtest_peer_attested();
    let dir = tempfile::tempdir().unwrap();
    let t = 2_000_000;
    let p = common::proposal(&spec, "replay", t - 10, 100);
    let id = p.id(&spec.network_id());
    let (keys, about) = common::clique(&spec, 4, spec.epoch_at(t));
    let me = SecretKey::from_seed("replay node");

    let before = {
        let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
        let node = Node::new(spec.clone(), me.clone(), store, None, fixed(t)).unwrap();
        assert_eq!(
            node.ingest(MessageKind::Proposal, &p.encode())
                .await
                .verdict,
            Verdict::Accept
        );
        // Duplicates are dropped before verification.
        assert_eq!(
            node.ingest(MessageKind::Proposal, &p.encode())
                .await
                .verdict,
            Verdict::Ignore
        );
        let choices = [
            Choice::Support,
            Choice::Override,
            Choice::Override,
            Choice::Oppose,
        ];
        for (i, key) in keys.iter().enumerate() {
            let s = common::signal(&spec, key, id, choices[i], 1, t - 5, about[i].clone());
            assert_eq!(
                node.ingest(MessageKind::Signal, &s.encode()).await.verdict,
                Verdict::Accept,
                "signal {i}"
            );
            assert_eq!(
                node.ingest(MessageKind::Signal, &s.encode())
                    .await
                    .reason
                    .label(),
                "duplicate"
            );
        }
        // A later signal replaces the first; an older one is ignored.
        let s = common::signal(&spec, &keys[0], id, Choice::Override, 2, t - 4, vec![]);
        assert_eq!(
            node.ingest(MessageKind::Signal, &s.encode()).await.verdict,
            Verdict::Accept
        );
        let old = common::signal(&spec, &keys[0], id, Choice::Oppose, 1, t - 6, vec![]);
        assert_eq!(
            node.ingest(MessageKind::Signal, &old.encode())
                .await
                .verdict,
            Verdict::Ignore
        );
        // Garbage and forged signatures are rejected.
        assert_eq!(
            node.ingest(MessageKind::Signal, b"\x01\x02").await.verdict,
            Verdict::Reject
        );
        let mut forged = common::signal(&spec, &keys[1], id, Choice::Support, 9, t - 3, vec![]);
        forged.signature.0[5] ^= 1;
        assert_eq!(
            node.ingest(MessageKind::Signal, &forged.encode())
                .await
                .verdict,
            Verdict::Reject
        );
        // The node's own signal.
        node.cast_signal(id, Choice::Support).await.unwrap();
        let tally = tally_of(&node, &id.to_hex()).await;
        assert_eq!(tally.signers, 5);
        assert_eq!(tally.total_nodes, 4, "{tally:?}");
        assert_eq!(tally.choices.r#override.nodes, 3, "{tally:?}");
        tally
    };
    let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
    let node = Node::new(spec.clone(), me.clone(), store, None, fixed(t)).unwrap();
    assert_eq!(tally_of(&node, &id.to_hex()).await, before);
    // The own sequence continues after a restart.
    let (signal, _) = node.cast_signal(id, Choice::Oppose).await.unwrap();
    assert_eq!(signal.body.sequence, 2);
}

async fn tally_of(node: &Node, id: &str) -> Tally {
    common::call::<method::GetTally>(node, &IdParams::new(id))
        .await
        .unwrap()
}
