//! `recount FILE`: recomputes a node's tally of a proposal from its recount file, offline,
//! with the aggregator every node runs, on the network the user names (never one the file
//! brings along).

use std::path::Path;
use std::time::Instant;

use anyhow::anyhow;
use commons_aggregator::recount::{self, RecountFile};
use serde_json::json;

use super::Context;
use super::online::print_tally;
use crate::error::{CliError, Result};
use crate::files;

/// The largest recount file read: it is held in memory.
const MAX_FILE_BYTES: usize = 1024 * 1024 * 1024;

/// Findings printed as text; `--json` lists them all.
const SHOWN_FINDINGS: usize = 40;

/// `recount FILE`
pub fn recount(ctx: &Context, path: &Path) -> Result {
    let bytes = files::read_bounded(path, MAX_FILE_BYTES, "recount file")?;
    let file = RecountFile::decode(&bytes)
        .map_err(|e| CliError::Input(anyhow!("{}: {e}", path.display())))?;
    let net = ctx.network()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let started = Instant::now();
    let report = recount::recount(&file, &net.spec, threads).map_err(|e| match e {
        recount::RecountError::OtherNetwork { .. } => {
            CliError::Input(anyhow!("{}: {e}", path.display()))
        }
        _ => CliError::Failed(anyhow!("{}: {e}", path.display())),
    })?;
    let secs = started.elapsed().as_secs_f64();
    let node = commons_rpc::Tally::from_aggregator(&file.node.tally, file.node.state.name());
    let ours = commons_rpc::Tally::from_aggregator(&report.tally, report.state.name());
    if ctx.json() {
        ctx.emit(&json!({
            "file": path.display().to_string(),
            "network": { "name": net.spec.name, "id": net.id.to_hex() },
            "proposal": file.proposal_id.to_hex(),
            "epoch": file.epoch,
            "time": file.time,
            "exporter": file.node.exporter.to_hex(),
            "messages": {
                "presences": file.presences.len(),
                "attestations": file.attestations.len(),
                "signals": file.signals.len(),
                "evidence": file.evidence.len(),
            },
            "signatures_checked": report.signatures_checked,
            "bare_attestations": report.bare_attestations,
            "overridden_at_epoch": file.node.overridden_at,
            "node": node,
            "recount": ours,
            "matches": report.matches(),
            "findings": report.findings,
            "seconds": secs,
        }))?;
    } else {
        ctx.say(format!(
            "recount of {} on {}: proposal {} at epoch {}, exported by node {}",
            path.display(),
            net.label(),
            file.proposal_id,
            file.epoch,
            file.node.exporter
        ))?;
        ctx.say(format!(
            "{} signals, {} presences, {} bare attestations, {} evidence; {} signatures verified in {secs:.2} s",
            file.signals.len(),
            file.presences.len(),
            file.attestations.len(),
            file.evidence.len(),
            report.signatures_checked
        ))?;
        print_tally(ctx, &ours)?;
        if let Some(at) = file.node.overridden_at {
            ctx.say(format!(
                "override latched by the node at epoch {at} (taken from the file: a verdict of \
                 that epoch's population)"
            ))?;
        }
        if report.bare_attestations > 0 {
            ctx.say(format!(
                "{} attestation(s) without their carrier in the file (the node's own, or \
                 carried in a message it no longer holds): their measurers' signatures are \
                 verified all the same",
                report.bare_attestations
            ))?;
        }
        if report.matches() {
            ctx.say("the recount matches the node's tally, state and population bit for bit")?;
        }
        for f in report.findings.iter().take(SHOWN_FINDINGS) {
            let place = f.index.map_or_else(String::new, |i| format!(" #{i}"));
            ctx.say(format!(
                "differs: {}{place} {}: {}",
                f.about, f.name, f.problem
            ))?;
        }
        if report.findings.len() > SHOWN_FINDINGS {
            ctx.say(format!(
                "... and {} more (--json lists them all)",
                report.findings.len() - SHOWN_FINDINGS
            ))?;
        }
    }
    if report.matches() {
        Ok(())
    } else {
        Err(CliError::failed(format!(
            "{}: the recount does not reproduce the node's tally ({} finding(s))",
            path.display(),
            report.findings.len()
        )))
    }
}
