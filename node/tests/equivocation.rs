//! Equivocation evidence in the node, with real RocksDB: a node that receives two conflicting
//! signals makes evidence, stores it, lists it over RPC, counts it in `/metrics` and excludes
//! the signer; after a restart the exclusion and the evidence are still there; a second node
//! that receives only that evidence message reaches the same tally.

mod common;

use std::sync::Arc;

use commons_node::node::{Clock, Node};
use commons_node::store::Store;
use commons_p2p::Verdict;
use commons_rpc::{IdParams, ProposalFilterParams, Tally, method};
use commons_signaling::{Choice, Equivocation, MessageKind, NetworkSpec, SecretKey};

fn fixed(t: u64) -> Clock {
    Arc::new(move || t)
}

async fn tally_of(node: &Node, id: &str) -> Tally {
    common::call::<method::GetTally>(node, &IdParams::new(id))
        .await
        .unwrap()
}

fn open(dir: &std::path::Path, name: &str, spec: &NetworkSpec, t: u64) -> Node {
    let store = Arc::new(Store::open(&dir.join(name)).unwrap());
    let key = SecretKey::from_seed(&format!("equivocation test node {name}"));
    Node::new(spec.clone(), key, store, None, fixed(t)).unwrap()
}

#[tokio::test]
async fn a_node_proves_an_equivocation_keeps_the_proof_and_another_node_agrees_from_it_alone() {
    let spec = NetworkSpec::regtest_peer_attested();
    let dir = tempfile::tempdir().unwrap();
    let t = 3_000_000;
    let p = common::proposal(&spec, "equivocation", t - 10, 100);
    let id = p.id(&spec.network_id());
    let (keys, about) = common::clique(&spec, 3, spec.epoch_at(t));
    let honest = common::signal(
        &spec,
        &keys[0],
        id,
        Choice::Override,
        1,
        t - 5,
        about[0].clone(),
    );
    let third = common::signal(
        &spec,
        &keys[2],
        id,
        Choice::Oppose,
        1,
        t - 5,
        about[2].clone(),
    );
    // keys[1] tells some peers override and others support, with one sequence number.
    let a = common::signal(
        &spec,
        &keys[1],
        id,
        Choice::Override,
        3,
        t - 5,
        about[1].clone(),
    );
    let b = common::signal(&spec, &keys[1], id, Choice::Support, 3, t - 4, vec![]);

    let saw_both = open(dir.path(), "both", &spec, t);
    saw_both.ingest(MessageKind::Proposal, &p.encode()).await;
    for m in [&honest, &third, &a] {
        assert_eq!(
            saw_both
                .ingest(MessageKind::Signal, &m.encode())
                .await
                .verdict,
            Verdict::Accept
        );
    }
    let counted = tally_of(&saw_both, &id.to_hex()).await;
    assert_eq!(counted.choices.r#override.nodes, 2, "{counted:?}");
    let conflicting = saw_both.ingest(MessageKind::Signal, &b.encode()).await;
    assert_eq!(conflicting.reason.label(), "equivocation");
    assert_eq!(conflicting.verdict, Verdict::Ignore);

    let proven = tally_of(&saw_both, &id.to_hex()).await;
    assert_eq!(proven.excluded_signers, 1, "{proven:?}");
    assert_eq!(proven.choices.r#override.nodes, 1, "{proven:?}");
    assert_eq!(proven.choices.support.nodes, 0, "{proven:?}");
    assert_eq!(proven.choices.oppose.nodes, 1, "{proven:?}");
    assert_eq!(
        (proven.signers, proven.uncounted_signers, proven.total_nodes),
        (3, 0, 3),
        "the equivocator still counts in the population: {proven:?}"
    );
    let listed = common::call::<method::ListEquivocations>(
        &saw_both,
        &ProposalFilterParams {
            proposal: Some(id.to_hex()),
        },
    )
    .await
    .unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].signer, keys[1].public_key().to_hex());
    assert_eq!(listed[0].sequence, 3);
    let evidence_bytes = hex::decode(&listed[0].evidence).unwrap();
    let evidence = Equivocation::decode(&evidence_bytes).unwrap();
    assert_eq!(evidence, Equivocation::new(a.clone(), b.clone()).unwrap());
    assert_eq!(listed[0].id, evidence.id(&spec.network_id()).to_hex());
    assert_eq!(
        saw_both
            .ingest_metrics()
            .evidence
            .get_or_create(&commons_node::metrics::OriginLabels {
                origin: "made".into()
            })
            .get(),
        1
    );
    let unknown = common::call::<method::ListEquivocations>(
        &saw_both,
        &ProposalFilterParams {
            proposal: Some("00".repeat(32)),
        },
    )
    .await;
    assert!(unknown.is_err_and(|e| e.starts_with("-32001")));

    // The evidence from the network changes nothing more here.
    let again = saw_both
        .ingest(MessageKind::Evidence, &evidence_bytes)
        .await;
    assert_eq!(again.reason.label(), "already_proven");
    drop(saw_both);

    // After a restart: the same tally and the same evidence, read back from RocksDB.
    let restarted = open(dir.path(), "both", &spec, t);
    assert_eq!(tally_of(&restarted, &id.to_hex()).await, proven);
    let relisted = common::call::<method::ListEquivocations>(&restarted, &Default::default())
        .await
        .unwrap();
    assert_eq!(relisted, listed);

    // A node that got the honest signals and the evidence only, never keys[1]'s signals
    // on their own: the same tally (the evidence's signals are applied with it).
    let saw_evidence = open(dir.path(), "evidence-only", &spec, t);
    saw_evidence
        .ingest(MessageKind::Proposal, &p.encode())
        .await;
    for m in [&honest, &third] {
        saw_evidence.ingest(MessageKind::Signal, &m.encode()).await;
    }
    // Forged evidence costs its sender, and proves nothing.
    let mut forged = evidence.clone();
    forged.first.signature.0[9] ^= 1;
    let forged = saw_evidence
        .ingest(MessageKind::Evidence, &forged.encode())
        .await;
    assert_eq!(forged.verdict, Verdict::Reject);
    assert_eq!(
        tally_of(&saw_evidence, &id.to_hex()).await.excluded_signers,
        0
    );
    let outcome = saw_evidence
        .ingest(MessageKind::Evidence, &evidence_bytes)
        .await;
    assert_eq!(outcome.verdict, Verdict::Accept, "{outcome:?}");
    assert_eq!(tally_of(&saw_evidence, &id.to_hex()).await, proven);
    // Conflicting signals arriving after the evidence change nothing.
    for m in [&a, &b] {
        saw_evidence.ingest(MessageKind::Signal, &m.encode()).await;
    }
    assert_eq!(tally_of(&saw_evidence, &id.to_hex()).await, proven);
    assert_eq!(
        saw_evidence
            .ingest_metrics()
            .evidence
            .get_or_create(&commons_node::metrics::OriginLabels {
                origin: "received".into()
            })
            .get(),
        1
    );
}
