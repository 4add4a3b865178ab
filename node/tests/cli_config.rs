//! The `commonsd` binary's configuration: flags beat environment beat the config file beat
//! defaults, and bad input is one line and a non-zero exit.

use std::process::Command;

use serde_json::Value;

fn commonsd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_commonsd"));
    // The test runner's own environment must not leak settings in.
    for var in [
        "COMMONS_DATADIR",
        "COMMONS_CONF",
        "COMMONS_NETWORK",
        "COMMONS_LISTEN",
        "COMMONS_BOOTSTRAP",
        "COMMONS_RPC_BIND",
        "COMMONS_METRICS_BIND",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn resolved(cmd: &mut Command) -> Value {
    let out = cmd.arg("--print-config").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn precedence() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    std::fs::write(
        dir.path().join("commonsd.toml"),
        "network = \"regtest\"\nrpc-bind = \"127.0.0.1:1111\"\nmetrics-bind = \"127.0.0.1:1112\"\n",
    )
    .unwrap();

    let v = resolved(commonsd().args(["--datadir", d]));
    assert_eq!(v["network_name"], "regtest");
    assert_eq!(v["config"]["rpc_bind"], "127.0.0.1:1111");
    assert_eq!(v["config"]["metrics_bind"], "127.0.0.1:1112");
    assert_eq!(
        v["config"]["datadir"],
        dir.path().join("regtest").to_str().unwrap()
    );
    assert_eq!(v["config"]["listen"][0], "/ip4/0.0.0.0/tcp/28733");

    // The environment beats the file.
    let v = resolved(
        commonsd()
            .args(["--datadir", d])
            .env("COMMONS_RPC_BIND", "127.0.0.1:2222"),
    );
    assert_eq!(v["config"]["rpc_bind"], "127.0.0.1:2222");
    assert_eq!(v["config"]["metrics_bind"], "127.0.0.1:1112");

    // A flag beats the environment.
    let v = resolved(
        commonsd()
            .args(["--datadir", d, "--rpc-bind", "127.0.0.1:3333"])
            .env("COMMONS_RPC_BIND", "127.0.0.1:2222")
            .env("COMMONS_NETWORK", "testnet")
            .env(
                "COMMONS_BOOTSTRAP",
                "/ip4/127.0.0.2/tcp/1,/ip4/127.0.0.3/tcp/2",
            ),
    );
    assert_eq!(v["config"]["rpc_bind"], "127.0.0.1:3333");
    assert_eq!(v["network_name"], "testnet");
    assert_eq!(v["config"]["bootstrap"].as_array().unwrap().len(), 2);

    // The datadir itself can come from the environment.
    let v = resolved(commonsd().env("COMMONS_DATADIR", d));
    assert_eq!(v["network_name"], "regtest");

    // A config file elsewhere (`--conf`, `COMMONS_CONF`) replaces the one in the datadir.
    let etc = tempfile::tempdir().unwrap();
    let other = etc.path().join("node.toml");
    std::fs::write(
        &other,
        "network = \"testnet\"\nrpc-bind = \"127.0.0.1:4444\"\n",
    )
    .unwrap();
    let o = other.to_str().unwrap();
    let v = resolved(commonsd().args(["--datadir", d, "--conf", o]));
    assert_eq!(v["network_name"], "testnet");
    assert_eq!(v["config"]["rpc_bind"], "127.0.0.1:4444");
    let v = resolved(commonsd().args(["--datadir", d]).env("COMMONS_CONF", o));
    assert_eq!(v["network_name"], "testnet");
}

fn fails(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    err
}

#[test]
fn bad_input_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let e = fails(commonsd().args(["--datadir", d, "--frobnicate"]));
    assert!(e.contains("--frobnicate"), "{e}");
    let e = fails(commonsd().args(["--datadir", d, "--listen", "not-an-addr"]));
    assert!(e.contains("--listen"), "{e}");
    let e = fails(commonsd().args(["--datadir", d, "--network", "moon"]));
    assert!(e.contains("moon"), "{e}");
    std::fs::write(dir.path().join("commonsd.toml"), "rpc-bind = [").unwrap();
    let e = fails(commonsd().args(["--datadir", d]));
    assert!(e.contains("commonsd.toml"), "{e}");
    let e = fails(commonsd().args(["--datadir", d, "--conf", "/nonexistent/commons.toml"]));
    assert!(e.contains("/nonexistent/commons.toml"), "{e}");
}
