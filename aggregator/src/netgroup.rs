//! Netgroups: the address blocks that square-root weighting and the attestation quorum count
//! as one, because one operator can cheaply rent many addresses inside one block.
//!
//! The rule, in order:
//!
//! 1. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is the IPv4 address `a.b.c.d`.
//! 2. A tunnel address that embeds an IPv4 address is grouped by that IPv4 address: 6to4
//!    (`2002::/16`), Teredo (`2001::/32`, the client address) and NAT64 (`64:ff9b::/96`).
//!    Otherwise whoever holds one IPv4 address could claim a different IPv6 /48 per node.
//! 3. Unless the policy allows unroutable addresses (regtest), every unroutable address
//!    (see [`is_unroutable`]) falls into the single netgroup [`Netgroup::Unroutable`]: such an
//!    address says nothing about who runs the node, so all of them together weigh like one
//!    block.
//! 4. Every other address is masked to the policy's prefix: IPv4 `/24` and IPv6 `/48` on
//!    mainnet, so `192.0.2.77` is in `192.0.2.0/24`. Regtest's `/30` splits `127.0.0.0/8`
//!    into many netgroups, so a local network of loopback nodes can reach a quorum.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Serialize, Serializer};

/// An address block whose nodes are counted together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Netgroup {
    /// An IPv4 block.
    V4 {
        /// The first address of the block.
        network: Ipv4Addr,
        /// The prefix length.
        prefix: u8,
    },
    /// An IPv6 block.
    V6 {
        /// The first address of the block.
        network: Ipv6Addr,
        /// The prefix length.
        prefix: u8,
    },
    /// Every unroutable address, when the policy does not give them netgroups of their own.
    Unroutable,
}

impl Netgroup {
    /// The netgroup of `ip` with the given prefix lengths (clamped to 32 and 128). See the
    /// module documentation for the rule.
    pub fn of(ip: IpAddr, ipv4_prefix: u8, ipv6_prefix: u8, allow_unroutable: bool) -> Netgroup {
        let ip = match canonical_ip(ip) {
            IpAddr::V6(v6) => embedded_ipv4(&v6).map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        if !allow_unroutable && is_unroutable(ip) {
            return Netgroup::Unroutable;
        }
        match ip {
            IpAddr::V4(a) => {
                let prefix = ipv4_prefix.min(32);
                Netgroup::V4 {
                    network: Ipv4Addr::from(u32::from(a) & mask32(prefix)),
                    prefix,
                }
            }
            IpAddr::V6(a) => {
                let prefix = ipv6_prefix.min(128);
                Netgroup::V6 {
                    network: Ipv6Addr::from(u128::from(a) & mask128(prefix)),
                    prefix,
                }
            }
        }
    }
}

impl fmt::Display for Netgroup {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Netgroup::V4 { network, prefix } => write!(f, "{network}/{prefix}"),
            Netgroup::V6 { network, prefix } => write!(f, "{network}/{prefix}"),
            Netgroup::Unroutable => f.write_str("unroutable"),
        }
    }
}

impl Serialize for Netgroup {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The address as the rules compare it: an IPv4-mapped IPv6 address becomes IPv4, so that
/// `::ffff:192.0.2.1` and `192.0.2.1` are one address for agreement among attesters and for
/// IP dedup.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn mask32(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

fn mask128(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

fn in_v4(a: Ipv4Addr, net: [u8; 4], prefix: u8) -> bool {
    u32::from(a) & mask32(prefix) == u32::from(Ipv4Addr::from(net)) & mask32(prefix)
}

fn in_v6(a: &Ipv6Addr, net: u128, prefix: u8) -> bool {
    u128::from(*a) & mask128(prefix) == net & mask128(prefix)
}

/// The IPv4 address a 6to4, Teredo or NAT64 address carries.
fn embedded_ipv4(a: &Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(*a);
    if in_v6(a, 0x2002 << 112, 16) {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    if in_v6(a, 0x2001_0000 << 96, 32) {
        // Teredo stores the client's public address inverted in the low 32 bits.
        return Some(Ipv4Addr::from(!(bits as u32)));
    }
    if in_v6(a, 0x0064_ff9b << 96, 96) {
        return Some(Ipv4Addr::from(bits as u32));
    }
    None
}

const UNROUTABLE_V4: [([u8; 4], u8); 14] = [
    ([0, 0, 0, 0], 8),       // "this network", unspecified
    ([10, 0, 0, 0], 8),      // private (RFC 1918)
    ([100, 64, 0, 0], 10),   // carrier-grade NAT (RFC 6598)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link-local
    ([172, 16, 0, 0], 12),   // private (RFC 1918)
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // documentation (TEST-NET-1)
    ([192, 168, 0, 0], 16),  // private (RFC 1918)
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // documentation (TEST-NET-2)
    ([203, 0, 113, 0], 24),  // documentation (TEST-NET-3)
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, broadcast
];

const UNROUTABLE_V6: [(u128, u8); 8] = [
    (0, 128),                // unspecified
    (1, 128),                // loopback
    (0x0100 << 112, 64),     // discard-only
    (0x2001_0db8 << 96, 32), // documentation
    (0xfc00 << 112, 7),      // unique local
    (0xfe80 << 112, 10),     // link-local
    (0xfec0 << 112, 10),     // site-local (deprecated)
    (0xff00 << 112, 8),      // multicast
];

/// Whether an address cannot be a node's public address: unspecified, loopback, private
/// (RFC 1918, IPv6 unique local `fc00::/7`), link-local, carrier-grade NAT `100.64.0.0/10`,
/// documentation (`192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`),
/// benchmarking, multicast and reserved ranges. IPv4-mapped and tunnel addresses are judged
/// by the IPv4 address they carry.
pub fn is_unroutable(ip: IpAddr) -> bool {
    match canonical_ip(ip) {
        IpAddr::V4(a) => UNROUTABLE_V4
            .iter()
            .any(|&(net, prefix)| in_v4(a, net, prefix)),
        IpAddr::V6(a) => match embedded_ipv4(&a) {
            Some(v4) => is_unroutable(IpAddr::V4(v4)),
            None => UNROUTABLE_V6
                .iter()
                .any(|&(net, prefix)| in_v6(&a, net, prefix)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn mainnet(s: &str) -> String {
        Netgroup::of(ip(s), 24, 48, false).to_string()
    }

    fn regtest(s: &str) -> String {
        Netgroup::of(ip(s), 30, 64, true).to_string()
    }

    #[test]
    fn ipv4_is_masked_to_the_prefix() {
        assert_eq!(mainnet("8.8.4.4"), "8.8.4.0/24");
        assert_eq!(mainnet("8.8.4.255"), "8.8.4.0/24");
        assert_ne!(mainnet("8.8.4.4"), mainnet("8.8.5.4"));
        assert_eq!(
            Netgroup::of(ip("8.8.4.4"), 16, 48, false).to_string(),
            "8.8.0.0/16"
        );
        assert_eq!(
            Netgroup::of(ip("8.8.4.4"), 0, 48, false).to_string(),
            "0.0.0.0/0"
        );
        assert_eq!(
            Netgroup::of(ip("8.8.4.4"), 99, 48, false).to_string(),
            "8.8.4.4/32"
        );
    }

    #[test]
    fn ipv6_is_masked_to_the_prefix() {
        assert_eq!(mainnet("2a01:4f8:10a:1::2"), "2a01:4f8:10a::/48");
        assert_eq!(mainnet("2a01:4f8:10a:ffff::1"), "2a01:4f8:10a::/48");
        assert_ne!(mainnet("2a01:4f8:10a::1"), mainnet("2a01:4f8:10b::1"));
    }

    #[test]
    fn ipv4_mapped_ipv6_is_ipv4() {
        assert_eq!(mainnet("::ffff:8.8.4.4"), "8.8.4.0/24");
        assert_eq!(canonical_ip(ip("::ffff:8.8.4.4")), ip("8.8.4.4"));
        assert!(is_unroutable(ip("::ffff:127.0.0.1")));
    }

    #[test]
    fn tunnels_are_grouped_by_their_ipv4_address() {
        // 6to4 of 8.8.4.4 is 2002:808:404::/48.
        assert_eq!(mainnet("2002:808:404::1"), "8.8.4.0/24");
        assert_eq!(mainnet("2002:808:404:1234::1"), "8.8.4.0/24");
        // Teredo: the client address 8.8.4.4 is stored inverted: f7f7:fbfb.
        assert_eq!(
            mainnet("2001:0:4136:e378:8000:63bf:f7f7:fbfb"),
            "8.8.4.0/24"
        );
        assert_eq!(mainnet("64:ff9b::808:404"), "8.8.4.0/24");
        assert!(is_unroutable(ip("2002:c0a8:101::1")), "6to4 of 192.168.1.1");
    }

    #[test]
    fn unroutable_addresses_share_one_netgroup_unless_allowed() {
        for s in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "169.254.1.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
        ] {
            assert!(is_unroutable(ip(s)), "{s}");
            assert_eq!(mainnet(s), "unroutable", "{s}");
        }
        for s in [
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "1.1.1.1",
            "2a00:1450::1",
        ] {
            assert!(!is_unroutable(ip(s)), "{s}");
        }
    }

    #[test]
    fn regtest_splits_loopback_into_many_netgroups() {
        assert_eq!(regtest("127.0.0.1"), "127.0.0.0/30");
        assert_eq!(regtest("127.0.0.5"), "127.0.0.4/30");
        assert_eq!(regtest("10.0.0.9"), "10.0.0.8/30");
        assert_eq!(regtest("::1"), "::/64");
        assert_ne!(regtest("127.0.0.1"), regtest("127.0.0.4"));
    }

    #[test]
    fn netgroups_order_and_serialize() {
        let a = Netgroup::of(ip("1.2.3.4"), 24, 48, false);
        let b = Netgroup::of(ip("2a00::1"), 24, 48, false);
        assert!(a < b && b < Netgroup::Unroutable);
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"1.2.3.0/24\"");
    }
}
