//! A real Prometheus loads the alert rules of `contrib/prometheus/commonsd-alerts.yml`,
//! scrapes a real `commonsd` and evaluates them against it without an error: a lone node
//! has no peers, so `CommonsdNoPeers` turns pending, and the rules about series the node
//! exports evaluate cleanly.

use std::path::Path;
use std::time::Duration;

use commons_e2e::{NodeSpec, Prometheus, TestNode, phases, scenario, wait_until};
use serde_json::Value;

const NODE_IP: &str = "127.0.0.172";

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
    let rules = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib/prometheus/commonsd-alerts.yml")
        .canonicalize()
        .unwrap();
    let Some(prometheus) = Prometheus::start(NODE_IP, node.metrics_addr, Some(&rules)) else {
        scenario(
            "  NOTICE: prometheus not found (Debian package prometheus, scripts/setup.sh); live alert rules test skipped",
        );
        return;
    };
    // Every rule of the file, however many there are.
    let in_file = std::fs::read_to_string(&rules)
        .unwrap()
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    assert!(in_file >= 9, "{in_file} alert rules in {}", rules.display());
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
        if rules.len() == in_file && evaluated {
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
