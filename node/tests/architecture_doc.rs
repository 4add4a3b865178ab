//! `docs/ARCHITECTURE.md` stays true: every `file::function` it names (in backticks) is a
//! function defined in that file.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("node/ sits in the workspace")
        .to_path_buf()
}

/// The `path.rs::name` references inside backticks, as (path, function name).
fn references(doc: &str) -> Vec<(String, String)> {
    doc.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|quoted| {
            let (path, rest) = quoted.split_once(".rs::")?;
            let name = rest.rsplit("::").next()?;
            let plain = |s: &str| {
                s.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '/')
            };
            (plain(path) && plain(name) && !name.is_empty())
                .then(|| (format!("{path}.rs"), name.to_string()))
        })
        .collect()
}

/// Whether `source` defines a function called `name` (any visibility, async or not).
fn defines(source: &str, name: &str) -> bool {
    source.match_indices(&format!("fn {name}")).any(|(at, m)| {
        let after = source[at + m.len()..].chars().next();
        let before = source[..at].chars().next_back();
        matches!(after, Some('(' | '<')) && before.is_none_or(|c| c.is_whitespace())
    })
}

#[test]
fn every_named_function_exists_in_its_file() {
    let root = workspace_root();
    let doc = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).expect("the doc");
    let refs = references(&doc);
    assert!(
        refs.len() >= 20,
        "the life of a signal names its stops: found only {refs:?}"
    );
    let missing: Vec<String> = refs
        .iter()
        .filter(|(path, name)| {
            std::fs::read_to_string(root.join(path)).map_or(true, |src| !defines(&src, name))
        })
        .map(|(path, name)| format!("{path}::{name}"))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md names functions that are not there: {missing:?}"
    );
}

#[test]
fn the_checker_tells_a_definition_from_a_mention() {
    let src = "pub(crate) async fn ingest(&self) {}\nfn check<T>() {}\n// calls fn applyx()\n";
    assert!(defines(src, "ingest"));
    assert!(defines(src, "check"));
    assert!(!defines(src, "apply"));
    assert!(!defines(src, "missing"));
    assert_eq!(
        references("see `a/b.rs::f` and `c.rs::T::g`, not `x::y` or `a b.rs::c`"),
        vec![
            ("a/b.rs".to_string(), "f".to_string()),
            ("c.rs".to_string(), "g".to_string())
        ]
    );
}
