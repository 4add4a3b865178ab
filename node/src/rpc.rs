//! JSON-RPC 2.0 over HTTP with cookie authentication.
//!
//! The server is a thin layer: it authenticates, parses the envelope and hands each call to
//! an [`RpcHandler`] (the node implements it), so the methods can be tested without HTTP and
//! the HTTP handling without a node. Every JSON-RPC response, errors included, is sent with
//! HTTP 200 so clients read one format; only missing or wrong credentials get a bare 401.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONNECTION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use commons_rpc::envelope::{self, Body, Call};
pub use commons_rpc::envelope::{MAX_BATCH_LEN, MAX_BATCH_RESPONSE_BYTES};

use crate::cookie::Cookie;

/// Largest request body accepted by default ([`RpcLimits::max_body_bytes`]): the largest
/// call (a proposal in hex) is a few KiB.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = commons_rpc::code::PARSE_ERROR;
/// The JSON is not a valid request object.
pub const INVALID_REQUEST: i64 = commons_rpc::code::INVALID_REQUEST;
/// The method does not exist.
pub const METHOD_NOT_FOUND: i64 = commons_rpc::code::METHOD_NOT_FOUND;
/// Invalid method parameters.
pub const INVALID_PARAMS: i64 = commons_rpc::code::INVALID_PARAMS;
/// Internal error.
pub const INTERNAL_ERROR: i64 = commons_rpc::code::INTERNAL_ERROR;
/// The object asked for does not exist (an unknown proposal, say).
pub const NOT_FOUND: i64 = commons_rpc::code::NOT_FOUND;
/// The request was understood but refused by the node's rules (an invalid proposal, a
/// signal on a proposal that is not locked).
pub const REJECTED: i64 = commons_rpc::code::REJECTED;
/// The node cannot do this now (its store cannot write, or it has not caught up with peers
/// before signing): nothing was done; retry later.
pub const UNAVAILABLE: i64 = commons_rpc::code::UNAVAILABLE;

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// The error code.
    pub code: i64,
    /// A one-line description for the user.
    pub message: String,
    /// Extra structured detail, if any.
    pub data: Option<Value>,
}

impl RpcError {
    /// An error with a code and message.
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// Invalid parameters.
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(INVALID_PARAMS, message)
    }

    /// An internal failure (the store, say); the message is logged and returned.
    pub fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!(error = %message, "RPC call failed");
        Self::new(INTERNAL_ERROR, message.to_string())
    }
}

/// The parameters of a call, given by name (an object) or by position (an array).
#[derive(Debug, Clone)]
pub struct Params(Value);

impl Params {
    /// Wraps a `params` value (absent means none).
    pub fn new(value: Value) -> Self {
        Params(value)
    }

    /// The raw value.
    pub fn raw(&self) -> &Value {
        &self.0
    }

    /// The parameter `name`, or the one at `position` when given by position.
    pub fn get(&self, name: &str, position: usize) -> Option<&Value> {
        match &self.0 {
            Value::Object(map) => map.get(name),
            Value::Array(items) => items.get(position),
            _ => None,
        }
        .filter(|v| !v.is_null())
    }

    /// A required string parameter.
    pub fn required_str(&self, name: &str, position: usize) -> Result<&str, RpcError> {
        match self.get(name, position) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(RpcError::invalid_params(format!(
                "`{name}` must be a string, not {other}"
            ))),
            None => Err(RpcError::invalid_params(format!(
                "missing parameter `{name}`"
            ))),
        }
    }

    /// An optional string parameter.
    pub fn optional_str(&self, name: &str, position: usize) -> Result<Option<&str>, RpcError> {
        match self.get(name, position) {
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(RpcError::invalid_params(format!(
                "`{name}` must be a string, not {other}"
            ))),
            None => Ok(None),
        }
    }

    /// Fails when parameters other than `known` were given by name, or more than
    /// `known.len()` by position, so that a misspelt parameter is not silently ignored.
    pub fn only(&self, known: &[&str]) -> Result<(), RpcError> {
        match &self.0 {
            Value::Null => Ok(()),
            Value::Object(map) => match map.keys().find(|k| !known.contains(&k.as_str())) {
                Some(k) => Err(RpcError::invalid_params(format!(
                    "unknown parameter `{k}` (expected {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ))),
                None => Ok(()),
            },
            Value::Array(items) if items.len() <= known.len() => Ok(()),
            Value::Array(items) => Err(RpcError::invalid_params(format!(
                "{} parameters given, at most {} expected",
                items.len(),
                known.len()
            ))),
            other => Err(RpcError::invalid_params(format!(
                "params must be an object or an array, not {other}"
            ))),
        }
    }
}

/// A boxed future returned by [`RpcHandler::call`].
pub type RpcFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, RpcError>> + Send + 'a>>;

/// What the server dispatches calls to.
pub trait RpcHandler: Send + Sync + 'static {
    /// Runs `method`; unknown methods return [`METHOD_NOT_FOUND`].
    fn call<'a>(&'a self, method: &'a str, params: Params) -> RpcFuture<'a>;
}

/// Handles one request body (a request or a batch); `None` when nothing is to be sent back
/// (only notifications). A batch holds at most [`MAX_BATCH_LEN`] calls, and once its answers
/// reach [`MAX_BATCH_RESPONSE_BYTES`] its remaining calls are not run (see
/// [`commons_rpc::envelope`]).
pub async fn handle_json<H: RpcHandler + ?Sized>(handler: &H, body: &[u8]) -> Option<Value> {
    match envelope::parse_body(body) {
        Body::Refused { code, message } => {
            Some(envelope::error_response(Value::Null, code, &message, None))
        }
        Body::Single(call) => run_call(handler, call).await,
        Body::Batch(calls) => {
            let mut out = Vec::with_capacity(calls.len());
            let mut answered_bytes = 0usize;
            for call in calls {
                if answered_bytes >= MAX_BATCH_RESPONSE_BYTES {
                    if let Some(id) = call.reply_id() {
                        out.push(envelope::error_response(
                            id,
                            commons_rpc::code::RESPONSE_TOO_LARGE,
                            &format!(
                                "not run: the batch's answers reached \
                                 {MAX_BATCH_RESPONSE_BYTES} bytes"
                            ),
                            None,
                        ));
                    }
                    continue;
                }
                if let Some(response) = run_call(handler, call).await {
                    answered_bytes += serde_json::to_vec(&response).map_or(0, |b| b.len());
                    out.push(response);
                }
            }
            if out.is_empty() {
                None
            } else {
                Some(Value::Array(out))
            }
        }
    }
}

async fn run_call<H: RpcHandler + ?Sized>(handler: &H, call: Call) -> Option<Value> {
    let (id, method, params) = match call {
        Call::Invalid { id, code, message } => {
            return Some(envelope::error_response(id, code, &message, None));
        }
        Call::Request { id, method, params } => (id, method, params),
    };
    let result = handler.call(&method, Params::new(params)).await;
    let reply_id = id?;
    Some(match result {
        Ok(value) => envelope::result_response(reply_id, value),
        Err(error) => {
            envelope::error_response(reply_id, error.code, &error.message, error.data.as_ref())
        }
    })
}

fn text_response(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("static response is valid")
}

/// A JSON-RPC error sent with an HTTP error status, for a request the server refused before
/// reading it whole. The connection is closed after it: the rest of the body is not read.
fn refusal(status: StatusCode, code: i64, message: &str) -> Response<Full<Bytes>> {
    let body = envelope::error_response(Value::Null, code, message, None);
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .header(CONNECTION, "close")
        .body(Full::new(Bytes::from(body.to_string() + "\n")))
        .expect("JSON response is valid")
}

/// What the RPC server holds open for its clients, as bitcoind's `-rpcworkqueue`,
/// `-rpcservertimeout` and its body limit: the memory and file descriptors one client (or
/// many) can make the daemon spend are these limits, not what it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RpcLimits {
    /// The most connections open at once. At the limit a new connection closes the oldest
    /// one that has no authorised request under way, so idle or stalled connections cannot
    /// lock clients out; only when every connection is busy is the new one refused.
    pub max_connections: usize,
    /// The time a client has to send a request's headers (an idle keep-alive connection
    /// waits this long for its next request) and, separately, its body.
    #[serde(with = "secs")]
    pub timeout: Duration,
    /// The largest request body, whether its length is declared or it is streamed.
    pub max_body_bytes: usize,
}

mod secs {
    pub(super) fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

impl Default for RpcLimits {
    fn default() -> Self {
        RpcLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            timeout: DEFAULT_TIMEOUT,
            max_body_bytes: MAX_REQUEST_BYTES,
        }
    }
}

/// Default of [`RpcLimits::max_connections`]: far more than local tools use, few enough that
/// the buffers they may hold ([`MAX_HEADER_BUFFER`] each) stay a few megabytes.
pub const DEFAULT_MAX_CONNECTIONS: usize = 128;
/// Default of [`RpcLimits::timeout`], bitcoind's `-rpcservertimeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The read buffer of one connection, so the largest header block hyper accepts (beyond it
/// the request gets HTTP 431). Requests carry their data in the body; 32 KiB of headers is
/// already absurd.
pub const MAX_HEADER_BUFFER: usize = 32 * 1024;
/// The most header lines in one request (beyond it: HTTP 431).
pub const MAX_HEADERS: usize = 32;

/// Why the server closed or refused a connection, the label of
/// `commons_rpc_connections_closed_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClosedLabels {
    /// `timed_out` (headers or body not sent in time), `evicted` (the oldest idle connection
    /// when the limit was reached) or `refused` (the limit reached with every connection busy).
    pub reason: String,
}

/// The RPC server's counters.
#[derive(Debug, Clone, Default)]
pub struct RpcMetrics {
    /// Connections open now.
    pub open: Gauge,
    /// Connections the server closed or refused, by reason.
    pub closed: Family<ClosedLabels, Counter>,
    /// Requests refused with HTTP 413 for a body above the limit.
    pub too_large: Counter,
}

impl RpcMetrics {
    fn closed(&self, reason: &str) {
        self.closed
            .get_or_create(&ClosedLabels {
                reason: reason.into(),
            })
            .inc();
    }

    /// Registers the counters (every reason from the start, so a rate sees a 0 first).
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "commons_rpc_connections_open",
            "RPC connections open",
            self.open.clone(),
        );
        registry.register(
            "commons_rpc_connections_closed",
            "RPC connections the server closed or refused: timed_out (headers or body not \
             sent in time), evicted (oldest idle one, at the connection limit), refused (at \
             the limit with every connection busy)",
            self.closed.clone(),
        );
        registry.register(
            "commons_rpc_requests_too_large",
            "RPC requests refused with HTTP 413, their body above the limit",
            self.too_large.clone(),
        );
        for reason in ["timed_out", "evicted", "refused"] {
            let _ = self.closed.get_or_create(&ClosedLabels {
                reason: reason.into(),
            });
        }
    }
}

/// One open connection: whether an authorised request is under way on it, and how to close
/// it from outside.
struct Connection {
    busy: bool,
    evict: Option<oneshot::Sender<()>>,
}

/// The open connections by age (ids grow), to pick the one to evict.
#[derive(Default)]
struct Connections {
    next_id: u64,
    open: BTreeMap<u64, Connection>,
}

/// What to do with a connection just accepted.
enum Admission {
    /// Serve it; `close` fires when it is evicted later.
    Serve {
        id: u64,
        close: oneshot::Receiver<()>,
    },
    /// Every connection is busy: refuse this one.
    Refuse,
}

impl Connections {
    fn admit(&mut self, max: usize, metrics: &RpcMetrics) -> Admission {
        if self.open.len() >= max {
            let oldest_idle = self
                .open
                .iter()
                .find(|(_, c)| !c.busy && c.evict.is_some())
                .map(|(id, _)| *id);
            match oldest_idle {
                Some(id) => {
                    if let Some(evict) = self.open.get_mut(&id).and_then(|c| c.evict.take()) {
                        let _ = evict.send(());
                        metrics.closed("evicted");
                    }
                }
                None => return Admission::Refuse,
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let (evict, close) = oneshot::channel();
        self.open.insert(
            id,
            Connection {
                busy: false,
                evict: Some(evict),
            },
        );
        Admission::Serve { id, close }
    }

    /// Counts the connections still open (an evicted one stays until its task has ended).
    fn len(&self) -> usize {
        self.open.len()
    }
}

/// The state the connections share.
struct Server<H> {
    handler: Arc<H>,
    cookie: Arc<Cookie>,
    limits: RpcLimits,
    metrics: RpcMetrics,
    connections: Mutex<Connections>,
}

impl<H> Server<H> {
    fn set_busy(&self, id: u64, busy: bool) {
        if let Some(c) = self
            .connections
            .lock()
            .expect("connection table lock")
            .open
            .get_mut(&id)
        {
            c.busy = busy;
        }
    }

    fn remove(&self, id: u64) {
        let mut connections = self.connections.lock().expect("connection table lock");
        connections.open.remove(&id);
        self.metrics.open.set(connections.len() as i64);
    }
}

/// Marks a connection busy while an authorised request runs on it, idle again when the
/// request ends however it ends.
struct BusyGuard<'a, H> {
    server: &'a Server<H>,
    id: u64,
}

impl<H> Drop for BusyGuard<'_, H> {
    fn drop(&mut self) {
        self.server.set_busy(self.id, false);
    }
}

async fn serve_request<H: RpcHandler>(
    server: Arc<Server<H>>,
    connection: u64,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    // Authenticate before looking at anything else, so unauthenticated clients learn
    // nothing about the server beyond that it wants credentials.
    if !server
        .cookie
        .check(request.headers().get(AUTHORIZATION).map(|v| v.as_bytes()))
    {
        let mut response = text_response(StatusCode::UNAUTHORIZED, "unauthorized\n");
        response.headers_mut().insert(
            WWW_AUTHENTICATE,
            "Basic realm=\"commonsd\"".parse().expect("static header"),
        );
        return response;
    }
    server.set_busy(connection, true);
    let _busy = BusyGuard {
        server: &server,
        id: connection,
    };
    if request.method() != Method::POST {
        let mut response = text_response(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
        response
            .headers_mut()
            .insert("allow", "POST".parse().expect("static header"));
        return response;
    }
    if request.uri().path() != "/" {
        return text_response(StatusCode::NOT_FOUND, "JSON-RPC is served at /\n");
    }
    let limit = server.limits.max_body_bytes;
    let too_large = || {
        server.metrics.too_large.inc();
        refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            INVALID_REQUEST,
            &format!(
                "the request body is larger than this node's limit of {limit} bytes \
                 (commonsd --rpc-max-body-bytes)"
            ),
        )
    };
    // A declared length above the limit is refused before a byte of the body is read.
    if request.body().size_hint().lower() > limit as u64 {
        return too_large();
    }
    let body = Limited::new(request.into_body(), limit).collect();
    let body = match tokio::time::timeout(server.limits.timeout, body).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return too_large(),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "RPC request body not read");
            return refusal(
                StatusCode::BAD_REQUEST,
                PARSE_ERROR,
                "the request body could not be read",
            );
        }
        Err(_) => {
            server.metrics.closed("timed_out");
            return refusal(
                StatusCode::REQUEST_TIMEOUT,
                INVALID_REQUEST,
                &format!(
                    "the request body was not sent within {} s (commonsd --rpc-timeout)",
                    server.limits.timeout.as_secs()
                ),
            );
        }
    };
    match handle_json(server.handler.as_ref(), &body).await {
        Some(value) => Response::builder()
            .status(StatusCode::OK)
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(value.to_string() + "\n")))
            .expect("JSON response is valid"),
        None => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Full::new(Bytes::new()))
            .expect("empty response is valid"),
    }
}

/// The answer to a connection refused because every connection is busy, written without
/// waiting (a client that does not read it just misses it).
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Connection: close\r\nRetry-After: 1\r\nContent-Length: 48\r\n\r\n\
every RPC connection is busy; try again shortly\n";

/// Serves JSON-RPC on `listener` until `shutdown` turns true; connections in progress then
/// finish on their own while no new ones are accepted.
pub async fn serve<H: RpcHandler>(
    listener: TcpListener,
    cookie: Arc<Cookie>,
    handler: Arc<H>,
    limits: RpcLimits,
    metrics: RpcMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let server = Arc::new(Server {
        handler,
        cookie,
        limits,
        metrics,
        connections: Mutex::new(Connections::default()),
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.timeout)
        .max_buf_size(MAX_HEADER_BUFFER)
        .max_headers(MAX_HEADERS);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "RPC accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = crate::stopped(&mut shutdown) => break,
        };
        let admission = {
            let mut connections = server.connections.lock().expect("connection table lock");
            let admission = connections.admit(limits.max_connections, &server.metrics);
            server.metrics.open.set(connections.len() as i64);
            admission
        };
        let (id, close) = match admission {
            Admission::Serve { id, close } => (id, close),
            Admission::Refuse => {
                server.metrics.closed("refused");
                tracing::debug!(%peer, "RPC connection refused: every connection is busy");
                let _ = stream.try_write(BUSY_RESPONSE);
                continue;
            }
        };
        let server = server.clone();
        let http = http.clone();
        tokio::spawn(async move {
            let service = {
                let server = server.clone();
                service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(serve_request(server, id, req).await) }
                })
            };
            let connection = http.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                served = connection => if let Err(e) = served {
                    if e.is_timeout() {
                        server.metrics.closed("timed_out");
                    }
                    tracing::debug!(%peer, error = %e, "RPC connection ended with an error");
                },
                _ = close => tracing::debug!(%peer, "idle RPC connection closed for a new one"),
            }
            server.remove(id);
        });
    }
}

/// Binds the RPC address, failing with a one-line message.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen for RPC on {addr}: {e} (is another commonsd running? see --rpc-bind)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Echo;
    impl RpcHandler for Echo {
        fn call<'a>(&'a self, method: &'a str, params: Params) -> RpcFuture<'a> {
            Box::pin(async move {
                match method {
                    "echo" => Ok(params.raw().clone()),
                    "need" => {
                        params.only(&["x"])?;
                        Ok(json!(params.required_str("x", 0)?))
                    }
                    _ => Err(RpcError::new(
                        METHOD_NOT_FOUND,
                        format!("unknown method {method}"),
                    )),
                }
            })
        }
    }

    async fn run(body: &str) -> Option<Value> {
        handle_json(&Echo, body.as_bytes()).await
    }

    #[tokio::test]
    async fn envelope_errors() {
        let r = run("{nope").await.unwrap();
        assert_eq!(r["error"]["code"], PARSE_ERROR);
        assert_eq!(r["id"], Value::Null);
        let r = run(r#"{"jsonrpc":"2.0","id":1,"method":"what"}"#)
            .await
            .unwrap();
        assert_eq!(r["error"]["code"], METHOD_NOT_FOUND);
        assert_eq!(r["id"], 1);
        let r = run(r#"{"jsonrpc":"2.0","id":"a","method":"need","params":{}}"#)
            .await
            .unwrap();
        assert_eq!(r["error"]["code"], INVALID_PARAMS);
        let r = run(r#"{"jsonrpc":"2.0","id":"a","method":"need","params":{"y":"1"}}"#)
            .await
            .unwrap();
        assert_eq!(r["error"]["code"], INVALID_PARAMS);
        let r = run(r#"{"jsonrpc":"2.0","id":"a","method":"need","params":3}"#)
            .await
            .unwrap();
        assert_eq!(r["error"]["code"], INVALID_PARAMS);
        let r = run(r#"{"jsonrpc":"2.0","id":2,"method":"need","params":["v"]}"#)
            .await
            .unwrap();
        assert_eq!(r["result"], "v");
        let r = run(r#"[1]"#).await.unwrap();
        assert_eq!(r[0]["error"]["code"], INVALID_REQUEST);
        let r = run(r#"{"jsonrpc":"1.5","id":3,"method":"echo"}"#)
            .await
            .unwrap();
        assert_eq!(r["error"]["code"], INVALID_REQUEST);
        let r = run(r#"{"id":3,"method":7}"#).await.unwrap();
        assert_eq!(r["error"]["code"], INVALID_REQUEST);
        // A notification gets no answer; a batch answers its requests in order.
        assert!(run(r#"{"jsonrpc":"2.0","method":"echo"}"#).await.is_none());
        let r = run(r#"[{"jsonrpc":"2.0","id":1,"method":"echo","params":[1]},{"jsonrpc":"2.0","method":"echo"},{"jsonrpc":"2.0","id":2,"method":"x"}]"#)
            .await
            .unwrap();
        assert_eq!(r.as_array().unwrap().len(), 2);
        assert_eq!(r[0]["result"], json!([1]));
        assert_eq!(r[1]["error"]["code"], METHOD_NOT_FOUND);
    }

    /// At the limit a new connection evicts the oldest idle one; busy ones are kept, and
    /// with every one busy the new connection is refused.
    #[test]
    fn the_oldest_idle_connection_makes_room() {
        let metrics = RpcMetrics::default();
        let mut table = Connections::default();
        let mut closes = Vec::new();
        for _ in 0..3 {
            match table.admit(3, &metrics) {
                Admission::Serve { id, close } => closes.push((id, close)),
                Admission::Refuse => panic!("room for three"),
            }
        }
        // The oldest is busy: the second is evicted for the fourth.
        table.open.get_mut(&closes[0].0).unwrap().busy = true;
        assert!(matches!(
            table.admit(3, &metrics),
            Admission::Serve { id: 3, .. }
        ));
        assert!(closes[1].1.try_recv().is_ok());
        assert!(closes[0].1.try_recv().is_err());
        assert!(closes[2].1.try_recv().is_err());
        // Once the evicted one is gone, and every other is busy, a new one is refused.
        table.open.remove(&closes[1].0);
        for c in table.open.values_mut() {
            c.busy = true;
        }
        assert!(matches!(table.admit(3, &metrics), Admission::Refuse));
        let evicted = metrics
            .closed
            .get_or_create(&ClosedLabels {
                reason: "evicted".into(),
            })
            .get();
        assert_eq!(evicted, 1);
    }

    /// Answers `big` with a string of 3 MiB and counts the calls it runs.
    struct Big {
        calls: AtomicUsize,
    }
    impl RpcHandler for Big {
        fn call<'a>(&'a self, _method: &'a str, _params: Params) -> RpcFuture<'a> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(json!("x".repeat(3 << 20))) })
        }
    }

    /// Regression (issue 13, known finding): a 1 MiB body of `[1,1,...]` was answered with
    /// one error per element, a 50 MB response. Now the batch is refused as a whole.
    #[tokio::test]
    async fn a_batch_too_long_is_refused_with_one_small_error() {
        let mut body = "[1".to_string();
        while body.len() < MAX_REQUEST_BYTES - 2 {
            body.push_str(",1");
        }
        body.push(']');
        let handler = Big {
            calls: AtomicUsize::new(0),
        };
        let r = handle_json(&handler, body.as_bytes()).await.unwrap();
        assert_eq!(r["error"]["code"], INVALID_REQUEST);
        assert_eq!(r["id"], Value::Null);
        let message = r["error"]["message"].as_str().unwrap();
        assert!(message.contains("at most 100 per batch"), "{message}");
        assert!(r.to_string().len() < 1024);

        // The same with real requests: none of them runs.
        let call = r#"{"jsonrpc":"2.0","id":1,"method":"big"}"#;
        let body = format!("[{}]", vec![call; MAX_BATCH_LEN + 1].join(","));
        let r = handle_json(&handler, body.as_bytes()).await.unwrap();
        assert_eq!(r["error"]["code"], INVALID_REQUEST);
        assert_eq!(handler.calls.load(Ordering::SeqCst), 0);

        // A batch of exactly the limit is answered call by call.
        let body = format!("[{}]", vec!["1"; MAX_BATCH_LEN].join(","));
        let r = run(&body).await.unwrap();
        assert_eq!(r.as_array().unwrap().len(), MAX_BATCH_LEN);
    }

    /// Once a batch's answers reach the byte limit, its other calls are not run and get a
    /// short error each (notifications get nothing).
    #[tokio::test]
    async fn a_batch_stops_running_calls_once_its_answers_are_large() {
        let handler = Big {
            calls: AtomicUsize::new(0),
        };
        let calls: Vec<String> = (0..6)
            .map(|i| format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"big"}}"#))
            .chain([r#"{"jsonrpc":"2.0","method":"big"}"#.to_string()])
            .collect();
        let body = format!("[{}]", calls.join(","));
        let r = handle_json(&handler, body.as_bytes()).await.unwrap();
        let answers = r.as_array().unwrap();
        // 3 MiB each: the third crosses 8 MiB, the other three are not run.
        assert_eq!(handler.calls.load(Ordering::SeqCst), 3);
        assert_eq!(answers.len(), 6);
        for (i, answer) in answers.iter().enumerate() {
            assert_eq!(answer["id"], i);
            if i < 3 {
                assert_eq!(answer["result"].as_str().unwrap().len(), 3 << 20);
            } else {
                assert_eq!(
                    answer["error"]["code"],
                    commons_rpc::code::RESPONSE_TOO_LARGE
                );
            }
        }
        let size = r.to_string().len();
        assert!(size < MAX_BATCH_RESPONSE_BYTES + (3 << 20) + 4096, "{size}");
    }
}
