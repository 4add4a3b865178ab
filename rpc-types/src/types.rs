//! The answers of the methods.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The answer of `getinfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// The `commonsd` version.
    pub version: String,
    /// The network the node runs.
    pub network: NetworkInfo,
    /// The libp2p peer id; `null` when the node runs without networking.
    pub peer_id: Option<String>,
    /// The node's x-only public key (hex).
    pub public_key: String,
    /// The multiaddrs the node listens on.
    pub listen: Vec<String>,
    /// The current epoch.
    pub epoch: u64,
    /// The network's epoch length in seconds.
    pub epoch_secs: u64,
    /// The node's Unix time.
    pub time: u64,
    /// How many peers are connected.
    pub peers: u64,
    /// How many proposals the node holds.
    pub proposals: u64,
    /// How many nodes count at the current epoch: the denominator of every tally.
    pub qualified_nodes: u64,
    /// Their total weight.
    pub qualified_weight: f64,
    /// The node's own uptime status; `null` while no attestation about it is known.
    pub uptime: Option<UptimeStatus>,
    /// Seconds since this process started.
    pub running_secs: u64,
    /// Whether the running `commonsd` executable is an artifact of a release this node
    /// verified (`--verify-binary`); left out by nodes older than the check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<BinaryInfo>,
    /// The spec version in force, the later ones held, and the rotation proposals known;
    /// left out by nodes older than key rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<SpecInfo>,
}

/// The spec versions part of [`NodeInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecInfo {
    /// The version in force (1 for a network's first spec).
    pub version: u32,
    /// Its spec id (hex): the hash of its rules and keys, as `commons-cli spec id` prints it.
    /// For version 1 it is also the network id.
    pub spec_id: String,
    /// The first epoch it is in force (0 for version 1).
    pub since_epoch: u64,
    /// Later versions this node holds (from its spec bundle), not in force yet, the next
    /// one first.
    #[serde(default)]
    pub staged: Vec<SpecVersion>,
    /// The rotation proposals this node holds, by activation epoch.
    #[serde(default)]
    pub rotations: Vec<RotationInfo>,
    /// Set when a rotation that passed or is pending names a version this node does not
    /// hold: what the operator must do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// One spec version in [`SpecInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecVersion {
    /// Its number.
    pub version: u32,
    /// Its spec id (hex).
    pub spec_id: String,
}

/// One rotation proposal in [`SpecInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationInfo {
    /// The proposal id (hex).
    pub proposal: String,
    /// The spec id its reference (`spec-rotation:<spec id>`) names (hex).
    pub spec_id: String,
    /// That version's number; `null` when this node does not hold the version.
    pub version: Option<u32>,
    /// The epoch from which it puts the version in force.
    pub activation_epoch: u64,
    /// `pending` (activation to come), `activated` (the version is or was in force here),
    /// `stalled` (its lock passed, but this node does not hold the version) or `overridden`.
    pub state: String,
}

/// The self-check of the running executable in [`NodeInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryInfo {
    /// The `--verify-binary` setting: `off`, `warn` or `require`.
    pub mode: String,
    /// `off` (not checked), `verified` (a verified release lists this executable's size and
    /// SHA-256), `unverified` (none does) or `error` (it could not be hashed).
    pub status: String,
    /// The executable's path as the kernel names it; `null` when off.
    pub path: Option<String>,
    /// The executable's SHA-256 (hex); `null` when off or not hashed.
    pub sha256: Option<String>,
    /// Its size in bytes; `null` when off or not hashed.
    pub size: Option<u64>,
    /// The release that lists it, when `verified`.
    pub release: Option<BinaryRelease>,
    /// Why it could not be checked, when `error`.
    pub error: Option<String>,
}

/// The release a verified executable belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryRelease {
    /// The release id (hex).
    pub id: String,
    /// Its channel.
    pub channel: String,
    /// Its version.
    pub version: String,
    /// The name of the artifact whose bytes the executable has.
    pub artifact: String,
}

/// The network part of [`NodeInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// The spec's network name (`mainnet`, `regtest`, ...).
    pub name: String,
    /// The network id: the hash of the spec's consensus part (hex).
    pub id: String,
}

/// What the aggregator knows about one node's uptime at the current epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UptimeStatus {
    /// The address its uptime is attested at; `null` when no live attestation names one.
    pub ip: Option<IpAddr>,
    /// The attested uptime at that address, in epochs (0 without a quorum).
    pub uptime_epochs: u32,
    /// How many distinct netgroups of attesters vouch for that address.
    pub attester_netgroups: u32,
    /// A quorum agrees and the uptime reaches the spec's minimum.
    pub qualified: bool,
    /// Qualified and, after IP dedup, the one node that counts for its address.
    pub counted: bool,
    /// The netgroup of `ip` (`127.0.0.0/30`, say); `null` without an address.
    pub netgroup: Option<String>,
}

/// One connected peer in the answer of `getpeers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// Its libp2p peer id.
    pub peer_id: String,
    /// Its x-only public key (hex), when its peer id carries one.
    pub public_key: Option<String>,
    /// The addresses of its connections.
    pub addrs: Vec<String>,
    /// The addresses it says it listens on.
    pub listen_addrs: Vec<String>,
    /// Its IP as seen on a direct connection.
    pub observed_ip: Option<IpAddr>,
    /// Unix time its first connection opened.
    pub connected_since: u64,
    /// Whether this node dialled it.
    pub outbound: bool,
    /// Its identify agent string.
    pub agent: Option<String>,
    /// Its gossipsub peer score.
    pub gossip_score: Option<f64>,
    /// In how many epochs of the uptime window this node saw it online.
    pub seen_epochs: u64,
    /// Its uptime status, when its key is known.
    pub uptime: Option<UptimeStatus>,
}

/// One proposal in the answer of `listproposals`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalSummary {
    /// The proposal id (hex).
    pub id: String,
    /// Its tier (1 to 5).
    pub tier: u8,
    /// Its title.
    pub title: String,
    /// Its reference (repository, commit or pull request).
    pub reference: String,
    /// `pending`, `locked`, `overridden`, `ready`, `testnet`, `signet`, `mainnet-opt-in`,
    /// `mainnet-default`, or `unknown`.
    pub state: String,
    /// Unix time the lock starts.
    pub lock_start: u64,
    /// Unix time the lock ends.
    pub lock_end: u64,
    /// How many maintainer signatures it carries.
    pub signatures: u64,
    /// The epoch its override was reached at, once it was.
    pub overridden_at_epoch: Option<u64>,
}

/// The answer of `gettally`: a proposal's tally at the current epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// The proposal id (hex).
    pub id: String,
    /// Its tier.
    pub tier: u8,
    /// The epoch whose qualified population this tally counts.
    pub epoch: u64,
    /// The proposal's state, as in [`ProposalSummary::state`].
    pub state: String,
    /// Weight and node count per choice.
    pub choices: Choices,
    /// The denominator: every counted node at this epoch, signalling or not.
    pub total_nodes: u64,
    /// Their total weight.
    pub total_weight: f64,
    /// Override weight over total weight (0 when nobody counts).
    pub override_weight_share: f64,
    /// Override nodes over total nodes (0 when nobody counts).
    pub override_node_share: f64,
    /// The tier's weight share threshold.
    pub required_weight_share: f64,
    /// The tier's node share threshold.
    pub required_node_share: f64,
    /// Both override shares reach their thresholds.
    pub override_met: bool,
    /// Signers with a stored signal, counted or not.
    pub signers: u64,
    /// Signers whose signal is stored but who do not count at this epoch (proven
    /// equivocators are not among them).
    pub uncounted_signers: u64,
    /// Signers proven to equivocate on this proposal (`listequivocations` shows the
    /// evidence): their signals count in no choice. 0 from a node older than the field.
    #[serde(default)]
    pub excluded_signers: u64,
}

impl Tally {
    /// The answer for an aggregator's tally and the proposal's state (its name): what
    /// `gettally` sends and `commons-cli recount` prints, so both show the same numbers.
    pub fn from_aggregator(tally: &commons_aggregator::Tally, state: &str) -> Self {
        use commons_signaling::Choice;
        let count = |choice: Choice| {
            let c = tally.choice(choice);
            ChoiceTally {
                weight: c.weight,
                nodes: c.nodes,
            }
        };
        Tally {
            id: tally.proposal.to_hex(),
            tier: tally.tier,
            epoch: tally.epoch,
            state: state.to_string(),
            choices: Choices {
                support: count(Choice::Support),
                oppose: count(Choice::Oppose),
                r#override: count(Choice::Override),
                abstain: count(Choice::Abstain),
            },
            total_nodes: tally.total_nodes,
            total_weight: tally.total_weight,
            override_weight_share: tally.override_weight_share,
            override_node_share: tally.override_node_share,
            required_weight_share: tally.required_weight_share,
            required_node_share: tally.required_node_share,
            override_met: tally.override_met,
            signers: tally.signers,
            uncounted_signers: tally.uncounted_signers,
            excluded_signers: tally.excluded_signers,
        }
    }
}

/// One piece of `exportproposal`'s answer: a slice of the recount file of a snapshot the
/// node took at the first call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportChunk {
    /// The snapshot's handle, for the calls that fetch the rest.
    pub snapshot: String,
    /// The proposal id (hex).
    pub proposal: String,
    /// The epoch the snapshot was taken at.
    pub epoch: u64,
    /// The node's clock (Unix seconds) when it was taken.
    pub time: u64,
    /// The file's size in bytes.
    pub total_bytes: u64,
    /// SHA-256 of the whole file (hex), to check the pieces once put together.
    pub sha256: String,
    /// Where in the file this piece starts.
    pub offset: u64,
    /// The piece, base64 (standard alphabet, padded); at most
    /// [`EXPORT_CHUNK_BYTES`] bytes once decoded.
    pub data: String,
    /// The signals in the file.
    pub signals: u64,
    /// The attestations of the population the file holds (in presences, signals or bare).
    pub attestations: u64,
    /// The equivocation evidence in the file.
    pub evidence: u64,
}

/// The largest piece of a recount file one `exportproposal` call returns.
pub const EXPORT_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// The tally of each choice, keyed by the choice's name on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choices {
    /// `support`.
    pub support: ChoiceTally,
    /// `oppose`.
    pub oppose: ChoiceTally,
    /// `override`.
    pub r#override: ChoiceTally,
    /// `abstain`: a withdrawal, reported but part of no verdict.
    pub abstain: ChoiceTally,
}

impl Choices {
    /// The four choices with their names, in the order support, oppose, override, abstain.
    pub fn named(&self) -> [(&'static str, &ChoiceTally); 4] {
        [
            ("support", &self.support),
            ("oppose", &self.oppose),
            ("override", &self.r#override),
            ("abstain", &self.abstain),
        ]
    }

    /// The tally of the choice named `name`.
    pub fn get(&self, name: &str) -> Option<&ChoiceTally> {
        self.named()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| c)
    }
}

/// The tally of one choice.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChoiceTally {
    /// The summed weight of the counted nodes whose latest signal is this choice.
    pub weight: f64,
    /// How many they are.
    pub nodes: u64,
}

/// The answer of `getuptime`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UptimeReport {
    /// The key asked about (hex).
    pub key: String,
    /// The current epoch.
    pub epoch: u64,
    /// The spec's minimum uptime to qualify, in epochs.
    pub min_uptime_epochs: u32,
    /// The aggregator's status of the key; `null` while no attestation about it is known.
    pub status: Option<UptimeStatus>,
    /// What this node itself observed of the key; `null` when it never saw it.
    pub observed_by_this_node: Option<Observation>,
}

/// What a node observed of a peer over its uptime window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// The IP it last saw the peer at.
    pub ip: Option<IpAddr>,
    /// In how many epochs of the window it saw the peer online.
    pub seen_epochs: u64,
}

/// The answer of `signal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalReceipt {
    /// The proposal id (hex).
    pub proposal: String,
    /// The choice signalled.
    pub choice: String,
    /// The signal's sequence number (one more than this node's previous one).
    pub sequence: u64,
    /// The signal's Unix time.
    pub time: u64,
    /// How many attestations about this node it carries.
    pub attestations: u64,
    /// Whether it went out to peers now (else it does when they connect).
    pub published: bool,
}

/// The answer of `submitproposal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalReceipt {
    /// The proposal id (hex).
    pub id: String,
    /// False when the node held it already.
    pub new: bool,
    /// Whether it went out to peers now.
    pub published: bool,
}

/// A release as `listreleases` and `getrelease` describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// The release id (hex).
    pub id: String,
    /// The channel ("stable", ...).
    pub channel: String,
    /// The version ("1.4.0").
    pub version: String,
    /// `consensus`, `protocol` or `application`.
    pub class: String,
    /// Unix time the manifest was made.
    pub created: u64,
    /// Unix time after which nodes refuse the manifest.
    pub expires: u64,
    /// How many distinct authorised signers counted.
    pub signers: u64,
    /// `verified` when every artifact is; else `fetching`, or `superseded` or `expired` for
    /// one the node no longer fetches.
    pub state: String,
    /// The artifacts, in manifest order.
    pub artifacts: Vec<ReleaseArtifact>,
    /// The bundle's canonical CBOR as hex: in the answer of `getrelease` only, left out of
    /// `listreleases`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
}

/// One artifact of a [`Release`] and how far the node has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseArtifact {
    /// File name.
    pub name: String,
    /// SHA-256 of the file (hex).
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// `verified` once the node holds it and checked it, else `fetching` or `waiting`.
    pub state: String,
    /// Bytes the node holds so far.
    #[serde(default)]
    pub have_bytes: u64,
    /// Where the node stores the verified file; left out until it is verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// The answer of `publishrelease`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishReceipt {
    /// The release id (hex).
    pub id: String,
    /// Its channel.
    pub channel: String,
    /// Its version.
    pub version: String,
    /// False when the node held it already.
    pub new: bool,
    /// Whether it went out to peers now.
    pub published: bool,
    /// How many artifacts the node verified and stored.
    pub artifacts: u64,
}

/// The answer of `getdeploymentinfo`: every proposal at the current epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentInfo {
    /// The current epoch.
    pub epoch: u64,
    /// The node's Unix time, which the times left are counted from.
    pub time: u64,
    /// How many nodes count at this epoch: the denominator of every share.
    pub qualified_nodes: u64,
    /// Their total weight.
    pub qualified_weight: f64,
    /// Every proposal the node holds, by lock start, then id.
    pub proposals: Vec<Deployment>,
}

/// One proposal in the answer of `getdeploymentinfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// The proposal id (hex).
    pub id: String,
    /// Its tier.
    pub tier: u8,
    /// The tier's name in the network spec ("routine maintenance", ...).
    pub tier_name: String,
    /// Its title.
    pub title: String,
    /// Its state now, as in [`ProposalSummary::state`].
    pub state: String,
    /// Unix time the lock starts.
    pub lock_start: u64,
    /// Unix time the lock ends.
    pub lock_end: u64,
    /// Seconds until the lock ends, counting the wait before it starts; 0 once it ended.
    pub lock_secs_left: u64,
    /// The state it moves to next on the clock alone (an override may come first); `null`
    /// when no further state follows (overridden, or the mainnet default).
    pub next_state: Option<String>,
    /// Unix time it moves to `next_state`.
    pub next_state_at: Option<u64>,
    /// Override weight over the qualified weight (0 when nobody counts).
    pub override_weight_share: f64,
    /// Override nodes over the qualified nodes (0 when nobody counts).
    pub override_node_share: f64,
    /// The tier's weight share threshold.
    pub required_weight_share: f64,
    /// The tier's node share threshold.
    pub required_node_share: f64,
    /// Both override shares reach their thresholds now.
    pub override_met: bool,
    /// The epoch its override was latched at, once it was.
    pub overridden_at_epoch: Option<u64>,
    /// Signers with a stored signal, counted or not.
    pub signers: u64,
}

/// One equivocation proven on a proposal, as `listequivocations` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EquivocationInfo {
    /// The evidence id (hex): the tagged hash of its canonical bytes on this network.
    pub id: String,
    /// The proposal (hex).
    pub proposal: String,
    /// The signer proven to equivocate (x-only key, hex), who counts no more on it.
    pub signer: String,
    /// The sequence number both signals carry.
    pub sequence: u64,
    /// The two signals, in the evidence's canonical order.
    pub signals: Vec<ConflictingSignal>,
    /// The evidence message's canonical CBOR as hex, for anyone to check both signatures.
    pub evidence: String,
}

/// One of the two signals of an equivocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictingSignal {
    /// `support`, `oppose`, `override` or `abstain`.
    pub choice: String,
    /// When it says it was cast, Unix seconds.
    pub time: u64,
    /// How many attestations it carries.
    pub attestations: u64,
    /// Its signature (hex).
    pub signature: String,
}
