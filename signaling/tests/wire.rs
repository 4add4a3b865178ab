//! Canonical CBOR: round trips and every way a decoder must refuse bytes.

mod common;

use commons_signaling::wire::{decode, encode};
use commons_signaling::{
    AnyMessage, BoundedVec, DecodeError, MessageKind, Presence, Proposal, ReleaseBundle, Signal,
    UptimeAttestation,
};
use proptest::prelude::*;

#[test]
fn every_kind_round_trips() {
    let net = common::network();
    let a = common::attestation();
    assert_eq!(UptimeAttestation::decode(&a.encode()).unwrap(), a);
    assert!(a.verify(&net));
    let p = common::presence();
    assert_eq!(Presence::decode(&p.encode()).unwrap(), p);
    let s = common::signal();
    assert_eq!(Signal::decode(&s.encode()).unwrap(), s);
    assert!(s.verify(&net));
    let pr = common::proposal();
    assert_eq!(Proposal::decode(&pr.encode()).unwrap(), pr);
    let r = common::release();
    assert_eq!(ReleaseBundle::decode(&r.encode()).unwrap(), r);
}

#[test]
fn any_message_finds_the_kind() {
    let cases = [
        (common::signal().encode(), MessageKind::Signal),
        (common::proposal().encode(), MessageKind::Proposal),
        (common::release().encode(), MessageKind::Release),
        (common::presence().encode(), MessageKind::Presence),
        (common::attestation().encode(), MessageKind::Attestation),
    ];
    for (bytes, kind) in cases {
        assert_eq!(AnyMessage::decode(&bytes).unwrap().kind(), kind);
    }
    assert!(matches!(
        AnyMessage::decode(b"\xa0"),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut bytes = common::signal().encode();
    bytes.push(0);
    assert_eq!(Signal::decode(&bytes), Err(DecodeError::TrailingBytes(1)));
}

#[test]
fn oversized_input_is_rejected_before_decoding() {
    let bytes = vec![0u8; MessageKind::Signal.max_bytes() + 1];
    assert!(matches!(
        Signal::decode(&bytes),
        Err(DecodeError::TooLarge { .. })
    ));
}

#[test]
fn unknown_version_is_reported_as_such() {
    let mut signal = common::signal();
    signal.body.version = 2;
    assert_eq!(
        Signal::decode(&signal.encode()),
        Err(DecodeError::UnknownVersion { found: 2 })
    );

    // A future version whose layout differs is still reported by its version, as long as
    // it is a well-formed envelope of its kind.
    use ciborium::value::Value;
    let future = Value::Map(vec![
        (
            Value::Text("body".into()),
            Value::Map(vec![
                (Value::Text("version".into()), Value::Integer(7.into())),
                (Value::Text("something".into()), Value::Bool(true)),
            ]),
        ),
        (Value::Text("signature".into()), Value::Bytes(vec![0; 96])),
    ]);
    assert_eq!(
        Signal::decode(&encode(&future)),
        Err(DecodeError::UnknownVersion { found: 7 })
    );
}

fn text(s: &str) -> ciborium::value::Value {
    ciborium::value::Value::Text(s.into())
}

fn int(i: u64) -> ciborium::value::Value {
    ciborium::value::Value::Integer(i.into())
}

/// A kind's strict decoder, forgetting what it decoded.
type Decoder = fn(&[u8]) -> Result<(), DecodeError>;

/// Every kind's strict decoder, as `(name, decode)`.
fn decoders() -> [(&'static str, Decoder); 5] {
    [
        ("attestation", |b| UptimeAttestation::decode(b).map(drop)),
        ("presence", |b| Presence::decode(b).map(drop)),
        ("signal", |b| Signal::decode(b).map(drop)),
        ("proposal", |b| Proposal::decode(b).map(drop)),
        ("release", |b| ReleaseBundle::decode(b).map(drop)),
    ]
}

/// Regression (issue 13, known finding): anything that parsed as CBOR with a `version`
/// other than 1 at the top or in `body` was `UnknownVersion`, which relays ignore, so junk
/// never cost its sender any score. Only a well-formed envelope of a newer version is
/// `UnknownVersion` now; the rest is malformed (rejected).
#[test]
fn junk_with_a_version_field_is_malformed_not_a_future_version() {
    use ciborium::value::Value;
    let signature = || (text("signature"), Value::Bytes(vec![0; 64]));
    let body = |version: u64| {
        (
            text("body"),
            Value::Map(vec![(text("version"), int(version))]),
        )
    };
    let junk: Vec<(&str, Vec<u8>)> = vec![
        (
            "top-level version",
            hex::decode("a16776657273696f6e02").unwrap(),
        ),
        ("body without signature", encode(&Value::Map(vec![body(2)]))),
        (
            "signature before body",
            encode(&Value::Map(vec![signature(), body(2)])),
        ),
        (
            "version not the body's first field",
            encode(&Value::Map(vec![
                (
                    text("body"),
                    Value::Map(vec![(text("x"), int(0)), (text("version"), int(2))]),
                ),
                signature(),
            ])),
        ),
        (
            "signature not a byte string",
            encode(&Value::Map(vec![body(2), (text("signature"), int(1))])),
        ),
        (
            "a third field",
            encode(&Value::Map(vec![body(2), signature(), (text("x"), int(0))])),
        ),
        ("version 0", encode(&Value::Map(vec![body(0), signature()]))),
        (
            "version as text",
            encode(&Value::Map(vec![
                (text("body"), Value::Map(vec![(text("version"), text("2"))])),
                signature(),
            ])),
        ),
        ("trailing byte", {
            let mut b = encode(&Value::Map(vec![body(2), signature()]));
            b.push(0);
            b
        }),
        ("truncated", {
            let b = encode(&Value::Map(vec![body(2), signature()]));
            b[..b.len() - 1].to_vec()
        }),
        // An indefinite-length body map: not the one encoding any version may use.
        ("indefinite length", {
            let mut b = vec![0xa2, 0x64];
            b.extend_from_slice(b"body");
            b.push(0xbf);
            b.push(0x67);
            b.extend_from_slice(b"version");
            b.push(0x02);
            b.push(0xff);
            b.push(0x69);
            b.extend_from_slice(b"signature");
            b.extend_from_slice(&[0x58, 0x40]);
            b.extend_from_slice(&[0; 64]);
            b
        }),
    ];
    for (name, decode) in decoders() {
        for (what, bytes) in &junk {
            let error = decode(bytes).unwrap_err();
            assert!(
                !matches!(error, DecodeError::UnknownVersion { .. }),
                "{name}, {what}: {error:?}"
            );
        }
    }

    // A v1-layout message declaring version 0 is not from any version either.
    let mut signal = common::signal();
    signal.body.version = 0;
    assert!(matches!(
        Signal::decode(&signal.encode()),
        Err(DecodeError::Malformed(_))
    ));

    // Well-formed envelopes of version 2: single-signer kinds with a `signature` byte string
    // (of any length: a new version may change the scheme), maintainer-signed kinds with a
    // `signatures` array. Each is its own kind's envelope only.
    let single = encode(&Value::Map(vec![body(2), signature()]));
    let multi = encode(&Value::Map(vec![
        body(2),
        (text("signatures"), Value::Array(vec![int(1)])),
    ]));
    for (name, decode) in decoders() {
        let (mine, other) = if matches!(name, "proposal" | "release") {
            (&multi, &single)
        } else {
            (&single, &multi)
        };
        assert_eq!(
            decode(mine),
            Err(DecodeError::UnknownVersion { found: 2 }),
            "{name}"
        );
        assert!(
            !matches!(decode(other), Err(DecodeError::UnknownVersion { .. })),
            "{name}"
        );
    }
    assert_eq!(
        AnyMessage::decode(&multi),
        Err(DecodeError::UnknownVersion { found: 2 })
    );
}

#[test]
fn reordered_map_keys_are_non_canonical() {
    use ciborium::value::Value;
    let bytes = common::attestation().encode();
    let value: Value = ciborium::de::from_reader(&bytes[..]).unwrap();
    let Value::Map(mut entries) = value else {
        panic!("messages are maps")
    };
    entries.reverse();
    let reordered = encode(&Value::Map(entries));
    assert_ne!(reordered, bytes);
    assert_eq!(
        UptimeAttestation::decode(&reordered),
        Err(DecodeError::NonCanonical)
    );
}

#[test]
fn long_form_integers_are_non_canonical() {
    let bytes = common::attestation().encode();
    // "seen_epochs": 27 is the single byte 0x18 0x1b; write it as a 4-byte integer instead.
    let key = b"seen_epochs";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    assert_eq!(&bytes[at..at + 2], &[0x18, 27]);
    let mut long = bytes[..at].to_vec();
    long.extend_from_slice(&[0x1a, 0, 0, 0, 27]);
    long.extend_from_slice(&bytes[at + 2..]);
    assert_eq!(
        UptimeAttestation::decode(&long),
        Err(DecodeError::NonCanonical)
    );
}

#[test]
fn unknown_fields_are_non_canonical() {
    use ciborium::value::Value;
    let bytes = common::attestation().encode();
    let Value::Map(mut entries) = ciborium::de::from_reader(&bytes[..]).unwrap() else {
        unreachable!()
    };
    entries.push((Value::Text("extra".into()), Value::Bool(true)));
    assert_eq!(
        UptimeAttestation::decode(&encode(&Value::Map(entries))),
        Err(DecodeError::NonCanonical)
    );
}

#[test]
fn declared_lengths_beyond_the_bound_are_rejected_without_allocating() {
    // An array header claiming 2^32 elements, in a message of a few bytes.
    type Small = BoundedVec<u8, 4>;
    let bytes = [0x9a, 0xff, 0xff, 0xff, 0xff, 0x00];
    assert!(matches!(
        decode::<Small>(&bytes, 64),
        Err(DecodeError::Malformed(_))
    ));
    let five = encode(&vec![1u8, 2, 3, 4, 5]);
    let err = decode::<Small>(&five, 64).unwrap_err();
    assert!(err.to_string().contains("at most 4"), "{err}");
    // Indefinite-length arrays are bounded too, and non-canonical.
    let indefinite = [0x9f, 1, 2, 3, 4, 5, 0xff];
    assert!(decode::<Small>(&indefinite, 64).is_err());
    let indefinite_ok = [0x9f, 1, 2, 0xff];
    assert_eq!(
        decode::<Small>(&indefinite_ok, 64),
        Err(DecodeError::NonCanonical)
    );
}

#[test]
fn wrong_key_length_is_malformed() {
    let bytes = common::attestation().encode();
    let key = b"attester";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    assert_eq!(bytes[at], 0x58); // byte string, one-byte length
    let mut short = bytes[..at].to_vec();
    short.extend_from_slice(&[0x58, 31]);
    short.extend_from_slice(&bytes[at + 2..at + 2 + 31]);
    short.extend_from_slice(&bytes[at + 2 + 32..]);
    assert!(matches!(
        UptimeAttestation::decode(&short),
        Err(DecodeError::Malformed(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = AnyMessage::decode(&bytes);
    }

    #[test]
    fn single_byte_corruption_never_panics_and_never_verifies_as_the_original(
        index in 0usize..2000,
        value in any::<u8>(),
    ) {
        static SIGNAL: std::sync::OnceLock<Signal> = std::sync::OnceLock::new();
        let signal = SIGNAL.get_or_init(common::signal).clone();
        let mut bytes = signal.encode();
        let index = index % bytes.len();
        prop_assume!(bytes[index] != value);
        bytes[index] = value;
        if let Ok(decoded) = Signal::decode(&bytes) {
            // Whatever still decodes is a different message, so the old signature fails.
            prop_assert_ne!(&decoded, &signal);
            prop_assert!(!decoded.verify(&common::network()));
        }
    }

    #[test]
    fn signals_round_trip(sequence in any::<u64>(), time in any::<u64>(), choice in 0usize..4) {
        static SIGNAL: std::sync::OnceLock<Signal> = std::sync::OnceLock::new();
        let mut signal = SIGNAL.get_or_init(common::signal).clone();
        signal.body.sequence = sequence;
        signal.body.time = time;
        signal.body.choice = commons_signaling::Choice::ALL[choice];
        let bytes = signal.encode();
        prop_assert_eq!(Signal::decode(&bytes).unwrap(), signal);
    }
}

#[test]
fn digest_from_the_encoding_equals_the_digest_of_the_body() {
    let net = common::network();
    for bytes in [common::signal().encode(), common::presence().encode()] {
        if let Ok((signal, digest)) = Signal::decode_with_digest(&bytes, &net) {
            assert_eq!(digest, signal.digest(&net));
            assert!(signal.verify_digest(&digest));
            assert_eq!(
                Signal::signature_of_encoding(&bytes),
                Some(signal.signature)
            );
        } else {
            let (presence, digest) = Presence::decode_with_digest(&bytes, &net).unwrap();
            assert_eq!(digest, presence.digest(&net));
        }
    }
    let (attestation, digest) =
        UptimeAttestation::decode_with_digest(&common::attestation().encode(), &net).unwrap();
    assert_eq!(digest, attestation.digest(&net));
    assert_eq!(Signal::signature_of_encoding(&[0; 10]), None);
}

/// A fetch request whose chunk digest is a text of `len` DEL characters: serde's error
/// quotes it, escaped as six characters per byte.
fn fetch_request_with_text_chunk(len: u8) -> Vec<u8> {
    let mut bytes = vec![0xa1, 0x65];
    bytes.extend_from_slice(b"chunk");
    bytes.extend_from_slice(&[0x78, len]);
    bytes.extend(std::iter::repeat_n(0x7f, usize::from(len)));
    bytes
}

#[test]
fn an_error_quoting_the_input_keeps_its_start_and_end_within_the_bound() {
    use commons_signaling::fetch::FetchRequest;
    use commons_signaling::wire::MAX_ERROR_TEXT;
    // Found by fuzzing (fuzz/corpus/fetch_request/heap-of-an-error-message): the whole
    // quoted text was kept, about six bytes of error for every byte of input.
    for len in [127, 240] {
        let bytes = fetch_request_with_text_chunk(len);
        let Err(DecodeError::Malformed(text)) = FetchRequest::decode(&bytes) else {
            panic!("a text where a digest belongs is malformed");
        };
        assert!(text.len() <= MAX_ERROR_TEXT, "{} bytes: {text}", text.len());
        assert!(text.starts_with("invalid type: string \"\\u{7f}"), "{text}");
        assert!(text.contains(" bytes cut]"), "{text}");
        assert!(
            text.ends_with("\", expected struct variant FetchRequest::Chunk"),
            "what was expected survives: {text}"
        );
    }
}

#[test]
fn a_short_error_is_kept_whole() {
    use commons_signaling::fetch::FetchRequest;
    let bytes = fetch_request_with_text_chunk(2);
    let Err(DecodeError::Malformed(text)) = FetchRequest::decode(&bytes) else {
        panic!("a text where a digest belongs is malformed");
    };
    assert!(!text.contains("cut"), "{text}");
    assert!(text.contains("\\u{7f}\\u{7f}\""), "{text}");
}
