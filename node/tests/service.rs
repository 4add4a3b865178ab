//! `contrib/systemd/commonsd.service` and what it relies on: systemd accepts the unit, its
//! sandbox scores well, its command line is one `commonsd` accepts, and the daemon speaks
//! the readiness protocol (`Type=notify`) and shares its cookie with its group (`--rpc-
//! cookie-perms group`) as the unit asks. Real `commonsd` processes; the systemd checks
//! skip with a printed reason where systemd-analyze is missing.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const COMMONSD: &str = env!("CARGO_BIN_EXE_commonsd");

fn contrib(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib/systemd")
        .join(file)
}

/// The unit with `ExecStart` pointing at the binary under test (systemd-analyze checks
/// that the program exists).
fn unit_for_this_build(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(contrib("commonsd.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/commonsd "));
    let path = dir.join("commonsd.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/commonsd", COMMONSD)).unwrap();
    path
}

fn systemd_analyze() -> bool {
    let present = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        eprintln!("skipping: systemd-analyze is not installed (Debian package systemd)");
    }
    present
}

#[test]
fn systemd_accepts_the_unit() {
    if !systemd_analyze() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    // --man=no: the man page named by Documentation= is installed by the operator guide,
    // not on the machine running the tests.
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        !stderr.contains("commonsd.service"),
        "systemd-analyze has remarks on the unit: {stderr}"
    );
}

#[test]
fn the_unit_is_sandboxed() {
    if !systemd_analyze() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    // The exposure score runs from 0 (locked down) to 10 (unprotected); --threshold is in
    // tenths and makes the command fail above it. The unit scores 1.4 ("OK"); a change that
    // drops a protection pushes it over 2.5.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager", "--threshold=25"])
        .arg(&unit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exposure above 2.5:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Overall exposure level"), "{stdout}");
}

/// `ExecStart`'s arguments, continuation lines joined.
fn exec_start_args() -> Vec<String> {
    let unit = std::fs::read_to_string(contrib("commonsd.service")).unwrap();
    let joined = unit.replace("\\\n", " ");
    let line = joined
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    line.split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect()
}

#[test]
fn the_units_command_line_and_the_example_config_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("commonsd.toml");
    std::fs::copy(contrib("commonsd.toml"), &conf).unwrap();
    let state = dir.path().join("state");
    let args: Vec<String> = exec_start_args()
        .into_iter()
        .map(|a| match a.as_str() {
            "/etc/commons-signal/commonsd.toml" => conf.display().to_string(),
            "/var/lib/commonsd" => state.display().to_string(),
            _ => a,
        })
        .collect();
    assert!(args.contains(&"--rpc-cookie-perms".to_string()), "{args:?}");
    let out = Command::new(COMMONSD)
        .args(&args)
        .arg("--print-config")
        .env_remove("COMMONS_DATADIR")
        .env_remove("COMMONS_CONF")
        .env_remove("COMMONS_NETWORK")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "commonsd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["network_name"], "mainnet");
    assert_eq!(printed["config"]["rpc_cookie_perms"], "group");
    assert_eq!(printed["config"]["datadir"], state.display().to_string());
}

#[test]
fn a_bad_cookie_permission_is_a_clear_error() {
    let out = Command::new(COMMONSD)
        .args(["--rpc-cookie-perms", "everyone", "--print-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not one of owner, group, all"), "{stderr}");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn tells_systemd_when_ready_and_stopping_and_shares_the_cookie_with_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("notify");
    let receiver = UnixDatagram::bind(&socket).unwrap();
    receiver
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let base = dir.path().join("base");
    let ip = "127.0.0.178";
    let mut child = Command::new(COMMONSD)
        .arg("--datadir")
        .arg(&base)
        .args(["--network", "regtest", "--rpc-cookie-perms", "group"])
        .args(["--listen", &format!("/ip4/{ip}/tcp/0")])
        .args(["--rpc-bind", &format!("{ip}:0")])
        .args(["--metrics-bind", &format!("{ip}:0")])
        .env("NOTIFY_SOCKET", &socket)
        .env_remove("COMMONS_DATADIR")
        .env_remove("COMMONS_CONF")
        .env_remove("COMMONS_NETWORK")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let mut buf = [0u8; 512];
    let n = receiver.recv(&mut buf).expect("READY=1 within 30 s");
    let ready = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        ready.starts_with("READY=1\nSTATUS=running on regtest"),
        "{ready}"
    );
    // Ready means reachable: the cookie and the RPC address are there, group-readable,
    // in directories the group may pass through but not list.
    let datadir = base.join("regtest");
    assert_eq!(mode(&datadir.join(".cookie")), 0o640);
    assert_eq!(mode(&datadir.join(".rpc-address")), 0o640);
    assert_eq!(mode(&datadir), 0o710);
    assert_eq!(mode(&base), 0o710);
    let key_mode = mode(&datadir.join("node.key"));
    assert_eq!(
        key_mode & 0o077,
        0,
        "node.key must stay private: {key_mode:o}"
    );

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let n = receiver.recv(&mut buf).expect("STOPPING=1 at shutdown");
    assert!(buf[..n].starts_with(b"STOPPING=1"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "commonsd did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
}

#[test]
fn warns_when_the_group_cannot_reach_the_cookie() {
    let dir = tempfile::tempdir().unwrap();
    // An existing base directory of mode 0700, as `mkdir` under a strict umask leaves it.
    let base = dir.path().join("base");
    std::fs::create_dir(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
    let ip = "127.0.0.179";
    let mut child = Command::new(COMMONSD)
        .arg("--datadir")
        .arg(&base)
        .args(["--network", "regtest", "--rpc-cookie-perms", "group"])
        .args(["--listen", &format!("/ip4/{ip}/tcp/0")])
        .args(["--rpc-bind", &format!("{ip}:0")])
        .args(["--metrics-bind", &format!("{ip}:0")])
        .env_remove("COMMONS_DATADIR")
        .env_remove("COMMONS_CONF")
        .env_remove("COMMONS_NETWORK")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let cookie = base.join("regtest").join(".cookie");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cookie.exists() {
        assert!(Instant::now() < deadline, "commonsd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "commonsd did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{} has mode 0700", base.display()))
            && stderr.contains(&format!("chmod g+x {}", base.display())),
        "{stderr}"
    );
    assert_eq!(mode(&base), 0o700, "an existing directory keeps its mode");
}
