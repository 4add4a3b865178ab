//! Builders of signed messages for the tests and benches of every crate: proposals signed by
//! the well-known regtest maintainers, uptime attestations, signals, presences and release
//! bundles, with real keys and real BIP340 signatures.
//!
//! Each builder takes every field a test may want to choose and fills in only the rest (the
//! protocol version, and a fixed reference or source commit), so that a suite says what its
//! messages are about in one line. Where a suite wants another reference or source commit, it
//! starts from [`proposal_body`] or [`release_manifest`] and changes that field.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use commons_signaling::artifact::{ArtifactDigest, ArtifactHasher};
use commons_signaling::spec::regtest_maintainer_key;
use commons_signaling::{
    Artifact, AttestationBody, BoundedString, BoundedVec, Choice, Hash32, NetworkSpec,
    PROTOCOL_VERSION, Presence, PresenceBody, Proposal, ProposalBody, PublicKey, ReleaseBundle,
    ReleaseClass, ReleaseManifest, SecretKey, Signal, SignalBody, Signed, UptimeAttestation,
    WireIp,
};

/// The reference of the proposals [`proposal`] builds.
pub const REFERENCE: &str = "https://example.invalid/commons/pull/1";

/// The source commit of the manifests [`release_manifest`] builds.
pub const SOURCE_COMMIT: &str = "0123456789abcdef";

/// The regtest network id, which every builder here signs for when a test has no other
/// network.
pub fn regtest_network() -> Hash32 {
    NetworkSpec::regtest().network_id()
}

/// An address as a test writes it: `"10.0.0.1"`, or an address value.
pub trait TestIp {
    /// The address.
    fn ip(self) -> IpAddr;
}

impl TestIp for IpAddr {
    fn ip(self) -> IpAddr {
        self
    }
}

impl TestIp for Ipv4Addr {
    fn ip(self) -> IpAddr {
        IpAddr::V4(self)
    }
}

impl TestIp for Ipv6Addr {
    fn ip(self) -> IpAddr {
        IpAddr::V6(self)
    }
}

impl TestIp for &str {
    fn ip(self) -> IpAddr {
        self.parse()
            .unwrap_or_else(|_| panic!("{self:?} is not an IP address"))
    }
}

impl TestIp for &String {
    fn ip(self) -> IpAddr {
        self.as_str().ip()
    }
}

impl TestIp for String {
    fn ip(self) -> IpAddr {
        self.as_str().ip()
    }
}

/// The body of a proposal of `tier` locked over `[lock_start, lock_end)`, with the
/// [`REFERENCE`].
pub fn proposal_body(tier: u8, title: &str, lock_start: u64, lock_end: u64) -> ProposalBody {
    ProposalBody {
        version: PROTOCOL_VERSION,
        tier,
        title: BoundedString::new(title).expect("a title of at most 200 bytes"),
        reference: BoundedString::new(REFERENCE).expect("a short reference"),
        lock_start,
        lock_end,
    }
}

/// `body` signed for `network` by the regtest maintainers numbered `signers`.
pub fn sign_proposal(
    network: &Hash32,
    body: ProposalBody,
    signers: impl IntoIterator<Item = usize>,
) -> Proposal {
    let mut proposal = Proposal::new(body);
    for i in signers {
        proposal
            .add_signature(&regtest_maintainer_key(i), network)
            .expect("room for the signatures");
    }
    proposal
}

/// A proposal of `tier` locked over `[lock_start, lock_end)` with the [`REFERENCE`], signed
/// for `network` by the regtest maintainers numbered `signers`.
pub fn proposal(
    network: &Hash32,
    tier: u8,
    title: &str,
    lock_start: u64,
    lock_end: u64,
    signers: impl IntoIterator<Item = usize>,
) -> Proposal {
    sign_proposal(
        network,
        proposal_body(tier, title, lock_start, lock_end),
        signers,
    )
}

/// `attester` attests `subject` online at `ip` for `seen` epochs of the window, at `epoch`.
pub fn attestation(
    network: &Hash32,
    attester: &SecretKey,
    subject: PublicKey,
    ip: impl TestIp,
    epoch: u64,
    seen: u32,
) -> UptimeAttestation {
    let body = AttestationBody {
        version: PROTOCOL_VERSION,
        attester: attester.public_key(),
        subject,
        subject_ip: WireIp(ip.ip()),
        epoch,
        seen_epochs: seen,
    };
    Signed::sign(body, attester, network)
}

/// `signer`'s signal of `choice` on `proposal`, carrying `attestations` about the signer.
pub fn signal(
    network: &Hash32,
    signer: &SecretKey,
    proposal: Hash32,
    choice: Choice,
    sequence: u64,
    time: u64,
    attestations: Vec<UptimeAttestation>,
) -> Signal {
    let body = SignalBody {
        version: PROTOCOL_VERSION,
        proposal,
        choice,
        sequence,
        time,
        signer: signer.public_key(),
        attestations: BoundedVec::new(attestations).expect("at most 16 attestations"),
    };
    Signed::sign(body, signer, network)
}

/// `node`'s presence at `epoch`, carrying `attestations` about it.
pub fn presence(
    network: &Hash32,
    node: &SecretKey,
    epoch: u64,
    attestations: Vec<UptimeAttestation>,
) -> Presence {
    let body = PresenceBody {
        version: PROTOCOL_VERSION,
        node: node.public_key(),
        epoch,
        attestations: BoundedVec::new(attestations).expect("at most 64 attestations"),
    };
    Signed::sign(body, node, network)
}

/// The manifest entry of an artifact named `name` with `digest`.
pub fn artifact(name: &str, digest: &ArtifactDigest) -> Artifact {
    Artifact {
        name: BoundedString::new(name).expect("an artifact name of at most 128 bytes"),
        sha256: digest.sha256,
        size: digest.size,
        chunk_list: digest.chunk_list_hash(),
    }
}

/// The manifest entry of an artifact named `name` holding `bytes`.
pub fn artifact_of(name: &str, bytes: &[u8]) -> Artifact {
    let mut hasher = ArtifactHasher::new();
    hasher.update(bytes);
    artifact(name, &hasher.finish())
}

/// A manifest of `version` on channel `stable`, made at `created` and valid until
/// `expires`, with the [`SOURCE_COMMIT`] and no optional hashes.
pub fn release_manifest(
    version: &str,
    class: ReleaseClass,
    created: u64,
    expires: u64,
    artifacts: Vec<Artifact>,
) -> ReleaseManifest {
    ReleaseManifest {
        version: 1,
        channel: BoundedString::new("stable").expect("a short channel"),
        release: version
            .parse()
            .unwrap_or_else(|e| panic!("{version:?} is not a release version: {e}")),
        class,
        created,
        expires,
        artifacts: BoundedVec::new(artifacts).expect("not too many artifacts"),
        source_commit: BoundedString::new(SOURCE_COMMIT).expect("a short commit"),
        build_hash: None,
        spec_hash: None,
        test_results_hash: None,
        ots_proof: None,
    }
}

/// `manifest` signed for `network` by the regtest maintainers numbered `signers`.
pub fn sign_release(
    network: &Hash32,
    manifest: ReleaseManifest,
    signers: impl IntoIterator<Item = usize>,
) -> ReleaseBundle {
    let mut bundle = ReleaseBundle::new(manifest);
    for i in signers {
        bundle
            .add_signature(&regtest_maintainer_key(i), network)
            .expect("room for the signatures");
    }
    bundle
}

/// Shuffles `items` deterministically from `seed` (a xorshift Fisher-Yates), so that a
/// property test can deliver the same messages in many orders and still replay a failure
/// from its seed.
pub fn shuffle<T>(items: &mut [T], mut seed: u64) {
    for i in (1..items.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        items.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builders_sign_what_they_are_given() {
        let net = regtest_network();
        let p = proposal(&net, 1, "t", 10, 20, 0..3);
        assert_eq!(p.signatures.len(), 3);
        assert_eq!((p.body.lock_start, p.body.lock_end), (10, 20));
        assert_eq!(p.body.reference.as_str(), REFERENCE);

        let alice = SecretKey::from_seed("test-util alice");
        let bob = SecretKey::from_seed("test-util bob");
        let a = attestation(&net, &alice, bob.public_key(), "10.0.0.1", 5, 3);
        assert!(a.verify(&net));
        assert_eq!(a.body.subject_ip, WireIp("10.0.0.1".parse().unwrap()));
        let s = signal(
            &net,
            &bob,
            p.id(&net),
            Choice::Override,
            2,
            15,
            vec![a.clone()],
        );
        assert!(s.verify(&net));
        assert!(!s.verify(&NetworkSpec::testnet().network_id()));
        let pr = presence(&net, &bob, 5, vec![a]);
        assert!(pr.verify(&net));

        let manifest = release_manifest(
            "1.2.0",
            ReleaseClass::Application,
            1,
            2,
            vec![artifact_of("a", b"x")],
        );
        let bundle = sign_release(&net, manifest, [0, 1]);
        assert_eq!(bundle.signatures.len(), 2);
        assert_eq!(bundle.body.artifacts.iter().map(|a| a.size).sum::<u64>(), 1);
    }
}
