//! A real Prometheus server scrapes a node's `/metrics` every second and sees the tally of
//! a proposal: `commons_tally_nodes{proposal, choice="support"}` reaches 1.

use std::time::Duration;

use commons_e2e::{Prometheus, now, phases, regtest_proposal, scenario, start_mesh, wait_until};
use commons_rpc::{SubmitProposalParams, method};

/// Three nodes (a node qualifies, and its signal counts, with attestations from two other
/// netgroups) and the Prometheus server. No other test uses 127.0.0.68-79.
const IPS: [&str; 3] = ["127.0.0.68", "127.0.0.72", "127.0.0.76"];
const PROMETHEUS_IP: &str = "127.0.0.79";

const WAIT: Duration = Duration::from_secs(45);

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
    let Some(prom) = Prometheus::start(PROMETHEUS_IP, node.metrics_addr, None) else {
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
        let result = prom
            .query(&promql)
            .map_err(|e| format!("{e}\n--- prometheus log ---\n{}", prom.log_tail()))?;
        match result.first().map(|r| r["value"][1].clone()) {
            Some(v) if v == "1" => Ok(result),
            other => Err(format!("{promql} = {other:?}")),
        }
    });
    assert_eq!(result.len(), 1, "{result:?}");

    // The latency histograms arrive as Prometheus histograms: the p99 of presence ingest
    // is a number, computed by Prometheus from the scraped buckets.
    let p99 = "histogram_quantile(0.99, sum by (le) (commons_ingest_duration_seconds_bucket{kind=\"presence\"}))";
    wait_until(WAIT, "Prometheus to compute the ingest p99", || {
        let result = prom.query(p99).map_err(|e| e.to_string())?;
        match result
            .first()
            .and_then(|r| r["value"][1].as_str()?.parse::<f64>().ok())
        {
            Some(v) if v.is_finite() && v > 0.0 => Ok(()),
            other => Err(format!("{p99} = {other:?}")),
        }
    });

    // The Grafana dashboard shipped in contrib/ asks only what Prometheus accepts, about
    // series this node really exports.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../contrib/grafana/commonsd-dashboard.json"),
        )
        .unwrap(),
    )
    .unwrap();
    // Every series name the node exports or declares: a family with no series yet (no
    // release verified, say) is declared by its `# TYPE` line.
    let mut exported = std::collections::BTreeSet::new();
    for line in node.metrics().unwrap().lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let mut words = declared.split(' ');
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "info" => &["_info"],
                _ => &[""],
            };
            exported.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#') {
            exported.extend(line.split(['{', ' ']).next().map(str::to_string));
        }
    }
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let runnable = expr
                .replace("$instance", ".*")
                .replace("$__rate_interval", "1m");
            prom.query(&runnable)
                .unwrap_or_else(|e| panic!("dashboard panel {:?}: {expr}: {e}", panel["title"]));
            for name in metric_names(expr) {
                assert!(
                    exported.contains(&name),
                    "dashboard panel {:?} uses {name}, which the node does not export",
                    panel["title"]
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} dashboard queries");
    phase(&format!("{checked} dashboard queries accepted"));
    phase("passed");
}

/// The series names a PromQL expression reads (`commons_*` and `process_*`).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
        rest = &rest[at..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let word = &rest[..end];
        if word.starts_with("commons_") || word.starts_with("process_") {
            names.push(word.to_string());
        }
        rest = &rest[end..];
    }
    names
}
