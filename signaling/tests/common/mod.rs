//! Fixed messages shared by the wire tests and the test vectors.
#![allow(dead_code)]

use commons_signaling::{
    Artifact, AttestationBody, BoundedBytes, BoundedString, BoundedVec, Choice, Hash32,
    NetworkSpec, Presence, PresenceBody, Proposal, ProposalBody, ReleaseBundle, ReleaseClass,
    ReleaseManifest, SecretKey, Signal, SignalBody, Signed, UptimeAttestation, WireIp,
};

pub const AUX: [u8; 32] = [0; 32];

pub fn key(seed: &str) -> SecretKey {
    SecretKey::from_seed(seed)
}

pub fn network() -> Hash32 {
    NetworkSpec::regtest().network_id()
}

pub fn attestation() -> UptimeAttestation {
    let body = AttestationBody {
        version: 1,
        attester: key("alice").public_key(),
        subject: key("bob").public_key(),
        subject_ip: WireIp("198.51.100.23".parse().unwrap()),
        epoch: 881_664,
        seen_epochs: 27,
    };
    Signed::sign_with_aux(body, &key("alice"), &network(), &AUX)
}

pub fn presence() -> Presence {
    let body = PresenceBody {
        version: 1,
        node: key("bob").public_key(),
        epoch: 881_664,
        attestations: BoundedVec::new(vec![attestation()]).unwrap(),
    };
    Signed::sign_with_aux(body, &key("bob"), &network(), &AUX)
}

pub fn proposal() -> Proposal {
    let mut proposal = Proposal::new(ProposalBody {
        version: 1,
        tier: 1,
        title: BoundedString::new("Bump default mempool expiry").unwrap(),
        reference: BoundedString::new("github.com/example/node/pull/123").unwrap(),
        lock_start: 1_763_712_000,
        lock_end: 1_763_712_060,
    });
    for i in 0..3 {
        let maintainer = commons_signaling::spec::regtest_maintainer_key(i);
        proposal
            .add_signature_with_aux(&maintainer, &network(), &AUX)
            .unwrap();
    }
    proposal
}

pub fn signal() -> Signal {
    let body = SignalBody {
        version: 1,
        proposal: proposal().id(&network()),
        choice: Choice::Override,
        sequence: 1,
        time: 1_763_712_030,
        signer: key("bob").public_key(),
        attestations: BoundedVec::new(vec![attestation()]).unwrap(),
    };
    Signed::sign_with_aux(body, &key("bob"), &network(), &AUX)
}

/// Bob's override signal and a second one with its sequence number but choice `support`: the
/// equivocation evidence anyone can check.
pub fn equivocation() -> commons_signaling::Equivocation {
    let first = signal();
    let mut body = first.body.clone();
    body.choice = Choice::Support;
    let second = Signed::sign_with_aux(body, &key("bob"), &network(), &AUX);
    commons_signaling::Equivocation::new(first, second).expect("one signer, sequence and proposal")
}

pub fn release() -> ReleaseBundle {
    let mut bundle = ReleaseBundle::new(ReleaseManifest {
        version: 1,
        channel: BoundedString::new("stable").unwrap(),
        release: "1.4.0".parse().unwrap(),
        class: ReleaseClass::Application,
        created: 1_763_712_000,
        expires: 1_766_304_000,
        artifacts: BoundedVec::new(vec![Artifact {
            name: BoundedString::new("commonsd-x86_64-linux.tar.gz").unwrap(),
            sha256: Hash32([0x11; 32]),
            size: 52_428_800,
            chunk_list: Hash32([0x33; 32]),
        }])
        .unwrap(),
        source_commit: BoundedString::new("4f2a9c0e1b7d").unwrap(),
        build_hash: Some(Hash32([0x22; 32])),
        spec_hash: None,
        test_results_hash: None,
        ots_proof: Some(BoundedBytes::new(vec![0x00, 0x4f, 0x70, 0x65, 0x6e]).unwrap()),
    });
    for i in 0..3 {
        let maintainer = commons_signaling::spec::regtest_maintainer_key(i);
        bundle
            .add_signature_with_aux(&maintainer, &network(), &AUX)
            .unwrap();
    }
    bundle
}
