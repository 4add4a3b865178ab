//! `commons-sim network`: how fast signals spread and tallies converge on a network of real
//! node stacks.
//!
//! Every node is the daemon's own code (`commons_node::Daemon`: libp2p swarm, ingest
//! pipeline, RocksDB store, epoch work), on its own loopback address and data directory, all
//! in this process on one Tokio runtime, on the regtest network (2 s epochs, /30
//! netgroups, quorum 2). The run:
//!
//! 1. starts the nodes, each dialing its neighbours in the chosen topology;
//! 2. hands a maintainer-signed proposal to one node and waits until every node holds it
//!    and every daemon counts every daemon as qualified (the warm-up: uptime attestations
//!    need a few epochs);
//! 3. runs the baseline phase: `--signals` signals cast at `--rate` per second by random
//!    honest nodes through `Node::cast_signal` (the RPC `signal` path), while a watcher
//!    thread records when each node first holds each signal and when every node's tally
//!    of the proposal is the same;
//! 4. with `--spam`, runs the same again while the spamming nodes publish invalid signals;
//! 5. prints a table and, with `--out`, writes `summary.json` and `signals.csv`.
//!
//! One file per job: `args.rs` (the command line and its checks), `run.rs` (a whole run:
//! start, warm-up, phases), `phase.rs` (one phase: casting, churn, spam), `watch.rs` (the
//! thread that measures), `report.rs` (what was measured and how it is shown), and the
//! nodes (`cluster.rs`), their counters (`counters.rs`), the graph (`topology.rs`) and the
//! optional signature cache the daemons share (`shared_verify.rs`).
//!
//! Only in builds with the `network` feature (on by default): it needs the daemon, hence
//! RocksDB and libp2p, which the Sybil simulator does not.

mod args;
pub mod cluster;
pub mod counters;
mod phase;
mod report;
mod run;
pub mod shared_verify;
pub mod topology;
mod watch;

pub use args::{MAX_NODES, NetworkArgs};
pub use report::{NodeRow, PhaseReport, ReachRow, Report, SignalRow, table};
pub use run::{network_spec, regtest_proposal, run};

use crate::error::SimError;

/// Runs `commons-sim network` and prints its table.
pub fn main(args: &NetworkArgs) -> Result<(), SimError> {
    let report = run(args)?;
    print!("{}", table(&report));
    if let Some(dir) = &args.out {
        report::write_outputs(dir, &report)?;
    }
    Ok(())
}
