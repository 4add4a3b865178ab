//! Key rotation in the rules: a staged spec version comes into force at the activation epoch
//! of its rotation proposal, unless that proposal was overridden; from then on a removed
//! measurer's attestations qualify nobody and a removed maintainer's signature counts on no
//! proposal locked after the switch, while the keys that replaced them count. Real keys and
//! signatures throughout.

use commons_aggregator::{Aggregator, Policy};
use commons_signaling::spec::{MeasurerSpec, regtest_maintainer_key, regtest_measurer_key};
use commons_signaling::{BoundedString, Hash32, NetworkSpec, Proposal, PublicKey, SecretKey};
use commons_test_util::{attestation, proposal_body, sign_proposal};

/// The rotation proposal's lock: regtest's tier 5 needs 900 s, from t = 2000.
const LOCK_START: u64 = 2_000;
const LOCK_END: u64 = 2_900;
/// `ceil(2900 / 2) + 1`: the epoch after the last in which an override could latch.
const ACTIVATION: u64 = 1_451;

fn new_maintainer() -> SecretKey {
    SecretKey::from_seed("rotation test new maintainer")
}

fn new_measurer() -> SecretKey {
    SecretKey::from_seed("rotation test new measurer")
}

fn node(name: &str) -> PublicKey {
    SecretKey::from_seed(&format!("rotation test node {name}")).public_key()
}

/// Version 2 of regtest: maintainer 5 and measurer 3 replaced.
fn successor(v1: &NetworkSpec) -> NetworkSpec {
    let mut v2 = v1.successor_draft();
    v2.maintainers[4] = new_maintainer().public_key();
    v2.measurers[2] = MeasurerSpec {
        key: new_measurer().public_key(),
        addresses: vec![],
    };
    v1.check_successor(&v2).unwrap();
    v2.validate("v2").unwrap();
    v2
}

fn rotation_proposal(v1: &NetworkSpec, v2: &NetworkSpec) -> Proposal {
    let mut body = proposal_body(
        5,
        "rotate maintainer 5 and measurer 3",
        LOCK_START,
        LOCK_END,
    );
    body.reference = BoundedString::new(Aggregator::rotation_reference(v2)).unwrap();
    sign_proposal(&v1.network_id(), body, 0..5)
}

/// A tier-1 proposal locked from `lock_start`, signed by regtest maintainers 1 and 2 and by
/// `third`.
fn tier1(v1: &NetworkSpec, title: &str, lock_start: u64, third: &SecretKey) -> Proposal {
    let body = proposal_body(1, title, lock_start, lock_start + 100);
    let mut proposal = sign_proposal(&v1.network_id(), body, 0..2);
    proposal.add_signature(third, &v1.network_id()).unwrap();
    proposal
}

/// Regtest with X measured by measurers 1 and 3, Y by measurer 1 and the new measurer, at
/// the epoch before activation, and the rotation proposal held.
fn world() -> (Aggregator, NetworkSpec, Hash32) {
    let v1 = NetworkSpec::regtest();
    let v2 = successor(&v1);
    let policy = Policy::from_spec(&v1);
    let mut agg = Aggregator::new(v1.clone(), policy, ACTIVATION - 1);
    agg.stage_successors([v2.clone()]).unwrap();
    let rotation = rotation_proposal(&v1, &v2);
    let id = rotation.id(agg.network_id());
    agg.add_proposal(rotation).unwrap();
    let network = *agg.network_id();
    let epoch = ACTIVATION - 1;
    for (m, subject, ip) in [
        (regtest_measurer_key(0), node("x"), "10.0.1.7"),
        (regtest_measurer_key(2), node("x"), "10.0.1.7"),
        (regtest_measurer_key(0), node("y"), "10.0.2.7"),
        (new_measurer(), node("y"), "10.0.2.7"),
    ] {
        agg.add_attestation(attestation(&network, &m, subject, ip, epoch, 10));
    }
    (agg, v2, id)
}

fn qualified(agg: &Aggregator, name: &str) -> bool {
    agg.uptime(&node(name)).is_some_and(|u| u.qualified)
}

#[test]
fn a_staged_version_comes_into_force_at_the_activation_epoch() {
    let (mut agg, v2, id) = world();
    assert_eq!(agg.pending_rotation(), Some((id, ACTIVATION)));
    assert_eq!(agg.spec().version(), 1);
    assert!(qualified(&agg, "x") && !qualified(&agg, "y"));

    agg.set_epoch(ACTIVATION);
    assert_eq!(agg.spec().version(), 2);
    assert_eq!(agg.spec(), &v2);
    assert!(agg.staged_specs().is_empty());
    assert_eq!(agg.network_id(), &v2.network_id());
    // The removed measurer vouches for nobody; the new one does.
    assert!(!qualified(&agg, "x"), "{:?}", agg.uptime(&node("x")));
    assert!(qualified(&agg, "y"), "{:?}", agg.uptime(&node("y")));
    let versions: Vec<(u64, u32)> = agg.spec_versions().map(|(e, s)| (e, s.version())).collect();
    assert_eq!(versions, [(0, 1), (ACTIVATION, 2)]);
}

#[test]
fn the_old_maintainer_counts_for_proposals_locked_before_the_switch_only() {
    let (mut agg, _, _) = world();
    agg.set_epoch(ACTIVATION);
    let v1 = NetworkSpec::regtest();
    let (old, new) = (regtest_maintainer_key(4), new_maintainer());
    let after = ACTIVATION * 2;
    let err = agg
        .add_proposal(tier1(&v1, "old key after", after, &old))
        .unwrap_err();
    assert!(err.to_string().contains("2 of 3"), "{err}");
    agg.add_proposal(tier1(&v1, "new key after", after, &new))
        .unwrap();
    // Locked before the switch: judged by version 1's keys, however late it arrives.
    let before = ACTIVATION * 2 - 10;
    agg.add_proposal(tier1(&v1, "old key before", before, &old))
        .unwrap();
    assert!(
        agg.add_proposal(tier1(&v1, "new key before", before, &new))
            .is_err()
    );
}

#[test]
fn an_overridden_rotation_never_comes_into_force() {
    let (mut agg, _, id) = world();
    assert!(agg.restore_override(&id, ACTIVATION - 1));
    assert_eq!(agg.pending_rotation(), None);
    // Within the liveness window of the attestations, past the activation epoch.
    agg.set_epoch(ACTIVATION + 5);
    assert_eq!(agg.spec().version(), 1);
    assert_eq!(agg.staged_specs().len(), 1);
    assert!(qualified(&agg, "x") && !qualified(&agg, "y"));
}

#[test]
fn a_rotation_of_the_wrong_tier_or_reference_activates_nothing() {
    let v1 = NetworkSpec::regtest();
    let v2 = successor(&v1);
    let mut agg = Aggregator::new(v1.clone(), Policy::from_spec(&v1), ACTIVATION - 1);
    agg.stage_successors([v2.clone()]).unwrap();
    // Tier 4 passes only for a version that takes keys away; this one adds two.
    let mut body = proposal_body(4, "emergency rotation", LOCK_START, LOCK_START);
    body.reference = BoundedString::new(Aggregator::rotation_reference(&v2)).unwrap();
    agg.add_proposal(sign_proposal(&v1.network_id(), body, 0..4))
        .unwrap();
    // Tier 5 naming another spec id.
    let mut body = proposal_body(5, "other", LOCK_START, LOCK_END);
    body.reference = BoundedString::new(Aggregator::rotation_reference(&v1)).unwrap();
    agg.add_proposal(sign_proposal(&v1.network_id(), body, 0..5))
        .unwrap();
    agg.set_epoch(ACTIVATION + 10);
    assert_eq!(agg.spec().version(), 1);
    // A version that does not follow the one in force is refused outright.
    assert!(
        agg.stage_successors([v2.successor_draft().successor_draft()])
            .is_err()
    );
}

#[test]
fn a_revocation_may_pass_as_an_emergency() {
    let v1 = NetworkSpec::regtest();
    let mut v2 = v1.successor_draft();
    v2.measurers.remove(2);
    v2.validate("v2").unwrap();
    assert!(v1.is_revocation_only(&v2));
    let mut agg = Aggregator::new(v1.clone(), Policy::from_spec(&v1), ACTIVATION - 1);
    agg.stage_successors([v2.clone()]).unwrap();
    let mut body = proposal_body(4, "revoke measurer 3", LOCK_START, LOCK_START);
    body.reference = BoundedString::new(Aggregator::rotation_reference(&v2)).unwrap();
    agg.add_proposal(sign_proposal(&v1.network_id(), body, 0..4))
        .unwrap();
    agg.set_epoch(ACTIVATION);
    assert_eq!(agg.spec().version(), 2);
    assert_eq!(agg.spec().measurers.len(), 2);
}

#[test]
fn rotations_report_pending_activated_overridden_and_versions_not_held() {
    let (mut agg, v2, id) = world();
    let v1 = NetworkSpec::regtest();
    // A version this node was never given (another edit of version 1), named by a tier-5
    // proposal that ends later than the one for version 2.
    let mut unknown = v1.successor_draft();
    unknown.maintainers[3] = new_maintainer().public_key();
    let mut body = proposal_body(5, "rotate maintainer 4", LOCK_START, LOCK_END + 20);
    body.reference = BoundedString::new(Aggregator::rotation_reference(&unknown)).unwrap();
    let missing = sign_proposal(&v1.network_id(), body, 0..5);
    let missing_id = missing.id(agg.network_id());
    agg.add_proposal(missing).unwrap();
    // Not rotations: a reference that names no spec id, and one naming version 1 itself.
    for (title, reference) in [
        ("no id", "spec-rotation:v2".to_string()),
        ("first", Aggregator::rotation_reference(&v1)),
    ] {
        let mut body = proposal_body(5, title, LOCK_START, LOCK_END);
        body.reference = BoundedString::new(reference).unwrap();
        agg.add_proposal(sign_proposal(&v1.network_id(), body, 0..5))
            .unwrap();
    }
    let later = ACTIVATION + 10;
    let expected = |state_v2, state_missing| {
        vec![
            commons_aggregator::Rotation {
                proposal: id,
                spec_id: v2.spec_id(),
                version: Some(2),
                activation_epoch: ACTIVATION,
                state: state_v2,
            },
            commons_aggregator::Rotation {
                proposal: missing_id,
                spec_id: unknown.spec_id(),
                version: None,
                activation_epoch: later,
                state: state_missing,
            },
        ]
    };
    use commons_aggregator::RotationState::{Activated, Overridden, Pending, Stalled};
    let rotations = agg.rotations();
    assert_eq!(rotations, expected(Pending, Pending));
    assert!(!rotations[0].names_missing_version());
    assert!(rotations[1].names_missing_version());

    agg.set_epoch(ACTIVATION);
    assert_eq!(agg.rotations(), expected(Activated, Pending));
    // Its lock passed, but this node cannot switch to a version it does not hold.
    agg.set_epoch(later);
    let rotations = agg.rotations();
    assert_eq!(rotations, expected(Activated, Stalled));
    assert!(rotations[1].names_missing_version());

    // An overridden rotation warns of nothing.
    let (mut agg, v2, id) = world();
    assert!(agg.restore_override(&id, ACTIVATION - 1));
    let rotations = agg.rotations();
    assert_eq!(rotations.len(), 1);
    assert_eq!(
        (rotations[0].spec_id, rotations[0].state),
        (v2.spec_id(), Overridden)
    );
    assert!(!rotations[0].names_missing_version());
}

#[test]
fn a_tier_4_rotation_that_adds_keys_is_not_reported() {
    let v1 = NetworkSpec::regtest();
    let v2 = successor(&v1);
    let mut agg = Aggregator::new(v1.clone(), Policy::from_spec(&v1), ACTIVATION - 1);
    agg.stage_successors([v2.clone()]).unwrap();
    let mut body = proposal_body(4, "emergency rotation", LOCK_START, LOCK_START);
    body.reference = BoundedString::new(Aggregator::rotation_reference(&v2)).unwrap();
    agg.add_proposal(sign_proposal(&v1.network_id(), body, 0..4))
        .unwrap();
    assert!(agg.rotations().is_empty());
}
