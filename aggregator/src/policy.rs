//! The parameters of the Sybil rule, taken from the network spec and open to change so that
//! `commons-sim` can sweep them.

use std::collections::BTreeSet;
use std::net::IpAddr;

use commons_signaling::{NetworkSpec, PublicKey, QualificationRule};
use serde::{Deserialize, Serialize};

use crate::netgroup::Netgroup;

/// Every parameter of the Sybil rule. A node always uses [`Policy::from_spec`]; the simulator
/// may change any field to see what the rule is worth without it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// q: how many attesters in distinct netgroups must vouch for a node's uptime. Values
    /// below 1 act as 1.
    pub attestation_quorum: u32,
    /// The uptime, in epochs, that qualifies a node.
    pub min_uptime_epochs: u32,
    /// How many epochs an attestation stays live after the epoch it was issued at; also the
    /// largest `seen_epochs` value that counts (larger claims are cut to it).
    pub uptime_window_epochs: u32,
    /// IPv4 netgroup prefix length (values above 32 act as 32).
    pub netgroup_ipv4_prefix: u8,
    /// IPv6 netgroup prefix length (values above 128 act as 128).
    pub netgroup_ipv6_prefix: u8,
    /// Whether loopback, private and other unroutable addresses get ordinary prefix
    /// netgroups (regtest); otherwise they all share the one netgroup
    /// [`Netgroup::Unroutable`].
    pub allow_unroutable: bool,
    /// Whether only one qualified node per IP address counts.
    #[serde(default = "yes")]
    pub ip_dedup: bool,
    /// Whether a netgroup of n counted nodes weighs sqrt(n) rather than n.
    #[serde(default = "yes")]
    pub sqrt_weighting: bool,
}

fn yes() -> bool {
    true
}

impl Policy {
    /// The policy a node of this network runs: the spec's parameters, IP dedup and
    /// square-root weighting on.
    pub fn from_spec(spec: &NetworkSpec) -> Self {
        Policy {
            attestation_quorum: spec.attestation_quorum,
            min_uptime_epochs: spec.min_uptime_epochs,
            uptime_window_epochs: spec.uptime_window_epochs,
            netgroup_ipv4_prefix: spec.netgroup_ipv4_prefix,
            netgroup_ipv6_prefix: spec.netgroup_ipv6_prefix,
            allow_unroutable: spec.allow_unroutable,
            ip_dedup: true,
            sqrt_weighting: true,
        }
    }

    /// The netgroup of an address under this policy.
    pub fn netgroup(&self, ip: IpAddr) -> Netgroup {
        Netgroup::of(
            ip,
            self.netgroup_ipv4_prefix,
            self.netgroup_ipv6_prefix,
            self.allow_unroutable,
        )
    }

    /// The quorum as used: at least 1.
    pub(crate) fn quorum(&self) -> usize {
        self.attestation_quorum.max(1) as usize
    }
}

/// Step 2's choice of whose attestations qualify a node, with its parameters: the spec's
/// [`QualificationRule`] made concrete. Kept apart from [`Policy`] so that code building a
/// `Policy` field by field keeps compiling; [`Aggregator::new`](crate::Aggregator::new)
/// takes it from the spec, and
/// [`Aggregator::with_qualification`](crate::Aggregator::with_qualification) lets the
/// simulator set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "rule")]
pub enum Qualification {
    /// Rule v1: every peer's attestation counts, attesters placed by attestations about them.
    PeerAttestations,
    /// Only measurers vouch, by name.
    Measurers(MeasurerPolicy),
    /// Anchored ticket admission.
    Tickets(TicketPolicy),
}

/// The parameters of the measurer rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasurerPolicy {
    /// The measurer keys.
    pub measurers: BTreeSet<PublicKey>,
    /// `q_m`: how many measurers must agree on an address (values below 1 act as 1).
    pub quorum: u32,
    /// `L`: a node counts only while some measurer's attestation about it at its address
    /// was issued within the last `L` epochs (values below 1 act as 1).
    pub liveness_epochs: u32,
}

/// The parameters of anchored ticket admission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketPolicy {
    /// The keys tickets start from.
    pub anchors: BTreeSet<PublicKey>,
    /// Tickets each anchor hands out; each node reached uses one.
    pub tickets_per_anchor: u32,
    /// K: from how many distinct anchors a node needs a ticket (values below 1 act as 1).
    pub anchors_required: u32,
}

impl Qualification {
    /// The rule and parameters the spec sets.
    pub fn from_spec(spec: &NetworkSpec) -> Self {
        match spec.qualification {
            QualificationRule::PeerAttestations => Qualification::PeerAttestations,
            QualificationRule::Measurers => Qualification::Measurers(MeasurerPolicy {
                measurers: spec.measurer_keys().collect(),
                quorum: spec.measurer_quorum,
                liveness_epochs: spec.liveness_epochs,
            }),
            QualificationRule::Tickets => Qualification::Tickets(TicketPolicy {
                anchors: spec.tickets.anchors.iter().copied().collect(),
                tickets_per_anchor: spec.tickets.tickets_per_anchor,
                anchors_required: spec.tickets.anchors_required,
            }),
        }
    }

    /// Which rule this is.
    pub fn rule(&self) -> QualificationRule {
        match self {
            Qualification::PeerAttestations => QualificationRule::PeerAttestations,
            Qualification::Measurers(_) => QualificationRule::Measurers,
            Qualification::Tickets(_) => QualificationRule::Tickets,
        }
    }
}

impl MeasurerPolicy {
    /// The quorum as used: at least 1.
    pub(crate) fn quorum(&self) -> usize {
        self.quorum.max(1) as usize
    }

    /// The liveness window as used: at least 1.
    pub(crate) fn liveness(&self) -> u64 {
        u64::from(self.liveness_epochs.max(1))
    }
}
