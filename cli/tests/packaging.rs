//! What packagers install beside `commons-cli`, generated from its clap definitions: the
//! bash completion script completes real commands when bash runs it, and the man pages
//! cover every command and render.

mod common;

use common::Workdir;
use std::process::Command;

/// What bash's programmable completion offers for `words` (the last one being completed),
/// with the script loaded exactly as /etc/bash_completion.d would load it.
fn bash_completes(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let line = words.join(" ");
    let program = format!(
        r#"source '{script}'
func=$(complete -p commons-cli | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
COMP_WORDS=({words})
COMP_CWORD={cword}
COMP_LINE='{line}'
COMP_POINT={point}
"$func" commons-cli '{last}' '{prev}'
printf '%s\n' "${{COMPREPLY[@]}}""#,
        script = script.display(),
        words = quoted.join(" "),
        cword = words.len() - 1,
        point = line.len(),
        last = words[words.len() - 1],
        prev = words[words.len() - 2],
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "bash failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completion_offers_commands_and_subcommands() {
    let dir = Workdir::new();
    let run = dir.run(&["completions", "bash"]).ok();
    let script = dir.path("commons-cli.bash");
    std::fs::write(&script, &run.stdout).unwrap();

    let top = bash_completes(&script, &["commons-cli", "get"]);
    assert!(top.contains(&"getinfo".to_string()), "{top:?}");
    assert!(
        !top.contains(&"peers".to_string()),
        "only what matches: {top:?}"
    );
    let nested = bash_completes(&script, &["commons-cli", "key", "gen"]);
    assert_eq!(nested, vec!["generate".to_string()]);
    let flags = bash_completes(&script, &["commons-cli", "--rpc-w"]);
    assert_eq!(flags, vec!["--rpc-wait".to_string()]);
}

#[test]
fn completions_for_the_other_shells_name_the_commands() {
    let dir = Workdir::new();
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        dir.run(&["completions", shell])
            .ok()
            .stdout_has("getinfo")
            .stdout_has("deployments");
    }
    dir.run(&["completions", "tcsh"])
        .expect(2)
        .stderr_has("invalid value 'tcsh'");
}

#[test]
fn man_pages_cover_every_command_and_render() {
    let dir = Workdir::new();
    let out = dir.path("man1");
    let run = dir.run(&["man-pages", out.to_str().unwrap()]).ok();
    let listed: Vec<&str> = run.stdout.lines().collect();
    for page in [
        "commons-cli.1",
        "commons-cli-getinfo.1",
        "commons-cli-key.1",
        "commons-cli-key-generate.1",
        "commons-cli-release-verify.1",
        "commons-cli-man-pages.1",
    ] {
        let path = out.join(page);
        assert!(path.is_file(), "{page} missing; written: {listed:?}");
        assert!(
            listed.contains(&path.to_str().unwrap()),
            "{page} not listed"
        );
    }
    // Every listed page exists, and the top page names the commands it documents.
    assert!(listed.iter().all(|p| std::path::Path::new(p).is_file()));
    let top = std::fs::read_to_string(out.join("commons-cli.1")).unwrap();
    assert!(
        top.starts_with(".ie \\n(.g .ds Aq") || top.contains(".TH"),
        "{top:.200}"
    );
    assert!(top.contains("getinfo") && top.contains("release"));

    // Rendered as a person would read it, where man is installed.
    if Command::new("man").arg("--version").output().is_ok() {
        let rendered = Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(out.join("commons-cli-key-generate.1"))
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        assert!(rendered.status.success());
        let text = String::from_utf8_lossy(&rendered.stdout);
        assert!(
            text.contains("NAME") && text.contains("commons-cli-key-generate"),
            "{text}"
        );
    } else {
        eprintln!("skipping the rendering check: man is not installed");
    }
}

#[test]
fn man_pages_into_a_file_is_a_clear_error() {
    let dir = Workdir::new();
    let file = dir.path("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    dir.run(&["man-pages", file.to_str().unwrap()])
        .expect(2)
        .stderr_has("cannot create");
}
