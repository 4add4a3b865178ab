//! Helpers shared by the integration tests: signed regtest messages (from
//! `commons-test-util`, in the node's terms), typed RPC calls and a tiny HTTP client.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};

use commons_node::node::Node;
use commons_node::rpc::{Params, RpcHandler};
use commons_rpc::Method;
use commons_signaling::{
    Choice, Hash32, NetworkSpec, Proposal, SecretKey, Signal, UptimeAttestation,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// A tier-1 regtest proposal signed by three well-known maintainers, locked from `start`
/// for `lock` seconds.
pub fn proposal(spec: &NetworkSpec, title: &str, start: u64, lock: u64) -> Proposal {
    commons_test_util::proposal(&spec.network_id(), 1, title, start, start + lock, 0..3)
}

/// An attestation by `attester` about `subject`.
pub fn attestation(
    spec: &NetworkSpec,
    attester: &SecretKey,
    subject: &SecretKey,
    ip: IpAddr,
    epoch: u64,
    seen: u32,
) -> UptimeAttestation {
    commons_test_util::attestation(
        &spec.network_id(),
        attester,
        subject.public_key(),
        ip,
        epoch,
        seen,
    )
}

/// A signal carrying `attestations` about its signer.
pub fn signal(
    spec: &NetworkSpec,
    key: &SecretKey,
    proposal: Hash32,
    choice: Choice,
    sequence: u64,
    time: u64,
    attestations: Vec<UptimeAttestation>,
) -> Signal {
    commons_test_util::signal(
        &spec.network_id(),
        key,
        proposal,
        choice,
        sequence,
        time,
        attestations,
    )
}

/// Keys that attest each other at addresses in distinct regtest netgroups, so that each is
/// qualified at `epoch`: every node gets an attestation from every other one.
pub fn clique(
    spec: &NetworkSpec,
    n: usize,
    epoch: u64,
) -> (Vec<SecretKey>, Vec<Vec<UptimeAttestation>>) {
    let keys: Vec<SecretKey> = (0..n)
        .map(|i| SecretKey::from_seed(&format!("clique {i}")))
        .collect();
    let ip = |i: usize| -> IpAddr { format!("10.0.{}.1", i).parse().unwrap() };
    let about = (0..n)
        .map(|s| {
            (0..n)
                .filter(|a| *a != s)
                .map(|a| {
                    attestation(
                        spec,
                        &keys[a],
                        &keys[s],
                        ip(s),
                        epoch,
                        spec.min_uptime_epochs + 2,
                    )
                })
                .collect()
        })
        .collect();
    (keys, about)
}

/// Calls the method `M` of `node` as the RPC server would; the node's error as
/// `"CODE message"`.
pub async fn call<M: Method>(node: &Node, params: &M::Params) -> Result<M::Response, String> {
    let result = node
        .call(M::NAME, Params::new(commons_rpc::params_json::<M>(params)))
        .await
        .map_err(|e| format!("{} {}", e.code, e.message))?;
    Ok(commons_rpc::parse_response::<M>(result.clone())
        .unwrap_or_else(|e| panic!("{}: {e}: {result}", M::NAME)))
}

/// Posts `body` to `http://addr/` with an optional `Authorization` header; returns the
/// status and the body text.
pub async fn post(addr: SocketAddr, authorization: Option<&str>, body: &str) -> (u16, String) {
    request(addr, "POST", "/", authorization, body).await
}

/// One HTTP/1.1 request over a fresh connection.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &str,
) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    if let Some(auth) = authorization {
        builder = builder.header("authorization", auth);
    }
    let response = sender
        .send_request(
            builder
                .body(Full::new(Bytes::from(body.to_string())))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The configuration of an in-process regtest daemon in `dir`, listening for peers on `ip`
/// (port 0) and dialing `bootstrap`.
pub fn daemon_config(
    dir: &std::path::Path,
    ip: &str,
    bootstrap: Vec<commons_p2p::Multiaddr>,
) -> commons_node::config::Config {
    commons_node::config::Config {
        base_dir: dir.to_path_buf(),
        datadir: dir.join("regtest"),
        network_arg: "regtest".into(),
        spec: NetworkSpec::regtest(),
        successors: vec![],
        listen: vec![format!("/ip4/{ip}/tcp/0").parse().unwrap()],
        bootstrap,
        rpc_bind: "127.0.0.1:0".parse().unwrap(),
        metrics_bind: "127.0.0.1:0".parse().unwrap(),
        rpc_cookie_perms: Default::default(),
        rpc_limits: Default::default(),
        verify_binary: commons_node::selfcheck::VerifyBinary::Off,
        // The tests write well-known measurer keys that never signed before the first start.
        sign_without_catch_up: true,
    }
}

/// Options of an in-process daemon in a fixed topology: no discovery, quick retries.
pub fn daemon_options() -> commons_node::daemon::Options {
    commons_node::daemon::Options {
        discovery: false,
        retry_interval: std::time::Duration::from_millis(500),
        ..commons_node::daemon::Options::default()
    }
}

/// Polls `check` every 200 ms until it gives `Some`, failing after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
