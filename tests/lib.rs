//! Harness of the end-to-end tests: real `commonsd` processes on loopback addresses
//! (127.0.0.x), or each in a network namespace of its own ([`netns`], for the fault tests),
//! talked to as users do, over cookie-authenticated JSON-RPC, `/metrics` and `commons-cli`.
//!
//! Every wait is bounded ([`wait_until`]), and every daemon a [`TestNode`] starts is killed
//! when the node is dropped, also when a test panics. The binaries are taken from the
//! target directory the test executable was built into (`cargo build --workspace --bins`
//! builds them; `scripts/test.sh` does so before `cargo test`).

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use commons_rpc::{Choices, IdParams, Method, NoParams, Tally, UptimeParams, UptimeReport, method};
use commons_signaling::artifact::{ArtifactDigest, ArtifactHasher};
use commons_signaling::spec::regtest_maintainer_key;
use commons_signaling::{
    Artifact, BoundedString, NetworkSpec, ReleaseBundle, ReleaseClass, ReleaseManifest,
};
use serde_json::{Value, json};

pub mod netns;
pub mod rotation;

/// The environment variables `commonsd` reads; cleared so the caller's shell cannot change
/// what a test runs.
const DAEMON_ENV: [&str; 8] = [
    "COMMONS_DATADIR",
    "COMMONS_CONF",
    "COMMONS_NETWORK",
    "COMMONS_LISTEN",
    "COMMONS_BOOTSTRAP",
    "COMMONS_RPC_BIND",
    "COMMONS_METRICS_BIND",
    "COMMONS_VERIFY_BINARY",
];

/// How long a daemon may take to start or to stop.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Tells the person running `cargo test` which scenario runs, past the test harness's
/// output capture (which only takes `print!` and `eprint!`).
pub fn scenario(text: &str) {
    let line = format!("commons-e2e: {text}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// The directory holding `commonsd` and `commons-cli`: the target directory's profile
/// directory that this test executable (`<target>/<profile>/deps/<test>`) was built in,
/// else `$CARGO_TARGET_DIR/debug`.
pub fn bin_dir() -> PathBuf {
    let from_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(Path::to_path_buf));
    let candidates = from_exe
        .into_iter()
        .chain(std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("debug")));
    for dir in candidates {
        if dir.join("commonsd").is_file() && dir.join("commons-cli").is_file() {
            return dir;
        }
    }
    panic!(
        "commonsd and commons-cli not found next to the test executable: run `cargo build --workspace --bins` first"
    );
}

/// A progress printer for a scenario: each call prints `  [  Ns] test: text` through
/// [`scenario`], N being the seconds since the printer was made.
pub fn phases(test: &'static str) -> impl Fn(&str) {
    let t0 = Instant::now();
    move |text| {
        scenario(&format!(
            "  [{:>3}s] {test}: {text}",
            t0.elapsed().as_secs()
        ))
    }
}

/// The path of one of the workspace's binaries.
pub fn binary(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// Runs `program` (a `commonsd`) on the regtest network with data directory `base`, listening
/// and serving on loopback address `ip` with `args` after, until it exits, for a start that
/// must fail. Its exit code and standard error; panics if it is still running after 60 s.
/// Variables starting with `COMMONS_` are removed, so the caller's shell cannot change what
/// runs.
pub fn run_to_exit(program: &Path, base: &Path, ip: &str, args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = Command::new(program);
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("COMMONS_") {
            cmd.env_remove(var);
        }
    }
    let mut child = cmd
        .arg("--datadir")
        .arg(base)
        .args(["--network", "regtest", "--listen"])
        .arg(format!("/ip4/{ip}/tcp/0"))
        .arg("--rpc-bind")
        .arg(format!("{ip}:0"))
        .arg("--metrics-bind")
        .arg(format!("{ip}:0"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} did not exit at start (datadir {})",
                program.display(),
                base.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Calls `check` every 250 ms until it returns `Ok`, and panics after `timeout` with `what`
/// and the last reason `check` gave for not being done.
pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(v) => return v,
            Err(reason) => {
                assert!(
                    Instant::now() < deadline,
                    "timed out after {timeout:?} waiting for {what}: {reason}"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The answer to one HTTP request.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`), with timeouts.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &str,
) -> anyhow::Result<HttpResponse> {
    let timeout = Duration::from_secs(30);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(auth) = authorization {
        request.push_str(&format!("Authorization: {auth}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP header in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no HTTP status in {head:?}"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_string()
    };
    Ok(HttpResponse { status, body })
}

fn dechunk(mut rest: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest
            .split_once("\r\n")
            .ok_or_else(|| anyhow!("bad chunk"))?;
        let size = usize::from_str_radix(size.trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(after.get(..size).ok_or_else(|| anyhow!("short chunk"))?);
        rest = after
            .get(size + 2..)
            .ok_or_else(|| anyhow!("short chunk"))?;
    }
}

/// The `Authorization` header value for cookie credentials (`__cookie__:<hex>`).
pub fn basic_auth(credentials: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials.trim())
    )
}

/// What a daemon's process runs under besides its arguments: a wrapper command and extra
/// environment variables ([`TestNode::wrapper`], [`TestNode::env`]). The default is none.
#[derive(Debug, Clone, Default)]
pub struct Launcher {
    /// The command words the program runs under (`ip netns exec NS`).
    pub wrapper: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
}

/// How to start one node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The loopback address it listens on (also for RPC and metrics) and dials from.
    pub ip: String,
    /// Peers to dial at start (multiaddrs with `/p2p/<id>`).
    pub bootstrap: Vec<String>,
    /// Run as the i-th well-known regtest measurer (its key is written to the data
    /// directory before the first start); `None` for a user node with a key of its own.
    pub measurer: Option<usize>,
}

/// A `commonsd` process on a data directory of its own. Killed when dropped.
pub struct TestNode {
    /// A short name for messages.
    pub name: String,
    /// The listen IP.
    pub ip: String,
    /// The base data directory (`--datadir`).
    pub base: PathBuf,
    bootstrap: Vec<String>,
    /// The peer-to-peer port, fixed after the first start so restarts keep the address.
    p2p_port: u16,
    child: Option<Child>,
    /// JSON-RPC address of the running process.
    pub rpc_addr: SocketAddr,
    /// Metrics address of the running process.
    pub metrics_addr: SocketAddr,
    /// The executable each launch runs (the built `commonsd` unless a test chose a copy).
    pub program: PathBuf,
    /// Arguments added to every launch after the harness's own; a test may change them
    /// between a stop and a restart.
    pub args: Vec<String>,
    /// The command the program runs under, empty for none: `ip netns exec NS` for a node in
    /// a network namespace ([`netns::Lab::launcher`]). It must exec the program, not fork it,
    /// so that the process id is the daemon's.
    pub wrapper: Vec<String>,
    /// Environment variables set for every launch (a faked clock, say).
    pub env: Vec<(String, String)>,
    /// The `--network` argument (a name, spec file or spec bundle); a test may change it
    /// between a stop and a restart, to another file of the same network.
    pub network: String,
    /// The network's name, which names its data directory.
    network_name: String,
    _dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for TestNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNode")
            .field("name", &self.name)
            .field("ip", &self.ip)
            .field("rpc", &self.rpc_addr)
            .finish()
    }
}

/// The `--network` argument and the name of the built-in network most tests run on.
const REGTEST: (&str, &str) = ("regtest", "regtest");

impl TestNode {
    /// Starts a node in a fresh temporary data directory and waits until its RPC answers.
    pub fn start(name: &str, spec: NodeSpec) -> anyhow::Result<TestNode> {
        Self::start_with(name, spec, binary("commonsd"), Vec::new())
    }

    /// [`TestNode::start`] running `program` with `args` added to the harness's own.
    pub fn start_with(
        name: &str,
        spec: NodeSpec,
        program: PathBuf,
        args: Vec<String>,
    ) -> anyhow::Result<TestNode> {
        Self::start_under(name, spec, program, args, Launcher::default())
    }

    /// [`TestNode::start_with`] under `launcher`'s wrapper command and environment.
    pub fn start_under(
        name: &str,
        spec: NodeSpec,
        program: PathBuf,
        args: Vec<String>,
        launcher: Launcher,
    ) -> anyhow::Result<TestNode> {
        let dir = tempfile::Builder::new().prefix("commons-e2e-").tempdir()?;
        let home = (dir.path().to_path_buf(), Some(dir));
        Self::create(name, spec, program, args, home, launcher, REGTEST)
    }

    /// [`TestNode::start_with`] on another network: `network` is the `--network` argument
    /// and the network's name (its data directory's).
    pub fn start_on(
        name: &str,
        spec: NodeSpec,
        network: (&str, &str),
        program: PathBuf,
        args: Vec<String>,
    ) -> anyhow::Result<TestNode> {
        let dir = tempfile::Builder::new().prefix("commons-e2e-").tempdir()?;
        let home = (dir.path().to_path_buf(), Some(dir));
        Self::create(
            name,
            spec,
            program,
            args,
            home,
            Launcher::default(),
            network,
        )
    }

    /// [`TestNode::start`] with `base` as the base data directory (a filesystem the test
    /// mounted, say), which the test owns and removes.
    pub fn start_in(name: &str, spec: NodeSpec, base: &Path) -> anyhow::Result<TestNode> {
        Self::create(
            name,
            spec,
            binary("commonsd"),
            Vec::new(),
            (base.to_path_buf(), None),
            Launcher::default(),
            REGTEST,
        )
    }

    /// Starts a node with its base data directory `home` (and the temporary directory that
    /// holds it, removed with the node, if the harness made one).
    fn create(
        name: &str,
        spec: NodeSpec,
        program: PathBuf,
        mut args: Vec<String>,
        home: (PathBuf, Option<tempfile::TempDir>),
        launcher: Launcher,
        network: (&str, &str),
    ) -> anyhow::Result<TestNode> {
        let (base, dir) = home;
        if spec.measurer.is_some() {
            // The harness writes a well-known key that never signed before the first start,
            // which would otherwise arm the signing guard (a key older than its database).
            args.insert(0, "--sign-without-catch-up".into());
        }
        let mut node = TestNode {
            name: name.to_string(),
            ip: spec.ip,
            base,
            bootstrap: spec.bootstrap,
            p2p_port: 0,
            child: None,
            rpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            program,
            args,
            wrapper: launcher.wrapper,
            env: launcher.env,
            network: network.0.to_string(),
            network_name: network.1.to_string(),
            _dir: dir,
        };
        if let Some(i) = spec.measurer {
            let datadir = node.datadir();
            std::fs::create_dir_all(&datadir)?;
            #[cfg(unix)]
            std::fs::set_permissions(
                &datadir,
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )?;
            commons_signaling::spec::regtest_measurer_key(i)
                .save(&datadir.join("node.key"))
                .map_err(|e| anyhow!("{e}"))?;
        }
        node.launch()?;
        Ok(node)
    }

    /// The network's data directory (key, database, cookie).
    pub fn datadir(&self) -> PathBuf {
        self.base.join(&self.network_name)
    }

    /// The daemon's log (stderr of every run).
    pub fn log_path(&self) -> PathBuf {
        self.base.join("commonsd.log")
    }

    /// The last lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The value of one series of the node's `/metrics`, named with its labels exactly as
    /// the node writes them (`commons_release_bad_chunks_total`,
    /// `commons_messages_received_total{kind="signal",verdict="reject"}`); 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.metrics().unwrap_or_default();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0.0)
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A memory figure of the running process from `/proc/<pid>/status`, in KiB: `VmRSS`
    /// (resident now) or `VmHWM` (the peak resident size).
    pub fn memory_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status.lines().find_map(|line| {
            line.strip_prefix(field)?
                .strip_prefix(':')?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
    }

    /// Whether the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut cmd = match self.wrapper.split_first() {
            Some((first, rest)) => {
                let mut cmd = Command::new(first);
                cmd.args(rest).arg(&self.program);
                cmd
            }
            None => Command::new(&self.program),
        };
        for var in DAEMON_ENV {
            cmd.env_remove(var);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.arg("--datadir")
            .arg(&self.base)
            .args(["--network", &self.network])
            .arg("--listen")
            .arg(format!("/ip4/{}/tcp/{}", self.ip, self.p2p_port))
            .arg("--rpc-bind")
            .arg(format!("{}:0", self.ip))
            .arg("--metrics-bind")
            .arg(format!("{}:0", self.ip));
        for peer in &self.bootstrap {
            cmd.arg("--bootstrap").arg(peer);
        }
        cmd.args(&self.args);
        cmd.env(
            "RUST_LOG",
            std::env::var("COMMONS_E2E_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
        let mut child = cmd.spawn().context("cannot start commonsd")?;
        let stdout = child.stdout.take().expect("piped stdout");
        self.child = Some(child);

        // The daemon prints one line with its addresses; the rest of stdout is drained so a
        // full pipe never blocks it.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("commonsd is running") {
                    let _ = tx.send(line);
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let line = loop {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                break line;
            }
            if !self.is_running() {
                bail!(
                    "{}: commonsd exited at start:\n{}",
                    self.name,
                    self.log_tail(20)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: commonsd did not start in {START_TIMEOUT:?}:\n{}",
                    self.name,
                    self.log_tail(20)
                );
            }
        };
        self.rpc_addr = address_after(&line, "JSON-RPC at http://")?;
        self.metrics_addr = address_after(&line, "metrics at http://")?;
        let info = self.call::<method::GetInfo>(&NoParams {})?;
        if self.p2p_port == 0 {
            self.p2p_port = info
                .listen
                .iter()
                .find_map(|a| {
                    a.rsplit_once("/tcp/")
                        .and_then(|(_, p)| p.split('/').next()?.parse().ok())
                })
                .ok_or_else(|| anyhow!("{}: no listen address in {:?}", self.name, info.listen))?;
        }
        Ok(())
    }

    /// The multiaddr peers dial this node at.
    pub fn multiaddr(&self) -> anyhow::Result<String> {
        let info = self.call::<method::GetInfo>(&NoParams {})?;
        let id = info
            .peer_id
            .ok_or_else(|| anyhow!("{}: getinfo names no peer id", self.name))?;
        Ok(format!("/ip4/{}/tcp/{}/p2p/{id}", self.ip, self.p2p_port))
    }

    /// The cookie credentials of the running process.
    pub fn cookie(&self) -> anyhow::Result<String> {
        let path = self.datadir().join(".cookie");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(text.trim().to_string())
    }

    /// A call of the method `M` with the cookie: its answer, or the node's error, or an
    /// answer of another shape, as an error.
    pub fn call<M: Method>(&self, params: &M::Params) -> anyhow::Result<M::Response> {
        let result = self.rpc(M::NAME, commons_rpc::params_json::<M>(params))?;
        commons_rpc::parse_response::<M>(result.clone())
            .with_context(|| format!("{}: {}: unexpected answer {result}", self.name, M::NAME))
    }

    /// The node's own public key (hex), from `getinfo`.
    pub fn public_key(&self) -> anyhow::Result<String> {
        Ok(self.call::<method::GetInfo>(&NoParams {})?.public_key)
    }

    /// The node's `gettally` of proposal `id` (hex).
    pub fn tally(&self, id: &str) -> anyhow::Result<Tally> {
        self.call::<method::GetTally>(&IdParams::new(id))
    }

    /// The node's `getuptime` of `key` (hex).
    pub fn uptime(&self, key: &str) -> anyhow::Result<UptimeReport> {
        self.call::<method::GetUptime>(&UptimeParams {
            key: Some(key.to_string()),
        })
    }

    /// A JSON-RPC call with the cookie, parameters and result as raw JSON: for requests
    /// that are wrong on purpose. The `result`, or the `error` as an error.
    pub fn rpc(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let auth = basic_auth(&self.cookie()?);
        let body =
            json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }).to_string();
        let response = http(self.rpc_addr, "POST", "/", Some(&auth), &body)?;
        if response.status != 200 {
            bail!(
                "{}: {method}: HTTP {}: {}",
                self.name,
                response.status,
                response.body
            );
        }
        let value: Value = serde_json::from_str(&response.body)
            .with_context(|| format!("{}: {method}: not JSON: {}", self.name, response.body))?;
        if let Some(error) = value.get("error") {
            bail!("{}: {method}: {error}", self.name);
        }
        Ok(value["result"].clone())
    }

    /// Runs `commons-cli --datadir <base> --rpc-url <rpc> ARGS` against this node.
    pub fn cli(&self, args: &[&str]) -> Output {
        let base = self
            .base
            .to_str()
            .expect("temporary paths are UTF-8")
            .to_string();
        let rpc = self.rpc_addr.to_string();
        let mut all = vec![
            "--network",
            "regtest",
            "--datadir",
            &base,
            "--rpc-url",
            &rpc,
        ];
        all.extend_from_slice(args);
        cli(&all)
    }

    /// [`TestNode::cli`] that must succeed; its standard output.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{}: commons-cli {args:?} failed ({}):\n{}{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> anyhow::Result<String> {
        let response = http(self.metrics_addr, "GET", "/metrics", None, "")?;
        if response.status != 200 {
            bail!("{}: /metrics: HTTP {}", self.name, response.status);
        }
        Ok(response.body)
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("{}: not running", self.name)
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "{}: commonsd did not stop on SIGTERM in {START_TIMEOUT:?}",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills the process with SIGKILL (`kill -9`), with no chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same data directory and addresses.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            bail!("{}: still running", self.name);
        }
        self.launch()
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs `commons-cli` with `args` (bounded by a deadline) and returns its output.
pub fn cli(args: &[&str]) -> Output {
    cli_env(args, &[])
}

/// [`cli`] that must succeed; its standard output.
pub fn cli_succeeds(args: &[&str]) -> String {
    let out = cli(args);
    assert!(
        out.status.success(),
        "commons-cli {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`cli`] with environment variables set: none of the daemon's `COMMONS_*` variables (which
/// `commons-cli` reads too) but those in `env`.
pub fn cli_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary("commons-cli"));
    for var in DAEMON_ENV {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("commons-cli starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait for commons-cli").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("commons-cli output")
}

fn address_after(line: &str, marker: &str) -> anyhow::Result<SocketAddr> {
    let rest = line
        .split_once(marker)
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("no {marker:?} in {line:?}"))?;
    let end = rest.find([' ', '/']).unwrap_or(rest.len());
    rest[..end]
        .parse()
        .with_context(|| format!("bad address in {line:?}"))
}

/// A tier-1 regtest proposal locked over `[lock_start, lock_end)`, signed by the first
/// `signers` well-known regtest maintainer keys: its id (hex) and canonical bytes.
pub fn regtest_proposal(
    title: &str,
    lock_start: u64,
    lock_end: u64,
    signers: usize,
) -> (String, Vec<u8>) {
    let network = commons_test_util::regtest_network();
    let proposal =
        commons_test_util::proposal(&network, 1, title, lock_start, lock_end, 0..signers);
    (proposal.id(&network).to_hex(), proposal.encode())
}

/// The parts of a `gettally` answer that every node must agree on.
#[derive(Debug, Clone, PartialEq)]
pub struct TallyEssence {
    /// Weight and nodes per choice.
    pub choices: Choices,
    /// The denominator's node count.
    pub total_nodes: u64,
    /// The denominator's weight.
    pub total_weight: f64,
    /// The proposal's state.
    pub state: String,
    /// Whether override reached both thresholds.
    pub override_met: bool,
    /// Signers with a stored signal.
    pub signers: u64,
    /// Signers who do not count.
    pub uncounted_signers: u64,
}

/// The parts of `tally` that every node must agree on.
pub fn tally_essence(tally: &Tally) -> TallyEssence {
    TallyEssence {
        choices: tally.choices.clone(),
        total_nodes: tally.total_nodes,
        total_weight: tally.total_weight,
        state: tally.state.clone(),
        override_met: tally.override_met,
        signers: tally.signers,
        uncounted_signers: tally.uncounted_signers,
    }
}

/// Whether `node` counts every key of `keys` (hex) as qualified; the first that it does not,
/// as the reason.
pub fn counts_all(node: &TestNode, keys: &[String]) -> Result<(), String> {
    for key in keys {
        let u = node
            .uptime(key)
            .map_err(|e| format!("{}: {e}", node.name))?;
        if !u.status.as_ref().is_some_and(|s| s.qualified && s.counted) {
            return Err(format!("{}: {key} is not counted: {u:?}", node.name));
        }
    }
    Ok(())
}

/// Waits (up to `timeout`) until every node's tally of proposal `id` passes `check` and
/// all of them agree on its [`TallyEssence`]; the agreed essence.
pub fn agreed_tally<'a>(
    nodes: impl IntoIterator<Item = &'a TestNode> + Clone,
    id: &str,
    timeout: Duration,
    what: &str,
    check: impl Fn(&Tally) -> bool,
) -> TallyEssence {
    wait_until(timeout, what, || {
        let mut first: Option<TallyEssence> = None;
        for n in nodes.clone() {
            let t = n.tally(id).map_err(|e| format!("{}: {e}", n.name))?;
            if !check(&t) {
                return Err(format!("{}: {t:?}", n.name));
            }
            let e = tally_essence(&t);
            match &first {
                None => first = Some(e),
                Some(f) if *f != e => return Err(format!("{} disagrees: {e:?} vs {f:?}", n.name)),
                Some(_) => {}
            }
        }
        first.ok_or_else(|| "no nodes".to_string())
    })
}

/// Starts one `commonsd` per address, named `{prefix}{i}@{ip}`, each bootstrapping from all
/// started before it, so they form a full mesh. The first three are regtest's well-known
/// measurers (regtest qualifies nodes by measurers only), the others user nodes.
pub fn start_mesh(prefix: &str, ips: &[&str]) -> Vec<TestNode> {
    start_mesh_under(prefix, ips, |_| Launcher::default())
}

/// [`start_mesh`] with the i-th node started under `launcher(i)` (its network namespace, a
/// skewed clock).
pub fn start_mesh_under(
    prefix: &str,
    ips: &[&str],
    launcher: impl Fn(usize) -> Launcher,
) -> Vec<TestNode> {
    let mut nodes: Vec<TestNode> = Vec::new();
    for (i, ip) in ips.iter().enumerate() {
        let bootstrap = nodes
            .iter()
            .map(|n| n.multiaddr().expect("a started node has an address"))
            .collect();
        let spec = NodeSpec {
            ip: ip.to_string(),
            bootstrap,
            measurer: (i < commons_signaling::spec::REGTEST_MEASURERS).then_some(i),
        };
        let node = TestNode::start_under(
            &format!("{prefix}{i}@{ip}"),
            spec,
            binary("commonsd"),
            Vec::new(),
            launcher(i),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        nodes.push(node);
    }
    nodes
}

/// Writes `size` deterministic bytes that do not compress (xorshift from `seed`) to `path`,
/// in 1 MiB pieces, and returns their artifact digest.
pub fn write_artifact(path: &Path, size: u64, seed: u64) -> ArtifactDigest {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut hasher = ArtifactHasher::new();
    let mut state = seed | 1;
    let mut left = size;
    let mut piece = vec![0u8; 1 << 20];
    while left > 0 {
        let n = usize::try_from(left.min(piece.len() as u64)).unwrap();
        for word in piece[..n].chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
        }
        file.write_all(&piece[..n]).unwrap();
        hasher.update(&piece[..n]);
        left -= n as u64;
    }
    file.flush().unwrap();
    hasher.finish()
}

/// The manifest entry of an artifact named `name` with `digest`.
pub use commons_test_util::artifact as artifact_entry;

/// A regtest application release on channel `stable`, valid for an hour, signed by the
/// class's threshold of release signers.
pub fn regtest_release(version: &str, artifacts: Vec<Artifact>) -> ReleaseBundle {
    let spec = NetworkSpec::regtest();
    let class = spec.release_class(ReleaseClass::Application).unwrap();
    let t = now();
    let manifest = ReleaseManifest {
        source_commit: BoundedString::new("e2e0000").unwrap(),
        ..commons_test_util::release_manifest(
            version,
            ReleaseClass::Application,
            t - 10,
            t + 3600,
            artifacts,
        )
    };
    let signers = (0..7)
        .filter(|&i| {
            class
                .signers
                .contains(&regtest_maintainer_key(i).public_key())
        })
        .take(class.threshold as usize);
    commons_test_util::sign_release(&spec.network_id(), manifest, signers)
}

/// An in-test libp2p peer: a commons-p2p stack with a key of its own, on its own loopback
/// address and its own runtime, that plays whatever part a test gives it (a publisher, an
/// attacker). Shut down when dropped.
pub struct TestPeer {
    /// The runtime the peer's tasks run on.
    pub rt: tokio::runtime::Runtime,
    /// The peer's networking handle.
    pub handle: commons_p2p::P2pHandle,
}

impl TestPeer {
    /// Starts the peer on `ip`, dialing `bootstrap`, and runs `behave` on its events (it
    /// must drain them; dropping an inbound request's channel refuses the request).
    pub fn start<F>(
        ip: &str,
        bootstrap: Vec<commons_p2p::Multiaddr>,
        behave: impl FnOnce(
            tokio::sync::mpsc::Receiver<commons_p2p::P2pEvent>,
            commons_p2p::P2pHandle,
        ) -> F,
    ) -> TestPeer
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        Self::start_tuned(ip, bootstrap, |_| {}, behave)
    }

    /// [`TestPeer::start`] with `tune` applied to the peer's networking config (a shorter
    /// request timeout, say) after the harness's own settings.
    pub fn start_tuned<F>(
        ip: &str,
        bootstrap: Vec<commons_p2p::Multiaddr>,
        tune: impl FnOnce(&mut commons_p2p::P2pConfig),
        behave: impl FnOnce(
            tokio::sync::mpsc::Receiver<commons_p2p::P2pEvent>,
            commons_p2p::P2pHandle,
        ) -> F,
    ) -> TestPeer
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the test peer");
        let handle = rt.block_on(async {
            let mut config = commons_p2p::P2pConfig::new("regtest");
            config.listen_addrs =
                vec![format!("/ip4/{ip}/tcp/0").parse().expect("an IPv4 address")];
            config.outbound_source_ip = ip.parse().ok();
            config.bootstrap = bootstrap;
            config.discovery = false;
            // Every test process shares the loopback range: no colocation penalty.
            config.ip_colocation_threshold = 1_000;
            tune(&mut config);
            let mut registry = commons_p2p::prometheus_client::registry::Registry::default();
            let (handle, events, _task) = commons_p2p::P2pNode::spawn(
                config,
                commons_p2p::Keypair::generate_secp256k1(),
                &mut registry,
            )
            .expect("the test peer starts");
            tokio::spawn(behave(events, handle.clone()));
            handle
        });
        TestPeer { rt, handle }
    }

    /// The peer's id, as nodes list it in `getpeers`.
    pub fn peer_id(&self) -> String {
        self.handle.local_peer_id().to_string()
    }

    /// Publishes on a gossip topic; panics if no peer takes it.
    pub fn publish(&self, topic: commons_p2p::TopicKind, data: Vec<u8>) {
        let handle = self.handle.clone();
        self.rt
            .block_on(async move { handle.publish(topic, data).await })
            .unwrap_or_else(|e| panic!("test peer publish on {topic:?}: {e}"));
    }

    /// The peer's gossip mesh size on a topic.
    pub fn mesh(&self, topic: commons_p2p::TopicKind) -> usize {
        let handle = self.handle.clone();
        self.rt
            .block_on(async move { handle.mesh_peers(topic).await })
            .map_or(0, |p| p.len())
    }
}

impl Drop for TestPeer {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        let _ = self.rt.block_on(async move {
            tokio::time::timeout(Duration::from_secs(5), handle.shutdown()).await
        });
    }
}

/// A Prometheus server in a temporary directory, scraping one target every second (and
/// evaluating `rules`, if given, every second), listening on a free port of `ip`. Killed
/// when dropped.
pub struct Prometheus {
    child: Child,
    /// Where its HTTP API listens.
    pub addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `prometheus`; `None` when it is not installed.
    pub fn start(ip: &str, target: SocketAddr, rules: Option<&Path>) -> Option<Prometheus> {
        let dir = tempfile::Builder::new()
            .prefix("commons-e2e-prom-")
            .tempdir()
            .unwrap();
        let rule_files = rules.map_or(String::new(), |r| {
            format!("rule_files:\n  - {}\n", r.display())
        });
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 {rule_files}\
                 scrape_configs:\n  - job_name: commonsd\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        // A free port on the server's address (the listener is closed before the start).
        let port = std::net::TcpListener::bind((ip, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
        let log = dir.path().join("prometheus.log");
        let child = match Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => panic!("cannot run prometheus: {e}"),
        };
        Some(Prometheus {
            child,
            addr,
            log,
            _dir: dir,
        })
    }

    /// `data` of a GET on the HTTP API.
    pub fn api(&self, path: &str) -> Result<Value, String> {
        let r = http(self.addr, "GET", path, None, "").map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&r.body).map_err(|e| format!("{e}: {}", r.body))?;
        if v["status"] != "success" {
            return Err(r.body);
        }
        Ok(v["data"].clone())
    }

    /// An instant query; the `data.result` array.
    pub fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let mut encoded = String::new();
        for b in promql.bytes() {
            if b.is_ascii_alphanumeric() || b"_-.".contains(&b) {
                encoded.push(b as char);
            } else {
                encoded.push_str(&format!("%{b:02X}"));
            }
        }
        let data = self.api(&format!("/api/v1/query?query={encoded}"))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The last 15 lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP relay for slow-reader tests on loopback: it listens on `listen_ip` (a free port),
/// connects each client it accepts to `target` from `source_ip` (so the target sees that
/// address), passes on what the client sends at once, and what the target sends at
/// `bytes_per_sec` at most, so the target's answers back up as they would towards a peer
/// that reads very slowly. Its threads end with their connections; the listener lives as
/// long as the test process.
pub fn throttled_relay(
    listen_ip: &str,
    source_ip: &str,
    target: SocketAddr,
    bytes_per_sec: usize,
) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind((listen_ip, 0))?;
    let addr = listener.local_addr()?;
    let source: SocketAddr = format!("{source_ip}:0").parse()?;
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = connect_from(source, target) else {
                continue;
            };
            let (Ok(mut client_in), Ok(mut server_out)) = (client.try_clone(), server.try_clone())
            else {
                continue;
            };
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut client_in, &mut server_out);
                let _ = server_out.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || trickle(server, client, bytes_per_sec));
        }
    });
    Ok(addr)
}

fn connect_from(source: SocketAddr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.bind(&source.into())?;
    socket.connect_timeout(&target.into(), Duration::from_secs(10))?;
    Ok(socket.into())
}

/// Copies `from` to `to`, a tenth of `bytes_per_sec` every 100 ms at most.
fn trickle(mut from: TcpStream, mut to: TcpStream, bytes_per_sec: usize) {
    let mut buf = vec![0u8; (bytes_per_sec / 10).max(1)];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}
