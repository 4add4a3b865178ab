//! Helpers shared by the integration tests: signed regtest messages and a tiny HTTP client.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};

use commons_signaling::spec::regtest_maintainer_key;
use commons_signaling::{
    AttestationBody, BoundedString, BoundedVec, Choice, Hash32, NetworkSpec, PROTOCOL_VERSION,
    Proposal, ProposalBody, SecretKey, Signal, SignalBody, Signed, UptimeAttestation, WireIp,
};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// A tier-1 regtest proposal signed by three well-known maintainers, locked from `start`
/// for `lock` seconds.
pub fn proposal(spec: &NetworkSpec, title: &str, start: u64, lock: u64) -> Proposal {
    let mut p = Proposal::new(ProposalBody {
        version: PROTOCOL_VERSION,
        tier: 1,
        title: BoundedString::new(title).unwrap(),
        reference: BoundedString::new("https://example.invalid/pr/1").unwrap(),
        lock_start: start,
        lock_end: start + lock,
    });
    let id = spec.network_id();
    for i in 0..3 {
        p.add_signature(&regtest_maintainer_key(i), &id).unwrap();
    }
    p
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
    let body = AttestationBody {
        version: PROTOCOL_VERSION,
        attester: attester.public_key(),
        subject: subject.public_key(),
        subject_ip: WireIp(ip),
        epoch,
        seen_epochs: seen,
    };
    Signed::sign(body, attester, &spec.network_id())
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
    let body = SignalBody {
        version: PROTOCOL_VERSION,
        proposal,
        choice,
        sequence,
        time,
        signer: key.public_key(),
        attestations: BoundedVec::new(attestations).unwrap(),
    };
    Signed::sign(body, key, &spec.network_id())
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
