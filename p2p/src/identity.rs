//! The node identity: one secp256k1 key is both the libp2p identity and the BIP340 signing key.

use libp2p::PeerId;
use libp2p::identity::{Keypair, PublicKey, secp256k1};

/// Multihash code of the identity "hash": the digest is the input itself.
const IDENTITY_MULTIHASH_CODE: u64 = 0x00;

/// Errors turning key material into a libp2p identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The 32 bytes are not a valid secp256k1 secret (zero or not below the curve order).
    #[error("invalid secp256k1 secret key: {0}")]
    InvalidSecret(String),
}

/// Builds the libp2p secp256k1 keypair for the node's 32-byte secret key.
///
/// The resulting `PeerId` embeds the public key (see [`peer_xonly_key`]), so whoever sees the
/// node on a connection also knows the key its messages are signed with.
pub fn keypair_from_secret(bytes: &[u8; 32]) -> Result<Keypair, IdentityError> {
    // libp2p zeroizes the buffer it parses; work on a copy so the caller's key stays intact.
    let mut copy = *bytes;
    let secret = secp256k1::SecretKey::try_from_bytes(&mut copy)
        .map_err(|e| IdentityError::InvalidSecret(e.to_string()))?;
    Ok(secp256k1::Keypair::from(secret).into())
}

/// Recovers the 32-byte x-only (BIP340) public key of a peer from its `PeerId`.
///
/// Returns `None` for peers whose identity is not a secp256k1 key, or whose `PeerId` is a
/// SHA-256 hash of the key rather than the key itself (a secp256k1 key always fits the
/// inline identity encoding, so honest nodes never produce that).
pub fn peer_xonly_key(peer: &PeerId) -> Option<[u8; 32]> {
    let multihash: &libp2p::multihash::Multihash<64> = peer.as_ref();
    if multihash.code() != IDENTITY_MULTIHASH_CODE {
        return None;
    }
    let public = PublicKey::try_decode_protobuf(multihash.digest())
        .ok()?
        .try_into_secp256k1()
        .ok()?;
    // SEC1 compressed form is parity byte || x; BIP340 keys are x alone (even y implied).
    let compressed = public.to_bytes();
    compressed[1..].try_into().ok()
}

/// The `PeerId`s a node whose 32-byte x-only (BIP340) public key is `xonly` may have: the
/// inverse of [`peer_xonly_key`]. An x-only key drops the parity of y that the node's libp2p
/// key (the same secret) keeps, so there are two candidates, `02 || x` and `03 || x`; empty
/// if the bytes are not on the curve.
pub fn peer_ids_of_key(xonly: &[u8; 32]) -> Vec<PeerId> {
    [0x02u8, 0x03]
        .into_iter()
        .filter_map(|parity| {
            let mut compressed = [0u8; 33];
            compressed[0] = parity;
            compressed[1..].copy_from_slice(xonly);
            secp256k1::PublicKey::try_from_bytes(&compressed).ok()
        })
        .map(|public| PublicKey::from(public).to_peer_id())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_zero_secret() {
        assert!(keypair_from_secret(&[0u8; 32]).is_err());
    }

    #[test]
    fn secret_is_not_consumed() {
        let secret = [5u8; 32];
        let a = keypair_from_secret(&secret).unwrap();
        let b = keypair_from_secret(&secret).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
    }

    #[test]
    fn a_peer_id_is_among_the_candidates_of_its_key() {
        for seed in 1u8..=16 {
            let keypair = keypair_from_secret(&[seed; 32]).unwrap();
            let peer = keypair.public().to_peer_id();
            let xonly = peer_xonly_key(&peer).unwrap();
            let candidates = peer_ids_of_key(&xonly);
            assert_eq!(candidates.len(), 2);
            assert!(candidates.contains(&peer), "seed {seed}");
        }
        assert!(
            peer_ids_of_key(&[0xff; 32]).is_empty(),
            "not an x coordinate"
        );
    }
}
