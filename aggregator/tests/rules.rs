//! The maintainer-signature rules of proposals and release bundles.

mod common;
use std::collections::BTreeSet;

use common::{key, proposal, regtest};
use commons_aggregator::rules::{
    ArtifactError, MAX_RELEASE_BYTES, ProposalError, ReleaseError, SignatureFate, check_artifact,
    is_safe_file_name, verify_proposal, verify_release,
};
use commons_signaling::artifact::ArtifactHasher;
use commons_signaling::spec::regtest_maintainer_key;
use commons_signaling::{
    Artifact, BoundedString, BoundedVec, Hash32, MaintainerSignature, NetworkSpec, ReleaseBundle,
    ReleaseClass, SecretKey,
};

const T: u64 = 1_000;

#[test]
fn a_proposal_with_its_tiers_threshold_is_valid() {
    let spec = regtest();
    let p = proposal(&spec, 1, "routine", T, T + 35, &[0, 1, 2]);
    let report = verify_proposal(&p, &spec, &spec.network_id()).unwrap();
    assert_eq!((report.counted, report.required), (3, 3));
    assert!(report.is_met());
    assert!(
        report
            .signatures
            .iter()
            .all(|(_, f)| *f == SignatureFate::Counted)
    );
}

#[test]
fn a_proposal_under_its_threshold_is_refused() {
    let spec = regtest();
    // Tier 3 needs all five.
    let p = proposal(&spec, 3, "consensus-adjacent", T, T + 450, &[0, 1, 2, 3]);
    match verify_proposal(&p, &spec, &spec.network_id()) {
        Err(ProposalError::BelowThreshold(r)) => assert_eq!((r.counted, r.required), (4, 5)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_signer_counts_once_however_often_it_signs() {
    let spec = regtest();
    let net = spec.network_id();
    let mut p = proposal(&spec, 1, "routine", T, T + 35, &[0, 1]);
    let again = MaintainerSignature {
        signer: regtest_maintainer_key(0).public_key(),
        signature: regtest_maintainer_key(0).sign(&p.id(&net)),
    };
    // add_detached replaces a signer's earlier signature, so build the list by hand.
    let mut sigs = p.signatures.to_vec();
    sigs.push(again);
    p.signatures = BoundedVec::new(sigs).unwrap();
    match verify_proposal(&p, &spec, &net) {
        Err(ProposalError::BelowThreshold(r)) => {
            assert_eq!(r.counted, 2);
            assert_eq!(r.signatures[2].1, SignatureFate::DuplicateSigner);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn signatures_by_unknown_keys_do_not_count() {
    let spec = regtest();
    let net = spec.network_id();
    let mut p = proposal(&spec, 1, "routine", T, T + 35, &[0, 1]);
    p.add_signature(&key("outsider"), &net).unwrap();
    // Regtest key 5 signs releases but is not a proposal maintainer.
    p.add_signature(&regtest_maintainer_key(5), &net).unwrap();
    match verify_proposal(&p, &spec, &net) {
        Err(ProposalError::BelowThreshold(r)) => {
            assert_eq!(r.counted, 2);
            assert_eq!(r.signatures[2].1, SignatureFate::UnknownKey);
            assert_eq!(r.signatures[3].1, SignatureFate::UnknownKey);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_signature_over_another_message_does_not_count() {
    let spec = regtest();
    let net = spec.network_id();
    let mut p = proposal(&spec, 1, "routine", T, T + 35, &[0, 1]);
    let other = proposal(&spec, 1, "something else", T, T + 35, &[]);
    let k2 = regtest_maintainer_key(2);
    p.add_detached(MaintainerSignature {
        signer: k2.public_key(),
        signature: k2.sign(&other.id(&net)),
    })
    .unwrap();
    match verify_proposal(&p, &spec, &net) {
        Err(ProposalError::BelowThreshold(r)) => {
            assert_eq!(r.signatures[2].1, SignatureFate::BadSignature);
        }
        other => panic!("{other:?}"),
    }
    // A bad signature does not use up the signer's place: a good one later still counts.
    p.add_signature(&k2, &net).unwrap();
    assert!(verify_proposal(&p, &spec, &net).is_ok());
}

#[test]
fn signatures_from_another_network_do_not_count() {
    let spec = regtest();
    let mut other_net = regtest();
    other_net.name = "regtest-b".into();
    let p = proposal(&other_net, 1, "routine", T, T + 35, &[0, 1, 2]);
    assert!(matches!(
        verify_proposal(&p, &spec, &spec.network_id()),
        Err(ProposalError::BelowThreshold(_))
    ));
}

#[test]
fn tiers_and_locks_are_checked() {
    let spec = regtest();
    let net = spec.network_id();
    let p = proposal(&spec, 9, "no such tier", T, T + 35, &[0, 1, 2, 3, 4]);
    assert_eq!(
        verify_proposal(&p, &spec, &net).unwrap_err(),
        ProposalError::UnknownTier(9)
    );
    let p = proposal(&spec, 1, "inverted", T + 35, T, &[0, 1, 2]);
    assert_eq!(
        verify_proposal(&p, &spec, &net).unwrap_err(),
        ProposalError::LockInverted {
            start: T + 35,
            end: T
        }
    );
    let p = proposal(&spec, 1, "short", T, T + 34, &[0, 1, 2]);
    assert_eq!(
        verify_proposal(&p, &spec, &net).unwrap_err(),
        ProposalError::LockTooShort {
            tier: 1,
            actual: 34,
            min: 35
        }
    );
    // The emergency tier has no lock.
    let p = proposal(&spec, 4, "emergency", T, T, &[0, 1, 2, 3]);
    assert!(verify_proposal(&p, &spec, &net).is_ok());
}

#[test]
fn mainnet_accepts_no_proposal_before_its_key_ceremony() {
    let spec = NetworkSpec::mainnet();
    let p = proposal(&spec, 1, "routine", T, T + 7 * 86_400, &[0, 1, 2, 3, 4]);
    assert!(matches!(
        verify_proposal(&p, &spec, &spec.network_id()),
        Err(ProposalError::BelowThreshold(_))
    ));
}

fn artifact(name: &str, size: u64) -> Artifact {
    Artifact {
        name: BoundedString::new(name).unwrap(),
        sha256: Hash32([size as u8; 32]),
        size,
        chunk_list: Hash32([size as u8 ^ 0xff; 32]),
    }
}

fn bundle(
    version: &str,
    class: ReleaseClass,
    artifacts: Vec<Artifact>,
    signers: &[usize],
) -> ReleaseBundle {
    let manifest = commons_test_util::release_manifest(version, class, T, T + 1_000, artifacts);
    commons_test_util::sign_release(&regtest().network_id(), manifest, signers.iter().copied())
}

fn check(b: &ReleaseBundle, newest: Option<&str>, now: u64) -> Result<usize, ReleaseError> {
    let spec = regtest();
    let newest = newest.map(|v| v.parse().unwrap());
    verify_release(b, &spec, &spec.network_id(), newest.as_ref(), now).map(|r| r.counted)
}

#[test]
fn releases_need_their_class_threshold() {
    let consensus = bundle(
        "1.2.0",
        ReleaseClass::Consensus,
        vec![artifact("commonsd", 10)],
        &[0, 1, 2, 3, 4, 5],
    );
    assert_eq!(check(&consensus, None, T), Ok(6));
    let short = bundle(
        "1.2.0",
        ReleaseClass::Consensus,
        vec![artifact("commonsd", 10)],
        &[0, 1, 2, 3, 4],
    );
    assert!(
        matches!(check(&short, None, T), Err(ReleaseError::BelowThreshold(r)) if r.counted == 5 && r.required == 6)
    );
    // Key 6 signs consensus releases but not applications (3 of keys 0 to 4).
    let app = bundle(
        "1.0",
        ReleaseClass::Application,
        vec![artifact("tool", 1)],
        &[6, 5, 0, 1],
    );
    assert!(matches!(check(&app, None, T), Err(ReleaseError::BelowThreshold(r)) if r.counted == 2));
    let app = bundle(
        "1.0",
        ReleaseClass::Application,
        vec![artifact("tool", 1)],
        &[0, 1, 2],
    );
    assert_eq!(check(&app, None, T), Ok(3));
}

#[test]
fn a_release_must_be_newer_than_the_newest_known() {
    let b = bundle(
        "1.2.0",
        ReleaseClass::Protocol,
        vec![artifact("p2p", 1)],
        &[0, 1, 2, 3],
    );
    assert_eq!(check(&b, Some("1.1.9"), T), Ok(4));
    for older_or_equal in ["1.2.0", "1.2", "1.10.0", "2"] {
        assert!(
            matches!(
                check(&b, Some(older_or_equal), T),
                Err(ReleaseError::Rollback { .. })
            ),
            "{older_or_equal}"
        );
    }
}

#[test]
fn expired_and_inverted_releases_are_refused() {
    let b = bundle(
        "1.0",
        ReleaseClass::Protocol,
        vec![artifact("p2p", 1)],
        &[0, 1, 2, 3],
    );
    assert_eq!(check(&b, None, T + 999), Ok(4));
    assert_eq!(
        check(&b, None, T + 1_000),
        Err(ReleaseError::Expired {
            expires: T + 1_000,
            now: T + 1_000
        })
    );
    let mut inverted = b.clone();
    inverted.body.expires = T - 1;
    assert_eq!(
        check(&inverted, None, T),
        Err(ReleaseError::ExpiryBeforeCreation {
            created: T,
            expires: T - 1
        })
    );
}

#[test]
fn artifact_lists_are_checked() {
    let none = bundle("1.0", ReleaseClass::Protocol, vec![], &[0, 1, 2, 3]);
    assert!(matches!(
        check(&none, None, T),
        Err(ReleaseError::BadArtifacts(_))
    ));
    let twice = bundle(
        "1.0",
        ReleaseClass::Protocol,
        vec![artifact("a", 1), artifact("a", 2)],
        &[0, 1, 2, 3],
    );
    assert!(matches!(
        check(&twice, None, T),
        Err(ReleaseError::BadArtifacts(_))
    ));
    let unsafe_name = bundle(
        "1.0",
        ReleaseClass::Protocol,
        vec![artifact("../etc/passwd", 1)],
        &[0, 1, 2, 3],
    );
    assert!(matches!(
        check(&unsafe_name, None, T),
        Err(ReleaseError::BadArtifacts(_))
    ));
    let huge = bundle(
        "1.0",
        ReleaseClass::Protocol,
        vec![artifact("a", MAX_RELEASE_BYTES), artifact("b", 1)],
        &[0, 1, 2, 3],
    );
    assert_eq!(
        check(&huge, None, T),
        Err(ReleaseError::TooLarge(MAX_RELEASE_BYTES + 1))
    );
}

#[test]
fn a_release_class_missing_from_the_spec_is_refused() {
    let mut spec = regtest();
    spec.release_classes
        .retain(|c| c.class != ReleaseClass::Application);
    let b = bundle(
        "1.0",
        ReleaseClass::Application,
        vec![artifact("tool", 1)],
        &[0, 1, 2],
    );
    assert_eq!(
        verify_release(&b, &spec, &spec.network_id(), None, T).unwrap_err(),
        ReleaseError::UnknownClass("application".into())
    );
}

#[test]
fn artifacts_are_checked_against_the_manifest() {
    let bytes = vec![7u8; 3 * 1024 * 1024 + 5];
    let mut hasher = ArtifactHasher::new();
    hasher.update(&bytes);
    let digest = hasher.finish();
    let a = Artifact {
        name: BoundedString::new("commonsd").unwrap(),
        sha256: digest.sha256,
        size: digest.size,
        chunk_list: digest.chunk_list_hash(),
    };
    assert_eq!(check_artifact(&a, &digest), Ok(()));

    let mut tampered = bytes.clone();
    tampered[2 * 1024 * 1024 + 1] ^= 1;
    let mut hasher = ArtifactHasher::new();
    hasher.update(&tampered);
    assert!(matches!(
        check_artifact(&a, &hasher.finish()),
        Err(ArtifactError::Hash { .. })
    ));

    let mut hasher = ArtifactHasher::new();
    hasher.update(&bytes[..bytes.len() - 1]);
    assert!(matches!(
        check_artifact(&a, &hasher.finish()),
        Err(ArtifactError::Size { .. })
    ));

    // Right bytes, but a manifest whose chunk list is not theirs: peers could not check
    // chunks against it, so the artifact is refused.
    let other_chunking = Artifact {
        chunk_list: Hash32([0; 32]),
        ..a.clone()
    };
    assert!(matches!(
        check_artifact(&other_chunking, &digest),
        Err(ArtifactError::ChunkList { .. })
    ));
}

#[test]
fn only_plain_file_names_are_safe() {
    for ok in ["commonsd", "commons-cli-0.1.0-x86_64.tar.gz", "a..b"] {
        assert!(is_safe_file_name(ok), "{ok}");
    }
    for bad in ["", ".", "..", ".hidden", "a/b", "a\\b", "bad\nname", "/abs"] {
        assert!(!is_safe_file_name(bad), "{bad:?}");
    }
}

#[test]
fn fresh_keys_can_sign_too() {
    // Not only the well-known seeds: a generated key that the spec lists counts.
    let fresh = SecretKey::generate();
    let mut spec = regtest();
    spec.maintainers[0] = fresh.public_key();
    let net = spec.network_id();
    let mut p = proposal(&spec, 1, "routine", T, T + 35, &[1, 2]);
    p.add_signature(&fresh, &net).unwrap();
    assert_eq!(verify_proposal(&p, &spec, &net).unwrap().counted, 3);
}

/// Signature lists drawn from the 7 regtest release keys plus an outsider (index 7), with
/// repeats, some signatures made over another manifest.
fn signed_by(b: &mut ReleaseBundle, plan: &[(usize, bool)]) {
    let net = regtest().network_id();
    let other = bundle("9.9.9", b.body.class, vec![artifact("other", 3)], &[]).id(&net);
    let sigs = plan
        .iter()
        .map(|&(i, over_other)| {
            let k = if i < 7 {
                regtest_maintainer_key(i)
            } else {
                key("outsider")
            };
            let id = if over_other { other } else { b.id(&net) };
            MaintainerSignature {
                signer: k.public_key(),
                signature: k.sign(&id),
            }
        })
        .collect();
    b.signatures = BoundedVec::new(sigs).unwrap();
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// A release is valid exactly when the distinct class signers with a good signature over
    /// this manifest reach the class threshold: repeats, outsiders and signatures over other
    /// manifests never count.
    #[test]
    fn release_threshold_counts_each_good_class_signer_once(
        class_pick in 0usize..3,
        plan in proptest::collection::vec((0usize..8, proptest::bool::weighted(0.2)), 0..14),
    ) {
        let class = [ReleaseClass::Consensus, ReleaseClass::Protocol, ReleaseClass::Application][class_pick];
        let spec = regtest();
        let rules = spec.release_class(class).unwrap();
        let mut b = bundle("1.0.0", class, vec![artifact("x", 5)], &[]);
        signed_by(&mut b, &plan);
        let good: BTreeSet<usize> = plan
            .iter()
            .filter(|(i, over_other)| {
                !over_other
                    && *i < 7
                    && rules.signers.contains(&regtest_maintainer_key(*i).public_key())
            })
            .map(|(i, _)| *i)
            .collect();
        match check(&b, None, T) {
            Ok(counted) => {
                proptest::prop_assert!(good.len() >= rules.threshold as usize);
                proptest::prop_assert_eq!(counted, good.len());
            }
            Err(ReleaseError::BelowThreshold(r)) => {
                proptest::prop_assert!(good.len() < rules.threshold as usize);
                proptest::prop_assert_eq!(r.counted, good.len());
            }
            Err(other) => proptest::prop_assert!(false, "{other:?}"),
        }
    }

    /// Versions only move forward on a channel: anything older than or equal to the newest
    /// known is a rollback, anything newer passes.
    #[test]
    fn release_versions_only_move_forward(
        offered in proptest::collection::vec(0u32..4, 1..4),
        newest in proptest::collection::vec(0u32..4, 1..4),
    ) {
        let text = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(".");
        let (offered_text, newest_text) = (text(&offered), text(&newest));
        let b = bundle(&offered_text, ReleaseClass::Application, vec![artifact("x", 5)], &[0, 1, 2]);
        let offered_v: commons_signaling::ReleaseVersion = offered_text.parse().unwrap();
        let newest_v: commons_signaling::ReleaseVersion = newest_text.parse().unwrap();
        let result = check(&b, Some(&newest_text), T);
        if offered_v > newest_v {
            proptest::prop_assert_eq!(result, Ok(3));
        } else {
            let is_rollback = matches!(result, Err(ReleaseError::Rollback { .. }));
            proptest::prop_assert!(is_rollback, "{:?}", result);
        }
    }

    /// Any change to a signed manifest (another artifact hash, size or chunk list, a later
    /// expiry) voids every signature on it.
    #[test]
    fn a_changed_manifest_keeps_no_signature(field in 0usize..4, byte in 0usize..32) {
        let mut b = bundle("1.0.0", ReleaseClass::Application, vec![artifact("x", 5)], &[0, 1, 2]);
        let mut artifacts = b.body.artifacts.to_vec();
        match field {
            0 => artifacts[0].sha256.0[byte] ^= 1,
            1 => artifacts[0].size += 1 + byte as u64,
            2 => artifacts[0].chunk_list.0[byte] ^= 0x80,
            _ => b.body.expires += 1 + byte as u64,
        }
        b.body.artifacts = BoundedVec::new(artifacts).unwrap();
        let below = matches!(check(&b, None, T), Err(ReleaseError::BelowThreshold(r)) if r.counted == 0);
        proptest::prop_assert!(below);
    }
}

#[test]
fn an_oversized_bundle_is_refused_before_decoding() {
    let b = bundle(
        "1.0.0",
        ReleaseClass::Application,
        vec![artifact("x", 5)],
        &[0, 1, 2],
    );
    let mut bytes = b.encode();
    let max = commons_signaling::MessageKind::Release.max_bytes();
    bytes.resize(max + 1, 0);
    assert!(matches!(
        ReleaseBundle::decode(&bytes),
        Err(commons_signaling::DecodeError::TooLarge { .. })
    ));
}
