//! Daemons in one process over loopback (127.0.0.x): a proposal submitted on one reaches the
//! other, a signal cast on the other comes back into the first one's tally and metrics, a
//! restart keeps what was stored, and three measurer nodes that measure each other qualify and
//! override a proposal. Every wait is bounded.

mod common;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use commons_node::config::Config;
use commons_node::daemon::{Daemon, Options};
use commons_p2p::Multiaddr;
use commons_rpc::{
    IdParams, Method, NoParams, SignalParams, SubmitProposalParams, UptimeParams, method,
};
use commons_signaling::spec::regtest_measurer_key;
use commons_signaling::{NetworkSpec, Proposal};
use serde_json::Value;

fn config(dir: &Path, ip: &str, bootstrap: Vec<Multiaddr>) -> Config {
    let spec = NetworkSpec::regtest();
    Config {
        base_dir: dir.to_path_buf(),
        datadir: dir.join("regtest"),
        network_arg: "regtest".into(),
        spec,
        successors: vec![],
        listen: vec![format!("/ip4/{ip}/tcp/0").parse().unwrap()],
        bootstrap,
        rpc_bind: "127.0.0.1:0".parse().unwrap(),
        metrics_bind: "127.0.0.1:0".parse().unwrap(),
        rpc_cookie_perms: Default::default(),
        rpc_limits: Default::default(),
        verify_binary: commons_node::selfcheck::VerifyBinary::Off,
        // The test writes well-known measurer keys that never signed before the first start.
        sign_without_catch_up: true,
    }
}

fn options() -> Options {
    Options {
        discovery: false,
        retry_interval: Duration::from_millis(500),
        ..Options::default()
    }
}

/// Polls `check` every 200 ms until it gives `Some`, failing after `secs`.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn rpc<M: Method>(daemon: &Daemon, params: &M::Params) -> M::Response {
    common::call::<M>(daemon.node.as_ref(), params)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", M::NAME))
}

fn submit(p: &Proposal) -> SubmitProposalParams {
    SubmitProposalParams {
        hex: hex::encode(p.encode()),
    }
}

fn signal(proposal: &str, choice: &str) -> SignalParams {
    SignalParams {
        proposal: proposal.to_string(),
        choice: choice.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposal_and_signal_cross_two_nodes() {
    tokio::time::timeout(Duration::from_secs(90), run())
        .await
        .expect("test took too long");
}

async fn run() {
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let a = Daemon::start(&config(dir_a.path(), "127.0.0.1", vec![]), options())
        .await
        .unwrap();
    let a_addr = eventually(10, "a listen address", || async {
        a.net.listen_addrs().await.ok()?.into_iter().next()
    })
    .await;
    let a_addr: Multiaddr = format!("{a_addr}/p2p/{}", a.net.local_peer_id())
        .parse()
        .unwrap();
    let b = Daemon::start(&config(dir_b.path(), "127.0.0.2", vec![a_addr]), options())
        .await
        .unwrap();

    eventually(20, "a connection", || async {
        (a.node.peer_count() >= 1 && b.node.peer_count() >= 1).then_some(())
    })
    .await;
    let peers = rpc::<method::GetPeers>(&a, &NoParams {}).await;
    assert_eq!(
        peers[0].public_key.as_deref(),
        Some(b.node.public_key().to_hex().as_str())
    );

    // A proposal submitted on A reaches B (by gossip, or by the retry once B subscribed).
    let spec = NetworkSpec::regtest();
    let p = common::proposal(&spec, "two nodes", common::now() - 1, 300);
    let id = rpc::<method::SubmitProposal>(&a, &submit(&p)).await.id;
    eventually(30, "the proposal on B", || async {
        let list = rpc::<method::ListProposals>(&b, &NoParams {}).await;
        (list.len() == 1 && list[0].id == id).then_some(())
    })
    .await;

    // B signals; A counts the signer.
    let r = rpc::<method::CastSignal>(&b, &signal(&id, "override")).await;
    assert_eq!(r.sequence, 1);
    eventually(30, "B's signal in A's tally", || async {
        let t = rpc::<method::GetTally>(&a, &IdParams::new(&id)).await;
        (t.signers == 1).then_some(())
    })
    .await;

    // A's metrics show the signal, the peer and libp2p's own metrics in one scrape.
    let (status, text) = common::request(a.metrics_addr, "GET", "/metrics", None, "").await;
    assert_eq!(status, 200);
    assert!(
        text.contains("commons_messages_received_total{kind=\"signal\",verdict=\"accept\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "commons_proposal_state{{proposal=\"{id}\",state=\"locked\"}} 1"
        )),
        "{text}"
    );
    assert!(text.contains("commons_peers 1"), "{text}");
    assert!(text.contains("commons_store_bytes"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("libp2p_")),
        "no libp2p metrics in\n{text}"
    );

    // RPC over HTTP with the cookie file the daemon wrote.
    let cookie = std::fs::read_to_string(dir_a.path().join("regtest/.cookie")).unwrap();
    let auth = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, cookie)
    );
    let (status, body) = common::post(
        a.rpc_addr,
        Some(&auth),
        r#"{"jsonrpc":"2.0","id":7,"method":"getinfo"}"#,
    )
    .await;
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&body).unwrap();
    let info = commons_rpc::parse_response::<method::GetInfo>(info["result"].clone()).unwrap();
    assert_eq!(info.peers, 1);
    assert_eq!(info.peer_id, Some(a.net.local_peer_id().to_string()));

    b.shutdown().await;
    a.shutdown().await;
    assert!(
        !dir_a.path().join("regtest/.cookie").exists(),
        "cookie left behind"
    );

    // A restart of A comes back with the proposal and B's signal.
    let a = Daemon::start(&config(dir_a.path(), "127.0.0.1", vec![]), options())
        .await
        .unwrap();
    let t = rpc::<method::GetTally>(&a, &IdParams::new(&id)).await;
    assert_eq!(t.signers, 1);
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_measurers_measure_each_other_and_override() {
    tokio::time::timeout(Duration::from_secs(120), run_three())
        .await
        .expect("test took too long");
}

async fn run_three() {
    // Three /30 netgroups on loopback, so that a quorum of two distinct netgroups can form.
    let ips = ["127.0.0.1", "127.0.0.5", "127.0.0.9"];
    let dirs: Vec<_> = ips.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    // Regtest qualifies by measurers only: the three nodes run as its three well-known
    // measurers, so each is measured by the other two (a quorum of two).
    for (i, dir) in dirs.iter().enumerate() {
        let datadir = dir.path().join("regtest");
        std::fs::create_dir_all(&datadir).unwrap();
        regtest_measurer_key(i)
            .save(&datadir.join(commons_node::daemon::KEY_FILE))
            .unwrap();
    }
    let first = Daemon::start(&config(dirs[0].path(), ips[0], vec![]), options())
        .await
        .unwrap();
    let addr = eventually(10, "a listen address", || async {
        first.net.listen_addrs().await.ok()?.into_iter().next()
    })
    .await;
    let boot: Multiaddr = format!("{addr}/p2p/{}", first.net.local_peer_id())
        .parse()
        .unwrap();
    let mut nodes = vec![first];
    for (i, ip) in ips.iter().enumerate().skip(1) {
        let mut bootstrap = vec![boot.clone()];
        // Also dial the previous node, so the three form a full mesh without discovery.
        if i == 2 {
            let prev = &nodes[1];
            let a = eventually(10, "a listen address", || async {
                prev.net.listen_addrs().await.ok()?.into_iter().next()
            })
            .await;
            bootstrap.push(
                format!("{a}/p2p/{}", prev.net.local_peer_id())
                    .parse()
                    .unwrap(),
            );
        }
        nodes.push(
            Daemon::start(&config(dirs[i].path(), ip, bootstrap), options())
                .await
                .unwrap(),
        );
    }
    eventually(20, "a full mesh", || async {
        nodes.iter().all(|n| n.node.peer_count() == 2).then_some(())
    })
    .await;

    // Each node sees the others at their own loopback addresses.
    let peers = rpc::<method::GetPeers>(&nodes[0], &NoParams {}).await;
    let mut seen: Vec<String> = peers
        .iter()
        .map(|p| p.observed_ip.unwrap().to_string())
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec!["127.0.0.5".to_string(), "127.0.0.9".to_string()],
        "{peers:?}"
    );

    // Regtest: 2-second epochs, 3 epochs of uptime measured by 2 measurers qualify.
    eventually(60, "three qualified nodes everywhere", || async {
        for n in &nodes {
            let info = rpc::<method::GetInfo>(n, &NoParams {}).await;
            if info.qualified_nodes != 3 {
                return None;
            }
        }
        Some(())
    })
    .await;
    let me = rpc::<method::GetUptime>(&nodes[1], &UptimeParams::default()).await;
    assert!(me.status.as_ref().is_some_and(|s| s.qualified), "{me:?}");

    let spec = NetworkSpec::regtest();
    let p = common::proposal(&spec, "three nodes", common::now() - 1, 300);
    let id = rpc::<method::SubmitProposal>(&nodes[0], &submit(&p))
        .await
        .id;
    eventually(30, "the proposal everywhere", || async {
        for n in &nodes[1..] {
            if rpc::<method::ListProposals>(n, &NoParams {})
                .await
                .is_empty()
            {
                return None;
            }
        }
        Some(())
    })
    .await;
    for n in &nodes[1..] {
        rpc::<method::CastSignal>(n, &signal(&id, "override")).await;
    }
    let tally = eventually(30, "the override on the first node", || async {
        let t = rpc::<method::GetTally>(&nodes[0], &IdParams::new(&id)).await;
        (t.choices.r#override.nodes == 2).then_some(t)
    })
    .await;
    assert_eq!(tally.total_nodes, 3, "{tally:?}");
    assert!(tally.override_met, "{tally:?}");
    assert_eq!(tally.state, "overridden", "{tally:?}");
    let (_, text) = common::request(nodes[0].metrics_addr, "GET", "/metrics", None, "").await;
    assert!(text.contains("commons_qualified_nodes 3"), "{text}");
    assert!(
        text.contains(&format!(
            "commons_tally_nodes{{proposal=\"{id}\",choice=\"override\"}} 2"
        )),
        "{text}"
    );
    for n in nodes {
        n.shutdown().await;
    }
}
