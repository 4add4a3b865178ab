//! Keys, key files and BIP340 signatures.

use std::os::unix::fs::PermissionsExt;

use commons_signaling::keys::tagged_hash;
use commons_signaling::{
    AttestationBody, Hash32, KeyError, NetworkSpec, PresenceBody, PublicKey, SecretKey, Signed,
    WireIp,
};

#[test]
fn bip340_reference_vector_0() {
    // BIP340 test vector 0: secret 3, aux rand 0, message 0.
    let mut secret = [0u8; 32];
    secret[31] = 3;
    let key = SecretKey::from_bytes(&secret).unwrap();
    assert_eq!(
        key.public_key().to_hex(),
        "f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9"
    );
    let sig = key.sign_with_aux(&Hash32([0; 32]), &[0; 32]);
    assert_eq!(
        hex::encode(sig.0).to_uppercase(),
        "E907831F80848D1069A5371B402410364BDF1C5F8307B0084C55F1CE2DCA8215\
         25F66A4A85EA8B71E482A74F382D2CE5EBEEE8FDB2172F477DF4900D310536C0"
    );
    assert!(key.public_key().verify(&Hash32([0; 32]), &sig));
    assert!(!key.public_key().verify(&Hash32([1; 32]), &sig));
}

#[test]
fn tagged_hash_is_bip340_construction() {
    use sha2::{Digest, Sha256};
    let tag = Sha256::digest(b"commons-signal/v1/signal");
    let expected = Sha256::new()
        .chain_update(tag)
        .chain_update(tag)
        .chain_update(b"abc")
        .finalize();
    assert_eq!(
        tagged_hash("commons-signal/v1/signal", &[b"ab", b"c"]).0,
        <[u8; 32]>::from(expected)
    );
}

#[test]
fn key_file_round_trip_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    let key = SecretKey::generate();
    key.save(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let loaded = SecretKey::load(&path).unwrap();
    assert_eq!(loaded.public_key(), key.public_key());
}

#[test]
fn key_file_is_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    let first = SecretKey::generate();
    first.save(&path).unwrap();
    let err = SecretKey::generate().save(&path).unwrap_err();
    assert!(matches!(err, KeyError::Exists(_)), "{err}");
    assert_eq!(
        SecretKey::load(&path).unwrap().public_key(),
        first.public_key()
    );
}

#[test]
fn readable_key_file_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    SecretKey::generate().save(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = SecretKey::load(&path).unwrap_err();
    assert!(
        matches!(err, KeyError::Permissions { mode: 0o644, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[test]
fn garbage_key_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.key");
    std::fs::write(&path, "not a key\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = SecretKey::load(&path).unwrap_err().to_string();
    assert!(err.contains("bad.key") && err.contains("hex"), "{err}");
}

#[test]
fn debug_output_never_shows_the_secret() {
    let key = SecretKey::from_seed("debug");
    let shown = format!("{key:?}");
    assert!(!shown.contains(&hex::encode(key.secret_bytes())));
    assert!(shown.contains(&key.public_key().to_hex()));
}

#[test]
fn public_key_parsing_rejects_points_off_the_curve() {
    let key = SecretKey::from_seed("parse").public_key();
    assert_eq!(key.to_hex().parse::<PublicKey>().unwrap(), key);
    // x = 5 is not on secp256k1 (5^3 + 7 = 132 is not a square mod p).
    let off_curve = format!("{:064x}", 5);
    assert!(off_curve.parse::<PublicKey>().is_err());
    assert!("abcd".parse::<PublicKey>().is_err());
}

fn attestation(attester: &SecretKey) -> AttestationBody {
    AttestationBody {
        version: 1,
        attester: attester.public_key(),
        subject: SecretKey::from_seed("subject").public_key(),
        subject_ip: WireIp("203.0.113.7".parse().unwrap()),
        epoch: 100,
        seen_epochs: 20,
    }
}

#[test]
fn signatures_are_bound_to_network_and_kind() {
    let key = SecretKey::from_seed("attester");
    let regtest = NetworkSpec::regtest().network_id();
    let testnet = NetworkSpec::testnet().network_id();
    let signed = Signed::sign(attestation(&key), &key, &regtest);
    assert!(signed.verify(&regtest));
    assert!(!signed.verify(&testnet), "cross-network replay must fail");

    // The same signature presented over a different kind of body must fail: the tag differs.
    let presence = Signed {
        body: PresenceBody {
            version: 1,
            node: key.public_key(),
            epoch: 100,
            attestations: Default::default(),
        },
        signature: signed.signature,
    };
    assert!(!presence.verify(&regtest));

    let mut tampered = signed.clone();
    tampered.body.seen_epochs += 1;
    assert!(!tampered.verify(&regtest));
}
