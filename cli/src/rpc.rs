//! A small JSON-RPC 2.0 client for `commonsd`: HTTP/1.1 POSTs (by `ureq`) to the node's
//! loopback RPC port, authenticated with the cookie the node writes at each start. The port
//! is the one given, or the one the running node recorded beside its cookie.

use std::net::{SocketAddr, ToSocketAddrs};
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

/// How long connecting may take: the node is on loopback, so anything longer means it is
/// not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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

    /// One request: the cookie, the request and its answer, with the HTTP status. Failures
    /// before the node took the request are [`Attempt::NotUp`], which a waiting client tries
    /// again; once the request is sent, nothing is sent twice.
    fn exchange(&self, body: &[u8]) -> std::result::Result<(SocketAddr, u16, Vec<u8>), Attempt> {
        let cookie = read_cookie(&self.cookie_path).map_err(Attempt::NotUp)?;
        let address = self.address().map_err(Attempt::NotUp)?;
        let auth = base64::engine::general_purpose::STANDARD.encode(cookie);
        let mut response = self
            .agent()
            .post(format!("http://{address}/"))
            .header("Authorization", format!("Basic {auth}"))
            .content_type("application/json")
            .send(body)
            .map_err(|e| self.failure(address, e))?;
        let status = response.status().as_u16();
        if status == 401 {
            return Err(Attempt::NotUp(CliError::Unavailable(anyhow!(
                "the node at {address} refused the cookie in {}: is that the data directory of this node?",
                self.cookie_path.display()
            ))));
        }
        let answer = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_vec()
            .map_err(|e| self.failure(address, e))?;
        if !(200..300).contains(&status) && serde_json::from_slice::<Value>(&answer).is_err() {
            // The node answers every call with JSON-RPC, errors too; anything else is not the
            // node's RPC server (a wrong port, a proxy) or a node that cannot serve.
            return Err(Attempt::Failed(CliError::Unavailable(anyhow!(
                "the node at {address} answered HTTP {status}{}: {}",
                response
                    .status()
                    .canonical_reason()
                    .map(|r| format!(" {r}"))
                    .unwrap_or_default(),
                crate::format::one_line(String::from_utf8_lossy(&answer).trim())
            ))));
        }
        Ok((address, status, answer))
    }

    /// An agent for one call: this client's timeouts, HTTP errors as answers (a JSON-RPC
    /// error may come with any status), and no proxy, whatever `http_proxy` says, since the
    /// node is on this machine.
    fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .max_redirects(0)
            .user_agent(concat!("commons-cli/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(self.read_timeout))
            .timeout_recv_body(Some(self.read_timeout))
            .build()
            .into()
    }

    /// A failed request in a person's words: the node is not there ([`Attempt::NotUp`]), or
    /// the connection broke or timed out once the request was under way.
    fn failure(&self, address: SocketAddr, error: ureq::Error) -> Attempt {
        use std::io::ErrorKind;
        let not_up = |why: String| {
            Attempt::NotUp(CliError::Unavailable(anyhow!(
                "cannot reach commonsd at {address}: {why} (is the node running? start it with `commonsd`)"
            )))
        };
        let failed = |e: anyhow::Error| Attempt::Failed(CliError::Unavailable(e));
        match error {
            ureq::Error::Io(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionRefused
                        | ErrorKind::AddrNotAvailable
                        | ErrorKind::HostUnreachable
                        | ErrorKind::NetworkUnreachable
                ) =>
            {
                not_up(e.to_string())
            }
            ureq::Error::Timeout(ureq::Timeout::Connect | ureq::Timeout::Resolve) => not_up(
                format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
            ),
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => not_up(error.to_string()),
            ureq::Error::Timeout(_) => failed(anyhow!(
                "commonsd at {address} did not answer within {} s",
                self.read_timeout.as_secs()
            )),
            ureq::Error::BodyExceedsLimit(limit) => failed(anyhow!(
                "the node at {address} answered with more than {limit} bytes, more than any answer of commonsd"
            )),
            ureq::Error::Io(e) => {
                failed(anyhow!("lost the connection to commonsd at {address}: {e}"))
            }
            other => failed(anyhow!(
                "the node at {address} did not answer in HTTP/1.1: {other}"
            )),
        }
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
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::thread::JoinHandle;

    /// Reads one HTTP request (head and `Content-Length` body) from `stream`.
    fn read_request(stream: &mut std::net::TcpStream) -> Vec<u8> {
        let mut raw = Vec::new();
        let mut byte = [0u8; 1];
        while !raw.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).unwrap() == 0 {
                return raw;
            }
            raw.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).unwrap();
        raw.extend_from_slice(&body);
        raw
    }

    /// A loopback server that takes one request, answers `response` as it is (after
    /// `delay`), and gives back the request it read.
    fn serve(response: Vec<u8>, delay: Duration) -> (String, JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let request = read_request(&mut stream);
            std::thread::sleep(delay);
            let _ = stream.write_all(&response);
            request
        });
        (address, handle)
    }

    /// A client for `address` with a cookie file holding `__cookie__:secret`.
    fn client(address: &str) -> (tempfile::TempDir, RpcClient) {
        let dir = tempfile::tempdir().unwrap();
        let cookie = dir.path().join(".cookie");
        std::fs::write(&cookie, "__cookie__:secret\n").unwrap();
        let client = RpcClient::new(address, cookie).unwrap();
        (dir, client)
    }

    /// An HTTP/1.1 answer with `status` (`200 OK`) and `body`, its length given.
    fn http(status: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn answer(response: Vec<u8>) -> (Result<Value>, String) {
        let (address, server) = serve(response, Duration::ZERO);
        let (_dir, client) = client(&address);
        let result = client.call("getinfo", json!({}));
        let request = String::from_utf8(server.join().unwrap()).unwrap();
        (result, request)
    }

    #[test]
    fn posts_json_rpc_with_the_cookie_as_basic_auth() {
        let (result, request) = answer(http(
            "200 OK",
            r#"{"jsonrpc":"2.0","id":1,"result":{"x":1}}"#,
        ));
        assert_eq!(result.unwrap(), json!({ "x": 1 }));
        let lower = request.to_ascii_lowercase();
        assert!(request.starts_with("POST / HTTP/1.1\r\n"), "{request}");
        // base64("__cookie__:secret")
        assert!(
            lower.contains("authorization: basic x19jb29rawvfxzpzzwnyzxq=\r\n"),
            "{request}"
        );
        assert!(
            lower.contains("content-type: application/json\r\n"),
            "{request}"
        );
        let body = &request[request.find("\r\n\r\n").unwrap() + 4..];
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            body,
            json!({ "jsonrpc": "2.0", "id": 1, "method": "getinfo", "params": {} })
        );
    }

    #[test]
    fn chunked_answers_and_node_errors_are_read() {
        let (result, _) = answer(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
              15\r\n{\"jsonrpc\":\"2.0\",\"id\"\r\n\
              f\r\n:1,\"result\":42}\r\n0\r\n\r\n"
                .to_vec(),
        );
        assert_eq!(result.unwrap(), json!(42));
        // A JSON-RPC error keeps its meaning whatever the HTTP status it came with.
        let (result, _) = answer(http(
            "500 Internal Server Error",
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"store failed"}}"#,
        ));
        let error = result.unwrap_err();
        assert_eq!(error.exit_code(), 3);
        assert_eq!(error.to_string(), "getinfo: the node failed: store failed");
    }

    #[test]
    fn http_errors_are_unavailable_with_the_status() {
        let (result, _) = answer(http("401 Unauthorized", "unauthorized\n"));
        let error = result.unwrap_err();
        assert_eq!(error.exit_code(), 3);
        assert!(
            error.to_string().starts_with("the node at 127.0.0.1:")
                && error.to_string().contains("refused the cookie in "),
            "{error}"
        );
        for (response, expected) in [
            (
                http("403 Forbidden", "forbidden\n"),
                "answered HTTP 403 Forbidden: forbidden",
            ),
            (
                http("500 Internal Server Error", "oops\n"),
                "answered HTTP 500 Internal Server Error: oops",
            ),
            (
                http("200 OK", "hello"),
                "answered HTTP 200 with something that is not JSON-RPC",
            ),
        ] {
            let (address, server) = serve(response, Duration::ZERO);
            let (_dir, client) = client(&address);
            let error = client.call("getinfo", json!({})).unwrap_err();
            server.join().unwrap();
            assert_eq!(error.exit_code(), 3, "{error}");
            assert!(error.to_string().contains(expected), "{error}");
            assert_eq!(error.to_string().lines().count(), 1, "{error}");
        }
    }

    #[test]
    fn no_listener_says_the_node_is_not_running() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (_dir, client) = client(&format!("127.0.0.1:{port}"));
        let error = client.call("getinfo", json!({})).unwrap_err();
        assert_eq!(error.exit_code(), 3);
        let text = error.to_string();
        assert!(
            text.starts_with(&format!("cannot reach commonsd at 127.0.0.1:{port}: "))
                && text.ends_with("(is the node running? start it with `commonsd`)"),
            "{text}"
        );
    }

    #[test]
    fn a_node_that_does_not_answer_in_time_is_a_timeout() {
        let (address, server) = serve(Vec::new(), Duration::from_millis(2500));
        let (_dir, client) = client(&address);
        let started = Instant::now();
        let error = client
            .with_read_timeout(Duration::from_secs(1))
            .call("publishrelease", json!({}))
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(2400));
        assert_eq!(error.exit_code(), 3);
        assert_eq!(
            error.to_string(),
            format!("commonsd at {address} did not answer within 1 s")
        );
        server.join().unwrap();
    }

    #[test]
    fn a_missing_cookie_names_its_file() {
        let (_dir, client) = client("127.0.0.1:9");
        let client = RpcClient {
            cookie_path: PathBuf::from("/nonexistent/.cookie"),
            ..client
        };
        let error = client.call("getinfo", json!({})).unwrap_err();
        assert_eq!(error.exit_code(), 3);
        assert!(
            error.to_string().starts_with("/nonexistent/.cookie: "),
            "{error}"
        );
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
