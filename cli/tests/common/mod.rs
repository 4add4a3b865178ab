//! Helpers shared by the integration tests: they run the real `commons-cli` binary in a
//! temporary directory, as a person would.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_commons-cli");

/// A temporary working directory the binary runs in.
pub struct Workdir {
    dir: tempfile::TempDir,
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    /// The command line, for failure messages.
    pub args: Vec<String>,
    /// Exit code.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts the exit code and gives the run back.
    pub fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            code,
            "`commons-cli {}` exited {} instead of {code}\n--- stdout\n{}--- stderr\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts success.
    pub fn ok(self) -> Self {
        self.expect(0)
    }

    /// Asserts that standard output contains `needle`.
    pub fn stdout_has(self, needle: &str) -> Self {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}:\n{}",
            self.stdout
        );
        self
    }

    /// Asserts that standard error contains `needle`.
    pub fn stderr_has(self, needle: &str) -> Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }
}

impl Workdir {
    /// A fresh, empty directory.
    pub fn new() -> Self {
        Workdir {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    /// A path inside the directory.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `commons-cli ARGS` in the directory, with HOME there too and none of the
    /// daemon's `COMMONS_*` variables, so neither the runner's environment nor a node
    /// config in the runner's home changes what the command does.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[], None)
    }

    /// Runs `commons-cli ARGS` as [`Workdir::run`] does, with extra environment variables
    /// and, when given, these bytes on standard input (else none).
    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Run {
        self.run_program(BIN, args, env, stdin)
    }

    /// Runs `program ARGS` (`sh`, `setsid`, ...) in the directory, with the environment of
    /// [`Workdir::run`] and `COMMONS_CLI` naming the binary under test.
    pub fn run_program(
        &self,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
        stdin: Option<&[u8]>,
    ) -> Run {
        use std::io::Write;
        let mut cmd = Command::new(program);
        for var in [
            "COMMONS_DATADIR",
            "COMMONS_CONF",
            "COMMONS_NETWORK",
            "COMMONS_RPC_BIND",
            "COMMONS_PASSPHRASE",
        ] {
            cmd.env_remove(var);
        }
        cmd.args(args)
            .envs(env.iter().copied())
            .env("COMMONS_CLI", BIN)
            .env("HOME", self.dir.path())
            .current_dir(self.dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("run commons-cli");
        let mut input = child.stdin.take().expect("piped stdin");
        if let Some(bytes) = stdin {
            input.write_all(bytes).expect("write stdin");
        }
        drop(input);
        let output = child.wait_with_output().expect("run commons-cli");
        Run {
            args: args.iter().map(|s| s.to_string()).collect(),
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs `commons-cli --network NET ARGS`.
    pub fn on(&self, net: &str, args: &[&str]) -> Run {
        let mut all = vec!["--network", net];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// Writes the artifact `dist/NAME` and an unsigned stable 1.0.0 application release of
    /// it on network `net` to `out`.
    pub fn create_release(&self, net: &str, artifact: &str, out: &str) {
        self.write(&format!("dist/{artifact}"), b"artifact\n");
        let artifact = format!("dist/{artifact}");
        self.on(
            net,
            &[
                "release",
                "create",
                "--channel",
                "stable",
                "--version",
                "1.0.0",
                "--class",
                "application",
                "--artifact",
                &artifact,
                "--source-commit",
                "abc",
                "--out",
                out,
            ],
        )
        .ok();
    }

    /// `network init --out NAME --maintainers N --name NAME`.
    pub fn init_network(&self, name: &str, maintainers: u32) {
        self.run(&[
            "network",
            "init",
            "--out",
            name,
            "--maintainers",
            &maintainers.to_string(),
            "--name",
            name,
        ])
        .ok();
    }

    /// Writes a file.
    pub fn write(&self, relative: &str, bytes: &[u8]) {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, bytes).unwrap();
    }

    /// Reads a file.
    pub fn read(&self, relative: &str) -> Vec<u8> {
        std::fs::read(self.path(relative)).unwrap()
    }
}

/// Sets a file's permission bits.
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
