//! The Prometheus alert rules shipped in `contrib/prometheus/` are valid (`promtool check
//! rules`) and fire exactly as their unit tests say (`promtool test rules`), and every
//! `commons_*` metric they use is one a running node exports, so a rule cannot silently
//! watch a series that no longer exists.

use std::path::{Path, PathBuf};
use std::process::Command;

fn contrib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/prometheus")
}

/// promtool, or `None` when the runner said to do without Prometheus.
fn promtool() -> Option<Command> {
    if std::env::var_os("COMMONS_SKIP_PROMETHEUS").is_some_and(|v| v == "1") {
        eprintln!("NOTICE: COMMONS_SKIP_PROMETHEUS=1: alert rules not checked");
        return None;
    }
    let mut cmd = Command::new("promtool");
    cmd.current_dir(contrib());
    Some(cmd)
}

fn run(mut cmd: Command, args: &[&str]) {
    let out = cmd.args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run promtool ({e}): scripts/setup.sh installs it (Debian package prometheus)"
        )
    });
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_check_and_pass_their_unit_tests() {
    let Some(cmd) = promtool() else { return };
    run(cmd, &["check", "rules", "commonsd-alerts.yml"]);
    let Some(cmd) = promtool() else { return };
    run(cmd, &["test", "rules", "commonsd-alerts.test.yml"]);
}

#[test]
fn alert_rules_use_metrics_the_node_exports() {
    let rules = std::fs::read_to_string(contrib().join("commonsd-alerts.yml")).unwrap();
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/OPERATING.md"))
            .unwrap();
    let mut used: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("commons_") || w.starts_with("process_"))
        .collect();
    used.sort();
    used.dedup();
    assert!(used.len() >= 8, "{used:?}");
    // The node's metrics, and the self-check's, which has a collector of its own.
    let source = [
        include_str!("../src/metrics.rs"),
        include_str!("../src/selfcheck.rs"),
    ]
    .concat();
    for name in used {
        // The series name as the node's code spells it: without the suffixes the encoder
        // adds for the unit and type.
        let stem = ["_seconds", "_total", "_info"]
            .iter()
            .fold(name, |n, suffix| n.strip_suffix(suffix).unwrap_or(n));
        assert!(
            source.contains(&format!("\"{stem}\"")),
            "{name} in commonsd-alerts.yml is not a metric the node exports"
        );
        assert!(
            docs.contains(name),
            "{name} is not documented in docs/OPERATING.md"
        );
    }
}
