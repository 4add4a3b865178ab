//! The `commons-sim` binary as a user runs it.

use std::path::Path;
use std::process::{Command, Output};

const SCENARIO: &str = r#"
[honest]
nodes = 300
ipv6_share = 0.2
attesters = 5
uptime = { dist = "uniform", min = 0, max = 120 }
choices = { support = 0.2, override = 0.1 }

[[attacker]]
name = "proxies"
strategy = "rented-ips"
ips = 20
cost_per_ip_day = 0.1

[[attacker]]
name = "box"
strategy = "many-keys-one-ip"
keys = 10
"#;

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_commons-sim"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn sweep_run(scenario: &str, out: &Path, seed: &str) -> Vec<u8> {
    let out_s = out.display().to_string();
    let o = sim(&[
        "sybil",
        "--scenario",
        scenario,
        "--sweep",
        "attacker.proxies.ips=10..40:3",
        "--sweep",
        "policy.sqrt_weighting=true,false",
        "--set",
        "honest.nodes=250",
        "--runs",
        "2",
        "--seed",
        seed,
        "--jobs",
        "2",
        "--no-timing",
        "--quiet",
        "--out",
        &out_s,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::read(out.join("runs.csv")).unwrap()
}

#[test]
fn the_same_seed_gives_a_byte_identical_csv() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(dir.path(), "s.toml", SCENARIO);
    let a = sweep_run(&scenario, &dir.path().join("a"), "11");
    let b = sweep_run(&scenario, &dir.path().join("b"), "11");
    assert_eq!(a, b);
    // Meaningful: the CSV does depend on the seed, and holds 3 * 2 points * 2 runs rows.
    let c = sweep_run(&scenario, &dir.path().join("c"), "12");
    assert_ne!(a, c);
    let text = String::from_utf8(a).unwrap();
    assert_eq!(text.lines().count(), 1 + 12);
    assert!(text.starts_with("point,run,seed,attacker.proxies.ips,policy.sqrt_weighting,"));
    // With --no-timing the summary is reproducible too.
    let sa = std::fs::read(dir.path().join("a/summary.json")).unwrap();
    let sb = std::fs::read(dir.path().join("b/summary.json")).unwrap();
    assert_eq!(sa, sb);
    let svg = std::fs::read_to_string(dir.path().join("a/attacker_share_vs_cost.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("sqrt off"));
}

#[test]
fn timings_go_to_the_summary_only() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(dir.path(), "s.toml", SCENARIO);
    let out = dir.path().join("out");
    let o = sim(&[
        "sybil",
        "--scenario",
        &scenario,
        "--quiet",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert!(!csv.contains("ms"));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert!(summary["timing"]["total_ms"].is_u64());
}

fn expect_usage_error(args: &[&str], needles: &[&str]) {
    let o = sim(args);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    for needle in needles {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
}

#[test]
fn a_malformed_scenario_names_the_line_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").display().to_string();
    let unknown = write(
        dir.path(),
        "unknown.toml",
        "[honest]\nnodes = 10\n\n[policy]\nquorom = 3\n",
    );
    expect_usage_error(
        &["sybil", "--scenario", &unknown, "--out", &out],
        &["unknown.toml", "line 5", "policy.quorom", "unknown field"],
    );
    let wrong_type = write(
        dir.path(),
        "type.toml",
        "[honest]\nnodes = 10\n\n[[attacker]]\nstrategy = \"patient\"\nips = \"many\"\n",
    );
    expect_usage_error(
        &["sybil", "--scenario", &wrong_type, "--out", &out],
        &["line 6", "attacker[0].ips", "invalid type"],
    );
    let bad_strategy = write(
        dir.path(),
        "strategy.toml",
        "[honest]\nnodes = 10\n[[attacker]]\nstrategy = \"botnet\"\n",
    );
    expect_usage_error(
        &["sybil", "--scenario", &bad_strategy, "--out", &out],
        &["line 4", "botnet"],
    );
    let out_of_range = write(
        dir.path(),
        "range.toml",
        "[honest]\nnodes = 10\nipv6_share = 2\n",
    );
    expect_usage_error(
        &["sybil", "--scenario", &out_of_range, "--out", &out],
        &["honest.ipv6_share"],
    );
    expect_usage_error(
        &["sybil", "--scenario", "/nonexistent/s.toml", "--out", &out],
        &["cannot read"],
    );
}

#[test]
fn bad_set_and_sweep_syntax_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(dir.path(), "s.toml", SCENARIO);
    let out = dir.path().join("out").display().to_string();
    let base = [
        "sybil",
        "--scenario",
        scenario.as_str(),
        "--out",
        out.as_str(),
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    let cases: [(&[&str], &[&str]); 7] = [
        (&["--set", "honest.nodes"], &["bad --set", "KEY=VALUE"]),
        (
            &["--set", "honest.nods=5"],
            &["--set honest.nods=5", "unknown field `nods`"],
        ),
        (
            &["--set", "honest.nodes=many"],
            &["--set honest.nodes=many", "invalid type"],
        ),
        (
            &["--set", "attacker.nobody.ips=5"],
            &["no attacker `nobody`"],
        ),
        (
            &["--sweep", "policy.quorum=1..5"],
            &["bad --sweep", "STEPS"],
        ),
        (
            &["--sweep", "policy.quorum=a..5:3"],
            &["bad --sweep", "`a` is not a number"],
        ),
        (
            &["--sweep", "policy.quorum=0..2:3"],
            &["sweep point policy.quorum=0", "at least 1"],
        ),
    ];
    for (extra, needles) in cases {
        let args = with(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        expect_usage_error(&args, needles);
    }
}

#[test]
fn a_sweep_over_the_rule_draws_one_line_per_rule_on_the_same_honest_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(dir.path(), "s.toml", SCENARIO);
    let out = dir.path().join("out");
    let o = sim(&[
        "sybil",
        "--scenario",
        &scenario,
        "--sweep",
        "attacker.proxies.ips=10..30:2",
        "--sweep",
        "policy.qualification=peer-attestations,measurers,tickets",
        "--quiet",
        "--no-timing",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 6);
    let rules: Vec<&str> = rows.iter().map(|r| r[col("qualification")]).collect();
    assert_eq!(
        rules,
        ["peer-attestations", "measurers", "tickets"].repeat(2)
    );
    // The world is the same under every rule: so is its honest population.
    assert!(rows.iter().all(|r| r[col("honest_nodes")] == "300"));
    assert!(
        rows.iter()
            .all(|r| r[col("measurers")] == "9" && r[col("measurer_quorum")] == "5")
    );
    let svg = std::fs::read_to_string(out.join("attacker_share_vs_cost.svg")).unwrap();
    for rule in ["peer-attestations", "measurers", "tickets"] {
        assert!(svg.contains(rule), "no line for {rule}");
    }
}

#[test]
fn every_shipped_scenario_runs_under_every_rule() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 11);
    let tmp = tempfile::tempdir().unwrap();
    for path in names {
        // Shrunk to a few hundred honest nodes: the point is that each parses and runs.
        let o = sim(&[
            "sybil",
            "--scenario",
            &path.display().to_string(),
            "--set",
            "honest.nodes=400",
            "--set",
            "honest.ipv4_slash24s=150",
            "--set",
            "honest.ipv4_slash16s=40",
            "--set",
            "honest.ipv6_slash48s=60",
            "--set",
            "honest.ipv6_slash32s=20",
            "--sweep",
            "policy.qualification=peer-attestations,measurers,tickets",
            "--quiet",
            "--out",
            &tmp.path().display().to_string(),
        ]);
        assert!(o.status.success(), "{}: {}", path.display(), stderr(&o));
    }
}
