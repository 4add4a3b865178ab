//! The intake's decision for each kind of message, with real keys and signatures: what is
//! decided before any signature check, what is asked to be verified, and what is persisted.

mod common;

use commons_aggregator::{Checked, Intake, Reason, Record, Verdict};
use commons_signaling::{Choice, Equivocation, MessageKind, PROTOCOL_VERSION};

use common::{attestation, key, pk, presence, proposal, regtest, signal, signal_with};

const T: u64 = 1_000_000;

fn intake() -> (Intake, commons_signaling::Hash32) {
    let spec = regtest();
    let mut intake = Intake::new(spec.clone(), spec.epoch_at(T), Some(pk("me")));
    let p = proposal(&spec, 1, "intake", T - 10, T + 600, &[0, 1, 2]);
    let id = p.id(&spec.network_id());
    assert_eq!(
        intake.ingest(MessageKind::Proposal, &p.encode(), T).reason,
        Reason::New
    );
    (intake, id)
}

#[test]
fn a_new_signal_asks_for_its_signature_and_new_attestations_then_persists_them() {
    let (mut intake, id) = intake();
    let spec = regtest();
    let net = spec.network_id();
    let epoch = spec.epoch_at(T);
    let about = attestation(&net, &key("a"), pk("s"), "10.0.0.1", epoch, 5);
    let s = signal_with(
        &net,
        &key("s"),
        id,
        Choice::Override,
        1,
        T,
        vec![about.clone()],
    );
    let Checked::Verify(pending) = intake.check(MessageKind::Signal, &s.encode(), T) else {
        panic!("a new signal needs verifying");
    };
    assert_eq!(pending.kind(), MessageKind::Signal);
    assert_eq!(pending.attestations(), std::slice::from_ref(&about));
    let applied = intake.apply(pending.verify(&spec, T), T);
    assert_eq!(applied.reason, Reason::New);
    assert!(
        matches!(&applied.persist[..], [Record::Signal(x), Record::Attestation(a)] if *x == s && *a == about)
    );
    // The same bytes again: dropped by the signature before decoding.
    assert!(matches!(
        intake.check(MessageKind::Signal, &s.encode(), T),
        Checked::Decided(Reason::Duplicate)
    ));
}

#[test]
fn each_refusal_of_a_signal_has_its_reason_and_verdict() {
    let (mut intake, id) = intake();
    let spec = regtest();
    let net = spec.network_id();
    let first = signal(&net, &key("s"), id, Choice::Support, 2, T);
    assert_eq!(
        intake
            .ingest(MessageKind::Signal, &first.encode(), T)
            .reason,
        Reason::New
    );
    let mut forged = signal(&net, &key("t"), id, Choice::Support, 1, T).encode();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let epoch = spec.epoch_at(T);
    let not_about = attestation(&net, &key("a"), pk("other"), "10.0.0.1", epoch, 5);
    let cases = [
        (
            signal(&net, &key("s"), id, Choice::Oppose, 1, T).encode(),
            Reason::Replay,
            Verdict::Ignore,
        ),
        (
            signal(&net, &key("t"), id, Choice::Support, 1, T + 31).encode(),
            Reason::TooEarly,
            Verdict::Ignore,
        ),
        (
            signal(&net, &key("t"), id, Choice::Support, 1, T + 600).encode(),
            Reason::AfterLockEnd,
            Verdict::Reject,
        ),
        (
            signal(
                &net,
                &key("t"),
                commons_signaling::Hash32([1; 32]),
                Choice::Support,
                1,
                T,
            )
            .encode(),
            Reason::UnknownProposal,
            Verdict::Ignore,
        ),
        (forged, Reason::BadSignature, Verdict::Reject),
        (
            signal_with(&net, &key("t"), id, Choice::Support, 1, T, vec![not_about]).encode(),
            Reason::AttestationNotAboutCarrier,
            Verdict::Reject,
        ),
        (b"junk".to_vec(), Reason::Malformed, Verdict::Reject),
    ];
    for (bytes, reason, verdict) in cases {
        let got = intake.ingest(MessageKind::Signal, &bytes, T).reason;
        assert_eq!((got, got.verdict()), (reason, verdict));
    }
    let mut newer = signal(&net, &key("u"), id, Choice::Support, 1, T);
    newer.body.version = PROTOCOL_VERSION + 1;
    let newer = commons_signaling::Signed::sign(newer.body, &key("u"), &net);
    assert_eq!(
        intake
            .ingest(MessageKind::Signal, &newer.encode(), T)
            .reason,
        Reason::UnknownVersion
    );
}

/// Regression (issue 13, known finding): junk carrying a `version` field was
/// `UnknownVersion` and so ignored; it is malformed and rejected now, on every topic, while
/// a well-formed envelope of a newer version is still ignored.
#[test]
fn junk_with_a_version_field_is_rejected_and_a_future_envelope_ignored() {
    let (mut intake, _) = intake();
    let junk: [&[u8]; 2] = [
        // {"version": 2}, hex a16776657273696f6e02
        b"\xa1\x67version\x02",
        // {"body": {"version": 2}}
        b"\xa1\x64body\xa1\x67version\x02",
    ];
    for kind in MessageKind::ALL {
        for bytes in junk {
            let reason = intake.ingest(kind, bytes, T).reason;
            assert_eq!(
                (reason, reason.verdict()),
                (Reason::Malformed, Verdict::Reject),
                "{kind:?} {bytes:x?}"
            );
        }
    }
    // {"body": {"version": 2}, "signature": h'00' x 64}
    let mut future = b"\xa2\x64body\xa1\x67version\x02\x69signature\x58\x40".to_vec();
    future.extend_from_slice(&[0; 64]);
    let reason = intake.ingest(MessageKind::Signal, &future, T).reason;
    assert_eq!(
        (reason, reason.verdict()),
        (Reason::UnknownVersion, Verdict::Ignore)
    );
}

#[test]
fn presences_own_stale_superseded_and_bare_attestations() {
    let (mut intake, _) = intake();
    let spec = regtest();
    let net = spec.network_id();
    let epoch = spec.epoch_at(T);
    let cases = [
        (presence(&net, &key("me"), epoch, vec![]), Reason::Own),
        (presence(&net, &key("n"), epoch, vec![]), Reason::New),
        (
            presence(&net, &key("n"), epoch - 1, vec![]),
            Reason::Superseded,
        ),
        (presence(&net, &key("o"), epoch - 31, vec![]), Reason::Stale),
        (
            presence(&net, &key("o"), epoch + 100, vec![]),
            Reason::TooEarly,
        ),
    ];
    for (p, reason) in cases {
        assert_eq!(
            intake.ingest(MessageKind::Presence, &p.encode(), T).reason,
            reason,
            "{:?}",
            p.body.epoch
        );
    }
    let about_me = attestation(&net, &key("a"), pk("me"), "10.0.0.9", epoch, 4);
    let about_other = attestation(&net, &key("a"), pk("n"), "10.0.0.8", epoch, 4);
    assert_eq!(
        intake
            .ingest(MessageKind::Attestation, &about_other.encode(), T)
            .reason,
        Reason::NotCarriedBySubject
    );
    let applied = intake.ingest(MessageKind::Attestation, &about_me.encode(), T);
    assert_eq!(applied.reason, Reason::New);
    assert_eq!(
        intake
            .ingest(MessageKind::Attestation, &about_me.encode(), T)
            .reason,
        Reason::Duplicate
    );
    // An observer without a key (the simulator) takes no bare attestation.
    let mut observer = Intake::new(spec.clone(), epoch, None);
    assert_eq!(
        observer
            .ingest(MessageKind::Attestation, &about_me.encode(), T)
            .reason,
        Reason::NotCarriedBySubject
    );
}

#[test]
fn proposals_duplicate_by_id_and_invalid_below_threshold() {
    let (mut intake, _) = intake();
    let spec = regtest();
    let again = proposal(&spec, 1, "intake", T - 10, T + 600, &[0, 1, 2, 3]);
    assert!(matches!(
        intake.check(MessageKind::Proposal, &again.encode(), T),
        Checked::Decided(Reason::Duplicate)
    ));
    let thin = proposal(&spec, 1, "thin", T - 10, T + 600, &[0]);
    let applied = intake.ingest(MessageKind::Proposal, &thin.encode(), T);
    assert_eq!(applied.reason, Reason::InvalidProposal);
    assert!(applied.persist.is_empty());
}

/// A signal that conflicts with the held one (same sequence, other body) is verified, and
/// the intake makes evidence of the pair: stored, handed to the caller to publish, and the
/// signer counts no more. The revealing signal is not forwarded; the evidence is.
#[test]
fn a_conflicting_signal_is_verified_and_turned_into_evidence() {
    let (mut intake, id) = intake();
    let net = regtest().network_id();
    let a = signal(&net, &key("s"), id, Choice::Support, 4, T);
    let b = signal(&net, &key("s"), id, Choice::Override, 4, T);
    assert_eq!(
        intake.ingest(MessageKind::Signal, &a.encode(), T).reason,
        Reason::New
    );
    // A forged body at that sequence proves nothing and costs its sender.
    let mut forged = b.encode();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let got = intake.ingest(MessageKind::Signal, &forged, T);
    assert_eq!(got.reason, Reason::BadSignature);
    assert!(got.made.is_none() && got.persist.is_empty());
    assert!(!intake.aggregator().is_excluded(&id, &pk("s")));

    let Checked::Verify(_) = intake.check(MessageKind::Signal, &b.encode(), T) else {
        panic!("a conflicting body must be verified before it proves anything");
    };
    let applied = intake.ingest(MessageKind::Signal, &b.encode(), T);
    assert_eq!(applied.reason, Reason::Equivocation);
    assert_eq!(applied.reason.verdict(), Verdict::Ignore);
    let evidence = Equivocation::new(a.clone(), b.clone()).unwrap();
    assert_eq!(applied.made.as_ref(), Some(&evidence));
    assert!(matches!(&applied.persist[0], Record::Evidence(e) if *e == evidence));
    let winner_is_b = b.encode() > a.encode();
    assert_eq!(
        applied
            .persist
            .iter()
            .any(|r| matches!(r, Record::Signal(s) if *s == b)),
        winner_is_b
    );
    assert!(intake.aggregator().is_excluded(&id, &pk("s")));
    // The same evidence arriving from a peer now changes nothing.
    assert_eq!(
        intake
            .ingest(MessageKind::Evidence, &evidence.encode(), T)
            .reason,
        Reason::AlreadyProven
    );
}

/// Evidence from the network: validated like any message (malformed, oversized, forged and
/// out-of-order evidence costs the sender; evidence on an unknown proposal waits for sync),
/// then applied with the signals it carries.
#[test]
fn evidence_from_a_peer_is_validated_then_excludes_the_signer() {
    let (mut intake, id) = intake();
    let spec = regtest();
    let net = spec.network_id();
    let epoch = spec.epoch_at(T);
    let about = attestation(&net, &key("m"), pk("s"), "10.0.0.9", epoch, 5);
    let a = signal_with(
        &net,
        &key("s"),
        id,
        Choice::Support,
        1,
        T,
        vec![about.clone()],
    );
    let b = signal(&net, &key("s"), id, Choice::Override, 1, T);
    let evidence = Equivocation::new(a.clone(), b.clone()).unwrap();

    let mut forged_sig = evidence.clone();
    forged_sig.second.signature.0[5] ^= 1;
    let swapped = Equivocation {
        first: evidence.second.clone(),
        second: evidence.first.clone(),
        ..evidence.clone()
    };
    let elsewhere = {
        let sign = |choice| {
            let mut s = signal(&net, &key("s"), id, choice, 1, T);
            s.body.proposal = commons_signaling::Hash32([3; 32]);
            commons_signaling::Signed::sign(s.body, &key("s"), &net)
        };
        Equivocation::new(sign(Choice::Support), sign(Choice::Oppose)).unwrap()
    };
    let not_about = attestation(&net, &key("m"), pk("other"), "10.0.0.9", epoch, 5);
    let carrying_other = Equivocation::new(
        signal_with(&net, &key("s"), id, Choice::Oppose, 1, T, vec![not_about]),
        b.clone(),
    )
    .unwrap();
    let cases = [
        (
            b"\xa1\x67version\x01".to_vec(),
            Reason::Malformed,
            Verdict::Reject,
        ),
        (
            vec![0; MessageKind::Evidence.max_bytes() + 1],
            Reason::TooLarge,
            Verdict::Reject,
        ),
        (swapped.encode(), Reason::Malformed, Verdict::Reject),
        (forged_sig.encode(), Reason::BadSignature, Verdict::Reject),
        (
            carrying_other.encode(),
            Reason::AttestationNotAboutCarrier,
            Verdict::Reject,
        ),
        (elsewhere.encode(), Reason::UnknownProposal, Verdict::Ignore),
        // A signal where evidence is expected.
        (a.encode(), Reason::Malformed, Verdict::Reject),
    ];
    for (bytes, reason, verdict) in cases {
        let got = intake.ingest(MessageKind::Evidence, &bytes, T);
        assert_eq!((got.reason, got.reason.verdict()), (reason, verdict));
        assert!(got.persist.is_empty());
    }
    assert!(!intake.aggregator().is_excluded(&id, &pk("s")));

    let Checked::Verify(pending) = intake.check(MessageKind::Evidence, &evidence.encode(), T)
    else {
        panic!("valid evidence needs its signatures verified");
    };
    assert_eq!(pending.kind(), MessageKind::Evidence);
    assert_eq!(pending.attestations(), std::slice::from_ref(&about));
    let applied = intake.apply(pending.verify(&spec, T), T);
    assert_eq!(applied.reason, Reason::New);
    assert_eq!(applied.reason.verdict(), Verdict::Accept);
    assert!(
        applied.made.is_none(),
        "received evidence is forwarded, not re-made"
    );
    let held = intake.aggregator().signal(&id, &pk("s")).cloned().unwrap();
    assert_eq!(held, if b.encode() > a.encode() { b } else { a });
    assert!(matches!(&applied.persist[0], Record::Evidence(e) if *e == evidence));
    assert!(
        applied
            .persist
            .iter()
            .any(|r| matches!(r, Record::Signal(s) if *s == held))
    );
    assert!(intake.aggregator().is_excluded(&id, &pk("s")));
    let tally = intake.aggregator().tally(&id).unwrap();
    assert_eq!((tally.signers, tally.excluded_signers), (1, 1));
    assert_eq!(
        intake
            .ingest(MessageKind::Evidence, &evidence.encode(), T)
            .reason,
        Reason::AlreadyProven
    );
}
