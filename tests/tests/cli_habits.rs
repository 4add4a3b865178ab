//! `commons-cli` finds a real `commonsd` the way `bitcoin-cli` finds `bitcoind`, and better:
//! from the daemon's config file, its `COMMONS_*` variables, `--conf`, and the RPC address
//! the daemon records beside its cookie, so a node on a port nobody chose (`--rpc-bind
//! IP:0`) is found from its data directory alone; `help`, `call`, `deployments` and `stop`
//! against it; and bad input gives one line and a non-zero exit. Its `/metrics` shows the
//! build, the process, the epoch and the node's own standing.

use std::os::unix::fs::PermissionsExt;
use std::process::Output;

use commons_e2e::{NodeSpec, START_TIMEOUT, TestNode, cli_env, now, phases, regtest_proposal};
use commons_rpc::{DeploymentInfo, Method, NoParams, method};
use serde_json::{Value, json};

const IP: &str = "127.0.0.170";

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `commons-cli ARGS` with HOME in `home` and `env`; asserts the exit code; gives
/// standard output and error.
fn expect(home: &str, env: &[(&str, &str)], args: &[&str], code: i32) -> (String, String) {
    let mut all = vec![("HOME", home)];
    all.extend_from_slice(env);
    let out = cli_env(args, &all);
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "commons-cli {args:?} with {env:?}:\n--- stdout\n{stdout}--- stderr\n{stderr}"
    );
    if code != 0 {
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "not one line: {stderr}"
        );
        assert!(stderr.starts_with("error: "), "{stderr}");
    }
    (stdout, stderr)
}

#[test]
fn cli_finds_and_drives_the_node_like_bitcoin_cli() {
    let phase = phases("cli_habits");
    let mut node = TestNode::start(
        "habits",
        NodeSpec {
            ip: IP.into(),
            bootstrap: vec![],
            measurer: None,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let home = tempfile::tempdir().unwrap();
    let home = home.path().to_str().unwrap().to_string();
    let base = node.base.to_str().unwrap().to_string();
    let datadir = node.datadir();

    phase("the daemon records its RPC address beside the cookie, mode 0600");
    let address_file = datadir.join(".rpc-address");
    let recorded = std::fs::read_to_string(&address_file).unwrap();
    assert_eq!(recorded.trim(), node.rpc_addr.to_string());
    let mode = std::fs::metadata(&address_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    phase("found from the data directory alone, on a port the kernel picked");
    let (out, _) = expect(
        &home,
        &[],
        &["--datadir", &base, "--network", "regtest", "getinfo"],
        0,
    );
    assert!(out.contains("regtest"), "{out}");

    phase("the default network is the daemon's: mainnet, where no node runs here");
    let (_, err) = expect(&home, &[], &["--datadir", &base, "getinfo"], 3);
    assert!(err.contains(".cookie"), "{err}");

    phase("the network from the daemon's config file");
    let conf = node.base.join("commonsd.toml");
    std::fs::write(&conf, "network = \"regtest\"\n").unwrap();
    let (out, _) = expect(&home, &[], &["--datadir", &base, "getinfo"], 0);
    assert!(out.contains("regtest"), "{out}");

    phase("the daemon's environment: COMMONS_DATADIR, COMMONS_NETWORK");
    std::fs::remove_file(&conf).unwrap();
    let env = [("COMMONS_DATADIR", base.as_str())];
    expect(&home, &env, &["getinfo"], 3);
    let env = [
        ("COMMONS_DATADIR", base.as_str()),
        ("COMMONS_NETWORK", "regtest"),
    ];
    expect(&home, &env, &["getinfo"], 0);

    phase("--conf and COMMONS_CONF name a config file elsewhere");
    let etc = tempfile::tempdir().unwrap();
    let other = etc.path().join("node.toml");
    std::fs::write(&other, "network = \"regtest\"\n").unwrap();
    let other = other.to_str().unwrap();
    expect(
        &home,
        &[],
        &["--datadir", &base, "--conf", other, "getinfo"],
        0,
    );
    expect(
        &home,
        &[("COMMONS_CONF", other)],
        &["--datadir", &base, "getinfo"],
        0,
    );

    phase("bad config files and options: one line, exit 2");
    let missing = etc.path().join("missing.toml");
    let (_, err) = expect(
        &home,
        &[],
        &[
            "--datadir",
            &base,
            "--conf",
            missing.to_str().unwrap(),
            "getinfo",
        ],
        2,
    );
    assert!(err.contains("missing.toml"), "{err}");
    std::fs::write(&conf, "rpc-bnd = \"127.0.0.1:1\"\n").unwrap();
    let (_, err) = expect(&home, &[], &["--datadir", &base, "getinfo"], 2);
    assert!(
        err.contains("commonsd.toml") && err.contains("rpc-bnd"),
        "{err}"
    );
    std::fs::write(&conf, "network = \"regtest\"\n").unwrap();
    let (_, err) = expect(
        &home,
        &[("COMMONS_RPC_BIND", "nonsense")],
        &["--datadir", &base, "getinfo"],
        2,
    );
    assert!(err.contains("COMMONS_RPC_BIND"), "{err}");

    phase("help lists every method with its parameters, without a node");
    let (out, _) = expect(&home, &[], &["help"], 0);
    for name in method::NAMES {
        assert!(
            out.lines()
                .any(|l| l.trim().split(' ').next() == Some(name)),
            "{name} missing from help:\n{out}"
        );
    }
    assert!(out.contains("signal proposal choice"), "{out}");
    let (out, _) = expect(&home, &[], &["help", "gettally"], 0);
    assert!(
        out.starts_with("gettally id\n") && out.contains("required"),
        "{out}"
    );
    expect(&home, &[], &["help", "gettaly"], 2);

    phase("call: any method, raw answer; bad parameters exit 2");
    let on = |args: &[&str], code| {
        let mut all = vec!["--datadir", base.as_str()];
        all.extend_from_slice(args);
        expect(&home, &[], &all, code)
    };
    let (out, _) = on(&["call", "getinfo"], 0);
    let info: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["network"]["name"], "regtest");
    let (out, _) = on(&["call", "help", "method=stop"], 0);
    assert!(out.starts_with("stop\n"), "{out}");
    let (out, _) = on(&["call", "help", r#"{"method": "getuptime"}"#], 0);
    assert!(out.starts_with("getuptime [key]"), "{out}");
    let (_, err) = on(&["call", "gettally", "id=1234"], 2);
    assert!(err.contains("64 hex"), "{err}");
    let (_, err) = on(&["call", "gettally", "{nope"], 2);
    assert!(err.contains("not valid JSON"), "{err}");
    let (_, err) = on(&["call", "getinfo", "verbose"], 2);
    assert!(err.contains("NAME=VALUE"), "{err}");
    let (_, err) = on(&["call", "getinf"], 2);
    assert!(err.contains("unknown method"), "{err}");
    let unknown = "ab".repeat(32);
    on(&["call", "gettally", &format!("id={unknown}")], 1);

    phase("the node answers every method the help table lists (stop aside, which ends it)");
    for name in method::NAMES.iter().filter(|&&n| n != method::Stop::NAME) {
        if let Err(e) = node.rpc(name, json!({})) {
            // Missing parameters are fine; an unknown method is not.
            let text = e.to_string();
            assert!(!text.contains("-32601"), "{name}: {text}");
            assert!(text.contains("-32602"), "{name}: {text}");
        }
    }

    phase("deployments: every proposal's state, time left and shares");
    let (out, _) = on(&["deployments"], 0);
    assert!(out.contains("no proposals"), "{out}");
    let start = now();
    let (id, bytes) = regtest_proposal("habits", start, start + 600, 3);
    node.rpc("submitproposal", json!({ "hex": hex::encode(bytes) }))
        .unwrap();
    let (out, _) = on(&["deployments"], 0);
    assert!(out.contains(&id) && out.contains("locked"), "{out}");
    assert!(
        out.contains("left") && out.contains("next      ready"),
        "{out}"
    );
    let (out, _) = on(&["--json", "getdeploymentinfo"], 0);
    let info: DeploymentInfo = serde_json::from_str(&out).unwrap();
    let d = &info.proposals[0];
    assert_eq!((d.id.as_str(), d.state.as_str()), (id.as_str(), "locked"));
    assert_eq!((d.lock_start, d.lock_end), (start, start + 600));
    assert!(d.lock_secs_left > 500 && d.lock_secs_left <= 600, "{d:?}");
    assert_eq!(d.next_state.as_deref(), Some("ready"));
    assert_eq!(d.next_state_at, Some(start + 600));
    let tier = commons_signaling::NetworkSpec::regtest()
        .tier(1)
        .unwrap()
        .clone();
    assert_eq!(d.tier_name, tier.name);
    assert_eq!(d.required_weight_share, tier.override_weight_share);
    assert_eq!(d.required_node_share, tier.override_node_share);
    assert!(!d.override_met);
    let typed = node
        .call::<method::GetDeploymentInfo>(&NoParams {})
        .unwrap();
    assert_eq!(typed.proposals.len(), 1);

    phase("monitoring: build info, process metrics, epoch and own standing on /metrics");
    let text = node.metrics().unwrap();
    let version = format!(
        "commons_build_info{{version=\"{}\",network=\"regtest\"}} 1",
        node.call::<method::GetInfo>(&NoParams {}).unwrap().version
    );
    assert!(
        text.lines().any(|l| l == version),
        "{version} missing:\n{text}"
    );
    let spec = commons_signaling::NetworkSpec::regtest();
    assert_eq!(
        node.metric("commons_epoch_length_seconds"),
        spec.epoch_secs as f64
    );
    let epoch = node.metric("commons_epoch");
    let boundary = node.metric("commons_epoch_boundary_timestamp_seconds");
    assert_eq!(boundary, epoch * spec.epoch_secs as f64);
    assert!((now() as f64 - boundary).abs() <= 2.0 * spec.epoch_secs as f64 + 5.0);
    // Alone, the node is attested by nobody: neither qualified nor counted.
    assert!(text.lines().any(|l| l == "commons_own_counted 0"), "{text}");
    assert!(
        text.lines().any(|l| l == "commons_own_qualified 0"),
        "{text}"
    );
    let started = node.metric("process_start_time_seconds");
    assert!(
        started > (start - 600) as f64 && started <= now() as f64 + 1.0,
        "{started}"
    );
    assert!(node.metric("process_open_fds") > 0.0);
    assert!(node.metric("process_resident_memory_bytes") > 1e6);
    assert!(
        text.lines()
            .any(|l| l.starts_with("process_cpu_seconds_total ")),
        "{text}"
    );

    phase("stop: a clean shutdown; cookie and address file gone");
    let (out, _) = on(&["stop"], 0);
    assert_eq!(out.trim(), "commonsd stopping");
    commons_e2e::wait_until(START_TIMEOUT, "commonsd to exit after stop", || {
        if node.is_running() {
            Err("still running".to_string())
        } else {
            Ok(())
        }
    });
    assert!(!datadir.join(".cookie").exists());
    assert!(!address_file.exists());
    assert!(node.log_tail(30).contains("stop requested over RPC"));
    assert!(node.log_tail(30).contains("store flushed"));
    on(&["getinfo"], 3);

    phase("a restart on another port is found again; a killed node's stale file explains itself");
    let old = node.rpc_addr;
    node.restart().unwrap_or_else(|e| panic!("{e}"));
    let (out, _) = on(&["--rpc-wait", "30", "getinfo"], 0);
    assert!(out.contains("regtest"), "{out}");
    let recorded = std::fs::read_to_string(&address_file).unwrap();
    assert_eq!(recorded.trim(), node.rpc_addr.to_string());
    scenario_port_note(old, node.rpc_addr);
    node.kill9();
    assert!(address_file.exists());
    let (_, err) = on(&["getinfo"], 3);
    assert!(err.contains("cannot reach commonsd"), "{err}");
}

/// Says whether the restart got another port (the kernel picks it; usually another one),
/// which is what makes the found-again check above meaningful.
fn scenario_port_note(old: std::net::SocketAddr, new: std::net::SocketAddr) {
    if old == new {
        commons_e2e::scenario("  cli_habits: the restarted node got the same RPC port again");
    }
}
