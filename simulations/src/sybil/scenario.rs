//! Scenario files: the TOML format, its defaults, `--set` and `--sweep` overrides, and error
//! messages that name the line and the key.
//!
//! Every table and strategy refuses unknown keys, so a typo is an error rather than a silently
//! ignored parameter: a simulation that quietly ran with a default is worse than none.

use std::fmt;

use commons_aggregator::Policy;
use commons_signaling::spec::TierSpec;
use commons_signaling::{Choice, NetworkSpec};
use serde::{Deserialize, Serialize};

use crate::error::SimError;

/// Seconds in a day: costs are per day, epochs are the spec's.
pub const DAY_SECS: f64 = 86_400.0;

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
        let (own, name): (&[&str], &str) = match f.strategy {
            StrategyKind::ManyKeysOneIp => (&FLEET_FIELDS, "many-keys-one-ip"),
            StrategyKind::CloudProvider => (&FLEET_FIELDS, "cloud-provider"),
            StrategyKind::RentedIps => (&FLEET_FIELDS, "rented-ips"),
            StrategyKind::Patient => (&FLEET_FIELDS, "patient"),
            StrategyKind::Churn => (&CHURN_FIELDS, "churn"),
            StrategyKind::ColludingAttesters => (&CLIQUE_FIELDS, "colluding-attesters"),
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

impl Attacker {
    /// The strategy's name as written in scenario files.
    pub fn strategy(&self) -> &'static str {
        match self {
            Attacker::ManyKeysOneIp(_) => "many-keys-one-ip",
            Attacker::CloudProvider(_) => "cloud-provider",
            Attacker::RentedIps(_) => "rented-ips",
            Attacker::Patient(_) => "patient",
            Attacker::Churn(_) => "churn",
            Attacker::ColludingAttesters(_) => "colluding-attesters",
        }
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
        };
        name.clone().unwrap_or_else(|| self.strategy().to_string())
    }
}

/// The network spec, aggregator policy and proposal tier one scenario runs with.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The spec the aggregator gets (base spec, policy fields and thresholds applied, the
    /// well-known regtest maintainers so that the simulator can sign its proposal).
    pub spec: NetworkSpec,
    /// The aggregator's policy.
    pub policy: Policy,
    /// The proposal's tier, with the thresholds in force.
    pub tier: TierSpec,
    /// The tally epoch.
    pub epoch: u64,
    /// Days per epoch, for costs.
    pub epoch_days: f64,
}

impl Resolved {
    /// Epochs in `days` days (rounded down).
    pub fn epochs(&self, days: f64) -> u64 {
        (days / self.epoch_days).floor().max(0.0) as u64
    }

    /// The shortest time up that qualifies whatever share `[view, 1]` of it the honest
    /// attesters saw: `ceil(m / view)` epochs, in days. The default hold of every attacker
    /// that runs real nodes: the cheapest sure way to qualify.
    pub fn qualifying_days(&self, view: f64) -> f64 {
        let m = f64::from(self.policy.min_uptime_epochs);
        (m / view.max(1e-9)).ceil() * self.epoch_days
    }

    /// The window in days.
    pub fn window_days(&self) -> f64 {
        f64::from(self.policy.uptime_window_epochs) * self.epoch_days
    }
}

/// A scenario value that is out of range, with the key it belongs to.
fn invalid(key: &str, reason: impl fmt::Display) -> SimError {
    SimError::Usage(format!("scenario key `{key}`: {reason}"))
}

fn check_share(key: &str, v: f64) -> Result<(), SimError> {
    if !(0.0..=1.0).contains(&v) {
        return Err(invalid(key, format!("{v} is not a share between 0 and 1")));
    }
    Ok(())
}

impl Scenario {
    /// Parses a scenario file's text; errors name `origin`, the line and the key.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Scenario, SimError> {
        toml::from_str::<Scenario>(text)
            .map_err(|e| SimError::Usage(describe_toml_error(text, origin, &e)))
    }

    /// The spec, policy and tier this scenario runs with; checks every value.
    pub fn resolve(&self) -> Result<Resolved, SimError> {
        let p = &self.policy;
        let mut spec = match p.base {
            Base::Mainnet => NetworkSpec::mainnet(),
            Base::Testnet => NetworkSpec::testnet(),
            Base::Regtest => NetworkSpec::regtest(),
        };
        // The base networks other than regtest list no maintainers yet; the simulator signs
        // its proposal with the well-known regtest keys, which only changes the network id.
        spec.maintainers = NetworkSpec::regtest().maintainers;
        if let Some(q) = p.quorum {
            spec.attestation_quorum = q;
        }
        if let Some(m) = p.min_uptime_epochs {
            spec.min_uptime_epochs = m;
        }
        if let Some(w) = p.window_epochs {
            spec.uptime_window_epochs = w;
        }
        if let Some(v4) = p.ipv4_prefix {
            spec.netgroup_ipv4_prefix = v4;
        }
        if let Some(v6) = p.ipv6_prefix {
            spec.netgroup_ipv6_prefix = v6;
        }
        if let Some(a) = p.allow_unroutable {
            spec.allow_unroutable = a;
        }
        if spec.attestation_quorum == 0 {
            return Err(invalid("policy.quorum", "must be at least 1"));
        }
        if spec.uptime_window_epochs == 0 {
            return Err(invalid("policy.window_epochs", "must be at least 1"));
        }
        if !(1..=32).contains(&spec.netgroup_ipv4_prefix) {
            return Err(invalid("policy.ipv4_prefix", "must be between 1 and 32"));
        }
        if !(1..=128).contains(&spec.netgroup_ipv6_prefix) {
            return Err(invalid("policy.ipv6_prefix", "must be between 1 and 128"));
        }
        let Some(tier) = spec.tiers.iter_mut().find(|t| t.tier == p.tier) else {
            return Err(invalid(
                "policy.tier",
                format!("tier {} does not exist", p.tier),
            ));
        };
        if tier.min_lock_secs == 0 {
            return Err(invalid(
                "policy.tier",
                format!("tier {} has no lock, so it can never be overridden", p.tier),
            ));
        }
        if let Some(w) = p.override_weight_share {
            check_share("policy.override_weight_share", w)?;
            tier.override_weight_share = w;
        }
        if let Some(n) = p.override_node_share {
            check_share("policy.override_node_share", n)?;
            tier.override_node_share = n;
        }
        let tier = tier.clone();
        let mut policy = Policy::from_spec(&spec);
        policy.ip_dedup = p.ip_dedup;
        policy.sqrt_weighting = p.sqrt_weighting;
        let resolved = Resolved {
            epoch_days: spec.epoch_secs as f64 / DAY_SECS,
            spec,
            policy,
            tier,
            epoch: self.run.epoch,
        };
        if resolved.epoch <= u64::from(resolved.policy.uptime_window_epochs) {
            return Err(invalid("run.epoch", "must be larger than the window"));
        }
        self.check(&resolved)?;
        Ok(resolved)
    }

    fn check(&self, r: &Resolved) -> Result<(), SimError> {
        let h = &self.honest;
        if h.nodes == 0 {
            return Err(invalid("honest.nodes", "must be at least 1"));
        }
        for (key, v) in [
            ("honest.ipv6_share", h.ipv6_share),
            ("honest.shared_ip_share", h.shared_ip_share),
            ("honest.attester_view", h.attester_view),
            ("honest.left_share", h.left_share),
            ("honest.joined_share", h.joined_share),
            ("honest.choices.support", h.choices.support),
            ("honest.choices.oppose", h.choices.oppose),
            ("honest.choices.override", h.choices.override_),
            ("honest.choices.abstain", h.choices.abstain),
        ] {
            check_share(key, v)?;
        }
        if h.left_share + h.joined_share > 1.0 {
            return Err(invalid(
                "honest.left_share",
                "left_share + joined_share is above 1",
            ));
        }
        let c = h.choices;
        if c.support + c.oppose + c.override_ + c.abstain > 1.0 + 1e-9 {
            return Err(invalid(
                "honest.choices",
                "the shares add up to more than 1",
            ));
        }
        if h.nodes_per_shared_ip < 2 {
            return Err(invalid("honest.nodes_per_shared_ip", "must be at least 2"));
        }
        if !(h.zipf_exponent.is_finite() && h.zipf_exponent >= 0.0) {
            return Err(invalid("honest.zipf_exponent", "must be 0 or more"));
        }
        match h.uptime {
            Uptime::Uniform { min, max } if min > max => {
                return Err(invalid("honest.uptime", "min is above max"));
            }
            Uptime::Exponential { mean } if !(mean.is_finite() && mean > 0.0) => {
                return Err(invalid("honest.uptime", "mean must be above 0"));
            }
            Uptime::Share { qualified } => check_share("honest.uptime.qualified", qualified)?,
            _ => {}
        }
        let blocks = crate::sybil::world::HonestBlocks::of(h);
        if blocks.v4_24 == 0 || blocks.v4_16 == 0 || blocks.v6_48 == 0 || blocks.v6_32 == 0 {
            return Err(invalid(
                "honest.ipv4_slash24s",
                "block counts must be at least 1",
            ));
        }
        if blocks.v4_24 > blocks.v4_16 * 256 {
            return Err(invalid(
                "honest.ipv4_slash24s",
                format!("{} /24s do not fit in {} /16s", blocks.v4_24, blocks.v4_16),
            ));
        }
        if blocks.v4_16 > crate::sybil::world::PUBLIC_V4_SLASH16S {
            return Err(invalid(
                "honest.ipv4_slash16s",
                format!(
                    "at most {} public /16s exist in the simulator's address pool",
                    crate::sybil::world::PUBLIC_V4_SLASH16S
                ),
            ));
        }
        if blocks.v6_48 > blocks.v6_32 * 65_536 {
            return Err(invalid("honest.ipv6_slash48s", "do not fit in the /32s"));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, a) in self.attackers.iter().enumerate() {
            let key = |field: &str| format!("attacker[{i}].{field}");
            if !names.insert(a.name()) {
                return Err(invalid(
                    &key("name"),
                    format!(
                        "two attackers are called `{}`; give them distinct names",
                        a.name()
                    ),
                ));
            }
            match a {
                Attacker::ManyKeysOneIp(f)
                | Attacker::CloudProvider(f)
                | Attacker::RentedIps(f)
                | Attacker::Patient(f) => {
                    let fleet = crate::sybil::world::FleetShape::of(a, f, r, h.attester_view);
                    if fleet.ips == 0 || fleet.netgroups == 0 || fleet.slash16s == 0 {
                        return Err(invalid(&key("ips"), "ips and netgroups must be at least 1"));
                    }
                    if fleet.netgroups > fleet.ips {
                        return Err(invalid(&key("netgroups"), "more netgroups than ips"));
                    }
                    if !f.ipv6 && fleet.ips.div_ceil(fleet.netgroups) > 254 {
                        return Err(invalid(
                            &key("ips"),
                            format!(
                                "{} addresses do not fit in {} /24s (254 each)",
                                fleet.ips, fleet.netgroups
                            ),
                        ));
                    }
                    if f.days_held.is_some_and(|d| d.is_nan() || d < 0.0) {
                        return Err(invalid(&key("days_held"), "must be 0 or more"));
                    }
                }
                Attacker::Churn(c) => {
                    if c.slots == 0 {
                        return Err(invalid(&key("slots"), "must be at least 1"));
                    }
                    let hold = c.hold_days.unwrap_or(r.qualifying_days(h.attester_view));
                    if hold.is_nan() || r.epochs(hold) == 0 {
                        return Err(invalid(&key("hold_days"), "must be at least one epoch"));
                    }
                }
                Attacker::ColludingAttesters(c) => {
                    check_share(&key("hijack_share"), c.hijack_share)?;
                    let groups = c.fake_netgroups.unwrap_or(c.keys);
                    if c.keys > 0 && (groups == 0 || groups > c.keys) {
                        return Err(invalid(
                            &key("fake_netgroups"),
                            "must be between 1 and keys",
                        ));
                    }
                    if c.keys > 0 && c.keys.div_ceil(groups) > 254 {
                        return Err(invalid(
                            &key("keys"),
                            "more than 254 keys per fake /24 would share addresses",
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Formats a TOML error as `origin: line N, key `a.b`: message`.
fn describe_toml_error(text: &str, origin: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().to_string();
    let Some(span) = e.span() else {
        return format!("{origin}: {message}");
    };
    let start = span.start.min(text.len());
    let line = text[..start].matches('\n').count() + 1;
    match key_at(text, start) {
        Some(key) => format!("{origin}: line {line}, key `{key}`: {message}"),
        None => format!("{origin}: line {line}: {message}"),
    }
}

/// The dotted key at byte `pos` of a TOML text: the table header above it (arrays of tables
/// with their index) and the key on its line.
fn key_at(text: &str, pos: usize) -> Option<String> {
    let mut table = String::new();
    let mut array_counts: std::collections::HashMap<String, usize> = Default::default();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let end = offset + line.len();
        let trimmed = line.trim();
        let is_header = trimmed.starts_with('[');
        if is_header {
            if let Some(name) = trimmed
                .strip_prefix("[[")
                .and_then(|s| s.split("]]").next())
            {
                let name = name.trim().to_string();
                let n = array_counts.entry(name.clone()).or_insert(0);
                table = format!("{name}[{n}]");
                *n += 1;
            } else if let Some(name) = trimmed.strip_prefix('[').and_then(|s| s.split(']').next()) {
                table = name.trim().to_string();
            }
        }
        if pos < end || end == text.len() {
            if is_header {
                return (!table.is_empty()).then_some(table);
            }
            let key = line
                .split_once('=')
                .map(|(k, _)| k.trim().trim_matches('"').to_string())
                .filter(|k| !k.is_empty() && !k.starts_with('#'));
            return match (key, table.is_empty()) {
                (Some(k), true) => Some(k),
                (Some(k), false) => Some(format!("{table}.{k}")),
                (None, false) => Some(table),
                (None, true) => None,
            };
        }
        offset = end;
    }
    None
}

/// One `--set key=value` or sweep value applied to the scenario document. Keys are dotted
/// paths (`honest.nodes`, `policy.quorum`); `attacker.NAME.field` or `attacker.INDEX.field`
/// picks one attacker by its name (or strategy) or position.
pub fn apply_value(doc: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("`{key}` is not a dotted key such as honest.nodes"));
    }
    let mut table = doc;
    let mut i = 0;
    while i + 1 < parts.len() {
        let part = parts[i];
        let entry = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            toml::Value::Array(items) => {
                let Some(pick) = parts.get(i + 1).copied() else {
                    return Err(format!("`{key}`: say which {part}, by name or index"));
                };
                let index = match pick.parse::<usize>() {
                    Ok(n) => Some(n),
                    Err(_) => items.iter().position(|item| {
                        let t = item.as_table();
                        let name = t.and_then(|t| t.get("name")).and_then(|v| v.as_str());
                        let strategy = t.and_then(|t| t.get("strategy")).and_then(|v| v.as_str());
                        name.or(strategy) == Some(pick)
                    }),
                };
                let count = items.len();
                let Some(toml::Value::Table(t)) = index.and_then(|n| items.get_mut(n)) else {
                    return Err(format!(
                        "`{key}`: no {part} `{pick}` (there are {count}; use a name or an index from 0)"
                    ));
                };
                i += 1;
                t
            }
            _ => return Err(format!("`{key}`: `{part}` is not a table")),
        };
        i += 1;
    }
    match parts.get(i) {
        Some(last) => {
            table.insert(last.to_string(), value);
            Ok(())
        }
        None => Err(format!("`{key}`: names a table, not a value")),
    }
}

/// A value from the command line: TOML syntax when it parses (`5`, `0.3`, `true`,
/// `"text"`, `{ dist = "full" }`), otherwise the bare text as a string (`regtest`).
pub fn parse_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or(toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

/// A `--set KEY=VALUE`.
pub fn parse_set(arg: &str) -> Result<(String, toml::Value), SimError> {
    let Some((key, value)) = arg.split_once('=') else {
        return Err(SimError::Usage(format!(
            "bad --set `{arg}`: expected KEY=VALUE, such as honest.nodes=1000"
        )));
    };
    let key = key.trim();
    if key.is_empty() || key.split('.').any(|p| p.trim().is_empty()) {
        return Err(SimError::Usage(format!(
            "bad --set `{arg}`: `{key}` is not a dotted key such as policy.quorum"
        )));
    }
    Ok((key.to_string(), parse_value(value.trim())))
}

/// A `--sweep`: a key and the values it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    /// The dotted key.
    pub key: String,
    /// The values, in order.
    pub values: Vec<toml::Value>,
}

/// Most points one sweep may have: more is almost certainly a typo.
pub const MAX_SWEEP_STEPS: u64 = 10_000;

/// Parses `KEY=A..B:STEPS` (STEPS evenly spaced values from A to B inclusive; rounded to
/// integers when A and B are integers and the values are at least 1 apart) or
/// `KEY=V1,V2,...`.
pub fn parse_sweep(arg: &str) -> Result<Sweep, SimError> {
    let bad = |why: &str| {
        SimError::Usage(format!(
            "bad --sweep `{arg}`: {why}; expected KEY=A..B:STEPS (e.g. attacker.keys=10..1000:10) \
             or KEY=V1,V2,... (e.g. policy.ip_dedup=true,false)"
        ))
    };
    let (key, spec) = arg.split_once('=').ok_or_else(|| bad("no `=`"))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(|p| p.trim().is_empty()) {
        return Err(bad("the key is not a dotted key"));
    }
    let spec = spec.trim();
    let values = if let Some((range, steps)) = spec.split_once("..").and_then(|(a, rest)| {
        rest.split_once(':')
            .map(|(b, steps)| ((a.trim(), b.trim()), steps.trim()))
    }) {
        let steps: u64 = steps
            .parse()
            .map_err(|_| bad(&format!("steps `{steps}` is not a whole number")))?;
        if steps == 0 || steps > MAX_SWEEP_STEPS {
            return Err(bad(&format!(
                "steps must be between 1 and {MAX_SWEEP_STEPS}"
            )));
        }
        let (a, b) = range;
        let num = |s: &str| {
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad(&format!("`{s}` is not a number")))
        };
        let (fa, fb) = (num(a)?, num(b)?);
        // Whole numbers when both ends are written as integers and the points are at least 1
        // apart (integer keys such as keys or ips refuse decimals); decimals otherwise, so
        // that 0..1:11 means 0, 0.1, ..., 1 rather than 0 and 1.
        let step = if steps > 1 {
            (fb - fa).abs() / (steps - 1) as f64
        } else {
            1.0
        };
        let integers = a.parse::<i64>().is_ok() && b.parse::<i64>().is_ok() && step >= 1.0;
        let mut values: Vec<toml::Value> = Vec::new();
        for i in 0..steps {
            let t = if steps == 1 {
                0.0
            } else {
                i as f64 / (steps - 1) as f64
            };
            let v = fa + (fb - fa) * t;
            let value = if integers {
                toml::Value::Integer(v.round() as i64)
            } else {
                toml::Value::Float(v)
            };
            // Rounding to integers can repeat a value; a repeated point is wasted work.
            if values.last() != Some(&value) {
                values.push(value);
            }
        }
        values
    } else if spec.contains("..") {
        return Err(bad("a range needs `:STEPS`"));
    } else {
        let items: Vec<&str> = spec.split(',').map(str::trim).collect();
        if items.iter().any(|s| s.is_empty()) {
            return Err(bad("empty value in the list"));
        }
        items.into_iter().map(parse_value).collect()
    };
    Ok(Sweep {
        key: key.to_string(),
        values,
    })
}

/// A value as a CSV cell and a plot label: strings bare, everything else as TOML writes it.
pub fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Builds the typed scenario from the document with `values` applied, naming the offending
/// `--set`/`--sweep` when it fails.
pub fn build(
    base: &toml::Table,
    values: &[(String, toml::Value, &'static str)],
    name: &str,
) -> Result<Scenario, SimError> {
    let mut doc = base.clone();
    for (key, value, origin) in values {
        apply_value(&mut doc, key, value.clone())
            .map_err(|e| SimError::Usage(format!("{origin} {key}={}: {e}", value_text(value))))?;
        // Deserialize after each value, so that an error names the value that caused it.
        if let Err(e) = Scenario::deserialize(toml::Value::Table(doc.clone())) {
            return Err(SimError::Usage(format!(
                "{origin} {key}={}: {}",
                value_text(value),
                e.message().trim()
            )));
        }
    }
    let mut scenario = Scenario::deserialize(toml::Value::Table(doc))
        .map_err(|e| SimError::Usage(format!("scenario: {}", e.message().trim())))?;
    if scenario.name.is_empty() {
        scenario.name = name.to_string();
    }
    Ok(scenario)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweeps_parse() {
        let s = parse_sweep("attacker.keys=10..100:4").unwrap();
        assert_eq!(
            s.values,
            vec![
                toml::Value::Integer(10),
                toml::Value::Integer(40),
                toml::Value::Integer(70),
                toml::Value::Integer(100)
            ]
        );
        let s = parse_sweep("policy.override_weight_share=0.1..0.3:3").unwrap();
        assert_eq!(s.values.len(), 3);
        let s = parse_sweep("attacker.x.hijack_share=0..1:11").unwrap();
        assert_eq!(s.values.len(), 11);
        assert_eq!(s.values[1], toml::Value::Float(0.1));
        let s = parse_sweep("policy.ip_dedup=true,false").unwrap();
        assert_eq!(
            s.values,
            vec![toml::Value::Boolean(true), toml::Value::Boolean(false)]
        );
        assert!(parse_sweep("policy.quorum").is_err());
        assert!(parse_sweep("policy.quorum=1..5").is_err());
        assert!(parse_sweep("policy.quorum=1..5:x").is_err());
        assert!(parse_sweep("policy.quorum=a..5:3").is_err());
        assert!(parse_sweep("=1..5:3").is_err());
    }

    #[test]
    fn set_reaches_attackers_by_name_and_index() {
        let mut doc: toml::Table = toml::from_str(
            "[honest]\nnodes = 1\n[[attacker]]\nstrategy = \"churn\"\n[[attacker]]\nname = \"b\"\nstrategy = \"patient\"\n",
        )
        .unwrap();
        apply_value(&mut doc, "attacker.b.ips", toml::Value::Integer(5)).unwrap();
        apply_value(&mut doc, "attacker.0.slots", toml::Value::Integer(7)).unwrap();
        apply_value(
            &mut doc,
            "attacker.churn.hold_days",
            toml::Value::Integer(9),
        )
        .unwrap();
        apply_value(&mut doc, "policy.quorum", toml::Value::Integer(2)).unwrap();
        let s = Scenario::deserialize(toml::Value::Table(doc.clone())).unwrap();
        assert_eq!(s.policy.quorum, Some(2));
        assert!(apply_value(&mut doc, "attacker.zzz.ips", toml::Value::Integer(5)).is_err());
    }

    #[test]
    fn errors_name_line_and_key() {
        let text = "[honest]\nnodes = 10\n\n[[attacker]]\nstrategy = \"patient\"\nips = \"many\"\n";
        let e = Scenario::from_toml_str(text, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 6"), "{e}");
        assert!(e.contains("attacker[0].ips"), "{e}");
        let text = "[honest]\nnodes = 10\n\n[[attacker]]\nstrategy = \"churn\"\nips = 4\n";
        let e = Scenario::from_toml_str(text, "x.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("attacker[0]") && e.contains("no field `ips`"),
            "{e}"
        );
    }
}
