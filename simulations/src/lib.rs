//! commons-sim: simulations of commons-signal that run the node's own rules.
//!
//! The Sybil simulator ([`sybil`]) builds a world of honest and attacking nodes from a
//! scenario and a seed, feeds the messages those nodes would exchange through the very
//! `commons_aggregator::Aggregator` a node runs, and reports how much weight each side got.
//! The network simulator (`network`, in builds with the `network` feature, on by default)
//! runs many real node stacks (the daemon's own code) on loopback addresses and measures how
//! fast signals spread and tallies converge; [`replay`] computes the tally of a fixed message
//! set with the node's aggregator calls.
//!
//! Without the `network` feature the crate depends on the core crates only (no RocksDB, no
//! libp2p, no Tokio), so that a build for Sybil scenarios alone is quick.
//! The command-line entry point is the `commons-sim` binary; everything it does is here, so
//! that tests and other tools can run scenarios directly.

pub mod error;
#[cfg(feature = "network")]
pub mod network;
pub mod progress;
pub mod replay;
pub mod rng;
pub mod sybil;

pub use error::SimError;
