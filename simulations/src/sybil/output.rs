//! What a `sybil` invocation writes: `runs.csv`, `summary.json` and
//! `attacker_share_vs_cost.svg`.
//!
//! `runs.csv` holds only what the seed determines, never a time, so the same seed gives the
//! same bytes; timings go to `summary.json` (unless `--no-timing`).

use std::path::Path;

use plotters::prelude::*;
use serde_json::{Value, json};

use crate::error::SimError;
use crate::sybil::engine::Outcome;
use crate::sybil::scenario::value_text;
use crate::sybil::{Point, Results};

/// The plot's file name.
pub const PLOT_FILE: &str = "attacker_share_vs_cost.svg";

fn io_error(path: &Path, e: impl std::fmt::Display) -> SimError {
    SimError::Runtime(format!("cannot write {}: {e}", path.display()))
}

/// Writes every output file; returns their names.
pub fn write_all(
    dir: &Path,
    origin: &str,
    sets: &[String],
    results: &Results,
    timing: bool,
) -> Result<Vec<String>, SimError> {
    let csv_path = dir.join("runs.csv");
    std::fs::write(&csv_path, csv(results)).map_err(|e| io_error(&csv_path, e))?;
    let json_path = dir.join("summary.json");
    let summary = serde_json::to_string_pretty(&summary(origin, sets, results, timing))
        .expect("a JSON value always serializes");
    std::fs::write(&json_path, summary + "\n").map_err(|e| io_error(&json_path, e))?;
    let plot_path = dir.join(PLOT_FILE);
    plot(&plot_path, results).map_err(|e| io_error(&plot_path, e))?;
    Ok(vec![
        csv_path.display().to_string(),
        json_path.display().to_string(),
        plot_path.display().to_string(),
    ])
}

fn cell(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The CSV text: a header and one row per run, ordered by point, then run.
pub fn csv(results: &Results) -> String {
    let mut out = String::new();
    let mut header: Vec<String> = ["point", "run", "seed"].map(String::from).to_vec();
    header.extend(results.sweeps.iter().map(|s| s.key.clone()));
    header.extend(
        [
            "base",
            "quorum",
            "min_uptime_epochs",
            "window_epochs",
            "ipv4_prefix",
            "ipv6_prefix",
            "ip_dedup",
            "sqrt_weighting",
            "tier",
            "override_weight_threshold",
            "override_node_threshold",
            "qualification",
            "measurers",
            "measurer_quorum",
            "liveness_epochs",
            "anchors",
            "tickets_per_anchor",
            "anchors_required",
            "honest_nodes",
            "honest_qualified",
            "honest_counted",
            "attacker_keys",
            "attacker_ips",
            "attacker_qualified",
            "attacker_counted",
            "total_nodes",
            "honest_weight",
            "attacker_weight",
            "total_weight",
            "honest_share",
            "attacker_share",
            "attacker_node_share",
            "override_weight_share",
            "override_node_share",
            "override_triggered",
            "attacker_cost",
            "honest_weight_nodefence",
            "honest_weight_lost",
            "attacker_weight_nodefence",
            "attacker_share_nodefence",
        ]
        .map(String::from),
    );
    if let Some(first) = results.outcomes.iter().flatten().next() {
        for a in &first.attackers {
            for field in ["counted", "weight", "cost"] {
                header.push(format!("{}_{field}", a.name));
            }
        }
    }
    out.push_str(&header.iter().map(|h| cell(h)).collect::<Vec<_>>().join(","));
    out.push('\n');
    for (p, (point, outcomes)) in results.points.iter().zip(&results.outcomes).enumerate() {
        for (r, o) in outcomes.iter().enumerate() {
            let mut row: Vec<String> = vec![p.to_string(), r.to_string(), o.seed.to_string()];
            row.extend(point.values.iter().map(|v| cell(&value_text(v))));
            let pol = &point.resolved.policy;
            let tier = &point.resolved.tier;
            let qual = &point.resolved.qualifying;
            row.extend([
                point.scenario.policy.base.name().to_string(),
                pol.attestation_quorum.to_string(),
                pol.min_uptime_epochs.to_string(),
                pol.uptime_window_epochs.to_string(),
                pol.netgroup_ipv4_prefix.to_string(),
                pol.netgroup_ipv6_prefix.to_string(),
                pol.ip_dedup.to_string(),
                pol.sqrt_weighting.to_string(),
                tier.tier.to_string(),
                tier.override_weight_share.to_string(),
                tier.override_node_share.to_string(),
                qual.rule.name().to_string(),
                qual.measurers.to_string(),
                qual.measurer_quorum.to_string(),
                qual.liveness_epochs.to_string(),
                qual.anchors.to_string(),
                qual.tickets_per_anchor.to_string(),
                qual.anchors_required.to_string(),
                o.honest_nodes.to_string(),
                o.honest_qualified.to_string(),
                o.honest_counted.to_string(),
                o.attacker_keys.to_string(),
                o.attacker_ips.to_string(),
                o.attacker_qualified.to_string(),
                o.attacker_counted.to_string(),
                o.total_nodes.to_string(),
                format!("{:.9}", o.honest_weight()),
                format!("{:.9}", o.attacker_weight()),
                format!("{:.9}", o.total_weight()),
                format!("{:.6}", o.honest_share()),
                format!("{:.6}", o.attacker_share()),
                format!("{:.6}", o.attacker_node_share()),
                format!("{:.6}", o.override_weight_share),
                format!("{:.6}", o.override_node_share),
                o.overridden.to_string(),
                format!("{:.2}", o.attacker_cost),
                format!("{:.9}", o.honest_weight_nodefence()),
                format!("{:.9}", o.honest_weight_lost()),
                format!("{:.9}", o.attacker_weight_nodefence()),
                format!("{:.6}", o.attacker_share_nodefence()),
            ]);
            for a in &o.attackers {
                row.push(a.counted.to_string());
                row.push(format!("{:.9}", a.weight_units as f64 / 1e9));
                row.push(format!("{:.2}", a.cost));
            }
            out.push_str(&row.join(","));
            out.push('\n');
        }
    }
    out
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

fn stats(outcomes: &[Outcome], f: impl Fn(&Outcome) -> f64) -> Value {
    let values: Vec<f64> = outcomes.iter().map(f).collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    json!({ "mean": mean(values.iter().copied()), "min": min, "max": max })
}

fn policy_json(point: &Point) -> Value {
    let p = &point.resolved.policy;
    let t = &point.resolved.tier;
    let q = &point.resolved.qualifying;
    json!({
        "base": point.scenario.policy.base.name(),
        "quorum": p.attestation_quorum,
        "min_uptime_epochs": p.min_uptime_epochs,
        "window_epochs": p.uptime_window_epochs,
        "ipv4_prefix": p.netgroup_ipv4_prefix,
        "ipv6_prefix": p.netgroup_ipv6_prefix,
        "ip_dedup": p.ip_dedup,
        "sqrt_weighting": p.sqrt_weighting,
        "tier": t.tier,
        "override_weight_threshold": t.override_weight_share,
        "override_node_threshold": t.override_node_share,
        "qualification": q.rule.name(),
        "measurers": q.measurers,
        "measurer_quorum": q.measurer_quorum,
        "liveness_epochs": q.liveness_epochs,
        "anchors": q.anchors,
        "tickets_per_anchor": q.tickets_per_anchor,
        "anchors_required": q.anchors_required,
    })
}

/// The summary: the invocation, per point the policy and mean results, and (unless
/// `timing` is off) the run times.
pub fn summary(origin: &str, sets: &[String], results: &Results, timing: bool) -> Value {
    let first = &results.points[0].scenario;
    let points: Vec<Value> = results
        .points
        .iter()
        .zip(&results.outcomes)
        .enumerate()
        .map(|(i, (point, outcomes))| {
            let values: serde_json::Map<String, Value> = results
                .sweeps
                .iter()
                .zip(&point.values)
                .map(|(s, v)| (s.key.clone(), Value::String(value_text(v))))
                .collect();
            json!({
                "point": i,
                "values": values,
                "policy": policy_json(point),
                "runs": outcomes.len(),
                "attacker_share": stats(outcomes, Outcome::attacker_share),
                "honest_share": stats(outcomes, Outcome::honest_share),
                "attacker_weight": stats(outcomes, Outcome::attacker_weight),
                "honest_weight": stats(outcomes, Outcome::honest_weight),
                "honest_weight_lost": stats(outcomes, Outcome::honest_weight_lost),
                "attacker_share_nodefence": stats(outcomes, Outcome::attacker_share_nodefence),
                "attacker_cost": stats(outcomes, |o| o.attacker_cost),
                "overridden_runs": outcomes.iter().filter(|o| o.overridden).count(),
                "attackers": outcomes.first().map(|o| &o.attackers),
            })
        })
        .collect();
    let mut summary = json!({
        "scenario": first.name,
        "description": first.description,
        "file": origin,
        "seed": results.seed,
        "runs_per_point": results.outcomes.first().map_or(0, Vec::len),
        "total_runs": results.outcomes.iter().map(Vec::len).sum::<usize>(),
        "sets": sets,
        "sweeps": results.sweeps.iter().map(|s| json!({
            "key": s.key,
            "values": s.values.iter().map(value_text).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "points": points,
    });
    if timing {
        let runs_ms: Vec<Vec<u64>> = results
            .outcomes
            .iter()
            .map(|o| o.iter().map(|o| o.runtime_ms).collect())
            .collect();
        let phases: Vec<Vec<Value>> = results
            .outcomes
            .iter()
            .map(|o| {
                o.iter()
                    .map(|o| {
                        let m: serde_json::Map<String, Value> = o
                            .phases_ms
                            .iter()
                            .map(|(k, v)| (k.to_string(), json!(v)))
                            .collect();
                        Value::Object(m)
                    })
                    .collect()
            })
            .collect();
        summary["timing"] = json!({
            "total_ms": results.total_ms,
            "threads": results.threads,
            "run_ms": runs_ms,
            "phase_ms": phases,
        });
    }
    summary
}

/// The policy fields that differ between points, as a label per point ("as specified" when
/// all points share one policy).
fn policy_labels(points: &[Point]) -> Vec<String> {
    let fields = |p: &Point| -> Vec<(&'static str, String)> {
        let pol = &p.resolved.policy;
        let t = &p.resolved.tier;
        let q = &p.resolved.qualifying;
        vec![
            ("", q.rule.name().to_string()),
            ("base", p.scenario.policy.base.name().to_string()),
            ("q", pol.attestation_quorum.to_string()),
            ("m", pol.min_uptime_epochs.to_string()),
            ("W", pol.uptime_window_epochs.to_string()),
            ("v4 /", pol.netgroup_ipv4_prefix.to_string()),
            ("v6 /", pol.netgroup_ipv6_prefix.to_string()),
            ("dedup ", on_off(pol.ip_dedup)),
            ("sqrt ", on_off(pol.sqrt_weighting)),
            ("threshold ", t.override_weight_share.to_string()),
            ("A", q.measurers.to_string()),
            ("q_m", q.measurer_quorum.to_string()),
            ("L", q.liveness_epochs.to_string()),
            ("anchors", q.anchors.to_string()),
            ("tickets", q.tickets_per_anchor.to_string()),
            ("K", q.anchors_required.to_string()),
        ]
    };
    let all: Vec<Vec<(&str, String)>> = points.iter().map(fields).collect();
    let varying: Vec<usize> = (0..all[0].len())
        .filter(|&i| all.iter().any(|f| f[i].1 != all[0][i].1))
        .collect();
    all.iter()
        .map(|f| {
            if varying.is_empty() {
                let pick = [0, 2, 3, 5, 7, 8];
                let text: Vec<String> = pick.iter().map(|&i| label_part(f[i].0, &f[i].1)).collect();
                format!("policy: {}", text.join(", "))
            } else {
                varying
                    .iter()
                    .map(|&i| label_part(f[i].0, &f[i].1))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        })
        .collect()
}

fn on_off(b: bool) -> String {
    if b { "on".into() } else { "off".into() }
}

fn label_part(name: &str, value: &str) -> String {
    if name.is_empty() || name.ends_with(' ') || name.ends_with('/') {
        format!("{name}{value}")
    } else {
        format!("{name}={value}")
    }
}

/// One line per policy: mean attacker cost against mean attacker weight share over each
/// point's runs; the tier's weight threshold as a dashed line.
fn plot(path: &Path, results: &Results) -> Result<(), String> {
    let labels = policy_labels(&results.points);
    let costs: Vec<f64> = results
        .outcomes
        .iter()
        .map(|o| mean(o.iter().map(|o| o.attacker_cost)))
        .collect();
    let keys: Vec<f64> = results
        .outcomes
        .iter()
        .map(|o| mean(o.iter().map(|o| o.attacker_keys as f64)))
        .collect();
    let spread = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    };
    // A sweep that leaves the cost alone (a free clique, a policy-only sweep) still needs an
    // x axis: the first swept number outside the policy, else the attacker's keys.
    let swept = results.sweeps.iter().enumerate().find_map(|(i, sweep)| {
        let values: Option<Vec<f64>> = results
            .points
            .iter()
            .map(|p| match &p.values[i] {
                toml::Value::Integer(v) => Some(*v as f64),
                toml::Value::Float(v) => Some(*v),
                _ => None,
            })
            .collect();
        values
            .filter(|v| !sweep.key.starts_with("policy.") && spread(v).1 > spread(v).0)
            .map(|v| (v, sweep.key.clone()))
    });
    let (xs, x_desc) = if spread(&costs).1 > spread(&costs).0 {
        (costs, "attacker cost".to_string())
    } else if let Some((values, key)) = swept {
        (values, key)
    } else {
        (keys, "attacker keys".to_string())
    };
    let shares: Vec<f64> = results
        .outcomes
        .iter()
        .map(|o| mean(o.iter().map(Outcome::attacker_share)))
        .collect();
    let mut lines: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let point = (xs[i], shares[i]);
        match lines.iter_mut().find(|(l, _)| l == label) {
            Some((_, pts)) => pts.push(point),
            None => lines.push((label.clone(), vec![point])),
        }
    }
    for (_, pts) in &mut lines {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let thresholds: Vec<f64> = results
        .points
        .iter()
        .map(|p| p.resolved.tier.override_weight_share)
        .collect();
    let threshold = thresholds
        .iter()
        .all(|&t| t == thresholds[0])
        .then_some(thresholds[0]);
    let (x_lo, mut x_hi) = spread(&xs);
    if x_hi <= x_lo {
        x_hi = x_lo + 1.0;
    }
    let y_max = shares
        .iter()
        .copied()
        .chain(threshold)
        .fold(0.05f64, f64::max);
    let y_hi = (y_max * 1.1).min(1.0);
    let name = &results.points[0].scenario.name;

    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{name}: attacker weight share vs {x_desc}"),
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(x_lo..x_hi, 0f64..y_hi)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_desc.as_str())
        .y_desc("attacker share of the total weight")
        .draw()
        .map_err(|e| e.to_string())?;
    if let Some(t) = threshold {
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(x_lo, t), (x_hi, t)],
                6,
                4,
                grey.stroke_width(1),
            ))
            .map_err(|e| e.to_string())?
            .label(format!("override weight threshold {t}"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
    }
    for (i, (label, pts)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
