//! libp2p networking of commons-signal: gossipsub topics, discovery, sync, rate limits.
//!
//! The crate knows nothing about message semantics: gossip payloads and request/response
//! bodies are opaque bytes that the node decodes with `commons-signaling`. What it provides:
//!
//! - the node identity ([`keypair_from_secret`], [`peer_xonly_key`]): the libp2p key is the
//!   node's BIP340 signing key, so a `PeerId` seen on a connection names a signer;
//! - a composed behaviour: TCP + noise + yamux, identify, ping, kad (server mode), gossipsub
//!   (strict signing, application validation before forwarding, content-hash message ids,
//!   peer scoring), request-response for sync and artifact fetch, streams of artifact chunk
//!   runs (`fetch/2`), connection limits and a block list;
//! - per-peer and per-IP rate limits on inbound gossip and requests, with bans for peers that
//!   keep exceeding them;
//! - a task ([`P2pNode`]) that owns the swarm, driven through a cloneable [`P2pHandle`] and
//!   reporting [`P2pEvent`]s.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use commons_p2p::{P2pConfig, P2pEvent, P2pNode, TopicKind, Verdict, keypair_from_secret};
//!
//! let keypair = keypair_from_secret(&[7u8; 32])?;
//! let mut registry = commons_p2p::prometheus_client::registry::Registry::default();
//! let config = P2pConfig::new("regtest");
//! let (handle, mut events, _task) = P2pNode::spawn(config, keypair, &mut registry)?;
//! handle.publish(TopicKind::Signals, b"signal bytes".to_vec()).await.ok();
//! while let Some(event) = events.recv().await {
//!     if let P2pEvent::Message { message_id, propagation_source, .. } = event {
//!         // Decode and verify with commons-signaling, then:
//!         handle.report_validation(message_id, propagation_source, Verdict::Accept).await?;
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod behaviour;
mod codec;
mod config;
pub mod framing;
mod identity;
mod limits;
mod metrics;
mod node;
mod topics;
mod transport;

pub use config::{
    ConnectionLimitsConfig, DEFAULT_PORT, MIN_IP_COLOCATION_THRESHOLD, P2pConfig, RateLimit,
    RateLimits,
};
pub use identity::{IdentityError, keypair_from_secret, peer_ids_of_key, peer_xonly_key};
pub use node::{
    P2pError, P2pEvent, P2pHandle, P2pNode, PeerInfo, RequestKind, ResponseChannel, Verdict,
};
pub use topics::TopicKind;

/// The libp2p version this crate is built on, for the types in its API.
pub use libp2p;
/// The prometheus-client version whose `Registry` [`P2pNode::new`] takes.
pub use prometheus_client;

pub use libp2p::gossipsub::MessageId;
pub use libp2p::identity::Keypair;
pub use libp2p::{Multiaddr, PeerId, Stream};
/// The `fetch/2` streams peers open to this node ([`P2pHandle::accept_fetch_streams`]).
pub use libp2p_stream::IncomingStreams;

/// The gossipsub message id of a payload (SHA-256 of the bytes), as computed by every node.
pub fn message_id(data: &[u8]) -> MessageId {
    behaviour::content_message_id(data)
}
