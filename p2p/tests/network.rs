//! Real swarms on loopback: validation before forwarding, request-response, `fetch/2`
//! streams, rate limits and bans, kad discovery. Each test uses its own 127.0.0.x addresses
//! so they can run in parallel, and every wait is bounded.

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use commons_p2p::libp2p::multiaddr::Protocol;
use commons_p2p::prometheus_client::registry::Registry;
use commons_p2p::{
    Multiaddr, P2pConfig, P2pError, P2pEvent, P2pHandle, P2pNode, PeerId, RateLimit, TopicKind,
    Verdict, keypair_from_secret, peer_xonly_key,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

/// Upper bound for anything that should happen.
const WAIT: Duration = Duration::from_secs(20);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn config(ip: &str) -> P2pConfig {
    let mut config = P2pConfig::new("regtest");
    config.listen_addrs = vec![format!("/ip4/{ip}/tcp/0").parse().unwrap()];
    // Fixed topologies unless a test turns discovery on.
    config.discovery = false;
    config.heartbeat_interval = Duration::from_millis(300);
    config
}

struct TestNode {
    handle: P2pHandle,
    events: mpsc::Receiver<P2pEvent>,
    registry: Registry,
    task: JoinHandle<()>,
    peer_id: PeerId,
    /// Listen address including `/p2p/<peer id>`.
    addr: Multiaddr,
}

async fn start(seed: u8, config: P2pConfig) -> TestNode {
    let keypair = keypair_from_secret(&[seed; 32]).unwrap();
    let mut registry = Registry::default();
    let (handle, mut events, task) = P2pNode::spawn(config, keypair, &mut registry).unwrap();
    let listen = timeout(WAIT, async {
        loop {
            if let Some(P2pEvent::NewListenAddr(addr)) = events.recv().await {
                return addr;
            }
        }
    })
    .await
    .expect("node listens");
    let peer_id = handle.local_peer_id();
    let addr = listen.with(Protocol::P2p(peer_id));
    TestNode {
        handle,
        events,
        registry,
        task,
        peer_id,
        addr,
    }
}

impl TestNode {
    async fn stop(self) {
        self.handle.shutdown().await.unwrap();
        timeout(WAIT, self.task).await.expect("task stops").unwrap();
    }
}

/// Polls `check` until it returns true, failing the test after [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let done = timeout(WAIT, async {
        loop {
            if check().await {
                return;
            }
            sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "timed out waiting for {what}");
}

async fn mesh_has(node: &P2pHandle, peer: PeerId) -> bool {
    node.mesh_peers(TopicKind::Signals)
        .await
        .unwrap()
        .contains(&peer)
}

struct Received {
    data: Vec<u8>,
    message_id: commons_p2p::MessageId,
    propagation_source: PeerId,
    source_ip: Option<IpAddr>,
}

/// The next gossip message within `within`, skipping other events.
async fn next_message(events: &mut mpsc::Receiver<P2pEvent>, within: Duration) -> Option<Received> {
    timeout(within, async {
        loop {
            match events.recv().await {
                Some(P2pEvent::Message {
                    topic: TopicKind::Signals,
                    data,
                    message_id,
                    propagation_source,
                    source_ip,
                }) => {
                    return Some(Received {
                        data,
                        message_id,
                        propagation_source,
                        source_ip,
                    });
                }
                Some(_) => continue,
                None => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
}

/// (a) A - B - C in a line: nothing reaches C before B's verdict, rejected messages never do.
#[tokio::test]
async fn forwarding_waits_for_validation() {
    init_tracing();
    let a = start(11, config("127.0.0.11")).await;
    let mut b_config = config("127.0.0.12");
    b_config.bootstrap = vec![a.addr.clone()];
    let mut b = start(12, b_config).await;
    let mut c_config = config("127.0.0.13");
    c_config.bootstrap = vec![b.addr.clone()];
    let mut c = start(13, c_config).await;

    eventually("meshes along the line", || async {
        mesh_has(&a.handle, b.peer_id).await
            && mesh_has(&b.handle, a.peer_id).await
            && mesh_has(&b.handle, c.peer_id).await
            && mesh_has(&c.handle, b.peer_id).await
    })
    .await;
    let c_peers = c.handle.peers().await.unwrap();
    assert_eq!(c_peers.len(), 1, "C must only know B: {c_peers:?}");

    // Accepted at B: reaches C, but only after the verdict.
    let id = a
        .handle
        .publish(TopicKind::Signals, b"first".to_vec())
        .await
        .unwrap();
    assert_eq!(id, commons_p2p::message_id(b"first"));
    let at_b = next_message(&mut b.events, WAIT).await.expect("B receives");
    assert_eq!(at_b.data, b"first");
    assert_eq!(at_b.message_id, id);
    assert_eq!(at_b.propagation_source, a.peer_id);
    assert!(at_b.source_ip.is_some());
    assert!(
        next_message(&mut c.events, Duration::from_millis(1500))
            .await
            .is_none(),
        "C got the message before B validated it"
    );
    assert!(
        b.handle
            .report_validation(at_b.message_id, at_b.propagation_source, Verdict::Accept)
            .await
            .unwrap()
    );
    let at_c = next_message(&mut c.events, WAIT)
        .await
        .expect("C receives after Accept");
    assert_eq!(at_c.data, b"first");
    assert_eq!(at_c.propagation_source, b.peer_id);
    c.handle
        .report_validation(at_c.message_id, at_c.propagation_source, Verdict::Accept)
        .await
        .unwrap();

    // Rejected at B: never reaches C, and A's score at B drops.
    a.handle
        .publish(TopicKind::Signals, b"second".to_vec())
        .await
        .unwrap();
    let at_b = next_message(&mut b.events, WAIT).await.expect("B receives");
    assert_eq!(at_b.data, b"second");
    b.handle
        .report_validation(at_b.message_id, at_b.propagation_source, Verdict::Reject)
        .await
        .unwrap();
    assert!(
        next_message(&mut c.events, Duration::from_secs(3))
            .await
            .is_none(),
        "C got a message B rejected"
    );
    let a_at_b = b.handle.peers().await.unwrap();
    let a_at_b = a_at_b
        .iter()
        .find(|p| p.peer_id == a.peer_id)
        .expect("A connected to B");
    assert!(
        a_at_b.gossip_score.unwrap() < 0.0,
        "reject must lower A's score: {a_at_b:?}"
    );

    for node in [a, b, c] {
        node.stop().await;
    }
}

/// (b) Sync and fetch round trips, size limits, refused requests, peer info.
#[tokio::test]
async fn request_response_round_trip() {
    init_tracing();
    let server = start(21, config("127.0.0.21")).await;
    let mut client_config = config("127.0.0.22");
    client_config.bootstrap = vec![server.addr.clone()];
    client_config.max_request_size = 1024;
    let mut client = start(22, client_config).await;

    let server_handle = server.handle.clone();
    let mut server_events = server.events;
    let responder = tokio::spawn(async move {
        while let Some(event) = server_events.recv().await {
            let (prefix, request, channel) = match event {
                P2pEvent::InboundSync {
                    request, channel, ..
                } => ("sync:", request, channel),
                P2pEvent::InboundFetch {
                    request, channel, ..
                } => ("fetch:", request, channel),
                _ => continue,
            };
            if request == b"refuse" {
                drop(channel);
                continue;
            }
            let response = [prefix.as_bytes(), &request].concat();
            server_handle.respond(channel, response).await.unwrap();
        }
    });

    timeout(WAIT, async {
        loop {
            if let Some(P2pEvent::PeerConnected {
                peer,
                remote_ip,
                outbound,
            }) = client.events.recv().await
            {
                assert_eq!(peer, server.peer_id);
                assert_eq!(remote_ip, Some("127.0.0.21".parse().unwrap()));
                assert!(outbound);
                return;
            }
        }
    })
    .await
    .expect("client connects");

    let sync = client
        .handle
        .request_sync(server.peer_id, b"hello".to_vec())
        .await
        .unwrap();
    assert_eq!(sync, b"sync:hello");
    let fetch = client
        .handle
        .request_fetch(server.peer_id, b"chunk 0".to_vec())
        .await
        .unwrap();
    assert_eq!(fetch, b"fetch:chunk 0");
    let big = client
        .handle
        .request_sync(server.peer_id, vec![0; 2048])
        .await;
    assert!(
        matches!(
            big,
            Err(P2pError::TooLarge {
                size: 2048,
                max: 1024
            })
        ),
        "{big:?}"
    );
    let refused = timeout(
        WAIT,
        client
            .handle
            .request_sync(server.peer_id, b"refuse".to_vec()),
    )
    .await
    .expect("refusal is reported promptly");
    assert!(matches!(refused, Err(P2pError::Request(_))), "{refused:?}");

    let peers = client.handle.peers().await.unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].peer_id, server.peer_id);
    assert_eq!(peers[0].observed_ip, Some("127.0.0.21".parse().unwrap()));
    assert_eq!(peers[0].xonly_key, peer_xonly_key(&server.peer_id));
    assert!(peers[0].outbound);

    client.handle.shutdown().await.unwrap();
    server.handle.shutdown().await.unwrap();
    timeout(WAIT, responder)
        .await
        .expect("responder ends")
        .unwrap();
    timeout(WAIT, server.task).await.unwrap().unwrap();
    timeout(WAIT, client.task).await.unwrap().unwrap();
}

/// (d) A flooding peer is throttled, then disconnected and banned; a well-behaved peer's
/// messages still get through.
#[tokio::test]
async fn flooding_peer_is_throttled_then_banned() {
    init_tracing();
    let flooder = start(32, config("127.0.0.32")).await;
    let good = start(33, config("127.0.0.33")).await;
    let mut victim_config = config("127.0.0.31");
    // The victim dials both, so it sees them on their distinct listen IPs.
    victim_config.bootstrap = vec![flooder.addr.clone(), good.addr.clone()];
    victim_config.rate_limits.gossip_per_peer = RateLimit::new(5, 5);
    victim_config.rate_limits.gossip_per_ip = RateLimit::new(1000, 1000);
    victim_config.rate_limits.max_violations = 10;
    victim_config.rate_limits.violation_window = Duration::from_secs(30);
    victim_config.rate_limits.ban_duration = Duration::from_secs(120);
    let victim = start(31, victim_config).await;

    // The victim's application accepts everything and reports what it saw.
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let victim_handle = victim.handle.clone();
    let mut victim_events = victim.events;
    let consumer = tokio::spawn(async move {
        while let Some(event) = victim_events.recv().await {
            match event {
                P2pEvent::Message {
                    message_id,
                    propagation_source,
                    data,
                    ..
                } => {
                    victim_handle
                        .report_validation(message_id, propagation_source, Verdict::Accept)
                        .await
                        .unwrap();
                    let _ = seen_tx.send(Seen::Message(propagation_source, data));
                }
                P2pEvent::PeerConnected { peer, .. } => {
                    let _ = seen_tx.send(Seen::Connected(peer));
                }
                P2pEvent::PeerDisconnected { peer } => {
                    let _ = seen_tx.send(Seen::Disconnected(peer));
                }
                _ => {}
            }
        }
    });

    eventually("both peers in the victim's mesh", || async {
        mesh_has(&victim.handle, flooder.peer_id).await
            && mesh_has(&victim.handle, good.peer_id).await
            && mesh_has(&flooder.handle, victim.peer_id).await
            && mesh_has(&good.handle, victim.peer_id).await
    })
    .await;

    for i in 0..200 {
        // Errors are expected once the victim has dropped the flooder.
        let _ = flooder
            .handle
            .publish(TopicKind::Signals, format!("flood {i}").into_bytes())
            .await;
    }

    let mut from_flooder = 0;
    timeout(WAIT, async {
        loop {
            match seen.recv().await.expect("consumer alive") {
                Seen::Message(peer, _) if peer == flooder.peer_id => from_flooder += 1,
                Seen::Disconnected(peer) if peer == flooder.peer_id => return,
                _ => {}
            }
        }
    })
    .await
    .expect("flooder gets disconnected");
    eprintln!("flood messages delivered to the application: {from_flooder}");
    // Burst of 5 plus 5/s while the flood lasted; far below the 200 sent.
    assert!(
        (1..40).contains(&from_flooder),
        "{from_flooder} flood messages delivered"
    );

    good.handle
        .publish(TopicKind::Signals, b"well behaved".to_vec())
        .await
        .unwrap();
    timeout(WAIT, async {
        loop {
            if let Seen::Message(peer, data) = seen.recv().await.expect("consumer alive") {
                if peer == good.peer_id && data == b"well behaved" {
                    return;
                }
            }
        }
    })
    .await
    .expect("the good peer's message gets through");

    // The ban holds: the flooder's new connection is refused before it is established.
    let victim_addr = victim.addr.clone();
    flooder.handle.dial(victim_addr).await.unwrap();
    let reconnected = timeout(Duration::from_secs(3), async {
        loop {
            if let Seen::Connected(peer) = seen.recv().await.expect("consumer alive") {
                if peer == flooder.peer_id {
                    return;
                }
            }
        }
    })
    .await;
    assert!(reconnected.is_err(), "banned flooder reconnected");
    assert!(
        victim
            .handle
            .peers()
            .await
            .unwrap()
            .iter()
            .all(|p| p.peer_id != flooder.peer_id)
    );

    let mut text = String::new();
    commons_p2p::prometheus_client::encoding::text::encode(&mut text, &victim.registry).unwrap();
    assert!(text.contains("commons_p2p_peers_banned_total 1"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("commons_p2p_rate_limited_total{")
                && l.contains("kind=\"gossip\"")
                && l.contains("scope=\"peer\"")),
        "{text}"
    );
    assert!(text.contains("commons_p2p_connected_peers 1"), "{text}");
    assert!(
        text.contains("libp2p_swarm_connections_established_total"),
        "{text}"
    );
    assert!(text.contains("libp2p_gossipsub_"), "{text}");

    victim.handle.shutdown().await.unwrap();
    timeout(WAIT, consumer)
        .await
        .expect("consumer ends")
        .unwrap();
    timeout(WAIT, victim.task).await.unwrap().unwrap();
    flooder.stop().await;
    good.stop().await;
}

enum Seen {
    Message(PeerId, Vec<u8>),
    Connected(PeerId),
    Disconnected(PeerId),
}

/// With discovery on, a node bootstrapping from B finds and connects to A through kad.
#[tokio::test]
async fn kad_discovers_peers_beyond_bootstrap() {
    init_tracing();
    let discovery = |ip: &str| {
        let mut config = config(ip);
        config.discovery = true;
        config
    };
    let a = start(41, discovery("127.0.0.41")).await;
    let mut b_config = discovery("127.0.0.42");
    b_config.bootstrap = vec![a.addr.clone()];
    let b = start(42, b_config).await;
    let mut c_config = discovery("127.0.0.43");
    c_config.bootstrap = vec![b.addr.clone()];
    let c = start(43, c_config).await;

    eventually("C connected to A", || async {
        c.handle
            .peers()
            .await
            .unwrap()
            .iter()
            .any(|p| p.peer_id == a.peer_id)
    })
    .await;

    for node in [a, b, c] {
        node.stop().await;
    }
}

/// Two nodes on one machine's loopback range: without a source address every inbound
/// connection appears to come from 127.0.0.1; with it, the listener observes the dialer's own
/// listen address, which is what it will attest.
#[tokio::test]
async fn outbound_connections_leave_from_the_configured_source_address() {
    init_tracing();
    let listener = start(31, config("127.0.0.31")).await;
    let mut dialer_config = config("127.0.0.32");
    dialer_config.bootstrap = vec![listener.addr.clone()];
    dialer_config.outbound_source_ip = Some("127.0.0.32".parse().unwrap());
    let dialer = start(32, dialer_config).await;

    let mut events = listener.events;
    let observed = timeout(WAIT, async {
        loop {
            if let Some(P2pEvent::PeerConnected {
                peer,
                remote_ip,
                outbound,
            }) = events.recv().await
            {
                assert_eq!(peer, dialer.peer_id);
                assert!(!outbound);
                return remote_ip;
            }
        }
    })
    .await
    .expect("the dialer connects");
    assert_eq!(observed, Some("127.0.0.32".parse::<IpAddr>().unwrap()));
    dialer.stop().await;
    listener.handle.shutdown().await.unwrap();
}

/// Counts the gossip messages waiting in `events` (the stream stays quiet for 1 s after the
/// last one).
async fn drain_messages(events: &mut mpsc::Receiver<P2pEvent>) -> usize {
    let mut count = 0;
    while next_message(events, Duration::from_secs(1)).await.is_some() {
        count += 1;
    }
    count
}

#[tokio::test]
async fn a_burst_waits_for_a_slow_application_within_the_byte_budget() {
    init_tracing();
    let publisher = start(45, config("127.0.0.45")).await;
    // Both receivers read nothing while the burst arrives, and their event channels hold
    // two events. One may queue 32 MiB of messages behind that, the other 4 KiB.
    let mut patient_config = config("127.0.0.46");
    patient_config.bootstrap = vec![publisher.addr.clone()];
    patient_config.event_buffer = 2;
    let mut patient = start(46, patient_config).await;
    let mut tight_config = config("127.0.0.47");
    tight_config.bootstrap = vec![publisher.addr.clone()];
    tight_config.event_buffer = 2;
    tight_config.event_backlog_bytes = 4096;
    let mut tight = start(47, tight_config).await;
    eventually("both receivers in the publisher's mesh", || async {
        mesh_has(&publisher.handle, patient.peer_id).await
            && mesh_has(&publisher.handle, tight.peer_id).await
    })
    .await;

    const BURST: usize = 150;
    for i in 0..BURST {
        let mut data = vec![0u8; 1000];
        data[..8].copy_from_slice(&(i as u64).to_be_bytes());
        publisher
            .handle
            .publish(TopicKind::Signals, data)
            .await
            .unwrap();
    }
    // Let the burst land in the receivers' queues before anyone reads.
    sleep(Duration::from_secs(2)).await;

    assert_eq!(
        drain_messages(&mut patient.events).await,
        BURST,
        "every message of the burst waited for the application"
    );
    let tight_got = drain_messages(&mut tight.events).await;
    assert!(
        tight_got < BURST / 2,
        "a 4 KiB budget cannot hold a 150 KB burst, yet {tight_got} arrived"
    );
    let mut text = String::new();
    commons_p2p::prometheus_client::encoding::text::encode(&mut text, &tight.registry).unwrap();
    let dropped: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("commons_p2p_events_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert_eq!(dropped as usize, BURST - tight_got, "{text}");

    tight.stop().await;
    patient.stop().await;
    publisher.stop().await;
}

/// `fetch/2` streams: bytes both ways on a stream the server took; a peer that takes none
/// is reported as not speaking the protocol; only one taker at a time.
#[tokio::test]
async fn fetch_streams_carry_bytes_and_a_peer_without_them_is_unsupported() {
    use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
    init_tracing();
    let server = start(23, config("127.0.0.23")).await;
    let mut client_config = config("127.0.0.25");
    client_config.bootstrap = vec![server.addr.clone()];
    let client = start(25, client_config).await;
    eventually("the client connects", || async {
        client
            .handle
            .peers()
            .await
            .unwrap()
            .iter()
            .any(|p| p.peer_id == server.peer_id)
    })
    .await;

    let unsupported = client.handle.open_fetch_stream(server.peer_id).await;
    assert!(
        matches!(unsupported, Err(P2pError::Unsupported(ref p)) if p == "/commons/regtest/fetch/2"),
        "{unsupported:?}"
    );

    let mut incoming = server.handle.accept_fetch_streams().unwrap();
    assert!(matches!(
        server.handle.accept_fetch_streams(),
        Err(P2pError::AlreadyAccepting(_))
    ));
    let echo = tokio::spawn(async move {
        let (peer, mut stream) = incoming.next().await.unwrap();
        let mut asked = Vec::new();
        stream.read_to_end(&mut asked).await.unwrap();
        // A megabyte back: more than yamux's first window, so the window has to move.
        let answer: Vec<u8> = asked.iter().cycle().take(1 << 20).copied().collect();
        stream.write_all(&answer).await.unwrap();
        stream.close().await.unwrap();
        peer
    });
    let mut stream = client
        .handle
        .open_fetch_stream(server.peer_id)
        .await
        .unwrap();
    stream.write_all(b"run").await.unwrap();
    stream.close().await.unwrap();
    let mut answer = Vec::new();
    timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("the answer arrives")
        .unwrap();
    assert_eq!(answer.len(), 1 << 20);
    assert!(answer.starts_with(b"runrunrun"));
    assert_eq!(timeout(WAIT, echo).await.unwrap().unwrap(), client.peer_id);

    client.stop().await;
    server.stop().await;
}
