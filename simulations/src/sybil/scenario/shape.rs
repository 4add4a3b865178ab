//! The shapes a scenario asks for, with the defaults filled in: the honest address blocks, each
//! fleet's size and spread, and the address pool they are drawn from. The checks refuse a
//! scenario whose shapes cannot be built; the world builds them.

use super::{Attacker, Fleet, HonestSection, Resolved};

/// First octets whose whole /8 is public (0, 10, 100, 127, 169, 172, 192, 198 and 203 hold
/// private, reserved or documentation ranges somewhere and are left out altogether): the
/// simulator's IPv4 pool.
pub fn public_first_octets() -> Vec<u8> {
    (1u8..=223)
        .filter(|o| ![10, 100, 127, 169, 172, 192, 198, 203].contains(o))
        .collect()
}

/// How many /16s the simulator's IPv4 pool holds.
pub const PUBLIC_V4_SLASH16S: u64 = 215 * 256;

/// Block counts of the honest address space, with defaults filled in.
#[derive(Debug, Clone, Copy)]
pub struct HonestBlocks {
    /// IPv4 /24 blocks.
    pub v4_24: u64,
    /// /16s they lie in.
    pub v4_16: u64,
    /// IPv6 /48 blocks.
    pub v6_48: u64,
    /// /32s they lie in.
    pub v6_32: u64,
}

impl HonestBlocks {
    /// The counts a scenario asks for.
    pub fn of(h: &HonestSection) -> Self {
        let v4_24 = h.ipv4_slash24s.unwrap_or((h.nodes / 2).max(1));
        let v6_48 = h.ipv6_slash48s.unwrap_or((h.nodes / 2).max(1));
        HonestBlocks {
            v4_24,
            v4_16: h
                .ipv4_slash16s
                .unwrap_or((v4_24 / 4).clamp(1, PUBLIC_V4_SLASH16S)),
            v6_48,
            v6_32: h.ipv6_slash32s.unwrap_or((v6_48 / 4).max(1)),
        }
    }
}

/// A fleet's size and spread with the strategy's defaults filled in.
#[derive(Debug, Clone, Copy)]
pub struct FleetShape {
    /// Keys.
    pub keys: u64,
    /// Addresses.
    pub ips: u64,
    /// Blocks (/24 or /48).
    pub netgroups: u64,
    /// /16s (or /32s) the blocks lie in.
    pub slash16s: u64,
    /// Days up.
    pub days: f64,
}

impl FleetShape {
    /// The shape of `fleet` under `attacker`'s strategy.
    pub fn of(attacker: &Attacker, f: &Fleet, r: &Resolved, view: f64) -> Self {
        let one_ip = matches!(attacker, Attacker::ManyKeysOneIp(_));
        let cloud = matches!(attacker, Attacker::CloudProvider(_));
        let ips = f.ips.unwrap_or(if one_ip { 1 } else { 100 });
        let keys = f.keys.unwrap_or(if one_ip { 10 } else { ips });
        let netgroups = f.netgroups.unwrap_or(if one_ip {
            1
        } else if cloud {
            4.min(ips)
        } else {
            ips
        });
        let slash16s = f
            .slash16s
            .unwrap_or(if one_ip || cloud { 1 } else { netgroups });
        FleetShape {
            keys,
            ips,
            netgroups,
            slash16s,
            days: f.days_held.unwrap_or(r.qualifying_days(view)),
        }
    }
}
