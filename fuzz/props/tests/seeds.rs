//! The seeds of the fuzz corpora: the published test vectors, encodings of every sync and
//! fetch payload, the built-in specs, the shipped scenario files and a few JSON-RPC bodies.
//! They are committed as `fuzz/corpus/<target>/seed-*`; this test checks that the committed
//! seeds are exactly what the sources make today, so a change of encoding shows up here.
//!
//! To rewrite them: `COMMONS_WRITE_SEEDS=1 cargo test --workspace --locked --test seeds`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use commons_signaling::fetch::{ChunkRun, FetchRequest, FetchResponse};
use commons_signaling::sync::{SyncCursor, SyncItem, SyncRequest, SyncResponse};
use commons_signaling::{
    BoundedBytes, BoundedVec, Choice, Equivocation, Hash32, MessageKind, NetworkSpec,
    PROTOCOL_VERSION, SecretKey, SignalBody, Signed,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("vectors are hex"))
        .collect()
}

fn blob<const N: usize>(bytes: &[u8]) -> BoundedBytes<N> {
    BoundedBytes::new(bytes.to_vec()).unwrap()
}

/// Every seed, as (target, name) -> bytes.
fn seeds() -> BTreeMap<(&'static str, String), Vec<u8>> {
    let mut seeds = BTreeMap::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        seeds.insert((target, format!("seed-{name}")), bytes);
    };

    let vectors: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("docs/test-vectors/v1.json")).unwrap(),
    )
    .unwrap();
    let mut messages = Vec::new();
    for vector in vectors["messages"].as_array().unwrap() {
        let kind = vector["kind"].as_str().unwrap();
        let bytes = hex_bytes(vector["cbor"].as_str().unwrap());
        let target = match kind {
            "attestation" => "attestation",
            "presence" => "presence",
            "signal" => "signal",
            "proposal" => "proposal",
            "release" => "release",
            "evidence" => "evidence",
            other => panic!("unknown kind {other}"),
        };
        add(target, "vector", bytes.clone());
        add("any_message", kind, bytes.clone());
        add("envelope_probe", kind, bytes.clone());
        messages.push((kind, bytes));
    }
    for (i, vector) in vectors["invalid"].as_array().unwrap().iter().enumerate() {
        let bytes = hex_bytes(vector["cbor"].as_str().unwrap());
        for target in ["signal", "attestation", "any_message", "envelope_probe"] {
            add(target, &format!("invalid-{i}"), bytes.clone());
        }
    }
    // Junk with a version field (issue 13) and a well-formed envelope of version 2.
    let junk = b"\xa1\x67version\x02".to_vec();
    let mut future = b"\xa2\x64body\xa1\x67version\x02\x69signature\x58\x40".to_vec();
    future.extend_from_slice(&[0; 64]);
    for target in [
        "signal",
        "presence",
        "attestation",
        "any_message",
        "envelope_probe",
    ] {
        add(target, "junk-version", junk.clone());
        add(target, "future-envelope", future.clone());
    }
    let mut future_multi = b"\xa2\x64body\xa1\x67version\x02\x6asignatures\x80".to_vec();
    for target in ["proposal", "release", "envelope_probe"] {
        add(target, "future-envelope", future_multi.clone());
    }
    future_multi.push(0);
    add("envelope_probe", "future-envelope-trailing", future_multi);

    // Equivocation evidence: two signals of one fixed key, signed with fixed randomness.
    let net = NetworkSpec::regtest().network_id();
    let equivocator = SecretKey::from_seed("commons-signal fuzz seed equivocator");
    let sign = |choice, aux: u8| {
        let body = SignalBody {
            version: PROTOCOL_VERSION,
            proposal: Hash32([5; 32]),
            choice,
            sequence: 1,
            time: 1_000,
            signer: equivocator.public_key(),
            attestations: BoundedVec::default(),
        };
        Signed::sign_with_aux(body, &equivocator, &net, &[aux; 32])
    };
    let evidence = Equivocation::new(sign(Choice::Support, 1), sign(Choice::Override, 2)).unwrap();
    add("evidence", "pair", evidence.encode());
    add("any_message", "evidence", evidence.encode());
    let swapped = Equivocation {
        first: evidence.second.clone(),
        second: evidence.first.clone(),
        ..evidence.clone()
    };
    add("evidence", "swapped", swapped.encode());
    let newer = Equivocation {
        version: 2,
        ..evidence.clone()
    };
    add("evidence", "version-2", newer.encode());
    add("evidence", "junk-version", junk.clone());

    let attestation = &messages
        .iter()
        .find(|(k, _)| *k == "attestation")
        .unwrap()
        .1;
    add(
        "sync_request",
        "catchup",
        SyncRequest::Catchup { after: None }.encode(),
    );
    add(
        "sync_request",
        "catchup-after",
        SyncRequest::Catchup {
            after: Some(SyncCursor {
                table: 2,
                key: blob(&[7; 40]),
            }),
        }
        .encode(),
    );
    add(
        "sync_request",
        "deliver",
        SyncRequest::Deliver {
            attestations: BoundedVec::new(vec![blob(attestation)]).unwrap(),
        }
        .encode(),
    );
    let items = messages
        .iter()
        .filter(|(k, _)| *k != "attestation")
        .map(|(kind, bytes)| SyncItem {
            kind: MessageKind::ALL
                .into_iter()
                .find(|k| k.name() == *kind)
                .unwrap(),
            bytes: blob(bytes),
        })
        .collect();
    add(
        "sync_response",
        "batch",
        SyncResponse::Batch {
            items: BoundedVec::new(items).unwrap(),
            next: Some(SyncCursor {
                table: 1,
                key: blob(&[1; 32]),
            }),
        }
        .encode(),
    );
    add(
        "sync_response",
        "delivered",
        SyncResponse::Delivered { accepted: 3 }.encode(),
    );
    add(
        "sync_response",
        "refused",
        SyncResponse::refused("store error").encode(),
    );
    add(
        "chunk_run",
        "three",
        ChunkRun {
            artifact: Hash32([3; 32]),
            indices: vec![5, 0, 70_000],
        }
        .encode(),
    );
    add(
        "chunk_run",
        "longest",
        ChunkRun {
            artifact: Hash32([3; 32]),
            indices: (u32::MAX - 64..u32::MAX).collect(),
        }
        .encode(),
    );
    add(
        "fetch_request",
        "chunk-list",
        FetchRequest::ChunkList {
            artifact: Hash32([3; 32]),
        }
        .encode(),
    );
    add(
        "fetch_request",
        "chunk",
        FetchRequest::Chunk {
            artifact: Hash32([3; 32]),
            index: 70_000,
        }
        .encode(),
    );
    add(
        "fetch_response",
        "chunk-list",
        FetchResponse::ChunkList {
            hashes: blob(&[9; 64]),
        }
        .encode(),
    );
    add(
        "fetch_response",
        "chunk",
        FetchResponse::Chunk {
            data: blob(b"artifact bytes"),
        }
        .encode(),
    );
    add("fetch_response", "missing", FetchResponse::Missing.encode());

    let long_batch = format!("[{}1]", "1,".repeat(120));
    for (name, body) in [
        (
            "call",
            r#"{"jsonrpc":"2.0","id":1,"method":"gettally","params":{"id":"00"}}"#,
        ),
        (
            "positional",
            r#"{"jsonrpc":"2.0","id":"a","method":"signal","params":["ab","override"]}"#,
        ),
        ("notification", r#"{"jsonrpc":"2.0","method":"getinfo"}"#),
        (
            "batch",
            r#"[{"jsonrpc":"2.0","id":1,"method":"getinfo"},{"method":"getpeers"},1,[]]"#,
        ),
        ("bad-id", r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#),
        ("empty-batch", " [ ] "),
        ("long-batch", long_batch.as_str()),
        ("not-json", "{nope"),
    ] {
        add("rpc_request", name, body.as_bytes().to_vec());
    }

    for name in ["mainnet", "testnet", "regtest"] {
        let spec = NetworkSpec::builtin(name).unwrap();
        add("spec_toml", name, spec.to_toml().into_bytes());
        add("spec_json", name, serde_json::to_vec(&spec).unwrap());
    }

    let scenarios = root().join("simulations/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&scenarios)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let name = file.file_stem().unwrap().to_string_lossy().into_owned();
        add("scenario", &name, std::fs::read(&file).unwrap());
    }
    seeds
}

#[test]
fn committed_seeds_are_what_the_sources_make() {
    let corpus = root().join("fuzz/corpus");
    let write = std::env::var_os("COMMONS_WRITE_SEEDS").is_some();
    for ((target, name), bytes) in seeds() {
        let path = corpus.join(target).join(&name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        } else {
            let committed = std::fs::read(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (rewrite the seeds, see this file's header)",
                    path.display()
                )
            });
            assert!(
                committed == bytes,
                "{} differs from what the sources make (rewrite the seeds, see this file's header)",
                path.display()
            );
        }
    }
}
