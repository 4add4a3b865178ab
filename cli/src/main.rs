//! `commons-cli`, the command-line tool of commons-signal (like `bitcoin-cli`): maintainers
//! create and sign proposals and release bundles with it, and anyone can verify and decode
//! them.
//!
//! This file only parses the arguments and turns the outcome into an exit code:
//!
//! - [`cli`]: the command line (clap derive);
//! - [`commands`]: one module per command group, all sharing one [`commands::Context`];
//! - [`error`]: the one error type and its exit codes;
//! - [`files`] and [`format`]: file handling and human-readable output shared by commands;
//! - [`keyfile`] and [`passphrase`]: plain and encrypted secret key files, paper backups,
//!   and where passphrases come from.
//! - [`progress`]: progress bars of long operations, on standard error.
//! - [`timestamp`]: OpenTimestamps proofs of releases, checked up to a Bitcoin block header.

mod cli;
mod commands;
mod error;
mod files;
mod format;
mod keyfile;
mod passphrase;
mod progress;
mod rpc;
mod timestamp;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Usage errors make clap print its message and exit with code 2 (error::EXIT_INPUT).
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error.report();
            ExitCode::from(error.exit_code())
        }
    }
}
