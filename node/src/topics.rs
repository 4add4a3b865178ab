//! Which message kind travels on which gossip topic, defined once for the whole daemon
//! (the networking layer carries opaque bytes and does not know the message types).

use commons_p2p::TopicKind;
use commons_signaling::MessageKind;

/// The message kind that travels on a gossip topic.
pub fn topic_kind(topic: TopicKind) -> MessageKind {
    match topic {
        TopicKind::Signals => MessageKind::Signal,
        TopicKind::Proposals => MessageKind::Proposal,
        TopicKind::Presences => MessageKind::Presence,
        TopicKind::Releases => MessageKind::Release,
        TopicKind::Evidence => MessageKind::Evidence,
    }
}

/// The gossip topic a message kind travels on; bare attestations have none (they go to
/// their subject directly).
pub fn gossip_topic(kind: MessageKind) -> Option<TopicKind> {
    TopicKind::ALL.into_iter().find(|t| topic_kind(*t) == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_maps_back_to_itself_and_attestations_have_none() {
        for topic in TopicKind::ALL {
            assert_eq!(gossip_topic(topic_kind(topic)), Some(topic));
        }
        assert_eq!(gossip_topic(MessageKind::Attestation), None);
    }
}
