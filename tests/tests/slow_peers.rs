//! A peer that asks a real `commonsd` for release chunks (as `fetch/1` requests and on
//! `fetch/2` streams) and catch-up pages and then reads the answers at 1 KiB/s (through a
//! throttling relay on loopback) delays only itself: the node keeps serving another peer's
//! catch-up and fetches, on both protocols, in full meanwhile, its memory stays bounded, and
//! the slow peer's requests end with a timeout instead of hanging.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use commons_e2e::{
    NodeSpec, TestNode, TestPeer, artifact_entry, phases, regtest_release, throttled_relay,
    wait_until, write_artifact,
};
use commons_node::fetch::{
    ChunkRun, FetchRequest, FetchResponse, MAX_RESPONSE_BYTES, MAX_RUN_REQUEST_BYTES, read_frame,
    write_frame,
};
use commons_node::sync::{SyncRequest, SyncResponse};
use commons_p2p::{Multiaddr, P2pHandle, PeerId};
use commons_rpc::{PublishReleaseParams, method};
use commons_signaling::Hash32;
use commons_signaling::artifact::chunk_len;

/// No other test uses 127.0.0.206-208.
const SERVER: &str = "127.0.0.206";
const SLOW: &str = "127.0.0.207";
const FAST: &str = "127.0.0.208";
/// Eight chunks of 1 MiB and a short last one.
const SIZE: u64 = 8 * 1024 * 1024 + 4321;
const CHUNKS: u32 = 9;
/// The slow peer gives up on a request after this; the server, after its own 30 s. The
/// other peer must be served before the first of these ends: with the answers of slow
/// peers in the way, it would wait for the server's 30 s.
const SLOW_TIMEOUT: Duration = Duration::from_secs(20);
/// Requests the slow peer sends at once: more than the node's share per peer (4 per
/// protocol), so that some are refused and the rest held.
const SLOW_FETCHES: u32 = 12;
const SLOW_CATCHUPS: usize = 6;
/// `fetch/2` streams the slow peer opens at once, each for every chunk: more than the
/// node's 2 per peer.
const SLOW_STREAMS: usize = 3;

/// When one of the slow peer's requests ended, and how: the answer's length or the error.
type Outcome = (Duration, Result<usize, String>);

/// The peer id and port in `/ip4/IP/tcp/PORT/p2p/ID`.
fn port_and_id(multiaddr: &str) -> (u16, PeerId) {
    let parts: Vec<&str> = multiaddr.split('/').collect();
    (parts[4].parse().unwrap(), parts[6].parse().unwrap())
}

/// A peer that only asks (its events are drained), giving up on a request after `timeout`.
fn asking_peer(ip: &str, dial: Multiaddr, timeout: Duration) -> TestPeer {
    TestPeer::start_tuned(
        ip,
        vec![dial],
        |config| config.request_timeout = timeout,
        |mut events, _| async move { while events.recv().await.is_some() {} },
    )
}

fn connected(peer: &TestPeer, server: PeerId) -> Result<(), String> {
    let handle = peer.handle.clone();
    let peers = peer
        .rt
        .block_on(async move { handle.peers().await })
        .map_err(|e| e.to_string())?;
    if peers.iter().any(|p| p.peer_id == server) {
        Ok(())
    } else {
        Err("not connected yet".into())
    }
}

fn chunk_request(artifact: Hash32, index: u32) -> Vec<u8> {
    FetchRequest::Chunk { artifact, index }.encode()
}

/// Checks that an answer is the whole chunk `index`.
fn check_chunk(index: u32, answer: &[u8]) -> Result<(), String> {
    match FetchResponse::decode(answer) {
        Ok(FetchResponse::Chunk { data }) => {
            let want = chunk_len(SIZE, index.into()).unwrap();
            if data.as_slice().len() as u64 == want {
                Ok(())
            } else {
                Err(format!("chunk {index}: {} bytes", data.as_slice().len()))
            }
        }
        other => Err(format!("chunk {index}: {other:?}")),
    }
}

/// Asks for every chunk on one `fetch/2` stream and checks each answer; the bytes read.
async fn fetch_run(net: P2pHandle, server: PeerId, artifact: Hash32) -> Result<usize, String> {
    let mut stream = net
        .open_fetch_stream(server)
        .await
        .map_err(|e| format!("stream: {e}"))?;
    let run = ChunkRun {
        artifact,
        indices: (0..CHUNKS).collect(),
    };
    write_frame(&mut stream, &run.encode(), MAX_RUN_REQUEST_BYTES)
        .await
        .map_err(|e| format!("run request: {e}"))?;
    let mut read = 0;
    for index in run.indices {
        let answer = read_frame(&mut stream, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| format!("chunk {index}: {e}"))?
            .ok_or_else(|| format!("the stream closed before chunk {index}"))?;
        check_chunk(index, &answer)?;
        read += answer.len();
    }
    Ok(read)
}

/// Fetches every chunk and checks its length; then one catch-up page.
async fn fetch_everything(net: P2pHandle, server: PeerId, artifact: Hash32) -> Result<(), String> {
    for index in 0..CHUNKS {
        let bytes = net
            .request_fetch(server, chunk_request(artifact, index))
            .await
            .map_err(|e| format!("chunk {index}: {e}"))?;
        check_chunk(index, &bytes)?;
    }
    let page = net
        .request_sync(server, SyncRequest::Catchup { after: None }.encode())
        .await
        .map_err(|e| format!("catch-up: {e}"))?;
    match SyncResponse::decode(&page) {
        Ok(SyncResponse::Batch { items, .. }) if !items.is_empty() => Ok(()),
        other => Err(format!("catch-up: {other:?}")),
    }
}

#[test]
fn a_slow_reader_delays_only_itself() {
    let phase = phases("slow_peers");
    phase("commonsd on 127.0.0.206 publishes a release of 8 MiB");
    let node = TestNode::start(
        "server",
        NodeSpec {
            ip: SERVER.into(),
            bootstrap: vec![],
            measurer: None,
        },
    )
    .expect("commonsd starts");
    let dist = tempfile::tempdir().unwrap();
    let digest = write_artifact(&dist.path().join("commonsd-linux-x86_64"), SIZE, 3);
    let bundle = regtest_release(
        "1.0.0",
        vec![artifact_entry("commonsd-linux-x86_64", &digest)],
    );
    node.call::<method::PublishRelease>(&PublishReleaseParams {
        bundle: hex::encode(bundle.encode()),
        artifacts: dist.path().display().to_string(),
    })
    .expect("the release is published");
    let artifact = digest.sha256;
    let (port, server) = port_and_id(&node.multiaddr().unwrap());

    phase("a peer on .207 connects through a relay that passes on 1 KiB/s towards it");
    let relay = throttled_relay(
        SLOW,
        SLOW,
        format!("{SERVER}:{port}").parse().unwrap(),
        1024,
    )
    .unwrap();
    let slow = asking_peer(
        SLOW,
        format!("/ip4/{SLOW}/tcp/{}/p2p/{server}", relay.port())
            .parse()
            .unwrap(),
        SLOW_TIMEOUT,
    );
    wait_until(Duration::from_secs(60), "the slow peer connected", || {
        connected(&slow, server)
    });
    let resident_before = node.memory_kib("VmRSS").unwrap();

    phase("the slow peer asks for 12 chunks, 3 streams of 9 chunks and 6 catch-up pages at once");
    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let asked = Instant::now();
    for i in 0..(SLOW_FETCHES as usize + SLOW_CATCHUPS) {
        let (net, outcomes) = (slow.handle.clone(), outcomes.clone());
        slow.rt.spawn(async move {
            let answer = if i < SLOW_FETCHES as usize {
                let index = u32::try_from(i).unwrap() % CHUNKS;
                net.request_fetch(server, chunk_request(artifact, index))
                    .await
            } else {
                net.request_sync(server, SyncRequest::Catchup { after: None }.encode())
                    .await
            };
            let outcome = answer.map(|b| b.len()).map_err(|e| e.to_string());
            outcomes.lock().unwrap().push((asked.elapsed(), outcome));
        });
    }
    for _ in 0..SLOW_STREAMS {
        let (net, outcomes) = (slow.handle.clone(), outcomes.clone());
        slow.rt.spawn(async move {
            // The stream has no timeout of its own: the slow peer gives up as on a request.
            let outcome = tokio::time::timeout(SLOW_TIMEOUT, fetch_run(net, server, artifact))
                .await
                .unwrap_or_else(|_| Err("stream timeout".into()));
            outcomes.lock().unwrap().push((asked.elapsed(), outcome));
        });
    }
    // Give the requests time to reach the node and its answers time to back up.
    std::thread::sleep(Duration::from_secs(3));

    phase(
        "meanwhile a peer on .208 fetches the whole artifact twice (fetch/1, fetch/2) and a catch-up page",
    );
    let fast = asking_peer(
        FAST,
        node.multiaddr().unwrap().parse().unwrap(),
        Duration::from_secs(30),
    );
    wait_until(Duration::from_secs(30), "the fast peer connected", || {
        connected(&fast, server)
    });
    let net = fast.handle.clone();
    fast.rt
        .block_on(fetch_everything(net, server, artifact))
        .unwrap_or_else(|e| panic!("the other peer was not served: {e}"));
    let net = fast.handle.clone();
    let streamed = fast
        .rt
        .block_on(fetch_run(net, server, artifact))
        .unwrap_or_else(|e| panic!("the other peer's stream was not served: {e}"));
    assert!(streamed as u64 > SIZE, "{streamed} bytes of answers");
    // The slow peer's requests end only at its timeout (20 s): had their answers held the
    // places the other peer needed (as when 8 fetch slots served everyone), the server would
    // have served it only once it gave up on them itself, after 30 s.
    let done_meanwhile = outcomes.lock().unwrap().clone();
    assert!(
        done_meanwhile.is_empty(),
        "the other peer was served only after slow requests ended: {done_meanwhile:?}"
    );

    phase("the slow peer's requests end, each with an error, none hangs");
    let total = SLOW_FETCHES as usize + SLOW_CATCHUPS + SLOW_STREAMS;
    let mut peak = resident_before;
    wait_until(Duration::from_secs(120), "every slow request ended", || {
        peak = peak.max(node.memory_kib("VmRSS").unwrap_or(0));
        let n = outcomes.lock().unwrap().len();
        if n == total {
            Ok(())
        } else {
            Err(format!("{n} of {total} ended"))
        }
    });
    let outcomes = outcomes.lock().unwrap().clone();
    for (after, outcome) in &outcomes {
        println!("slow request ended after {after:?}: {outcome:?}");
    }
    // 18 answers and 27 streamed chunks of up to 1 MiB at 1 KiB/s would take hours: each
    // must fail, not arrive.
    assert!(outcomes.iter().all(|(_, o)| o.is_err()), "{outcomes:?}");
    assert!(
        outcomes.iter().any(|(_, o)| o
            .as_ref()
            .is_err_and(|e| e.to_lowercase().contains("timeout"))),
        "no request timed out: {outcomes:?}"
    );
    let resident_after = node.memory_kib("VmRSS").unwrap();
    peak = peak.max(resident_after);
    println!(
        "server VmRSS: {resident_before} KiB before, peak {peak} KiB while the slow peer \
         crawled, {resident_after} KiB after"
    );
    // The node holds at most 4 chunks, 4 pages and 2 streams of 2 chunks for the slow peer
    // (~12 MiB) and the fast peer's answers, plus the buffers of two connections; 64 MiB above the
    // start leaves room for the allocator, and is far below what 18 unbounded answers held
    // by a slow peer per connection (32 streams of up to 4 MiB) could take.
    assert!(
        peak < resident_before + 64 * 1024,
        "VmRSS grew from {resident_before} KiB to {peak} KiB"
    );

    phase("the node still serves the other peer in full afterwards");
    let net = fast.handle.clone();
    fast.rt
        .block_on(fetch_everything(net, server, artifact))
        .unwrap_or_else(|e| panic!("the other peer was not served afterwards: {e}"));
    drop(slow);
}
