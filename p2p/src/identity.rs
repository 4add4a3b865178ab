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
}
