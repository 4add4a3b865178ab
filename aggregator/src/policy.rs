//! The parameters of the Sybil rule, taken from the network spec and open to change so that
//! `commons-sim` can sweep them.

use std::net::IpAddr;

use commons_signaling::NetworkSpec;
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
