//! A real Prometheus server scrapes a node's `/metrics` every second and sees the tally of
//! a proposal: `commons_tally_nodes{proposal, choice="support"}` reaches 1.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use commons_e2e::{http, now, phases, regtest_proposal, scenario, start_mesh, wait_until};
use commons_rpc::{SubmitProposalParams, method};
use serde_json::Value;

/// Three nodes (a node qualifies, and its signal counts, with attestations from two other
/// netgroups) and the Prometheus server. No other test uses 127.0.0.68-79.
const IPS: [&str; 3] = ["127.0.0.68", "127.0.0.72", "127.0.0.76"];
const PROMETHEUS_IP: &str = "127.0.0.79";

const WAIT: Duration = Duration::from_secs(45);

/// A Prometheus server, killed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `prometheus` scraping `target` every second; `None` if it is not installed.
    fn start(target: SocketAddr) -> Option<Prometheus> {
        let dir = tempfile::Builder::new()
            .prefix("commons-e2e-prom-")
            .tempdir()
            .unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: commonsd\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        // A free port on the server's address (the listener is closed before the start).
        let port = TcpListener::bind((PROMETHEUS_IP, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("{PROMETHEUS_IP}:{port}").parse().unwrap();
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

    fn log_tail(path: &Path) -> String {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// An instant query; the `data.result` array.
    fn query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let mut encoded = String::new();
        for b in promql.bytes() {
            if b.is_ascii_alphanumeric() || b"_-.".contains(&b) {
                encoded.push(b as char);
            } else {
                encoded.push_str(&format!("%{b:02X}"));
            }
        }
        let r = http(
            self.addr,
            "GET",
            &format!("/api/v1/query?query={encoded}"),
            None,
            "",
        )
        .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&r.body).map_err(|e| format!("{e}: {}", r.body))?;
        if v["status"] != "success" {
            return Err(r.body);
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn proposal(title: &str) -> (String, String) {
    let t = now();
    let (id, bytes) = regtest_proposal(title, t - 1, t + 300, 3);
    (id, hex::encode(bytes))
}

#[test]
fn prometheus_scrapes_the_tally() {
    let phase = phases("prometheus_scrape");
    let nodes = start_mesh("n", &IPS);
    let node = &nodes[0];
    let Some(prom) = Prometheus::start(node.metrics_addr) else {
        scenario(
            "  NOTICE: prometheus not found (Debian package prometheus, scripts/setup.sh); scrape test skipped",
        );
        return;
    };
    phase(&format!(
        "prometheus at {} scrapes {} every 1s",
        prom.addr, node.metrics_addr
    ));

    let key = node.public_key().unwrap();
    wait_until(WAIT, "the node qualified and counted", || {
        let u = node.uptime(&key).map_err(|e| e.to_string())?;
        if u.status.as_ref().is_some_and(|s| s.qualified && s.counted) {
            Ok(())
        } else {
            Err(format!("{u:?}"))
        }
    });
    let (id, hex) = proposal("e2e prometheus");
    let r = node
        .call::<method::SubmitProposal>(&SubmitProposalParams { hex })
        .unwrap();
    assert_eq!(r.id, id, "{r:?}");
    node.cli_ok(&["signal", &id, "support"]);

    let promql = format!("commons_tally_nodes{{proposal=\"{id}\",choice=\"support\"}}");
    let result = wait_until(WAIT, "Prometheus to report the support", || {
        let result = prom.query(&promql).map_err(|e| {
            format!(
                "{e}\n--- prometheus log ---\n{}",
                Prometheus::log_tail(&prom.log)
            )
        })?;
        match result.first().map(|r| r["value"][1].clone()) {
            Some(v) if v == "1" => Ok(result),
            other => Err(format!("{promql} = {other:?}")),
        }
    });
    assert_eq!(result.len(), 1, "{result:?}");
    phase("passed");
}
