//! The commons-signal peer daemon `commonsd`: configuration, RocksDB store, ingest pipeline,
//! epoch scheduler, JSON-RPC server and Prometheus metrics.
//!
//! [`node::Node`] is the core (aggregator, store, ingest, RPC methods) and runs without a
//! network; [`daemon::Daemon`] wires it to the swarm, the servers and the epoch scheduler.

pub mod artifacts;
mod background;
pub mod config;
pub mod cookie;
pub mod daemon;
mod epoch;
mod export;
pub mod fetch;
mod gossip_queue;
mod ingest;
pub mod logfile;
mod methods;
pub mod metrics;
pub mod node;
mod publish;
pub mod releases;
mod restore;
pub mod rpc;
pub mod selfcheck;
pub mod service;
pub mod serving;
mod specinfo;
pub mod store;
pub mod sync;
pub mod topics;

pub use epoch::AUDIT_PEER_ATTESTATIONS;

/// Resolves once `shutdown` holds true (or its sender is gone). The guard of
/// `watch::Receiver::wait_for` is not `Send`, which would keep the servers' futures from
/// being spawned; this borrows only between awaits.
pub(crate) async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}
