//! The RPC server of a real `commonsd` against clients that hold connections and send too
//! much: stalled connections are closed after `--rpc-timeout`, idle ones beyond
//! `--rpc-max-connections` make room for an authorised call, and bodies above
//! `--rpc-max-body-bytes` (declared or streamed) or huge header blocks are refused with a
//! clear error while the daemon keeps serving.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use commons_e2e::{NodeSpec, TestNode, basic_auth, http, phases, wait_until};
use serde_json::Value;

/// No other test uses this address.
const IP: &str = "127.0.0.205";
const GETINFO: &str = r#"{"jsonrpc":"2.0","id":1,"method":"getinfo"}"#;
const MAX_BODY: usize = 64 * 1024;

/// An authorised getinfo on a fresh connection answers.
fn getinfo_answers(node: &TestNode) {
    let auth = basic_auth(&node.cookie().unwrap());
    let r = http(node.rpc_addr, "POST", "/", Some(&auth), GETINFO).unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["result"]["network"]["name"], "regtest", "{v}");
}

/// Opens `n` connections; every other one sends half a request head and stalls.
fn stalled_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut s = TcpStream::connect(addr).unwrap();
            if i % 2 == 1 {
                s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Ty")
                    .unwrap();
            }
            s
        })
        .collect()
}

/// Whether the server has closed `s` (end of stream or reset), polled without blocking long.
fn closed_by_server(mut s: &TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            // A 408 or an error page first: the close follows.
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Sends `head` and then `body` (from a thread of its own, so that a server answering
/// before the body is all sent is read), and returns the status and body of the answer.
fn exchange(addr: SocketAddr, head: String, body: Vec<u8>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        // The server may close early: a failed write is what it is allowed to cause.
        let _ = writer.write_all(head.as_bytes());
        for piece in body.chunks(16 * 1024) {
            if writer.write_all(piece).is_err() {
                return;
            }
        }
    });
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if response_complete(&raw) {
            break;
        }
    }
    drop(stream);
    let _ = sender.join();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    (status, body.to_string())
}

/// Whether `raw` holds a whole response with a `content-length`.
fn response_complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .is_some_and(|len| body.len() >= len)
}

/// The JSON-RPC error of a refusal: its message must name the limit and the flag.
fn assert_too_large(status: u16, body: &str) {
    assert_eq!(status, 413, "{body}");
    let v: Value = serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {body}"));
    let message = v["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("limit of {MAX_BODY} bytes"))
            && message.contains("--rpc-max-body-bytes"),
        "{v}"
    );
    assert_eq!(
        v["error"]["code"],
        commons_rpc::code::INVALID_REQUEST,
        "{v}"
    );
}

#[test]
fn the_rpc_server_holds_against_idle_connections_and_oversized_requests() {
    let phase = phases("rpc_limits");
    phase("commonsd on 127.0.0.205 with --rpc-timeout 2 --rpc-max-connections 64");
    let mut node = TestNode::start_with(
        "rpc",
        NodeSpec {
            ip: IP.into(),
            bootstrap: vec![],
            measurer: None,
        },
        commons_e2e::binary("commonsd"),
        [
            "--rpc-timeout",
            "2",
            "--rpc-max-connections",
            "64",
            "--rpc-max-body-bytes",
            &MAX_BODY.to_string(),
        ]
        .map(String::from)
        .to_vec(),
    )
    .expect("commonsd starts");
    getinfo_answers(&node);

    phase("40 connections that send nothing or half a request head are closed by the timeout");
    let stalled = stalled_connections(node.rpc_addr, 40);
    wait_until(
        Duration::from_secs(60),
        "every stalled connection closed",
        || {
            let open = stalled.iter().filter(|s| !closed_by_server(s)).count();
            if open == 0 {
                Ok(())
            } else {
                Err(format!("{open} still open"))
            }
        },
    );
    let timed_out = node.metric(r#"commons_rpc_connections_closed_total{reason="timed_out"}"#);
    assert!(timed_out >= 40.0, "timed_out = {timed_out}");
    getinfo_answers(&node);

    phase("restart with --rpc-timeout 600: 300 idle connections held, getinfo still answers");
    node.stop().unwrap();
    node.args[1] = "600".into();
    node.restart().unwrap();
    let held = stalled_connections(node.rpc_addr, 300);
    for _ in 0..3 {
        getinfo_answers(&node);
    }
    let evicted = node.metric(r#"commons_rpc_connections_closed_total{reason="evicted"}"#);
    assert!(evicted >= 230.0, "evicted = {evicted}");
    let open = node.metric("commons_rpc_connections_open");
    assert!(open <= 64.0 + 1.0, "open = {open}");
    drop(held);

    let auth = basic_auth(&node.cookie().unwrap());
    let addr = node.rpc_addr;
    phase("a declared body above the limit: 413 before a byte of it is read");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        10 * 1024 * 1024
    );
    let (status, body) = exchange(addr, head, Vec::new());
    assert_too_large(status, &body);

    phase("a streamed (chunked) body above the limit: 413 once the limit is passed");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n"
    );
    let mut chunked = Vec::new();
    for _ in 0..8 {
        chunked.extend_from_slice(format!("{:x}\r\n", 16 * 1024).as_bytes());
        chunked.extend(std::iter::repeat_n(b' ', 16 * 1024));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, body) = exchange(addr, head, chunked);
    assert_too_large(status, &body);

    phase("a body just under the limit is still read and answered");
    let padded = format!("{GETINFO}{}", " ".repeat(MAX_BODY - GETINFO.len() - 10));
    let r = http(addr, "POST", "/", Some(&auth), &padded).unwrap();
    assert_eq!(r.status, 200, "{r:?}");

    phase("a header block of 100 KiB: 431, nothing else happens");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\nContent-Length: 0\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let (status, _) = exchange(addr, head, Vec::new());
    assert_eq!(status, 431);

    let too_large = node.metric("commons_rpc_requests_too_large_total");
    assert!(too_large >= 2.0, "too_large = {too_large}");
    getinfo_answers(&node);
    assert!(node.is_running());
}
