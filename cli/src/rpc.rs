//! A small JSON-RPC 2.0 client for `commonsd`: HTTP/1.1 over a TCP connection to the node's
//! loopback RPC port, authenticated with the cookie the node writes at each start.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::error::{CliError, Result};

/// Where the node is and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct RpcClient {
    address: SocketAddr,
    cookie_path: PathBuf,
}

/// The largest answer read from a node; far above any real one.
const MAX_RESPONSE: u64 = 64 * 1024 * 1024;

impl RpcClient {
    /// A client for the node at `address` (HOST:PORT), with the cookie at `cookie_path`.
    pub fn new(address: &str, cookie_path: PathBuf) -> Result<Self> {
        let address = address
            .strip_prefix("http://")
            .unwrap_or(address)
            .trim_end_matches('/');
        let address = address
            .to_socket_addrs()
            .with_context(|| format!("--rpc-url {address}: not a HOST:PORT address"))?
            .next()
            .ok_or_else(|| anyhow!("--rpc-url {address}: the name resolves to no address"))?;
        Ok(RpcClient {
            address,
            cookie_path,
        })
    }

    /// Calls `method` with named `params` and returns its `result`. A JSON-RPC error from the
    /// node is a failure (exit 1); an unreachable node or a refused cookie is `Unavailable`.
    pub fn call(&self, method: &str, params: Value) -> Result<Value> {
        let cookie = read_cookie(&self.cookie_path)?;
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let body = serde_json::to_vec(&body).expect("JSON values serialize");
        let (status, answer) = self.post(&cookie, &body)?;
        if status == 401 {
            return Err(CliError::Unavailable(anyhow!(
                "the node at {} refused the cookie in {}: is that the data directory of this node?",
                self.address,
                self.cookie_path.display()
            )));
        }
        let answer: Value = serde_json::from_slice(&answer).map_err(|e| {
            CliError::Unavailable(anyhow!(
                "the node at {} answered HTTP {status} with something that is not JSON-RPC: {e}",
                self.address
            ))
        })?;
        if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error");
            return Err(CliError::failed(format!("{method}: {message}")));
        }
        Ok(answer.get("result").cloned().unwrap_or(Value::Null))
    }

    fn post(&self, cookie: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        let unavailable = |e: std::io::Error| {
            CliError::Unavailable(anyhow!(
                "cannot reach commonsd at {}: {e} (is the node running? start it with `commonsd`)",
                self.address
            ))
        };
        let mut stream = TcpStream::connect_timeout(&self.address, Duration::from_secs(5))
            .map_err(unavailable)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .map_err(unavailable)?;
        let auth = base64::engine::general_purpose::STANDARD.encode(cookie);
        let head = format!(
            "POST / HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.address,
            body.len()
        );
        stream.write_all(head.as_bytes()).map_err(unavailable)?;
        stream.write_all(body).map_err(unavailable)?;
        let mut raw = Vec::new();
        stream
            .take(MAX_RESPONSE)
            .read_to_end(&mut raw)
            .map_err(unavailable)?;
        parse_response(&raw).map_err(|e| CliError::Unavailable(anyhow!("{}: {e}", self.address)))
    }
}

/// The status and body of an HTTP/1.1 response (`Content-Length`, chunked, or until close).
fn parse_response(raw: &[u8]) -> std::result::Result<(u16, Vec<u8>), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("incomplete HTTP response")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "HTTP headers are not text")?;
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or("no HTTP status line")?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_text = std::str::from_utf8(&rest[..end]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Ok((status, out));
        }
        out.extend_from_slice(rest.get(..size).ok_or("truncated chunk")?);
        rest = rest.get(size + 2..).ok_or("truncated chunk")?;
    }
}

fn read_cookie(path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_string())
        .map_err(|e| {
            CliError::Unavailable(anyhow!(
                "{}: {e}; commonsd writes this cookie at start, so the node is not running \
                 with this data directory (see --datadir, --network, --rpc-cookie)",
                path.display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain).unwrap(), (200, b"{}".to_vec()));
        let chunked = b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (401, b"abcde".to_vec()));
        assert!(parse_response(b"HTTP/1.1 200").is_err());
    }
}
