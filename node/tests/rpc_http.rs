//! The JSON-RPC server over real HTTP on loopback: cookie authentication and error codes.

mod common;

use std::sync::Arc;

use commons_node::cookie::Cookie;
use commons_node::node::Node;
use commons_node::rpc::{self, Params, RpcHandler};
use commons_node::store::Store;
use commons_rpc::{method, parse_response};
use commons_signaling::{NetworkSpec, SecretKey};
use serde_json::{Value, json};

struct Server {
    addr: std::net::SocketAddr,
    cookie: Arc<Cookie>,
    node: Arc<Node>,
    _stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
    let node = Arc::new(
        Node::new(
            NetworkSpec::regtest(),
            SecretKey::generate(),
            store,
            None,
            commons_node::node::system_clock(),
        )
        .unwrap(),
    );
    let cookie =
        Arc::new(Cookie::create(dir.path(), commons_node::cookie::CookiePerms::Owner).unwrap());
    let listener = rpc::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(rpc::serve(
        listener,
        cookie.clone(),
        node.clone(),
        rpc::RpcLimits::default(),
        rpc::RpcMetrics::default(),
        stop_rx,
    ));
    Server {
        addr,
        cookie,
        node,
        _stop: stop,
        _dir: dir,
    }
}

#[tokio::test]
async fn cookie_authentication() {
    let s = start().await;
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"getinfo"}"#;
    let (status, _) = common::post(s.addr, None, body).await;
    assert_eq!(status, 401);
    let (status, _) = common::post(s.addr, Some("Basic X19jb29raWVfXzp3cm9uZw=="), body).await;
    assert_eq!(status, 401);
    let (status, _) = common::post(s.addr, Some("Bearer nonsense"), body).await;
    assert_eq!(status, 401);
    let auth = s.cookie.authorization_header();
    let (status, text) = common::post(s.addr, Some(&auth), body).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["id"], 1);
    let info = parse_response::<method::GetInfo>(v["result"].clone()).unwrap();
    assert_eq!(info.network.name, "regtest");
    assert_eq!(info.public_key, s.node.public_key().to_hex());
    // The cookie file holds exactly the credentials.
    let file = std::fs::read_to_string(s.cookie.path()).unwrap();
    assert_eq!(file, s.cookie.credentials());
    // Only POST / is served.
    let (status, _) = common::request(s.addr, "GET", "/", Some(&auth), "").await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn error_codes_over_http() {
    let s = start().await;
    let auth = s.cookie.authorization_header();
    let call = |body: &'static str| {
        let auth = auth.clone();
        async move {
            let (status, text) = common::post(s.addr, Some(&auth), body).await;
            assert_eq!(status, 200, "{text}");
            serde_json::from_str::<Value>(&text).unwrap()
        }
    };
    assert_eq!(call("{not json").await["error"]["code"], rpc::PARSE_ERROR);
    assert_eq!(
        call(r#"{"jsonrpc":"2.0","id":1,"method":"nope"}"#).await["error"]["code"],
        rpc::METHOD_NOT_FOUND
    );
    assert_eq!(
        call(r#"{"jsonrpc":"2.0","id":1,"method":"gettally"}"#).await["error"]["code"],
        rpc::INVALID_PARAMS
    );
    assert_eq!(
        call(r#"{"jsonrpc":"2.0","id":1,"method":"gettally","params":{"id":"zz"}}"#).await["error"]
            ["code"],
        rpc::INVALID_PARAMS
    );
    assert_eq!(
        call(r#"{"jsonrpc":"2.0","id":1,"method":"getinfo","params":{"x":1}}"#).await["error"]["code"],
        rpc::INVALID_PARAMS
    );
    assert_eq!(
        call(r#"{"jsonrpc":"2.0","id":1,"method":"signal","params":{"proposal":"00"}}"#).await["error"]
            ["code"],
        rpc::INVALID_PARAMS
    );
    assert_eq!(
        call(r#"{"jsonrpc":"2.0","id":1,"method":"getuptime","params":["nothex"]}"#).await["error"]
            ["code"],
        rpc::INVALID_PARAMS
    );
    assert_eq!(
        call(r#"{"jsonrpc":"2.0","id":1,"method":"submitproposal","params":["abcd"]}"#).await["error"]
            ["code"],
        rpc::INVALID_PARAMS
    );
    assert_eq!(call(r#"[]"#).await["error"]["code"], rpc::INVALID_REQUEST);
}

#[tokio::test]
async fn methods_without_network() {
    let s = start().await;
    let node: &dyn RpcHandler = s.node.as_ref();
    let spec = NetworkSpec::regtest();
    let now = common::now();
    let zero = "00".repeat(32);
    let e = node
        .call("gettally", Params::new(json!({ "id": zero })))
        .await
        .unwrap_err();
    assert_eq!(e.code, rpc::NOT_FOUND);
    let e = node
        .call(
            "signal",
            Params::new(json!({ "proposal": zero, "choice": "support" })),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, rpc::NOT_FOUND);

    // A proposal below its tier's signature threshold is refused.
    let mut weak = common::proposal(&spec, "weak", now, 100);
    weak.signatures = Default::default();
    let e = node
        .call(
            "submitproposal",
            Params::new(json!({ "hex": hex::encode(weak.encode()) })),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, rpc::REJECTED, "{}", e.message);

    let p = common::proposal(&spec, "good", now - 1, 100);
    let r = node
        .call(
            "submitproposal",
            Params::new(json!([hex::encode(p.encode())])),
        )
        .await
        .unwrap();
    let r = parse_response::<method::SubmitProposal>(r).unwrap();
    assert!(r.new);
    assert!(!r.published);
    let id = r.id;
    let list = node
        .call("listproposals", Params::new(Value::Null))
        .await
        .unwrap();
    let list = parse_response::<method::ListProposals>(list).unwrap();
    assert_eq!(list[0].id, id);
    assert_eq!(list[0].state, "locked");
    assert_eq!(list[0].title, "good");

    let e = node
        .call(
            "signal",
            Params::new(json!({ "proposal": id, "choice": "maybe" })),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, rpc::INVALID_PARAMS);
    let r = node
        .call(
            "signal",
            Params::new(json!({ "proposal": id, "choice": "override" })),
        )
        .await
        .unwrap();
    assert_eq!(parse_response::<method::CastSignal>(r).unwrap().sequence, 1);
    let r = node
        .call("signal", Params::new(json!([id, "support"])))
        .await
        .unwrap();
    assert_eq!(parse_response::<method::CastSignal>(r).unwrap().sequence, 2);
    let t = node
        .call("gettally", Params::new(json!([id])))
        .await
        .unwrap();
    let t = parse_response::<method::GetTally>(t).unwrap();
    assert_eq!(t.signers, 1);
    assert_eq!(t.state, "locked");
    // Not qualified (no attestations): signed, but not counted.
    assert_eq!(t.uncounted_signers, 1);
    let u = node
        .call("getuptime", Params::new(Value::Null))
        .await
        .unwrap();
    let u = parse_response::<method::GetUptime>(u).unwrap();
    assert_eq!(u.key, s.node.public_key().to_hex());
    let peers = node
        .call("getpeers", Params::new(Value::Null))
        .await
        .unwrap();
    assert_eq!(parse_response::<method::GetPeers>(peers).unwrap(), []);
}
