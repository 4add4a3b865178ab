//! A signed release travels over the network: five real `commonsd` processes, a 50 MiB
//! artifact published at one of them, and two in-test peers that serve corrupted chunks, one
//! on `fetch/2` streams and one that speaks only `fetch/1` (so the nodes fall back to
//! requests for it). Every node must end with byte-identical, verified artifacts; both
//! corrupting peers must be penalised and must not stop anyone; a node killed with `kill -9`
//! in the middle of its download must finish after a restart.
//!
//! The test prints what it measured (time until every node verified the release, each
//! node's throughput and peak memory); it asserts only that memory stays below the artifact's
//! size, which is what streaming means.

use std::time::{Duration, Instant};

use commons_e2e::{
    TestNode, TestPeer, artifact_entry, phases, regtest_release, scenario, start_mesh, wait_until,
    write_artifact,
};
use commons_node::fetch::{
    ChunkRun, FetchRequest, FetchResponse, MAX_RESPONSE_BYTES, MAX_RUN_REQUEST_BYTES, read_frame,
    write_frame,
};
use commons_p2p::{Multiaddr, P2pEvent};
use commons_rpc::{
    IdParams, NoParams, PeerInfo, PublishReceipt, PublishReleaseParams, Release, method,
};
use commons_signaling::artifact::{ArtifactDigest, ArtifactHasher, chunk_len, encode_chunk_list};
use commons_signaling::{BoundedBytes, BoundedVec, Hash32, NetworkSpec, ReleaseBundle};
use futures::{AsyncWriteExt, StreamExt};

/// Five nodes and the corrupting peers. No other test uses 127.0.0.150-156.
const NODES: [&str; 5] = [
    "127.0.0.150",
    "127.0.0.151",
    "127.0.0.152",
    "127.0.0.153",
    "127.0.0.154",
];
/// Speaks `fetch/1` only.
const OLD_CORRUPTER: &str = "127.0.0.155";
/// Speaks `fetch/2` too.
const CORRUPTER: &str = "127.0.0.156";
const BIG: u64 = 50 * 1024 * 1024 + 12_345;
const WAIT: Duration = Duration::from_secs(120);

/// The corrupters' answer to a chunk request: the right number of wrong bytes.
fn corrupted(sha256: Hash32, size: u64, artifact: Hash32, index: u32) -> FetchResponse {
    if artifact != sha256 {
        return FetchResponse::Missing;
    }
    let len = chunk_len(size, index.into()).unwrap_or(1);
    FetchResponse::Chunk {
        data: BoundedBytes::new(vec![0xee; len as usize]).unwrap(),
    }
}

/// A peer that answers chunk-list requests truthfully (so it is believed) and every chunk
/// request with wrong bytes: on `fetch/1`, and on `fetch/2` streams when `streams`.
fn start_corrupter(
    ip: &str,
    bootstrap: Vec<Multiaddr>,
    digest: &ArtifactDigest,
    size: u64,
    streams: bool,
) -> TestPeer {
    let (sha256, chunks) = (digest.sha256, digest.chunks.clone());
    TestPeer::start(ip, bootstrap, move |mut events, responder| async move {
        if streams {
            let mut incoming = responder.accept_fetch_streams().unwrap();
            tokio::spawn(async move {
                while let Some((_, mut stream)) = incoming.next().await {
                    tokio::spawn(async move {
                        let Ok(Some(request)) =
                            read_frame(&mut stream, MAX_RUN_REQUEST_BYTES).await
                        else {
                            return;
                        };
                        let Ok(run) = ChunkRun::decode(&request) else {
                            return;
                        };
                        for index in run.indices {
                            let answer = corrupted(sha256, size, run.artifact, index).encode();
                            if write_frame(&mut stream, &answer, MAX_RESPONSE_BYTES)
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        let _ = stream.close().await;
                    });
                }
            });
        }
        while let Some(event) = events.recv().await {
            let P2pEvent::InboundFetch {
                request, channel, ..
            } = event
            else {
                continue;
            };
            let response = match FetchRequest::decode(&request) {
                Ok(FetchRequest::ChunkList { artifact }) if artifact == sha256 => {
                    FetchResponse::ChunkList {
                        hashes: BoundedBytes::new(encode_chunk_list(&chunks)).unwrap(),
                    }
                }
                Ok(FetchRequest::Chunk { artifact, index }) => {
                    corrupted(sha256, size, artifact, index)
                }
                _ => FetchResponse::Missing,
            };
            let _ = responder.respond(channel, response.encode()).await;
        }
    })
}

fn release_on(node: &TestNode, id: &str) -> Result<Release, String> {
    node.call::<method::GetRelease>(&IdParams::new(id))
        .map_err(|e| format!("{}: {e}", node.name))
}

/// Asks `node` to publish `bundle` with its artifacts in `dir`.
fn publish(node: &TestNode, bundle: &ReleaseBundle, dir: &str) -> anyhow::Result<PublishReceipt> {
    node.call::<method::PublishRelease>(&PublishReleaseParams {
        bundle: hex::encode(bundle.encode()),
        artifacts: dir.to_string(),
    })
}

fn peers_of(node: &TestNode) -> anyhow::Result<Vec<PeerInfo>> {
    node.call::<method::GetPeers>(&NoParams {})
}

fn releases_of(node: &TestNode) -> Vec<Release> {
    node.call::<method::ListReleases>(&NoParams {}).unwrap()
}

fn sha256_of(path: &str) -> String {
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = ArtifactHasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut file, &mut buffer).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    hasher.finish().sha256.to_hex()
}

#[test]
fn a_fifty_mib_release_reaches_five_nodes_despite_a_corrupting_peer() {
    let phase = phases("release_propagation");
    phase("five commonsd on 127.0.0.150-154, a corrupting peer on .155");
    let mut nodes = start_mesh("r", &NODES);
    let dist = tempfile::tempdir().unwrap();
    let big = write_artifact(&dist.path().join("commonsd-linux-x86_64"), BIG, 7);
    let notes = write_artifact(&dist.path().join("NOTES.txt"), 1000, 11);
    let bundle = regtest_release(
        "1.0.0",
        vec![
            artifact_entry("commonsd-linux-x86_64", &big),
            artifact_entry("NOTES.txt", &notes),
        ],
    );
    let id = bundle.id(&NetworkSpec::regtest().network_id()).to_hex();

    let addrs: Vec<Multiaddr> = nodes
        .iter()
        .map(|n| n.multiaddr().unwrap().parse().unwrap())
        .collect();
    let corrupters = [
        start_corrupter(OLD_CORRUPTER, addrs.clone(), &big, BIG, false),
        start_corrupter(CORRUPTER, addrs, &big, BIG, true),
    ];
    let corrupter_ids: Vec<String> = corrupters.iter().map(TestPeer::peer_id).collect();
    wait_until(WAIT, "the corrupting peers connected to every node", || {
        for n in &nodes {
            let list = peers_of(n).map_err(|e| e.to_string())?;
            if corrupter_ids
                .iter()
                .any(|id| !list.iter().any(|p| p.peer_id == *id))
            {
                return Err(format!("{} has {} peers", n.name, list.len()));
            }
            if list.len() < NODES.len() + 1 {
                return Err(format!("{} has {} peers", n.name, list.len()));
            }
        }
        Ok(())
    });
    let rss_before: Vec<u64> = nodes
        .iter()
        .map(|n| n.memory_kib("VmRSS").unwrap_or(0))
        .collect();

    phase("refused: a bundle whose artifact does not match, and a relative directory");
    let mut tampered = bundle.clone();
    tampered.body.artifacts = BoundedVec::new(vec![artifact_entry("NOTES.txt", &big)]).unwrap();
    let dist_dir = dist.path().to_str().expect("temporary paths are UTF-8");
    let err = publish(&nodes[0], &tampered, dist_dir)
        .unwrap_err()
        .to_string();
    assert!(err.contains("refused"), "{err}");
    let err = publish(&nodes[0], &bundle, "dist").unwrap_err().to_string();
    assert!(err.contains("absolute"), "{err}");
    assert_eq!(
        releases_of(&nodes[0]),
        [],
        "nothing is kept from a refused publication"
    );

    phase("published at node 0");
    let published_at = Instant::now();
    let r = publish(&nodes[0], &bundle, dist_dir).unwrap();
    assert_eq!(r.id, id, "{r:?}");
    assert!(r.new, "{r:?}");

    // Node 4 is killed in the middle of its download, to show that it resumes.
    let victim = nodes.len() - 1;
    let mut interrupted_at = None;
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Ok(release) = release_on(&nodes[victim], &id) {
            let have = release.artifacts.first().map_or(0, |a| a.have_bytes);
            if release.state == "verified" {
                break;
            }
            if have > 0 {
                interrupted_at = Some(have);
                nodes[victim].kill9();
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    match interrupted_at {
        Some(have) => {
            phase(&format!(
                "node 4 killed with {have} bytes on disk; restarting"
            ));
            nodes[victim].restart().unwrap();
        }
        None => phase("node 4 finished before it could be interrupted"),
    }

    let mut verified_after: Vec<Option<Duration>> = vec![None; nodes.len()];
    wait_until(WAIT, "every node verified the release", || {
        for (i, n) in nodes.iter().enumerate() {
            if verified_after[i].is_some() {
                continue;
            }
            let release = release_on(n, &id)?;
            if release.state != "verified" {
                return Err(format!("{}: {release:?}", n.name));
            }
            verified_after[i] = Some(published_at.elapsed());
        }
        Ok(())
    });
    let all_verified = published_at.elapsed();

    phase("every node holds byte-identical artifacts");
    for n in &nodes {
        let release = release_on(n, &id).unwrap();
        for (artifact, digest) in release.artifacts.iter().zip([&big, &notes]) {
            let path = artifact
                .path
                .as_deref()
                .unwrap_or_else(|| panic!("{release:?}"));
            assert!(
                path.starts_with(&n.datadir().display().to_string()),
                "{path} is not under the data directory"
            );
            assert_eq!(
                sha256_of(path),
                digest.sha256.to_hex(),
                "{}: {path}",
                n.name
            );
            assert_eq!(std::fs::metadata(path).unwrap().len(), digest.size);
        }
    }

    phase("both corrupting peers were caught and penalised");
    let bad: Vec<f64> = nodes[1..]
        .iter()
        .map(|n| n.metric("commons_release_bad_chunks_total"))
        .collect();
    assert!(
        bad.iter().all(|b| *b >= 2.0),
        "bad chunks seen per fetching node: {bad:?}"
    );
    for id in &corrupter_ids {
        let penalised = nodes[1..]
            .iter()
            .filter(|n| {
                peers_of(n)
                    .unwrap()
                    .iter()
                    .all(|p| p.peer_id != *id || p.gossip_score < Some(0.0))
            })
            .count();
        assert_eq!(
            penalised,
            nodes.len() - 1,
            "every fetching node penalised the corrupter {id}"
        );
    }
    assert!(
        nodes[0].metric("commons_release_served_bytes_total") > 0.0,
        "the publisher served chunks"
    );
    assert_eq!(nodes[2].metric("commons_release_fetches_in_progress"), 0.0);
    assert!(
        nodes[2]
            .metrics()
            .unwrap()
            .contains("commons_release_newest_verified{channel=\"stable\",version=\"1.0.0\"} 1"),
        "newest verified version in /metrics"
    );

    phase("a rollback to an older version is refused, the same version is not new");
    let older = regtest_release("0.9.0", vec![artifact_entry("NOTES.txt", &notes)]);
    let err = publish(&nodes[1], &older, dist_dir)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not newer"), "{err}");
    assert!(nodes[1].metric("commons_release_rejected_total{reason=\"rollback\"}") >= 1.0);
    let again = publish(&nodes[1], &bundle, dist_dir).unwrap();
    assert!(!again.new, "{again:?}");
    assert_eq!(releases_of(&nodes[1]).len(), 1);

    let mut report = format!(
        "release_propagation figures: {} MiB verified on all {} nodes {:.2} s after publication\n",
        BIG >> 20,
        nodes.len(),
        all_verified.as_secs_f64()
    );
    for (i, n) in nodes.iter().enumerate() {
        let took = verified_after[i].unwrap_or(all_verified).as_secs_f64();
        let peak = n.memory_kib("VmHWM").unwrap_or(0);
        report.push_str(&format!(
            "  {}: verified after {took:.2} s ({:.1} MiB/s), RSS before {:.1} MiB, peak {:.1} MiB\n",
            n.name,
            BIG as f64 / (1 << 20) as f64 / took.max(0.001),
            rss_before[i] as f64 / 1024.0,
            peak as f64 / 1024.0,
        ));
        // Streaming: a node never holds the artifact whole (the restarted node's peak is
        // its own run's).
        assert!(
            peak.saturating_sub(rss_before[i]) < BIG / 1024,
            "{}: peak RSS {peak} KiB grew by more than the artifact",
            n.name
        );
    }
    scenario(&report);
}
