//! Runs the example sessions of `docs/CLI.md` and `docs/KEYS.md` (the key rotation) as they
//! stand, so the documentation cannot drift from the tool.
//!
//! Every line starting with `$ ` inside a ```` ```console ```` block is a shell command, run
//! with `sh` in one temporary directory with the built `commons-cli` first on `PATH`. It must
//! exit 0, or N when it ends with `# exits N`. The lines after a command are its documented
//! output (standard output and error together), compared with the real output once keys,
//! ids, hashes and times, which differ on every run, are masked.
//!
//! `UPDATE_DOCS=1 cargo test -p commons-cli --test docs_session` rewrites the documented
//! outputs from a real run.
//!
//! The session starts a `commonsd` in the background (the built one, next to `commons-cli`)
//! and stops it at its end; should the session fail before that, the test stops it.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_commons-cli");

fn doc_path(doc: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(doc)
}

/// The exit code a command line expects.
fn expected_code(command: &str) -> i32 {
    command
        .rsplit_once("# exits ")
        .and_then(|(_, code)| code.trim().parse().ok())
        .unwrap_or(0)
}

/// Masks what differs between runs: runs of 16 or more hex digits, dates, Unix times.
fn mask(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let is_date = |at: usize| {
        let shape = "dddd-dd-dd dd:dd:dd UTC";
        shape
            .chars()
            .enumerate()
            .all(|(k, s)| match (s, chars.get(at + k)) {
                ('d', Some(c)) => c.is_ascii_digit(),
                (s, Some(c)) => s == *c,
                (_, None) => false,
            })
    };
    while i < chars.len() {
        if is_date(i) {
            out.push_str("<time>");
            i += "dddd-dd-dd dd:dd:dd UTC".len();
            continue;
        }
        let hex_run = chars[i..]
            .iter()
            .take_while(|c| matches!(c, '0'..='9' | 'a'..='f'))
            .count();
        let digit_run = chars[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        let starts_word = i == 0 || !chars[i - 1].is_ascii_alphanumeric();
        if starts_word && hex_run >= 16 {
            out.push_str("<hex>");
            i += hex_run;
        } else if starts_word && digit_run == 10 {
            out.push_str("<unix>");
            i += digit_run;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// Where the session's output shows the directory it runs in (paths the node prints), the
/// documentation shows this instead: the temporary directory differs on every run.
const SESSION_DIR: &str = "/home/you/demo";

/// Stops the daemon whose process id the session wrote to `node.pid`, if it still runs, when
/// the test ends, also by a panic.
struct StopDaemon(PathBuf);

impl Drop for StopDaemon {
    fn drop(&mut self) {
        let Ok(pid) = std::fs::read_to_string(&self.0) else {
            return;
        };
        let pid = pid.trim();
        // Only our commonsd: the session's own `kill` may have ended it, and its id may
        // since belong to another process.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains("commonsd") {
            let _ = Command::new("kill").arg(pid).status();
        }
    }
}

#[test]
fn the_documented_session_runs_as_documented() {
    run_session("CLI.md", 15);
}

#[test]
fn the_documented_key_rotation_runs_as_documented() {
    run_session("KEYS.md", 15);
}

/// Runs every console block of `docs/<name>` in one temporary directory; it must hold at
/// least `min_commands` commands.
fn run_session(name: &str, min_commands: usize) {
    let doc = std::fs::read_to_string(doc_path(name)).expect("the document");
    let update = std::env::var_os("UPDATE_DOCS").is_some();
    let dir = tempfile::tempdir().unwrap();
    let _stop = StopDaemon(dir.path().join("node.pid"));
    let bin_dir = Path::new(BIN).parent().unwrap();
    assert!(
        bin_dir.join("commonsd").is_file(),
        "{} is missing: the session starts a node (cargo build --workspace --bins builds it)",
        bin_dir.join("commonsd").display()
    );
    let session_dirs = [
        dir.path().to_string_lossy().into_owned(),
        dir.path()
            .canonicalize()
            .unwrap()
            .to_string_lossy()
            .into_owned(),
    ];
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let lines: Vec<&str> = doc.lines().collect();
    let mut rewritten: Vec<String> = Vec::new();
    let mut in_console = false;
    let mut commands = 0;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        rewritten.push(line.to_string());
        i += 1;
        if line.trim() == "```console" {
            in_console = true;
            continue;
        }
        if !in_console {
            continue;
        }
        if line.trim() == "```" {
            in_console = false;
            continue;
        }
        let Some(command) = line.strip_prefix("$ ") else {
            panic!(
                "docs/{name} line {i}: console blocks hold `$ ` commands and their output: {line:?}"
            );
        };
        let documented: Vec<&str> = lines[i..]
            .iter()
            .take_while(|l| !l.starts_with("$ ") && l.trim() != "```")
            .copied()
            .collect();
        i += documented.len();

        let output = Command::new("sh")
            .arg("-c")
            .arg(format!("exec 2>&1\n{command}"))
            .current_dir(dir.path())
            .env("PATH", &path)
            .output()
            .expect("run sh");
        let mut actual = String::from_utf8_lossy(&output.stdout).into_owned();
        for session_dir in &session_dirs {
            actual = actual.replace(session_dir.as_str(), SESSION_DIR);
        }
        let code = output.status.code().unwrap_or(-1);
        assert_eq!(
            code,
            expected_code(command),
            "docs/{name}: `{command}` exited {code}; output:\n{actual}"
        );
        commands += 1;
        if update {
            rewritten.extend(actual.lines().map(str::to_string));
        } else {
            let want = mask(&documented.join("\n"));
            let got = mask(actual.trim_end_matches('\n'));
            assert_eq!(
                want, got,
                "docs/{name}: the output of `{command}` differs from what is documented \
                 (UPDATE_DOCS=1 rewrites it)"
            );
            rewritten.extend(documented.iter().map(|l| l.to_string()));
        }
    }
    assert!(
        commands >= min_commands,
        "the example session of {name} has only {commands} commands"
    );
    if update {
        let mut text = rewritten.join("\n");
        text.push('\n');
        std::fs::write(doc_path(name), text).unwrap();
    }
}

#[test]
fn masking_keeps_what_is_stable() {
    let hex = "ab".repeat(32);
    assert_eq!(mask(&format!("signed as {hex}")), "signed as <hex>");
    assert_eq!(mask("lock 2026-11-21 05:54:44 UTC to"), "lock <time> to");
    assert_eq!(
        mask("\"lock_start\": 1795240452,"),
        "\"lock_start\": <unix>,"
    );
    assert_eq!(
        mask("counted 2 of 3, 26 bytes, added"),
        "counted 2 of 3, 26 bytes, added"
    );
}
