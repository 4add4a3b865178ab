//! A real Prometheus loads the alert rules of `contrib/prometheus/commonsd-alerts.yml`,
//! scrapes a real `commonsd` and evaluates them against it without an error: a lone node
//! has no peers, so `CommonsdNoPeers` turns pending, and the rules about series the node
//! exports evaluate cleanly.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use commons_e2e::{NodeSpec, TestNode, http, phases, scenario, wait_until};
use serde_json::Value;

const NODE_IP: &str = "127.0.0.172";

/// A Prometheus server, killed when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `prometheus` scraping `target` every second, with the shipped rules evaluated
    /// every second; `None` when it is not installed.
    fn start(target: SocketAddr) -> Option<Prometheus> {
        let dir = tempfile::Builder::new()
            .prefix("commons-e2e-rules-")
            .tempdir()
            .unwrap();
        let rules = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../contrib/prometheus/commonsd-alerts.yml")
            .canonicalize()
            .unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: commonsd\n    static_configs:\n      - targets: ['{target}']\n",
                rules.display()
            ),
        )
        .unwrap();
        let port = TcpListener::bind((NODE_IP, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("{NODE_IP}:{port}").parse().unwrap();
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
    fn api(&self, path: &str) -> Result<Value, String> {
        let r = http(self.addr, "GET", path, None, "").map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&r.body).map_err(|e| format!("{e}: {}", r.body))?;
        if v["status"] != "success" {
            return Err(r.body);
        }
        Ok(v["data"].clone())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

#[test]
fn prometheus_loads_and_evaluates_the_alert_rules() {
    let phase = phases("alert_rules_live");
    let node = TestNode::start(
        "alerts",
        NodeSpec {
            ip: NODE_IP.into(),
            bootstrap: vec![],
            measurer: None,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let Some(prometheus) = Prometheus::start(node.metrics_addr) else {
        scenario(
            "  NOTICE: prometheus not found (Debian package prometheus, scripts/setup.sh); live alert rules test skipped",
        );
        return;
    };
    phase("prometheus loads the rules and evaluates every one without an error");
    let rules = wait_until(Duration::from_secs(60), "the rules evaluated", || {
        let data = prometheus
            .api("/api/v1/rules")
            .map_err(|e| format!("{e}\n{}", prometheus.log_tail()))?;
        let rules: Vec<Value> = data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let evaluated = rules.iter().all(|r| {
            r["health"] == "ok"
                && !r["lastEvaluation"]
                    .as_str()
                    .unwrap_or("0001")
                    .starts_with("0001")
        });
        if rules.len() == 8 && evaluated {
            Ok(rules)
        } else {
            Err(format!("{rules:?}"))
        }
    });
    for rule in &rules {
        assert!(
            rule["lastError"].as_str().unwrap_or("").is_empty(),
            "{rule}"
        );
    }
    phase("a lone node has no peers: CommonsdNoPeers turns pending against it");
    wait_until(Duration::from_secs(60), "CommonsdNoPeers pending", || {
        let data = prometheus.api("/api/v1/alerts")?;
        let alerts = data["alerts"].as_array().cloned().unwrap_or_default();
        let pending = alerts.iter().any(|a| {
            a["labels"]["alertname"] == "CommonsdNoPeers"
                && a["labels"]["instance"] == node.metrics_addr.to_string()
                && a["state"] == "pending"
        });
        if pending {
            Ok(())
        } else {
            Err(format!("{alerts:?}"))
        }
    });
    // Scraped and up, so the node-down alert stays quiet.
    let data = prometheus.api("/api/v1/alerts").unwrap();
    let alerts = data["alerts"].as_array().cloned().unwrap_or_default();
    assert!(
        !alerts
            .iter()
            .any(|a| a["labels"]["alertname"] == "CommonsdDown"),
        "{alerts:?}"
    );
}
