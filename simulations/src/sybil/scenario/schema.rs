//! The scenario file's format: every table and strategy with its defaults.
//!
//! Every table and strategy refuses unknown keys, so a typo is an error rather than a silently
//! ignored parameter: a simulation that quietly ran with a default is worse than none.

use commons_signaling::{Choice, NetworkSpec, QualificationRule};
use serde::{Deserialize, Serialize};

/// A Sybil scenario: the honest network, the attackers, and the rule's parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A short name for reports; defaults to the file name.
    #[serde(default)]
    pub name: String,
    /// What the scenario shows, for the reader of the file.
    #[serde(default)]
    pub description: String,
    /// Seed, number of runs and the epoch of the tally.
    #[serde(default)]
    pub run: RunSection,
    /// The rule's parameters.
    #[serde(default)]
    pub policy: PolicySection,
    /// The honest network.
    pub honest: HonestSection,
    /// Zero or more attackers, all working together (their weights add up).
    #[serde(default, rename = "attacker")]
    pub attackers: Vec<Attacker>,
}

/// `[run]`: how runs are seeded and when the tally is taken.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// The seed of run 0; run r uses `seed + r`. `--seed` overrides it.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Runs per parameter point. `--runs` overrides it.
    #[serde(default = "default_runs")]
    pub runs: u32,
    /// The epoch at which the tally is taken (the first epoch of the proposal's lock).
    #[serde(default = "default_epoch")]
    pub epoch: u64,
}

fn default_seed() -> u64 {
    1
}
fn default_runs() -> u32 {
    1
}
fn default_epoch() -> u64 {
    20_000
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            seed: default_seed(),
            runs: default_runs(),
            epoch: default_epoch(),
        }
    }
}

/// The built-in network a policy starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Base {
    /// `NetworkSpec::mainnet()`: day-long epochs, q = 3, 90 of 120 epochs, /24 and /48.
    #[default]
    Mainnet,
    /// `NetworkSpec::testnet()`.
    Testnet,
    /// `NetworkSpec::regtest()`.
    Regtest,
}

impl Base {
    /// The name scenario files and reports use: the one serde reads (a test holds them
    /// equal).
    pub fn name(self) -> &'static str {
        match self {
            Base::Mainnet => "mainnet",
            Base::Testnet => "testnet",
            Base::Regtest => "regtest",
        }
    }

    /// The built-in spec.
    pub fn spec(self) -> NetworkSpec {
        match self {
            Base::Mainnet => NetworkSpec::mainnet(),
            Base::Testnet => NetworkSpec::testnet(),
            Base::Regtest => NetworkSpec::regtest(),
        }
    }
}

/// `[policy]`: maps onto [`commons_aggregator::Policy`] and the tier's thresholds. Absent
/// fields keep the base network's values.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySection {
    /// The built-in spec to start from.
    #[serde(default)]
    pub base: Base,
    /// Attestation quorum q: attester netgroups needed per node.
    pub quorum: Option<u32>,
    /// Minimum uptime m, in epochs.
    pub min_uptime_epochs: Option<u32>,
    /// Uptime window W, in epochs.
    pub window_epochs: Option<u32>,
    /// IPv4 netgroup prefix length.
    pub ipv4_prefix: Option<u8>,
    /// IPv6 netgroup prefix length.
    pub ipv6_prefix: Option<u8>,
    /// Whether unroutable addresses get netgroups of their own (the simulator only makes
    /// public addresses, so this rarely matters).
    pub allow_unroutable: Option<bool>,
    /// Step 3: one counted node per IP address.
    #[serde(default = "yes")]
    pub ip_dedup: bool,
    /// Step 4: a netgroup of n counted nodes weighs sqrt(n).
    #[serde(default = "yes")]
    pub sqrt_weighting: bool,
    /// The proposal's tier (1 to 5); its lock and override thresholds come from the spec.
    #[serde(default = "default_tier")]
    pub tier: u8,
    /// Replaces the tier's override weight share.
    pub override_weight_share: Option<f64>,
    /// Replaces the tier's override node share.
    pub override_node_share: Option<f64>,
    /// Step 2's rule: `peer-attestations` (rule v1), `measurers` or `tickets`. Default: the
    /// base network's (rule v1 on every built-in network today).
    pub qualification: Option<QualificationRule>,
    /// A: the measurers of the world, spec-listed keys that attest every node they see each
    /// epoch at its real address. Default: the base's list, or 9 (the intended mainnet set)
    /// when it lists none. They exist (and attest) under every rule; only the measurer rule
    /// reads them.
    pub measurers: Option<u32>,
    /// q_m: measurers that must agree on an address. Default: the base's (mainnet 5).
    pub measurer_quorum: Option<u32>,
    /// L: a node counts only while a measurer saw it within this many epochs. Default: the
    /// base's (mainnet 7).
    pub liveness_epochs: Option<u32>,
    /// Ticket anchors: the longest-running honest nodes, named in the spec. Default: the
    /// base's list, or 9 when it lists none (at most `honest.nodes`).
    pub anchors: Option<u32>,
    /// Tickets each anchor hands out. Default: the base's, or twice the honest nodes when it
    /// sets none (one anchor's flow then reaches nearly every honest node).
    pub tickets_per_anchor: Option<u32>,
    /// K: anchors a node needs a ticket from. Default: the base's, or a majority of the
    /// anchors when it sets none.
    pub anchors_required: Option<u32>,
}

fn yes() -> bool {
    true
}
fn default_tier() -> u8 {
    2
}

impl Default for PolicySection {
    fn default() -> Self {
        PolicySection {
            base: Base::Mainnet,
            quorum: None,
            min_uptime_epochs: None,
            window_epochs: None,
            ipv4_prefix: None,
            ipv6_prefix: None,
            allow_unroutable: None,
            ip_dedup: true,
            sqrt_weighting: true,
            tier: default_tier(),
            override_weight_share: None,
            override_node_share: None,
            qualification: None,
            measurers: None,
            measurer_quorum: None,
            liveness_epochs: None,
            anchors: None,
            tickets_per_anchor: None,
            anchors_required: None,
        }
    }
}

/// How honest nodes spread over address blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Spread {
    /// Block of rank r gets a share proportional to `1 / r^zipf_exponent`: a few big ISPs and
    /// hosters, a long tail.
    #[default]
    Zipf,
    /// Every block equally likely.
    Uniform,
    /// Node i goes to block `i mod blocks`: no randomness, for hand-checked tests.
    RoundRobin,
}

/// The epochs a node was online within the window, as its attesters saw it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "dist", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Uptime {
    /// The whole window: every node has been up longer than W.
    #[default]
    Full,
    /// The same number of epochs for every node.
    Constant {
        /// Epochs online.
        epochs: u32,
    },
    /// Uniform between `min` and `max` epochs, inclusive.
    Uniform {
        /// Fewest epochs.
        min: u32,
        /// Most epochs.
        max: u32,
    },
    /// Exponential with the given mean (capped at the window by the rule): many young
    /// nodes, a few old ones.
    Exponential {
        /// Mean epochs online.
        mean: f64,
    },
    /// A share `qualified` of the nodes has the whole window; the rest is uniform below
    /// the policy's minimum. Relative to the policy: sweeping the minimum does not change who
    /// qualifies.
    Share {
        /// Share of nodes with the whole window.
        qualified: f64,
    },
}

/// Shares of honest nodes per choice; the rest sends no signal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Choices {
    /// Share signalling support.
    #[serde(default)]
    pub support: f64,
    /// Share signalling oppose.
    #[serde(default)]
    pub oppose: f64,
    /// Share signalling override.
    #[serde(default, rename = "override")]
    pub override_: f64,
    /// Share that signalled and then abstained.
    #[serde(default)]
    pub abstain: f64,
}

/// `[honest]`: the honest network.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HonestSection {
    /// Number of honest nodes.
    pub nodes: u64,
    /// Share of nodes on IPv6.
    #[serde(default)]
    pub ipv6_share: f64,
    /// Distinct IPv4 /24 blocks the IPv4 nodes live in (default: half the nodes).
    pub ipv4_slash24s: Option<u64>,
    /// Distinct /16s those /24 blocks lie in (default: a quarter of the /24s, at least 1).
    pub ipv4_slash16s: Option<u64>,
    /// Distinct IPv6 /48s (default: half the nodes).
    pub ipv6_slash48s: Option<u64>,
    /// Distinct /32s those /48s lie in (default: a quarter of the /48s, at least 1).
    pub ipv6_slash32s: Option<u64>,
    /// How nodes spread over the blocks.
    #[serde(default)]
    pub distribution: Spread,
    /// The exponent of the zipf spread.
    #[serde(default = "default_zipf")]
    pub zipf_exponent: f64,
    /// Share of nodes behind a shared address (households, NAT).
    #[serde(default)]
    pub shared_ip_share: f64,
    /// Nodes per shared address.
    #[serde(default = "default_household")]
    pub nodes_per_shared_ip: u32,
    /// Honest peers that attest each node (its direct connections).
    #[serde(default = "default_attesters")]
    pub attesters: u32,
    /// Each attester saw a fraction of the node's uptime uniform in `[attester_view, 1]`
    /// (it was not always connected): 1 means every attester saw all of it.
    #[serde(default = "default_view")]
    pub attester_view: f64,
    /// Epochs online within the window.
    #[serde(default)]
    pub uptime: Uptime,
    /// Churn: share of nodes that went offline 1 to W-1 epochs ago. Their last attestations
    /// are still live, so they still count (in the denominator); they send no signal.
    #[serde(default)]
    pub left_share: f64,
    /// Churn: share of nodes that joined less than m epochs ago (uptime below the minimum).
    #[serde(default)]
    pub joined_share: f64,
    /// What the honest nodes signal.
    #[serde(default)]
    pub choices: Choices,
}

fn default_zipf() -> f64 {
    1.0
}
fn default_household() -> u32 {
    2
}
fn default_attesters() -> u32 {
    8
}
fn default_view() -> f64 {
    1.0
}

/// One attacker: a strategy with its parameters. All attackers of a scenario act together.
///
/// Read through [`AttackerFields`] rather than as a tagged enum: serde buffers a tagged
/// enum's table before reading it, which loses the position of a bad value, and a scenario
/// error must name its line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(
    tag = "strategy",
    rename_all = "kebab-case",
    try_from = "AttackerFields"
)]
pub enum Attacker {
    /// Many keys behind one (or a few) addresses in one /24.
    ManyKeysOneIp(Fleet),
    /// Many addresses in few netgroups of one provider.
    CloudProvider(Fleet),
    /// Addresses spread over many netgroups (proxies, a botnet), paid per address per day.
    RentedIps(Fleet),
    /// Spread addresses kept up for `days_held` days: the price of the minimum uptime.
    Patient(Fleet),
    /// Rotating rented addresses with fresh keys.
    Churn(Churn),
    /// A clique of attacker keys vouching for each other (the rule's known limit).
    ColludingAttesters(Clique),
    /// Real nodes, attested honestly, vouching for made-up keys.
    ColludingReal(ColludingReal),
    /// Measurers that mint keys and censor honest nodes.
    ColludingMeasurers(ColludingMeasurers),
    /// Measurers down for part of the window (an outage or a denial of service).
    MeasurerOutage(MeasurerOutage),
}

/// The strategies, as named in scenario files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    /// `many-keys-one-ip`.
    ManyKeysOneIp,
    /// `cloud-provider`.
    CloudProvider,
    /// `rented-ips`.
    RentedIps,
    /// `patient`.
    Patient,
    /// `churn`.
    Churn,
    /// `colluding-attesters`.
    ColludingAttesters,
    /// `colluding-real`.
    ColludingReal,
    /// `colluding-measurers`.
    ColludingMeasurers,
    /// `measurer-outage`.
    MeasurerOutage,
}

impl StrategyKind {
    /// The name scenario files use: the one serde reads (a test holds them equal).
    pub fn name(self) -> &'static str {
        match self {
            StrategyKind::ManyKeysOneIp => "many-keys-one-ip",
            StrategyKind::CloudProvider => "cloud-provider",
            StrategyKind::RentedIps => "rented-ips",
            StrategyKind::Patient => "patient",
            StrategyKind::Churn => "churn",
            StrategyKind::ColludingAttesters => "colluding-attesters",
            StrategyKind::ColludingReal => "colluding-real",
            StrategyKind::ColludingMeasurers => "colluding-measurers",
            StrategyKind::MeasurerOutage => "measurer-outage",
        }
    }
}

/// Every field any strategy takes, as read from an `[[attacker]]` table; which of them a
/// strategy accepts is checked when it becomes an [`Attacker`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackerFields {
    /// See [`Fleet::name`].
    pub name: Option<String>,
    /// The strategy.
    pub strategy: StrategyKind,
    /// See [`Fleet::keys`], [`Clique::keys`].
    pub keys: Option<u64>,
    /// See [`Fleet::ips`], [`Clique::ips`].
    pub ips: Option<u64>,
    /// See [`Fleet::netgroups`].
    pub netgroups: Option<u64>,
    /// See [`Fleet::slash16s`].
    pub slash16s: Option<u64>,
    /// See [`Fleet::ipv6`].
    pub ipv6: Option<bool>,
    /// See [`Fleet::days_held`], [`Clique::days_held`].
    pub days_held: Option<f64>,
    /// Price of one address per day.
    pub cost_per_ip_day: Option<f64>,
    /// Price of one key.
    pub cost_per_key: Option<f64>,
    /// What every attacker key signals.
    pub choice: Option<Choice>,
    /// See [`Fleet::attesters`].
    pub attesters: Option<u32>,
    /// See [`Churn::slots`].
    pub slots: Option<u64>,
    /// See [`Churn::hold_days`].
    pub hold_days: Option<f64>,
    /// See [`Churn::campaign_days`].
    pub campaign_days: Option<f64>,
    /// See [`Clique::fake_netgroups`].
    pub fake_netgroups: Option<u64>,
    /// See [`Clique::claimed_seen`].
    pub claimed_seen: Option<u32>,
    /// See [`Clique::attesters_per_key`].
    pub attesters_per_key: Option<u32>,
    /// See [`Clique::hijack_share`].
    pub hijack_share: Option<f64>,
    /// See [`Clique::hijack_attesters`].
    pub hijack_attesters: Option<u32>,
    /// See [`ColludingMeasurers::measurers`], [`MeasurerOutage::measurers`].
    pub measurers: Option<u32>,
    /// See [`ColludingMeasurers::censor_share`].
    pub censor_share: Option<f64>,
    /// See [`MeasurerOutage::down_days`].
    pub down_days: Option<f64>,
    /// See [`MeasurerOutage::ends_days_before`].
    pub ends_days_before: Option<f64>,
}

const COMMON_FIELDS: [&str; 5] = [
    "name",
    "strategy",
    "cost_per_ip_day",
    "cost_per_key",
    "choice",
];
const FLEET_FIELDS: [&str; 7] = [
    "keys",
    "ips",
    "netgroups",
    "slash16s",
    "ipv6",
    "days_held",
    "attesters",
];
const CHURN_FIELDS: [&str; 4] = ["slots", "hold_days", "campaign_days", "attesters"];
const COLLUDING_REAL_FIELDS: [&str; 6] = [
    "ips",
    "keys",
    "fake_netgroups",
    "attesters_per_key",
    "days_held",
    "attesters",
];
const COLLUDING_MEASURER_FIELDS: [&str; 6] = [
    "measurers",
    "keys",
    "fake_netgroups",
    "censor_share",
    "ips",
    "days_held",
];
const OUTAGE_FIELDS: [&str; 3] = ["measurers", "down_days", "ends_days_before"];
const CLIQUE_FIELDS: [&str; 8] = [
    "keys",
    "fake_netgroups",
    "claimed_seen",
    "attesters_per_key",
    "ips",
    "days_held",
    "hijack_share",
    "hijack_attesters",
];

impl TryFrom<AttackerFields> for Attacker {
    type Error = String;

    fn try_from(f: AttackerFields) -> Result<Self, String> {
        let name = f.strategy.name();
        let own: &[&str] = match f.strategy {
            StrategyKind::ManyKeysOneIp
            | StrategyKind::CloudProvider
            | StrategyKind::RentedIps
            | StrategyKind::Patient => &FLEET_FIELDS,
            StrategyKind::Churn => &CHURN_FIELDS,
            StrategyKind::ColludingAttesters => &CLIQUE_FIELDS,
            StrategyKind::ColludingReal => &COLLUDING_REAL_FIELDS,
            StrategyKind::ColludingMeasurers => &COLLUDING_MEASURER_FIELDS,
            StrategyKind::MeasurerOutage => &OUTAGE_FIELDS,
        };
        let set = [
            ("keys", f.keys.is_some()),
            ("ips", f.ips.is_some()),
            ("netgroups", f.netgroups.is_some()),
            ("slash16s", f.slash16s.is_some()),
            ("ipv6", f.ipv6.is_some()),
            ("days_held", f.days_held.is_some()),
            ("attesters", f.attesters.is_some()),
            ("slots", f.slots.is_some()),
            ("hold_days", f.hold_days.is_some()),
            ("campaign_days", f.campaign_days.is_some()),
            ("fake_netgroups", f.fake_netgroups.is_some()),
            ("claimed_seen", f.claimed_seen.is_some()),
            ("attesters_per_key", f.attesters_per_key.is_some()),
            ("hijack_share", f.hijack_share.is_some()),
            ("hijack_attesters", f.hijack_attesters.is_some()),
            ("measurers", f.measurers.is_some()),
            ("censor_share", f.censor_share.is_some()),
            ("down_days", f.down_days.is_some()),
            ("ends_days_before", f.ends_days_before.is_some()),
        ];
        if let Some((field, _)) = set.iter().find(|(k, on)| *on && !own.contains(k)) {
            let mut takes: Vec<&str> = COMMON_FIELDS.to_vec();
            takes.extend(own);
            return Err(format!(
                "strategy `{name}` has no field `{field}`; it takes {}",
                takes.join(", ")
            ));
        }
        let cost_per_ip_day = f.cost_per_ip_day.unwrap_or(0.0);
        let cost_per_key = f.cost_per_key.unwrap_or(0.0);
        let choice = f.choice.unwrap_or(Choice::Override);
        let fleet = || Fleet {
            name: f.name.clone(),
            keys: f.keys,
            ips: f.ips,
            netgroups: f.netgroups,
            slash16s: f.slash16s,
            ipv6: f.ipv6.unwrap_or(false),
            days_held: f.days_held,
            cost_per_ip_day,
            cost_per_key,
            choice,
            attesters: f.attesters,
        };
        Ok(match f.strategy {
            StrategyKind::ManyKeysOneIp => Attacker::ManyKeysOneIp(fleet()),
            StrategyKind::CloudProvider => Attacker::CloudProvider(fleet()),
            StrategyKind::RentedIps => Attacker::RentedIps(fleet()),
            StrategyKind::Patient => Attacker::Patient(fleet()),
            StrategyKind::Churn => Attacker::Churn(Churn {
                name: f.name,
                slots: f.slots.unwrap_or(100),
                hold_days: f.hold_days,
                campaign_days: f.campaign_days,
                cost_per_ip_day,
                cost_per_key,
                choice,
                attesters: f.attesters,
            }),
            StrategyKind::ColludingAttesters => Attacker::ColludingAttesters(Clique {
                name: f.name,
                keys: f.keys.unwrap_or(100),
                fake_netgroups: f.fake_netgroups,
                claimed_seen: f.claimed_seen,
                attesters_per_key: f.attesters_per_key,
                ips: f.ips.unwrap_or(0),
                days_held: f.days_held.unwrap_or(0.0),
                cost_per_ip_day,
                cost_per_key,
                choice,
                hijack_share: f.hijack_share.unwrap_or(0.0),
                hijack_attesters: f.hijack_attesters,
            }),
            StrategyKind::ColludingReal => Attacker::ColludingReal(ColludingReal {
                name: f.name,
                ips: f.ips.unwrap_or(3),
                keys: f.keys.unwrap_or(1000),
                fake_netgroups: f.fake_netgroups,
                attesters_per_key: f.attesters_per_key,
                days_held: f.days_held,
                cost_per_ip_day,
                cost_per_key,
                choice,
                attesters: f.attesters,
            }),
            StrategyKind::ColludingMeasurers => Attacker::ColludingMeasurers(ColludingMeasurers {
                name: f.name,
                measurers: f.measurers,
                keys: f.keys.unwrap_or(1000),
                fake_netgroups: f.fake_netgroups,
                censor_share: f.censor_share.unwrap_or(0.0),
                ips: f.ips.unwrap_or(0),
                days_held: f.days_held.unwrap_or(0.0),
                cost_per_ip_day,
                cost_per_key,
                choice,
            }),
            StrategyKind::MeasurerOutage => Attacker::MeasurerOutage(MeasurerOutage {
                name: f.name,
                measurers: f.measurers.unwrap_or(1),
                down_days: f.down_days,
                ends_days_before: f.ends_days_before.unwrap_or(0.0),
                cost_per_ip_day,
                cost_per_key,
            }),
        })
    }
}

/// Attacker nodes that really run, so that honest peers attest them at their real addresses
/// (`many-keys-one-ip`, `cloud-provider`, `rented-ips`, `patient`).
#[derive(Debug, Clone, Serialize)]
pub struct Fleet {
    /// Name for `--set attacker.NAME.key=...` and the per-attacker columns.
    pub name: Option<String>,
    /// Keys (nodes). Default: one per address, 10 for many-keys-one-ip.
    pub keys: Option<u64>,
    /// Addresses. Default: 1 for many-keys-one-ip, else 100.
    pub ips: Option<u64>,
    /// Address blocks (/24, or /48 with `ipv6`) the addresses are spread over, round-robin.
    /// Default: 1 for many-keys-one-ip, 4 for cloud-provider, one per address otherwise.
    pub netgroups: Option<u64>,
    /// /16s (or /32s) those blocks lie in. Default: 1 for many-keys-one-ip and
    /// cloud-provider, one per block otherwise.
    pub slash16s: Option<u64>,
    /// IPv6 addresses (each its own /64) in /48 blocks instead of IPv4 in /24 blocks.
    pub ipv6: bool,
    /// Days the nodes have been up. Default: the shortest that qualifies whatever share of it
    /// the honest attesters saw, `ceil(min_uptime / honest.attester_view)` epochs.
    pub days_held: Option<f64>,
    /// Price of one address per day.
    pub cost_per_ip_day: f64,
    /// Price of one key (its node's share of CPU, bandwidth...).
    pub cost_per_key: f64,
    /// What every attacker key signals (default override).
    pub choice: Choice,
    /// Honest peers attesting each attacker node. Default: `honest.attesters`.
    pub attesters: Option<u32>,
}

/// `churn`: `slots` addresses rented at a time; each is held `hold_days`, then given back and
/// a fresh address (new /24) with a fresh key rented, for `campaign_days` up to the tally.
#[derive(Debug, Clone, Serialize)]
pub struct Churn {
    /// Name for `--set` and the per-attacker columns.
    pub name: Option<String>,
    /// Addresses held at any time (default 100).
    pub slots: u64,
    /// Days each address (and key) is held. Default: as a fleet's `days_held`.
    pub hold_days: Option<f64>,
    /// Length of the campaign, ending at the tally. Default: hold_days + window.
    pub campaign_days: Option<f64>,
    /// Price of one address per day.
    pub cost_per_ip_day: f64,
    /// Price of one key.
    pub cost_per_key: f64,
    /// What every attacker key signals (keys keep signalling after their address is gone).
    pub choice: Choice,
    /// Honest peers attesting each attacker node. Default: `honest.attesters`.
    pub attesters: Option<u32>,
}

/// `colluding-attesters`: `keys` attacker keys, each claiming an address of its choice in one
/// of `fake_netgroups` blocks, each attested by the next `attesters_per_key` keys of the ring
/// with `claimed_seen` epochs. No honest node ever sees them.
#[derive(Debug, Clone, Serialize)]
pub struct Clique {
    /// Name for `--set` and the per-attacker columns.
    pub name: Option<String>,
    /// Keys in the clique (default 100).
    pub keys: u64,
    /// Distinct /24 blocks the claimed addresses lie in. Default: one per key.
    pub fake_netgroups: Option<u64>,
    /// The uptime the clique claims for its members. Default: the window.
    pub claimed_seen: Option<u32>,
    /// Each key is attested by the next this many keys of the ring. Default: quorum + 1.
    pub attesters_per_key: Option<u32>,
    /// Real addresses the clique runs to gossip from (cost only; default 0).
    pub ips: u64,
    /// Days those addresses are held (default 0).
    pub days_held: f64,
    /// Price of one address per day.
    pub cost_per_ip_day: f64,
    /// Price of one key.
    pub cost_per_key: f64,
    /// What every clique key signals.
    pub choice: Choice,
    /// Share of honest nodes the clique also attests, at one sink address of its choosing,
    /// with `claimed_seen` epochs: if that wins the honest node's address choice, IP dedup
    /// collapses all of them into one counted node. See docs/SIMULATIONS.md.
    pub hijack_share: f64,
    /// Clique attesters per hijacked honest node. Default: `honest.attesters + 1`.
    pub hijack_attesters: Option<u32>,
}

/// `colluding-real`: `ips` real nodes, each at its own address in its own /24, held long
/// enough to qualify and attested honestly by honest peers and measurers, that vouch for
/// `keys` made-up keys at made-up addresses (each made-up key by `attesters_per_key` of the
/// real nodes, and by the next q + 1 made-up keys of a ring, as a clique does).
#[derive(Debug, Clone, Serialize)]
pub struct ColludingReal {
    /// Name for `--set` and the per-attacker columns.
    pub name: Option<String>,
    /// R: the real nodes (default 3).
    pub ips: u64,
    /// K: the made-up keys (default 1000).
    pub keys: u64,
    /// Made-up /24s the made-up keys claim addresses in. Default: one per key.
    pub fake_netgroups: Option<u64>,
    /// Real nodes vouching for each made-up key. Default: `min(ips, quorum + 1)`.
    pub attesters_per_key: Option<u32>,
    /// Days the real nodes have been up. Default: as a fleet's.
    pub days_held: Option<f64>,
    /// Price of one address per day.
    pub cost_per_ip_day: f64,
    /// Price of one key.
    pub cost_per_key: f64,
    /// What every attacker key signals.
    pub choice: Choice,
    /// Honest peers attesting each real node. Default: `honest.attesters`.
    pub attesters: Option<u32>,
}

/// `colluding-measurers`: the first `measurers` measurers of the world collude. They attest
/// `keys` made-up keys at made-up addresses for the whole window (minting), and refuse to
/// attest a share `censor_share` of the honest nodes (censoring).
#[derive(Debug, Clone, Serialize)]
pub struct ColludingMeasurers {
    /// Name for `--set` and the per-attacker columns.
    pub name: Option<String>,
    /// k: colluding measurers. Default: `measurer_quorum - 1`, the most that must mint
    /// nothing.
    pub measurers: Option<u32>,
    /// Made-up keys they mint (default 1000; 0 to only censor).
    pub keys: u64,
    /// Made-up /24s of the minted keys. Default: one per key.
    pub fake_netgroups: Option<u64>,
    /// Share of honest nodes the colluders never attest (default 0).
    pub censor_share: f64,
    /// Real addresses the colluders run to gossip the minted keys' messages from (cost only).
    pub ips: u64,
    /// Days those addresses are held.
    pub days_held: f64,
    /// Price of one address per day.
    pub cost_per_ip_day: f64,
    /// Price of one key.
    pub cost_per_key: f64,
    /// What every minted key signals.
    pub choice: Choice,
}

/// `measurer-outage`: the last `measurers` measurers of the world are down for `down_days`,
/// ending `ends_days_before` days before the tally: they attest nobody while down, so every
/// node's measurers saw fewer epochs of it.
#[derive(Debug, Clone, Serialize)]
pub struct MeasurerOutage {
    /// Name for `--set` and the per-attacker columns.
    pub name: Option<String>,
    /// Measurers down (default 1).
    pub measurers: u32,
    /// Length of the outage in days. Default: the whole window.
    pub down_days: Option<f64>,
    /// How long before the tally the outage ended (default 0: still down).
    pub ends_days_before: f64,
    /// What keeping one measurer down costs per day (a denial of service): the cost is
    /// `measurers x down_days x cost_per_ip_day`.
    pub cost_per_ip_day: f64,
    /// Price of one key (the outage makes none).
    pub cost_per_key: f64,
}

impl Attacker {
    /// The attacker's strategy.
    pub fn kind(&self) -> StrategyKind {
        match self {
            Attacker::ManyKeysOneIp(_) => StrategyKind::ManyKeysOneIp,
            Attacker::CloudProvider(_) => StrategyKind::CloudProvider,
            Attacker::RentedIps(_) => StrategyKind::RentedIps,
            Attacker::Patient(_) => StrategyKind::Patient,
            Attacker::Churn(_) => StrategyKind::Churn,
            Attacker::ColludingAttesters(_) => StrategyKind::ColludingAttesters,
            Attacker::ColludingReal(_) => StrategyKind::ColludingReal,
            Attacker::ColludingMeasurers(_) => StrategyKind::ColludingMeasurers,
            Attacker::MeasurerOutage(_) => StrategyKind::MeasurerOutage,
        }
    }

    /// The strategy's name as written in scenario files.
    pub fn strategy(&self) -> &'static str {
        self.kind().name()
    }

    /// The attacker's name: its `name`, or its strategy.
    pub fn name(&self) -> String {
        let name = match self {
            Attacker::ManyKeysOneIp(f)
            | Attacker::CloudProvider(f)
            | Attacker::RentedIps(f)
            | Attacker::Patient(f) => &f.name,
            Attacker::Churn(c) => &c.name,
            Attacker::ColludingAttesters(c) => &c.name,
            Attacker::ColludingReal(c) => &c.name,
            Attacker::ColludingMeasurers(c) => &c.name,
            Attacker::MeasurerOutage(o) => &o.name,
        };
        name.clone().unwrap_or_else(|| self.strategy().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names the code prints are the names serde reads.
    #[test]
    fn names_are_the_serde_names() {
        for kind in [
            StrategyKind::ManyKeysOneIp,
            StrategyKind::CloudProvider,
            StrategyKind::RentedIps,
            StrategyKind::Patient,
            StrategyKind::Churn,
            StrategyKind::ColludingAttesters,
            StrategyKind::ColludingReal,
            StrategyKind::ColludingMeasurers,
            StrategyKind::MeasurerOutage,
        ] {
            let read: StrategyKind = toml::Value::String(kind.name().into()).try_into().unwrap();
            assert_eq!(read, kind);
        }
        for base in [Base::Mainnet, Base::Testnet, Base::Regtest] {
            let read: Base = toml::Value::String(base.name().into()).try_into().unwrap();
            assert_eq!(read, base);
        }
    }
}
