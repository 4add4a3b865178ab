//! Progress bars: drawn on standard error only when it is a terminal, never on standard
//! output, and never with `--json` or `--quiet`.

mod common;

use std::process::Command;

use common::Workdir;

const NET: &str = "net/spec.toml";

/// A network, a 3 MB artifact (many reads of the hashing buffer) and its release bundle.
fn setup() -> Workdir {
    let w = Workdir::new();
    w.init_network("net", 3);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 249) as u8).collect();
    w.write("dist/big.bin", &big);
    w
}

const CREATE: &[&str] = &[
    "release",
    "create",
    "--channel",
    "stable",
    "--version",
    "1.0.0",
    "--class",
    "application",
    "--artifact",
    "dist/big.bin",
    "--source-commit",
    "abc",
    "--out",
    "r.cbor",
];

#[test]
fn without_a_terminal_nothing_but_the_report_is_printed() {
    let w = setup();
    let run = w.on(NET, CREATE).ok();
    assert_eq!(run.stderr, "");
    assert!(run.stdout.starts_with("release     "), "{}", run.stdout);
    let run = w
        .on(NET, &["release", "verify", "r.cbor", "--artifacts", "dist"])
        .expect(1);
    assert_eq!(
        run.stderr,
        "error: r.cbor: not valid on network net: 0 of 3 required release signatures\n"
    );
    assert!(
        run.stdout.contains("big.bin  3000000 bytes"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains('\r') && !run.stdout.contains('\u{1b}'));
}

/// Runs `sh -c SCRIPT` on a pseudo-terminal (util-linux `script`) in the work directory, and
/// gives what the terminal showed; `None` when `script` is not installed.
fn on_terminal(w: &Workdir, script: &str) -> Option<String> {
    let found = Command::new("script").arg("--version").output();
    if !found.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: util-linux `script` is not installed, so no pseudo-terminal");
        return None;
    }
    let out = Command::new("script")
        .args(["-qec", script, "/dev/null"])
        .current_dir(w.root())
        .env("HOME", w.root())
        .env("TERM", "xterm")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `text` without its CSI escape sequences (`ESC [ 2 K`, `ESC [ 1 A`, ...).
fn without_escapes(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ then parameters up to a final letter.
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn on_a_terminal_hashing_shows_bytes_done_on_stderr_only() {
    let w = setup();
    let bin = common::BIN;
    // Standard output goes to a file: what the terminal shows is standard error alone.
    let Some(screen) = on_terminal(
        &w,
        &format!("{bin} --network {NET} {} >create.out", CREATE.join(" ")),
    ) else {
        return;
    };
    assert!(
        screen.contains("hashing big.bin [") && screen.contains("/2.86 MiB"),
        "no progress bar on the terminal: {screen:?}"
    );
    let report = String::from_utf8(w.read("create.out")).unwrap();
    assert!(report.starts_with("release     "), "{report}");
    assert!(
        !report.contains("hashing") && !report.contains('\r') && !report.contains('\u{1b}'),
        "progress on stdout: {report:?}"
    );

    let Some(screen) = on_terminal(
        &w,
        &format!("{bin} --network {NET} release verify r.cbor --artifacts dist >verify.out; true"),
    ) else {
        return;
    };
    assert!(
        screen.contains("verifying big.bin [") && screen.contains("/2.86 MiB"),
        "{screen:?}"
    );
    // The bar's line is cleared before the error is printed: the error's line, once the
    // cursor moves are taken out, holds the error alone.
    let segments: Vec<&str> = screen.split('\r').collect();
    assert_eq!(segments.last(), Some(&"\n"), "{screen:?}");
    let last = segments[segments.len() - 2];
    assert!(last.contains("\u{1b}[2K"), "{screen:?}");
    assert_eq!(
        without_escapes(last),
        "error: r.cbor: not valid on network net: 0 of 3 required release signatures",
        "{screen:?}"
    );

    // --quiet and --json draw nothing, even on a terminal.
    for flag in ["--quiet", "--json"] {
        let Some(screen) = on_terminal(
            &w,
            &format!(
                "{bin} {flag} --network {NET} release verify r.cbor --artifacts dist >/dev/null; true"
            ),
        ) else {
            return;
        };
        assert_eq!(
            screen,
            "error: r.cbor: not valid on network net: 0 of 3 required release signatures\r\n",
            "{flag}"
        );
    }
}
