//! Release propagation benchmark: real release `commonsd` processes on loopback
//! (127.0.0.160-164; `COMMONS_BENCH_RELEASE_NODES` of them, default 5). A bundle with one
//! artifact of `COMMONS_BENCH_RELEASE_MIB` MiB (default 50; several sizes separated by
//! commas) is published at node 0, and every node is polled
//! every 20 ms until it reports the release verified. Printed per size: the time until all
//! nodes verified it, each node's time and throughput (artifact bytes over its time since
//! publication), and each node's resident memory before the transfer and at its peak
//! (`VmHWM`), which shows whether artifacts stream or sit in memory.
//!
//! Run with `cargo build --release -p commons-node -p commons-cli && cargo bench -p
//! commons-e2e --bench releases`. Without `--bench` (as under `cargo test --all-targets`) it
//! only checks that it can build a signed bundle.

use std::time::{Duration, Instant};

use commons_e2e::{artifact_entry, regtest_release, start_mesh, write_artifact};
use commons_rpc::{IdParams, NoParams, PublishReleaseParams, method};
use commons_signaling::NetworkSpec;

const NODES: [&str; 5] = [
    "127.0.0.160",
    "127.0.0.161",
    "127.0.0.162",
    "127.0.0.163",
    "127.0.0.164",
];
const WAIT: Duration = Duration::from_secs(600);

fn run(mib: u64, version: &str, count: usize) -> anyhow::Result<()> {
    let nodes = start_mesh("b", &NODES[..count]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes.iter().any(|n| {
        n.call::<method::GetPeers>(&NoParams {})
            .map_or(0, |p| p.len())
            < count - 1
    }) {
        anyhow::ensure!(Instant::now() < deadline, "the mesh did not form");
        std::thread::sleep(Duration::from_millis(100));
    }
    let dist = tempfile::tempdir()?;
    let size = mib * 1024 * 1024;
    let digest = write_artifact(&dist.path().join("artifact.bin"), size, mib);
    let bundle = regtest_release(version, vec![artifact_entry("artifact.bin", &digest)]);
    let id = bundle.id(&NetworkSpec::regtest().network_id()).to_hex();
    let before: Vec<u64> = nodes
        .iter()
        .map(|n| n.memory_kib("VmRSS").unwrap_or(0))
        .collect();

    let started = Instant::now();
    nodes[0].call::<method::PublishRelease>(&PublishReleaseParams {
        bundle: hex::encode(bundle.encode()),
        artifacts: dist
            .path()
            .to_str()
            .ok_or_else(|| anyhow::anyhow!("temporary path not UTF-8"))?
            .to_string(),
    })?;
    let published = started.elapsed();
    let mut done: Vec<Option<Duration>> = vec![None; nodes.len()];
    while done.iter().any(Option::is_none) {
        anyhow::ensure!(
            started.elapsed() < WAIT,
            "not verified everywhere: {done:?}"
        );
        for (i, n) in nodes.iter().enumerate() {
            if done[i].is_none()
                && n.call::<method::GetRelease>(&IdParams::new(&id))
                    .is_ok_and(|r| r.state == "verified")
            {
                done[i] = Some(started.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let all = done.iter().flatten().max().copied().unwrap_or_default();
    println!(
        "\n{mib} MiB artifact, {} nodes: publishrelease (import and verify at node 0) {:.2} s; \
         verified on every node {:.2} s after the call",
        nodes.len(),
        published.as_secs_f64(),
        all.as_secs_f64()
    );
    println!("| node | verified after | throughput | RSS before | peak RSS |");
    println!("|---|---|---|---|---|");
    for (i, n) in nodes.iter().enumerate() {
        let took = done[i].unwrap_or(all).as_secs_f64();
        println!(
            "| {} | {took:.2} s | {:.1} MiB/s | {:.1} MiB | {:.1} MiB |",
            n.name,
            mib as f64 / took.max(0.001),
            before[i] as f64 / 1024.0,
            n.memory_kib("VmHWM").unwrap_or(0) as f64 / 1024.0
        );
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("releases: bench");
        return;
    }
    if !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--quick") {
        let dir = tempfile::tempdir().expect("temp dir");
        let digest = write_artifact(&dir.path().join("a"), 4096, 1);
        let bundle = regtest_release("1.0.0", vec![artifact_entry("a", &digest)]);
        assert_eq!(bundle.body.artifacts.len(), 1);
        println!("releases bench: quick mode (run `cargo bench -p commons-e2e --bench releases`)");
        return;
    }
    let sizes = std::env::var("COMMONS_BENCH_RELEASE_MIB").unwrap_or_else(|_| "50".into());
    let count = std::env::var("COMMONS_BENCH_RELEASE_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(NODES.len())
        .clamp(2, NODES.len());
    for (i, mib) in sizes
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .enumerate()
    {
        if let Err(e) = run(mib, &format!("1.0.{i}"), count) {
            eprintln!("releases bench: {mib} MiB run failed: {e:#}");
            std::process::exit(1);
        }
    }
}
