//! The README's first command as a newcomer sees it: `scripts/regtest.sh` in a real
//! terminal (a tmux pane of 120 columns and 40 rows), read back from the screen. The whole
//! walk-through fits the width, the decisions are on the screen, and the last screen — what
//! the person sees when the prompt returns — says how to talk to the network and how to stop
//! it, without scrolling.
//!
//! Uses 127.0.77.0/24 like `regtest_script`; cargo runs test binaries one after another, and
//! this binary has one test, so the two never overlap.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use commons_e2e::{bin_dir, phases};

const COLUMNS: usize = 120;
const ROWS: usize = 40;

/// A tmux server of this test's own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// The pane's text: the visible screen, or everything since it started.
    fn capture(&self, history: bool) -> String {
        let mut args = vec!["capture-pane", "-p", "-t", "regtest"];
        if history {
            args.extend(["-S", "-", "-E", "-"]);
        }
        String::from_utf8_lossy(&self.run(&args).stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// Stops the network even when an assertion failed halfway.
struct Network(PathBuf);

impl Drop for Network {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .env("COMMONS_REGTEST_DIR", &self.0)
            .env("COMMONS_BIN_DIR", bin_dir())
            .output();
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/regtest.sh")
}

#[test]
fn the_readme_walkthrough_reads_well_in_a_terminal() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("skipping: tmux is not installed (scripts/setup.sh installs it)");
        return;
    }
    let phase = phases("regtest_terminal");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("regtest-network");
    let _network = Network(dir.clone());
    let tmux = Tmux {
        socket: format!("commons-regtest-{}", std::process::id()),
    };

    phase("scripts/regtest.sh in a 120x40 tmux pane");
    // The shell stays after the script so the pane (and its last screen) can be read.
    let command = format!(
        "COMMONS_REGTEST_DIR='{}' COMMONS_BIN_DIR='{}' COMMONS_REGTEST_NODES= bash '{}'; echo \"[exit $?]\"; exec sleep 600",
        dir.display(),
        bin_dir().display(),
        script().display()
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "regtest",
        "-x",
        &COLUMNS.to_string(),
        "-y",
        &ROWS.to_string(),
        &command,
    ]);
    assert!(
        started.status.success(),
        "tmux: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    tmux.run(&["set-option", "-t", "regtest", "history-limit", "10000"]);

    let deadline = Instant::now() + Duration::from_secs(240);
    let everything = loop {
        let text = tmux.capture(true);
        if text.contains("[exit ") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "regtest.sh did not finish within 240 s; the screen:\n{}",
            tmux.capture(false)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        everything.contains("[exit 0]"),
        "regtest.sh failed:\n{everything}"
    );

    phase("the walk-through fits the terminal and shows both decisions");
    // tmux wraps a long line onto the next row; joined again (-J), no line is wider.
    let joined = String::from_utf8_lossy(
        &tmux
            .run(&[
                "capture-pane",
                "-p",
                "-J",
                "-t",
                "regtest",
                "-S",
                "-",
                "-E",
                "-",
            ])
            .stdout,
    )
    .into_owned();
    for line in joined.lines() {
        assert!(
            line.chars().count() <= COLUMNS,
            "a line wider than the {COLUMNS}-column terminal: {line:?}"
        );
    }
    assert!(!everything.contains('\u{1b}'), "raw escape codes on screen");
    for shown in ["qualified", "overridden", "ready", "override share"] {
        assert!(
            everything.contains(shown),
            "no {shown:?} on screen:\n{everything}"
        );
    }

    phase("the last screen says what to do next");
    let last = tmux.capture(false);
    for next in ["regtest-network/cli", "getinfo", "scripts/regtest.sh stop"] {
        assert!(
            last.contains(next),
            "the last screen does not show {next:?}:\n{last}"
        );
    }
    phase("passed");
}
