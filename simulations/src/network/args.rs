//! The arguments of `commons-sim network` and the checks that refuse a run that cannot work.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::topology::Topology;
use crate::error::SimError;

/// The most nodes a run accepts: addresses come from one /16 of loopback space.
pub const MAX_NODES: usize = 10_000;

/// The most measurers a run may name (`--measurers`): mainnet's intended set is nine.
pub const MAX_MEASURERS: usize = 9;

/// Arguments of `commons-sim network`.
#[derive(Debug, Clone, clap::Args)]
pub struct NetworkArgs {
    /// Number of nodes.
    #[arg(long)]
    pub nodes: usize,
    /// How nodes connect.
    #[arg(long, value_enum, default_value = "regular")]
    pub topology: Topology,
    /// Neighbours per node (regular), or the ring's width (ring: degree / 2 on each side).
    #[arg(long, default_value_t = 6)]
    pub degree: usize,
    /// Signals cast per phase.
    #[arg(long, default_value_t = 50)]
    pub signals: usize,
    /// Signals cast per second, network-wide.
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    /// Share of honest nodes that leave and rejoin: every `--churn-interval` seconds that
    /// many go down (a clean shutdown) and come back `--churn-downtime` seconds later on the
    /// same address and data directory.
    #[arg(long, default_value_t = 0.0)]
    pub churn: f64,
    /// Seconds between churn rounds.
    #[arg(long, default_value_t = 4.0)]
    pub churn_interval: f64,
    /// Seconds a churned node stays down.
    #[arg(long, default_value_t = 3.0)]
    pub churn_downtime: f64,
    /// Share of nodes that drop everything: they take every message and never validate,
    /// store or forward one.
    #[arg(long = "drop", default_value_t = 0.0)]
    pub drop_share: f64,
    /// Share of nodes that spam: real daemons that, in the spam phase, also publish invalid
    /// signals (garbage bytes and forged signatures, alternately). A second phase with spam
    /// runs when this is above 0.
    #[arg(long, default_value_t = 0.0)]
    pub spam: f64,
    /// Invalid messages per second from each spamming node.
    #[arg(long, default_value_t = 20.0)]
    pub spam_rate: f64,
    /// How often each daemon catches up with one random peer besides at each new
    /// connection, in seconds (the daemon's default is 600). Messages a node learned only by
    /// catch-up are not gossiped on, so under churn this bounds how late they reach nodes
    /// whose neighbours restarted.
    #[arg(long, default_value_t = 600.0)]
    pub resync_interval: f64,
    /// Epoch length in seconds. 2 is regtest itself; any other value runs a network whose
    /// spec is regtest's with only the epoch changed (written to a spec file the daemons
    /// load). Every daemon publishes a presence and attests each neighbour once per epoch,
    /// so the background load grows as nodes^2 x degree / epoch.
    #[arg(long, default_value_t = 2)]
    pub epoch_secs: u64,
    /// Seed of the topology, the roles and the choice of casters, choices and churned nodes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The first node's loopback address; the others follow (.0 and .255 skipped).
    #[arg(long, default_value = "127.0.1.1")]
    pub first_address: Ipv4Addr,
    /// How often the watcher looks at every node (milliseconds): the resolution of the
    /// propagation times.
    #[arg(long, default_value_t = 5)]
    pub poll_ms: u64,
    /// Longest wait for the warm-up (every daemon qualified on every daemon), in seconds.
    #[arg(long, default_value_t = 120)]
    pub warmup_timeout: u64,
    /// Longest wait, after the last signal of a phase, for every signal to reach every node
    /// and the tallies to agree, in seconds.
    #[arg(long, default_value_t = 60)]
    pub settle_timeout: u64,
    /// Write `summary.json` and `signals.csv` here (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Share one cache of verified signatures between the daemons: each distinct valid
    /// signature is verified once for the whole process instead of once per node. Lets a
    /// large network run on a small machine; the run then does not measure what verifying
    /// costs each node (see the table's note).
    #[arg(long)]
    pub shared_verification: bool,
    /// Run regtest's own rule, the measurer rule (rule v2), instead of rule v1: nodes 0 to
    /// N-1 are the network's measurers and every daemon also connects to each of them once
    /// an epoch to be measured, which adds up to N links per node to the topology. 0 (the
    /// default): rule v1 over the topology alone.
    #[arg(long, default_value_t = 0)]
    pub measurers: usize,
    /// Worker threads of the runtime. Default: one per core.
    #[arg(long)]
    pub threads: Option<usize>,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// A finite number above zero (NaN is not).
fn positive(v: f64) -> bool {
    v > 0.0 && v.is_finite()
}

pub(super) fn check(args: &NetworkArgs) -> Result<(), SimError> {
    let usage = |m: String| Err(SimError::Usage(m));
    if args.nodes < 2 || args.nodes > MAX_NODES {
        return usage(format!("--nodes must be between 2 and {MAX_NODES}"));
    }
    if !positive(args.rate) {
        return usage("--rate must be positive".into());
    }
    if args.signals == 0 {
        return usage("--signals must be at least 1".into());
    }
    for (name, v) in [
        ("--churn", args.churn),
        ("--drop", args.drop_share),
        ("--spam", args.spam),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return usage(format!("{name} must be a share between 0 and 1"));
        }
    }
    if args.drop_share + args.spam >= 1.0 {
        return usage("--drop and --spam leave no honest node".into());
    }
    if args.spam > 0.0 && !positive(args.spam_rate) {
        return usage("--spam-rate must be positive".into());
    }
    if args.topology != Topology::Full && (args.degree < 2 || args.degree >= args.nodes) {
        return usage("--degree must be at least 2 and below --nodes".into());
    }
    if args.topology == Topology::Full && args.nodes > 90 {
        // A node accepts 96 inbound connections (commons-p2p's connection limits).
        return usage("--topology full is limited to 90 nodes by the connection limits".into());
    }
    if args.measurers > MAX_MEASURERS || args.measurers >= args.nodes {
        return usage(format!(
            "--measurers must be at most {MAX_MEASURERS} and below --nodes"
        ));
    }
    if args.epoch_secs == 0 {
        return usage("--epoch-secs must be at least 1".into());
    }
    if args.poll_ms == 0
        || !positive(args.churn_interval)
        || args.churn_downtime.is_nan()
        || args.churn_downtime < 0.0
        || !positive(args.resync_interval)
        || args.resync_interval < 1.0
    {
        return usage(
            "--poll-ms and --churn-interval must be positive, --resync-interval at least 1".into(),
        );
    }
    Ok(())
}
