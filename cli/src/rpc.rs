//! A small JSON-RPC 2.0 client for `commonsd`: HTTP/1.1 over a TCP connection to the node's
//! loopback RPC port, authenticated with the cookie the node writes at each start. The port
//! is the one given, or the one the running node recorded beside its cookie.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use base64::Engine as _;
use commons_rpc::Method;
use serde_json::{Value, json};

use crate::error::{CliError, Result};

/// Where the node's RPC server is.
#[derive(Debug, Clone)]
enum Target {
    /// The address given with `--rpc-url`.
    Fixed(SocketAddr),
    /// The address the node running in `datadir` recorded there, read at each attempt (a
    /// node restarted meanwhile may listen elsewhere), else `fallback` (a node too old to
    /// record it, or none running).
    Recorded {
        datadir: PathBuf,
        fallback: SocketAddr,
    },
}

/// Where the node is and how to authenticate to it.
#[derive(Debug, Clone)]
pub struct RpcClient {
    target: Target,
    cookie_path: PathBuf,
    read_timeout: Duration,
    wait: Option<Duration>,
}

/// How often a client that waits for the node tries again.
const WAIT_POLL: Duration = Duration::from_millis(250);

/// How long an answer may take by default: every method but a few answers at once.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(120);

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
            target: Target::Fixed(address),
            cookie_path,
            read_timeout: DEFAULT_READ_TIMEOUT,
            wait: None,
        })
    }

    /// A client for the node running in the network data directory `datadir`, at the
    /// address it recorded there (see `commons_rpc::local::RPC_ADDRESS_FILE`), else at
    /// `fallback`; with the cookie at `cookie_path`.
    pub fn recorded(datadir: PathBuf, fallback: SocketAddr, cookie_path: PathBuf) -> Self {
        RpcClient {
            target: Target::Recorded { datadir, fallback },
            cookie_path,
            read_timeout: DEFAULT_READ_TIMEOUT,
            wait: None,
        }
    }

    /// The address to connect to now.
    fn address(&self) -> Result<SocketAddr> {
        match &self.target {
            Target::Fixed(address) => Ok(*address),
            Target::Recorded { datadir, fallback } => {
                let recorded = commons_rpc::local::read_rpc_address(datadir)
                    .map_err(|e| CliError::Unavailable(anyhow!("{e}")))?;
                Ok(recorded.map_or(*fallback, commons_rpc::local::connect_address))
            }
        }
    }

    /// The same client, trying again for up to `wait` while the node is not up yet (no
    /// cookie, connection refused, a cookie of its previous run), like `bitcoin-cli
    /// -rpcwait`: for scripts that start the node and then talk to it.
    pub fn with_wait(mut self, wait: Option<Duration>) -> Self {
        self.wait = wait;
        self
    }

    /// The same client, waiting up to `timeout` for an answer: for methods whose work grows
    /// with their input, such as a release whose artifacts the node hashes before answering.
    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Calls `method` with named `params` and returns its `result`. A JSON-RPC error from the
    /// node becomes the [`CliError`] its code calls for (see [`NodeError::into_cli`]); an
    /// unreachable node or a refused cookie is `Unavailable`.
    pub fn call(&self, method: &str, params: Value) -> Result<Value> {
        self.call_raw(method, params)?
            .map_err(|error| error.into_cli(method))
    }

    /// Calls the method `M` and reads its answer (see [`parse_answer`]).
    pub fn request<M: Method>(&self, params: &M::Params) -> Result<M::Response> {
        parse_answer::<M>(self.call(M::NAME, commons_rpc::params_json::<M>(params))?)
    }

    /// Calls `method` and returns the node's JSON-RPC error as it is, for commands that word
    /// it themselves; only failures to reach the node are errors of the outer result.
    pub fn call_raw(
        &self,
        method: &str,
        params: Value,
    ) -> Result<std::result::Result<Value, NodeError>> {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let body = serde_json::to_vec(&body).expect("JSON values serialize");
        let deadline = self.wait.map(|wait| Instant::now() + wait);
        let (address, status, answer) = loop {
            match self.exchange(&body) {
                Ok(answer) => break answer,
                Err(Attempt::NotUp(_)) if deadline.is_some_and(|d| Instant::now() < d) => {
                    std::thread::sleep(WAIT_POLL);
                }
                Err(Attempt::NotUp(error) | Attempt::Failed(error)) => return Err(error),
            }
        };
        let answer: Value = serde_json::from_slice(&answer).map_err(|e| {
            CliError::Unavailable(anyhow!(
                "the node at {address} answered HTTP {status} with something that is not JSON-RPC: {e}"
            ))
        })?;
        if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
            return Ok(Err(NodeError {
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error")
                    .to_string(),
            }));
        }
        Ok(Ok(answer.get("result").cloned().unwrap_or(Value::Null)))
    }

    /// One request: the cookie, a connection, the request and its answer, with the HTTP
    /// status. Failures before the node took the request are [`Attempt::NotUp`], which a
    /// waiting client tries again; once the request is sent, nothing is sent twice.
    fn exchange(&self, body: &[u8]) -> std::result::Result<(SocketAddr, u16, Vec<u8>), Attempt> {
        let cookie = read_cookie(&self.cookie_path).map_err(Attempt::NotUp)?;
        let address = self.address().map_err(Attempt::NotUp)?;
        let unavailable = |e: std::io::Error| {
            CliError::Unavailable(anyhow!(
                "cannot reach commonsd at {address}: {e} (is the node running? start it with `commonsd`)"
            ))
        };
        let stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
            .map_err(|e| Attempt::NotUp(unavailable(e)))?;
        let (status, answer) = self
            .post(address, stream, &cookie, body)
            .map_err(Attempt::Failed)?;
        if status == 401 {
            return Err(Attempt::NotUp(CliError::Unavailable(anyhow!(
                "the node at {address} refused the cookie in {}: is that the data directory of this node?",
                self.cookie_path.display()
            ))));
        }
        Ok((address, status, answer))
    }

    fn post(
        &self,
        address: SocketAddr,
        mut stream: TcpStream,
        cookie: &str,
        body: &[u8],
    ) -> Result<(u16, Vec<u8>)> {
        let unavailable = |e: std::io::Error| {
            let timed_out = matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            );
            CliError::Unavailable(if timed_out {
                anyhow!(
                    "commonsd at {address} did not answer within {} s",
                    self.read_timeout.as_secs()
                )
            } else {
                anyhow!("lost the connection to commonsd at {address}: {e}")
            })
        };
        stream
            .set_read_timeout(Some(self.read_timeout))
            .map_err(unavailable)?;
        let auth = base64::engine::general_purpose::STANDARD.encode(cookie);
        let head = format!(
            "POST / HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            address,
            body.len()
        );
        stream.write_all(head.as_bytes()).map_err(unavailable)?;
        stream.write_all(body).map_err(unavailable)?;
        let mut raw = Vec::new();
        stream
            .take(MAX_RESPONSE)
            .read_to_end(&mut raw)
            .map_err(unavailable)?;
        parse_response(&raw).map_err(|e| CliError::Unavailable(anyhow!("{address}: {e}")))
    }
}

/// Why one request did not get an answer.
enum Attempt {
    /// The node is not up, or not yet: no cookie, no listener, or a stale cookie.
    NotUp(CliError),
    /// The request was sent but the answer did not come back whole.
    Failed(CliError),
}

/// JSON-RPC error codes of `commonsd` (see docs/OPERATING.md).
pub use commons_rpc::code;

/// A JSON-RPC error object the node answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeError {
    /// The JSON-RPC error code (see [`code`]).
    pub code: i64,
    /// The node's message, which says why.
    pub message: String,
}

impl NodeError {
    /// The error a command reports, with the exit code the error's kind calls for: bad
    /// parameters are the caller's input (2); a method the node lacks or an internal failure
    /// means the node cannot do it (3); anything else, such as a refusal by the rules or an
    /// unknown id, is a failed check (1).
    pub fn into_cli(self, method: &str) -> CliError {
        let NodeError { code, message } = self;
        match code {
            code::INVALID_PARAMS => CliError::Input(anyhow!("{method}: {message}")),
            code::METHOD_NOT_FOUND => CliError::Unavailable(anyhow!(
                "the node does not support `{method}`: it is older than this commons-cli ({message})"
            )),
            code::INTERNAL_ERROR => {
                CliError::Unavailable(anyhow!("{method}: the node failed: {message}"))
            }
            _ => CliError::failed(format!("{method}: {message}")),
        }
    }
}

/// The `result` of a call of `M` read as its answer. An answer of another shape means the
/// node speaks another version of the RPC, which makes it unusable for the command (exit 3).
pub fn parse_answer<M: Method>(result: Value) -> Result<M::Response> {
    commons_rpc::parse_response::<M>(result).map_err(|e| {
        CliError::Unavailable(anyhow!(
            "{}: the node's answer is not what this commons-cli expects ({e}); \
             are the node and commons-cli of the same version?",
            M::NAME
        ))
    })
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
                 with this data directory (see --datadir, --conf, --network, --rpc-cookie)",
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

    #[test]
    fn node_errors_get_the_exit_code_of_their_kind() {
        let error = |code| {
            NodeError {
                code,
                message: "why".to_string(),
            }
            .into_cli("publishrelease")
        };
        assert_eq!(error(code::INVALID_PARAMS).exit_code(), 2);
        assert_eq!(error(code::REJECTED).exit_code(), 1);
        assert_eq!(error(code::NOT_FOUND).exit_code(), 1);
        assert_eq!(error(code::METHOD_NOT_FOUND).exit_code(), 3);
        assert_eq!(error(code::INTERNAL_ERROR).exit_code(), 3);
        assert_eq!(error(code::REJECTED).to_string(), "publishrelease: why");
        let old = error(code::METHOD_NOT_FOUND).to_string();
        assert!(old.contains("does not support `publishrelease`"), "{old}");
    }
}
