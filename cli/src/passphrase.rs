//! Where a passphrase comes from: a file descriptor, the environment, or the terminal.
//!
//! Never from a command-line argument, which every user of the machine can read in the
//! process list. In order:
//!
//! 1. `--passphrase-fd N`: the first line read from file descriptor N (a pipe from a password
//!    manager, `3< file`), for scripts;
//! 2. the `COMMONS_PASSPHRASE` environment variable, for automation that has no other way;
//! 3. a prompt on the terminal (`/dev/tty`) without echo; a new passphrase is asked twice.

use std::io::{IsTerminal, Read};

use anyhow::anyhow;
use zeroize::Zeroizing;

use crate::error::{CliError, Result};

/// The environment variable a passphrase may come from.
pub const PASSPHRASE_ENV: &str = "COMMONS_PASSPHRASE";

/// The longest passphrase read from a file descriptor.
const MAX_PASSPHRASE: u64 = 4096;

/// Where to take passphrases from, as the command line says.
#[derive(Debug, Clone, Copy, Default)]
pub struct Source {
    /// `--passphrase-fd N`.
    pub fd: Option<u32>,
}

impl Source {
    /// The passphrase of an existing encrypted key file, `what` naming it in the prompt.
    pub fn existing(&self, what: &str) -> Result<Zeroizing<String>> {
        if let Some(given) = self.given()? {
            return Ok(given);
        }
        prompt(&format!("Passphrase for {what}: "))
    }

    /// A new passphrase, asked twice on a terminal so that a typing mistake cannot lock the
    /// key away.
    pub fn new_passphrase(&self, what: &str) -> Result<Zeroizing<String>> {
        if let Some(given) = self.given()? {
            return non_empty(given);
        }
        let first = non_empty(prompt(&format!("New passphrase for {what}: "))?)?;
        let second = prompt(&format!("Repeat the passphrase for {what}: "))?;
        if *first != *second {
            return Err(anyhow!("the two passphrases differ; nothing was written").into());
        }
        Ok(first)
    }

    /// The passphrase from the descriptor or the environment, if either gives one.
    fn given(&self) -> Result<Option<Zeroizing<String>>> {
        if let Some(fd) = self.fd {
            return read_fd(fd).map(Some);
        }
        match std::env::var(PASSPHRASE_ENV) {
            Ok(value) => Ok(Some(Zeroizing::new(value))),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(anyhow!("{PASSPHRASE_ENV} is not valid UTF-8").into())
            }
        }
    }
}

fn non_empty(passphrase: Zeroizing<String>) -> Result<Zeroizing<String>> {
    if passphrase.is_empty() {
        return Err(anyhow!("the passphrase is empty; nothing was written").into());
    }
    Ok(passphrase)
}

/// The first line of file descriptor `fd`, opened through `/dev/fd` (no unsafe code needed
/// to adopt a raw descriptor).
fn read_fd(fd: u32) -> Result<Zeroizing<String>> {
    let path = format!("/dev/fd/{fd}");
    let file = std::fs::File::open(&path).map_err(|e| {
        CliError::Input(anyhow!(
            "--passphrase-fd {fd}: cannot read file descriptor {fd} ({e}); is it open, as in \
             `3< FILE`?"
        ))
    })?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_PASSPHRASE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| anyhow!("--passphrase-fd {fd}: {e}"))?;
    let line_end = bytes.iter().position(|&b| b == b'\n');
    if line_end.is_none() && bytes.len() as u64 > MAX_PASSPHRASE {
        return Err(anyhow!(
            "--passphrase-fd {fd}: longer than {MAX_PASSPHRASE} bytes; not a passphrase"
        )
        .into());
    }
    let mut line = &bytes[..line_end.unwrap_or(bytes.len())];
    if let Some(stripped) = line.strip_suffix(b"\r") {
        line = stripped;
    }
    let text = std::str::from_utf8(line)
        .map_err(|_| anyhow!("--passphrase-fd {fd}: the passphrase is not valid UTF-8"))?;
    Ok(Zeroizing::new(text.to_string()))
}

/// Asks on the terminal without echo.
fn prompt(text: &str) -> Result<Zeroizing<String>> {
    rpassword::prompt_password(text)
        .map(Zeroizing::new)
        .map_err(|_| {
            CliError::Input(anyhow!(
                "a passphrase is needed and there is no terminal to ask on: give it with \
                 --passphrase-fd N or {PASSPHRASE_ENV}"
            ))
        })
}

/// Reads secret text (a paper backup) from standard input: on a terminal line by line
/// without echo until an empty line (a backup is written on several lines), else all of it
/// (at most 4 KiB).
pub fn secret_from_stdin(what: &str) -> Result<Zeroizing<String>> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let mut text = Zeroizing::new(String::new());
        let mut prompt = format!("{what}, line by line (an empty line ends it): ");
        loop {
            let line = rpassword::prompt_password(&prompt)
                .map(Zeroizing::new)
                .map_err(|e| anyhow!("reading {what} from the terminal: {e}"))?;
            if line.trim().is_empty() {
                return Ok(text);
            }
            if text.len() + line.len() > MAX_PASSPHRASE as usize {
                return Err(anyhow!("longer than any {what}").into());
            }
            text.push_str(&line);
            text.push('\n');
            prompt = "next line: ".to_string();
        }
    }
    let mut bytes = Zeroizing::new(Vec::new());
    stdin
        .lock()
        .take(MAX_PASSPHRASE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| anyhow!("reading {what} from standard input: {e}"))?;
    if bytes.len() as u64 > MAX_PASSPHRASE {
        return Err(anyhow!("standard input is longer than any {what}").into());
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| anyhow!("{what} on standard input is not valid UTF-8"))?;
    Ok(Zeroizing::new(text.to_string()))
}

/// Once a secret is in memory, no core dump may write it to disk and no other process of
/// the user may read it with ptrace (Linux's `PR_SET_DUMPABLE`, which also sets the core
/// size to nothing). Failing to is not fatal: it is a second line of defence.
pub fn protect_process() {
    #[cfg(target_os = "linux")]
    {
        let _ =
            rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
        let _ = rustix::process::setrlimit(
            rustix::process::Resource::Core,
            rustix::process::Rlimit {
                current: Some(0),
                maximum: Some(0),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    // Each test binary is its own process, so protecting it touches nothing else.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_protected_process_cannot_be_dumped_or_attached_to() {
        use rustix::process::{DumpableBehavior, Resource, dumpable_behavior, getrlimit};
        super::protect_process();
        assert_eq!(dumpable_behavior().unwrap(), DumpableBehavior::NotDumpable);
        let core = getrlimit(Resource::Core);
        assert_eq!((core.current, core.maximum), (Some(0), Some(0)));
    }
}
