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
    phase("passed");
}
