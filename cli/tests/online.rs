//! Online commands against a real `commonsd` on loopback: cookie authentication, getinfo,
//! proposal submit, signal and tally, and a clear error when no node runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use commons_signaling::spec::regtest_maintainer_key;
use commons_signaling::{BoundedString, NetworkSpec, Proposal, ProposalBody};

fn bin(name: &str) -> PathBuf {
    // Integration tests run from target/<profile>/deps; the binaries sit one level up.
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join(name)
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cli(datadir: &Path, rpc: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_commons-cli"))
        .args(["--network", "regtest", "--datadir"])
        .arg(datadir)
        .args(["--rpc-url", rpc])
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn talks_to_a_running_node_and_explains_a_stopped_one() {
    let daemon = bin("commonsd");
    if !daemon.exists() {
        panic!(
            "{} is missing: scripts/test.sh builds the binaries first",
            daemon.display()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let rpc = "127.0.0.61:28761";

    // No node yet: a one-line error and exit 3.
    let out = cli(dir.path(), rpc, &["getinfo"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not running") && err.lines().count() == 1,
        "{err}"
    );

    let _node = Daemon(
        Command::new(&daemon)
            .args(["--network", "regtest", "--datadir"])
            .arg(dir.path())
            .args(["--listen", "/ip4/127.0.0.61/tcp/0", "--rpc-bind", rpc])
            .args(["--metrics-bind", "127.0.0.61:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let info = loop {
        let out = cli(dir.path(), rpc, &["getinfo"]);
        if out.status.success() {
            break stdout(&out);
        }
        assert!(Instant::now() < deadline, "node never answered: {out:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(info.contains("regtest"), "{info}");

    // A wrong cookie is refused with exit 3.
    let bad = dir.path().join("bad.cookie");
    std::fs::write(&bad, "__cookie__:wrong").unwrap();
    let out = cli(
        dir.path(),
        rpc,
        &["--rpc-cookie", bad.to_str().unwrap(), "getinfo"],
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the cookie"));

    // A proposal signed by three regtest maintainers, submitted and signalled on.
    let spec = NetworkSpec::regtest();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut proposal = Proposal::new(ProposalBody {
        version: 1,
        tier: 1,
        title: BoundedString::new("cli online test").unwrap(),
        reference: BoundedString::new("test").unwrap(),
        lock_start: now,
        lock_end: now + 600,
    });
    for i in 0..3 {
        proposal
            .add_signature(&regtest_maintainer_key(i), &spec.network_id())
            .unwrap();
    }
    let id = proposal.id(&spec.network_id()).to_hex();
    let file = dir.path().join("proposal.cbor");
    std::fs::write(&file, proposal.encode()).unwrap();
    let out = cli(
        dir.path(),
        rpc,
        &["proposal", "submit", file.to_str().unwrap()],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains(&id));

    let out = cli(dir.path(), rpc, &["signal", &id, "override"]);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("sequence 1"), "{}", stdout(&out));

    let out = cli(dir.path(), rpc, &["--json", "tally", &id]);
    assert!(out.status.success(), "{out:?}");
    let tally: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tally["signers"], 1);
    assert_eq!(tally["id"], id);

    let out = cli(dir.path(), rpc, &["proposals"]);
    assert!(stdout(&out).contains("cli online test"), "{}", stdout(&out));

    let unknown = "00".repeat(32);
    let out = cli(dir.path(), rpc, &["tally", &unknown]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}
