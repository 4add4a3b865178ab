//! Release timestamps: an OpenTimestamps proof of the release id, beside the bundle, checked
//! by `release verify` up to a Bitcoin block header from a file or from bitcoind (here a
//! stand-in speaking bitcoind's JSON-RPC over real HTTP on loopback). The real proof and
//! header of block 358391 are checked in `cli/src/timestamp.rs`; a proof of a release made
//! now cannot be in a real block, so the proofs here are built by the test, to the format.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::{Run, Workdir};
use sha2::{Digest, Sha256};

const NET: &str = "demo/spec.toml";
const MAGIC: &[u8] = b"\x00OpenTimestamps\x00\x00Proof\x00\xbf\x89\xe2\xe8\x84\xe8\x92\x94";
const BITCOIN: &[u8] = b"\x05\x88\x96\x0d\x73\xd7\x19\x01";
const PENDING: &[u8] = b"\x83\xdf\xe3\x0d\x2e\xf9\x0c\x8e";
const HEIGHT: u64 = 800_000;
/// 2023-07-24 03:17:10 UTC, the time the made-up block claims.
const BLOCK_TIME: u32 = 1_690_168_630;

/// A demo network and an unsigned release; its id, as `release digest` prints it.
fn setup() -> (Workdir, [u8; 32]) {
    let w = Workdir::new();
    w.init_network("demo", 3);
    w.create_release(NET, "app", "release.cbor");
    let id = digest(&w, &[]).ok().stdout;
    let id: [u8; 32] = hex::decode(id.trim()).unwrap().try_into().unwrap();
    (w, id)
}

/// `release verify release.cbor` on the demo network, with `args` after it.
fn verify(w: &Workdir, args: &[&str]) -> Run {
    w.on(
        NET,
        &[&["release", "verify", "release.cbor"], args].concat(),
    )
}

/// `release digest release.cbor` on the demo network, with `args` after it.
fn digest(w: &Workdir, args: &[&str]) -> Run {
    w.on(
        NET,
        &[&["release", "digest", "release.cbor"], args].concat(),
    )
}

fn varuint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn attestation(tag: &[u8], payload: &[u8]) -> Vec<u8> {
    cat(&[&[0x00], tag, &varuint(payload.len() as u64), payload])
}

/// A proof of `digest`: prepend 32 bytes and hash (as a calendar's merkle tree does), then a
/// Bitcoin attestation at [`HEIGHT`]. Returns the proof and the merkle root it ends in.
fn bitcoin_proof(digest: &[u8; 32]) -> (Vec<u8>, [u8; 32]) {
    let sibling = [7u8; 32];
    let root: [u8; 32] = Sha256::digest(cat(&[&sibling, digest])).into();
    let proof = cat(&[
        MAGIC,
        &[0x01, 0x08],
        digest,
        &[0xf1, 32],
        &sibling,
        &[0x08],
        &attestation(BITCOIN, &varuint(HEIGHT)),
    ]);
    (proof, root)
}

/// A header with `root` that meets the easiest target (bits 0x207fffff, as regtest's): the
/// nonce is searched until it does, so the header's own proof-of-work check passes.
fn header_with(root: &[u8; 32]) -> ([u8; 80], String) {
    for nonce in 0u32.. {
        let mut header = [0u8; 80];
        header[0] = 2;
        header[36..68].copy_from_slice(root);
        header[68..72].copy_from_slice(&BLOCK_TIME.to_le_bytes());
        header[72..76].copy_from_slice(&0x207f_ffffu32.to_le_bytes());
        header[76..80].copy_from_slice(&nonce.to_le_bytes());
        let mut hash: [u8; 32] = Sha256::digest(Sha256::digest(header)).into();
        hash.reverse();
        if hash[0] < 0x7f {
            return (header, hex::encode(hash));
        }
    }
    unreachable!()
}

#[test]
fn the_stamp_file_hashes_to_the_release_id() {
    let (w, id) = setup();
    let run = digest(&w, &["--stamp-file", "release.stamp"]).ok();
    assert_eq!(run.stdout.trim(), hex::encode(id));
    let stamped: [u8; 32] = Sha256::digest(w.read("release.stamp")).into();
    assert_eq!(
        stamped, id,
        "`ots stamp release.stamp` must timestamp the release id"
    );
    // Never over an existing file.
    digest(&w, &["--stamp-file", "release.stamp"])
        .expect(2)
        .stderr_has("exists");
}

#[test]
fn verify_reports_the_attested_block_time_from_a_header_file() {
    let (w, id) = setup();
    let (proof, root) = bitcoin_proof(&id);
    let (header, hash) = header_with(&root);
    // Beside the bundle, it is found without being named.
    w.write("release.cbor.ots", &proof);
    w.write("block.hex", format!("{}\n", hex::encode(header)).as_bytes());
    verify(&w, &["--block-header", "block.hex"])
        // Unsigned: the release is not valid, but the timestamp is reported all the same.
        .expect(1)
        .stdout_has(&format!(
            "timestamp   Bitcoin block {HEIGHT} at 2023-07-24 03:17:10 UTC (block {hash}, header from block.hex)"
        ));
    let json = w
        .run(&[
            "--json",
            "--network",
            NET,
            "release",
            "verify",
            "release.cbor",
            "--block-header",
            "block.hex",
        ])
        .expect(1);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(doc["timestamp"]["status"], "confirmed");
    assert_eq!(doc["timestamp"]["bitcoin"][0]["height"], HEIGHT);
    assert_eq!(doc["timestamp"]["bitcoin"][0]["time"], BLOCK_TIME);
    assert_eq!(doc["timestamp"]["bitcoin"][0]["block_hash"], hash.as_str());
    // Raw 80 bytes do as well as hex.
    w.write("block.bin", &header);
    verify(&w, &["--block-header", "block.bin"]).stdout_has(&format!(
        "timestamp   Bitcoin block {HEIGHT} at 2023-07-24 03:17:10 UTC"
    ));

    // Without a header the block is named, and left unchecked.
    verify(&w, &[]).stdout_has(&format!(
        "timestamp   NOT CHECKED: Bitcoin block {HEIGHT} attests it"
    ));

    // Another block's header does not confirm it, and verify fails on that alone.
    let (other, other_hash) = header_with(&[9u8; 32]);
    w.write("other.hex", hex::encode(other).as_bytes());
    let run = verify(&w, &["--block-header", "other.hex"])
        .expect(1)
        .stdout_has("timestamp   DOES NOT MATCH: at height 800000");
    assert!(run.stdout.contains(&other_hash), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("timestamp release.cbor.ots: DOES NOT MATCH"),
        "{}",
        run.stderr
    );

    // A header whose hash does not meet its bits is no block at all.
    let mut forged = header;
    forged[72..76].copy_from_slice(&0x1700_ffffu32.to_le_bytes());
    w.write("forged.hex", hex::encode(forged).as_bytes());
    verify(&w, &["--block-header", "forged.hex"])
        .expect(1)
        .stdout_has("does not meet its own proof-of-work target");
}

#[test]
fn verify_says_when_the_proof_is_pending_or_of_something_else() {
    let (w, id) = setup();
    let uri = b"https://alice.btc.calendar.opentimestamps.org";
    let calendar = cat(&[&varuint(uri.len() as u64), uri]);
    let pending = cat(&[MAGIC, &[0x01, 0x08], &id, &attestation(PENDING, &calendar)]);
    w.write("stamp.ots", &pending);
    verify(&w, &["--ots", "stamp.ots"])
        .stdout_has("timestamp   PENDING: not in a Bitcoin block yet, only submitted to https://alice.btc.calendar.opentimestamps.org");

    // The OpenTimestamps client's real proof of hello-world.txt is a good proof, of another file.
    let hello = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/ots/hello-world.txt.ots"
    ))
    .unwrap();
    w.write("hello.ots", &hello);
    let run = verify(&w, &["--ots", "hello.ots"])
        .expect(1)
        .stdout_has("timestamp   DOES NOT MATCH: the proof is for digest 03ba204e50d126e4674c005e04d82e84c21366780af1f43bd54a37816b6ab340");
    assert!(
        run.stdout
            .contains(&format!("not this release's id {}", hex::encode(id))),
        "{}",
        run.stdout
    );

    // Bytes that are no proof, a missing proof, and headers without a proof.
    w.write("junk.ots", b"\x00OpenTimestamps\x00 not really");
    verify(&w, &["--ots", "junk.ots"])
        .expect(1)
        .stdout_has("timestamp   UNREADABLE: junk.ots: not an OpenTimestamps proof");
    verify(&w, &["--ots", "missing.ots"])
        .expect(2)
        .stderr_has("missing.ots");
    w.write("block.hex", b"00");
    verify(&w, &["--block-header", "block.hex"])
        .expect(2)
        .stderr_has("no timestamp proof to check the block headers against");
}

/// A stand-in for bitcoind: answers `getblockhash` and `getblockheader` for one block over
/// HTTP/1.1 on loopback, after checking the basic credentials; records the methods called.
fn fake_bitcoind(
    height: u64,
    hash: String,
    header: String,
    auth: &'static str,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut length, mut authorized) = (0, false);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(value) = lower.strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
                authorized |= line.trim_end() == format!("Authorization: Basic {auth}")
                    || lower.trim_end()
                        == format!("authorization: basic {}", auth.to_ascii_lowercase());
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let method = request["method"].as_str().unwrap().to_string();
            seen.lock().unwrap().push(method.clone());
            let result = match (method.as_str(), &request["params"][0]) {
                ("getblockhash", p) if p.as_u64() == Some(height) => serde_json::json!(hash),
                ("getblockheader", p) if p.as_str() == Some(hash.as_str()) => {
                    serde_json::json!(header)
                }
                _ => serde_json::Value::Null,
            };
            let (status, answer) = if !authorized {
                ("401 Unauthorized", String::new())
            } else if result.is_null() {
                ("500 Internal Server Error", serde_json::json!({"result": null, "error": {"code": -8, "message": "Block height out of range"}, "id": "x"}).to_string())
            } else {
                (
                    "200 OK",
                    serde_json::json!({"result": result, "error": null, "id": "x"}).to_string(),
                )
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (url, calls)
}

#[test]
fn verify_asks_bitcoind_for_the_header_at_the_attested_height() {
    let (w, id) = setup();
    let (proof, root) = bitcoin_proof(&id);
    let (header, hash) = header_with(&root);
    w.write("release.cbor.ots", &proof);
    // "user:secret" in base64, as bitcoind's cookie file holds it.
    w.write("cookie", b"user:secret\n");
    let (url, calls) = fake_bitcoind(
        HEIGHT,
        hash.clone(),
        hex::encode(header),
        "dXNlcjpzZWNyZXQ=",
    );
    verify(&w, &["--bitcoin-rpc", &url, "--bitcoin-rpc-cookie", "cookie"])
        .stdout_has(&format!(
            "timestamp   Bitcoin block {HEIGHT} at 2023-07-24 03:17:10 UTC (block {hash}, header from bitcoind)"
        ));
    assert_eq!(*calls.lock().unwrap(), ["getblockhash", "getblockheader"]);

    // Without the cookie bitcoind refuses, and the timestamp stays unchecked.
    verify(&w, &["--bitcoin-rpc", &url])
        .stdout_has("timestamp   NOT CHECKED: Bitcoin block 800000: bitcoind at")
        .stdout_has("refused the credentials");
    // A header that is not the block bitcoind named is caught by its hash.
    let (other, _) = header_with(&[3u8; 32]);
    let (liar, _) = fake_bitcoind(HEIGHT, hash.clone(), hex::encode(other), "dXNlcjpzZWNyZXQ=");
    verify(
        &w,
        &["--bitcoin-rpc", &liar, "--bitcoin-rpc-cookie", "cookie"],
    )
    .stdout_has(&format!("the header it gave for block {hash} hashes to"));
    // Credentials never go in the URL, where the process list shows them.
    verify(&w, &["--bitcoin-rpc", "http://user:pw@127.0.0.1:8332/"])
        .expect(2)
        .stderr_has("no credentials in the URL");
}
