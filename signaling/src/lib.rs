//! The message model of commons-signal, protocol v1.
//!
//! This crate is sans-IO except for key files: it never touches the network, an async runtime
//! or the clock. Everything a node signs or verifies is defined here, so every implementation
//! agrees on the exact bytes:
//!
//! - [`wire`]: canonical CBOR encoding with bounded, strict decoding;
//! - [`keys`]: secp256k1 keys, x-only public keys and BIP340 signatures over tagged hashes;
//! - [`messages`]: attestations, presences, signals, proposals, release bundles;
//! - [`evidence`]: equivocation evidence, two conflicting signals of one signer;
//! - [`artifact`]: whole-file and per-chunk hashes of release artifacts;
//! - [`spec`]: network parameters, the built-in networks and spec files;
//! - [`spec_signatures`]: maintainer signatures over a spec, so a node can tell where it
//!   came from;
//! - [`spec_bundle`]: every version of a spec with its signatures, the chain a node checks
//!   from its anchor at start;
//! - [`sync`] and [`fetch`]: the payloads of the catch-up and artifact-fetch
//!   request-response protocols.

pub mod artifact;
pub mod evidence;
pub mod fetch;
pub mod keys;
pub mod messages;
pub mod spec;
pub mod spec_bundle;
pub mod spec_signatures;
pub mod sync;
pub mod types;
pub mod wire;

pub use evidence::Equivocation;
pub use keys::{KeyError, PublicKey, SecretKey, Signature};
pub use messages::{
    AnyMessage, Artifact, AttestationBody, Choice, MaintainerSignature, MessageKind, MultiSigned,
    Presence, PresenceBody, Proposal, ProposalBody, ReleaseBundle, ReleaseClass, ReleaseManifest,
    ReleaseVersion, Signal, SignalBody, Signed, SignedBody, UptimeAttestation,
};
pub use spec::{NetworkSpec, QualificationRule, SpecError, Succession};
pub use types::{BoundedBytes, BoundedString, BoundedVec, Hash32, WireIp};
pub use wire::{DecodeError, decode, encode};

/// The protocol version every message of this crate carries.
pub const PROTOCOL_VERSION: u8 = 1;
