//! The properties that the fuzz targets of commons-signal check: one function per decoder or
//! parser that sees untrusted bytes, each of which panics when a property fails.
//!
//! Every fuzz target in `fuzz/fuzz_targets/` is `Target::X.check(data)`, and the corpus
//! regression test (`tests/corpus.rs`) feeds every committed corpus file to the same
//! function on stable, so what fuzzing once found stays fixed without a fuzzing engine.
//!
//! The properties go beyond "does not panic":
//! - a strictly decoded message re-encodes to the identical bytes, its signature is read
//!   from its last 64 bytes, its signing digest computed from the input agrees with the
//!   one computed from the decoded body, and [`AnyMessage`] finds the same kind;
//! - only a well-formed envelope of a newer version is `UnknownVersion`;
//! - decoding never holds more heap than a fixed multiple of the kind's size limit
//!   ([`ALLOCATION_FACTOR`]; a failure a fixed multiple of the input's length more, for
//!   the error text of serde, [`ERROR_TEXT_FACTOR`]), an error keeps at most
//!   [`MAX_ERROR_TEXT`] bytes of text, and the envelope probe allocates nothing ([`alloc`]);
//! - the JSON-RPC envelope agrees with a plain JSON parse about what is JSON, and bounds
//!   every batch;
//! - a spec that loads from TOML or JSON validates, writes as TOML without panicking, and
//!   reads back the same from TOML and from JSON.

use commons_rpc::envelope::{self, Body, Call, MAX_BATCH_LEN};
use commons_signaling::fetch::{ChunkRun, FetchRequest, FetchResponse};
use commons_signaling::messages::{MultiSignedBody, SignedBody};
use commons_signaling::sync::{SyncRequest, SyncResponse};
use commons_signaling::wire::{Authentication, MAX_ERROR_TEXT, future_envelope_version};
use commons_signaling::{
    AnyMessage, AttestationBody, DecodeError, Equivocation, MessageKind, MultiSigned, NetworkSpec,
    PresenceBody, ProposalBody, ReleaseManifest, SignalBody, Signed,
};
use serde_json::Value;

pub mod alloc;

/// How much heap a decoder may hold at its peak, as a multiple of the largest input its kind
/// accepts: the decoded value, the canonical re-encoding it is compared with, and ciborium's
/// buffers.
pub const ALLOCATION_FACTOR: usize = 4;

/// How much more heap a failed decode may hold for a moment, per input byte. serde writes
/// the offending value into its error text, escaped (`\u{7f}`, six characters, for one DEL
/// byte), into a string that may have twice the capacity of its length; the decoder keeps
/// at most [`MAX_ERROR_TEXT`] bytes of it. Fuzzing found this (a 148-byte fetch request of
/// DEL characters held 1,600 bytes, over the 4 x 256 of its kind).
pub const ERROR_TEXT_FACTOR: usize = 12;

/// Every fuzz target, named as its file in `fuzz/fuzz_targets/` and its corpus directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// [`commons_signaling::UptimeAttestation::decode`].
    Attestation,
    /// [`commons_signaling::Presence::decode`].
    Presence,
    /// [`commons_signaling::Signal::decode`].
    Signal,
    /// [`commons_signaling::Proposal::decode`].
    Proposal,
    /// [`commons_signaling::ReleaseBundle::decode`].
    Release,
    /// [`Equivocation::decode`], equivocation evidence.
    Evidence,
    /// [`AnyMessage::decode`], which `commons-cli` uses on files of unknown kind.
    AnyMessage,
    /// [`future_envelope_version`], the in-place probe for a newer version's envelope.
    EnvelopeProbe,
    /// [`SyncRequest::decode`].
    SyncRequest,
    /// [`SyncResponse::decode`].
    SyncResponse,
    /// [`FetchRequest::decode`].
    FetchRequest,
    /// [`FetchResponse::decode`].
    FetchResponse,
    /// [`ChunkRun::decode`], the request that opens a `fetch/2` stream.
    ChunkRun,
    /// [`envelope::parse_body`], the JSON-RPC request parser.
    RpcRequest,
    /// A network spec file in TOML.
    SpecToml,
    /// A network spec file in JSON.
    SpecJson,
    /// A `commons-sim` scenario file.
    Scenario,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 17] = [
        Target::Attestation,
        Target::Presence,
        Target::Signal,
        Target::Proposal,
        Target::Release,
        Target::Evidence,
        Target::AnyMessage,
        Target::EnvelopeProbe,
        Target::SyncRequest,
        Target::SyncResponse,
        Target::FetchRequest,
        Target::FetchResponse,
        Target::ChunkRun,
        Target::RpcRequest,
        Target::SpecToml,
        Target::SpecJson,
        Target::Scenario,
    ];

    /// The file and corpus directory name.
    pub fn name(self) -> &'static str {
        match self {
            Target::Attestation => "attestation",
            Target::Presence => "presence",
            Target::Signal => "signal",
            Target::Proposal => "proposal",
            Target::Release => "release",
            Target::Evidence => "evidence",
            Target::AnyMessage => "any_message",
            Target::EnvelopeProbe => "envelope_probe",
            Target::SyncRequest => "sync_request",
            Target::SyncResponse => "sync_response",
            Target::FetchRequest => "fetch_request",
            Target::FetchResponse => "fetch_response",
            Target::ChunkRun => "chunk_run",
            Target::RpcRequest => "rpc_request",
            Target::SpecToml => "spec_toml",
            Target::SpecJson => "spec_json",
            Target::Scenario => "scenario",
        }
    }

    /// Runs the target's properties on `data`; panics when one fails.
    pub fn check(self, data: &[u8]) {
        match self {
            Target::Attestation => signed::<AttestationBody>(data),
            Target::Presence => signed::<PresenceBody>(data),
            Target::Signal => signed::<SignalBody>(data),
            Target::Proposal => multi_signed::<ProposalBody>(data),
            Target::Release => multi_signed::<ReleaseManifest>(data),
            Target::Evidence => evidence(data),
            Target::AnyMessage => any_message(data),
            Target::EnvelopeProbe => envelope_probe(data),
            Target::SyncRequest => strict(
                data,
                commons_signaling::sync::MAX_REQUEST_BYTES,
                SyncRequest::decode,
                SyncRequest::encode,
            ),
            Target::SyncResponse => strict(
                data,
                commons_signaling::sync::MAX_RESPONSE_BYTES,
                SyncResponse::decode,
                SyncResponse::encode,
            ),
            Target::FetchRequest => strict(
                data,
                commons_signaling::fetch::MAX_REQUEST_BYTES,
                FetchRequest::decode,
                FetchRequest::encode,
            ),
            Target::FetchResponse => fetch_response(data),
            Target::ChunkRun => strict(
                data,
                commons_signaling::fetch::MAX_RUN_REQUEST_BYTES,
                ChunkRun::decode,
                ChunkRun::encode,
            ),
            Target::RpcRequest => rpc_request(data),
            Target::SpecToml => spec_toml(data),
            Target::SpecJson => spec_json(data),
            Target::Scenario => scenario(data),
        }
    }
}

/// The network the digest checks use.
fn network() -> commons_signaling::Hash32 {
    NetworkSpec::regtest().network_id()
}

/// Runs `decode` on `data` under the allocation meter and checks its peak: within
/// [`ALLOCATION_FACTOR`] times `limit`, and for a failure [`ERROR_TEXT_FACTOR`] bytes per
/// input byte more, while what the error keeps is at most [`MAX_ERROR_TEXT`] bytes.
fn metered<T>(
    what: &str,
    limit: usize,
    data: &[u8],
    decode: impl FnOnce() -> Result<T, DecodeError>,
) -> Result<T, DecodeError> {
    let (result, peak) = alloc::peak_during(decode);
    let bound = match &result {
        Ok(_) => ALLOCATION_FACTOR * limit,
        Err(error) => {
            if let DecodeError::Malformed(text) = error {
                assert!(
                    text.len() <= MAX_ERROR_TEXT,
                    "{what}: an error of {} bytes: {text}",
                    text.len()
                );
            }
            ALLOCATION_FACTOR * limit + ERROR_TEXT_FACTOR * data.len()
        }
    };
    assert!(
        peak <= bound,
        "{what}: decoding {} bytes held {peak} bytes of heap, more than {bound}",
        data.len()
    );
    result
}

/// What every versioned decoder's error must mean.
fn check_error(kind: MessageKind, data: &[u8], error: &DecodeError, auth: Authentication) {
    match error {
        DecodeError::TooLarge { len, max } => {
            assert_eq!((*len, *max), (data.len(), kind.max_bytes()));
            assert!(data.len() > kind.max_bytes());
        }
        DecodeError::UnknownVersion { found } => {
            assert!(*found > 1, "version {found} is not a newer version");
            assert!(data.len() <= kind.max_bytes());
            // Either the v1 layout declaring a newer version, or a well-formed envelope.
            if let Some(probed) = future_envelope_version(data, auth) {
                assert_eq!(probed, *found);
            }
        }
        DecodeError::TrailingBytes(n) => assert!(*n > 0 && *n < data.len()),
        DecodeError::Malformed(_) | DecodeError::NonCanonical => {
            if let Some(version) = future_envelope_version(data, auth) {
                assert!(
                    version <= 1,
                    "an envelope of version {version} must be UnknownVersion"
                );
            }
        }
    }
}

fn signed<B: SignedBody + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let kind = B::KIND;
    let decoded = metered(kind.name(), kind.max_bytes(), data, || {
        Signed::<B>::decode(data)
    });
    match decoded {
        Ok(message) => {
            assert_eq!(
                message.encode(),
                data,
                "a decoded message re-encodes exactly"
            );
            assert_eq!(
                Signed::<B>::signature_of_encoding(data),
                Some(message.signature)
            );
            let net = network();
            let (again, digest) =
                Signed::<B>::decode_with_digest(data, &net).expect("decodes as before");
            assert_eq!(again, message);
            assert_eq!(digest, message.digest(&net));
            assert_eq!(message.body.version(), 1);
            let any = AnyMessage::decode(data).expect("AnyMessage decodes every kind");
            assert_eq!(any.kind(), kind);
        }
        Err(error) => check_error(kind, data, &error, Authentication::Signature),
    }
}

fn multi_signed<B: MultiSignedBody + PartialEq + std::fmt::Debug>(data: &[u8]) {
    let kind = B::KIND;
    let decoded = metered(kind.name(), kind.max_bytes(), data, || {
        MultiSigned::<B>::decode(data)
    });
    match decoded {
        Ok(message) => {
            assert_eq!(
                message.encode(),
                data,
                "a decoded message re-encodes exactly"
            );
            assert_eq!(message.body.version(), 1);
            let any = AnyMessage::decode(data).expect("AnyMessage decodes every kind");
            assert_eq!(any.kind(), kind);
        }
        Err(error) => check_error(kind, data, &error, Authentication::Signatures),
    }
}

/// Evidence decodes only as a real equivocation in its one canonical order, re-encodes
/// exactly, and is bounded like every kind.
fn evidence(data: &[u8]) {
    let kind = MessageKind::Evidence;
    let decoded = metered(kind.name(), kind.max_bytes(), data, || {
        Equivocation::decode(data)
    });
    match decoded {
        Ok(evidence) => {
            assert_eq!(
                evidence.encode(),
                data,
                "decoded evidence re-encodes exactly"
            );
            assert_eq!(evidence.version, 1);
            assert_eq!(evidence.check_shape(), Ok(()));
            // Given the other way round, the same pair makes the same evidence.
            let again = Equivocation::new(evidence.second.clone(), evidence.first.clone());
            assert_eq!(again.as_ref(), Ok(&evidence));
            let signal_max = MessageKind::Signal.max_bytes();
            assert!(evidence.first.encode().len() <= signal_max);
            assert!(evidence.second.encode().len() <= signal_max);
            let any = AnyMessage::decode(data).expect("AnyMessage decodes every kind");
            assert_eq!(any.kind(), kind);
        }
        Err(DecodeError::TooLarge { len, max }) => {
            assert_eq!((len, max), (data.len(), kind.max_bytes()));
            assert!(data.len() > kind.max_bytes());
        }
        Err(DecodeError::UnknownVersion { found }) => assert!(found > 1),
        Err(DecodeError::TrailingBytes(n)) => assert!(n > 0 && n < data.len()),
        Err(DecodeError::Malformed(_) | DecodeError::NonCanonical) => {}
    }
}

fn any_message(data: &[u8]) {
    let largest = MessageKind::ALL
        .iter()
        .map(|k| k.max_bytes())
        .max()
        .unwrap_or(0);
    // Up to five decoders run one after the other, each within its own bound.
    let decoded = metered("any message", largest, data, || AnyMessage::decode(data));
    if let Ok(message) = decoded {
        let bytes = match &message {
            AnyMessage::Attestation(m) => m.encode(),
            AnyMessage::Presence(m) => m.encode(),
            AnyMessage::Signal(m) => m.encode(),
            AnyMessage::Proposal(m) => m.encode(),
            AnyMessage::Release(m) => m.encode(),
            AnyMessage::Evidence(m) => m.encode(),
        };
        assert_eq!(bytes, data);
    }
}

fn envelope_probe(data: &[u8]) {
    for auth in [Authentication::Signature, Authentication::Signatures] {
        let (version, peak) = alloc::peak_during(|| future_envelope_version(data, auth));
        assert_eq!(peak, 0, "the envelope probe allocates nothing");
        let Some(version) = version else { continue };
        // What the probe calls well-formed, a full CBOR parser reads as exactly one value of
        // that shape.
        let mut reader = data;
        let value: ciborium::value::Value =
            ciborium::de::from_reader_with_recursion_limit(&mut reader, 64)
                .expect("a well-formed envelope parses as CBOR");
        assert!(reader.is_empty(), "nothing follows a well-formed envelope");
        let map = value.as_map().expect("an envelope is a map");
        assert_eq!(map.len(), 2);
        assert_eq!(map[0].0.as_text(), Some("body"));
        let body = map[0].1.as_map().expect("its body is a map");
        assert_eq!(body[0].0.as_text(), Some("version"));
        assert_eq!(body[0].1.as_integer().map(u64::try_from), Some(Ok(version)));
        let auth_field = match auth {
            Authentication::Signature => "signature",
            Authentication::Signatures => "signatures",
        };
        assert_eq!(map[1].0.as_text(), Some(auth_field));
    }
}

/// A strictly decoded payload: canonical, so it re-encodes exactly.
fn strict<T>(
    data: &[u8],
    limit: usize,
    decode: impl FnOnce(&[u8]) -> Result<T, DecodeError>,
    encode: impl Fn(&T) -> Vec<u8>,
) {
    let decoded = metered("payload", limit, data, || decode(data));
    match decoded {
        Ok(value) => assert_eq!(encode(&value), data, "re-encodes exactly"),
        Err(DecodeError::TooLarge { len, max }) => {
            assert_eq!((len, max), (data.len(), limit));
            assert!(len > max);
        }
        Err(DecodeError::UnknownVersion { .. }) => panic!("payloads carry no version"),
        Err(_) => {}
    }
}

/// Fetch responses skip the canonical check (chunks are checked against their digests), so
/// the property is weaker: what decodes re-encodes to a canonical form that decodes to the
/// same value and fits the limit. (Not necessarily shorter than the input: fuzzing found
/// that ciborium also reads an enum variant as its bare name followed by its content, one
/// byte shorter than the canonical one-entry map.)
fn fetch_response(data: &[u8]) {
    let limit = commons_signaling::fetch::MAX_RESPONSE_BYTES;
    let decoded = metered("fetch response", limit, data, || {
        FetchResponse::decode(data)
    });
    if let Ok(response) = decoded {
        let canonical = response.encode();
        assert!(canonical.len() <= limit);
        assert_eq!(FetchResponse::decode(&canonical).as_ref(), Ok(&response));
    }
}

fn rpc_request(data: &[u8]) {
    let body = envelope::parse_body(data);
    let plain = serde_json::from_slice::<Value>(data);
    match (&body, plain) {
        // Past the batch limit elements are only skipped, not built, and skipping checks
        // less than building (numbers out of range, say): such a body may be refused as
        // too long rather than as not JSON. Refused either way, with nothing run.
        (Body::Refused { code, message }, Err(_)) => assert!(
            *code == commons_rpc::code::PARSE_ERROR
                || (*code == commons_rpc::code::INVALID_REQUEST && message.contains("per batch")),
            "{code} {message}"
        ),
        (_, Err(e)) => panic!("not JSON ({e}) but parsed as {body:?}"),
        (Body::Refused { code, .. }, Ok(Value::Array(items))) => {
            assert_eq!(*code, commons_rpc::code::INVALID_REQUEST);
            assert!(items.is_empty() || items.len() > MAX_BATCH_LEN);
        }
        (Body::Batch(calls), Ok(Value::Array(items))) => {
            assert!((1..=MAX_BATCH_LEN).contains(&calls.len()));
            let expected: Vec<Call> = items.into_iter().map(envelope::parse_call).collect();
            assert_eq!(calls, &expected);
        }
        (Body::Single(call), Ok(value)) if !value.is_array() => {
            assert_eq!(call, &envelope::parse_call(value));
        }
        (body, Ok(value)) => panic!("{value} parsed as {body:?}"),
    }
    let calls = match &body {
        Body::Single(call) => std::slice::from_ref(call),
        Body::Batch(calls) => calls.as_slice(),
        Body::Refused { .. } => &[],
    };
    for call in calls {
        if let Call::Request { id, params, .. } = call {
            assert!(matches!(
                params,
                Value::Null | Value::Object(_) | Value::Array(_)
            ));
            assert!(matches!(
                id,
                None | Some(Value::Null | Value::String(_) | Value::Number(_))
            ));
        }
    }
}

/// A loaded spec validates, writes as TOML, and reads back the same from TOML and JSON.
fn spec_round_trips(spec: &NetworkSpec) {
    if spec.validate("fuzz").is_err() {
        return;
    }
    let toml_text = spec.to_toml();
    let from_toml: NetworkSpec = toml::from_str(&toml_text).expect("its own TOML reads back");
    assert_eq!(&from_toml, spec);
    let json_text = serde_json::to_string(spec).expect("a spec serializes to JSON");
    let from_json: NetworkSpec = serde_json::from_str(&json_text).expect("its JSON reads back");
    assert_eq!(&from_json, spec);
    assert_eq!(from_json.network_id(), spec.network_id());
}

fn spec_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = toml::from_str::<NetworkSpec>(text) {
        spec_round_trips(&spec);
    }
}

fn spec_json(data: &[u8]) {
    if let Ok(spec) = serde_json::from_slice::<NetworkSpec>(data) {
        spec_round_trips(&spec);
    }
}

fn scenario(data: &[u8]) {
    use commons_sim::sybil::scenario::Scenario;
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(scenario) = Scenario::from_toml_str(text, "fuzz.toml") {
        // Resolving checks the scenario's rules and builds its spec; an error is a message.
        let _ = scenario.resolve();
    }
}
