//! Maintainer signatures over a network spec: where a spec came from.
//!
//! A spec is what every signature of a network is bound to, so a node must be able to tell
//! that the spec it was handed is the one its maintainers agreed on, not one a download site
//! or a helpful stranger edited. Maintainers sign the spec's **network id** (detached, one
//! [`MaintainerSignature`] each, the same shape as a detached release signature), under a tag
//! of its own so that no proposal or release signature can ever pass for a spec signature.
//!
//! The network id leaves out the bootstrap peers and the measurers' addresses, so signatures
//! over it survive those being changed, and say nothing about them: those lists only help a
//! node find peers, whose identities the network id does bind.
//!
//! Who must sign is decided by an **authority** spec: the spec itself for a network's first
//! spec (like TUF's root, it names its own signers), or the spec it replaces when keys are
//! rotated. The threshold is the authority's strictest tier threshold: a change of rules weighs
//! at least as much as any proposal under them.
//!
//! Signatures are over the **spec id** ([`NetworkSpec::spec_id`]), which for a network's first
//! spec is its network id and for a later version also covers the version and the spec it
//! replaces, so a signature over one version never passes for another.

use std::collections::BTreeSet;
use std::fmt;

use crate::keys::{PublicKey, SecretKey, tagged_hash};
use crate::messages::MaintainerSignature;
use crate::spec::NetworkSpec;
use crate::types::Hash32;

/// The tag of the digest maintainers sign for a spec.
pub const SPEC_SIGNATURE_TAG: &str = "commons-signal/v1/spec-signature";

/// The digest a maintainer signs to vouch for the spec whose spec id this is.
pub fn spec_signing_digest(spec_id: &Hash32) -> Hash32 {
    tagged_hash(SPEC_SIGNATURE_TAG, &[&spec_id.0])
}

/// How many distinct maintainers of `authority` must sign a spec: the largest
/// `signatures_required` of its tiers (at least 1).
pub fn spec_threshold(authority: &NetworkSpec) -> usize {
    authority
        .tiers
        .iter()
        .map(|t| t.signatures_required as usize)
        .max()
        .unwrap_or(1)
        .max(1)
}

/// Signs `spec` with `key`, as one maintainer's detached signature.
pub fn sign_spec(spec: &NetworkSpec, key: &SecretKey) -> MaintainerSignature {
    let digest = spec_signing_digest(&spec.spec_id());
    MaintainerSignature {
        signer: key.public_key(),
        signature: key.sign(&digest),
    }
}

/// What became of one signature over a spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecSignatureFate {
    /// A valid signature by a maintainer of the authority, the first from that key.
    Counted,
    /// Another signature by a maintainer that already counted.
    DuplicateSigner,
    /// The key is not a maintainer of the authority.
    UnknownKey,
    /// The signature is not over this spec (another spec, or damaged).
    BadSignature,
}

impl fmt::Display for SpecSignatureFate {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            SpecSignatureFate::Counted => "counted",
            SpecSignatureFate::DuplicateSigner => "not counted: this signer already counted",
            SpecSignatureFate::UnknownKey => "not counted: key is not a maintainer",
            SpecSignatureFate::BadSignature => "not counted: not a signature over this spec",
        })
    }
}

/// Every signature's fate and the count against the threshold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecSignatureReport {
    /// The spec id of the spec checked.
    pub spec_id: Hash32,
    /// The digest the signatures had to be over.
    pub digest: Hash32,
    /// Each signature's signer and fate, in the order given.
    pub signatures: Vec<(PublicKey, SpecSignatureFate)>,
    /// Distinct maintainers with a good signature.
    pub counted: usize,
    /// How many the authority requires.
    pub required: usize,
}

impl SpecSignatureReport {
    /// Whether enough maintainers signed.
    pub fn is_met(&self) -> bool {
        self.counted >= self.required
    }
}

/// Why a spec's signatures do not establish it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecSignatureError {
    /// The authority lists no maintainers, so nobody can vouch for anything under it.
    #[error("the signing spec lists no maintainers, so no signature can count")]
    NoMaintainers,
    /// Fewer distinct maintainers signed than required.
    #[error("{} of {} required maintainer signatures over the spec", .0.counted, .0.required)]
    BelowThreshold(SpecSignatureReport),
}

/// Checks every signature over `spec` against the maintainers of `authority`, each signer
/// counted at its first good signature, whether or not the threshold is met.
pub fn check_spec_signatures(
    spec: &NetworkSpec,
    authority: &NetworkSpec,
    signatures: &[MaintainerSignature],
) -> SpecSignatureReport {
    let spec_id = spec.spec_id();
    let digest = spec_signing_digest(&spec_id);
    let maintainers: BTreeSet<&PublicKey> = authority.maintainers.iter().collect();
    let mut counted = BTreeSet::new();
    let fates = signatures
        .iter()
        .map(|s| {
            let fate = if !maintainers.contains(&s.signer) {
                SpecSignatureFate::UnknownKey
            } else if counted.contains(&s.signer) {
                SpecSignatureFate::DuplicateSigner
            } else if !s.verify(&digest) {
                SpecSignatureFate::BadSignature
            } else {
                counted.insert(s.signer);
                SpecSignatureFate::Counted
            };
            (s.signer, fate)
        })
        .collect();
    SpecSignatureReport {
        spec_id,
        digest,
        signatures: fates,
        counted: counted.len(),
        required: spec_threshold(authority),
    }
}

/// Whether `signatures` establish `spec` under `authority`: at least [`spec_threshold`]
/// distinct maintainers of `authority` signed its network id. A node handed a spec file and
/// its signature files calls this with `authority = spec` for a network's first spec, or
/// with the spec it runs now for a replacement.
pub fn verify_spec_signatures(
    spec: &NetworkSpec,
    authority: &NetworkSpec,
    signatures: &[MaintainerSignature],
) -> Result<SpecSignatureReport, SpecSignatureError> {
    if authority.maintainers.is_empty() {
        return Err(SpecSignatureError::NoMaintainers);
    }
    let report = check_spec_signatures(spec, authority, signatures);
    if report.is_met() {
        Ok(report)
    } else {
        Err(SpecSignatureError::BelowThreshold(report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{MessageKind, signing_digest};

    fn keys(n: usize) -> Vec<SecretKey> {
        (0..n)
            .map(|i| SecretKey::from_seed(&format!("spec signer {i}")))
            .collect()
    }

    /// Regtest's parameters with `keys` as its maintainers and thresholds lowered to fit.
    fn spec_of(keys: &[SecretKey]) -> NetworkSpec {
        let mut spec = NetworkSpec::regtest();
        spec.name = "signed".into();
        spec.maintainers = keys.iter().map(SecretKey::public_key).collect();
        for tier in &mut spec.tiers {
            tier.signatures_required = tier.signatures_required.min(keys.len() as u32);
        }
        spec
    }

    #[test]
    fn the_threshold_is_the_strictest_tier() {
        let spec = spec_of(&keys(5));
        assert_eq!(spec_threshold(&spec), 5);
        let spec = spec_of(&keys(4));
        assert_eq!(spec_threshold(&spec), 4);
    }

    #[test]
    fn a_spec_signed_by_the_threshold_verifies_and_one_fewer_does_not() {
        let keys = keys(5);
        let spec = spec_of(&keys);
        let all: Vec<_> = keys.iter().map(|k| sign_spec(&spec, k)).collect();
        let report = verify_spec_signatures(&spec, &spec, &all).unwrap();
        assert_eq!((report.counted, report.required), (5, 5));

        let err = verify_spec_signatures(&spec, &spec, &all[..4]).unwrap_err();
        assert!(matches!(&err, SpecSignatureError::BelowThreshold(r) if r.counted == 4));
        assert_eq!(
            err.to_string(),
            "4 of 5 required maintainer signatures over the spec"
        );
    }

    #[test]
    fn repeats_strangers_and_other_specs_do_not_count() {
        let keys = keys(3);
        let spec = spec_of(&keys);
        let mut other = spec.clone();
        other.name = "other".into();
        let stranger = SecretKey::from_seed("not a maintainer");
        let signatures = vec![
            sign_spec(&spec, &keys[0]),
            sign_spec(&spec, &keys[0]),
            sign_spec(&spec, &stranger),
            sign_spec(&other, &keys[1]),
        ];
        let report = check_spec_signatures(&spec, &spec, &signatures);
        let fates: Vec<_> = report.signatures.iter().map(|(_, f)| *f).collect();
        assert_eq!(
            fates,
            [
                SpecSignatureFate::Counted,
                SpecSignatureFate::DuplicateSigner,
                SpecSignatureFate::UnknownKey,
                SpecSignatureFate::BadSignature,
            ]
        );
        assert_eq!(report.counted, 1);
    }

    #[test]
    fn bootstrap_peers_and_measurer_addresses_are_outside_the_signature() {
        let keys = keys(3);
        let spec = spec_of(&keys);
        let signatures: Vec<_> = keys.iter().map(|k| sign_spec(&spec, k)).collect();
        let mut moved = spec.clone();
        moved.bootstrap.push("/ip4/192.0.2.1/tcp/8733".into());
        moved.measurers[0]
            .addresses
            .push("/ip4/192.0.2.2/tcp/8733".into());
        assert!(verify_spec_signatures(&moved, &spec, &signatures).is_ok());
        let mut changed = spec.clone();
        changed.epoch_secs += 1;
        assert!(verify_spec_signatures(&changed, &spec, &signatures).is_err());
    }

    #[test]
    fn a_replacement_is_signed_by_the_spec_it_replaces() {
        let old_keys = keys(3);
        let old = spec_of(&old_keys);
        let mut new_keys = old_keys.clone();
        new_keys[2] = SecretKey::from_seed("the replacement maintainer");
        let new = spec_of(&new_keys);
        let by_new: Vec<_> = new_keys.iter().map(|k| sign_spec(&new, k)).collect();
        assert!(verify_spec_signatures(&new, &new, &by_new).is_ok());
        // Under the old authority the new key is a stranger: two of three count.
        let err = verify_spec_signatures(&new, &old, &by_new).unwrap_err();
        assert!(matches!(err, SpecSignatureError::BelowThreshold(r) if r.counted == 2));
    }

    #[test]
    fn a_spec_without_maintainers_can_vouch_for_nothing() {
        let spec = NetworkSpec::mainnet();
        assert_eq!(
            verify_spec_signatures(&spec, &spec, &[]),
            Err(SpecSignatureError::NoMaintainers)
        );
    }

    #[test]
    fn no_message_signature_passes_for_a_spec_signature() {
        // A proposal's id over the same bytes is another tagged hash.
        let spec = spec_of(&keys(1));
        let id = spec.spec_id();
        for kind in MessageKind::ALL {
            assert_ne!(signing_digest(kind, &id, &[]), spec_signing_digest(&id));
        }
    }
}
