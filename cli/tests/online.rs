//! Online commands against a real `commonsd` on loopback: cookie authentication, getinfo,
//! proposal submit, signal and tally, a clear error when no node runs, and the release
//! commands (publish, list, show, verify-binary).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use commons_rpc::{Release, Tally};
use commons_signaling::NetworkSpec;
use commons_signaling::spec::regtest_maintainer_key;

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

/// Starts `commonsd` on regtest, listening on `ip`, and waits until `getinfo` answers;
/// gives the daemon (stopped when dropped) and what `getinfo` printed.
fn start_daemon(datadir: &Path, ip: &str, rpc: &str) -> (Daemon, String) {
    let daemon = bin("commonsd");
    if !daemon.exists() {
        panic!(
            "{} is missing: scripts/test.sh builds the binaries first",
            daemon.display()
        );
    }
    let node = Daemon(
        Command::new(&daemon)
            .args(["--network", "regtest", "--datadir"])
            .arg(datadir)
            .args(["--listen", &format!("/ip4/{ip}/tcp/0"), "--rpc-bind", rpc])
            .args(["--metrics-bind", &format!("{ip}:0")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // --rpc-wait rides out the start: no cookie yet, then no listener yet.
    let out = cli(datadir, rpc, &["--rpc-wait", "60", "getinfo"]);
    assert!(out.status.success(), "node never answered: {out:?}");
    (node, stdout(&out))
}

#[test]
fn talks_to_a_running_node_and_explains_a_stopped_one() {
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
    // Waiting for a node that does not come gives the same answer, once the wait is over.
    let started = Instant::now();
    let out = cli(dir.path(), rpc, &["--rpc-wait", "1", "getinfo"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));

    let (_node, info) = start_daemon(dir.path(), "127.0.0.61", rpc);
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
    let proposal = commons_test_util::proposal(
        &spec.network_id(),
        1,
        "cli online test",
        now,
        now + 600,
        0..3,
    );
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
    let tally: Tally = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tally.signers, 1);
    assert_eq!(tally.id, id);

    let out = cli(dir.path(), rpc, &["proposals"]);
    assert!(stdout(&out).contains("cli online test"), "{}", stdout(&out));

    let unknown = "00".repeat(32);
    let out = cli(dir.path(), rpc, &["tally", &unknown]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

/// Runs `commons-cli` with `args`, asserting the exit code, and gives standard output.
fn cli_expect(datadir: &Path, rpc: &str, args: &[&str], code: i32) -> (String, String) {
    let out = cli(datadir, rpc, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "commons-cli {args:?}\n--- stdout\n{}--- stderr\n{stderr}",
        stdout(&out)
    );
    (stdout(&out), stderr)
}

#[test]
fn a_release_is_published_listed_shown_and_its_binary_verified() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let rpc = "127.0.0.140:28840";
    let (_node, _) = start_daemon(root, "127.0.0.140", rpc);
    let path = |name: &str| root.join(name).to_str().unwrap().to_string();

    // Two artifacts; the binary spans two 1 MiB chunks so chunking is exercised.
    std::fs::create_dir(root.join("dist")).unwrap();
    let binary: Vec<u8> = (0..1_500_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(root.join("dist/commonsd-x86_64-linux"), &binary).unwrap();
    std::fs::write(root.join("dist/NOTES.txt"), b"release notes\n").unwrap();
    for i in 0..3 {
        regtest_maintainer_key(i)
            .save(&root.join(format!("m{i}.key")))
            .unwrap();
    }
    let bundle = path("r.cbor");
    cli_expect(
        root,
        rpc,
        &[
            "release",
            "create",
            "--channel",
            "stable",
            "--version",
            "1.4.0",
            "--class",
            "application",
            "--artifact",
            &path("dist/commonsd-x86_64-linux"),
            &path("dist/NOTES.txt"),
            "--source-commit",
            "4f1c2a9",
            "--out",
            &bundle,
        ],
        0,
    );
    let sign = |i: usize| {
        cli_expect(
            root,
            rpc,
            &[
                "release",
                "sign",
                &bundle,
                "--key",
                &path(&format!("m{i}.key")),
            ],
            0,
        )
    };
    sign(0);
    sign(1);

    // Two of three required signatures: the node refuses, exit 1, with its reason.
    let publish = |dir: &str, code| {
        cli_expect(
            root,
            rpc,
            &["release", "publish", &bundle, "--artifacts", dir],
            code,
        )
    };
    let (_, err) = publish(&path("dist"), 1);
    assert!(
        err.starts_with(&format!("error: {bundle}: refused by the node: "))
            && err.lines().count() == 1,
        "{err}"
    );
    sign(2);

    // A changed artifact is refused too, and names the artifact.
    std::fs::create_dir(root.join("tampered")).unwrap();
    let mut changed = binary.clone();
    changed[1_200_000] ^= 1;
    std::fs::write(root.join("tampered/commonsd-x86_64-linux"), &changed).unwrap();
    std::fs::write(root.join("tampered/NOTES.txt"), b"release notes\n").unwrap();
    let (_, err) = publish(&path("tampered"), 1);
    assert!(err.contains("commonsd-x86_64-linux"), "{err}");

    // Published with the right artifacts; the directory may be given relative to the
    // caller, commons-cli hands the node an absolute path.
    let out = Command::new(env!("CARGO_BIN_EXE_commons-cli"))
        .current_dir(root)
        .args(["--network", "regtest", "--datadir", ".", "--rpc-url", rpc])
        .args(["release", "publish", "r.cbor", "--artifacts", "dist"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let published = stdout(&out);
    assert!(published.contains("version     1.4.0"), "{published}");
    assert!(
        published.contains("artifacts   2 verified and stored by the node"),
        "{published}"
    );
    assert!(published.contains("status      new; "), "{published}");
    let id = published
        .lines()
        .find_map(|l| l.strip_prefix("release     "))
        .unwrap()
        .to_string();
    assert_eq!(id.len(), 64, "{published}");

    // Publishing it again is harmless and says so.
    let (again, _) = publish(&path("dist"), 0);
    assert!(again.contains("already known to the node"), "{again}");
    // On a terminal, a spinner says what the node is checking while it does; on stderr
    // only, so the report still goes where stdout goes.
    if Command::new("script").arg("--version").output().is_ok() {
        let out = Command::new("script")
            .arg("-qec")
            .arg(format!(
                "{} --network regtest --datadir {} --rpc-url {rpc} release publish {bundle} \
                 --artifacts {} >publish.out",
                env!("CARGO_BIN_EXE_commons-cli"),
                root.display(),
                path("dist")
            ))
            .arg("/dev/null")
            .current_dir(root)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let screen = String::from_utf8_lossy(&out.stdout);
        assert!(
            screen.contains("publishing: the node is checking 2 artifacts (1.43 MiB)"),
            "{screen:?}"
        );
        let report = std::fs::read_to_string(root.join("publish.out")).unwrap();
        assert_eq!(report, again);
    } else {
        eprintln!("skipped the terminal check: util-linux `script` is not installed");
    }

    let (list, _) = cli_expect(root, rpc, &["release", "list"], 0);
    let row = list.lines().nth(1).unwrap_or_default();
    assert!(
        row.starts_with("stable   1.4.0    application  verified") && row.ends_with(&id),
        "{list}"
    );
    let (json, _) = cli_expect(root, rpc, &["--json", "release", "list"], 0);
    let json: Vec<Release> = serde_json::from_str(&json).unwrap();
    assert_eq!(json[0].id, id);
    assert_eq!(json[0].signers, 3);

    let (show, _) = cli_expect(root, rpc, &["release", "show", &id], 0);
    assert!(show.contains("source      4f1c2a9"), "{show}");
    assert!(show.contains("state       verified"), "{show}");
    let stored = show
        .lines()
        .find(|l| l.trim_start().starts_with("commonsd-x86_64-linux"))
        .and_then(|l| l.split("verified  ").nth(1))
        .unwrap_or_else(|| panic!("no stored path for the binary:\n{show}"));
    assert_eq!(
        std::fs::read(stored).unwrap(),
        binary,
        "the node's copy is the artifact"
    );

    // The self-check: the published binary, and the node's own stored copy, are verified.
    let (ok, _) = cli_expect(
        root,
        rpc,
        &[
            "release",
            "verify-binary",
            &path("dist/commonsd-x86_64-linux"),
        ],
        0,
    );
    assert_eq!(
        ok.trim_end(),
        format!(
            "{}: commonsd-x86_64-linux, release stable 1.4.0 (id {id}), verified by the node",
            path("dist/commonsd-x86_64-linux")
        )
    );
    cli_expect(root, rpc, &["release", "verify-binary", stored], 0);
    // One flipped bit is not the release, and the message names what the release lists.
    let (_, err) = cli_expect(
        root,
        rpc,
        &[
            "release",
            "verify-binary",
            &path("tampered/commonsd-x86_64-linux"),
        ],
        1,
    );
    assert!(
        err.contains("not an artifact of any release the node holds as verified")
            && err.contains("release stable 1.4.0 lists commonsd-x86_64-linux with SHA-256"),
        "{err}"
    );

    // By channel and version instead of id: the same release.
    let (by_version, _) = cli_expect(root, rpc, &["release", "show", "stable", "1.4"], 0);
    assert_eq!(by_version, show);

    let unknown = "00".repeat(32);
    let (_, err) = cli_expect(root, rpc, &["release", "show", &unknown], 1);
    assert!(err.contains("knows no release"), "{err}");
    let (_, err) = cli_expect(root, rpc, &["release", "show", "stable", "1.5.0"], 1);
    assert!(err.contains("knows no release stable 1.5.0"), "{err}");
}
