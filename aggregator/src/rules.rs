//! Validity rules for maintainer-signed messages: proposals and release bundles.
//!
//! Every signer counts once toward a threshold, however many signatures it made, and only
//! keys that the network spec lists for the purpose count. Each signature gets a verdict, so
//! tools can tell a maintainer which signatures counted and why the others did not.

use std::collections::BTreeSet;
use std::fmt;

use commons_signaling::artifact::ArtifactDigest;
use commons_signaling::{
    Hash32, MaintainerSignature, NetworkSpec, Proposal, PublicKey, ReleaseBundle, ReleaseVersion,
};
use serde::Serialize;

/// What became of one signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureFate {
    /// Valid, by an allowed key, the first from that key: counted.
    Counted,
    /// A second signature by a key that already counted.
    DuplicateSigner,
    /// The key is not among those allowed to sign this message.
    UnknownKey,
    /// The signature does not verify for this message on this network.
    BadSignature,
}

impl fmt::Display for SignatureFate {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            SignatureFate::Counted => "counted",
            SignatureFate::DuplicateSigner => "not counted: this signer already counted",
            SignatureFate::UnknownKey => "not counted: key is not an authorised signer",
            SignatureFate::BadSignature => "not counted: signature does not verify",
        })
    }
}

/// The verdict on each signature and whether they reach the threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThresholdReport {
    /// The message id the signatures must cover.
    pub id: Hash32,
    /// Each signature, in message order, with its fate.
    pub signatures: Vec<(PublicKey, SignatureFate)>,
    /// How many distinct authorised signers counted.
    pub counted: usize,
    /// How many are needed.
    pub required: usize,
}

impl ThresholdReport {
    /// Whether enough distinct authorised signers signed.
    pub fn is_met(&self) -> bool {
        self.required > 0 && self.counted >= self.required
    }
}

/// Checks every signature over `id` against the `allowed` keys and the threshold. A signer is
/// counted at its first valid signature; an invalid one does not use up its place.
pub fn check_threshold(
    id: Hash32,
    signatures: &[MaintainerSignature],
    allowed: &[PublicKey],
    required: usize,
) -> ThresholdReport {
    let allowed: BTreeSet<&PublicKey> = allowed.iter().collect();
    let mut counted_signers = BTreeSet::new();
    let verdicts = signatures
        .iter()
        .map(|s| {
            let fate = if !allowed.contains(&s.signer) {
                SignatureFate::UnknownKey
            } else if counted_signers.contains(&s.signer) {
                SignatureFate::DuplicateSigner
            } else if !s.verify(&id) {
                SignatureFate::BadSignature
            } else {
                counted_signers.insert(s.signer);
                SignatureFate::Counted
            };
            (s.signer, fate)
        })
        .collect();
    ThresholdReport {
        id,
        signatures: verdicts,
        counted: counted_signers.len(),
        required,
    }
}

/// Why a proposal is not valid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProposalError {
    /// The network has no such tier.
    #[error("tier {0} does not exist on this network")]
    UnknownTier(u8),
    /// The lock ends before it starts.
    #[error("lock ends ({end}) before it starts ({start})")]
    LockInverted {
        /// Lock start.
        start: u64,
        /// Lock end.
        end: u64,
    },
    /// The lock is shorter than the tier allows.
    #[error("lock of {actual} s is shorter than the {min} s that tier {tier} requires")]
    LockTooShort {
        /// The tier.
        tier: u8,
        /// The proposal's lock length.
        actual: u64,
        /// The tier's minimum.
        min: u64,
    },
    /// Not enough maintainers signed.
    #[error("{} of {} required maintainer signatures", .0.counted, .0.required)]
    BelowThreshold(ThresholdReport),
}

/// Checks a proposal against the spec: tier, lock length, and the tier's maintainer threshold.
/// On success returns the signature report (which may list signatures that did not count).
pub fn verify_proposal(
    proposal: &Proposal,
    spec: &NetworkSpec,
    network_id: &Hash32,
) -> Result<ThresholdReport, ProposalError> {
    let body = &proposal.body;
    let tier = spec
        .tier(body.tier)
        .ok_or(ProposalError::UnknownTier(body.tier))?;
    if body.lock_end < body.lock_start {
        return Err(ProposalError::LockInverted {
            start: body.lock_start,
            end: body.lock_end,
        });
    }
    let lock = body.lock_end - body.lock_start;
    if lock < tier.min_lock_secs {
        return Err(ProposalError::LockTooShort {
            tier: body.tier,
            actual: lock,
            min: tier.min_lock_secs,
        });
    }
    let report = check_threshold(
        proposal.id(network_id),
        &proposal.signatures,
        &spec.maintainers,
        tier.signatures_required as usize,
    );
    if report.is_met() {
        Ok(report)
    } else {
        Err(ProposalError::BelowThreshold(report))
    }
}

/// The most bytes all artifacts of one release may add up to (an endless-data defence).
pub const MAX_RELEASE_BYTES: u64 = 16 * 1024 * 1024 * 1024;

/// Why a release bundle is not valid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReleaseError {
    /// The network has no rules for the bundle's class.
    #[error("release class {0} is not defined on this network")]
    UnknownClass(String),
    /// Not enough authorised signers.
    #[error("{} of {} required release signatures", .0.counted, .0.required)]
    BelowThreshold(ThresholdReport),
    /// Not newer than the newest known release of the channel (a rollback or replay).
    #[error("version {offered} is not newer than {newest}, the newest known on channel {channel}")]
    Rollback {
        /// The channel.
        channel: String,
        /// The bundle's version.
        offered: ReleaseVersion,
        /// The newest known version.
        newest: ReleaseVersion,
    },
    /// Past its expiry (a freeze attack replays a stale bundle).
    #[error("expired at {expires}, now is {now}")]
    Expired {
        /// Expiry time.
        expires: u64,
        /// The time it was checked at.
        now: u64,
    },
    /// Expires before it was created.
    #[error("expires ({expires}) before it was created ({created})")]
    ExpiryBeforeCreation {
        /// Creation time.
        created: u64,
        /// Expiry time.
        expires: u64,
    },
    /// Lists no artifacts, or the same name twice, or an unsafe name.
    #[error("artifact list: {0}")]
    BadArtifacts(String),
    /// The artifacts add up to more than a node will fetch.
    #[error("artifacts add up to {0} bytes, more than the {MAX_RELEASE_BYTES}-byte limit")]
    TooLarge(u64),
}

/// Checks a release bundle as a node does: class threshold with each signer once, version
/// strictly above `newest_on_channel`, not expired at `now`, and a sane artifact list. The
/// artifacts' bytes are checked separately, with [`check_artifact`], as they arrive.
pub fn verify_release(
    bundle: &ReleaseBundle,
    spec: &NetworkSpec,
    network_id: &Hash32,
    newest_on_channel: Option<&ReleaseVersion>,
    now: u64,
) -> Result<ThresholdReport, ReleaseError> {
    let manifest = &bundle.body;
    let class = spec
        .release_class(manifest.class)
        .ok_or_else(|| ReleaseError::UnknownClass(manifest.class.name().to_string()))?;
    if manifest.expires < manifest.created {
        return Err(ReleaseError::ExpiryBeforeCreation {
            created: manifest.created,
            expires: manifest.expires,
        });
    }
    if now >= manifest.expires {
        return Err(ReleaseError::Expired {
            expires: manifest.expires,
            now,
        });
    }
    if manifest.artifacts.is_empty() {
        return Err(ReleaseError::BadArtifacts("no artifacts".into()));
    }
    let mut names = BTreeSet::new();
    let mut total: u64 = 0;
    for artifact in manifest.artifacts.iter() {
        let name = artifact.name.as_str();
        if !is_safe_file_name(name) {
            return Err(ReleaseError::BadArtifacts(format!(
                "unsafe file name {name:?}"
            )));
        }
        if !names.insert(name) {
            return Err(ReleaseError::BadArtifacts(format!(
                "{name:?} is listed twice"
            )));
        }
        total = total.saturating_add(artifact.size);
    }
    if total > MAX_RELEASE_BYTES {
        return Err(ReleaseError::TooLarge(total));
    }
    if let Some(newest) = newest_on_channel
        && manifest.release <= *newest
    {
        return Err(ReleaseError::Rollback {
            channel: manifest.channel.to_string(),
            offered: manifest.release.clone(),
            newest: newest.clone(),
        });
    }
    let report = check_threshold(
        bundle.id(network_id),
        &bundle.signatures,
        &class.signers,
        class.threshold as usize,
    );
    if report.is_met() {
        Ok(report)
    } else {
        Err(ReleaseError::BelowThreshold(report))
    }
}

/// A file name a node may write under its data dir: no directories, no hidden files, no
/// control characters.
pub fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

/// Why an artifact's bytes do not match the manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactError {
    /// Wrong size.
    #[error("{name}: {actual} bytes, the manifest says {expected}")]
    Size {
        /// The artifact.
        name: String,
        /// Size found.
        actual: u64,
        /// Size in the manifest.
        expected: u64,
    },
    /// Wrong hash.
    #[error("{name}: SHA-256 {actual}, the manifest says {expected}")]
    Hash {
        /// The artifact.
        name: String,
        /// Hash found.
        actual: Hash32,
        /// Hash in the manifest.
        expected: Hash32,
    },
    /// The whole file matches but its chunk list does not: the manifest was made with
    /// another chunking, and peers could not check its chunks.
    #[error("{name}: chunk list hash {actual}, the manifest says {expected}")]
    ChunkList {
        /// The artifact.
        name: String,
        /// Hash found.
        actual: Hash32,
        /// Hash in the manifest.
        expected: Hash32,
    },
}

/// Compares an artifact's measured digest with its manifest entry: size, whole-file SHA-256
/// and chunk list.
pub fn check_artifact(
    artifact: &commons_signaling::Artifact,
    digest: &ArtifactDigest,
) -> Result<(), ArtifactError> {
    let name = artifact.name.to_string();
    if digest.size != artifact.size {
        return Err(ArtifactError::Size {
            name,
            actual: digest.size,
            expected: artifact.size,
        });
    }
    if digest.sha256 != artifact.sha256 {
        return Err(ArtifactError::Hash {
            name,
            actual: digest.sha256,
            expected: artifact.sha256,
        });
    }
    let chunk_list = digest.chunk_list_hash();
    if chunk_list != artifact.chunk_list {
        return Err(ArtifactError::ChunkList {
            name,
            actual: chunk_list,
            expected: artifact.chunk_list,
        });
    }
    Ok(())
}
