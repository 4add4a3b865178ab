//! The counters a node exposes in its `/metrics` registry that the network simulation
//! reads: gossipsub's per-topic message and byte counts (libp2p's own metrics), the ingest
//! pipeline's verdicts, and the transport's bandwidth.
//!
//! They are read from the registry text exactly as Prometheus would scrape them, so the
//! simulation measures what an operator sees, and needs no accessor in the node.

use std::ops::{AddAssign, Sub};

use serde::Serialize;

/// Counter values of one node (or sums over nodes). All are monotonic counters, so the
/// difference of two readings is what happened in between.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Counters {
    /// Messages gossipsub received on the signals topic, duplicates included.
    pub signal_msgs_received_all: f64,
    /// Messages gossipsub received on the signals topic the first time (after its
    /// duplicate filter), i.e. those handed to the node for validation.
    pub signal_msgs_received_first: f64,
    /// Bytes of the signals topic's messages received, duplicates included.
    pub signal_bytes_received_all: f64,
    /// Messages this node sent on the signals topic (its own and forwarded, to each peer).
    pub signal_msgs_sent: f64,
    /// Bytes of those.
    pub signal_bytes_sent: f64,
    /// Signals the ingest pipeline accepted (new and valid).
    pub ingest_signal_accept: f64,
    /// Signals it rejected (garbage, bad signatures).
    pub ingest_signal_reject: f64,
    /// Signals it ignored (duplicates, replays, unknown proposal...).
    pub ingest_signal_ignore: f64,
    /// Signals dropped as duplicates by the node before verification (reached the node
    /// twice, through gossip and catch-up sync).
    pub ingest_signal_duplicate: f64,
    /// Bytes received on every connection, every protocol (gossip, sync, identify, ping,
    /// kad), including the node's background traffic (presences, attestations).
    pub transport_bytes_in: f64,
    /// Bytes sent likewise.
    pub transport_bytes_out: f64,
    /// Events (gossip messages, requests) the networking layer shed because the node was
    /// too far behind to queue them.
    pub events_dropped: f64,
    /// Gossip verdicts the node reported after gossipsub had forgotten the message (its
    /// validation window passed), so an accepted message was not forwarded.
    pub late_verdicts: f64,
}

impl Counters {
    /// Reads the counters from a registry's text encoding. `signal_topic` is the signals
    /// topic's hash (the `hash` label of gossipsub's per-topic metrics).
    pub fn parse(text: &str, signal_topic: &str) -> Counters {
        let mut c = Counters::default();
        let topic_label = format!("hash=\"{signal_topic}\"");
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let on_topic = labels.contains(&topic_label);
            let slot = match name {
                "libp2p_gossipsub_topic_msg_recv_counts_unfiltered_total" if on_topic => {
                    &mut c.signal_msgs_received_all
                }
                "libp2p_gossipsub_topic_msg_recv_counts_total" if on_topic => {
                    &mut c.signal_msgs_received_first
                }
                "libp2p_gossipsub_topic_msg_recv_bytes_unfiltered_total" if on_topic => {
                    &mut c.signal_bytes_received_all
                }
                "libp2p_gossipsub_topic_msg_sent_counts_total" if on_topic => {
                    &mut c.signal_msgs_sent
                }
                "libp2p_gossipsub_topic_msg_sent_bytes_total" if on_topic => {
                    &mut c.signal_bytes_sent
                }
                "commons_messages_received_total" if labels.contains("kind=\"signal\"") => {
                    if labels.contains("verdict=\"accept\"") {
                        &mut c.ingest_signal_accept
                    } else if labels.contains("verdict=\"reject\"") {
                        &mut c.ingest_signal_reject
                    } else {
                        &mut c.ingest_signal_ignore
                    }
                }
                "commons_duplicates_dropped_total" if labels.contains("kind=\"signal\"") => {
                    &mut c.ingest_signal_duplicate
                }
                // libp2p writes the direction as its Rust variant name (`Inbound`).
                "libp2p_bandwidth_bytes_total" if labels.contains("direction=\"Inbound\"") => {
                    &mut c.transport_bytes_in
                }
                "libp2p_bandwidth_bytes_total" if labels.contains("direction=\"Outbound\"") => {
                    &mut c.transport_bytes_out
                }
                "commons_p2p_events_dropped_total" => &mut c.events_dropped,
                "commons_p2p_late_verdicts_total" => &mut c.late_verdicts,
                _ => continue,
            };
            *slot += value;
        }
        c
    }

    fn fields_mut(&mut self) -> [&mut f64; 13] {
        [
            &mut self.signal_msgs_received_all,
            &mut self.signal_msgs_received_first,
            &mut self.signal_bytes_received_all,
            &mut self.signal_msgs_sent,
            &mut self.signal_bytes_sent,
            &mut self.ingest_signal_accept,
            &mut self.ingest_signal_reject,
            &mut self.ingest_signal_ignore,
            &mut self.ingest_signal_duplicate,
            &mut self.transport_bytes_in,
            &mut self.transport_bytes_out,
            &mut self.events_dropped,
            &mut self.late_verdicts,
        ]
    }
}

impl AddAssign for Counters {
    fn add_assign(&mut self, mut other: Counters) {
        for (a, b) in self.fields_mut().into_iter().zip(other.fields_mut()) {
            *a += *b;
        }
    }
}

impl Sub for Counters {
    type Output = Counters;
    fn sub(mut self, mut other: Counters) -> Counters {
        for (a, b) in self.fields_mut().into_iter().zip(other.fields_mut()) {
            // A counter never goes back; a smaller reading means the node restarted with a
            // fresh registry, which the caller accounts for separately.
            *a = (*a - *b).max(0.0);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_series_it_needs_and_nothing_else() {
        let text = "\
# HELP libp2p_gossipsub_topic_msg_recv_counts_unfiltered Number of gossip messages received.
# TYPE libp2p_gossipsub_topic_msg_recv_counts_unfiltered counter
libp2p_gossipsub_topic_msg_recv_counts_unfiltered_total{hash=\"/commons/regtest/signals/1\"} 12
libp2p_gossipsub_topic_msg_recv_counts_unfiltered_total{hash=\"/commons/regtest/presences/1\"} 99
libp2p_gossipsub_topic_msg_recv_counts_total{hash=\"/commons/regtest/signals/1\"} 5
commons_messages_received_total{kind=\"signal\",verdict=\"accept\"} 4
commons_messages_received_total{kind=\"signal\",verdict=\"reject\"} 1
commons_messages_received_total{kind=\"presence\",verdict=\"accept\"} 40
commons_duplicates_dropped_total{kind=\"signal\"} 2
libp2p_bandwidth_bytes_total{protocols=\"/ip4/tcp\",direction=\"Inbound\"} 1000
libp2p_bandwidth_bytes_total{protocols=\"/ip4/tcp\",direction=\"Outbound\"} 700
libp2p_bandwidth_bytes_total{protocols=\"/ip6/tcp\",direction=\"Inbound\"} 24
commons_p2p_events_dropped_total 3
";
        let c = Counters::parse(text, "/commons/regtest/signals/1");
        assert_eq!(c.signal_msgs_received_all, 12.0);
        assert_eq!(c.signal_msgs_received_first, 5.0);
        assert_eq!(c.ingest_signal_accept, 4.0);
        assert_eq!(c.ingest_signal_reject, 1.0);
        assert_eq!(c.ingest_signal_ignore, 0.0);
        assert_eq!(c.ingest_signal_duplicate, 2.0);
        assert_eq!(c.transport_bytes_in, 1024.0);
        assert_eq!(c.transport_bytes_out, 700.0);
        assert_eq!(c.events_dropped, 3.0);
        let mut sum = c;
        sum += c;
        assert_eq!(sum.signal_msgs_received_all, 24.0);
        assert_eq!((sum - c).signal_msgs_received_all, 12.0);
    }
}
