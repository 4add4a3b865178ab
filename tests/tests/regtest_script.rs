//! The README's first command, `scripts/regtest.sh`, run as a newcomer runs it (with the
//! binaries this test was built with, instead of building): five `commonsd` on 127.0.77.x
//! qualify, two proposals are submitted, one is overridden and one becomes ready on every
//! node, the network keeps running afterwards and `scripts/regtest.sh stop` stops it.
//!
//! No other test uses 127.0.77.0/24.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use commons_e2e::{bin_dir, phases};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/regtest.sh")
}

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new("bash")
        .arg(script())
        .args(args)
        .env("COMMONS_REGTEST_DIR", dir)
        .env("COMMONS_BIN_DIR", bin_dir())
        .env_remove("COMMONS_REGTEST_NODES")
        .output()
        .expect("run scripts/regtest.sh")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Stops the network even when an assertion failed halfway.
struct Network<'a>(&'a Path);

impl Drop for Network<'_> {
    fn drop(&mut self) {
        let _ = run(self.0, &["stop"]);
    }
}

fn pids(dir: &Path) -> Vec<u32> {
    (1..=5)
        .filter_map(|i| std::fs::read_to_string(dir.join(format!("node{i}/commonsd.pid"))).ok())
        .filter_map(|p| p.trim().parse().ok())
        .collect()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[test]
fn the_readme_network_qualifies_tallies_and_decides_then_keeps_running_until_stopped() {
    let phase = phases("regtest_script");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("regtest-network");
    let _network = Network(&dir);

    phase("scripts/regtest.sh: five nodes, two proposals");
    let out = run(&dir, &[]);
    let all = text(&out);
    assert!(out.status.success(), "regtest.sh failed:\n{all}");
    for expected in [
        "5 of 5 nodes count all 5 as qualified",
        "5 of 5 nodes hold both proposals",
        "state overridden",
        "override share: weight 0.4 (needs 0.25), nodes 0.4 (needs 0.25)",
        "overridden",
        "ready",
        "scripts/regtest.sh stop",
    ] {
        assert!(all.contains(expected), "no {expected:?} in:\n{all}");
    }
    let states: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("nodes see proposal"))
        .collect();
    assert!(
        states
            .iter()
            .any(|l| l.starts_with("  5 of 5") && l.ends_with("overridden"))
            && states
                .iter()
                .any(|l| l.starts_with("  5 of 5") && l.ends_with("ready")),
        "every node must end with one proposal overridden and one ready: {states:#?}"
    );

    phase("the network keeps running: status and the cli wrapper answer");
    let running = pids(&dir);
    assert_eq!(running.len(), 5, "pid files: {running:?}");
    assert!(running.iter().all(|p| alive(*p)), "{running:?}");
    let status = run(&dir, &["status"]);
    assert!(status.status.success(), "{}", text(&status));
    assert!(
        text(&status).contains("running: node 1, node 2, node 3, node 4, node 5"),
        "{}",
        text(&status)
    );
    let info = Command::new(dir.join("cli"))
        .args(["3", "getinfo"])
        .output()
        .unwrap();
    assert!(info.status.success(), "{}", text(&info));
    assert!(
        text(&info).contains("qualified nodes    5"),
        "{}",
        text(&info)
    );

    phase("a second start refuses while the network runs");
    let again = run(&dir, &[]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("already runs"), "{}", text(&again));

    phase("stop ends every node");
    let stop = run(&dir, &["stop"]);
    assert!(stop.status.success(), "{}", text(&stop));
    assert!(text(&stop).contains("stopped 5 node(s)"), "{}", text(&stop));
    assert!(
        running.iter().all(|p| !alive(*p)),
        "still running: {running:?}"
    );
    let status = run(&dir, &["status"]);
    assert_eq!(status.status.code(), Some(3), "{}", text(&status));
}
