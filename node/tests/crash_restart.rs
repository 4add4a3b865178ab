//! The real binary: start, take a proposal and a signal over JSON-RPC, `kill -9`, start again
//! and find the same tally; then a clean SIGTERM shutdown removes the cookie. Everything
//! listens on 127.0.0.1 with ports chosen by the kernel.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use commons_rpc::{IdParams, Method, SignalParams, SubmitProposalParams, Tally, method};
use serde_json::{Value, json};

struct Running {
    child: Child,
    rpc: SocketAddr,
}

fn start(dir: &Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_commonsd"))
        .args(["--datadir", dir.to_str().unwrap(), "--network", "regtest"])
        .args([
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--rpc-bind",
            "127.0.0.1:0",
            "--metrics-bind",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("no start-up line");
    // "... JSON-RPC at http://127.0.0.1:PORT (cookie ...)"
    let rpc = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no RPC address in {line:?}"));
    assert!(line.contains("commons-cli --datadir"), "{line}");
    Running { child, rpc }
}

async fn call<M: Method>(dir: &Path, rpc: SocketAddr, params: &M::Params) -> M::Response {
    let method = M::NAME;
    let params = commons_rpc::params_json::<M>(params);
    let cookie = std::fs::read_to_string(dir.join("regtest/.cookie")).unwrap();
    let auth = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, cookie)
    );
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }).to_string();
    let (status, text) = common::post(rpc, Some(&auth), &body).await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(v.get("error").is_none(), "{method}: {v}");
    commons_rpc::parse_response::<M>(v["result"].clone()).unwrap()
}

fn signal(proposal: &str, choice: &str) -> SignalParams {
    SignalParams {
        proposal: proposal.to_string(),
        choice: choice.to_string(),
    }
}

fn wait_exit(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    for _ in 0..secs * 10 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("commonsd did not exit within {secs} s");
}

#[tokio::test]
async fn kill_9_then_restart_keeps_the_tally() {
    let dir = tempfile::tempdir().unwrap();
    let spec = commons_signaling::NetworkSpec::regtest();
    let mut node = start(dir.path());
    let p = common::proposal(&spec, "crash", common::now() - 1, 600);
    let hex = hex::encode(p.encode());
    let r =
        call::<method::SubmitProposal>(dir.path(), node.rpc, &SubmitProposalParams { hex }).await;
    let id = r.id;
    call::<method::CastSignal>(dir.path(), node.rpc, &signal(&id, "override")).await;
    call::<method::CastSignal>(dir.path(), node.rpc, &signal(&id, "oppose")).await;
    let before = call::<method::GetTally>(dir.path(), node.rpc, &IdParams::new(&id)).await;
    assert_eq!(before.signers, 1);

    node.child.kill().unwrap(); // SIGKILL: no flush, no cleanup
    node.child.wait().unwrap();
    assert!(
        dir.path().join("regtest/.cookie").exists(),
        "a killed node cannot remove its cookie"
    );

    let mut node = start(dir.path());
    let after = call::<method::GetTally>(dir.path(), node.rpc, &IdParams::new(&id)).await;
    let same = |t: &Tally| {
        (
            t.signers,
            t.choices.clone(),
            t.total_nodes,
            t.total_weight,
            t.state.clone(),
            t.tier,
        )
    };
    assert_eq!(same(&after), same(&before), "{before:?} vs {after:?}");
    // The sequence continues where it was.
    let r = call::<method::CastSignal>(dir.path(), node.rpc, &signal(&id, "support")).await;
    assert_eq!(r.sequence, 3);

    // A clean shutdown on SIGTERM removes the cookie and exits 0.
    let pid = node.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = wait_exit(&mut node.child, 20);
    assert!(status.success(), "{status}");
    assert!(!dir.path().join("regtest/.cookie").exists());
}
