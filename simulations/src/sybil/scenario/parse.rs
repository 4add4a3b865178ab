//! Reading a scenario file, with errors that name the line and the key.

use crate::error::SimError;

use super::Scenario;

impl Scenario {
    /// Parses a scenario file's text; errors name `origin`, the line and the key.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Scenario, SimError> {
        toml::from_str::<Scenario>(text)
            .map_err(|e| SimError::Usage(describe_toml_error(text, origin, &e)))
    }
}

/// Formats a TOML error as `origin: line N, key `a.b`: message`.
fn describe_toml_error(text: &str, origin: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().to_string();
    let Some(span) = e.span() else {
        return format!("{origin}: {message}");
    };
    let start = span.start.min(text.len());
    let line = text[..start].matches('\n').count() + 1;
    match key_at(text, start) {
        Some(key) => format!("{origin}: line {line}, key `{key}`: {message}"),
        None => format!("{origin}: line {line}: {message}"),
    }
}

/// The dotted key at byte `pos` of a TOML text: the table header above it (arrays of tables
/// with their index) and the key on its line.
fn key_at(text: &str, pos: usize) -> Option<String> {
    let mut table = String::new();
    let mut array_counts: std::collections::HashMap<String, usize> = Default::default();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let end = offset + line.len();
        let trimmed = line.trim();
        let is_header = trimmed.starts_with('[');
        if is_header {
            if let Some(name) = trimmed
                .strip_prefix("[[")
                .and_then(|s| s.split("]]").next())
            {
                let name = name.trim().to_string();
                let n = array_counts.entry(name.clone()).or_insert(0);
                table = format!("{name}[{n}]");
                *n += 1;
            } else if let Some(name) = trimmed.strip_prefix('[').and_then(|s| s.split(']').next()) {
                table = name.trim().to_string();
            }
        }
        if pos < end || end == text.len() {
            if is_header {
                return (!table.is_empty()).then_some(table);
            }
            let key = line
                .split_once('=')
                .map(|(k, _)| k.trim().trim_matches('"').to_string())
                .filter(|k| !k.is_empty() && !k.starts_with('#'));
            return match (key, table.is_empty()) {
                (Some(k), true) => Some(k),
                (Some(k), false) => Some(format!("{table}.{k}")),
                (None, false) => Some(table),
                (None, true) => None,
            };
        }
        offset = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_line_and_key() {
        let text = "[honest]\nnodes = 10\n\n[[attacker]]\nstrategy = \"patient\"\nips = \"many\"\n";
        let e = Scenario::from_toml_str(text, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 6"), "{e}");
        assert!(e.contains("attacker[0].ips"), "{e}");
        let text = "[honest]\nnodes = 10\n\n[[attacker]]\nstrategy = \"churn\"\nips = 4\n";
        let e = Scenario::from_toml_str(text, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("attacker[0]") && e.contains("no field `ips`"),
            "{e}"
        );
    }
}
