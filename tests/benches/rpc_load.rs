//! RPC server bench: one `commonsd` on loopback (127.0.0.209) and clients that hold idle
//! connections or send bodies above the limit, as issue 13 item 5 asks. It prints a table:
//!
//! - `getinfo` latency (p50, p99 of 200 calls, each on a fresh connection) and the daemon's
//!   VmRSS with 0, 1,000 and 5,000 idle connections held open by this process, once with the
//!   default `--rpc-max-connections` (128: the oldest idle ones are closed for new ones) and
//!   once with the limit above the count (every connection held, for the memory per
//!   connection);
//! - oversized requests: bodies declared at 10 MiB and bodies streamed (chunked) to 2 MiB,
//!   against the default limit of 1 MiB: how many got HTTP 413, at what rate, and VmRSS.
//!
//! Run with `cargo bench --workspace --locked --bench rpc_load` (release; it needs the
//! release `commonsd` in the same target directory) or add `--profile dev` for the debug
//! build. Without `--bench` (as under `cargo test --all-targets`) it does nothing.
//! `COMMONS_BENCH_IDLE=0,1000,5000` picks the counts; `COMMONS_BENCH_RPC_OTHER=PATH` runs
//! only the idle connections against another `commonsd` (an older build), without flags;
//! `COMMONS_BENCH_DAEMON_NOFILE=1024` sets the daemon's soft `nofile` limit (systemd's
//! default) once it runs, to see what running out of descriptors does. It needs one file descriptor per idle
//! connection: it raises its soft `nofile` limit to the hard one (the daemon inherits it)
//! and says so.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use commons_e2e::{NodeSpec, TestNode, basic_auth, http};

const IP: &str = "127.0.0.209";
const GETINFO: &str = r#"{"jsonrpc":"2.0","id":1,"method":"getinfo"}"#;
const CALLS: usize = 200;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn rss_mib(node: &TestNode) -> String {
    node.memory_kib("VmRSS")
        .map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

/// The daemon's open file descriptors.
fn open_fds(node: &TestNode) -> usize {
    node.pid()
        .and_then(|pid| std::fs::read_dir(format!("/proc/{pid}/fd")).ok())
        .map_or(0, |dir| dir.count())
}

/// The soft and hard `nofile` limits of this process.
fn nofile() -> (u64, u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| {
            let mut n = l.split_whitespace().skip(3).filter_map(|v| v.parse().ok());
            Some((n.next()?, n.next()?))
        })
        .unwrap_or((1024, 1024))
}

/// Raises the soft `nofile` limit to the hard one when `needed` descriptors do not fit.
fn raise_nofile(needed: u64) {
    let (soft, hard) = nofile();
    if soft >= needed {
        println!("nofile limit {soft} (hard {hard}): enough for {needed} descriptors");
        return;
    }
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={hard}:{hard}"),
        ])
        .status();
    let (now, _) = nofile();
    println!(
        "nofile soft limit raised from {soft} to {now} (hard {hard}; prlimit: {status:?}) for {needed} descriptors"
    );
}

/// Sequential getinfo calls on fresh connections; their latencies, sorted, and failures.
fn getinfo_latencies(node: &TestNode, auth: &str) -> (Vec<Duration>, usize) {
    let mut times = Vec::with_capacity(CALLS);
    let mut failed = 0;
    for _ in 0..CALLS {
        let t = Instant::now();
        match http(node.rpc_addr, "POST", "/", Some(auth), GETINFO) {
            Ok(r) if r.status == 200 => times.push(t.elapsed()),
            // A daemon that stopped answering (each failure may take the client's 30 s):
            // three in a row say enough.
            _ if failed >= 2 && times.is_empty() => return (times, failed + 1),
            _ => failed += 1,
        }
    }
    times.sort();
    (times, failed)
}

fn idle_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect()
}

/// Sends `head` and `body`, reads the status line; the server may close early.
fn oversized(addr: SocketAddr, head: &str, body: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let mut writer = stream.try_clone().ok()?;
    let (head, body) = (head.to_string(), body.to_vec());
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(head.as_bytes());
        for piece in body.chunks(64 * 1024) {
            if writer.write_all(piece).is_err() {
                return;
            }
        }
    });
    let mut buf = [0u8; 512];
    let mut raw = Vec::new();
    while !raw.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    drop(stream);
    let _ = sender.join();
    String::from_utf8_lossy(&raw)
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

type Rows = Vec<(String, String)>;

/// Which daemon an idle phase runs.
enum Daemon {
    /// This build's, `--rpc-timeout 600` and this connection limit (default: 128).
    Built(Option<usize>),
    /// Another `commonsd` (an older build, to compare), without flags.
    Other(std::path::PathBuf),
}

fn idle_phase(rows: &mut Rows, counts: &[usize], daemon: Daemon) {
    let mut args = Vec::new();
    let (program, mut label) = match daemon {
        Daemon::Built(limit) => {
            args.extend(["--rpc-timeout".to_string(), "600".to_string()]);
            let label = match limit {
                Some(n) => {
                    args.extend(["--rpc-max-connections".to_string(), n.to_string()]);
                    format!("limit {n}")
                }
                None => "default limit 128".to_string(),
            };
            (commons_e2e::binary("commonsd"), label)
        }
        Daemon::Other(path) => (path, "other commonsd".to_string()),
    };
    let node = TestNode::start_with(
        "rpc-bench",
        NodeSpec {
            ip: IP.into(),
            bootstrap: vec![],
            measurer: None,
        },
        program,
        args,
    )
    .expect("commonsd starts");
    if let Ok(soft) = std::env::var("COMMONS_BENCH_DAEMON_NOFILE") {
        let pid = node.pid().expect("the daemon runs").to_string();
        let (_, hard) = nofile();
        let _ = std::process::Command::new("prlimit")
            .args(["--pid", &pid, &format!("--nofile={soft}:{hard}")])
            .status();
        label.push_str(&format!(", daemon nofile {soft}"));
    }
    let auth = basic_auth(&node.cookie().expect("the cookie"));
    rows.push((format!("{label}: VmRSS at start"), rss_mib(&node)));
    for &n in counts {
        let t = Instant::now();
        let held = idle_connections(node.rpc_addr, n);
        let opened = t.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        let (times, failed) = getinfo_latencies(&node, &auth);
        let key = format!("{label}: {n} idle connections");
        let latency = if times.is_empty() {
            "no answer".to_string()
        } else {
            format!(
                "getinfo p50 {} p99 {} ({failed} of {CALLS} failed)",
                ms(percentile(&times, 50.0)),
                ms(percentile(&times, 99.0))
            )
        };
        rows.push((key.clone(), latency));
        rows.push((
            format!("{key}: daemon"),
            format!(
                "VmRSS {}, {} fds, open {} (opened {} in {:.1} s, evicted so far {})",
                rss_mib(&node),
                open_fds(&node),
                node.metric("commons_rpc_connections_open"),
                held.len(),
                opened.as_secs_f64(),
                node.metric(r#"commons_rpc_connections_closed_total{reason="evicted"}"#)
            ),
        ));
        // Printed at once too: a daemon that stops answering may keep the run from its table.
        for (k, v) in &rows[rows.len() - 2..] {
            println!("{k}: {v}");
        }
        drop(held);
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn oversized_phase(rows: &mut Rows) {
    let node = TestNode::start(
        "rpc-bench",
        NodeSpec {
            ip: IP.into(),
            bootstrap: vec![],
            measurer: None,
        },
    )
    .expect("commonsd starts");
    let auth = basic_auth(&node.cookie().expect("the cookie"));
    let before = rss_mib(&node);
    let declared = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        10 * 1024 * 1024
    );
    let n = 500;
    let t = Instant::now();
    let refused = (0..n)
        .filter(|_| oversized(node.rpc_addr, &declared, &[]) == Some(413))
        .count();
    let took = t.elapsed().as_secs_f64();
    rows.push((
        "declared 10 MiB bodies".into(),
        format!(
            "{refused} of {n} got 413, {:.0}/s; VmRSS {before} -> {}",
            n as f64 / took,
            rss_mib(&node)
        ),
    ));
    let streamed_head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let mut body = Vec::new();
    for _ in 0..32 {
        body.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
        body.extend(std::iter::repeat_n(b' ', 64 * 1024));
        body.extend_from_slice(b"\r\n");
    }
    let n = 100;
    let t = Instant::now();
    let refused = (0..n)
        .filter(|_| oversized(node.rpc_addr, &streamed_head, &body) == Some(413))
        .count();
    let took = t.elapsed().as_secs_f64();
    rows.push((
        "streamed 2 MiB bodies (chunked)".into(),
        format!(
            "{refused} of {n} got 413, {:.0}/s; VmRSS {}, peak VmHWM {:.1} MiB",
            n as f64 / took,
            rss_mib(&node),
            node.memory_kib("VmHWM").unwrap_or(0) as f64 / 1024.0
        ),
    ));
    let (times, failed) = getinfo_latencies(&node, &auth);
    rows.push((
        "after the oversized requests".into(),
        format!(
            "getinfo p50 {} ({failed} failed), commons_rpc_requests_too_large_total {}",
            ms(percentile(&times, 50.0)),
            node.metric("commons_rpc_requests_too_large_total")
        ),
    ));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("rpc_load: bench");
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        println!("rpc_load bench: nothing to do without --bench");
        return;
    }
    let counts: Vec<usize> = std::env::var("COMMONS_BENCH_IDLE")
        .unwrap_or_else(|_| "0,1000,5000".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let most = counts.iter().copied().max().unwrap_or(0);
    raise_nofile(most as u64 + 1024);
    let mut rows = Rows::new();
    if let Some(other) = std::env::var_os("COMMONS_BENCH_RPC_OTHER") {
        idle_phase(&mut rows, &counts, Daemon::Other(other.into()));
    } else {
        idle_phase(&mut rows, &counts, Daemon::Built(None));
        // A limit above the daemon's descriptors would only show it running out of them.
        if std::env::var_os("COMMONS_BENCH_DAEMON_NOFILE").is_none() {
            idle_phase(&mut rows, &counts, Daemon::Built(Some(most + 1000)));
        }
        oversized_phase(&mut rows);
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(10);
    println!("\n| {:width$} | value |", "figure");
    println!("|{}|-------|", "-".repeat(width + 2));
    for (k, v) in &rows {
        println!("| {k:width$} | {v} |");
    }
}
