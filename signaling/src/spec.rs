//! Network specs: the parameters every node of one network must share, like a blockchain's
//! chain parameters or TUF's root metadata.
//!
//! The network id is the tagged hash of the spec's canonical CBOR without its bootstrap
//! peers and without the measurers' dialable addresses, so nodes that disagree on any rule
//! never accept each other's signatures, while operators may still list different bootstrap
//! peers and a measurer may move.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::keys::{PublicKey, SecretKey, tagged_hash};
use crate::messages::ReleaseClass;
use crate::types::Hash32;
use crate::wire;

/// What is wrong with a spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The spec file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The spec file.
        path: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not valid TOML or JSON for a spec.
    #[error("{path}: {message}")]
    Parse {
        /// The spec file.
        path: String,
        /// The parser's message, with line and column where it gives them.
        message: String,
    },
    /// The spec parses but breaks a rule.
    #[error("{origin}: invalid spec: `{field}` {reason}")]
    Invalid {
        /// The spec file or built-in name.
        origin: String,
        /// The offending field.
        field: String,
        /// Why.
        reason: String,
    },
    /// Neither a built-in network name nor an existing file.
    #[error("unknown network {0:?}: use mainnet, testnet, regtest or the path of a spec file")]
    Unknown(String),
}

/// Parameters of one governance tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierSpec {
    /// The tier's number, 1 to 255.
    pub tier: u8,
    /// Its name ("routine maintenance", ...).
    pub name: String,
    /// How many distinct maintainers must sign a proposal of this tier.
    pub signatures_required: u32,
    /// The shortest lock a proposal of this tier may have, in seconds; 0 means no lock.
    pub min_lock_secs: u64,
    /// Share of the qualified weight (0 to 1) that must signal `override` to override.
    pub override_weight_share: f64,
    /// Share of the counted nodes (0 to 1) that must signal `override` to override.
    pub override_node_share: f64,
}

/// Who signs releases of one class, and how many of them must.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseClassSpec {
    /// The class.
    pub class: ReleaseClass,
    /// How many distinct signers must sign.
    pub threshold: u32,
    /// The keys allowed to sign releases of this class.
    pub signers: Vec<PublicKey>,
}

/// How long a proposal that survived its lock spends in each activation stage, in seconds
/// after the lock ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivationSpec {
    /// Time in `ready` before the testnet stage.
    pub ready_secs: u64,
    /// Time on testnet.
    pub testnet_secs: u64,
    /// Time on signet.
    pub signet_secs: u64,
    /// Time as a mainnet opt-in, after which it is the mainnet default.
    pub mainnet_opt_in_secs: u64,
}

/// Which rule decides whose uptime counts (step 2 of the Sybil rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QualificationRule {
    /// Rule v1: any peer's attestation counts, and attesters are placed in netgroups by
    /// attestations about them. A clique of made-up keys qualifies itself (see
    /// `docs/PROTOCOL.md`, "Known limit of rule v1"); kept for existing networks and for
    /// comparison.
    #[default]
    PeerAttestations,
    /// Only the spec's measurers vouch: a node's uptime at an address is the
    /// `measurer_quorum`-th largest `seen` among live measurer attestations agreeing on it,
    /// and it counts only while a measurer saw it within `liveness_epochs`.
    Measurers,
    /// Anchored ticket admission (SumUp / GateKeeper): tickets flow outward from the
    /// `tickets.anchors` over attestation edges and are used up; a node holding tickets from
    /// `tickets.anchors_required` anchors is admitted, and only admitted attesters count. A
    /// research alternative for the simulator; the daemon may refuse it.
    Tickets,
}

impl QualificationRule {
    /// The rule's name as written in spec files.
    pub fn name(self) -> &'static str {
        match self {
            QualificationRule::PeerAttestations => "peer-attestations",
            QualificationRule::Measurers => "measurers",
            QualificationRule::Tickets => "tickets",
        }
    }
}

impl fmt::Display for QualificationRule {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One measurer: a key the network trusts by name to attest the uptime of every node it
/// sees, and where to reach it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeasurerSpec {
    /// The measurer's key (also its libp2p identity, so a kad lookup of its peer id finds
    /// it). Part of the network id.
    pub key: PublicKey,
    /// Multiaddrs to dial it at, like bootstrap peers; not part of the network id, so a
    /// measurer can move without forking the network.
    #[serde(default)]
    pub addresses: Vec<String>,
}

/// The parameters of anchored ticket admission ([`QualificationRule::Tickets`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketSpec {
    /// The keys tickets start from.
    #[serde(default)]
    pub anchors: Vec<PublicKey>,
    /// How many tickets each anchor hands out; every node reached uses one up.
    #[serde(default)]
    pub tickets_per_anchor: u32,
    /// From how many distinct anchors a node must hold a ticket to be admitted (K).
    #[serde(default)]
    pub anchors_required: u32,
}

/// The place of a spec of version 2 or later in its network's chain of versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Succession {
    /// The version, 2 or more; the network's first spec is version 1.
    pub version: u32,
    /// The network id of the network's first spec, which every later version keeps as its
    /// own, so that messages, topics and stored state survive a rotation.
    pub genesis: Hash32,
    /// The spec id of the version this one replaces.
    pub previous: Hash32,
}

/// Why a spec may not replace another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SuccessionError {
    /// The successor does not name the version, genesis or spec it replaces correctly.
    #[error(
        "it must say `succession = {{ version = {version}, genesis = \"{genesis}\", previous = \"{previous}\" }}`"
    )]
    WrongLink {
        /// The version it must have.
        version: u32,
        /// The network id it must keep.
        genesis: Hash32,
        /// The spec id of the version it replaces.
        previous: Hash32,
    },
    /// The successor changes a rule that a rotation may not change.
    #[error(
        "it changes rules other than keys and thresholds (a rotation may change only maintainers, \
         tier and release thresholds, release signers, measurers and the measurer quorum)"
    )]
    RulesChanged,
}

/// All rules of one network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// The network's name; also names its gossip topics.
    pub name: String,
    /// Where this spec stands in its network's chain of versions: absent in a network's
    /// first spec (version 1), set in every later one (a key rotation, see
    /// [`NetworkSpec::check_successor`]). Absent fields are left out of the encoding, so a
    /// first spec hashes as it did before versions existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succession: Option<Succession>,
    /// Length of an epoch in seconds: `epoch = floor(unix_seconds / epoch_secs)`.
    pub epoch_secs: u64,
    /// How many epochs an attestation looks back over, and how long it stays valid.
    pub uptime_window_epochs: u32,
    /// The attested uptime, in epochs, that qualifies a node.
    pub min_uptime_epochs: u32,
    /// How many attesters in distinct netgroups must agree (q of the Sybil rule).
    pub attestation_quorum: u32,
    /// IPv4 netgroup prefix length.
    pub netgroup_ipv4_prefix: u8,
    /// IPv6 netgroup prefix length.
    pub netgroup_ipv6_prefix: u8,
    /// Whether loopback, private and other unroutable addresses get netgroups of their own
    /// (regtest); otherwise they all share one netgroup.
    pub allow_unroutable: bool,
    /// How far in the future a signal's time may be, in seconds.
    pub max_clock_skew_secs: u64,
    /// Keys of the maintainers who sign proposals.
    pub maintainers: Vec<PublicKey>,
    /// The governance tiers.
    pub tiers: Vec<TierSpec>,
    /// The release classes.
    pub release_classes: Vec<ReleaseClassSpec>,
    /// Activation stages after a lock ends.
    pub activation: ActivationSpec,
    /// Whose attestations qualify nodes. Spec files written before there was a choice
    /// load as [`QualificationRule::PeerAttestations`], the rule they were written for.
    #[serde(default)]
    pub qualification: QualificationRule,
    /// The measurers, in the order the spec lists them (the keys are part of the network id,
    /// their addresses are not). Read by [`QualificationRule::Measurers`]; listed before a
    /// network switches to that rule so that measurers can start measuring.
    #[serde(default)]
    pub measurers: Vec<MeasurerSpec>,
    /// `q_m`: how many measurers must agree on a node's address; its uptime is the q_m-th
    /// largest `seen` among them.
    #[serde(default)]
    pub measurer_quorum: u32,
    /// `L`: under the measurer rule a node counts only while some measurer's attestation
    /// about it at its address was issued within the last `L` epochs.
    #[serde(default)]
    pub liveness_epochs: u32,
    /// The parameters of [`QualificationRule::Tickets`].
    #[serde(default)]
    pub tickets: TicketSpec,
    /// Peers to connect to first (multiaddrs); not part of the network id.
    #[serde(default)]
    pub bootstrap: Vec<String>,
}

const DAY: u64 = 86_400;

/// The longest epoch a spec may set: a year.
pub const MAX_EPOCH_SECS: u64 = 365 * DAY;
/// The longest lock, activation stage, clock skew or uptime window a spec may set: 100
/// years.
pub const MAX_DURATION_SECS: u64 = 100 * 365 * DAY;

/// The tiers of the reference design, with lock lengths scaled by `unit` seconds per day.
fn reference_tiers(day: u64) -> Vec<TierSpec> {
    let tier = |tier, name: &str, sigs, days, share| TierSpec {
        tier,
        name: name.to_string(),
        signatures_required: sigs,
        min_lock_secs: days * day,
        override_weight_share: share,
        override_node_share: share,
    };
    vec![
        tier(1, "routine maintenance", 3, 7, 0.25),
        tier(2, "feature changes", 4, 30, 0.30),
        tier(3, "consensus-adjacent", 5, 90, 0.40),
        tier(4, "emergency", 4, 0, 1.0),
        tier(5, "governance changes", 5, 180, 0.40),
    ]
}

/// The seed of the i-th well-known regtest maintainer key. Everyone knows these keys: they
/// exist so that local networks and tests can sign proposals and releases.
pub fn regtest_maintainer_seed(i: usize) -> String {
    format!("commons-signal regtest maintainer {i}")
}

/// The i-th well-known regtest maintainer key (0 to 6).
pub fn regtest_maintainer_key(i: usize) -> SecretKey {
    SecretKey::from_seed(&regtest_maintainer_seed(i))
}

/// How many measurers regtest lists.
pub const REGTEST_MEASURERS: usize = 3;

/// The seed of the i-th well-known regtest measurer key. Like the maintainer keys, these are
/// public so that local networks and tests can run measurers.
pub fn regtest_measurer_seed(i: usize) -> String {
    format!("commons-signal regtest measurer {i}")
}

/// The i-th well-known regtest measurer key (0 to [`REGTEST_MEASURERS`] - 1).
pub fn regtest_measurer_key(i: usize) -> SecretKey {
    SecretKey::from_seed(&regtest_measurer_seed(i))
}

impl NetworkSpec {
    /// The main network. Its maintainer and release keys are set by the launch ceremony;
    /// until then it lists none, and no proposal or release can reach a threshold.
    pub fn mainnet() -> Self {
        NetworkSpec {
            name: "mainnet".into(),
            succession: None,
            epoch_secs: DAY,
            uptime_window_epochs: 120,
            min_uptime_epochs: 90,
            attestation_quorum: 3,
            netgroup_ipv4_prefix: 24,
            netgroup_ipv6_prefix: 48,
            allow_unroutable: false,
            max_clock_skew_secs: 600,
            maintainers: vec![],
            tiers: reference_tiers(DAY),
            release_classes: Self::release_classes(vec![], vec![]),
            activation: ActivationSpec {
                ready_secs: 0,
                testnet_secs: 30 * DAY,
                signet_secs: 60 * DAY,
                mainnet_opt_in_secs: 90 * DAY,
            },
            // Rule v1 until the measurer ceremony: the intended set is nine independent
            // operators, none of them a maintainer, with quorum five, changed only by a
            // tier-5 proposal (docs/PROTOCOL.md, "Measurers").
            qualification: QualificationRule::PeerAttestations,
            measurers: vec![],
            measurer_quorum: 5,
            liveness_epochs: 7,
            tickets: TicketSpec::default(),
            bootstrap: vec![],
        }
    }

    /// The public test network: hour-long epochs, a day of uptime qualifies, locks of hours.
    pub fn testnet() -> Self {
        NetworkSpec {
            name: "testnet".into(),
            succession: None,
            epoch_secs: 3_600,
            uptime_window_epochs: 48,
            min_uptime_epochs: 24,
            attestation_quorum: 3,
            tiers: reference_tiers(3_600),
            activation: ActivationSpec {
                ready_secs: 0,
                testnet_secs: DAY,
                signet_secs: 2 * DAY,
                mainnet_opt_in_secs: 3 * DAY,
            },
            liveness_epochs: 12,
            ..Self::mainnet()
        }
    }

    /// The local test network: 2-second epochs, 3 epochs of uptime qualify, locks of tens of
    /// seconds, loopback addresses split into /30 netgroups, and the well-known keys of
    /// [`regtest_maintainer_key`] (five maintainers, seven consensus release signers) and
    /// [`regtest_measurer_key`] (three measurers, quorum two, liveness 10 epochs), under the
    /// measurer rule: a local network qualifies only with measurers running (a node started
    /// with a measurer key is one). [`NetworkSpec::regtest_peer_attested`] is the same network
    /// under rule v1, for tests and simulations of that rule.
    pub fn regtest() -> Self {
        let keys: Vec<PublicKey> = (0..7)
            .map(|i| regtest_maintainer_key(i).public_key())
            .collect();
        NetworkSpec {
            name: "regtest".into(),
            succession: None,
            epoch_secs: 2,
            uptime_window_epochs: 30,
            min_uptime_epochs: 3,
            attestation_quorum: 2,
            netgroup_ipv4_prefix: 30,
            netgroup_ipv6_prefix: 64,
            allow_unroutable: true,
            max_clock_skew_secs: 30,
            maintainers: keys[..5].to_vec(),
            tiers: reference_tiers(5),
            release_classes: Self::release_classes(keys[..5].to_vec(), keys.clone()),
            activation: ActivationSpec {
                ready_secs: 60,
                testnet_secs: 30,
                signet_secs: 30,
                mainnet_opt_in_secs: 30,
            },
            qualification: QualificationRule::Measurers,
            // Three measurers with quorum two: each measurer is qualified by the other two,
            // so a local network of the three measurers alone qualifies after
            // `min_uptime_epochs` (6 s); one measurer may be down without anyone losing
            // standing.
            measurers: (0..REGTEST_MEASURERS)
                .map(|i| MeasurerSpec {
                    key: regtest_measurer_key(i).public_key(),
                    addresses: vec![],
                })
                .collect(),
            measurer_quorum: 2,
            liveness_epochs: 10,
            tickets: TicketSpec::default(),
            bootstrap: vec![],
        }
    }

    /// Regtest under rule v1 ([`QualificationRule::PeerAttestations`]): the same parameters
    /// and well-known keys as [`NetworkSpec::regtest`], so a different network id. Not a
    /// network `commonsd` offers by name (a spec file of it runs); tests and simulations of
    /// rule v1 use it.
    pub fn regtest_peer_attested() -> Self {
        NetworkSpec {
            name: "regtest-v1".into(),
            qualification: QualificationRule::PeerAttestations,
            ..Self::regtest()
        }
    }

    /// Release classes of the reference design: consensus binaries 6-of-7, protocol 4-of-5,
    /// applications 3-of-5.
    fn release_classes(five: Vec<PublicKey>, seven: Vec<PublicKey>) -> Vec<ReleaseClassSpec> {
        vec![
            ReleaseClassSpec {
                class: ReleaseClass::Consensus,
                threshold: 6,
                signers: seven,
            },
            ReleaseClassSpec {
                class: ReleaseClass::Protocol,
                threshold: 4,
                signers: five.clone(),
            },
            ReleaseClassSpec {
                class: ReleaseClass::Application,
                threshold: 3,
                signers: five,
            },
        ]
    }

    /// A built-in network by name.
    pub fn builtin(name: &str) -> Option<Self> {
        match name {
            "mainnet" => Some(Self::mainnet()),
            "testnet" => Some(Self::testnet()),
            "regtest" => Some(Self::regtest()),
            _ => None,
        }
    }

    /// A built-in name, or else the path of a spec file.
    pub fn resolve(name_or_path: &str) -> Result<Self, SpecError> {
        if let Some(spec) = Self::builtin(name_or_path) {
            return Ok(spec);
        }
        let path = Path::new(name_or_path);
        if path.exists() {
            Self::load(path)
        } else {
            Err(SpecError::Unknown(name_or_path.to_string()))
        }
    }

    /// Reads and validates a spec file: JSON when it ends in `.json`, TOML otherwise.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let spec = Self::parse_file(path)?;
        spec.validate(&path.display().to_string())?;
        Ok(spec)
    }

    /// Reads a spec that is still being put together in a key ceremony: every rule of
    /// [`NetworkSpec::validate`] holds except that thresholds may exceed the keys listed so
    /// far ([`NetworkSpec::validate_draft`]).
    pub fn load_draft(path: &Path) -> Result<Self, SpecError> {
        let spec = Self::parse_file(path)?;
        spec.validate_draft(&path.display().to_string())?;
        Ok(spec)
    }

    fn parse_file(path: &Path) -> Result<Self, SpecError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io {
            path: origin.clone(),
            source,
        })?;
        let spec: NetworkSpec = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| SpecError::Parse {
                path: origin.clone(),
                message: format!("line {} column {}: {e}", e.line(), e.column()),
            })?
        } else {
            toml::from_str(&text).map_err(|e| SpecError::Parse {
                path: origin.clone(),
                message: e.to_string(),
            })?
        };
        Ok(spec)
    }

    /// The spec as TOML, the format `network init` writes. Every spec that passes
    /// [`NetworkSpec::validate`] serializes: TOML integers are signed 64-bit, and validation
    /// keeps every count and duration far below `i64::MAX`, so JSON and TOML spec files
    /// accept the same specs.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a validated spec always serializes to TOML")
    }

    /// Checks every rule a usable spec must follow; `origin` names it in errors.
    pub fn validate(&self, origin: &str) -> Result<(), SpecError> {
        self.check_rules(origin, false)
    }

    /// Checks the rules of a spec still being built from public keys: as
    /// [`NetworkSpec::validate`], except that a tier, release class or measurer quorum may
    /// require more keys than are listed yet. Such a spec is not usable
    /// ([`NetworkSpec::missing_keys`] says what it lacks).
    pub fn validate_draft(&self, origin: &str) -> Result<(), SpecError> {
        self.check_rules(origin, true)
    }

    /// What a draft spec still lacks: one line per threshold that exceeds the keys listed.
    pub fn missing_keys(&self) -> Vec<String> {
        let mut missing = Vec::new();
        for tier in &self.tiers {
            if tier.signatures_required as usize > self.maintainers.len() {
                missing.push(format!(
                    "tier {} needs {} maintainer signatures, {} maintainers listed",
                    tier.tier,
                    tier.signatures_required,
                    self.maintainers.len()
                ));
            }
        }
        for class in &self.release_classes {
            if class.threshold as usize > class.signers.len() {
                missing.push(format!(
                    "{} releases need {} signatures, {} signers listed",
                    class.class.name(),
                    class.threshold,
                    class.signers.len()
                ));
            }
        }
        if self.qualification == QualificationRule::Measurers
            && self.measurer_quorum as usize > self.measurers.len()
        {
            missing.push(format!(
                "the measurer quorum is {}, {} measurers listed",
                self.measurer_quorum,
                self.measurers.len()
            ));
        }
        missing
    }

    fn check_rules(&self, origin: &str, draft: bool) -> Result<(), SpecError> {
        let invalid = |field: &str, reason: String| SpecError::Invalid {
            origin: origin.to_string(),
            field: field.to_string(),
            reason,
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 32
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(invalid(
                "name",
                "must be 1 to 32 characters of a-z, 0-9 and -".into(),
            ));
        }
        if self.succession.as_ref().is_some_and(|s| s.version < 2) {
            return Err(invalid(
                "succession.version",
                "must be at least 2 (a network's first spec has no succession)".into(),
            ));
        }
        if self.epoch_secs == 0 {
            return Err(invalid("epoch_secs", "must be at least 1".into()));
        }
        self.validate_durations(origin)?;
        if self.uptime_window_epochs == 0 {
            return Err(invalid("uptime_window_epochs", "must be at least 1".into()));
        }
        if self.min_uptime_epochs > self.uptime_window_epochs {
            return Err(invalid(
                "min_uptime_epochs",
                format!(
                    "is {} but the window is only {} epochs",
                    self.min_uptime_epochs, self.uptime_window_epochs
                ),
            ));
        }
        if self.attestation_quorum == 0 {
            return Err(invalid("attestation_quorum", "must be at least 1".into()));
        }
        if !(1..=32).contains(&self.netgroup_ipv4_prefix) {
            return Err(invalid(
                "netgroup_ipv4_prefix",
                "must be between 1 and 32".into(),
            ));
        }
        if !(1..=128).contains(&self.netgroup_ipv6_prefix) {
            return Err(invalid(
                "netgroup_ipv6_prefix",
                "must be between 1 and 128".into(),
            ));
        }
        self.validate_qualification(origin, draft)?;
        let mut seen = std::collections::BTreeSet::new();
        for key in &self.maintainers {
            if !key.is_valid() {
                return Err(invalid(
                    "maintainers",
                    format!("{key} is not a secp256k1 key"),
                ));
            }
            if !seen.insert(*key) {
                return Err(invalid("maintainers", format!("{key} is listed twice")));
            }
        }
        if self.tiers.is_empty() {
            return Err(invalid("tiers", "must list at least one tier".into()));
        }
        let mut tiers = std::collections::BTreeSet::new();
        for tier in &self.tiers {
            if !tiers.insert(tier.tier) {
                return Err(invalid(
                    "tiers",
                    format!("tier {} is listed twice", tier.tier),
                ));
            }
            if tier.signatures_required == 0 {
                return Err(invalid(
                    "tiers.signatures_required",
                    format!("tier {} needs at least 1", tier.tier),
                ));
            }
            // A network before its key ceremony lists no maintainers; it is valid but cannot
            // accept proposals yet.
            if !draft
                && !self.maintainers.is_empty()
                && tier.signatures_required as usize > self.maintainers.len()
            {
                return Err(invalid(
                    "tiers.signatures_required",
                    format!(
                        "tier {} needs {} signatures but only {} maintainers are listed",
                        tier.tier,
                        tier.signatures_required,
                        self.maintainers.len()
                    ),
                ));
            }
            for (field, share) in [
                ("tiers.override_weight_share", tier.override_weight_share),
                ("tiers.override_node_share", tier.override_node_share),
            ] {
                if !(share > 0.0 && share <= 1.0) {
                    return Err(invalid(
                        field,
                        format!(
                            "of tier {} must be above 0 and at most 1, not {share}",
                            tier.tier
                        ),
                    ));
                }
            }
        }
        let mut classes = std::collections::BTreeSet::new();
        for class in &self.release_classes {
            let name = class.class.name();
            if !classes.insert(class.class) {
                return Err(invalid(
                    "release_classes",
                    format!("class {name} is listed twice"),
                ));
            }
            if class.threshold == 0 {
                return Err(invalid(
                    "release_classes.threshold",
                    format!("of class {name} must be at least 1"),
                ));
            }
            if !draft && !class.signers.is_empty() && class.threshold as usize > class.signers.len()
            {
                return Err(invalid(
                    "release_classes.threshold",
                    format!(
                        "of class {name} is {} but only {} signers are listed",
                        class.threshold,
                        class.signers.len()
                    ),
                ));
            }
            let distinct: std::collections::BTreeSet<_> = class.signers.iter().collect();
            if distinct.len() != class.signers.len() {
                return Err(invalid(
                    "release_classes.signers",
                    format!("of class {name} lists a key twice"),
                ));
            }
        }
        Ok(())
    }

    /// Bounds every duration: an epoch of at most [`MAX_EPOCH_SECS`], and locks, activation
    /// stages, the clock skew and the uptime window of at most [`MAX_DURATION_SECS`]. Beyond
    /// being absurd, larger values would overflow time arithmetic and could not be written
    /// as TOML.
    fn validate_durations(&self, origin: &str) -> Result<(), SpecError> {
        let invalid = |field: &str, reason: String| SpecError::Invalid {
            origin: origin.to_string(),
            field: field.to_string(),
            reason,
        };
        if self.epoch_secs > MAX_EPOCH_SECS {
            return Err(invalid(
                "epoch_secs",
                format!(
                    "is {} seconds; an epoch may last at most {MAX_EPOCH_SECS} (a year)",
                    self.epoch_secs
                ),
            ));
        }
        let window = self
            .epoch_secs
            .saturating_mul(u64::from(self.uptime_window_epochs));
        if window > MAX_DURATION_SECS {
            return Err(invalid(
                "uptime_window_epochs",
                format!(
                    "makes a window of {window} seconds ({} epochs of {} s); it may span at most \
                     {MAX_DURATION_SECS} (100 years)",
                    self.uptime_window_epochs, self.epoch_secs
                ),
            ));
        }
        let a = &self.activation;
        let mut durations = vec![
            ("max_clock_skew_secs", self.max_clock_skew_secs),
            ("activation.ready_secs", a.ready_secs),
            ("activation.testnet_secs", a.testnet_secs),
            ("activation.signet_secs", a.signet_secs),
            ("activation.mainnet_opt_in_secs", a.mainnet_opt_in_secs),
        ];
        durations.extend(
            self.tiers
                .iter()
                .map(|t| ("tiers.min_lock_secs", t.min_lock_secs)),
        );
        for (field, secs) in durations {
            if secs > MAX_DURATION_SECS {
                return Err(invalid(
                    field,
                    format!("is {secs} seconds; at most {MAX_DURATION_SECS} (100 years)"),
                ));
            }
        }
        Ok(())
    }

    /// The measurer keys in spec order.
    pub fn measurer_keys(&self) -> impl Iterator<Item = PublicKey> + '_ {
        self.measurers.iter().map(|m| m.key)
    }

    /// Whether `key` is one of the spec's measurers.
    pub fn is_measurer(&self, key: &PublicKey) -> bool {
        self.measurers.iter().any(|m| m.key == *key)
    }

    /// The rules of step 2: measurers, their quorum and liveness, the ticket parameters.
    fn validate_qualification(&self, origin: &str, draft: bool) -> Result<(), SpecError> {
        let invalid = |field: &str, reason: String| SpecError::Invalid {
            origin: origin.to_string(),
            field: field.to_string(),
            reason,
        };
        let distinct_keys = |field: &str, keys: &mut dyn Iterator<Item = PublicKey>| {
            let mut seen = std::collections::BTreeSet::new();
            for key in keys {
                if !key.is_valid() {
                    return Err(invalid(field, format!("{key} is not a secp256k1 key")));
                }
                if !seen.insert(key) {
                    return Err(invalid(field, format!("{key} is listed twice")));
                }
            }
            Ok(())
        };
        distinct_keys("measurers.key", &mut self.measurer_keys())?;
        distinct_keys("tickets.anchors", &mut self.tickets.anchors.iter().copied())?;
        // Measurers are a check on the network that maintainers do not control.
        if let Some(key) = self.measurer_keys().find(|k| self.maintainers.contains(k)) {
            return Err(invalid(
                "measurers.key",
                format!("{key} is also a maintainer; measurers must be independent of them"),
            ));
        }
        // Like maintainers, a network before its measurer ceremony lists none; its quorum
        // is what the ceremony must meet.
        if !draft
            && !self.measurers.is_empty()
            && self.measurer_quorum as usize > self.measurers.len()
        {
            return Err(invalid(
                "measurer_quorum",
                format!(
                    "is {} but only {} measurers are listed",
                    self.measurer_quorum,
                    self.measurers.len()
                ),
            ));
        }
        if self.liveness_epochs > self.uptime_window_epochs {
            return Err(invalid(
                "liveness_epochs",
                format!(
                    "is {} but attestations live only {} epochs (uptime_window_epochs)",
                    self.liveness_epochs, self.uptime_window_epochs
                ),
            ));
        }
        match self.qualification {
            QualificationRule::PeerAttestations => {}
            QualificationRule::Measurers => {
                if self.measurer_quorum == 0 {
                    return Err(invalid(
                        "measurer_quorum",
                        "must be at least 1 under the measurer rule".into(),
                    ));
                }
                if self.liveness_epochs == 0 {
                    return Err(invalid(
                        "liveness_epochs",
                        "must be at least 1 under the measurer rule".into(),
                    ));
                }
            }
            QualificationRule::Tickets => {
                let t = &self.tickets;
                if t.tickets_per_anchor == 0 {
                    return Err(invalid(
                        "tickets.tickets_per_anchor",
                        "must be at least 1 under the tickets rule".into(),
                    ));
                }
                if t.anchors_required == 0 {
                    return Err(invalid(
                        "tickets.anchors_required",
                        "must be at least 1 under the tickets rule".into(),
                    ));
                }
                if !t.anchors.is_empty() && t.anchors_required as usize > t.anchors.len() {
                    return Err(invalid(
                        "tickets.anchors_required",
                        format!(
                            "is {} but only {} anchors are listed",
                            t.anchors_required,
                            t.anchors.len()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The spec id: the tagged hash of every rule of this version (all but the bootstrap
    /// peers and the measurers' addresses). What maintainers sign; it changes with any key.
    pub fn spec_id(&self) -> Hash32 {
        let mut rules = self.clone();
        rules.bootstrap.clear();
        for measurer in &mut rules.measurers {
            measurer.addresses.clear();
        }
        tagged_hash("commons-signal/v1/network", &[&wire::encode(&rules)])
    }

    /// The network id: what every signature of this network is bound to. The spec id of the
    /// network's first spec; later versions keep it ([`Succession::genesis`]), so a key
    /// rotation does not split the network.
    pub fn network_id(&self) -> Hash32 {
        match &self.succession {
            Some(succession) => succession.genesis,
            None => self.spec_id(),
        }
    }

    /// This spec's version: 1 for a network's first spec.
    pub fn version(&self) -> u32 {
        self.succession.as_ref().map_or(1, |s| s.version)
    }

    /// The next version of this spec, with the same keys: the draft a rotation edits.
    pub fn successor_draft(&self) -> NetworkSpec {
        NetworkSpec {
            succession: Some(Succession {
                version: self.version() + 1,
                genesis: self.network_id(),
                previous: self.spec_id(),
            }),
            ..self.clone()
        }
    }

    /// Checks that `next` may replace this spec: it names this version as its previous one,
    /// keeps the network id, and changes nothing but keys and thresholds. A rotation changes
    /// who signs and who measures, never the rules everyone's standing was computed by.
    pub fn check_successor(&self, next: &NetworkSpec) -> Result<(), SuccessionError> {
        let link = self.successor_draft().succession;
        if next.succession != link {
            let link = link.expect("a successor draft has a succession");
            return Err(SuccessionError::WrongLink {
                version: link.version,
                genesis: link.genesis,
                previous: link.previous,
            });
        }
        if self.without_keys() != next.without_keys() {
            return Err(SuccessionError::RulesChanged);
        }
        Ok(())
    }

    /// Whether `next` only takes keys away from this spec: every maintainer, release signer
    /// and measurer it lists is listed here, and each threshold is either unchanged or lowered
    /// to the keys left. Such a revocation may pass as an emergency (see PROTOCOL.md).
    pub fn is_revocation_only(&self, next: &NetworkSpec) -> bool {
        let subset = |new: &[PublicKey], old: &[PublicKey]| new.iter().all(|k| old.contains(k));
        let threshold_ok =
            |new: u32, old: u32, left: usize| new == old || (new < old && new as usize == left);
        let old_measurers: Vec<PublicKey> = self.measurer_keys().collect();
        let new_measurers: Vec<PublicKey> = next.measurer_keys().collect();
        subset(&next.maintainers, &self.maintainers)
            && subset(&new_measurers, &old_measurers)
            && threshold_ok(
                next.measurer_quorum,
                self.measurer_quorum,
                new_measurers.len(),
            )
            && next.tiers.iter().zip(&self.tiers).all(|(new, old)| {
                threshold_ok(
                    new.signatures_required,
                    old.signatures_required,
                    next.maintainers.len(),
                )
            })
            && next
                .release_classes
                .iter()
                .zip(&self.release_classes)
                .all(|(new, old)| {
                    subset(&new.signers, &old.signers)
                        && threshold_ok(new.threshold, old.threshold, new.signers.len())
                })
    }

    /// The spec with every rotatable key and threshold blanked out, and no succession: two
    /// versions of one network are equal here.
    fn without_keys(&self) -> NetworkSpec {
        let mut rules = self.clone();
        rules.succession = None;
        rules.bootstrap.clear();
        rules.maintainers.clear();
        rules.measurers.clear();
        rules.measurer_quorum = 0;
        for tier in &mut rules.tiers {
            tier.signatures_required = 0;
        }
        for class in &mut rules.release_classes {
            class.signers.clear();
            class.threshold = 0;
        }
        rules
    }

    /// The epoch a Unix time falls in.
    pub fn epoch_at(&self, unix_secs: u64) -> u64 {
        unix_secs / self.epoch_secs
    }

    /// The parameters of a tier, if the network has it.
    pub fn tier(&self, tier: u8) -> Option<&TierSpec> {
        self.tiers.iter().find(|t| t.tier == tier)
    }

    /// The rules of a release class, if the network has it.
    pub fn release_class(&self, class: ReleaseClass) -> Option<&ReleaseClassSpec> {
        self.release_classes.iter().find(|c| c.class == class)
    }
}

impl fmt::Display for NetworkSpec {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} ({})", self.name, &self.network_id().to_hex()[..16])
    }
}

/// The ports a node uses unless told otherwise; the CLI finds a local node by them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultPorts {
    /// Peer-to-peer (TCP).
    pub p2p: u16,
    /// JSON-RPC on 127.0.0.1.
    pub rpc: u16,
    /// Prometheus metrics.
    pub metrics: u16,
}

/// The default ports for a network name: mainnet 8733 (p2p), 8732 (RPC) and 9733 (metrics);
/// testnet 10 000 higher, regtest 20 000 higher, any network loaded from a spec file 30 000
/// higher, so nodes of different networks can run side by side.
pub fn default_ports(network: &str) -> DefaultPorts {
    let offset = match network {
        "mainnet" => 0,
        "testnet" => 10_000,
        "regtest" => 20_000,
        _ => 30_000,
    };
    DefaultPorts {
        p2p: 8733 + offset,
        rpc: 8732 + offset,
        metrics: 9733 + offset,
    }
}

/// The data directory of a network inside a base directory: the base itself for mainnet,
/// else a subdirectory named after the network (spec names are `[a-z0-9-]`, so always one
/// plain path component), as bitcoind does.
pub fn network_dir(base: &Path, network: &str) -> std::path::PathBuf {
    if network == "mainnet" {
        base.to_path_buf()
    } else {
        base.join(network)
    }
}
