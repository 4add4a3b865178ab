//! The published test vectors in `docs/test-vectors/v1.json`: fixed keys, messages, their
//! exact bytes, digests and signatures. This test checks the code against the file, so any
//! change to the wire format shows up here; a second implementation can run the same checks.
//!
//! To regenerate after a deliberate format change: `COMMONS_UPDATE_VECTORS=1 cargo test -p
//! commons-signaling --test vectors`, and say so in the change.

mod common;

use commons_signaling::keys::tagged_hash;
use commons_signaling::{AnyMessage, DecodeError, NetworkSpec};
use serde_json::{Value, json};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/test-vectors/v1.json");

fn message_vector(description: &str, bytes: Vec<u8>) -> Value {
    let message = AnyMessage::decode(&bytes).expect("fixtures decode");
    let net = common::network();
    let (digest, signatures) = match &message {
        AnyMessage::Attestation(m) => (m.digest(&net), vec![(m.body.attester, m.signature)]),
        AnyMessage::Presence(m) => (m.digest(&net), vec![(m.body.node, m.signature)]),
        AnyMessage::Signal(m) => (m.digest(&net), vec![(m.body.signer, m.signature)]),
        AnyMessage::Proposal(m) => (
            m.id(&net),
            m.signatures
                .iter()
                .map(|s| (s.signer, s.signature))
                .collect(),
        ),
        AnyMessage::Release(m) => (
            m.id(&net),
            m.signatures
                .iter()
                .map(|s| (s.signer, s.signature))
                .collect(),
        ),
        // Unsigned itself: its id, and the signatures of the two signals it carries, each
        // over its own signal's digest.
        AnyMessage::Evidence(m) => {
            let signals = [&m.first, &m.second];
            let signatures = signals
                .iter()
                .map(|s| {
                    json!({
                        "public_key": s.body.signer.to_hex(),
                        "signature": hex::encode(s.signature.0),
                        "digest": s.digest(&net).to_hex(),
                    })
                })
                .collect::<Vec<_>>();
            return json!({
                "description": description,
                "kind": message.kind().name(),
                "cbor": hex::encode(&bytes),
                "signed_digest": m.id(&net).to_hex(),
                "signatures": signatures,
                "json": serde_json::to_value(&message).unwrap(),
            });
        }
    };
    json!({
        "description": description,
        "kind": message.kind().name(),
        "cbor": hex::encode(&bytes),
        "signed_digest": digest.to_hex(),
        "signatures": signatures.iter().map(|(k, s)| json!({
            "public_key": k.to_hex(),
            "signature": hex::encode(s.0),
        })).collect::<Vec<_>>(),
        "json": serde_json::to_value(&message).unwrap(),
    })
}

fn invalid_vector(description: &str, bytes: Vec<u8>) -> Value {
    let error = match AnyMessage::decode(&bytes) {
        Ok(_) => panic!("{description}: must not decode"),
        Err(DecodeError::TooLarge { .. }) => "too_large",
        Err(DecodeError::Malformed(_)) => "malformed",
        Err(DecodeError::TrailingBytes(_)) => "trailing_bytes",
        Err(DecodeError::UnknownVersion { .. }) => "unknown_version",
        Err(DecodeError::NonCanonical) => "non_canonical",
    };
    json!({ "description": description, "cbor": hex::encode(&bytes), "error": error })
}

fn build() -> Value {
    let seeds = ["alice", "bob"];
    let keys: Vec<Value> = seeds
        .iter()
        .map(|seed| json!({ "seed": seed, "public_key": common::key(seed).public_key().to_hex() }))
        .chain((0..7).map(|i| {
            let seed = commons_signaling::spec::regtest_maintainer_seed(i);
            json!({ "seed": seed, "public_key": common::key(&seed).public_key().to_hex() })
        }))
        .collect();

    let mut trailing = common::signal().encode();
    trailing.push(0x00);
    let mut future = common::signal();
    future.body.version = 2;
    let reordered = {
        use ciborium::value::Value as Cbor;
        let bytes = common::attestation().encode();
        let Cbor::Map(mut entries) = ciborium::de::from_reader(&bytes[..]).unwrap() else {
            unreachable!()
        };
        entries.reverse();
        commons_signaling::encode(&Cbor::Map(entries))
    };

    let networks: Vec<Value> = ["mainnet", "testnet", "regtest"]
        .iter()
        .map(|name| {
            let spec = NetworkSpec::builtin(name).unwrap();
            json!({ "name": name, "network_id": spec.network_id().to_hex() })
        })
        .collect();

    json!({
        "about": "commons-signal protocol v1 test vectors. Secret keys are SecretKey::from_seed(seed): \
                  the first SHA-256(seed || counter as 4 big-endian bytes), counter from 0, that is a \
                  valid secp256k1 secret. Signatures are BIP340 with auxiliary randomness of 32 zero \
                  bytes. signed_digest is tagged_hash(tag of the kind, network_id || cbor(body)); \
                  single-signer messages sign it, maintainers sign it as the message id. Equivocation \
                  evidence is unsigned: signed_digest is its id, and each of the two signatures it \
                  carries gives the digest of the signal it signs.",
        "keys": keys,
        "networks": networks,
        "tagged_hashes": [
            { "tag": "commons-signal/v1/signal", "data": "616263",
              "hash": tagged_hash("commons-signal/v1/signal", &[b"abc"]).to_hex() },
        ],
        "messages": [
            message_vector("alice attests bob at 198.51.100.23 for 27 epochs", common::attestation().encode()),
            message_vector("bob's presence carrying alice's attestation", common::presence().encode()),
            message_vector("tier-1 proposal signed by regtest maintainers 0, 1, 2", common::proposal().encode()),
            message_vector("bob signals override on that proposal", common::signal().encode()),
            message_vector("application release 1.4.0 signed by regtest maintainers 0, 1, 2", common::release().encode()),
            message_vector("equivocation evidence: bob's override and support signals with sequence 1", common::equivocation().encode()),
        ],
        "invalid": [
            invalid_vector("signal followed by one extra byte", trailing),
            invalid_vector("signal declaring protocol version 2", future.encode()),
            invalid_vector("attestation with its map keys in reverse order", reordered),
            invalid_vector("an empty map", vec![0xa0]),
        ],
    })
}

#[test]
fn code_matches_published_vectors() {
    let built = build();
    if std::env::var_os("COMMONS_UPDATE_VECTORS").is_some() {
        std::fs::write(PATH, serde_json::to_string_pretty(&built).unwrap() + "\n").unwrap();
    }
    let text = std::fs::read_to_string(PATH).expect("docs/test-vectors/v1.json exists");
    let published: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        published, built,
        "the code no longer produces the published vectors"
    );

    // Independently of the builder: every published message decodes from its bytes, its
    // signatures verify over the published digest, and every invalid vector fails as stated.
    let net = NetworkSpec::regtest().network_id();
    assert_eq!(published["networks"][2]["network_id"], net.to_hex());
    for vector in published["messages"].as_array().unwrap() {
        let bytes = hex::decode(vector["cbor"].as_str().unwrap()).unwrap();
        let message = AnyMessage::decode(&bytes).unwrap();
        assert_eq!(commons_signaling::encode(&message_inner(&message)), bytes);
        for sig in vector["signatures"].as_array().unwrap() {
            // Evidence carries signatures of other messages, each with its own digest.
            let digest: commons_signaling::Hash32 = sig
                .get("digest")
                .unwrap_or(&vector["signed_digest"])
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            let key: commons_signaling::PublicKey =
                sig["public_key"].as_str().unwrap().parse().unwrap();
            let mut s = [0u8; 64];
            hex::decode_to_slice(sig["signature"].as_str().unwrap(), &mut s).unwrap();
            assert!(key.verify(&digest, &commons_signaling::Signature(s)));
        }
    }
    for vector in published["invalid"].as_array().unwrap() {
        let bytes = hex::decode(vector["cbor"].as_str().unwrap()).unwrap();
        assert!(
            AnyMessage::decode(&bytes).is_err(),
            "{}",
            vector["description"]
        );
    }
}

fn message_inner(message: &AnyMessage) -> ciborium::value::Value {
    let bytes = match message {
        AnyMessage::Attestation(m) => m.encode(),
        AnyMessage::Presence(m) => m.encode(),
        AnyMessage::Signal(m) => m.encode(),
        AnyMessage::Proposal(m) => m.encode(),
        AnyMessage::Release(m) => m.encode(),
        AnyMessage::Evidence(m) => m.encode(),
    };
    ciborium::de::from_reader(&bytes[..]).unwrap()
}
