//! The JSON-RPC client through the real binary, against a small loopback HTTP server that
//! plays the node: the request it sends, proxies ignored, and HTTP errors as exit codes.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output};
use std::thread::JoinHandle;

/// A server that answers one request with `status` and `body`, and gives back the request.
fn serve(status: &'static str, body: &'static str) -> (String, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
            raw.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        let mut request_body = vec![0u8; length];
        stream.read_exact(&mut request_body).unwrap();
        raw.extend_from_slice(&request_body);
        let answer = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(answer.as_bytes()).unwrap();
        String::from_utf8(raw).unwrap()
    });
    (address, handle)
}

/// Runs `commons-cli --rpc-url ADDRESS --rpc-cookie COOKIE ARGS` with `env` set.
fn cli(address: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let cookie = dir.path().join(".cookie");
    std::fs::write(&cookie, "__cookie__:abc\n").unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_commons-cli"));
    command
        .env("HOME", dir.path())
        .args(["--network", "regtest", "--rpc-url", address, "--rpc-cookie"])
        .arg(&cookie)
        .args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

#[test]
fn a_proxy_in_the_environment_is_not_used_for_the_local_node() {
    let (address, server) = serve(
        "200 OK",
        r#"{"jsonrpc":"2.0","id":1,"result":"commonsd stopping"}"#,
    );
    // Nothing listens on port 9 of loopback: a client that went through the proxy fails.
    let proxy = "http://127.0.0.1:9";
    let out = cli(
        &address,
        &["stop"],
        &[
            ("http_proxy", proxy),
            ("HTTP_PROXY", proxy),
            ("ALL_PROXY", proxy),
            ("all_proxy", proxy),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "commonsd stopping\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let request = server.join().unwrap();
    assert!(request.starts_with("POST / HTTP/1.1\r\n"), "{request}");
    assert!(
        request
            .to_ascii_lowercase()
            .contains("authorization: basic x19jb29rawvfxzphymm=\r\n"),
        "{request}"
    );
    assert!(
        request.ends_with(r#""method":"stop","params":{}}"#),
        "{request}"
    );
}

#[test]
fn http_errors_are_exit_3_with_one_line() {
    for (status, body, expected) in [
        (
            "401 Unauthorized",
            "unauthorized\n",
            "refused the cookie in ",
        ),
        ("403 Forbidden", "no\n", "answered HTTP 403 Forbidden: no"),
        (
            "500 Internal Server Error",
            "broken\n",
            "answered HTTP 500 Internal Server Error: broken",
        ),
    ] {
        let (address, server) = serve(status, body);
        let out = cli(&address, &["getinfo"], &[]);
        server.join().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{status}: {stderr}");
        assert!(
            stderr.starts_with("error: ")
                && stderr.contains(expected)
                && stderr.lines().count() == 1,
            "{status}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{status}");
    }
}

#[test]
fn a_json_rpc_error_keeps_its_exit_code() {
    let (address, server) = serve(
        "200 OK",
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"unknown proposal"}}"#,
    );
    let out = cli(&address, &["tally", &"00".repeat(32)], &[]);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: gettally: unknown proposal\n"
    );
}
