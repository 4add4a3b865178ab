//! The simulated world of one run: every node with its key, address, uptime and choice, and
//! the attestations each attester would have issued by the tally epoch.
//!
//! Only the latest attestation of each attester about each subject counts in the rule, so the
//! world makes exactly that one per pair: the attestation issued at the last epoch both were
//! online (the tally epoch for nodes still up), saying how many epochs of the window the
//! attester saw the subject. That is the message set a fully synchronised node holds at the
//! tally epoch; the epoch-by-epoch history that led to it changes nothing in the tally.
//!
//! Every world also has measurers (spec-listed keys) and ticket anchors (its longest-running
//! honest nodes), whatever the rule in force: nodes connect to every measurer once per epoch
//! on any network, and only the rule decides whose attestations count. So the three rules
//! run on the same messages, and a sweep over `policy.qualification` compares them on the
//! same honest population.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;

use commons_aggregator::netgroup::is_unroutable;
use commons_signaling::{
    AttestationBody, Choice, PROTOCOL_VERSION, PublicKey, Signature, Signed, UptimeAttestation,
    WireIp,
};

use crate::rng::{Discrete, Rng, Stream};
use crate::sybil::scenario::{
    Attacker, Churn, Clique, ColludingMeasurers, ColludingReal, Fleet, FleetShape, HonestBlocks,
    HonestSection, PUBLIC_V4_SLASH16S, Resolved, Scenario, Spread, Uptime, public_first_octets,
};

/// Which side a node is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// An honest node.
    Honest,
    /// A node of the attacker with this index in the scenario.
    Attacker(u16),
}

/// One node of the world.
#[derive(Debug, Clone)]
pub struct WorldNode {
    /// Its key (32 random bytes: the aggregator never needs a curve point).
    pub key: PublicKey,
    /// The address honest peers see it at (for a clique member: the one it claims).
    pub ip: IpAddr,
    /// Epochs online within the window by its latest attestation.
    pub uptime: u32,
    /// The epoch of its latest attestations: the tally epoch, or the last epoch it was up.
    pub epoch: u64,
    /// Honest or which attacker.
    pub side: Side,
    /// What it signals, if anything.
    pub choice: Option<Choice>,
    /// How many honest peers attest it (0 for clique members: nobody honest sees them).
    pub honest_attesters: u32,
    /// Whether it really runs, so that measurers see it (false for made-up keys).
    pub runs: bool,
}

/// One measurer of the world: honest unless it colludes, up except for its outage.
#[derive(Debug, Clone)]
pub struct Measurer {
    /// Its key, listed in the spec.
    pub key: PublicKey,
    /// The epochs it was down (attested nobody), if it had an outage.
    pub down: Option<RangeInclusive<u64>>,
    /// Whether it colludes with an attacker (mints keys, censors honest nodes).
    pub colluding: bool,
}

impl Measurer {
    /// What this measurer's latest attestation about a node online for the `uptime` epochs
    /// up to `last_online` says: the last epoch both were up, and how many epochs of the
    /// window before it both were. `None` when they were never up at the same time.
    pub fn sighting(&self, last_online: u64, uptime: u32, window: u32) -> Option<(u64, u32)> {
        let first_online = last_online.saturating_sub(u64::from(uptime.max(1)) - 1);
        let last = match &self.down {
            Some(d) if d.contains(&last_online) => {
                let before = d.start().checked_sub(1)?;
                if before < first_online {
                    return None;
                }
                before
            }
            _ => last_online,
        };
        let from = first_online.max((last + 1).saturating_sub(u64::from(window)));
        let mut seen = last + 1 - from;
        if let Some(d) = &self.down {
            let (a, b) = ((*d.start()).max(from), (*d.end()).min(last));
            if a <= b {
                seen -= b + 1 - a;
            }
        }
        // A node with no uptime yet was seen, but for no whole epoch.
        let seen = if uptime == 0 { 0 } else { seen as u32 };
        Some((last, seen))
    }
}

/// An attacker's totals, for costs and reports.
#[derive(Debug, Clone)]
pub struct AttackerInfo {
    /// Its name.
    pub name: String,
    /// Its strategy.
    pub strategy: &'static str,
    /// Keys it made.
    pub keys: u64,
    /// Addresses it paid for.
    pub ips: u64,
    /// What it paid.
    pub cost: f64,
}

/// Hands out public address blocks, never the same /24 (or /48) twice, so that attackers'
/// blocks never coincide with honest ones by accident.
struct AddressSpace {
    used_24: HashSet<u32>,
    used_48: HashSet<u64>,
    octets: Vec<u8>,
}

impl AddressSpace {
    fn new() -> Self {
        AddressSpace {
            used_24: HashSet::new(),
            used_48: HashSet::new(),
            octets: public_first_octets(),
        }
    }

    /// `n` distinct /16 prefixes (the top 16 bits of an IPv4 address).
    fn slash16s(&self, rng: &mut Rng, n: u64) -> Vec<u32> {
        let index_to_prefix = |i: u64| {
            let octet = self.octets[(i / 256) as usize];
            (u32::from(octet) << 8) | (i % 256) as u32
        };
        pick_distinct(rng, PUBLIC_V4_SLASH16S, n)
            .into_iter()
            .map(index_to_prefix)
            .collect()
    }

    /// A /24 (top 24 bits) inside `slash16` that nobody has yet.
    fn fresh_24(&mut self, rng: &mut Rng, slash16: u32) -> Option<u32> {
        for _ in 0..1024 {
            let p = (slash16 << 8) | rng.below(256) as u32;
            if self.used_24.insert(p) {
                return Some(p);
            }
        }
        None
    }

    /// A /24 anywhere in the pool that nobody has yet.
    fn any_24(&mut self, rng: &mut Rng) -> u32 {
        loop {
            let s16 = self.slash16s(rng, 1)[0];
            if let Some(p) = self.fresh_24(rng, s16) {
                return p;
            }
        }
    }

    /// `n` distinct /32 prefixes in 2400::/12 to 2bff::/16 (global unicast, clear of 2001::/16
    /// and 2002::/16, whose tunnels are grouped by their IPv4 address).
    fn slash32s(&self, rng: &mut Rng, n: u64) -> Vec<u32> {
        const SPAN: u64 = (0x2c00 - 0x2400) << 16;
        pick_distinct(rng, SPAN, n)
            .into_iter()
            .map(|i| (0x2400u32 << 16) + i as u32)
            .collect()
    }

    /// A /48 (top 48 bits) inside `slash32` that nobody has yet.
    fn fresh_48(&mut self, rng: &mut Rng, slash32: u32) -> Option<u64> {
        for _ in 0..1024 {
            let p = (u64::from(slash32) << 16) | rng.below(65_536);
            if self.used_48.insert(p) {
                return Some(p);
            }
        }
        None
    }

    /// `n` distinct /24s over `slash16s` distinct /16s (every /16 gets at least one when
    /// `n >= slash16s`).
    fn blocks_24(&mut self, rng: &mut Rng, n: u64, slash16s: u64) -> Vec<u32> {
        let s16 = self.slash16s(rng, slash16s.min(n).max(1));
        (0..n)
            .map(|i| {
                let first = (i as usize) < s16.len();
                loop {
                    let parent = if first {
                        s16[i as usize]
                    } else {
                        s16[rng.below(s16.len() as u64) as usize]
                    };
                    if let Some(p) = self.fresh_24(rng, parent) {
                        return p;
                    }
                }
            })
            .collect()
    }

    /// `n` distinct /48s over `slash32s` distinct /32s.
    fn blocks_48(&mut self, rng: &mut Rng, n: u64, slash32s: u64) -> Vec<u64> {
        let s32 = self.slash32s(rng, slash32s.min(n).max(1));
        (0..n)
            .map(|i| {
                let first = (i as usize) < s32.len();
                loop {
                    let parent = if first {
                        s32[i as usize]
                    } else {
                        s32[rng.below(s32.len() as u64) as usize]
                    };
                    if let Some(p) = self.fresh_48(rng, parent) {
                        return p;
                    }
                }
            })
            .collect()
    }
}

/// `n` distinct numbers below `range`, in random order.
fn pick_distinct(rng: &mut Rng, range: u64, n: u64) -> Vec<u64> {
    let n = n.min(range);
    if n * 2 > range {
        let mut all: Vec<u64> = (0..range).collect();
        for i in 0..n as usize {
            let j = i + rng.below((all.len() - i) as u64) as usize;
            all.swap(i, j);
        }
        all.truncate(n as usize);
        return all;
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(n as usize);
    while (out.len() as u64) < n {
        let v = rng.below(range);
        if seen.insert(v) {
            out.push(v);
        }
    }
    out
}

fn v4(prefix24: u32, host: u64) -> IpAddr {
    // Hosts 1 to 254 of the /24; a block with more nodes than that reuses addresses, which
    // is what sharing an address means.
    let host = 1 + (host % 254) as u32;
    IpAddr::V4(Ipv4Addr::from((prefix24 << 8) | host))
}

fn v6(prefix48: u64, subnet: u64, iid: u64) -> IpAddr {
    let bits = (u128::from(prefix48) << 80) | (u128::from(subnet & 0xffff) << 64) | u128::from(iid);
    IpAddr::V6(Ipv6Addr::from(bits))
}

fn key(rng: &mut Rng) -> PublicKey {
    PublicKey(rng.bytes32())
}

/// An attestation as a verified message: the node's pipeline verifies signatures before
/// the aggregator sees anything, so the aggregator never looks at this zero signature.
pub fn attestation(
    attester: PublicKey,
    subject: PublicKey,
    ip: IpAddr,
    epoch: u64,
    seen: u32,
) -> UptimeAttestation {
    Signed {
        body: AttestationBody {
            version: PROTOCOL_VERSION,
            attester,
            subject,
            subject_ip: WireIp(ip),
            epoch,
            seen_epochs: seen,
        },
        signature: Signature::default(),
    }
}

/// Everything one run needs: nodes, attackers' totals, and what the attestations are made
/// from.
#[derive(Debug)]
pub struct World {
    /// Honest nodes first (`0..honest`), then each attacker's nodes.
    pub nodes: Vec<WorldNode>,
    /// How many of `nodes` are honest.
    pub honest: usize,
    /// Per attacker, its totals.
    pub attackers: Vec<AttackerInfo>,
    /// Clique attestations (attacker keys about attacker keys and hijacked honest nodes).
    /// Attestations the attackers make up, each with the node that announces it (the key
    /// whose presence or signal carries it).
    pub forged: Vec<(PublicKey, UptimeAttestation)>,
    /// The measurers, in spec order.
    pub measurers: Vec<Measurer>,
    /// Honest nodes (by index) the colluding measurers refuse to attest.
    pub censored: HashSet<usize>,
    /// The ticket anchors: the longest-running honest nodes still up at the tally.
    pub anchors: Vec<PublicKey>,
    seed: u64,
}

/// A seed of its own for the measurer keys, so that adding measurers never moves the honest
/// world's draws.
const MEASURER_SEED: u64 = 0x3ea5_0e25_6e1d_a7a1;

impl World {
    /// Builds the world of `scenario` for `seed`.
    pub fn build(scenario: &Scenario, r: &Resolved, seed: u64) -> World {
        let mut space = AddressSpace::new();
        let mut nodes = honest_nodes(&scenario.honest, r, seed, &mut space);
        let honest = nodes.len();
        let q = &r.qualifying;
        let mut measurer_keys = Rng::new(seed ^ MEASURER_SEED, Stream::Attesters);
        let mut measurers: Vec<Measurer> = (0..q.measurers)
            .map(|_| Measurer {
                key: key(&mut measurer_keys),
                down: None,
                colluding: false,
            })
            .collect();
        let anchors = anchors(&nodes, r, q.anchors as usize);
        let mut censored = HashSet::new();
        let mut attackers = Vec::new();
        let mut forged = Vec::new();
        for (i, a) in scenario.attackers.iter().enumerate() {
            let mut rng = Rng::new(seed, Stream::Attacker(i as u32));
            let side = Side::Attacker(i as u16);
            let default_attesters = scenario.honest.attesters;
            let info = match a {
                Attacker::ManyKeysOneIp(f)
                | Attacker::CloudProvider(f)
                | Attacker::RentedIps(f)
                | Attacker::Patient(f) => {
                    let shape = FleetShape::of(a, f, r, scenario.honest.attester_view);
                    fleet(
                        f,
                        shape,
                        r,
                        side,
                        default_attesters,
                        &mut rng,
                        &mut space,
                        &mut nodes,
                    );
                    AttackerInfo {
                        name: a.name(),
                        strategy: a.strategy(),
                        keys: shape.keys,
                        ips: shape.ips,
                        cost: shape.ips as f64 * shape.days * f.cost_per_ip_day
                            + shape.keys as f64 * f.cost_per_key,
                    }
                }
                Attacker::Churn(c) => {
                    let (keys, cost) = churn(
                        c,
                        r,
                        scenario.honest.attester_view,
                        side,
                        default_attesters,
                        &mut rng,
                        &mut space,
                        &mut nodes,
                    );
                    AttackerInfo {
                        name: a.name(),
                        strategy: a.strategy(),
                        keys,
                        ips: keys,
                        cost,
                    }
                }
                Attacker::ColludingAttesters(c) => {
                    clique(
                        c,
                        &scenario.honest,
                        r,
                        side,
                        honest,
                        &mut rng,
                        &mut space,
                        &mut nodes,
                        &mut forged,
                    );
                    AttackerInfo {
                        name: a.name(),
                        strategy: a.strategy(),
                        keys: c.keys,
                        ips: c.ips,
                        cost: c.ips as f64 * c.days_held * c.cost_per_ip_day
                            + c.keys as f64 * c.cost_per_key,
                    }
                }
                Attacker::ColludingReal(c) => {
                    colluding_real(
                        c,
                        r,
                        scenario.honest.attester_view,
                        side,
                        default_attesters,
                        &mut rng,
                        &mut space,
                        &mut nodes,
                        &mut forged,
                    );
                    let days = c
                        .days_held
                        .unwrap_or(r.qualifying_days(scenario.honest.attester_view));
                    AttackerInfo {
                        name: a.name(),
                        strategy: a.strategy(),
                        keys: c.ips + c.keys,
                        ips: c.ips,
                        cost: c.ips as f64 * days * c.cost_per_ip_day
                            + (c.ips + c.keys) as f64 * c.cost_per_key,
                    }
                }
                Attacker::ColludingMeasurers(c) => {
                    colluding_measurers(
                        c,
                        r,
                        side,
                        honest,
                        &mut measurers,
                        &mut censored,
                        &mut rng,
                        &mut space,
                        &mut nodes,
                        &mut forged,
                    );
                    AttackerInfo {
                        name: a.name(),
                        strategy: a.strategy(),
                        keys: c.keys,
                        ips: c.ips,
                        cost: c.ips as f64 * c.days_held * c.cost_per_ip_day
                            + c.keys as f64 * c.cost_per_key,
                    }
                }
                Attacker::MeasurerOutage(o) => {
                    let days = o.down_days.unwrap_or(r.window_days());
                    let length = r.epochs(days);
                    let end = r.epoch.saturating_sub(r.epochs(o.ends_days_before));
                    let down = (length > 0).then(|| end.saturating_sub(length - 1)..=end);
                    // From the end of the list, so that colluders (from the front) and an
                    // outage in one scenario are different measurers while they fit.
                    let count = measurers.len();
                    for m in measurers.iter_mut().skip(count - o.measurers as usize) {
                        m.down = down.clone();
                    }
                    AttackerInfo {
                        name: a.name(),
                        strategy: a.strategy(),
                        keys: 0,
                        ips: 0,
                        cost: f64::from(o.measurers) * days * o.cost_per_ip_day,
                    }
                }
            };
            attackers.push(info);
        }
        World {
            nodes,
            honest,
            attackers,
            forged,
            measurers,
            censored,
            anchors,
            seed,
        }
    }

    /// Calls `f` with every honest attestation: each node that really runs (honest or
    /// attacker) is attested by `honest_attesters` distinct random honest peers at its real
    /// address, each having seen a share `[view, 1]` of its uptime within the `window`,
    /// issued at the last epoch both were up, and by every measurer it was up at the same
    /// time as (every node connects to every measurer once per epoch, so a measurer saw
    /// exactly the epochs both were up; colluders skip the nodes they censor). Then the
    /// forged ones. Each comes with the key that carries it: the subject for attestations it
    /// would announce itself.
    pub fn attestations(
        &self,
        view: f64,
        window: u32,
        mut f: impl FnMut(PublicKey, UptimeAttestation),
    ) {
        let h = self.honest as u64;
        let mut picked: Vec<u64> = Vec::new();
        let mut stream = Rng::new(self.seed, Stream::Attesters);
        let mut attacker_streams: Vec<Rng> = (0..self.attackers.len())
            .map(|i| {
                // A stream of its own for each attacker's attesters, so that one attacker's
                // size never moves another's (or the honest nodes') draws.
                let mut r = Rng::new(self.seed ^ 0x5eed_a77e_57e2, Stream::Attacker(i as u32));
                r.u64();
                r
            })
            .collect();
        for (index, node) in self.nodes.iter().enumerate() {
            let rng = match node.side {
                Side::Honest => &mut stream,
                Side::Attacker(i) => &mut attacker_streams[i as usize],
            };
            let own = (node.side == Side::Honest).then_some(index as u64);
            let available = h - u64::from(own.is_some());
            let wanted = u64::from(node.honest_attesters).min(available);
            picked.clear();
            if wanted == available {
                picked.extend((0..h).filter(|&j| Some(j) != own));
            } else {
                while (picked.len() as u64) < wanted {
                    let j = rng.below(h);
                    if Some(j) != own && !picked.contains(&j) {
                        picked.push(j);
                    }
                }
            }
            for &j in &picked {
                let attester = &self.nodes[j as usize];
                let share = view + (1.0 - view) * rng.unit();
                // An attester sees at most the window, and of it the share it was connected.
                let seen = (f64::from(node.uptime.min(window)) * share).round() as u32;
                let epoch = node.epoch.min(attester.epoch);
                f(
                    node.key,
                    attestation(attester.key, node.key, node.ip, epoch, seen),
                );
            }
            if !node.runs {
                continue;
            }
            let censored = node.side == Side::Honest && self.censored.contains(&index);
            for m in &self.measurers {
                if censored && m.colluding {
                    continue;
                }
                if let Some((epoch, seen)) = m.sighting(node.epoch, node.uptime, window) {
                    f(node.key, attestation(m.key, node.key, node.ip, epoch, seen));
                }
            }
        }
        for (carrier, a) in &self.forged {
            f(*carrier, a.clone());
        }
    }
}

fn honest_nodes(
    h: &HonestSection,
    r: &Resolved,
    seed: u64,
    space: &mut AddressSpace,
) -> Vec<WorldNode> {
    let mut rng = Rng::new(seed, Stream::Honest);
    let mut keys = Rng::new(seed, Stream::HonestKeys);
    let blocks = HonestBlocks::of(h);
    let b24 = space.blocks_24(&mut rng, blocks.v4_24, blocks.v4_16);
    let b48 = space.blocks_48(&mut rng, blocks.v6_48, blocks.v6_32);
    let (d24, d48) = match h.distribution {
        Spread::Zipf => (
            Discrete::zipf(b24.len(), h.zipf_exponent),
            Discrete::zipf(b48.len(), h.zipf_exponent),
        ),
        Spread::Uniform | Spread::RoundRobin => (
            Discrete::zipf(b24.len(), 0.0),
            Discrete::zipf(b48.len(), 0.0),
        ),
    };
    let mut fill24 = vec![0u64; b24.len()];
    let mut fill48 = vec![0u64; b48.len()];
    let (mut rr4, mut rr6) = (0usize, 0usize);
    let mut next_address = |rng: &mut Rng| -> IpAddr {
        if rng.chance(h.ipv6_share) {
            let b = match h.distribution {
                Spread::RoundRobin => {
                    rr6 += 1;
                    (rr6 - 1) % b48.len()
                }
                _ => d48.sample(rng),
            };
            fill48[b] += 1;
            v6(b48[b], fill48[b], rng.u64() | 1)
        } else {
            let b = match h.distribution {
                Spread::RoundRobin => {
                    rr4 += 1;
                    (rr4 - 1) % b24.len()
                }
                _ => d24.sample(rng),
            };
            fill24[b] += 1;
            v4(b24[b], fill24[b] - 1)
        }
    };

    let shared = ((h.nodes as f64) * h.shared_ip_share).round() as u64;
    let per_household = u64::from(h.nodes_per_shared_ip);
    let window = r.policy.uptime_window_epochs;
    let m = r.policy.min_uptime_epochs;
    let c = h.choices;
    let mut nodes = Vec::with_capacity(h.nodes as usize);
    let mut household_ip = None;
    for i in 0..h.nodes {
        let ip = if i < shared {
            if i % per_household == 0 {
                household_ip = Some(next_address(&mut rng));
            }
            household_ip.expect("set at the household's first node")
        } else {
            next_address(&mut rng)
        };
        let base = match h.uptime {
            Uptime::Full => window,
            Uptime::Constant { epochs } => epochs,
            Uptime::Uniform { min, max } => rng.range(u64::from(min), u64::from(max)) as u32,
            Uptime::Exponential { mean } => rng.exponential(mean).min(1e9) as u32,
            Uptime::Share { qualified } => {
                if rng.chance(qualified) {
                    window
                } else {
                    rng.below(u64::from(m.max(1))) as u32
                }
            }
        };
        let churn = rng.unit();
        let (uptime, epoch, present) = if churn < h.left_share {
            // Left d epochs ago: its last attestations still count until they leave the window.
            let d = rng.range(1, u64::from(window.saturating_sub(1)).max(1));
            (base, r.epoch - d, false)
        } else if churn < h.left_share + h.joined_share {
            (rng.below(u64::from(m.max(1))) as u32, r.epoch, true)
        } else {
            (base, r.epoch, true)
        };
        let pick = rng.unit();
        let choice = if !present {
            None
        } else if pick < c.support {
            Some(Choice::Support)
        } else if pick < c.support + c.oppose {
            Some(Choice::Oppose)
        } else if pick < c.support + c.oppose + c.override_ {
            Some(Choice::Override)
        } else if pick < c.support + c.oppose + c.override_ + c.abstain {
            Some(Choice::Abstain)
        } else {
            None
        };
        nodes.push(WorldNode {
            key: key(&mut keys),
            ip,
            uptime,
            epoch,
            side: Side::Honest,
            choice,
            honest_attesters: h.attesters,
            runs: true,
        });
    }
    debug_assert!(nodes.iter().all(|n| !is_unroutable(n.ip)));
    nodes
}

#[allow(clippy::too_many_arguments)]
fn fleet(
    f: &Fleet,
    shape: FleetShape,
    r: &Resolved,
    side: Side,
    default_attesters: u32,
    rng: &mut Rng,
    space: &mut AddressSpace,
    nodes: &mut Vec<WorldNode>,
) {
    let uptime = r.epochs(shape.days).min(u64::from(u32::MAX)) as u32;
    let ips: Vec<IpAddr> = if f.ipv6 {
        let blocks = space.blocks_48(rng, shape.netgroups, shape.slash16s);
        (0..shape.ips)
            .map(|i| {
                let b = (i % shape.netgroups) as usize;
                v6(blocks[b], i / shape.netgroups, 1)
            })
            .collect()
    } else {
        let blocks = space.blocks_24(rng, shape.netgroups, shape.slash16s);
        (0..shape.ips)
            .map(|i| v4(blocks[(i % shape.netgroups) as usize], i / shape.netgroups))
            .collect()
    };
    for k in 0..shape.keys {
        nodes.push(WorldNode {
            key: key(rng),
            ip: ips[(k % shape.ips) as usize],
            uptime,
            epoch: r.epoch,
            side,
            choice: Some(f.choice),
            honest_attesters: f.attesters.unwrap_or(default_attesters),
            runs: true,
        });
    }
}

/// Rotating slots; returns (keys used, cost).
#[allow(clippy::too_many_arguments)]
fn churn(
    c: &Churn,
    r: &Resolved,
    view: f64,
    side: Side,
    default_attesters: u32,
    rng: &mut Rng,
    space: &mut AddressSpace,
    nodes: &mut Vec<WorldNode>,
) -> (u64, f64) {
    let hold_days = c.hold_days.unwrap_or(r.qualifying_days(view));
    let campaign_days = c.campaign_days.unwrap_or(hold_days + r.window_days());
    let hold = r.epochs(hold_days).max(1);
    let campaign = r.epochs(campaign_days).max(1).min(r.epoch);
    let first = r.epoch + 1 - campaign;
    let window = u64::from(r.policy.uptime_window_epochs);
    let mut keys = 0u64;
    for s in 0..c.slots {
        // Slots rotate at staggered epochs, as a real operator would, so that the fleet's
        // weight is steady rather than saw-toothed.
        let offset = s * hold / c.slots;
        let mut start = first as i64 - offset as i64;
        while start <= r.epoch as i64 {
            let from = start.max(first as i64) as u64;
            let to = ((start + hold as i64 - 1) as u64).min(r.epoch);
            start += hold as i64;
            if to < from {
                continue;
            }
            keys += 1;
            let ip = v4(space.any_24(rng), 0);
            nodes.push(WorldNode {
                key: key(rng),
                ip,
                uptime: (to - from + 1).min(window) as u32,
                epoch: to,
                side,
                choice: Some(c.choice),
                honest_attesters: c.attesters.unwrap_or(default_attesters),
                runs: true,
            });
        }
    }
    let cost = c.slots as f64 * campaign as f64 * r.epoch_days * c.cost_per_ip_day
        + keys as f64 * c.cost_per_key;
    (keys, cost)
}

#[allow(clippy::too_many_arguments)]
fn clique(
    c: &Clique,
    honest: &HonestSection,
    r: &Resolved,
    side: Side,
    honest_count: usize,
    rng: &mut Rng,
    space: &mut AddressSpace,
    nodes: &mut Vec<WorldNode>,
    forged: &mut Vec<(PublicKey, UptimeAttestation)>,
) {
    if c.keys == 0 {
        return;
    }
    let groups = c.fake_netgroups.unwrap_or(c.keys);
    let claimed = c.claimed_seen.unwrap_or(r.policy.uptime_window_epochs);
    let blocks: Vec<u32> = (0..groups).map(|_| space.any_24(rng)).collect();
    let first = nodes.len();
    for k in 0..c.keys {
        nodes.push(WorldNode {
            key: key(rng),
            ip: v4(blocks[(k % groups) as usize], k / groups),
            uptime: claimed,
            epoch: r.epoch,
            side,
            choice: Some(c.choice),
            honest_attesters: 0,
            runs: false,
        });
    }
    let members = &nodes[first..];
    let per_key = u64::from(
        c.attesters_per_key
            .unwrap_or(r.policy.attestation_quorum + 1),
    )
    .min(c.keys - 1);
    for (k, subject) in members.iter().enumerate() {
        for step in 1..=per_key {
            let attester = &members[(k as u64 + step) as usize % members.len()];
            // The clique's subjects carry what the clique says about them.
            forged.push((
                subject.key,
                attestation(attester.key, subject.key, subject.ip, r.epoch, claimed),
            ));
        }
    }
    if c.hijack_share > 0.0 {
        let sink = v4(space.any_24(rng), 0);
        let per_node = u64::from(c.hijack_attesters.unwrap_or(honest.attesters + 1)).min(c.keys);
        for subject in &nodes[..honest_count] {
            if !rng.chance(c.hijack_share) {
                continue;
            }
            let start = rng.below(c.keys);
            for step in 0..per_node {
                let attester = &nodes[first + ((start + step) % c.keys) as usize];
                // An honest subject never carries these: only their makers announce them.
                forged.push((
                    attester.key,
                    attestation(attester.key, subject.key, sink, r.epoch, claimed),
                ));
            }
        }
    }
}

/// The ticket anchors: the `n` honest nodes up longest that are still up at the tally (ties
/// to the earlier node), as a spec would name well-known long-running nodes.
fn anchors(nodes: &[WorldNode], r: &Resolved, n: usize) -> Vec<PublicKey> {
    let mut up: Vec<(u32, usize)> = nodes
        .iter()
        .enumerate()
        .filter(|(_, node)| node.epoch == r.epoch)
        .map(|(i, node)| (node.uptime, i))
        .collect();
    up.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    up.into_iter().take(n).map(|(_, i)| nodes[i].key).collect()
}

/// `count` made-up keys claiming addresses in `groups` made-up /24s, signalling `choice`.
#[allow(clippy::too_many_arguments)]
fn made_up_keys(
    count: u64,
    groups: u64,
    claimed: u32,
    choice: commons_signaling::Choice,
    side: Side,
    r: &Resolved,
    rng: &mut Rng,
    space: &mut AddressSpace,
    nodes: &mut Vec<WorldNode>,
) -> usize {
    let first = nodes.len();
    let blocks: Vec<u32> = (0..groups).map(|_| space.any_24(rng)).collect();
    for k in 0..count {
        nodes.push(WorldNode {
            key: key(rng),
            ip: v4(blocks[(k % groups) as usize], k / groups),
            uptime: claimed,
            epoch: r.epoch,
            side,
            choice: Some(choice),
            honest_attesters: 0,
            runs: false,
        });
    }
    first
}

/// `colluding-real`: the real nodes run like a rented fleet; the made-up keys are vouched
/// for by them and by each other.
#[allow(clippy::too_many_arguments)]
fn colluding_real(
    c: &ColludingReal,
    r: &Resolved,
    view: f64,
    side: Side,
    default_attesters: u32,
    rng: &mut Rng,
    space: &mut AddressSpace,
    nodes: &mut Vec<WorldNode>,
    forged: &mut Vec<(PublicKey, UptimeAttestation)>,
) {
    let days = c.days_held.unwrap_or(r.qualifying_days(view));
    let uptime = r.epochs(days).min(u64::from(u32::MAX)) as u32;
    let first_real = nodes.len();
    let blocks = space.blocks_24(rng, c.ips, c.ips);
    for b in blocks {
        nodes.push(WorldNode {
            key: key(rng),
            ip: v4(b, 0),
            uptime,
            epoch: r.epoch,
            side,
            choice: Some(c.choice),
            honest_attesters: c.attesters.unwrap_or(default_attesters),
            runs: true,
        });
    }
    if c.keys == 0 {
        return;
    }
    let claimed = r.policy.uptime_window_epochs;
    let groups = c.fake_netgroups.unwrap_or(c.keys);
    let first = made_up_keys(
        c.keys, groups, claimed, c.choice, side, r, rng, space, nodes,
    );
    let q = u64::from(r.policy.attestation_quorum);
    let per_key = u64::from(c.attesters_per_key.unwrap_or((q + 1) as u32)).min(c.ips);
    let ring = (q + 1).min(c.keys - 1);
    for k in 0..c.keys {
        let subject = &nodes[first + k as usize];
        for step in 0..per_key {
            let attester = &nodes[first_real + ((k + step) % c.ips) as usize];
            forged.push((
                subject.key,
                attestation(attester.key, subject.key, subject.ip, r.epoch, claimed),
            ));
        }
        for step in 1..=ring {
            let attester = &nodes[first + ((k + step) % c.keys) as usize];
            forged.push((
                subject.key,
                attestation(attester.key, subject.key, subject.ip, r.epoch, claimed),
            ));
        }
    }
}

/// `colluding-measurers`: the first k measurers mint made-up keys (each attested by all k
/// for the whole window) and pick the honest nodes they censor.
#[allow(clippy::too_many_arguments)]
fn colluding_measurers(
    c: &ColludingMeasurers,
    r: &Resolved,
    side: Side,
    honest: usize,
    measurers: &mut [Measurer],
    censored: &mut HashSet<usize>,
    rng: &mut Rng,
    space: &mut AddressSpace,
    nodes: &mut Vec<WorldNode>,
    forged: &mut Vec<(PublicKey, UptimeAttestation)>,
) {
    let k = c
        .measurers
        .unwrap_or(r.qualifying.measurer_quorum.saturating_sub(1)) as usize;
    for m in measurers.iter_mut().take(k) {
        m.colluding = true;
    }
    if c.censor_share > 0.0 {
        censored.extend((0..honest).filter(|_| rng.chance(c.censor_share)));
    }
    if c.keys == 0 || k == 0 {
        return;
    }
    let claimed = r.policy.uptime_window_epochs;
    let groups = c.fake_netgroups.unwrap_or(c.keys);
    let first = made_up_keys(
        c.keys, groups, claimed, c.choice, side, r, rng, space, nodes,
    );
    for node in &nodes[first..] {
        for m in &measurers[..k] {
            forged.push((
                node.key,
                attestation(m.key, node.key, node.ip, r.epoch, claimed),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurer(down: Option<RangeInclusive<u64>>) -> Measurer {
        Measurer {
            key: PublicKey([7; 32]),
            down,
            colluding: false,
        }
    }

    #[test]
    fn a_measurer_sees_exactly_the_epochs_both_were_up() {
        let up = measurer(None);
        // Up 300 epochs to 1000, window 120: the whole window.
        assert_eq!(up.sighting(1000, 300, 120), Some((1000, 120)));
        // Up 50 epochs: 50.
        assert_eq!(up.sighting(1000, 50, 120), Some((1000, 50)));
        // Just joined: seen at 1000, for no whole epoch.
        assert_eq!(up.sighting(1000, 0, 120), Some((1000, 0)));
        // Down 951..=960: ten epochs fewer.
        assert_eq!(
            measurer(Some(951..=960)).sighting(1000, 300, 120),
            Some((1000, 110))
        );
        // Down at the end: the last sighting is before the outage, its window ends there.
        assert_eq!(
            measurer(Some(991..=1000)).sighting(1000, 300, 120),
            Some((990, 120))
        );
        // Down for the node's whole life: never seen.
        assert_eq!(measurer(Some(900..=1000)).sighting(1000, 50, 120), None);
        // Down since before the node left: the last sighting before the outage.
        assert_eq!(
            measurer(Some(995..=1000)).sighting(997, 10, 120),
            Some((994, 7))
        );
    }
}
