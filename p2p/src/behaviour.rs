//! The composed libp2p behaviour and its per-protocol settings.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::gossipsub::{self, MessageAuthenticity, MessageId, ValidationMode};
use libp2p::identity::Keypair;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{StreamProtocol, allow_block_list, connection_limits, identify, kad, ping};
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};

use crate::codec::BytesCodec;
use crate::config::{GOSSIP_HISTORY, P2pConfig};
use crate::topics::TopicKind;

/// Room for the gossipsub envelope (topic and protobuf framing; anonymous envelopes carry no
/// author, key, signature or sequence number) around a payload.
const GOSSIP_ENVELOPE_OVERHEAD: usize = 2048;

/// Gossipsub score thresholds. Scores fall below zero through invalid messages (rejected
/// verdicts), IP colocation, protocol misbehaviour and application penalties.
/// - below `gossip_threshold` a peer receives and sends no IHAVE/IWANT gossip;
/// - below `publish_threshold` our own messages are not flood-published to it;
/// - below `graylist_threshold` everything it sends is ignored.
fn thresholds() -> gossipsub::PeerScoreThresholds {
    gossipsub::PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: -80.0,
        // Peer exchange is off, so this only needs to be non-negative.
        accept_px_threshold: 100.0,
        opportunistic_graft_threshold: 5.0,
    }
}

/// Per-topic score parameters.
///
/// The topics are sparse (a signal now and then), so the mesh delivery penalties (P3, P3b)
/// that expect a steady message rate are off: silence must not make a peer look bad. What
/// counts is first deliveries (P2, small positive) and invalid deliveries (P4, squared): each
/// rejected message costs `-10 * weight`, so a handful of them pushes a peer under the
/// gossip, publish and finally graylist thresholds, and the count decays over half an hour.
fn topic_params(kind: TopicKind) -> gossipsub::TopicScoreParams {
    let topic_weight = match kind {
        // Presences are the most frequent and least valuable individually.
        TopicKind::Presences => 0.5,
        TopicKind::Signals | TopicKind::Proposals | TopicKind::Releases | TopicKind::Evidence => {
            1.0
        }
    };
    gossipsub::TopicScoreParams {
        topic_weight,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 600.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_decay: gossipsub::score_parameter_decay(Duration::from_secs(3600)),
        first_message_deliveries_cap: 20.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: gossipsub::score_parameter_decay(Duration::from_secs(
            1800,
        )),
        ..Default::default()
    }
}

fn score_params(config: &P2pConfig) -> gossipsub::PeerScoreParams {
    let topics = TopicKind::ALL
        .iter()
        .map(|kind| (kind.topic(&config.network).hash(), topic_params(*kind)))
        .collect::<HashMap<_, _>>();
    gossipsub::PeerScoreParams {
        topics,
        // Positive topic contributions are capped so that a long-lived peer cannot bank enough
        // credit to keep relaying invalid messages above the graylist.
        topic_score_cap: 20.0,
        // Application penalties (`P2pHandle::penalize`) are set directly in score units.
        app_specific_weight: 1.0,
        ip_colocation_factor_weight: -5.0,
        ip_colocation_factor_threshold: f64::from(config.ip_colocation_threshold),
        ip_colocation_factor_whitelist: config.ip_colocation_whitelist.iter().copied().collect(),
        behaviour_penalty_weight: -10.0,
        behaviour_penalty_threshold: 0.0,
        behaviour_penalty_decay: gossipsub::score_parameter_decay(Duration::from_secs(600)),
        decay_interval: Duration::from_secs(1),
        decay_to_zero: 0.01,
        retain_score: Duration::from_secs(3600),
        ..Default::default()
    }
}

/// The message id is the SHA-256 of the payload, so the same signal relayed by different
/// nodes (or re-published after a sync) is recognised as one message, and the application
/// can compute the id from the bytes alone.
pub(crate) fn content_message_id(data: &[u8]) -> MessageId {
    MessageId::new(&Sha256::digest(data))
}

fn protocol(name: String) -> Result<StreamProtocol, String> {
    StreamProtocol::try_from_owned(name).map_err(|e| e.to_string())
}

/// Identify protocol version: peers announcing another one belong to another network.
pub(crate) fn identify_protocol_version(network: &str) -> String {
    format!("/commons/{network}/1.0.0")
}

/// Kademlia protocol name, per network so that DHTs of different networks never merge.
pub(crate) fn kad_protocol(network: &str) -> Result<StreamProtocol, String> {
    protocol(format!("/commons/{network}/kad/1.0.0"))
}

/// The protocol of artifact chunk runs, one stream per run (`fetch/2`).
pub(crate) fn fetch_stream_protocol(network: &str) -> Result<StreamProtocol, String> {
    protocol(format!("/commons/{network}/fetch/2"))
}

/// The composed behaviour. The limit and block-list behaviours come first so that they deny
/// connections before the protocol behaviours allocate anything for them.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) sync: request_response::Behaviour<BytesCodec>,
    pub(crate) fetch: request_response::Behaviour<BytesCodec>,
    /// Streams of `fetch/2`, opened and accepted through [`libp2p_stream::Control`]s.
    pub(crate) streams: libp2p_stream::Behaviour,
}

impl Behaviour {
    /// Builds every sub-behaviour from the (validated) config. Gossipsub's internal metrics
    /// go into `libp2p_registry`, the `libp2p`-prefixed sub-registry.
    pub(crate) fn new(
        key: &Keypair,
        config: &P2pConfig,
        libp2p_registry: &mut Registry,
    ) -> Result<Self, String> {
        let local_peer_id = key.public().to_peer_id();
        let limits = &config.connection_limits;
        let limits = connection_limits::ConnectionLimits::default()
            .with_max_established(Some(limits.max_established))
            .with_max_established_incoming(Some(limits.max_established_incoming))
            .with_max_established_per_peer(Some(limits.max_established_per_peer))
            .with_max_pending_incoming(Some(limits.max_pending_incoming));

        let identify = identify::Behaviour::new(
            identify::Config::new(identify_protocol_version(&config.network), key.public())
                .with_agent_version(config.agent_version.clone())
                .with_push_listen_addr_updates(true),
        );

        let mut kad_config = kad::Config::new(kad_protocol(&config.network)?);
        // Records are not used: filtering inbound PUTs keeps remote peers from filling memory.
        kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
        kad_config.set_query_timeout(Duration::from_secs(60));
        if config.discovery {
            kad_config.set_periodic_bootstrap_interval(Some(config.kad_bootstrap_interval));
        } else {
            // Without discovery nothing enters the routing table, so kad never starts a query
            // (and never dials) on its own; it still answers the queries of others.
            kad_config.set_periodic_bootstrap_interval(None);
            kad_config.set_kbucket_inserts(kad::BucketInserts::Manual);
        }
        let mut kad = kad::Behaviour::with_config(
            local_peer_id,
            kad::store::MemoryStore::new(local_peer_id),
            kad_config,
        );
        // Every node is a full DHT member; there are no light clients in this network.
        kad.set_mode(Some(kad::Mode::Server));

        let gossip_config = gossipsub::ConfigBuilder::default()
            // Every payload is signed by its author (BIP340) and checked by the node, and
            // message ids are content hashes, so gossipsub's own envelope signature protects
            // nothing: without it a node skips one ECDSA check per received copy
            // (duplicates included), which cost as much as the node's own check per
            // message. Anonymous validation also refuses envelopes that carry an author,
            // sequence number or signature, so the topics' version changed with it.
            .validation_mode(ValidationMode::Anonymous)
            .validate_messages()
            .message_id_fn(|message: &gossipsub::Message| content_message_id(&message.data))
            .max_transmit_size(config.max_gossip_message_size + GOSSIP_ENVELOPE_OVERHEAD)
            .heartbeat_interval(config.heartbeat_interval)
            .heartbeat_initial_delay(config.heartbeat_interval)
            .history_length(config.history_length())
            .history_gossip(GOSSIP_HISTORY)
            .mesh_n_low(config.mesh_n_low)
            .mesh_n(config.mesh_n)
            .mesh_n_high(config.mesh_n_high)
            .mesh_outbound_min((config.mesh_n_low / 2).min(config.mesh_n / 2))
            .gossip_lazy(config.mesh_n)
            .build()
            .map_err(|e| format!("gossipsub config: {e:?}"))?;
        let mut gossipsub =
            gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gossip_config)
                .map_err(|e| format!("gossipsub: {e}"))?
                .with_metrics(
                    libp2p_registry.sub_registry_with_prefix("gossipsub"),
                    gossipsub::MetricsConfig::default(),
                );
        gossipsub.with_peer_score(score_params(config), thresholds())?;
        for kind in TopicKind::ALL {
            gossipsub
                .subscribe(&kind.topic(&config.network))
                .map_err(|e| format!("subscribe {kind}: {e:?}"))?;
        }

        let rr_config = request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(32);
        let codec = BytesCodec::new(config.max_request_size, config.max_response_size);
        let sync = request_response::Behaviour::with_codec(
            codec.clone(),
            [(
                protocol(format!("/commons/{}/sync/1", config.network))?,
                ProtocolSupport::Full,
            )],
            rr_config.clone(),
        );
        let fetch = request_response::Behaviour::with_codec(
            codec,
            [(
                protocol(format!("/commons/{}/fetch/1", config.network))?,
                ProtocolSupport::Full,
            )],
            rr_config,
        );

        Ok(Self {
            limits: connection_limits::Behaviour::new(limits),
            blocked: allow_block_list::Behaviour::default(),
            identify,
            ping: ping::Behaviour::default(),
            kad,
            gossipsub,
            sync,
            fetch,
            streams: libp2p_stream::Behaviour::new(),
        })
    }
}
