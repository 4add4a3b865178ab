//! Startup self-verification (`--verify-binary`) with real `commonsd` processes:
//!
//! 1. `require` on a node that holds no release of its binary refuses to start, with one
//!    line and a non-zero exit, before it writes a cookie;
//! 2. a node running with `warn` reports its binary `unverified`, then `verified` once a
//!    release listing its very executable (signed by the regtest maintainers) is published to
//!    it, without a restart, in `getinfo`, `/metrics` and the log; a second node turns
//!    `verified` once it fetched that release from the first over the network;
//! 3. the first node restarted with `require` starts, from the digest cache; a copy of the
//!    binary with one byte more is hashed afresh and refused.
//!
//! The nodes run a private copy of `commonsd`, so that another build replacing the one in
//! the target directory while the test runs cannot change the bytes under test.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use commons_e2e::{
    NodeSpec, TestNode, artifact_entry, binary, phases, regtest_release, run_to_exit, wait_until,
};
use commons_rpc::{BinaryInfo, NoParams, PublishReleaseParams, method};
use commons_signaling::NetworkSpec;
use commons_signaling::artifact::{ArtifactDigest, ArtifactHasher};

/// No other test uses 127.0.0.200-202.
const PUBLISHER: &str = "127.0.0.200";
const FETCHER: &str = "127.0.0.201";
const REFUSED: &str = "127.0.0.202";
const WAIT: Duration = Duration::from_secs(180);

fn digest_of(path: &Path) -> ArtifactDigest {
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = ArtifactHasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut file, &mut buffer).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    hasher.finish()
}

/// Every run's log of `node`.
fn log_of(node: &TestNode) -> String {
    std::fs::read_to_string(node.log_path()).unwrap_or_default()
}

fn binary_of(node: &TestNode) -> BinaryInfo {
    node.call::<method::GetInfo>(&NoParams {})
        .unwrap()
        .binary
        .expect("this node reports its binary")
}

/// The one line `commonsd` wrote on stderr starting with `commonsd: error:`.
fn error_line(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("commonsd: error:"))
        .collect();
    assert_eq!(lines.len(), 1, "one error line expected in:\n{stderr}");
    lines[0].to_string()
}

#[test]
fn a_node_verifies_its_own_binary_against_the_signed_releases_it_holds() {
    let phase = phases("verify_binary");
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("bin");
    let dist = work.path().join("dist");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&dist).unwrap();
    let program: PathBuf = bin.join("commonsd");
    // A hard link keeps the bytes even if a build replaces the target directory's file
    // (cargo links a new file in its place); a copy where links cannot be made.
    std::fs::hard_link(binary("commonsd"), &program)
        .or_else(|_| std::fs::copy(binary("commonsd"), &program).map(|_| ()))
        .unwrap();
    // The artifact is the very file the nodes run.
    let artifact = dist.join("commonsd");
    std::fs::hard_link(&program, &artifact)
        .or_else(|_| std::fs::copy(&program, &artifact).map(|_| ()))
        .unwrap();
    let digest = digest_of(&program);
    phase(&format!(
        "commonsd copied: {} bytes, SHA-256 {}",
        digest.size, digest.sha256
    ));

    phase("require, with no release of this binary: refused at start");
    let refused_base = work.path().join("refused");
    let (code, stderr) = run_to_exit(
        &program,
        &refused_base,
        REFUSED,
        &["--verify-binary", "require"],
    );
    let line = error_line(&stderr);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        line.contains("--verify-binary require")
            && line.contains(&digest.sha256.to_hex())
            && line.contains("not an artifact of any release verified"),
        "{line}"
    );
    let refused_dir = refused_base.join("regtest");
    assert!(
        !refused_dir.join(".cookie").exists() && !refused_dir.join(".rpc-address").exists(),
        "a refused node never opened its RPC"
    );

    phase("two nodes with warn: both unverified");
    let warn = || vec!["--verify-binary".to_string(), "warn".to_string()];
    let mut publisher = TestNode::start_with(
        &format!("publisher@{PUBLISHER}"),
        NodeSpec {
            ip: PUBLISHER.into(),
            bootstrap: Vec::new(),
            measurer: None,
        },
        program.clone(),
        warn(),
    )
    .unwrap();
    let fetcher = TestNode::start_with(
        &format!("fetcher@{FETCHER}"),
        NodeSpec {
            ip: FETCHER.into(),
            bootstrap: vec![publisher.multiaddr().unwrap()],
            measurer: None,
        },
        program.clone(),
        warn(),
    )
    .unwrap();
    for node in [&publisher, &fetcher] {
        let b = binary_of(node);
        assert_eq!(
            (b.mode.as_str(), b.status.as_str()),
            ("warn", "unverified"),
            "{}: {b:?}",
            node.name
        );
        assert_eq!(b.sha256, Some(digest.sha256.to_hex()), "{}", node.name);
        assert_eq!(b.size, Some(digest.size));
        assert_eq!(b.release, None);
        assert_eq!(node.metric("commons_binary_verified"), 0.0);
        assert_eq!(
            node.metric("commons_binary_status{status=\"unverified\"}"),
            1.0
        );
        assert!(
            log_of(node).contains("binary not verified"),
            "{}: {}",
            node.name,
            node.log_tail(30)
        );
    }
    wait_until(WAIT, "the two nodes connected", || {
        let peers = fetcher.call::<method::GetInfo>(&NoParams {}).unwrap().peers;
        (peers > 0).then_some(()).ok_or(format!("{peers} peers"))
    });

    phase("a release of this very binary, signed by the regtest maintainers, published");
    let bundle = regtest_release("1.0.0", vec![artifact_entry("commonsd", &digest)]);
    let id = bundle.id(&NetworkSpec::regtest().network_id()).to_hex();
    let pid = publisher.pid();
    let receipt = publisher
        .call::<method::PublishRelease>(&PublishReleaseParams {
            bundle: hex::encode(bundle.encode()),
            artifacts: dist.to_str().unwrap().to_string(),
        })
        .unwrap();
    assert!(receipt.new, "{receipt:?}");
    let b = binary_of(&publisher);
    assert_eq!(b.status, "verified", "{b:?}");
    let release = b.release.expect("the release is named");
    assert_eq!(
        (
            release.id.as_str(),
            release.channel.as_str(),
            release.version.as_str(),
            release.artifact.as_str()
        ),
        (id.as_str(), "stable", "1.0.0", "commonsd")
    );
    assert_eq!(publisher.metric("commons_binary_verified"), 1.0);
    assert_eq!(
        publisher.metric("commons_binary_status{status=\"verified\"}"),
        1.0
    );
    assert_eq!(
        publisher.metric("commons_binary_status{status=\"unverified\"}"),
        0.0
    );
    assert_eq!(publisher.pid(), pid, "no restart");
    assert!(
        log_of(&publisher).contains("binary verified"),
        "{}",
        publisher.log_tail(30)
    );

    phase("the other node fetches the release from its peer and turns verified");
    let fetched_at = Instant::now();
    wait_until(WAIT, "the fetching node verified its binary", || {
        let b = binary_of(&fetcher);
        (b.status == "verified")
            .then_some(())
            .ok_or(format!("{b:?}"))
    });
    phase(&format!(
        "verified on the fetcher {:.1} s after publication",
        fetched_at.elapsed().as_secs_f64()
    ));
    assert_eq!(fetcher.metric("commons_binary_verified"), 1.0);
    assert!(
        log_of(&fetcher).contains("binary verified"),
        "{}",
        fetcher.log_tail(30)
    );

    phase("the publisher restarted with require: starts, from the digest cache");
    publisher.stop().unwrap();
    publisher.args = vec!["--verify-binary".into(), "require".into()];
    publisher.restart().unwrap();
    let b = binary_of(&publisher);
    assert_eq!(
        (b.mode.as_str(), b.status.as_str()),
        ("require", "verified")
    );
    let log = log_of(&publisher);
    let hashed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("hashed the running executable"))
        .collect();
    assert!(
        hashed.len() >= 2
            && hashed[0].contains("cached=false")
            && hashed[hashed.len() - 1].contains("cached=true"),
        "the first start hashes, the restart reads the cache:\n{}",
        hashed.join("\n")
    );

    phase("a copy of the binary with one more byte: hashed again, refused under require");
    publisher.stop().unwrap();
    let tampered = bin.join("commonsd-tampered");
    std::fs::copy(&program, &tampered).unwrap();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&tampered)
            .unwrap();
        f.write_all(b"\0").unwrap();
    }
    let (code, stderr) = run_to_exit(
        &tampered,
        &publisher.base,
        PUBLISHER,
        &["--verify-binary", "require"],
    );
    std::fs::remove_file(&tampered).unwrap();
    let line = error_line(&stderr);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        line.contains("commonsd-tampered") && !line.contains(&digest.sha256.to_hex()),
        "{line}"
    );
    // The untouched binary still starts under require.
    publisher.restart().unwrap();
    assert_eq!(binary_of(&publisher).status, "verified");
}
