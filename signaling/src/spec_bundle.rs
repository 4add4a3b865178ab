//! Spec bundles: every version of a network's spec, each with the maintainer signatures that
//! establish it, in one file a node can check at start.
//!
//! A node trusts one thing, its **anchor**: the spec id of its network's first spec (pinned by
//! the built-in networks, or given by the operator). From there the bundle is a chain, like
//! TUF's root rotation: version 1 is signed by the threshold of its own maintainers, and each
//! version N+1 by the threshold of version N, which it names as its previous version and may
//! differ from only in keys and thresholds ([`NetworkSpec::check_successor`]). A compromised
//! key therefore cannot rotate anything alone, and a node that holds only its anchor can check
//! any later version it is handed.
//!
//! The file is TOML:
//!
//! ```toml
//! format = "commons-signal spec bundle v1"
//!
//! [[versions]]
//! [versions.spec]          # version 1: a whole spec, as in a spec file
//! name = "example"
//! # ...
//! [[versions.signatures]]  # detached signatures over its spec id
//! signer = "<x-only key, hex>"
//! signature = "<BIP340 signature, hex>"
//!
//! [[versions]]             # version 2, with `succession` set, signed by version 1's threshold
//! # ...
//! ```
//!
//! Holding version N+1 in a bundle does not put it in force: a node switches to it only when
//! its rotation proposal activates (PROTOCOL.md, "Key rotation").

use serde::{Deserialize, Serialize};

use crate::messages::MaintainerSignature;
use crate::spec::{NetworkSpec, SpecError, SuccessionError};
use crate::spec_signatures::{SpecSignatureError, SpecSignatureFate, verify_spec_signatures};
use crate::types::Hash32;

/// The `format` line of a spec bundle file.
pub const BUNDLE_FORMAT: &str = "commons-signal spec bundle v1";

/// The most versions a bundle may hold (an endless-data defence; a network rotating keys
/// every month would take 80 years to reach it).
pub const MAX_BUNDLE_VERSIONS: usize = 1000;

/// One version of a spec with its maintainers' signatures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedSpec {
    /// The spec.
    pub spec: NetworkSpec,
    /// Detached signatures over its spec id, by maintainers of the version before it (of
    /// itself, for version 1).
    #[serde(default)]
    pub signatures: Vec<MaintainerSignature>,
}

/// A spec bundle file: every version of a network's spec from the first, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecBundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// Version 1 first, each later one replacing the one before it.
    pub versions: Vec<SignedSpec>,
}

/// Why a bundle does not establish its specs.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The file is not a readable bundle.
    #[error("{path}: {message}")]
    Parse {
        /// The bundle file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// A version breaks a rule of every spec.
    #[error("version {version}: {source}")]
    Invalid {
        /// The version (its place in the bundle, from 1).
        version: usize,
        /// The rule broken.
        source: SpecError,
    },
    /// The first version is not the spec the node trusts.
    #[error(
        "version 1 has spec id {found}, but this node trusts only the network whose first spec \
         has id {anchor} ({why})"
    )]
    WrongAnchor {
        /// The first version's spec id.
        found: Hash32,
        /// The anchor.
        anchor: Hash32,
        /// Where the anchor came from.
        why: String,
    },
    /// A version does not follow the one before it.
    #[error("version {version} does not follow version {}: {source}", .version - 1)]
    Succession {
        /// The offending version.
        version: usize,
        /// How it breaks the chain.
        source: SuccessionError,
    },
    /// A version is not signed by the threshold of its authority.
    #[error("version {version} (spec id {spec_id}) is not signed by the threshold of version {authority}: {source}{}", not_counted(.fates))]
    Signatures {
        /// The offending version.
        version: usize,
        /// The version whose maintainers had to sign.
        authority: usize,
        /// The version's spec id, what the signatures had to be over.
        spec_id: Hash32,
        /// The signatures that did not count, with the reason.
        fates: Vec<(crate::PublicKey, SpecSignatureFate)>,
        /// The shortfall.
        source: Box<SpecSignatureError>,
    },
}

fn not_counted(fates: &[(crate::PublicKey, SpecSignatureFate)]) -> String {
    fates
        .iter()
        .map(|(key, fate)| format!("; signature by {key} {fate}"))
        .collect()
}

impl SpecBundle {
    /// A bundle of one version 1 spec and its signatures.
    pub fn new(genesis: SignedSpec) -> Self {
        SpecBundle {
            format: BUNDLE_FORMAT.to_string(),
            versions: vec![genesis],
        }
    }

    /// Whether a file's text is a bundle rather than a plain spec: its `format` line says so.
    pub fn is_bundle_text(text: &str) -> bool {
        text.lines()
            .map(str::trim)
            .find(|line| !line.is_empty() && !line.starts_with('#'))
            .is_some_and(|line| {
                line.strip_prefix("format")
                    .map(|rest| rest.trim_start().starts_with('='))
                    .unwrap_or(false)
            })
    }

    /// Parses a bundle's TOML text; `origin` names it in errors. Checks the format and the
    /// shape, not the signatures ([`SpecBundle::verify`] does).
    pub fn parse(text: &str, origin: &str) -> Result<Self, BundleError> {
        let parse = |message: String| BundleError::Parse {
            path: origin.to_string(),
            message,
        };
        let bundle: SpecBundle = toml::from_str(text).map_err(|e| parse(e.to_string()))?;
        if bundle.format != BUNDLE_FORMAT {
            return Err(parse(format!(
                "format is {:?}, expected {BUNDLE_FORMAT:?}",
                bundle.format
            )));
        }
        if bundle.versions.is_empty() {
            return Err(parse("the bundle holds no version".into()));
        }
        if bundle.versions.len() > MAX_BUNDLE_VERSIONS {
            return Err(parse(format!(
                "the bundle holds {} versions, more than {MAX_BUNDLE_VERSIONS}",
                bundle.versions.len()
            )));
        }
        Ok(bundle)
    }

    /// Reads a bundle file (see [`SpecBundle::parse`]).
    pub fn load(path: &std::path::Path) -> Result<Self, BundleError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| BundleError::Parse {
            path: origin.clone(),
            message: e.to_string(),
        })?;
        Self::parse(&text, &origin)
    }

    /// The bundle as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a bundle of valid specs serializes to TOML")
    }

    /// The first version's spec id.
    pub fn genesis_id(&self) -> Hash32 {
        self.versions[0].spec.spec_id()
    }

    /// Checks the whole chain against `anchor`, the spec id of the first spec this node
    /// trusts (`why` says where it came from, for the error): version 1 must be that spec,
    /// signed by its own threshold; each later version must follow the one before it and be
    /// signed by that one's threshold. Returns the specs, version 1 first.
    pub fn verify(&self, anchor: &Hash32, why: &str) -> Result<Vec<NetworkSpec>, BundleError> {
        let mut specs: Vec<NetworkSpec> = Vec::with_capacity(self.versions.len());
        for (index, signed) in self.versions.iter().enumerate() {
            let version = index + 1;
            let spec = &signed.spec;
            spec.validate(&format!("spec {:?}", spec.name))
                .map_err(|source| BundleError::Invalid { version, source })?;
            let authority = match specs.last() {
                None => {
                    let found = spec.spec_id();
                    if spec.succession.is_some() || found != *anchor {
                        return Err(BundleError::WrongAnchor {
                            found,
                            anchor: *anchor,
                            why: why.to_string(),
                        });
                    }
                    spec
                }
                Some(previous) => {
                    previous
                        .check_successor(spec)
                        .map_err(|source| BundleError::Succession { version, source })?;
                    previous
                }
            };
            verify_spec_signatures(spec, authority, &signed.signatures).map_err(|source| {
                let fates = match &source {
                    SpecSignatureError::BelowThreshold(report) => report
                        .signatures
                        .iter()
                        .filter(|(_, fate)| *fate != SpecSignatureFate::Counted)
                        .cloned()
                        .collect(),
                    SpecSignatureError::NoMaintainers => Vec::new(),
                };
                BundleError::Signatures {
                    version,
                    authority: version.saturating_sub(1).max(1),
                    spec_id: spec.spec_id(),
                    fates,
                    source: Box::new(source),
                }
            })?;
            specs.push(spec.clone());
        }
        Ok(specs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;
    use crate::spec_signatures::sign_spec;

    fn keys(tag: &str, n: usize) -> Vec<SecretKey> {
        (0..n)
            .map(|i| SecretKey::from_seed(&format!("bundle {tag} {i}")))
            .collect()
    }

    /// Regtest with three maintainers and every threshold 2.
    fn genesis(keys: &[SecretKey]) -> NetworkSpec {
        let mut spec = NetworkSpec::regtest();
        spec.name = "rotating".into();
        spec.maintainers = keys.iter().map(SecretKey::public_key).collect();
        for tier in &mut spec.tiers {
            tier.signatures_required = 2;
        }
        for class in &mut spec.release_classes {
            class.signers = spec.maintainers.clone();
            class.threshold = 2;
        }
        spec
    }

    fn signed(spec: &NetworkSpec, by: &[SecretKey]) -> SignedSpec {
        SignedSpec {
            spec: spec.clone(),
            signatures: by.iter().map(|k| sign_spec(spec, k)).collect(),
        }
    }

    /// Version 2 of `v1` with maintainer `index` replaced by `by`.
    fn rotated(v1: &NetworkSpec, index: usize, by: &SecretKey) -> NetworkSpec {
        let mut v2 = v1.successor_draft();
        let old = v2.maintainers[index];
        v2.maintainers[index] = by.public_key();
        for class in &mut v2.release_classes {
            for signer in &mut class.signers {
                if *signer == old {
                    *signer = by.public_key();
                }
            }
        }
        v2
    }

    #[test]
    fn a_chain_signed_by_each_previous_threshold_verifies_and_keeps_the_network_id() {
        let old = keys("old", 3);
        let new = SecretKey::from_seed("bundle new");
        let v1 = genesis(&old);
        let v2 = rotated(&v1, 2, &new);
        let mut bundle = SpecBundle::new(signed(&v1, &old[..2]));
        bundle.versions.push(signed(&v2, &old[1..]));
        let text = bundle.to_toml();
        assert!(SpecBundle::is_bundle_text(&text));
        assert!(!SpecBundle::is_bundle_text(&v1.to_toml()));
        let back = SpecBundle::parse(&text, "test").unwrap();
        assert_eq!(back, bundle);
        let specs = back.verify(&v1.spec_id(), "test").unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1].network_id(), v1.network_id());
        assert_ne!(specs[1].spec_id(), v1.spec_id());
        assert_eq!(specs[1].version(), 2);
    }

    #[test]
    fn a_version_signed_by_its_own_new_keys_alone_does_not_verify() {
        let old = keys("old", 3);
        let new = SecretKey::from_seed("bundle new");
        let v1 = genesis(&old);
        let v2 = rotated(&v1, 2, &new);
        let mut bundle = SpecBundle::new(signed(&v1, &old));
        // One old key and the new one: the new key is not a maintainer of version 1.
        bundle
            .versions
            .push(signed(&v2, &[old[2].clone(), new.clone()]));
        let err = bundle.verify(&v1.spec_id(), "test").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("version 2 (spec id ")
                && text.contains("1 of 2 required maintainer signatures")
                && text.contains(&format!(
                    "signature by {} not counted: key is not a maintainer",
                    new.public_key()
                )),
            "{text}"
        );
    }

    #[test]
    fn a_tampered_version_or_another_anchor_is_refused() {
        let old = keys("old", 3);
        let v1 = genesis(&old);
        let mut v2 = rotated(&v1, 0, &SecretKey::from_seed("bundle new"));
        let mut bundle = SpecBundle::new(signed(&v1, &old));
        bundle.versions.push(signed(&v2, &old));
        // Someone lowers a threshold after the signatures were made.
        v2.tiers[0].signatures_required = 1;
        bundle.versions[1].spec = v2;
        let err = bundle.verify(&v1.spec_id(), "test").unwrap_err();
        assert!(
            matches!(err, BundleError::Signatures { version: 2, .. }),
            "{err}"
        );

        let other = Hash32([7; 32]);
        let err = bundle.verify(&other, "--spec-anchor").unwrap_err();
        assert!(matches!(err, BundleError::WrongAnchor { .. }), "{err}");
        assert!(err.to_string().ends_with("(--spec-anchor)"), "{err}");
    }

    #[test]
    fn a_rotation_may_change_keys_and_thresholds_only() {
        let old = keys("old", 3);
        let v1 = genesis(&old);
        let mut v2 = v1.successor_draft();
        v2.tiers[0].min_lock_secs = 1;
        assert_eq!(v1.check_successor(&v2), Err(SuccessionError::RulesChanged));
        let mut skip = v1.successor_draft().successor_draft();
        skip.tiers = v1.tiers.clone();
        assert!(matches!(
            v1.check_successor(&skip),
            Err(SuccessionError::WrongLink { version: 2, .. })
        ));
        let mut v2 = v1.successor_draft();
        v2.tiers[4].signatures_required = 3;
        assert_eq!(v1.check_successor(&v2), Ok(()));
        assert!(!v1.is_revocation_only(&v2));
    }

    #[test]
    fn removing_a_key_is_a_revocation_and_adding_one_is_not() {
        let old = keys("old", 3);
        let v1 = genesis(&old);
        let mut revoked = v1.successor_draft();
        let gone = revoked.maintainers.remove(1);
        for class in &mut revoked.release_classes {
            class.signers.retain(|k| *k != gone);
        }
        assert_eq!(v1.check_successor(&revoked), Ok(()));
        assert!(v1.is_revocation_only(&revoked));
        let replaced = rotated(&v1, 1, &SecretKey::from_seed("bundle new"));
        assert!(!v1.is_revocation_only(&replaced));
    }
}
