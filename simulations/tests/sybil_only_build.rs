//! A researcher who runs only Sybil scenarios builds `commons-sim` without the `network`
//! feature and waits for the core crates alone: no RocksDB, no libp2p, no Tokio. These tests
//! read the dependency graph from `cargo tree` (offline, from the lock file), and check what
//! the binary of such a build says when asked for a network run.

use std::path::Path;
use std::process::Command;

/// The packages `cargo tree` lists for commons-sim's normal and build dependencies (the
/// ones a `cargo build` compiles), with the given feature flags.
fn dependency_packages(feature_args: &[&str]) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let out = Command::new(cargo)
        .args(["tree", "--offline", "--locked", "--manifest-path"])
        .arg(&manifest)
        .args(["-p", "commons-sim", "-e", "normal,build"])
        .args(["--prefix", "none", "--format", "{p}"])
        .args(feature_args)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("cargo tree prints UTF-8")
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The packages that stand for "the daemon's stack", if any are in `packages`.
fn daemon_stack(packages: &[String]) -> Vec<&String> {
    packages
        .iter()
        .filter(|p| {
            p.contains("rocksdb")
                || p.starts_with("libp2p")
                || *p == "tokio"
                || *p == "commons-node"
                || *p == "commons-p2p"
        })
        .collect()
}

#[test]
fn without_the_network_feature_nothing_of_the_daemon_stack_is_built() {
    let sybil_only = dependency_packages(&["--no-default-features"]);
    assert!(
        sybil_only.iter().any(|p| p == "commons-aggregator"),
        "the tree lists the core crates: {sybil_only:?}"
    );
    let stack = daemon_stack(&sybil_only);
    assert!(
        stack.is_empty(),
        "a Sybil-only build would compile {stack:?}"
    );
    // The same check sees the stack when it is there, so it cannot pass by reading nothing.
    let full = dependency_packages(&[]);
    for wanted in ["librocksdb-sys", "libp2p", "tokio", "commons-node"] {
        assert!(
            full.iter().any(|p| p == wanted),
            "the default build lists {wanted}: {full:?}"
        );
    }
}

#[cfg(not(feature = "network"))]
#[test]
fn the_network_subcommand_says_it_was_left_out() {
    let out = Command::new(env!("CARGO_BIN_EXE_commons-sim"))
        .args(["network", "--nodes", "8", "--quiet"])
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("built without the `network` feature"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
