//! Store growth: the bytes the node's RocksDB store holds per message, for the scaling model
//! (docs/SCALING.md). It writes what a node stores about `COMMONS_BENCH_NODES` other nodes
//! (default 20,000) over two mainnet epochs, as ingest writes it: each node's presence
//! (replacing its previous one) and each attestation it carries (replacing that attester's
//! previous one about it), one batch per presence. After each epoch it flushes the
//! memtables and prints the store's size (SST files) and the bytes per message held.
//!
//! Run with `cargo bench --workspace --locked --profile dev --bench store_size` (RocksDB is
//! a dependency, built optimised in the dev profile). Keys and signatures are random-looking
//! bytes from a counter, not real ones: the store never checks a signature, and zeros would
//! compress better than a real signature does. Without `--bench` (as under `cargo test --all-targets`) it
//! writes 100 nodes and checks the store holds them.

use std::net::{IpAddr, Ipv4Addr};

use commons_node::store::{Batch, Store};
use commons_signaling::{
    AttestationBody, BoundedVec, PROTOCOL_VERSION, Presence, PresenceBody, PublicKey, Signature,
    Signed, UptimeAttestation, WireIp,
};

/// Peer attestations per presence under rule v1: one per connection (`target_peers`).
const PEERS: u64 = 16;

/// 32 bytes that look random, from a counter (splitmix64).
fn noise(n: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut x = n.wrapping_add(0x5eed);
    for chunk in out.chunks_mut(8) {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

fn signature(n: u64) -> Signature {
    let mut s = [0u8; 64];
    s[..32].copy_from_slice(&noise(n ^ 0xaaaa_0000_0000_0000));
    s[32..].copy_from_slice(&noise(n ^ 0x5555_0000_0000_0000));
    Signature(s)
}

fn key(i: u64) -> PublicKey {
    PublicKey(noise(i))
}

/// Node `i`'s presence at `epoch` with the attestations of its `PEERS` attesters.
fn presence(i: u64, nodes: u64, epoch: u64) -> Presence {
    let subject = key(i);
    let ip = IpAddr::V4(Ipv4Addr::from(0x0b00_0001 + ((i as u32) << 8)));
    let attestations: Vec<UptimeAttestation> = (1..=PEERS)
        .map(|j| Signed {
            body: AttestationBody {
                version: PROTOCOL_VERSION,
                attester: key((i + j * 7_919) % nodes),
                subject,
                subject_ip: WireIp(ip),
                epoch,
                seen_epochs: 100,
            },
            signature: signature(epoch << 40 | i << 8 | j),
        })
        .collect();
    Signed {
        body: PresenceBody {
            version: PROTOCOL_VERSION,
            node: subject,
            epoch,
            attestations: BoundedVec::truncating(attestations),
        },
        signature: signature(epoch << 40 | i << 8),
    }
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let nodes: u64 = if benching {
        std::env::var("COMMONS_BENCH_NODES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20_000)
    } else {
        100
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open(dir.path()).expect("open the store");
    if benching {
        println!(
            "| after epoch | presences held | attestations held | encoded bytes written | store bytes (SST) | store bytes per presence with its {PEERS} attestations | per message |"
        );
        println!("|---|---|---|---|---|---|---|");
    }
    for epoch in [1_000u64, 1_001] {
        let mut encoded = 0u64;
        for i in 0..nodes {
            let p = presence(i, nodes, epoch);
            let mut batch = Batch::new();
            for a in p.body.attestations.iter() {
                encoded += a.encode().len() as u64;
                batch.put_attestation(a);
            }
            encoded += p.encode().len() as u64;
            batch.put_presence(&p);
            store.write(batch).expect("write");
        }
        store.flush().expect("flush");
        let held_attestations = store.attestations().expect("scan").len() as u64;
        let held_presences = store.presences().expect("scan").len() as u64;
        assert_eq!(held_presences, nodes, "one presence per node");
        assert_eq!(held_attestations, nodes * PEERS, "the latest per pair");
        let size = store.size_bytes();
        if benching {
            println!(
                "| {} | {held_presences} | {held_attestations} | {encoded} | {size} | {} | {} |",
                epoch - 999,
                size / nodes,
                size / (held_presences + held_attestations),
            );
        }
    }
}
