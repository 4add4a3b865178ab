//! `commons-sim`: Sybil and network simulations of commons-signal.
//!
//! Thin on purpose: each subcommand lives in its own module of the library, and this file only
//! parses the command line and maps errors to exit codes (2: bad usage or scenario, 1: the
//! run failed).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Simulations of commons-signal on the node's own rules.
#[derive(Debug, Parser)]
#[command(name = "commons-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// How much weight Sybil strategies buy under the tally rule (runs the real aggregator).
    Sybil(commons_sim::sybil::SybilArgs),
    /// How fast signals spread and tallies converge on N real node stacks on loopback.
    Network(commons_sim::network::NetworkArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Sybil(args) => commons_sim::sybil::main(args),
        Command::Network(args) => commons_sim::network::main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
