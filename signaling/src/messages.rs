//! The messages of protocol v1.
//!
//! A message signed by one key is a [`Signed`] body: the signature is BIP340 over
//! `tagged_hash("commons-signal/v1/<kind>", network_id || cbor(body))`, so a signature is
//! bound to one kind of message, one protocol version and one network. A message signed by
//! maintainers is a [`MultiSigned`] body: its id is that same tagged hash, and each
//! maintainer signs the id. Signers are always inside the body, so the bytes that are signed
//! say who signed them.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::keys::{PublicKey, SecretKey, Signature, tagged_hash};
use crate::types::{BoundedBytes, BoundedString, BoundedVec, Hash32, WireIp};
use crate::wire::{self, DecodeError};

/// The kinds of message, each with its own signing tag and size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    /// [`UptimeAttestation`].
    Attestation,
    /// [`Presence`].
    Presence,
    /// [`Signal`].
    Signal,
    /// [`Proposal`].
    Proposal,
    /// [`ReleaseBundle`].
    Release,
    /// [`Equivocation`](crate::evidence::Equivocation): two conflicting signals of one
    /// signer. Not signed itself; its tag makes its id.
    Evidence,
}

impl MessageKind {
    /// Every kind, in a fixed order.
    pub const ALL: [MessageKind; 6] = [
        MessageKind::Attestation,
        MessageKind::Presence,
        MessageKind::Signal,
        MessageKind::Proposal,
        MessageKind::Release,
        MessageKind::Evidence,
    ];

    /// The tag of the tagged hash that ids and signatures of this kind use.
    pub fn tag(self) -> &'static str {
        match self {
            MessageKind::Attestation => "commons-signal/v1/attestation",
            MessageKind::Presence => "commons-signal/v1/presence",
            MessageKind::Signal => "commons-signal/v1/signal",
            MessageKind::Proposal => "commons-signal/v1/proposal",
            MessageKind::Release => "commons-signal/v1/release",
            MessageKind::Evidence => "commons-signal/v1/evidence",
        }
    }

    /// The largest encoded message of this kind that is accepted.
    pub fn max_bytes(self) -> usize {
        match self {
            MessageKind::Attestation => 512,
            MessageKind::Presence => 24 * 1024,
            MessageKind::Signal => 8 * 1024,
            MessageKind::Proposal => 8 * 1024,
            MessageKind::Release => 64 * 1024,
            // Two whole signals and the few bytes of the map around them.
            MessageKind::Evidence => 2 * 8 * 1024 + 64,
        }
    }

    /// A lowercase name for logs, metrics and file listings.
    pub fn name(self) -> &'static str {
        match self {
            MessageKind::Attestation => "attestation",
            MessageKind::Presence => "presence",
            MessageKind::Signal => "signal",
            MessageKind::Proposal => "proposal",
            MessageKind::Release => "release",
            MessageKind::Evidence => "evidence",
        }
    }
}

/// The hash that a message's signature (or its maintainers' signatures) covers.
pub fn signing_digest(kind: MessageKind, network_id: &Hash32, body_bytes: &[u8]) -> Hash32 {
    tagged_hash(kind.tag(), &[&network_id.0, body_bytes])
}

/// The body of a message signed by one key.
pub trait SignedBody: Serialize + DeserializeOwned + Clone {
    /// Which kind of message this is.
    const KIND: MessageKind;
    /// The key that must have signed it.
    fn signer(&self) -> &PublicKey;
    /// The protocol version it declares.
    fn version(&self) -> u8;
}

/// A body and its signer's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed<B> {
    /// What was signed.
    pub body: B,
    /// BIP340 signature by `body.signer()` over [`Signed::digest`].
    pub signature: Signature,
}

impl<B: SignedBody> Signed<B> {
    /// Signs `body` with `key` for the network `network_id`.
    pub fn sign(body: B, key: &SecretKey, network_id: &Hash32) -> Self {
        let digest = signing_digest(B::KIND, network_id, &wire::encode(&body));
        Signed {
            body,
            signature: key.sign(&digest),
        }
    }

    /// Signs with fixed auxiliary randomness, for reproducible test vectors.
    pub fn sign_with_aux(body: B, key: &SecretKey, network_id: &Hash32, aux: &[u8; 32]) -> Self {
        let digest = signing_digest(B::KIND, network_id, &wire::encode(&body));
        Signed {
            body,
            signature: key.sign_with_aux(&digest, aux),
        }
    }

    /// The digest the signature covers.
    pub fn digest(&self, network_id: &Hash32) -> Hash32 {
        signing_digest(B::KIND, network_id, &wire::encode(&self.body))
    }

    /// Whether the signature is the signer's, for this network.
    pub fn verify(&self, network_id: &Hash32) -> bool {
        self.verify_digest(&self.digest(network_id))
    }

    /// Whether the signature is the signer's over `digest`, as computed by
    /// [`Signed::decode_with_digest`].
    pub fn verify_digest(&self, digest: &Hash32) -> bool {
        self.body.signer().verify(digest, &self.signature)
    }

    /// Decodes, and computes the signing digest from the input itself rather than by encoding
    /// the body again: in the one canonical encoding, `{"body": B, "signature": bytes(64)}`,
    /// the body's bytes sit at a fixed offset from both ends.
    pub fn decode_with_digest(
        bytes: &[u8],
        network_id: &Hash32,
    ) -> Result<(Self, Hash32), DecodeError> {
        const PREFIX: &[u8] = b"\xa2\x64body";
        const SUFFIX_LEN: usize = 1 + "signature".len() + 2 + 64;
        let message = Self::decode(bytes)?;
        debug_assert!(bytes.starts_with(PREFIX));
        let body = &bytes[PREFIX.len()..bytes.len() - SUFFIX_LEN];
        Ok((message, signing_digest(B::KIND, network_id, body)))
    }

    /// The signature of a canonically encoded message, read without decoding it: the last 64
    /// bytes. Lets a receiver drop a message it already holds before decoding it.
    pub fn signature_of_encoding(bytes: &[u8]) -> Option<Signature> {
        let tail = bytes.len().checked_sub(64).map(|start| &bytes[start..])?;
        Some(Signature(tail.try_into().ok()?))
    }

    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        wire::encode(self)
    }

    /// Strictly decodes canonical bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        wire::decode_versioned(
            bytes,
            B::KIND.max_bytes(),
            wire::Authentication::Signature,
            |m: &Self| m.body.version(),
        )
    }
}

/// A maintainer's signature over a [`MultiSigned`] message's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintainerSignature {
    /// The maintainer's key.
    pub signer: PublicKey,
    /// BIP340 signature over the message id.
    pub signature: Signature,
}

impl MaintainerSignature {
    /// Whether this is a valid signature by `signer` over `id`.
    pub fn verify(&self, id: &Hash32) -> bool {
        self.signer.verify(id, &self.signature)
    }
}

/// The body of a message signed by a threshold of maintainers.
pub trait MultiSignedBody: Serialize + DeserializeOwned + Clone {
    /// Which kind of message this is.
    const KIND: MessageKind;
    /// The protocol version it declares.
    fn version(&self) -> u8;
}

/// The most maintainer signatures one message may carry.
pub const MAX_MAINTAINER_SIGNATURES: usize = 16;

/// A body and the maintainer signatures over its id. Whether they are enough is the
/// aggregator's call, which knows the thresholds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiSigned<B> {
    /// What was signed.
    pub body: B,
    /// The signatures collected so far, in the order they were added.
    pub signatures: BoundedVec<MaintainerSignature, MAX_MAINTAINER_SIGNATURES>,
}

impl<B: MultiSignedBody> MultiSigned<B> {
    /// An unsigned message.
    pub fn new(body: B) -> Self {
        MultiSigned {
            body,
            signatures: BoundedVec::default(),
        }
    }

    /// The id: the tagged hash of the body on this network, which maintainers sign.
    pub fn id(&self, network_id: &Hash32) -> Hash32 {
        signing_digest(B::KIND, network_id, &wire::encode(&self.body))
    }

    /// Adds `key`'s signature, replacing an earlier one by the same key. Fails when the
    /// message already carries the most signatures it may.
    pub fn add_signature(&mut self, key: &SecretKey, network_id: &Hash32) -> Result<(), String> {
        let signature = MaintainerSignature {
            signer: key.public_key(),
            signature: key.sign(&self.id(network_id)),
        };
        self.add_detached(signature)
    }

    /// Adds `key`'s signature made with fixed auxiliary randomness, for reproducible test
    /// vectors.
    pub fn add_signature_with_aux(
        &mut self,
        key: &SecretKey,
        network_id: &Hash32,
        aux: &[u8; 32],
    ) -> Result<(), String> {
        let signature = MaintainerSignature {
            signer: key.public_key(),
            signature: key.sign_with_aux(&self.id(network_id), aux),
        };
        self.add_detached(signature)
    }

    /// Adds a signature made elsewhere (a detached signature file), replacing an earlier one
    /// by the same key.
    pub fn add_detached(&mut self, signature: MaintainerSignature) -> Result<(), String> {
        let mut all: Vec<MaintainerSignature> = self
            .signatures
            .iter()
            .filter(|s| s.signer != signature.signer)
            .cloned()
            .collect();
        all.push(signature);
        self.signatures = BoundedVec::new(all).map_err(|all| {
            format!(
                "a message carries at most {MAX_MAINTAINER_SIGNATURES} signatures ({} given)",
                all.len()
            )
        })?;
        Ok(())
    }

    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        wire::encode(self)
    }

    /// Strictly decodes canonical bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        wire::decode_versioned(
            bytes,
            B::KIND.max_bytes(),
            wire::Authentication::Signatures,
            |m: &Self| m.body.version(),
        )
    }
}

/// What an attester saw of a subject: at which IP, and for how many epochs of the uptime
/// window ending at `epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationBody {
    /// Protocol version, 1.
    pub version: u8,
    /// Who attests.
    pub attester: PublicKey,
    /// Whom it attests.
    pub subject: PublicKey,
    /// The subject's IP as the attester observed it on a direct connection.
    pub subject_ip: WireIp,
    /// The epoch at whose start the attestation was issued.
    pub epoch: u64,
    /// How many epochs of the window before `epoch` the attester saw the subject online at
    /// that IP.
    pub seen_epochs: u32,
}

impl SignedBody for AttestationBody {
    const KIND: MessageKind = MessageKind::Attestation;
    fn signer(&self) -> &PublicKey {
        &self.attester
    }
    fn version(&self) -> u8 {
        self.version
    }
}

/// A signed uptime attestation.
pub type UptimeAttestation = Signed<AttestationBody>;

/// The most attestations a presence announcement carries.
pub const MAX_PRESENCE_ATTESTATIONS: usize = 64;
/// The most attestations a signal carries about its signer.
pub const MAX_SIGNAL_ATTESTATIONS: usize = 16;

/// A node's periodic announcement, carrying the latest attestations others made about it so
/// that every node knows the qualified population.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceBody {
    /// Protocol version, 1.
    pub version: u8,
    /// The announcing node.
    pub node: PublicKey,
    /// The epoch it announces in.
    pub epoch: u64,
    /// Attestations whose subject is `node`.
    pub attestations: BoundedVec<UptimeAttestation, MAX_PRESENCE_ATTESTATIONS>,
}

impl SignedBody for PresenceBody {
    const KIND: MessageKind = MessageKind::Presence;
    fn signer(&self) -> &PublicKey {
        &self.node
    }
    fn version(&self) -> u8 {
        self.version
    }
}

/// A signed presence announcement.
pub type Presence = Signed<PresenceBody>;

/// What a signal says about a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Choice {
    /// In favour.
    Support,
    /// Against, without asking for an override.
    Oppose,
    /// Against, counted toward the override threshold.
    Override,
    /// Withdraws an earlier signal.
    Abstain,
}

impl Choice {
    /// Every choice, in a fixed order (the order tallies use).
    pub const ALL: [Choice; 4] = [
        Choice::Support,
        Choice::Oppose,
        Choice::Override,
        Choice::Abstain,
    ];

    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Choice::Support => "support",
            Choice::Oppose => "oppose",
            Choice::Override => "override",
            Choice::Abstain => "abstain",
        }
    }

    /// Position in [`Choice::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Choice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Choice::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                format!("unknown choice {s:?}: use support, oppose, override or abstain")
            })
    }
}

/// A node's signal on a proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalBody {
    /// Protocol version, 1.
    pub version: u8,
    /// The proposal's id.
    pub proposal: Hash32,
    /// What the signer says.
    pub choice: Choice,
    /// Per signer and proposal; the highest wins, a lower or equal one is a replay.
    pub sequence: u64,
    /// When it was cast, in Unix seconds.
    pub time: u64,
    /// The signing node.
    pub signer: PublicKey,
    /// Recent attestations about the signer, so a receiver can qualify it at once.
    pub attestations: BoundedVec<UptimeAttestation, MAX_SIGNAL_ATTESTATIONS>,
}

impl SignedBody for SignalBody {
    const KIND: MessageKind = MessageKind::Signal;
    fn signer(&self) -> &PublicKey {
        &self.signer
    }
    fn version(&self) -> u8 {
        self.version
    }
}

/// A signed signal.
pub type Signal = Signed<SignalBody>;

/// A time-locked change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalBody {
    /// Protocol version, 1.
    pub version: u8,
    /// The governance tier (1 to 5), which sets the signature threshold, the shortest lock
    /// and the override threshold.
    pub tier: u8,
    /// A one-line title.
    pub title: BoundedString<200>,
    /// What the change is: a repository and commit, or a pull request.
    pub reference: BoundedString<400>,
    /// When the lock starts, Unix seconds.
    pub lock_start: u64,
    /// When the lock ends, Unix seconds.
    pub lock_end: u64,
}

impl MultiSignedBody for ProposalBody {
    const KIND: MessageKind = MessageKind::Proposal;
    fn version(&self) -> u8 {
        self.version
    }
}

/// A proposal with its maintainer signatures.
pub type Proposal = MultiSigned<ProposalBody>;

/// Which kind of software a release is, which sets its signature threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseClass {
    /// Consensus binaries.
    Consensus,
    /// Protocol software.
    Protocol,
    /// Applications.
    Application,
}

impl ReleaseClass {
    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            ReleaseClass::Consensus => "consensus",
            ReleaseClass::Protocol => "protocol",
            ReleaseClass::Application => "application",
        }
    }
}

impl FromStr for ReleaseClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "consensus" => Ok(ReleaseClass::Consensus),
            "protocol" => Ok(ReleaseClass::Protocol),
            "application" => Ok(ReleaseClass::Application),
            _ => Err(format!(
                "unknown release class {s:?}: use consensus, protocol or application"
            )),
        }
    }
}

/// A release version: one to four dot-separated numbers without leading zeros ("1.2.3"),
/// ordered numerically component by component.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReleaseVersion(Vec<u32>);

impl ReleaseVersion {
    /// The numeric components.
    pub fn components(&self) -> &[u32] {
        &self.0
    }
}

impl Ord for ReleaseVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        // Missing components count as zero, so "1.2" and "1.2.0" are the same version and
        // neither may follow the other.
        let len = self.0.len().max(other.0.len());
        (0..len)
            .map(|i| {
                self.0
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .cmp(&other.0.get(i).copied().unwrap_or(0))
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for ReleaseVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ReleaseVersion {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

impl FromStr for ReleaseVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("invalid version {s:?}: use one to four dot-separated numbers, like 1.2.3");
        let parts: Vec<&str> = s.split('.').collect();
        if parts.is_empty() || parts.len() > 4 {
            return Err(bad());
        }
        let mut components = Vec::with_capacity(parts.len());
        for part in parts {
            let canonical = !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_digit())
                && (part == "0" || !part.starts_with('0'));
            if !canonical {
                return Err(bad());
            }
            components.push(part.parse().map_err(|_| bad())?);
        }
        Ok(ReleaseVersion(components))
    }
}

impl Serialize for ReleaseVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ReleaseVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = BoundedString::<48>::deserialize(d)?;
        s.as_str().parse().map_err(serde::de::Error::custom)
    }
}

/// One file of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// File name, without directories.
    pub name: BoundedString<128>,
    /// SHA-256 of the file.
    pub sha256: Hash32,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the artifact's chunk list (see [`crate::artifact`]), so that a node
    /// fetching it from untrusted peers can check every chunk as it arrives.
    pub chunk_list: Hash32,
}

/// The most artifacts one release may list.
pub const MAX_ARTIFACTS: usize = 64;

/// What a release is: the manifest that maintainers sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseManifest {
    /// Protocol version, 1.
    pub version: u8,
    /// The release channel ("stable", "beta", ...); versions increase per channel.
    pub channel: BoundedString<64>,
    /// The release's version.
    pub release: ReleaseVersion,
    /// The kind of software, which sets the signature threshold.
    pub class: ReleaseClass,
    /// When the manifest was made, Unix seconds.
    pub created: u64,
    /// After this time the manifest is stale and refused, Unix seconds.
    pub expires: u64,
    /// The files of the release.
    pub artifacts: BoundedVec<Artifact, MAX_ARTIFACTS>,
    /// The commit the release was built from.
    pub source_commit: BoundedString<128>,
    /// Hash of the build description (reproducible-build manifest), if any.
    pub build_hash: Option<Hash32>,
    /// Hash of the network spec the release was built for, if any.
    pub spec_hash: Option<Hash32>,
    /// Hash of the test results, if any.
    pub test_results_hash: Option<Hash32>,
    /// An OpenTimestamps proof, carried as opaque bytes.
    pub ots_proof: Option<BoundedBytes<16384>>,
}

impl MultiSignedBody for ReleaseManifest {
    const KIND: MessageKind = MessageKind::Release;
    fn version(&self) -> u8 {
        self.version
    }
}

/// A release manifest with its maintainer signatures.
pub type ReleaseBundle = MultiSigned<ReleaseManifest>;

/// Any message, for tools that read a file without knowing its kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "message", rename_all = "lowercase")]
pub enum AnyMessage {
    /// An uptime attestation.
    Attestation(UptimeAttestation),
    /// A presence announcement.
    Presence(Presence),
    /// A signal.
    Signal(Signal),
    /// A proposal.
    Proposal(Proposal),
    /// A release bundle.
    Release(ReleaseBundle),
    /// Equivocation evidence.
    Evidence(crate::evidence::Equivocation),
}

impl AnyMessage {
    /// Decodes bytes as whichever kind of message they are. Field names differ between
    /// kinds and decoding is strict, so at most one kind can match.
    pub fn decode(bytes: &[u8]) -> Result<AnyMessage, DecodeError> {
        let mut errors = Vec::new();
        macro_rules! attempt {
            ($variant:ident, $ty:ty) => {
                match <$ty>::decode(bytes) {
                    Ok(m) => return Ok(AnyMessage::$variant(m)),
                    Err(e @ DecodeError::UnknownVersion { .. }) => return Err(e),
                    Err(e) => errors.push(e),
                }
            };
        }
        attempt!(Signal, Signal);
        attempt!(Proposal, Proposal);
        attempt!(Release, ReleaseBundle);
        attempt!(Presence, Presence);
        attempt!(Attestation, UptimeAttestation);
        attempt!(Evidence, crate::evidence::Equivocation);
        let largest = MessageKind::ALL
            .iter()
            .map(|k| k.max_bytes())
            .max()
            .unwrap_or(0);
        if bytes.len() > largest {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                max: largest,
            });
        }
        if errors
            .iter()
            .any(|e| matches!(e, DecodeError::NonCanonical))
        {
            return Err(DecodeError::NonCanonical);
        }
        Err(DecodeError::Malformed(
            "not a commons-signal message of any kind (signal, proposal, release, presence, attestation, evidence)"
                .into(),
        ))
    }

    /// The kind of message.
    pub fn kind(&self) -> MessageKind {
        match self {
            AnyMessage::Attestation(_) => MessageKind::Attestation,
            AnyMessage::Presence(_) => MessageKind::Presence,
            AnyMessage::Signal(_) => MessageKind::Signal,
            AnyMessage::Proposal(_) => MessageKind::Proposal,
            AnyMessage::Release(_) => MessageKind::Release,
            AnyMessage::Evidence(_) => MessageKind::Evidence,
        }
    }
}
