//! The self-check of the executable (`--verify-binary`) in the node core, without a network:
//! which releases make a binary `verified`, that a publication changes the status at once,
//! and what `getinfo` and `/metrics` say.

mod common;

use std::sync::Arc;

use commons_node::artifacts::ArtifactStore;
use commons_node::metrics;
use commons_node::node::Node;
use commons_node::selfcheck::{
    BinaryCollector, BinaryStatus, SelfCheck, VerifyBinary, digest_file,
};
use commons_node::store::Store;
use commons_rpc::{NoParams, PublishReleaseParams, method};
use commons_signaling::{Artifact, NetworkSpec, ReleaseBundle, ReleaseClass, SecretKey};
use prometheus_client::registry::Registry;

const T: u64 = 2_000_000_000;

fn node(dir: &std::path::Path, check: SelfCheck) -> Node {
    std::fs::create_dir_all(dir).unwrap();
    let store = Arc::new(Store::open(&dir.join("db")).unwrap());
    Node::new(
        NetworkSpec::regtest(),
        SecretKey::from_seed("self-check node"),
        store,
        None,
        Arc::new(|| T),
    )
    .unwrap()
    .with_artifacts(ArtifactStore::open(dir).unwrap())
    .with_self_check(check)
}

fn file(dir: &std::path::Path, name: &str, bytes: &[u8]) -> Artifact {
    std::fs::write(dir.join(name), bytes).unwrap();
    commons_test_util::artifact_of(name, bytes)
}

fn release(version: &str, artifacts: Vec<Artifact>) -> ReleaseBundle {
    let manifest = commons_test_util::release_manifest(
        version,
        ReleaseClass::Application,
        T - 100,
        T + 3600,
        artifacts,
    );
    commons_test_util::sign_release(&commons_test_util::regtest_network(), manifest, 0..3)
}

async fn publish(node: &Node, bundle: &ReleaseBundle, dir: &std::path::Path) {
    common::call::<method::PublishRelease>(
        node,
        &PublishReleaseParams {
            bundle: hex::encode(bundle.encode()),
            artifacts: dir.to_str().unwrap().to_string(),
        },
    )
    .await
    .unwrap();
}

fn scrape(node: Arc<Node>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(BinaryCollector::new(node)));
    metrics::encode(&registry)
}

#[tokio::test]
async fn a_binary_turns_verified_when_a_release_listing_it_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let dist = tempfile::tempdir().unwrap();
    let exe_bytes: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
    let exe = file(dist.path(), "commonsd", &exe_bytes);
    let other = file(dist.path(), "NOTES.txt", b"release notes");
    let digest = digest_file(
        &dist.path().join("commonsd"),
        &dist.path().join("commonsd"),
        &dir.path().join("binary-digest"),
    )
    .unwrap();
    assert_eq!(digest.sha256, exe.sha256);
    let n = Arc::new(node(
        dir.path(),
        SelfCheck::new(VerifyBinary::Warn, Ok(digest)),
    ));

    assert_eq!(n.refresh_binary(), BinaryStatus::Unverified);
    let text = scrape(n.clone());
    assert!(text.contains("commons_binary_verified 0"), "{text}");
    assert!(
        text.contains("commons_binary_status{status=\"unverified\"} 1"),
        "{text}"
    );

    // A release that does not list the binary changes nothing.
    publish(&n, &release("1.0.0", vec![other.clone()]), dist.path()).await;
    assert_eq!(n.refresh_binary(), BinaryStatus::Unverified);

    // One that does: verified at once, naming it.
    let bundle = release("1.1.0", vec![exe.clone(), other]);
    publish(&n, &bundle, dist.path()).await;
    let info = common::call::<method::GetInfo>(&n, &NoParams {})
        .await
        .unwrap()
        .binary
        .unwrap();
    assert_eq!(
        (info.mode.as_str(), info.status.as_str()),
        ("warn", "verified")
    );
    assert_eq!(info.sha256, Some(exe.sha256.to_hex()));
    let r = info.release.unwrap();
    assert_eq!(r.id, bundle.id(n.network_id()).to_hex());
    assert_eq!(
        (r.channel.as_str(), r.version.as_str(), r.artifact.as_str()),
        ("stable", "1.1.0", "commonsd")
    );
    let text = scrape(n.clone());
    assert!(text.contains("commons_binary_verified 1"), "{text}");
    assert!(
        text.contains("commons_binary_status{status=\"verified\"} 1")
            && text.contains("commons_binary_status{status=\"unverified\"} 0"),
        "{text}"
    );

    // Its artifact gone from disk, the release is no longer verified, nor the binary.
    std::fs::remove_file(n.artifact_store().unwrap().path(&exe.sha256)).unwrap();
    assert_eq!(n.refresh_binary(), BinaryStatus::Unverified);
}

#[tokio::test]
async fn the_same_digest_with_another_size_is_not_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let dist = tempfile::tempdir().unwrap();
    let exe = file(dist.path(), "commonsd", b"the binary");
    let mut digest = digest_file(
        &dist.path().join("commonsd"),
        &dist.path().join("commonsd"),
        &dir.path().join("binary-digest"),
    )
    .unwrap();
    digest.size += 1;
    let n = node(
        dir.path(),
        SelfCheck::new(VerifyBinary::Require, Ok(digest)),
    );
    publish(&n, &release("1.0.0", vec![exe]), dist.path()).await;
    let status = n.refresh_binary();
    assert_eq!(status, BinaryStatus::Unverified);
    assert!(n.self_check().refusal(&status, dir.path()).is_some());
}

#[tokio::test]
async fn off_and_error_are_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let off = Arc::new(node(&dir.path().join("a"), SelfCheck::off()));
    assert_eq!(off.refresh_binary(), BinaryStatus::Off);
    let info = common::call::<method::GetInfo>(&off, &NoParams {})
        .await
        .unwrap()
        .binary
        .unwrap();
    assert_eq!((info.status.as_str(), info.sha256), ("off", None));
    assert!(scrape(off).contains("commons_binary_status{status=\"off\"} 1"));

    let broken = node(
        &dir.path().join("b"),
        SelfCheck::new(VerifyBinary::Warn, Err("permission denied".into())),
    );
    let info = common::call::<method::GetInfo>(&broken, &NoParams {})
        .await
        .unwrap()
        .binary
        .unwrap();
    assert_eq!(
        (info.status.as_str(), info.error.as_deref()),
        ("error", Some("permission denied"))
    );
}
