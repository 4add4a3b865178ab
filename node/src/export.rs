//! `exportproposal`: the recount file of a proposal (`commons_aggregator::recount`), taken
//! as one snapshot and served in pieces, so that a proposal with a hundred thousand signals
//! (a file of tens of megabytes) never makes one huge answer and every piece comes from the
//! same moment.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use commons_aggregator::recount::Snapshot;
use commons_rpc::{EXPORT_CHUNK_BYTES, ExportChunk};
use commons_signaling::Hash32;
use sha2::{Digest, Sha256};

use crate::node::Node;
use crate::rpc::{self, Params, RpcError};

/// The most snapshots held at once; a new one pushes out the oldest.
const MAX_SNAPSHOTS: usize = 2;
/// How long a snapshot is kept after its last call.
const KEEP: Duration = Duration::from_secs(600);

/// One snapshot's file.
struct Export {
    handle: String,
    proposal: Hash32,
    epoch: u64,
    time: u64,
    bytes: Vec<u8>,
    sha256: String,
    signals: u64,
    attestations: u64,
    evidence: u64,
}

/// The snapshots taken by `exportproposal`, newest last.
#[derive(Default)]
pub(crate) struct Exports {
    held: Mutex<VecDeque<(Arc<Export>, Instant)>>,
    taken: AtomicU64,
}

impl Exports {
    fn get(&self, handle: &str, proposal: &Hash32) -> Option<Arc<Export>> {
        let mut held = self.held.lock().expect("exports lock poisoned");
        held.retain(|(_, used)| used.elapsed() < KEEP);
        let (export, used) = held
            .iter_mut()
            .find(|(e, _)| e.handle == handle && e.proposal == *proposal)?;
        *used = Instant::now();
        Some(export.clone())
    }

    fn insert(&self, export: Arc<Export>) {
        let mut held = self.held.lock().expect("exports lock poisoned");
        held.retain(|(_, used)| used.elapsed() < KEEP);
        while held.len() >= MAX_SNAPSHOTS {
            held.pop_front();
        }
        held.push_back((export, Instant::now()));
    }
}

impl Export {
    fn chunk(&self, offset: u64) -> Result<ExportChunk, RpcError> {
        let start = usize::try_from(offset)
            .ok()
            .filter(|&o| o <= self.bytes.len())
            .ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "`offset` {offset} is beyond the file's {} bytes",
                    self.bytes.len()
                ))
            })?;
        let end = self.bytes.len().min(start + EXPORT_CHUNK_BYTES);
        Ok(ExportChunk {
            snapshot: self.handle.clone(),
            proposal: self.proposal.to_hex(),
            epoch: self.epoch,
            time: self.time,
            total_bytes: self.bytes.len() as u64,
            sha256: self.sha256.clone(),
            offset,
            data: base64::engine::general_purpose::STANDARD.encode(&self.bytes[start..end]),
            signals: self.signals,
            attestations: self.attestations,
            evidence: self.evidence,
        })
    }
}

impl Node {
    /// `exportproposal {id, snapshot?, offset?}`.
    pub(crate) fn rpc_exportproposal(&self, params: &Params) -> Result<ExportChunk, RpcError> {
        params.only(&["id", "snapshot", "offset"])?;
        let id = Self::parse_id(params, "id")?;
        let offset = match params.get("offset", 2) {
            None => 0,
            Some(v) => v.as_u64().ok_or_else(|| {
                RpcError::invalid_params(format!(
                    "`offset` must be a whole number of bytes, not {v}"
                ))
            })?,
        };
        let export = match params.optional_str("snapshot", 1)? {
            Some(handle) => self.exports.get(handle, &id).ok_or_else(|| {
                RpcError::new(
                    rpc::NOT_FOUND,
                    format!(
                        "no snapshot {handle:?} of proposal {id} (a snapshot is kept ten \
                         minutes after its last call, two at most): export again"
                    ),
                )
            })?,
            None => self.take_export(&id)?,
        };
        export.chunk(offset)
    }

    fn take_export(&self, id: &Hash32) -> Result<Arc<Export>, RpcError> {
        // Read before the snapshot: every presence in the store was applied before the lock
        // is next released, so what they carry is all in the snapshot.
        let presences = self.store.presences().map_err(RpcError::internal)?;
        let snapshot = {
            let st = self.state();
            Snapshot::take(st.agg(), id, self.now(), self.me)
        }
        .ok_or_else(|| RpcError::new(rpc::NOT_FOUND, format!("unknown proposal {id}")))?;
        let (signals, evidence, attestations) = snapshot.counts();
        let file = snapshot.into_file(presences);
        let (epoch, time) = (file.epoch, file.time);
        let bytes = file.encode();
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let taken = self.exports.taken.fetch_add(1, Ordering::Relaxed);
        let export = Arc::new(Export {
            handle: format!("{taken}-{}", &sha256[..16]),
            proposal: *id,
            epoch,
            time,
            bytes,
            sha256,
            signals: signals as u64,
            attestations: attestations as u64,
            evidence: evidence as u64,
        });
        tracing::info!(
            proposal = %id,
            epoch,
            bytes = export.bytes.len(),
            signals,
            attestations,
            "recount file exported"
        );
        self.exports.insert(export.clone());
        Ok(export)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export(handle: &str, len: usize) -> Arc<Export> {
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        Arc::new(Export {
            handle: handle.into(),
            proposal: Hash32([7; 32]),
            epoch: 1,
            time: 2,
            sha256: hex::encode(Sha256::digest(&bytes)),
            bytes,
            signals: 0,
            attestations: 0,
            evidence: 0,
        })
    }

    #[test]
    fn a_large_file_comes_in_pieces_that_make_it_whole() {
        let e = export("0-x", 2 * EXPORT_CHUNK_BYTES + 5);
        let mut whole = Vec::new();
        loop {
            let chunk = e.chunk(whole.len() as u64).unwrap();
            let data = base64::engine::general_purpose::STANDARD
                .decode(&chunk.data)
                .unwrap();
            assert!(data.len() <= EXPORT_CHUNK_BYTES);
            assert_eq!(chunk.offset, whole.len() as u64);
            whole.extend_from_slice(&data);
            if whole.len() as u64 == chunk.total_bytes {
                break;
            }
        }
        assert_eq!(whole, e.bytes);
        assert_eq!(e.chunk(e.bytes.len() as u64).unwrap().data, "");
        let beyond = e.chunk(e.bytes.len() as u64 + 1).unwrap_err();
        assert!(beyond.message.contains("beyond"), "{}", beyond.message);
    }

    #[test]
    fn two_snapshots_are_kept_and_a_third_pushes_out_the_oldest() {
        let exports = Exports::default();
        let id = Hash32([7; 32]);
        for handle in ["0-a", "1-b", "2-c"] {
            exports.insert(export(handle, 10));
        }
        assert!(exports.get("0-a", &id).is_none());
        assert!(exports.get("1-b", &id).is_some());
        assert!(exports.get("2-c", &id).is_some());
        // A handle is good only for its own proposal.
        assert!(exports.get("2-c", &Hash32([8; 32])).is_none());
    }
}
