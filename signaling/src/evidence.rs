//! Equivocation evidence: two signals by one signer on one proposal with one sequence number
//! but different bodies. Both are signed, so the pair proves, to anyone who checks the two
//! signatures, that the signer said two things at once; a node that holds it stops counting
//! that signer on that proposal (`docs/PROTOCOL.md`, "Equivocation").
//!
//! The message is not signed by whoever found it: it needs no reporter, only the signer's own
//! signatures, so any node may pass it on and nobody can forge it. The pair is in one
//! canonical order (the smaller canonical signal encoding first), so the same two signals make
//! exactly one encoding and one id.

use serde::{Deserialize, Serialize};

use crate::PROTOCOL_VERSION;
use crate::keys::PublicKey;
use crate::messages::{MessageKind, Signal, signing_digest};
use crate::types::Hash32;
use crate::wire::{self, DecodeError};

/// Proof that `first.body.signer` signed two different signals with one proposal and
/// sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Equivocation {
    /// Protocol version, 1.
    pub version: u8,
    /// The signal whose canonical encoding is the smaller of the two.
    pub first: Signal,
    /// The other signal.
    pub second: Signal,
}

/// Why two signals are not evidence of an equivocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotEquivocation {
    /// Signed by two different keys.
    #[error("the two signals have different signers")]
    OtherSigner,
    /// On two different proposals.
    #[error("the two signals are on different proposals")]
    OtherProposal,
    /// With two different sequence numbers: a later signal replacing an earlier one.
    #[error("the two signals have different sequence numbers")]
    OtherSequence,
    /// The same body (two signatures over one statement say nothing conflicting).
    #[error("the two signals have the same body")]
    SameBody,
    /// Not in canonical order (the smaller encoding first).
    #[error("the two signals are not in canonical order (smaller encoding first)")]
    Order,
    /// A signal of another protocol version.
    #[error("a signal of protocol version {0}, not {PROTOCOL_VERSION}")]
    SignalVersion(u8),
}

impl Equivocation {
    /// The evidence made of two signals, in canonical order whichever way they are given;
    /// an error when they are not an equivocation. The signatures are not checked here
    /// (see [`Equivocation::verify`]).
    pub fn new(a: Signal, b: Signal) -> Result<Self, NotEquivocation> {
        let (first, second) = if a.encode() <= b.encode() {
            (a, b)
        } else {
            (b, a)
        };
        let evidence = Equivocation {
            version: PROTOCOL_VERSION,
            first,
            second,
        };
        evidence.check_shape()?;
        Ok(evidence)
    }

    /// Whether the two signals are an equivocation in canonical order: same signer, proposal
    /// and sequence, different bodies, both of this protocol version, smaller encoding first.
    pub fn check_shape(&self) -> Result<(), NotEquivocation> {
        let (a, b) = (&self.first.body, &self.second.body);
        for version in [a.version, b.version] {
            if version != PROTOCOL_VERSION {
                return Err(NotEquivocation::SignalVersion(version));
            }
        }
        if a.signer != b.signer {
            return Err(NotEquivocation::OtherSigner);
        }
        if a.proposal != b.proposal {
            return Err(NotEquivocation::OtherProposal);
        }
        if a.sequence != b.sequence {
            return Err(NotEquivocation::OtherSequence);
        }
        if a == b {
            return Err(NotEquivocation::SameBody);
        }
        if self.first.encode() >= self.second.encode() {
            return Err(NotEquivocation::Order);
        }
        Ok(())
    }

    /// The signer proven to equivocate.
    pub fn signer(&self) -> &PublicKey {
        &self.first.body.signer
    }

    /// The proposal both signals are on.
    pub fn proposal(&self) -> &Hash32 {
        &self.first.body.proposal
    }

    /// The sequence number both signals carry.
    pub fn sequence(&self) -> u64 {
        self.first.body.sequence
    }

    /// The evidence id on a network: `tagged_hash("commons-signal/v1/evidence", network_id ||
    /// cbor(evidence))`. One pair has one encoding, so one id.
    pub fn id(&self, network_id: &Hash32) -> Hash32 {
        signing_digest(MessageKind::Evidence, network_id, &self.encode())
    }

    /// Whether both signatures are the signer's, for this network. (The attestations the
    /// signals carry are checked where the signals are applied, as for any signal.)
    pub fn verify(&self, network_id: &Hash32) -> bool {
        self.first.verify(network_id) && self.second.verify(network_id)
    }

    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        wire::encode(self)
    }

    /// Strictly decodes canonical bytes: bounded by the kind's limit before anything is
    /// read, each signal within a signal's own limit, and only a real equivocation in
    /// canonical order. Evidence of a newer version in this layout is `UnknownVersion`; a
    /// newer layout travels on a topic of its own version and never reaches this decoder.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let evidence: Equivocation = wire::decode(bytes, MessageKind::Evidence.max_bytes())?;
        match evidence.version.cmp(&PROTOCOL_VERSION) {
            std::cmp::Ordering::Equal => {}
            std::cmp::Ordering::Greater => {
                return Err(DecodeError::UnknownVersion {
                    found: evidence.version.into(),
                });
            }
            std::cmp::Ordering::Less => {
                return Err(DecodeError::Malformed(format!(
                    "protocol version {} does not exist",
                    evidence.version
                )));
            }
        }
        let signal_max = MessageKind::Signal.max_bytes();
        for signal in [&evidence.first, &evidence.second] {
            let len = signal.encode().len();
            if len > signal_max {
                return Err(DecodeError::Malformed(format!(
                    "a signal of {len} bytes, above the {signal_max}-byte limit of a signal"
                )));
            }
        }
        evidence
            .check_shape()
            .map_err(|e| DecodeError::Malformed(e.to_string()))?;
        Ok(evidence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Choice, SignalBody, Signed};
    use crate::{BoundedVec, NetworkSpec, SecretKey};

    fn signal(key: &SecretKey, choice: Choice, sequence: u64, time: u64) -> Signal {
        let body = SignalBody {
            version: PROTOCOL_VERSION,
            proposal: Hash32([7; 32]),
            choice,
            sequence,
            time,
            signer: key.public_key(),
            attestations: BoundedVec::default(),
        };
        Signed::sign(body, key, &NetworkSpec::regtest().network_id())
    }

    #[test]
    fn one_pair_has_one_encoding_whichever_order_it_is_given_in() {
        let key = SecretKey::from_seed("equivocator");
        let (a, b) = (
            signal(&key, Choice::Support, 3, 100),
            signal(&key, Choice::Override, 3, 100),
        );
        let ab = Equivocation::new(a.clone(), b.clone()).unwrap();
        let ba = Equivocation::new(b, a).unwrap();
        assert_eq!(ab, ba);
        assert!(ab.first.encode() < ab.second.encode());
        let bytes = ab.encode();
        assert_eq!(Equivocation::decode(&bytes).unwrap(), ab);
        let network = NetworkSpec::regtest().network_id();
        assert!(ab.verify(&network));
        assert_eq!(ab.id(&network), ba.id(&network));
        assert!(bytes.len() <= MessageKind::Evidence.max_bytes());
    }

    #[test]
    fn pairs_that_prove_nothing_are_refused() {
        let key = SecretKey::from_seed("equivocator");
        let other = SecretKey::from_seed("someone else");
        let a = signal(&key, Choice::Support, 3, 100);
        assert_eq!(
            Equivocation::new(a.clone(), signal(&other, Choice::Oppose, 3, 100)),
            Err(NotEquivocation::OtherSigner)
        );
        assert_eq!(
            Equivocation::new(a.clone(), signal(&key, Choice::Oppose, 4, 100)),
            Err(NotEquivocation::OtherSequence)
        );
        // The same statement signed twice (BIP340 signatures differ with their randomness).
        let again = Signed::sign(a.body.clone(), &key, &NetworkSpec::regtest().network_id());
        assert_ne!(again.signature, a.signature);
        assert_eq!(
            Equivocation::new(a.clone(), again),
            Err(NotEquivocation::SameBody)
        );
        let mut on_other = signal(&key, Choice::Oppose, 3, 100);
        on_other.body.proposal = Hash32([8; 32]);
        assert_eq!(
            Equivocation::new(a.clone(), on_other),
            Err(NotEquivocation::OtherProposal)
        );
    }

    #[test]
    fn the_decoder_refuses_what_is_not_canonical_evidence() {
        let key = SecretKey::from_seed("equivocator");
        let evidence = Equivocation::new(
            signal(&key, Choice::Support, 3, 100),
            signal(&key, Choice::Override, 3, 100),
        )
        .unwrap();
        // Swapped: well-formed CBOR, valid signatures, but not the one encoding.
        let swapped = Equivocation {
            first: evidence.second.clone(),
            second: evidence.first.clone(),
            ..evidence.clone()
        };
        assert!(matches!(
            Equivocation::decode(&swapped.encode()),
            Err(DecodeError::Malformed(_))
        ));
        let newer = Equivocation {
            version: 2,
            ..evidence.clone()
        };
        assert_eq!(
            Equivocation::decode(&newer.encode()),
            Err(DecodeError::UnknownVersion { found: 2 })
        );
        let zero = Equivocation {
            version: 0,
            ..evidence.clone()
        };
        assert!(matches!(
            Equivocation::decode(&zero.encode()),
            Err(DecodeError::Malformed(_))
        ));
        let mut bytes = evidence.encode();
        bytes.push(0);
        assert_eq!(
            Equivocation::decode(&bytes),
            Err(DecodeError::TrailingBytes(1))
        );
        let big = vec![0u8; MessageKind::Evidence.max_bytes() + 1];
        assert!(matches!(
            Equivocation::decode(&big),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(Equivocation::decode(b"\xa1\x67version\x01").is_err());
    }
}
