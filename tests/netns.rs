//! A laboratory network of Linux network namespaces for the fault tests: one namespace per
//! node, all joined by a bridge in a hub namespace, and a veth from the test's own namespace
//! to the bridge so that the test reaches every node's RPC and metrics directly. Faults are
//! nftables rules inside the node namespaces (random loss, partitions) and, for latency, a
//! delaying TCP relay in each node namespace through which the node's outbound
//! connections are redirected (this kernel has no `netem`).
//!
//! Everything a [`Lab`] makes carries a prefix unique to the test run, `cnf<pid>-<n>`:
//! namespaces, the one link in the test's namespace, and an environment variable of every
//! process started in the lab. Dropping the lab removes it all; a lab left behind by a run
//! that was killed is swept by the next [`Lab::new`] (its processes killed by id, its
//! namespaces and link deleted), found by a prefix whose process id no longer runs.
//!
//! The workspace forbids `unsafe`, so the test process never enters a namespace itself:
//! daemons and relays run under `ip netns exec`, which must exec (not fork) the program.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::Ipv4Addr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use crate::{Launcher, binary};

/// The start of every name a lab makes.
const PREFIX: &str = "cnf";
/// The environment variable naming the lab a process belongs to.
pub const LAB_ENV: &str = "COMMONS_NETFAULTS_LAB";
/// The socket mark of the relay's own connections, which the redirect rule lets pass.
pub const RELAY_MARK: u32 = 0x4e46;
/// The port the relay listens on, on each node namespace's loopback.
const RELAY_PORT: u16 = 7070;
/// The nftables table of the faults in each node namespace.
const TABLE: &str = "commons_netfaults";

/// Serialises lab set-ups within one test process (choosing a free subnet, sweeping).
static SETUP: Mutex<()> = Mutex::new(());
/// Numbers the labs of this process.
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// Why network-namespace tests cannot run here, or `None` when they can: root, iproute2
/// with `ip netns`, and `nft`.
pub fn unavailable() -> Option<String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Uid:")?
                    .split_whitespace()
                    .next()?
                    .parse::<u32>()
                    .ok()
            })
        });
    if uid != Some(0) {
        return Some(format!(
            "network namespaces need root (uid {})",
            uid.map_or("unknown".into(), |u| u.to_string())
        ));
    }
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!(
                "`{tool}` not found (Debian package {package}, scripts/setup.sh installs it)"
            ));
        }
    }
    let _guard = SETUP.lock().unwrap_or_else(|e| e.into_inner());
    let probe = format!(
        "{PREFIX}{}-probe{}",
        std::process::id(),
        NEXT_LAB.fetch_add(1, Ordering::SeqCst)
    );
    match run(&["ip", "netns", "add", &probe]) {
        Ok(_) => {
            let _ = run(&["ip", "netns", "del", &probe]);
            None
        }
        Err(e) => Some(format!("`ip netns add` fails: {e}")),
    }
}

/// Runs a command to completion; its standard output, or an error with its standard error.
fn run(args: &[&str]) -> anyhow::Result<String> {
    run_with_input(args, None)
}

fn run_with_input(args: &[&str], input: Option<&str>) -> anyhow::Result<String> {
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {args:?}"))?;
    if let Some(text) = input {
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The process id in a lab name `cnf<pid>-...`.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    rest[digits.len()..].starts_with('-').then_some(())?;
    digits.parse().ok()
}

/// Whether a lab name belongs to a run that is gone (its process id runs no more).
fn stale(name: &str) -> bool {
    owner_pid(name).is_some_and(|pid| {
        pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
    })
}

/// Removes what killed runs left: their processes (by id, found by [`LAB_ENV`]), their
/// namespaces and their links in this namespace.
pub fn sweep_stale() {
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for entry in procs.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            let lab = environ.split(|&b| b == 0).find_map(|var| {
                let var = std::str::from_utf8(var).ok()?;
                var.strip_prefix(LAB_ENV)?
                    .strip_prefix('=')
                    .map(str::to_string)
            });
            if lab.is_some_and(|lab| stale(&lab)) {
                let _ = run(&["kill", "-KILL", &pid.to_string()]);
            }
        }
    }
    if let Ok(namespaces) = std::fs::read_dir("/run/netns") {
        for entry in namespaces.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if stale(&name) {
                let _ = run(&["ip", "netns", "del", &name]);
            }
        }
    }
    if let Ok(links) = run(&["ip", "-o", "link", "show"]) {
        for line in links.lines() {
            // `7: cnf123-0@if6: <...` : the name, before any `@peer`.
            let Some(name) = line.split(": ").nth(1).and_then(|n| n.split('@').next()) else {
                continue;
            };
            if stale(name) {
                let _ = run(&["ip", "link", "del", name]);
            }
        }
    }
}

/// A network of namespaces, one per node, bridged in a hub namespace, reachable from the
/// test's namespace at `198.18.S.0/24` (RFC 2544 benchmarking space; S is free here).
/// Node i is at `198.18.S.(4i + 6)`, each alone in its regtest /30 netgroup; the test's
/// end of the link is `198.18.S.1`. Removed when dropped.
#[derive(Debug)]
pub struct Lab {
    /// The prefix of every name this lab made.
    pub name: String,
    subnet: u8,
    nodes: usize,
    relays: Vec<(Child, ChildStdin)>,
    relayed: Arc<AtomicUsize>,
}

impl Lab {
    /// Sweeps stale labs, then builds one with `nodes` node namespaces, each with the fault
    /// table (no faults yet) in place.
    pub fn new(nodes: usize) -> anyhow::Result<Lab> {
        assert!(nodes <= 60, "a lab holds at most 60 nodes");
        let _guard = SETUP.lock().unwrap_or_else(|e| e.into_inner());
        sweep_stale();
        let name = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT_LAB.fetch_add(1, Ordering::SeqCst)
        );
        let subnet = free_subnet()?;
        let mut lab = Lab {
            name,
            subnet,
            nodes,
            relays: Vec::new(),
            relayed: Arc::new(AtomicUsize::new(0)),
        };
        lab.build()
            .with_context(|| format!("cannot build lab {}", lab.name))?;
        Ok(lab)
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.name)
    }

    /// The namespace of node `i`.
    pub fn namespace(&self, i: usize) -> String {
        format!("{}-n{i}", self.name)
    }

    /// The address of the test's end of the link into the lab.
    pub fn test_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, self.subnet, 1)
    }

    /// Node `i`'s address.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(
            198,
            18,
            self.subnet,
            u8::try_from(4 * i + 6).expect("at most 60 nodes"),
        )
    }

    /// Every node's address as text, for [`crate::start_mesh_under`].
    pub fn ips(&self) -> Vec<String> {
        (0..self.nodes).map(|i| self.ip(i).to_string()).collect()
    }

    /// How to run a program in node `i`'s namespace, marked as this lab's.
    pub fn launcher(&self, i: usize) -> Launcher {
        Launcher {
            wrapper: ["ip", "netns", "exec"]
                .into_iter()
                .map(String::from)
                .chain([self.namespace(i)])
                .collect(),
            env: vec![(LAB_ENV.to_string(), self.name.clone())],
        }
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let hub = self.hub();
        run(&["ip", "netns", "add", &hub])?;
        run(&["ip", "-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &hub, "link", "set", "dev", "br0", "up"])?;
        // The test's link: its end here is named after the lab, its other end is in the hub.
        run(&[
            "ip", "link", "add", &self.name, "type", "veth", "peer", "name", "uplink", "netns",
            &hub,
        ])?;
        run(&[
            "ip", "-n", &hub, "link", "set", "dev", "uplink", "master", "br0", "up",
        ])?;
        let test_ip = format!("{}/24", self.test_ip());
        run(&["ip", "addr", "add", &test_ip, "dev", &self.name])?;
        run(&["ip", "link", "set", "dev", &self.name, "up"])?;
        for i in 0..self.nodes {
            let ns = self.namespace(i);
            let port = format!("n{i}");
            run(&["ip", "netns", "add", &ns])?;
            run(&[
                "ip", "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
                "netns", &hub,
            ])?;
            run(&[
                "ip", "-n", &hub, "link", "set", "dev", &port, "master", "br0", "up",
            ])?;
            let ip = format!("{}/24", self.ip(i));
            run(&["ip", "-n", &ns, "addr", "add", &ip, "dev", "eth0"])?;
            run(&["ip", "-n", &ns, "link", "set", "dev", "eth0", "up"])?;
            run(&["ip", "-n", &ns, "link", "set", "dev", "lo", "up"])?;
            // Inbound filtering only: each packet between two nodes crosses one input hook,
            // the receiver's, so a loss rule drops each packet at most once and a blocked
            // address is cut both ways when both sides block each other. The test's own
            // traffic (RPC, metrics) always passes.
            self.nft(
                i,
                &format!(
                    "table inet {TABLE} {{\n\
                       set blocked {{ type ipv4_addr; }}\n\
                       chain loss {{ }}\n\
                       chain input {{\n\
                         type filter hook input priority 0; policy accept;\n\
                         iifname \"lo\" accept\n\
                         ip saddr {} accept\n\
                         ip saddr @blocked drop\n\
                         jump loss\n\
                       }}\n\
                     }}\n",
                    self.test_ip()
                ),
            )?;
        }
        // Until the bridge forwards (its ports leave the listening state), nothing passes.
        let deadline = Instant::now() + Duration::from_secs(10);
        for i in 0..self.nodes {
            while !self.reaches(i) {
                if Instant::now() > deadline {
                    bail!("node namespace {i} unreachable from the test");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// Whether the test reaches node `i`'s address (a refused connection counts: the
    /// packet got there).
    fn reaches(&self, i: usize) -> bool {
        match std::net::TcpStream::connect_timeout(
            &(self.ip(i), 9).into(),
            Duration::from_millis(300),
        ) {
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        }
    }

    /// Loads an nftables script in node `i`'s namespace.
    fn nft(&self, i: usize, script: &str) -> anyhow::Result<()> {
        run_with_input(
            &["ip", "netns", "exec", &self.namespace(i), "nft", "-f", "-"],
            Some(script),
        )
        .map(drop)
    }

    /// Drops `percent` % of the packets every node receives from other nodes, at random
    /// (nftables `numgen random`); 0 removes the loss.
    pub fn set_loss(&self, percent: u32) -> anyhow::Result<()> {
        assert!(percent <= 100);
        for i in 0..self.nodes {
            let mut script = format!("flush chain inet {TABLE} loss\n");
            if percent > 0 {
                script.push_str(&format!(
                    "add rule inet {TABLE} loss numgen random mod 100 < {percent} counter drop\n"
                ));
            }
            self.nft(i, &script)?;
        }
        Ok(())
    }

    /// How many packets the loss rules of [`Lab::set_loss`] dropped so far, over all nodes.
    pub fn lost_packets(&self) -> anyhow::Result<u64> {
        let mut total = 0;
        for i in 0..self.nodes {
            let ns = self.namespace(i);
            let chain = run(&[
                "ip", "netns", "exec", &ns, "nft", "list", "chain", "inet", TABLE, "loss",
            ])?;
            // `... counter packets 12 bytes 3456 drop`
            total += chain
                .split_whitespace()
                .skip_while(|w| *w != "packets")
                .nth(1)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
        Ok(total)
    }

    /// Cuts every node of `side` off from every node not in it, both ways.
    pub fn partition(&self, side: &[usize]) -> anyhow::Result<()> {
        let side: BTreeSet<usize> = side.iter().copied().collect();
        for i in 0..self.nodes {
            let others: Vec<String> = (0..self.nodes)
                .filter(|j| side.contains(j) != side.contains(&i))
                .map(|j| self.ip(j).to_string())
                .collect();
            if !others.is_empty() {
                self.nft(
                    i,
                    &format!(
                        "add element inet {TABLE} blocked {{ {} }}\n",
                        others.join(", ")
                    ),
                )?;
            }
        }
        Ok(())
    }

    /// Ends every partition.
    pub fn heal(&self) -> anyhow::Result<()> {
        for i in 0..self.nodes {
            self.nft(i, &format!("flush set inet {TABLE} blocked\n"))?;
        }
        Ok(())
    }

    /// How many connections the relays of [`Lab::add_latency`] carried so far.
    pub fn relayed_connections(&self) -> usize {
        self.relayed.load(Ordering::Relaxed)
    }

    /// Delays every byte between nodes by `delay` each way: a relay in each node's
    /// namespace takes the node's outbound TCP connections to other nodes (redirected by
    /// nftables) and forwards them from the node's own address, so a peer still observes
    /// the node's IP. Each connection crosses exactly one relay, its dialer's. Call it
    /// before the nodes start: connections open before it are not delayed.
    pub fn add_latency(&mut self, delay: Duration) -> anyhow::Result<()> {
        let relay = binary("commons-e2e-relay");
        for i in 0..self.nodes {
            let launcher = self.launcher(i);
            let mut child = Command::new(&launcher.wrapper[0])
                .args(&launcher.wrapper[1..])
                .arg(&relay)
                .arg(format!("127.0.0.1:{RELAY_PORT}"))
                .arg(delay.as_millis().to_string())
                .arg(RELAY_MARK.to_string())
                .envs(launcher.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .context("cannot start the relay")?;
            let stdin = child.stdin.take().expect("piped stdin");
            let stdout = child.stdout.take().expect("piped stdout");
            self.relays.push((child, stdin));
            let (tx, rx) = std::sync::mpsc::channel();
            let relayed = self.relayed.clone();
            std::thread::spawn(move || {
                let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
                let _ = tx.send(lines.next().unwrap_or_default());
                for line in lines {
                    if line.starts_with("relayed") {
                        relayed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            let line = rx
                .recv_timeout(Duration::from_secs(10))
                .map_err(|_| anyhow!("relay {i} did not start in 10 s"))?;
            if !line.starts_with("relay listening") {
                bail!("relay {i} failed to start: {line:?}");
            }
            self.nft(
                i,
                &format!(
                    "table ip {TABLE}_nat {{\n\
                       chain output {{\n\
                         type nat hook output priority -100; policy accept;\n\
                         meta mark {RELAY_MARK} return\n\
                         ip daddr 198.18.{}.0/24 ip daddr != {} meta l4proto tcp redirect to :{RELAY_PORT}\n\
                       }}\n\
                     }}\n",
                    self.subnet,
                    self.test_ip()
                ),
            )?;
        }
        Ok(())
    }
}

/// A `198.18.S.0/24` that no address of this namespace is in, starting from one that
/// depends on the process id (concurrent runs of other processes rarely meet).
fn free_subnet() -> anyhow::Result<u8> {
    let addresses = run(&["ip", "-4", "-o", "addr", "show"])?;
    let used: BTreeSet<u8> = addresses
        .split_whitespace()
        .filter_map(|w| {
            let ip: Ipv4Addr = w.split('/').next()?.parse().ok()?;
            let [a, b, c, _] = ip.octets();
            (a == 198 && b == 18).then_some(c)
        })
        .collect();
    let start = std::process::id() as usize;
    (0..256)
        .map(|k| u8::try_from((start + k) % 256).expect("below 256"))
        .find(|s| !used.contains(s))
        .ok_or_else(|| anyhow!("no free 198.18.x.0/24 left"))
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (mut child, stdin) in self.relays.drain(..) {
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = run(&["ip", "link", "del", &self.name]);
        for i in 0..self.nodes {
            let _ = run(&["ip", "netns", "del", &self.namespace(i)]);
        }
        let _ = run(&["ip", "netns", "del", &self.hub()]);
    }
}
