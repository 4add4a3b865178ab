//! `--set KEY=VALUE` and `--sweep`: values changed on the command line, applied to the
//! scenario document before it is read, so that their errors name the value that caused them.

use serde::Deserialize;

use super::Scenario;
use crate::error::SimError;

/// One `--set key=value` or sweep value applied to the scenario document. Keys are dotted
/// paths (`honest.nodes`, `policy.quorum`); `attacker.NAME.field` or `attacker.INDEX.field`
/// picks one attacker by its name (or strategy) or position.
pub fn apply_value(doc: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("`{key}` is not a dotted key such as honest.nodes"));
    }
    let mut table = doc;
    let mut i = 0;
    while i + 1 < parts.len() {
        let part = parts[i];
        let entry = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            toml::Value::Array(items) => {
                let Some(pick) = parts.get(i + 1).copied() else {
                    return Err(format!("`{key}`: say which {part}, by name or index"));
                };
                let index = match pick.parse::<usize>() {
                    Ok(n) => Some(n),
                    Err(_) => items.iter().position(|item| {
                        let t = item.as_table();
                        let name = t.and_then(|t| t.get("name")).and_then(|v| v.as_str());
                        let strategy = t.and_then(|t| t.get("strategy")).and_then(|v| v.as_str());
                        name.or(strategy) == Some(pick)
                    }),
                };
                let count = items.len();
                let Some(toml::Value::Table(t)) = index.and_then(|n| items.get_mut(n)) else {
                    return Err(format!(
                        "`{key}`: no {part} `{pick}` (there are {count}; use a name or an index from 0)"
                    ));
                };
                i += 1;
                t
            }
            _ => return Err(format!("`{key}`: `{part}` is not a table")),
        };
        i += 1;
    }
    match parts.get(i) {
        Some(last) => {
            table.insert(last.to_string(), value);
            Ok(())
        }
        None => Err(format!("`{key}`: names a table, not a value")),
    }
}

/// A value from the command line: TOML syntax when it parses (`5`, `0.3`, `true`,
/// `"text"`, `{ dist = "full" }`), otherwise the bare text as a string (`regtest`).
pub fn parse_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or(toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// A `--set KEY=VALUE`.
pub fn parse_set(arg: &str) -> Result<(String, toml::Value), SimError> {
    let Some((key, value)) = arg.split_once('=') else {
        return Err(SimError::Usage(format!(
            "bad --set `{arg}`: expected KEY=VALUE, such as honest.nodes=1000"
        )));
    };
    let key = key.trim();
    if key.is_empty() || key.split('.').any(|p| p.trim().is_empty()) {
        return Err(SimError::Usage(format!(
            "bad --set `{arg}`: `{key}` is not a dotted key such as policy.quorum"
        )));
    }
    Ok((key.to_string(), parse_value(value.trim())))
}

/// A `--sweep`: a key and the values it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    /// The dotted key.
    pub key: String,
    /// The values, in order.
    pub values: Vec<toml::Value>,
}

/// Most points one sweep may have: more is almost certainly a typo.
pub const MAX_SWEEP_STEPS: u64 = 10_000;

/// Parses `KEY=A..B:STEPS` (STEPS evenly spaced values from A to B inclusive; rounded to
/// integers when A and B are integers and the values are at least 1 apart) or
/// `KEY=V1,V2,...`.
pub fn parse_sweep(arg: &str) -> Result<Sweep, SimError> {
    let bad = |why: &str| {
        SimError::Usage(format!(
            "bad --sweep `{arg}`: {why}; expected KEY=A..B:STEPS (e.g. attacker.keys=10..1000:10) \
             or KEY=V1,V2,... (e.g. policy.ip_dedup=true,false)"
        ))
    };
    let (key, spec) = arg.split_once('=').ok_or_else(|| bad("no `=`"))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(|p| p.trim().is_empty()) {
        return Err(bad("the key is not a dotted key"));
    }
    let spec = spec.trim();
    let values = if let Some((range, steps)) = spec.split_once("..").and_then(|(a, rest)| {
        rest.split_once(':')
            .map(|(b, steps)| ((a.trim(), b.trim()), steps.trim()))
    }) {
        let steps: u64 = steps
            .parse()
            .map_err(|_| bad(&format!("steps `{steps}` is not a whole number")))?;
        if steps == 0 || steps > MAX_SWEEP_STEPS {
            return Err(bad(&format!(
                "steps must be between 1 and {MAX_SWEEP_STEPS}"
            )));
        }
        let (a, b) = range;
        let num = |s: &str| {
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad(&format!("`{s}` is not a number")))
        };
        let (fa, fb) = (num(a)?, num(b)?);
        // Whole numbers when both ends are written as integers and the points are at least 1
        // apart (integer keys such as keys or ips refuse decimals); decimals otherwise, so
        // that 0..1:11 means 0, 0.1, ..., 1 rather than 0 and 1.
        let step = if steps > 1 {
            (fb - fa).abs() / (steps - 1) as f64
        } else {
            1.0
        };
        let integers = a.parse::<i64>().is_ok() && b.parse::<i64>().is_ok() && step >= 1.0;
        let mut values: Vec<toml::Value> = Vec::new();
        for i in 0..steps {
            let t = if steps == 1 {
                0.0
            } else {
                i as f64 / (steps - 1) as f64
            };
            let v = fa + (fb - fa) * t;
            let value = if integers {
                toml::Value::Integer(v.round() as i64)
            } else {
                toml::Value::Float(v)
            };
            // Rounding to integers can repeat a value; a repeated point is wasted work.
            if values.last() != Some(&value) {
                values.push(value);
            }
        }
        values
    } else if spec.contains("..") {
        return Err(bad("a range needs `:STEPS`"));
    } else {
        let items: Vec<&str> = spec.split(',').map(str::trim).collect();
        if items.iter().any(|s| s.is_empty()) {
            return Err(bad("empty value in the list"));
        }
        items.into_iter().map(parse_value).collect()
    };
    Ok(Sweep {
        key: key.to_string(),
        values,
    })
}

/// A value as a CSV cell and a plot label: strings bare, everything else as TOML writes it.
pub fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Builds the typed scenario from the document with `values` applied, naming the offending
/// `--set`/`--sweep` when it fails.
pub fn build(
    base: &toml::Table,
    values: &[(String, toml::Value, &'static str)],
    name: &str,
) -> Result<Scenario, SimError> {
    let mut doc = base.clone();
    for (key, value, origin) in values {
        apply_value(&mut doc, key, value.clone())
            .map_err(|e| SimError::Usage(format!("{origin} {key}={}: {e}", value_text(value))))?;
        // Deserialize after each value, so that an error names the value that caused it.
        if let Err(e) = Scenario::deserialize(toml::Value::Table(doc.clone())) {
            return Err(SimError::Usage(format!(
                "{origin} {key}={}: {}",
                value_text(value),
                e.message().trim()
            )));
        }
    }
    let mut scenario = Scenario::deserialize(toml::Value::Table(doc))
        .map_err(|e| SimError::Usage(format!("scenario: {}", e.message().trim())))?;
    if scenario.name.is_empty() {
        scenario.name = name.to_string();
    }
    Ok(scenario)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_parse() {
        let s = parse_sweep("attacker.keys=10..100:4").unwrap();
        assert_eq!(
            s.values,
            vec![
                toml::Value::Integer(10),
                toml::Value::Integer(40),
                toml::Value::Integer(70),
                toml::Value::Integer(100)
            ]
        );
        let s = parse_sweep("policy.override_weight_share=0.1..0.3:3").unwrap();
        assert_eq!(s.values.len(), 3);
        let s = parse_sweep("attacker.x.hijack_share=0..1:11").unwrap();
        assert_eq!(s.values.len(), 11);
        assert_eq!(s.values[1], toml::Value::Float(0.1));
        let s = parse_sweep("policy.ip_dedup=true,false").unwrap();
        assert_eq!(
            s.values,
            vec![toml::Value::Boolean(true), toml::Value::Boolean(false)]
        );
        assert!(parse_sweep("policy.quorum").is_err());
        assert!(parse_sweep("policy.quorum=1..5").is_err());
        assert!(parse_sweep("policy.quorum=1..5:x").is_err());
        assert!(parse_sweep("policy.quorum=a..5:3").is_err());
        assert!(parse_sweep("=1..5:3").is_err());
    }

    #[test]
    fn set_reaches_attackers_by_name_and_index() {
        let mut doc: toml::Table = toml::from_str(
            "[honest]\nnodes = 1\n[[attacker]]\nstrategy = \"churn\"\n[[attacker]]\nname = \"b\"\nstrategy = \"patient\"\n",
        )
        .unwrap();
        apply_value(&mut doc, "attacker.b.ips", toml::Value::Integer(5)).unwrap();
        apply_value(&mut doc, "attacker.0.slots", toml::Value::Integer(7)).unwrap();
        apply_value(
            &mut doc,
            "attacker.churn.hold_days",
            toml::Value::Integer(9),
        )
        .unwrap();
        apply_value(&mut doc, "policy.quorum", toml::Value::Integer(2)).unwrap();
        let s = Scenario::deserialize(toml::Value::Table(doc.clone())).unwrap();
        assert_eq!(s.policy.quorum, Some(2));
        assert!(apply_value(&mut doc, "attacker.zzz.ips", toml::Value::Integer(5)).is_err());
    }
}
