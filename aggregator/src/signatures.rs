//! The one BIP340 check a received message's signatures go through, as a trait so that an
//! embedder can put something in front of it. A node uses [`PlainSignatures`]; the network
//! simulator, which runs hundreds of nodes in one process, shares one cache between them
//! (a signature valid for one node is valid for all), so that each distinct signature costs
//! the process one verification instead of one per node.

use commons_signaling::{Hash32, PublicKey, Signature, Signed, SignedBody};

/// Checks one BIP340 signature over a 32-byte digest. Must answer exactly as
/// [`PublicKey::verify`] does: the intake's decisions rest on it.
pub trait SignatureCheck: Send + Sync {
    /// Whether `signature` is `signer`'s over `digest`.
    fn check(&self, signer: &PublicKey, digest: &Hash32, signature: &Signature) -> bool;
}

/// The real check, every time: what a node uses.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainSignatures;

impl SignatureCheck for PlainSignatures {
    fn check(&self, signer: &PublicKey, digest: &Hash32, signature: &Signature) -> bool {
        signer.verify(digest, signature)
    }
}

/// Whether a signed message's signature is its signer's on `network_id`, through `check`.
pub fn signed_ok<B: SignedBody>(
    message: &Signed<B>,
    network_id: &Hash32,
    check: &dyn SignatureCheck,
) -> bool {
    check.check(
        message.body.signer(),
        &message.digest(network_id),
        &message.signature,
    )
}
