//! `proposal export ID --out FILE`: the node's recount file of a proposal, fetched piece by
//! piece from one snapshot, checked and written.

use std::path::Path;

use anyhow::anyhow;
use base64::Engine;
use commons_aggregator::recount::RecountFile;
use commons_rpc::{ExportChunk, ExportParams, method};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Online, print_tally};
use crate::commands::Context;
use crate::error::{CliError, Result};
use crate::files;

/// The most bytes a recount file may have: the file is held in memory, here and on the node.
const MAX_FILE_BYTES: u64 = 1024 * 1024 * 1024;

impl Online {
    fn export_chunk(&self, params: &ExportParams) -> Result<ExportChunk> {
        self.client.request::<method::ExportProposal>(params)
    }

    /// `proposal export ID --out FILE`
    pub fn export_proposal(&self, ctx: &Context, id: &str, out: &Path) -> Result {
        let spinner = ctx.spinner(format!("exporting proposal {id}"));
        let first = self.export_chunk(&ExportParams {
            id: id.to_string(),
            snapshot: None,
            offset: 0,
        })?;
        if first.total_bytes > MAX_FILE_BYTES {
            return Err(CliError::Input(anyhow!(
                "the node's recount file has {} bytes, more than this commons-cli holds ({MAX_FILE_BYTES})",
                first.total_bytes
            )));
        }
        let mut bytes = Vec::with_capacity(first.total_bytes as usize);
        let mut chunk = first.clone();
        loop {
            let data = base64::engine::general_purpose::STANDARD
                .decode(&chunk.data)
                .map_err(|e| {
                    CliError::Failed(anyhow!("the node sent a piece that is not base64: {e}"))
                })?;
            if chunk.offset != bytes.len() as u64 || chunk.snapshot != first.snapshot {
                return Err(CliError::Failed(anyhow!(
                    "the node sent the piece at {} of snapshot {}, not the one asked for",
                    chunk.offset,
                    chunk.snapshot
                )));
            }
            if data.is_empty() && (bytes.len() as u64) < first.total_bytes {
                return Err(CliError::Failed(anyhow!(
                    "the node sent an empty piece at {} of {} bytes",
                    bytes.len(),
                    first.total_bytes
                )));
            }
            bytes.extend_from_slice(&data);
            if bytes.len() as u64 >= first.total_bytes {
                break;
            }
            spinner.set_item(&format!("{} of {} bytes", bytes.len(), first.total_bytes));
            chunk = self.export_chunk(&ExportParams {
                id: id.to_string(),
                snapshot: Some(first.snapshot.clone()),
                offset: bytes.len() as u64,
            })?;
        }
        drop(spinner);
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if bytes.len() as u64 != first.total_bytes || sha256 != first.sha256 {
            return Err(CliError::Failed(anyhow!(
                "the pieces make {} bytes with SHA-256 {sha256}, but the node announced {} bytes with {}",
                bytes.len(),
                first.total_bytes,
                first.sha256
            )));
        }
        let file = RecountFile::decode(&bytes)
            .map_err(|e| CliError::Failed(anyhow!("the node's recount file: {e}")))?;
        files::write_new(out, &bytes)?;
        let tally = commons_rpc::Tally::from_aggregator(&file.node.tally, file.node.state.name());
        if ctx.json() {
            return ctx.emit(&json!({
                "file": out.display().to_string(),
                "bytes": bytes.len(),
                "sha256": sha256,
                "network": file.network,
                "proposal": file.proposal_id.to_hex(),
                "epoch": file.epoch,
                "time": file.time,
                "exporter": file.node.exporter.to_hex(),
                "signals": file.signals.len(),
                "presences": file.presences.len(),
                "attestations": first.attestations,
                "bare_attestations": file.attestations.len(),
                "evidence": file.evidence.len(),
                "tally": tally,
            }));
        }
        ctx.say(format!(
            "wrote {}: {} bytes, SHA-256 {sha256}",
            out.display(),
            bytes.len()
        ))?;
        ctx.say(format!(
            "taken at epoch {} (time {}) by node {}: {} signals, {} presences, {} attestations ({} bare), {} evidence",
            file.epoch,
            file.time,
            file.node.exporter,
            file.signals.len(),
            file.presences.len(),
            first.attestations,
            file.attestations.len(),
            file.evidence.len()
        ))?;
        ctx.say("the node's tally at that epoch:")?;
        print_tally(ctx, &tally)?;
        ctx.say(format!(
            "recount it offline: commons-cli --network {} recount {}",
            file.network,
            out.display()
        ))
    }
}
