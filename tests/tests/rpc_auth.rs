//! Scenario 1: one daemon; JSON-RPC needs the cookie, `commons-cli --datadir DIR getinfo`
//! uses it, a clean stop removes it, and the CLI then fails with one line.

use std::time::Duration;

use commons_e2e::{NodeSpec, TestNode, basic_auth, http, scenario, wait_until};
use commons_rpc::{NoParams, NodeInfo, method};
use serde_json::Value;

const GETINFO: &str = r#"{"jsonrpc":"2.0","id":1,"method":"getinfo"}"#;

#[test]
fn rpc_requires_the_cookie() {
    scenario("scenario 1: RPC cookie authentication on one commonsd (127.0.0.2)");
    let mut node = TestNode::start(
        "solo",
        NodeSpec {
            ip: "127.0.0.2".into(),
            bootstrap: vec![],
            measurer: None,
        },
    )
    .expect("commonsd starts");

    // No credentials, wrong credentials, and a wrong password for the right user: 401.
    let r = http(node.rpc_addr, "POST", "/", None, GETINFO).unwrap();
    assert_eq!(r.status, 401, "without a cookie: {r:?}");
    let r = http(
        node.rpc_addr,
        "POST",
        "/",
        Some(&basic_auth("__cookie__:wrong")),
        GETINFO,
    )
    .unwrap();
    assert_eq!(r.status, 401, "with a wrong cookie: {r:?}");
    let cookie = node.cookie().unwrap();
    assert!(cookie.starts_with("__cookie__:"), "{cookie}");
    let mut tampered = cookie.clone();
    let last = if tampered.ends_with('0') { '1' } else { '0' };
    tampered.pop();
    tampered.push(last);
    let r = http(
        node.rpc_addr,
        "POST",
        "/",
        Some(&basic_auth(&tampered)),
        GETINFO,
    )
    .unwrap();
    assert_eq!(r.status, 401, "with a tampered cookie: {r:?}");
    assert!(
        !r.body.contains("regtest"),
        "a 401 tells nothing about the node: {r:?}"
    );

    // With the cookie: getinfo answers.
    let r = http(
        node.rpc_addr,
        "POST",
        "/",
        Some(&basic_auth(&cookie)),
        GETINFO,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["id"], 1, "{v}");
    assert_eq!(v["result"]["network"]["name"], "regtest", "{v}");
    let info = node.call::<method::GetInfo>(&NoParams {}).unwrap();
    assert!(
        info.listen
            .iter()
            .any(|a| a.contains("/ip4/127.0.0.2/tcp/")),
        "{info:?}"
    );

    // commons-cli finds the cookie from --datadir.
    let human = node.cli_ok(&["getinfo"]);
    assert!(human.contains("regtest"), "{human}");
    let json: NodeInfo = serde_json::from_str(&node.cli_ok(&["--json", "getinfo"])).unwrap();
    assert_eq!(json.network.name, "regtest", "{json:?}");
    assert_eq!(json.public_key, info.public_key, "{json:?}");

    // A clean stop (SIGTERM) exits 0 and removes the cookie; the RPC port is closed.
    let status = node.stop().unwrap();
    assert!(
        status.success(),
        "commonsd exited with {status}: {}",
        node.log_tail(20)
    );
    assert!(
        !node.datadir().join(".cookie").exists(),
        "cookie left behind"
    );
    assert!(
        http(
            node.rpc_addr,
            "POST",
            "/",
            Some(&basic_auth(&cookie)),
            GETINFO
        )
        .is_err()
    );

    // commons-cli against the stopped daemon: one line on stderr, a non-zero exit, both
    // without the cookie file (removed) and with a copy of it (connection refused).
    let copy = node.base.join("cookie-copy");
    std::fs::write(&copy, &cookie).unwrap();
    for args in [
        vec!["getinfo"],
        vec!["--rpc-cookie", copy.to_str().unwrap(), "getinfo"],
    ] {
        let out = node.cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{args:?} on a stopped node succeeded: {out:?}"
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: not one line: {err:?}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }

    // A restart writes a new cookie; the old one no longer works.
    node.restart().unwrap();
    let fresh = node.cookie().unwrap();
    assert_ne!(fresh, cookie, "the cookie changes at every start");
    let r = http(
        node.rpc_addr,
        "POST",
        "/",
        Some(&basic_auth(&cookie)),
        GETINFO,
    )
    .unwrap();
    assert_eq!(r.status, 401, "old cookie after a restart: {r:?}");
    wait_until(Duration::from_secs(30), "getinfo after a restart", || {
        node.call::<method::GetInfo>(&NoParams {})
            .map_err(|e| e.to_string())
    });
}
