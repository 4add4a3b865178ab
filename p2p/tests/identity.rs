//! The libp2p identity maps to the BIP340 signing key.

use commons_p2p::libp2p::PeerId;
use commons_p2p::libp2p::multihash::Multihash;
use commons_p2p::{keypair_from_secret, peer_xonly_key};
use k256::schnorr::SigningKey;

fn secrets() -> Vec<[u8; 32]> {
    let mut out = vec![[1u8; 32], [0x42u8; 32]];
    // Enough varied keys that both parities of y occur.
    for i in 0..16u8 {
        let mut s = [0u8; 32];
        s[0] = 0x10 + i;
        s[31] = i.wrapping_mul(37).wrapping_add(1);
        out.push(s);
    }
    out
}

#[test]
fn peer_xonly_key_matches_bip340_key_of_the_secret() {
    let mut parities = std::collections::HashSet::new();
    for secret in secrets() {
        let keypair = keypair_from_secret(&secret).expect("valid secret");
        let peer = keypair.public().to_peer_id();
        let expected: [u8; 32] = SigningKey::from_bytes(&secret)
            .expect("valid secret")
            .verifying_key()
            .to_bytes()
            .into();
        assert_eq!(peer_xonly_key(&peer), Some(expected));

        let compressed = keypair.public().try_into_secp256k1().unwrap().to_bytes();
        parities.insert(compressed[0]);
        // The same PeerId survives a round trip through its string form.
        let parsed: PeerId = peer.to_string().parse().unwrap();
        assert_eq!(peer_xonly_key(&parsed), Some(expected));
    }
    assert_eq!(
        parities.len(),
        2,
        "test keys should cover both parities of y"
    );
}

#[test]
fn hashed_peer_ids_have_no_key() {
    let hashed = Multihash::<64>::wrap(0x12, &[7u8; 32]).unwrap();
    let peer = PeerId::from_multihash(hashed).unwrap();
    assert_eq!(peer_xonly_key(&peer), None);
}

#[test]
fn invalid_secrets_are_rejected() {
    assert!(keypair_from_secret(&[0u8; 32]).is_err());
    assert!(keypair_from_secret(&[0xffu8; 32]).is_err());
}
