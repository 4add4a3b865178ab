//! Metrics of this crate (the libp2p ones are registered under the `libp2p` prefix).

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::limits::Scope;

/// What was throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum LimitedKind {
    Gossip,
    Request,
}

/// Which bucket ran dry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum LimitScope {
    Peer,
    Ip,
}

// Written by hand because the derive uses the variant names verbatim, and Prometheus label
// values are conventionally lower case.
impl EncodeLabelValue for LimitedKind {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        let value = match self {
            LimitedKind::Gossip => "gossip",
            LimitedKind::Request => "request",
        };
        EncodeLabelValue::encode(&value, encoder)
    }
}

impl EncodeLabelValue for LimitScope {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        let value = match self {
            LimitScope::Peer => "peer",
            LimitScope::Ip => "ip",
        };
        EncodeLabelValue::encode(&value, encoder)
    }
}

impl From<Scope> for LimitScope {
    fn from(scope: Scope) -> Self {
        match scope {
            Scope::Peer => LimitScope::Peer,
            Scope::Ip => LimitScope::Ip,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(crate) struct LimitLabels {
    pub(crate) kind: LimitedKind,
    pub(crate) scope: LimitScope,
}

/// The crate's own metrics.
#[derive(Debug, Clone, Default)]
pub(crate) struct P2pMetrics {
    pub(crate) rate_limited: Family<LimitLabels, Counter>,
    pub(crate) peers_banned: Counter,
    pub(crate) connected_peers: Gauge,
    pub(crate) events_dropped: Counter,
    pub(crate) late_verdicts: Counter,
}

impl P2pMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        // Counters get the `_total` suffix from the encoder.
        registry.register(
            "commons_p2p_rate_limited",
            "Inbound gossip messages and requests dropped by a per-peer or per-IP rate limit",
            metrics.rate_limited.clone(),
        );
        registry.register(
            "commons_p2p_peers_banned",
            "Peers disconnected and banned for repeatedly exceeding rate limits or misbehaving",
            metrics.peers_banned.clone(),
        );
        registry.register(
            "commons_p2p_connected_peers",
            "Peers with at least one established connection",
            metrics.connected_peers.clone(),
        );
        registry.register(
            "commons_p2p_events_dropped",
            "Events not delivered because the application's event channel was full",
            metrics.events_dropped.clone(),
        );
        registry.register(
            "commons_p2p_late_verdicts",
            "Validation verdicts reported after gossipsub forgot the message (its validation window passed): an accepted message that is not forwarded",
            metrics.late_verdicts.clone(),
        );
        metrics
    }
}
