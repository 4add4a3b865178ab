//! Measurer benchmark: what one measurer sustains. A real `commonsd` runs as regtest's
//! measurer 0 on 127.0.0.120; in-process libp2p visitors (commons-p2p stacks with keys of
//! their own, each dialing from its own loopback address in 127.0.40.0/22) connect to it as
//! every node of a network does once an epoch, and answer its attestation deliveries. It
//! prints one table:
//!
//! - connections accepted per second (all visitors dial at once), and the population one
//!   measurer can take visits from in a mainnet epoch (a day) at that rate;
//! - the measurer's resident memory idle and with every visitor connected, and per
//!   connection;
//! - attestations measured and delivered per epoch, and the time from the epoch boundary to
//!   the last delivery;
//! - BIP340 signatures per second on one core (what a measurer spends per node per epoch).
//!
//! Run with `cargo bench --workspace --locked --profile dev --bench measurer` (dependencies
//! are built optimised in the dev profile; the workspace crates are not, so this is a lower
//! bound) with `commonsd` built in the same target directory. `COMMONS_BENCH_VISITORS`
//! (default 400, at most 1000) sets the population. Without `--bench` (as under
//! `cargo test --all-targets`) it only checks that it can sign. Every wait is bounded and
//! the daemon is killed when dropped.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use commons_e2e::{NodeSpec, TestNode, wait_until};
use commons_node::sync::{SyncRequest, SyncResponse};
use commons_p2p::{Keypair, P2pConfig, P2pEvent, P2pNode};
use commons_rpc::{NoParams, method};
use commons_signaling::{
    AttestationBody, NetworkSpec, PROTOCOL_VERSION, SecretKey, Signed, WireIp,
};

const MEASURER: &str = "127.0.0.120";
const WAIT: Duration = Duration::from_secs(120);

fn visitor_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        127,
        0,
        40 + u8::try_from(i / 250).unwrap(),
        1 + (i % 250) as u8,
    )
}

/// Signs `n` attestations with one key on this thread; returns signatures per second.
fn signing_rate(n: usize) -> f64 {
    let spec = NetworkSpec::regtest();
    let network = spec.network_id();
    let key = commons_signaling::spec::regtest_measurer_key(0);
    let subjects: Vec<_> = (0..n)
        .map(|i| SecretKey::from_seed(&format!("bench subject {i}")).public_key())
        .collect();
    let started = Instant::now();
    for (i, subject) in subjects.iter().enumerate() {
        let body = AttestationBody {
            version: PROTOCOL_VERSION,
            attester: key.public_key(),
            subject: *subject,
            subject_ip: WireIp(visitor_ip(i % 1000).into()),
            epoch: 1,
            seen_epochs: 1,
        };
        std::hint::black_box(Signed::sign(body, &key, &network));
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    if !benching {
        assert!(signing_rate(10) > 0.0);
        println!("measurer bench: pass --bench (cargo bench) to run it");
        return;
    }
    let visitors = std::env::var("COMMONS_BENCH_VISITORS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400usize)
        .clamp(1, 1000);
    let spec = NetworkSpec::regtest();

    let measurer = TestNode::start(
        "measurer",
        NodeSpec {
            ip: MEASURER.into(),
            bootstrap: vec![],
            measurer: Some(0),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let address: commons_p2p::Multiaddr = measurer.multiaddr().unwrap().parse().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let rss_idle = measurer.memory_kib("VmRSS").unwrap_or(0);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let delivered = Arc::new(AtomicU64::new(0));
    let last_delivery = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let started = Instant::now();
    let handles: Vec<_> = runtime.block_on(async {
        (0..visitors)
            .map(|i| {
                let ip = visitor_ip(i);
                let mut config = P2pConfig::new("regtest");
                config.listen_addrs = vec![format!("/ip4/{ip}/tcp/0").parse().unwrap()];
                config.outbound_source_ip = Some(ip.into());
                config.bootstrap = vec![address.clone()];
                config.discovery = false;
                config.ip_colocation_threshold = 1_000;
                let mut registry = commons_p2p::prometheus_client::registry::Registry::default();
                let (handle, mut events, _task) =
                    P2pNode::spawn(config, Keypair::generate_secp256k1(), &mut registry)
                        .expect("a visitor starts");
                let (delivered, last, net) =
                    (delivered.clone(), last_delivery.clone(), handle.clone());
                tokio::spawn(async move {
                    while let Some(event) = events.recv().await {
                        // Catch-up requests are refused by dropping their channel; only
                        // the measurer's deliveries are answered.
                        if let P2pEvent::InboundSync {
                            request, channel, ..
                        } = event
                            && let Ok(SyncRequest::Deliver { attestations }) =
                                SyncRequest::decode(&request)
                        {
                            let n = attestations.len() as u32;
                            delivered.fetch_add(u64::from(n), Ordering::Relaxed);
                            *last.lock().unwrap() = Some(Instant::now());
                            let _ = net
                                .respond(channel, SyncResponse::Delivered { accepted: n }.encode())
                                .await;
                        }
                    }
                });
                handle
            })
            .collect()
    });
    let peers = || {
        measurer
            .call::<method::GetInfo>(&NoParams {})
            .map(|i| i.peers)
            .unwrap_or(0)
    };
    wait_until(WAIT, "every visitor connected to the measurer", || {
        let n = peers();
        if n >= visitors as u64 {
            Ok(())
        } else {
            Err(format!("{n} of {visitors} connected"))
        }
    });
    let connect_secs = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    let rss_connected = measurer.memory_kib("VmRSS").unwrap_or(0);

    // Two epoch boundaries: every visitor is measured at each and gets its attestation.
    let issued = |m: &TestNode| m.metric("commons_measurer_attestations_issued_total");
    let epoch_secs = spec.epoch_secs;
    let boundary = |after: u64| (after / epoch_secs + 1) * epoch_secs;
    let now = commons_e2e::now();
    let next = boundary(now);
    std::thread::sleep(Duration::from_secs(next - now) + Duration::from_millis(100));
    let (issued_before, delivered_before) = (issued(&measurer), delivered.load(Ordering::Relaxed));
    let boundary_at = Instant::now() - Duration::from_millis(100);
    std::thread::sleep(Duration::from_secs(epoch_secs));
    let (issued_after, delivered_after) = (issued(&measurer), delivered.load(Ordering::Relaxed));
    let spread = last_delivery.lock().unwrap().map_or(0.0, |t| {
        t.saturating_duration_since(boundary_at).as_secs_f64()
    });

    runtime.block_on(async {
        for h in &handles {
            let _ = tokio::time::timeout(Duration::from_secs(2), h.shutdown()).await;
        }
    });
    drop(runtime);
    let signs = signing_rate(20_000);

    let accept_rate = visitors as f64 / connect_secs;
    let per_conn = rss_connected.saturating_sub(rss_idle) as f64 / visitors as f64;
    println!(
        "measurer bench ({visitors} visitors, regtest, {epoch_secs} s epochs; one 2-core machine shared by the measurer and every visitor)"
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| visitors connected | {visitors} in {connect_secs:.2} s: {accept_rate:.0} connections/s |"
    );
    println!(
        "| visits one measurer takes in a mainnet epoch (a day) at that rate | {:.1} million |",
        accept_rate * 86_400.0 / 1e6
    );
    println!(
        "| measurer VmRSS idle / with {visitors} connected | {} / {} MiB: {per_conn:.0} KiB per connection |",
        rss_idle / 1024,
        rss_connected / 1024
    );
    println!(
        "| attestations issued at one boundary | {} (delivered {}), last delivery {spread:.2} s after the boundary |",
        issued_after - issued_before,
        delivered_after - delivered_before
    );
    println!(
        "| BIP340 signatures per second, one core | {signs:.0}: a day of signing for {:.0} million nodes per core |",
        signs * 86_400.0 / 1e6
    );
}
