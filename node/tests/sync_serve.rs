//! The sync protocol as served by a node: catch-up pages carry everything in order and feed
//! another node to the same tally; garbage and misaddressed deliveries count as misbehaviour.

mod common;

use std::sync::Arc;

use commons_node::node::Node;
use commons_node::store::Store;
use commons_node::sync::{SyncRequest, SyncResponse};
use commons_p2p::Verdict;
use commons_rpc::{IdParams, Tally, method};
use commons_signaling::{
    BoundedBytes, BoundedVec, Choice, MessageKind, NetworkSpec, SecretKey, UptimeAttestation,
};

/// A sync request delivering one attestation, as an attester hands it to its subject.
fn deliver(attestation: &UptimeAttestation) -> SyncRequest {
    SyncRequest::Deliver {
        attestations: BoundedVec::new(vec![BoundedBytes::new(attestation.encode()).unwrap()])
            .unwrap(),
    }
}

fn node(dir: &std::path::Path, key: SecretKey, t: u64) -> Node {
    let store = Arc::new(Store::open(&dir.join("db")).unwrap());
    Node::new(
        NetworkSpec::regtest_peer_attested(),
        key,
        store,
        None,
        Arc::new(move || t),
    )
    .unwrap()
}

/// A regtest node (rule v1) with key `key` whose clock starts at `t0` and moves when the
/// returned counter is set.
fn node_on_clock(
    dir: &std::path::Path,
    key: SecretKey,
    t0: u64,
) -> (Node, Arc<std::sync::atomic::AtomicU64>) {
    let clock = Arc::new(std::sync::atomic::AtomicU64::new(t0));
    let store = Arc::new(Store::open(&dir.join("db")).unwrap());
    let read = clock.clone();
    let node = Node::new(
        NetworkSpec::regtest_peer_attested(),
        key,
        store,
        None,
        Arc::new(move || read.load(std::sync::atomic::Ordering::SeqCst)),
    )
    .unwrap();
    (node, clock)
}

#[tokio::test]
async fn catch_up_reproduces_the_tally() {
    let spec = NetworkSpec::regtest_peer_attested();
    let t = 3_000_000;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(da.path(), SecretKey::from_seed("a"), t);
    let b = node(db.path(), SecretKey::from_seed("b"), t);
    let p = common::proposal(&spec, "sync", t - 10, 100);
    let id = p.id(&spec.network_id());
    assert_eq!(
        a.ingest(MessageKind::Proposal, &p.encode()).await.verdict,
        Verdict::Accept
    );
    let (keys, about) = common::clique(&spec, 4, spec.epoch_at(t));
    for (i, key) in keys.iter().enumerate().take(3) {
        let s = common::signal(&spec, key, id, Choice::Override, 1, t - 5, about[i].clone());
        assert_eq!(
            a.ingest(MessageKind::Signal, &s.encode()).await.verdict,
            Verdict::Accept
        );
    }
    // The fourth node only announces itself; its presence must travel too.
    let presence = |epoch: u64, attestations: Vec<UptimeAttestation>| {
        commons_test_util::presence(&spec.network_id(), &keys[3], epoch, attestations)
    };
    let own = presence(spec.epoch_at(t), about[3].clone());
    let outcome = a.ingest(MessageKind::Presence, &own.encode()).await;
    assert_eq!(outcome.verdict, Verdict::Accept, "{}", outcome.reason);
    // A presence carrying attestations about someone else is invalid.
    let hijack = presence(spec.epoch_at(t) + 1, about[2].clone());
    let outcome = a.ingest(MessageKind::Presence, &hijack.encode()).await;
    assert_eq!(outcome.verdict, Verdict::Reject, "{}", outcome.reason);

    // B pulls A's pages until the end, through its own ingest pipeline.
    let mut after = None;
    let mut pages = 0;
    loop {
        let (bytes, bad) = a
            .serve_sync(
                None,
                &SyncRequest::Catchup {
                    after: after.take(),
                }
                .encode(),
            )
            .await;
        assert!(!bad);
        let SyncResponse::Batch { items, next } = SyncResponse::decode(&bytes).unwrap() else {
            panic!("not a batch")
        };
        for item in items.iter() {
            let outcome = b.ingest(item.kind, item.bytes.as_slice()).await;
            assert_ne!(
                outcome.verdict,
                Verdict::Reject,
                "{:?} {}",
                item.kind,
                outcome.reason
            );
        }
        pages += 1;
        match next {
            Some(c) => after = Some(c),
            None => break,
        }
    }
    assert_eq!(pages, 1);
    let (ta, tb) = (tally(&a, &id.to_hex()).await, tally(&b, &id.to_hex()).await);
    assert_eq!(ta, tb);
    assert_eq!(tb.choices.r#override.nodes, 3);
    assert_eq!(tb.total_nodes, 4);
}

async fn tally(node: &Node, id: &str) -> Tally {
    common::call::<method::GetTally>(node, &IdParams::new(id))
        .await
        .unwrap()
}

#[tokio::test]
async fn misbehaviour_is_reported() {
    let spec = NetworkSpec::regtest_peer_attested();
    let t = 3_000_000;
    let dir = tempfile::tempdir().unwrap();
    let me = SecretKey::from_seed("me");
    let n = node(dir.path(), me.clone(), t);
    let (_, bad) = n.serve_sync(None, b"garbage").await;
    assert!(bad);

    let peer = SecretKey::from_seed("peer");
    let other = SecretKey::from_seed("other");
    let ip = "127.0.0.5".parse().unwrap();
    // Right attester, right subject: accepted.
    let good = common::attestation(&spec, &peer, &me, ip, spec.epoch_at(t), 1);
    let (bytes, bad) = n
        .serve_sync(Some(peer.public_key()), &deliver(&good).encode())
        .await;
    assert!(!bad);
    assert_eq!(
        SyncResponse::decode(&bytes).unwrap(),
        SyncResponse::Delivered { accepted: 1 }
    );
    assert_eq!(n.attestations_about_me(16).len(), 1);
    // About someone else, or made by someone other than the sender: misbehaviour.
    let wrong_subject = common::attestation(&spec, &peer, &other, ip, spec.epoch_at(t), 1);
    assert!(
        n.serve_sync(Some(peer.public_key()), &deliver(&wrong_subject).encode())
            .await
            .1
    );
    let wrong_sender = common::attestation(&spec, &other, &me, ip, spec.epoch_at(t), 1);
    assert!(
        n.serve_sync(Some(peer.public_key()), &deliver(&wrong_sender).encode())
            .await
            .1
    );
    // A bare attestation about another node counts nowhere: its subject must carry it.
    let bare = common::attestation(&spec, &peer, &other, ip, spec.epoch_at(t), 1);
    let outcome = n.ingest(MessageKind::Attestation, &bare.encode()).await;
    assert_eq!(
        (outcome.verdict, outcome.reason.label()),
        (Verdict::Ignore, "not_carried_by_subject")
    );
    // A bare attestation about another node counts nowhere: its subject must carry it.
    let bare = common::attestation(&spec, &peer, &other, ip, spec.epoch_at(t), 1);
    let outcome = n.ingest(MessageKind::Attestation, &bare.encode()).await;
    assert_eq!(
        (outcome.verdict, outcome.reason.label()),
        (Verdict::Ignore, "not_carried_by_subject")
    );
    // A forged signature.
    let mut forged = common::attestation(&spec, &peer, &me, ip, spec.epoch_at(t), 2);
    forged.signature.0[0] ^= 1;
    assert!(
        n.serve_sync(Some(peer.public_key()), &deliver(&forged).encode())
            .await
            .1
    );
}

/// An attestation from a later epoch than this node's clock (within the skew allowance, so
/// accepted) is kept but not carried until its epoch comes: a peer on a clock behind this
/// node's would refuse a whole presence or signal carrying it as too early.
#[tokio::test]
async fn attestations_from_this_nodes_future_are_kept_but_not_carried_until_their_epoch() {
    let spec = NetworkSpec::regtest_peer_attested();
    let t0 = 3_000_000;
    let dir = tempfile::tempdir().unwrap();
    let me = SecretKey::from_seed("me");
    let (n, clock) = node_on_clock(dir.path(), me.clone(), t0);
    let ahead = spec.epoch_at(t0 + spec.max_clock_skew_secs / 2);
    assert!(ahead > spec.epoch_at(t0));
    let peer = SecretKey::from_seed("peer ahead");
    let early = common::attestation(&spec, &peer, &me, "127.0.0.5".parse().unwrap(), ahead, 1);
    let (bytes, bad) = n
        .serve_sync(Some(peer.public_key()), &deliver(&early).encode())
        .await;
    assert!(!bad);
    assert_eq!(
        SyncResponse::decode(&bytes).unwrap(),
        SyncResponse::Delivered { accepted: 1 }
    );
    assert!(n.attestations_about_me(16).is_empty());
    assert!(
        n.make_presence(spec.epoch_at(t0))
            .body
            .attestations
            .is_empty()
    );

    let later = t0 + spec.max_clock_skew_secs;
    clock.store(later, std::sync::atomic::Ordering::SeqCst);
    n.on_epoch(spec.epoch_at(later));
    assert_eq!(n.attestations_about_me(16), vec![early.clone()]);
    assert_eq!(
        n.make_presence(n.epoch()).body.attestations.into_vec(),
        vec![early]
    );
}

/// A catch-up page ingested as one batch (`Node::ingest_many`, which verifies on every core
/// and pipelines its steps), or cut into pages pipelined one after the other
/// (`Node::ingest_pages`, as catch-up ingests them), gives every message the outcome it gets
/// ingested one by one, and the same tally: a proposal and the signals on it in one page,
/// more signals than one step holds, a signer's second signal superseding its first, a
/// duplicate, a signal whose signature does not verify and one on a proposal nobody holds.
/// (One reason may differ, not the verdict: see `superseded_copy`.)
#[tokio::test]
async fn a_page_ingested_at_once_or_in_pages_matches_one_by_one() {
    let spec = NetworkSpec::regtest_peer_attested();
    let t = 3_000_000;
    let p = common::proposal(&spec, "batch", t - 10, 100);
    let id = p.id(&spec.network_id());
    let (keys, about) = common::clique(&spec, 4, spec.epoch_at(t));
    let mut items: Vec<(MessageKind, Vec<u8>)> = vec![(MessageKind::Proposal, p.encode())];
    for (i, key) in keys.iter().enumerate() {
        let s = common::signal(&spec, key, id, Choice::Support, 1, t - 5, about[i].clone());
        items.push((MessageKind::Signal, s.encode()));
    }
    for i in 0..600 {
        let key = SecretKey::from_seed(&format!("batch signer {i}"));
        let s = common::signal(&spec, &key, id, Choice::Oppose, 1, t - 5, vec![]);
        items.push((MessageKind::Signal, s.encode()));
    }
    // Supersedes the first signal of keys[0], in a later step.
    let second = common::signal(
        &spec,
        &keys[0],
        id,
        Choice::Override,
        2,
        t - 4,
        about[0].clone(),
    );
    items.push((MessageKind::Signal, second.encode()));
    // A duplicate of a signal of the first step.
    items.push(items[2].clone());
    // A copy of the superseded signal, right behind the one superseding it: one by one it
    // is a replay, at once (checked before its step is applied) a duplicate; ignored alike.
    let superseded_copy = items.len();
    items.push(items[1].clone());
    let mut spoiled = common::signal(&spec, &keys[1], id, Choice::Oppose, 3, t - 4, vec![]);
    spoiled.signature.0[10] ^= 1;
    items.push((MessageKind::Signal, spoiled.encode()));
    let elsewhere = common::proposal(&spec, "nobody holds it", t - 10, 100);
    let stray = common::signal(
        &spec,
        &keys[2],
        elsewhere.id(&spec.network_id()),
        Choice::Support,
        1,
        t - 5,
        vec![],
    );
    items.push((MessageKind::Signal, stray.encode()));
    let presence = commons_test_util::presence(
        &spec.network_id(),
        &keys[3],
        spec.epoch_at(t),
        about[3].clone(),
    );
    items.push((MessageKind::Presence, presence.encode()));

    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let one_by_one = node(da.path(), SecretKey::from_seed("a"), t);
    let at_once = node(db.path(), SecretKey::from_seed("b"), t);
    let mut expected = Vec::new();
    for (kind, bytes) in &items {
        expected.push(one_by_one.ingest(*kind, bytes).await);
    }
    let batch: Vec<(MessageKind, &[u8])> = items.iter().map(|(k, b)| (*k, b.as_slice())).collect();
    let got = at_once.ingest_many(&batch).await;
    assert_eq!(got[superseded_copy].verdict, Verdict::Ignore);
    assert_eq!(expected[superseded_copy].verdict, Verdict::Ignore);
    let differing: Vec<_> = (0..items.len())
        .filter(|&i| i != superseded_copy && got[i] != expected[i])
        .map(|i| (i, items[i].0, got[i], expected[i]))
        .collect();
    assert!(
        differing.is_empty(),
        "(index, kind, at once, one by one): {differing:?}"
    );
    // The cases above are all there: accepted, duplicate, rejected and ignored ones.
    for verdict in [Verdict::Accept, Verdict::Reject, Verdict::Ignore] {
        assert!(got.iter().any(|o| o.verdict == verdict), "no {verdict:?}");
    }
    let (ta, tb) = (
        tally(&one_by_one, &id.to_hex()).await,
        tally(&at_once, &id.to_hex()).await,
    );
    assert_eq!(ta, tb);
    assert_eq!(tb.choices.r#override.nodes, 1);

    // Cut so that signals follow their proposal's page, a page ends inside a step, the
    // duplicate and the superseding signal's copies sit a page away from their originals, and
    // a presence is a page of its own.
    assert_eq!((superseded_copy, items.len()), (607, 611));
    let cuts = [0, 1, 3, 300, 606, 608, 610, batch.len()];
    let pages: Vec<&[(MessageKind, &[u8])]> = cuts.windows(2).map(|w| &batch[w[0]..w[1]]).collect();
    let dc = tempfile::tempdir().unwrap();
    let in_pages = node(dc.path(), SecretKey::from_seed("c"), t);
    let per_page = in_pages.ingest_pages(&pages).await;
    assert_eq!(
        per_page.iter().map(Vec::len).collect::<Vec<_>>(),
        pages.iter().map(|p| p.len()).collect::<Vec<_>>()
    );
    let got: Vec<_> = per_page.into_iter().flatten().collect();
    assert_eq!(got[superseded_copy].verdict, Verdict::Ignore);
    let differing: Vec<_> = (0..items.len())
        .filter(|&i| i != superseded_copy && got[i] != expected[i])
        .map(|i| (i, items[i].0, got[i], expected[i]))
        .collect();
    assert!(
        differing.is_empty(),
        "(index, kind, in pages, one by one): {differing:?}"
    );
    assert_eq!(tally(&in_pages, &id.to_hex()).await, ta);
}

/// A signal carries the attestations of the signer's last presence, which the peers that
/// got the presence hold and do not check again, and of attesters new since; not the newer
/// attestation of an attester the presence had. Before the first presence, the newest.
#[tokio::test]
async fn signals_carry_the_last_presences_attestations_and_new_attesters_only() {
    let spec = NetworkSpec::regtest_peer_attested();
    let t0 = 3_000_000;
    let dir = tempfile::tempdir().unwrap();
    let me = SecretKey::from_seed("me");
    let (n, clock) = node_on_clock(dir.path(), me.clone(), t0);
    let (old_friend, new_friend) = (SecretKey::from_seed("a"), SecretKey::from_seed("b"));
    let ip = "127.0.0.5".parse().unwrap();
    let accepted = |from: &SecretKey, attestation: UptimeAttestation| {
        let n = &n;
        let request = deliver(&attestation);
        let from = from.public_key();
        async move {
            let (bytes, bad) = n.serve_sync(Some(from), &request.encode()).await;
            assert!(!bad);
            assert_eq!(
                SyncResponse::decode(&bytes).unwrap(),
                SyncResponse::Delivered { accepted: 1 }
            );
        }
    };
    let first = spec.epoch_at(t0);
    let presenced = common::attestation(&spec, &old_friend, &me, ip, first, 1);
    accepted(&old_friend, presenced.clone()).await;
    assert_eq!(n.signal_attestations(16), vec![presenced.clone()]);
    n.publish_presence(first).await;

    clock.store(t0 + spec.epoch_secs, std::sync::atomic::Ordering::SeqCst);
    let second = spec.epoch_at(t0 + spec.epoch_secs);
    n.on_epoch(second);
    let refreshed = common::attestation(&spec, &old_friend, &me, ip, second, 2);
    accepted(&old_friend, refreshed.clone()).await;
    let newcomer = common::attestation(&spec, &new_friend, &me, ip, second, 1);
    accepted(&new_friend, newcomer.clone()).await;
    assert_eq!(n.attestations_about_me(16).len(), 2);
    assert!(n.attestations_about_me(16).contains(&refreshed));
    assert_eq!(n.signal_attestations(16), vec![presenced, newcomer.clone()]);
    assert_eq!(n.signal_attestations(1).len(), 1);

    // The next presence carries the refreshed one, and so do the signals after it.
    n.publish_presence(second).await;
    let carried = n.signal_attestations(16);
    assert_eq!(carried.len(), 2);
    assert!(carried.contains(&refreshed) && carried.contains(&newcomer));
}

#[tokio::test]
async fn under_the_measurer_rule_a_presence_carries_every_measurer_and_four_peers() {
    let spec = NetworkSpec::regtest();
    assert_eq!(
        spec.qualification,
        commons_signaling::QualificationRule::Measurers
    );
    let t = 3_000_000;
    let epoch = spec.epoch_at(t);
    let dir = tempfile::tempdir().unwrap();
    let me = SecretKey::from_seed("me");
    let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
    let n = Node::new(spec.clone(), me.clone(), store, None, Arc::new(move || t)).unwrap();
    let ip = "127.0.0.5".parse().unwrap();
    let measurers: Vec<SecretKey> = (0..3)
        .map(|i| SecretKey::from_seed(&format!("commons-signal regtest measurer {i}")))
        .collect();
    assert!(
        measurers
            .iter()
            .all(|m| spec.measurers.iter().any(|s| s.key == m.public_key()))
    );
    let peers: Vec<SecretKey> = (0..6)
        .map(|i| SecretKey::from_seed(&format!("peer {i}")))
        .collect();
    // Peers first, so that arrival order cannot be what puts the measurers first.
    for attester in peers.iter().chain(&measurers) {
        let a = common::attestation(&spec, attester, &me, ip, epoch, 1);
        let (bytes, bad) = n
            .serve_sync(Some(attester.public_key()), &deliver(&a).encode())
            .await;
        assert!(!bad);
        // A peer's attestation weighs nothing under this rule, but this node carries it.
        assert_eq!(
            SyncResponse::decode(&bytes).unwrap(),
            SyncResponse::Delivered { accepted: 1 }
        );
    }
    let carried = n.make_presence(epoch).body.attestations.to_vec();
    let attesters: Vec<_> = carried.iter().map(|a| a.body.attester).collect();
    assert_eq!(carried.len(), 3 + commons_node::AUDIT_PEER_ATTESTATIONS);
    for (i, m) in measurers.iter().enumerate() {
        assert!(
            attesters[..3].contains(&m.public_key()),
            "measurer {i} is among the first three: {attesters:?}"
        );
    }
    assert!(
        attesters[3..]
            .iter()
            .all(|a| peers.iter().any(|p| p.public_key() == *a))
    );
}
