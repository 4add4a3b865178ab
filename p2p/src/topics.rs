//! Gossipsub topics: one per message kind and network.

use libp2p::gossipsub::IdentTopic;

/// The kinds of gossiped messages; each has its own topic per network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicKind {
    /// User signals on proposals.
    Signals,
    /// Maintainer-signed time-locked proposals.
    Proposals,
    /// Periodic node presences carrying uptime attestations.
    Presences,
    /// Signed release bundles (manifests; artifacts travel over the fetch protocol).
    Releases,
    /// Equivocation evidence: two conflicting signals of one signer.
    Evidence,
}

impl TopicKind {
    /// Every topic kind, in a fixed order.
    pub const ALL: [TopicKind; 5] = [
        TopicKind::Signals,
        TopicKind::Proposals,
        TopicKind::Presences,
        TopicKind::Releases,
        TopicKind::Evidence,
    ];

    /// The kind's name as it appears in the topic string.
    pub fn as_str(self) -> &'static str {
        match self {
            TopicKind::Signals => "signals",
            TopicKind::Proposals => "proposals",
            TopicKind::Presences => "presences",
            TopicKind::Releases => "releases",
            TopicKind::Evidence => "evidence",
        }
    }

    /// The topic string on a network: `commons/<network>/<kind>/2`.
    ///
    /// The network name is part of the topic so that nodes of different networks sharing a
    /// peer never mix messages. The trailing version is that of the gossip envelope: 1 was
    /// gossipsub's signed envelope, 2 the anonymous one (no author, sequence number or
    /// envelope signature), which a version-1 node would refuse as invalid and penalise.
    pub fn topic_name(self, network: &str) -> String {
        format!("commons/{network}/{}/2", self.as_str())
    }

    /// The gossipsub topic on a network. The hash of an `IdentTopic` is the name itself,
    /// which keeps topics readable in metrics and logs.
    pub fn topic(self, network: &str) -> IdentTopic {
        IdentTopic::new(self.topic_name(network))
    }
}

impl std::fmt::Display for TopicKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert_eq!(
            TopicKind::Signals.topic_name("regtest"),
            "commons/regtest/signals/2"
        );
        assert_eq!(
            TopicKind::Releases.topic("mainnet").hash().as_str(),
            "commons/mainnet/releases/2"
        );
    }
}
