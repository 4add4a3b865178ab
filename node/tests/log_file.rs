//! `commonsd --log-file`: the log goes to a file in the data directory, SIGHUP reopens it
//! after logrotate moved it (the node keeps running and writes to the fresh file), SIGTERM
//! still shuts down cleanly; without a log file SIGHUP no longer kills the node. Real
//! processes, signals sent with `kill`, every wait bounded.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn start(datadir: &Path, ip: &str, log_file: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_commonsd"));
    for var in ["COMMONS_DATADIR", "COMMONS_CONF", "COMMONS_NETWORK"] {
        cmd.env_remove(var);
    }
    cmd.arg("--datadir")
        .arg(datadir)
        .args(["--network", "regtest"])
        .args(["--listen", &format!("/ip4/{ip}/tcp/0")])
        .args(["--rpc-bind", &format!("{ip}:0")])
        .args(["--metrics-bind", &format!("{ip}:0")]);
    if log_file {
        cmd.arg("--log-file");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drained to the end on a thread, so the daemon never writes into a closed pipe.
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            if line.starts_with("commonsd is running") {
                let _ = tx.send(line);
            }
        }
    });
    assert!(
        rx.recv_timeout(Duration::from_secs(30)).is_ok(),
        "commonsd did not start"
    );
    child
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn sighup_reopens_the_log_file_and_sigterm_still_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(dir.path(), "127.0.0.176", true);
    let log = dir.path().join("regtest").join("commonsd.log");
    wait_for("the log file", || read(&log).contains("state restored"));

    let rotated = dir.path().join("regtest").join("commonsd.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    signal(&child, "HUP");
    wait_for("the reopened log", || {
        read(&log).contains("SIGHUP: reopened the log file")
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP stopped the node"
    );
    assert!(!read(&rotated).contains("reopened"), "{}", read(&rotated));

    signal(&child, "TERM");
    wait_for("a clean exit", || child.try_wait().unwrap().is_some());
    assert!(child.wait().unwrap().success());
    assert!(read(&log).contains("shutting down"), "{}", read(&log));
}

#[test]
fn sighup_without_a_log_file_does_not_stop_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(dir.path(), "127.0.0.177", false);
    signal(&child, "HUP");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP stopped the node"
    );
    signal(&child, "TERM");
    wait_for("a clean exit", || child.try_wait().unwrap().is_some());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no log file to reopen"), "{stderr}");
}
