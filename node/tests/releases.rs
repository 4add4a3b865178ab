//! Release bundles in the node core, without a network: which gossip verdict and metrics
//! reason each bad bundle gets, what `publishrelease` keeps, and what the fetch protocol
//! serves.

mod common;

use std::sync::Arc;

use commons_node::artifacts::ArtifactStore;
use commons_node::fetch::{FetchRequest, FetchResponse};
use commons_node::node::Node;
use commons_node::store::Store;
use commons_p2p::Verdict;
use commons_rpc::{IdParams, NoParams, PublishReleaseParams, Release, method};
use commons_signaling::artifact::{ArtifactHasher, CHUNK_SIZE, chunk_hash, parse_chunk_list};
use commons_signaling::{
    Artifact, MessageKind, NetworkSpec, ReleaseBundle, ReleaseClass, SecretKey,
};

const T: u64 = 2_000_000_000;

fn node(dir: &std::path::Path) -> Node {
    let store = Arc::new(Store::open(&dir.join("db")).unwrap());
    Node::new(
        NetworkSpec::regtest(),
        SecretKey::from_seed("release node"),
        store,
        None,
        Arc::new(|| T),
    )
    .unwrap()
    .with_artifacts(ArtifactStore::open(dir).unwrap())
}

fn artifact_file(dir: &std::path::Path, name: &str, len: usize) -> Artifact {
    let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join(name), &bytes).unwrap();
    commons_test_util::artifact_of(name, &bytes)
}

/// An application release signed by regtest keys `signers` (application: 3 of keys 0-4).
fn release(
    version: &str,
    expires: u64,
    artifacts: Vec<Artifact>,
    signers: &[usize],
) -> ReleaseBundle {
    let manifest = commons_test_util::release_manifest(
        version,
        ReleaseClass::Application,
        T - 100,
        expires,
        artifacts,
    );
    commons_test_util::sign_release(
        &commons_test_util::regtest_network(),
        manifest,
        signers.iter().copied(),
    )
}

fn rejected(node: &Node, reason: &str) -> u64 {
    node.release_metrics()
        .rejected
        .get_or_create(&commons_node::metrics::ReasonLabels {
            reason: reason.into(),
        })
        .get()
}

async fn list(node: &Node) -> Result<Vec<Release>, String> {
    common::call::<method::ListReleases>(node, &NoParams {}).await
}

#[tokio::test]
async fn each_bad_bundle_gets_its_verdict_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    let a = artifact_file(dir.path(), "tool", 10);
    let cases: Vec<(Vec<u8>, Verdict, &str)> = vec![
        (b"\xa1\x00\x00".to_vec(), Verdict::Reject, "malformed"),
        (
            release("1.0.0", T + 100, vec![a.clone()], &[0, 1]).encode(),
            Verdict::Reject,
            "below_threshold",
        ),
        (
            release("1.0.0", T - 1, vec![a.clone()], &[0, 1, 2]).encode(),
            Verdict::Ignore,
            "expired",
        ),
    ];
    for (bytes, verdict, reason) in cases {
        let outcome = n.ingest(MessageKind::Release, &bytes).await;
        assert_eq!((outcome.verdict, outcome.reason.label()), (verdict, reason));
        assert_eq!(rejected(&n, reason), 1, "{reason}");
    }
    let good = release("1.0.0", T + 100, vec![a.clone()], &[0, 1, 2]);
    let outcome = n.ingest(MessageKind::Release, &good.encode()).await;
    assert_eq!(outcome.verdict, Verdict::Accept, "{}", outcome.reason);
    let outcome = n.ingest(MessageKind::Release, &good.encode()).await;
    assert_eq!(
        (outcome.verdict, outcome.reason.label()),
        (Verdict::Ignore, "duplicate")
    );
    for older_or_equal in ["0.9.0", "1.0"] {
        let old = release(older_or_equal, T + 100, vec![a.clone()], &[0, 1, 2]);
        let outcome = n.ingest(MessageKind::Release, &old.encode()).await;
        assert_eq!(
            (outcome.verdict, outcome.reason.label()),
            (Verdict::Ignore, "rollback")
        );
    }
    assert_eq!(rejected(&n, "rollback"), 2);

    // Accepted from gossip, but its artifact is not here yet.
    let list = list(&n).await.unwrap();
    assert_eq!(list[0].state, "fetching", "{list:?}");
    assert_eq!(list[0].artifacts[0].state, "waiting", "{list:?}");
    assert_eq!(list[0].signers, 3, "{list:?}");
}

#[tokio::test]
async fn publishing_keeps_nothing_unless_everything_checks_out() {
    let dir = tempfile::tempdir().unwrap();
    let dist = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    let big = artifact_file(dist.path(), "commonsd", 2 * CHUNK_SIZE as usize + 3);
    let notes = artifact_file(dist.path(), "NOTES", 5);
    let bundle = release(
        "2.0.0",
        T + 100,
        vec![big.clone(), notes.clone()],
        &[0, 2, 4],
    );
    let publish = |bundle: &ReleaseBundle, dir: &std::path::Path| {
        let params = PublishReleaseParams {
            bundle: hex::encode(bundle.encode()),
            artifacts: dir.to_str().unwrap().to_string(),
        };
        let n = &n;
        async move { common::call::<method::PublishRelease>(n, &params).await }
    };

    // The second artifact on disk differs from the manifest: refused, nothing listed.
    std::fs::write(dist.path().join("NOTES"), b"other").unwrap();
    let err = publish(&bundle, dist.path()).await.unwrap_err();
    assert!(err.starts_with("-32002") && err.contains("NOTES"), "{err}");
    assert_eq!(rejected(&n, "artifact_mismatch"), 1);
    assert_eq!(list(&n).await.unwrap(), []);
    let err = publish(&bundle, std::path::Path::new("dist"))
        .await
        .unwrap_err();
    assert!(err.starts_with("-32602"), "{err}");
    let under = release("2.0.0", T + 100, vec![notes.clone()], &[0]);
    let err = publish(&under, dist.path()).await.unwrap_err();
    assert!(err.contains("required release signatures"), "{err}");

    std::fs::write(dist.path().join("NOTES"), vec![0u8, 1, 2, 3, 4]).unwrap();
    let r = publish(&bundle, dist.path()).await.unwrap();
    assert!(r.new, "{r:?}");
    let shown = common::call::<method::GetRelease>(&n, &IdParams::new(&r.id))
        .await
        .unwrap();
    assert_eq!(shown.state, "verified", "{shown:?}");
    let path = shown.artifacts[0].path.as_deref().unwrap();
    assert!(path.ends_with("releases/stable/2.0.0/commonsd"), "{path}");
    assert_eq!(
        std::fs::read(path).unwrap(),
        std::fs::read(dist.path().join("commonsd")).unwrap()
    );
    assert_eq!(
        hex::decode(shown.bundle.as_deref().unwrap()).unwrap(),
        bundle.encode()
    );
    let err = common::call::<method::GetRelease>(&n, &IdParams::new("00".repeat(32)))
        .await
        .unwrap_err();
    assert!(err.starts_with("-32001"), "{err}");

    // Served to peers: the chunk list, each chunk matching it, `missing` past the end or for
    // unknown artifacts, and garbage flagged as misbehaviour.
    let ask = |request: FetchRequest| {
        let n = &n;
        async move {
            let (bytes, bad) = n.serve_fetch(&request.encode()).await;
            assert!(!bad);
            FetchResponse::decode(&bytes).unwrap()
        }
    };
    let FetchResponse::ChunkList { hashes } = ask(FetchRequest::ChunkList {
        artifact: big.sha256,
    })
    .await
    else {
        panic!("no chunk list");
    };
    let chunks = parse_chunk_list(hashes.as_slice()).unwrap();
    assert_eq!(chunks.len(), 3);
    for (index, expected) in chunks.iter().enumerate() {
        let FetchResponse::Chunk { data } = ask(FetchRequest::Chunk {
            artifact: big.sha256,
            index: index as u32,
        })
        .await
        else {
            panic!("no chunk {index}");
        };
        assert_eq!(chunk_hash(data.as_slice()), *expected);
    }
    assert_eq!(
        ask(FetchRequest::Chunk {
            artifact: big.sha256,
            index: 3
        })
        .await,
        FetchResponse::Missing
    );
    assert_eq!(
        ask(FetchRequest::ChunkList {
            artifact: commons_signaling::Hash32([9; 32])
        })
        .await,
        FetchResponse::Missing
    );
    assert!(n.serve_fetch(b"garbage").await.1);
    assert_eq!(
        n.release_metrics().served_bytes.get(),
        2 * CHUNK_SIZE + 3,
        "served bytes counted"
    );
    let snapshot = commons_node::metrics::SnapshotSource::snapshot(&n);
    assert_eq!(
        snapshot.newest_verified_releases,
        vec![("stable".to_string(), "2.0.0".to_string())]
    );
}

#[tokio::test]
async fn the_partial_download_of_a_superseded_release_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let dist = tempfile::tempdir().unwrap();
    let n = node(dir.path());
    let old = artifact_file(dist.path(), "old", CHUNK_SIZE as usize + 1);
    let shared = artifact_file(dist.path(), "shared", 10);
    let v1 = release(
        "1.0.0",
        T + 100,
        vec![old.clone(), shared.clone()],
        &[0, 1, 2],
    );
    assert_eq!(
        n.ingest(MessageKind::Release, &v1.encode()).await.verdict,
        Verdict::Accept
    );
    // Downloads of both artifacts are under way, as the fetcher would have them.
    let store = n.artifact_store().unwrap().clone();
    for artifact in [&old, &shared] {
        let bytes = std::fs::read(dist.path().join(artifact.name.as_str())).unwrap();
        let mut hasher = ArtifactHasher::new();
        hasher.update(&bytes);
        store.begin(artifact, hasher.finish().chunks).unwrap();
    }
    assert_eq!(n.prune_abandoned_downloads(), 0, "1.0.0 is still wanted");

    // 1.1.0 supersedes it and lists `shared` again: only `old` is dropped.
    let v2 = release("1.1.0", T + 100, vec![shared.clone()], &[0, 1, 2]);
    assert_eq!(
        n.ingest(MessageKind::Release, &v2.encode()).await.verdict,
        Verdict::Accept
    );
    assert_eq!(n.prune_abandoned_downloads(), 1);
    assert!(store.saved_chunk_list(&old).is_none());
    assert!(store.saved_chunk_list(&shared).is_some());
    let list = list(&n).await.unwrap();
    assert_eq!(list[1].version, "1.0.0", "{list:?}");
    assert_eq!(list[1].state, "superseded", "{list:?}");
}
