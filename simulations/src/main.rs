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
    #[cfg(feature = "network")]
    Network(commons_sim::network::NetworkArgs),
    /// Not in this build: it was built without the `network` feature.
    #[cfg(not(feature = "network"))]
    Network {
        /// Whatever was given; nothing is read.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        ignored: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Sybil(args) => commons_sim::sybil::main(args),
        #[cfg(feature = "network")]
        Command::Network(args) => commons_sim::network::main(args),
        #[cfg(not(feature = "network"))]
        Command::Network { .. } => Err(commons_sim::SimError::Usage(
            "this commons-sim was built without the `network` feature, which runs real \
             daemons (RocksDB, libp2p); rebuild with `cargo build --release -p commons-sim` \
             (the feature is on by default) or `--features network`"
                .into(),
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
