//! What a run measured, and how it is shown: the table on stdout, `summary.json` and
//! `signals.csv`.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Serialize;

use super::cluster::Role;
use super::counters::Counters;
use super::shared_verify::SharedVerificationCounts;
use super::topology::Topology;
use super::watch::Watch;
use crate::error::SimError;

/// How long a signal took to reach a share of the nodes: percentiles over the phase's signals.
#[derive(Debug, Clone, Serialize)]
pub struct ReachRow {
    /// The share of the honest nodes (0.5, 0.9, 0.99, 1.0).
    pub share: f64,
    /// Signals that reached that share before the phase ended.
    pub signals_reaching: usize,
    /// Median over those signals, milliseconds.
    pub p50_ms: Option<f64>,
    /// 90th percentile, milliseconds.
    pub p90_ms: Option<f64>,
    /// 99th percentile, milliseconds.
    pub p99_ms: Option<f64>,
    /// The slowest, milliseconds.
    pub max_ms: Option<f64>,
}

/// One signal of a phase.
#[derive(Debug, Clone, Serialize)]
pub struct SignalRow {
    /// Its position in the phase.
    pub signal: usize,
    /// The node that cast it.
    pub caster: usize,
    /// Its sequence number (the caster's count of signals on the proposal).
    pub sequence: u64,
    /// Honest nodes that held it (or a later signal of the caster) by the end.
    pub reached: usize,
    /// Milliseconds until 50%, 90%, 99% and 100% of the honest nodes held it.
    pub reach_ms: [Option<f64>; 4],
    /// The honest nodes that never held it.
    pub missing: Vec<usize>,
}

/// The figures of one phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// `baseline` or `spam`.
    pub name: String,
    /// Signals cast.
    pub signals: usize,
    /// Honest nodes: the shares and the per-node figures count these (dropping nodes take
    /// nothing in, and spamming nodes are graylisted by their peers once they spam).
    pub measured_nodes: usize,
    /// Time to reach each share.
    pub reach: Vec<ReachRow>,
    /// Milliseconds from the last signal's cast until every running honest node's tally of the
    /// proposal was the same (and included every signal); `None` if not within the settle
    /// timeout.
    pub tally_converged_ms: Option<f64>,
    /// Milliseconds from the last signal's cast until every running honest node counted the
    /// same signers for the same choices with the same weights (the tallies' `choices`,
    /// `signers`, `uncounted_signers` and `excluded_signers`), whatever its denominator; at
    /// or before `tally_converged_ms`. When only this one is reached, the nodes agree on the
    /// signals and differ in the qualified population they count.
    pub choices_converged_ms: Option<f64>,
    /// The smallest and largest denominator (`total_nodes`) among the honest nodes' tallies at
    /// the watcher's last comparison; `None` if the tallies were never compared (some signal
    /// never reached every node).
    pub tally_total_nodes_range: Option<(u64, u64)>,
    /// Per honest node and per signal cast: gossip messages received on the signals topic
    /// (duplicates included; in the spam phase spam included).
    pub gossip_received_per_node_per_signal: f64,
    /// Of those, duplicates that gossipsub dropped before the node saw them.
    pub gossip_duplicates_per_node_per_signal: f64,
    /// Duplicates that reached the node and were dropped before signature verification
    /// (arrived through gossip and catch-up sync).
    pub node_duplicates_per_node_per_signal: f64,
    /// Bytes received on the signals topic, duplicates included.
    pub gossip_bytes_received_per_node_per_signal: f64,
    /// Bytes sent on the signals topic.
    pub gossip_bytes_sent_per_node_per_signal: f64,
    /// All bytes in and out of each node per second over the phase, every protocol,
    /// including the background presences, attestations and sync.
    pub transport_bytes_per_node_per_sec: f64,
    /// Signals the honest nodes' ingest pipelines rejected.
    pub signals_rejected: f64,
    /// Invalid messages the spammers published.
    pub spam_published: u64,
    /// Churn: nodes taken down during the phase.
    pub churn_stops: usize,
    /// Seconds from the first cast to the end of the phase.
    pub duration_secs: f64,
    /// Counter sums over the honest nodes.
    pub counters: Counters,
    /// Each node's counters over the phase (by node index; dropping nodes too), to find out
    /// what happened to a node that missed signals.
    pub per_node: Vec<Counters>,
    /// Per signal.
    pub per_signal: Vec<SignalRow>,
}

/// One node of the run.
#[derive(Debug, Clone, Serialize)]
pub struct NodeRow {
    /// Its index.
    pub index: usize,
    /// Its loopback address.
    pub ip: Ipv4Addr,
    /// What it does.
    pub role: Role,
    /// The nodes it connects to.
    pub neighbours: Vec<usize>,
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Nodes.
    pub nodes: usize,
    /// Topology.
    pub topology: Topology,
    /// Degree.
    pub degree: usize,
    /// Connections between nodes.
    pub edges: usize,
    /// Each node: its address, role and neighbours.
    pub node_list: Vec<NodeRow>,
    /// Signals per phase.
    pub signals: usize,
    /// Cast rate per second.
    pub rate: f64,
    /// Churn share, interval and downtime (seconds).
    pub churn: (f64, f64, f64),
    /// Honest, dropping and spamming nodes.
    pub roles: (usize, usize, usize),
    /// Spam rate per spamming node.
    pub spam_rate: f64,
    /// Seed.
    pub seed: u64,
    /// The network: regtest under rule v1, or under the measurer rule with `--measurers`,
    /// with the run's epoch length.
    pub network: String,
    /// With `--measurers`: the measurer rule's measurers (nodes 0 to N-1) and quorum;
    /// `null` under rule v1.
    pub measurers: Option<(usize, u32)>,
    /// Its epoch length, seconds.
    pub epoch_secs: u64,
    /// Watcher resolution, milliseconds.
    pub poll_ms: u64,
    /// Seconds to start every node.
    pub start_secs: f64,
    /// Seconds of warm-up until every daemon counted every daemon (or the timeout).
    pub warmup_secs: f64,
    /// The qualified population every daemon should count: the daemons whose daemon
    /// neighbours (their attesters) lie in at least a quorum of netgroups.
    pub expected_qualified: u64,
    /// The smallest and largest qualified population the daemons counted after warm-up.
    pub qualified_range: (u64, u64),
    /// At the end of the warm-up, every daemon that did not count a node it should have,
    /// with what it held about each such node; empty when the warm-up completed.
    pub warmup_uncounted: Vec<UncountedRow>,
    /// The phases.
    pub phases: Vec<PhaseReport>,
    /// Wall-clock seconds of the whole run.
    pub runtime_secs: f64,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mib: Option<f64>,
    /// With `--shared-verification`: what the daemons' shared signature cache did over the
    /// run (`null` without it: every daemon verified every signature itself).
    pub shared_verification: Option<SharedVerificationCounts>,
}

/// A daemon that, at the end of the warm-up, did not count some of the nodes it should have.
#[derive(Debug, Clone, Serialize)]
pub struct UncountedRow {
    /// The daemon.
    pub node: usize,
    /// The nodes it left out.
    pub missing: Vec<UncountedNode>,
}

/// What a daemon held about a node it did not count.
#[derive(Debug, Clone, Serialize)]
pub struct UncountedNode {
    /// The node left out.
    pub node: usize,
    /// Its uptime in epochs as this daemon saw it (0: no quorum of attesting netgroups).
    pub uptime_epochs: u32,
    /// How many distinct netgroups of attesters vouched for it there.
    pub attester_netgroups: u32,
    /// Whether the daemon counted it as qualified (true here means another node counted for
    /// its address).
    pub qualified: bool,
}

/// The p-th percentile (nearest rank) of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

const SHARES: [f64; 4] = [0.5, 0.9, 0.99, 1.0];

/// Milliseconds, rounded to hundredths.
pub(super) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 1e2
}

/// Per signal, the time until each share of `targets` held it.
pub(super) fn signal_rows(watch: &Watch, targets: &[usize]) -> Vec<SignalRow> {
    watch
        .signals
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut times: Vec<Duration> = targets.iter().filter_map(|&n| s.reached[n]).collect();
            times.sort();
            let reach_ms = SHARES.map(|share| {
                let need = ((share * targets.len() as f64).ceil() as usize).max(1);
                times.get(need - 1).map(|d| ms(*d))
            });
            SignalRow {
                signal: i,
                caster: s.caster,
                sequence: s.sequence,
                reached: times.len(),
                reach_ms,
                missing: targets
                    .iter()
                    .copied()
                    .filter(|&n| s.reached[n].is_none())
                    .collect(),
            }
        })
        .collect()
}

pub(super) fn reach_rows(rows: &[SignalRow]) -> Vec<ReachRow> {
    SHARES
        .iter()
        .enumerate()
        .map(|(k, &share)| {
            let mut v: Vec<f64> = rows.iter().filter_map(|r| r.reach_ms[k]).collect();
            v.sort_by(f64::total_cmp);
            ReachRow {
                share,
                signals_reaching: v.len(),
                p50_ms: percentile(&v, 0.5),
                p90_ms: percentile(&v, 0.9),
                p99_ms: percentile(&v, 0.99),
                max_ms: v.last().copied(),
            }
        })
        .collect()
}

fn opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

/// The report as the table `commons-sim network` prints.
pub fn table(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "commons-sim network: {} nodes ({} honest, {} dropping, {} spamming at {}/s), {:?} degree {}, {} edges, {} ({} s epochs), seed {}",
        r.nodes,
        r.roles.0,
        r.roles.1,
        r.roles.2,
        r.spam_rate,
        r.topology,
        r.degree,
        r.edges,
        r.network,
        r.epoch_secs,
        r.seed
    );
    let _ = writeln!(
        s,
        "{} signals per phase at {}/s; churn {} every {} s for {} s; watcher every {} ms",
        r.signals, r.rate, r.churn.0, r.churn.1, r.churn.2, r.poll_ms
    );
    let _ = writeln!(
        s,
        "start {:.1} s, warm-up {:.1} s (qualified {}..{} of {}), run {:.1} s, peak memory {} MiB",
        r.start_secs,
        r.warmup_secs,
        r.qualified_range.0,
        r.qualified_range.1,
        r.expected_qualified,
        r.runtime_secs,
        opt(r.peak_rss_mib)
    );
    if let Some((count, quorum)) = r.measurers {
        let _ = writeln!(
            s,
            "measurer rule: nodes 0..{} are the network's {count} measurers (quorum {quorum}); every daemon \
             also connects to each of them, so messages travel over the topology and those links",
            count - 1
        );
    }
    if let Some(c) = r.shared_verification {
        let _ = writeln!(
            s,
            "shared verification cache ON: {} signatures verified, {} checks answered from the cache ({:.1}% of checks); \
             each distinct valid signature was verified once for all daemons, so this run does NOT measure \
             the CPU each node spends verifying signatures nor the ingest queueing that CPU would cause",
            c.verified,
            c.served,
            100.0 * c.served as f64 / (c.verified + c.served).max(1) as f64
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<9} {:>6} {:>9} {:>8} {:>8} {:>8} {:>8}",
        "phase", "reach", "signals", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for p in &r.phases {
        for row in &p.reach {
            let _ = writeln!(
                s,
                "{:<9} {:>5}% {:>4}/{:<4} {:>8} {:>8} {:>8} {:>8}",
                p.name,
                row.share * 100.0,
                row.signals_reaching,
                p.signals,
                opt(row.p50_ms),
                opt(row.p90_ms),
                opt(row.p99_ms),
                opt(row.max_ms)
            );
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "{:<9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10} {:>10} {:>11} {:>9}",
        "phase",
        "recv/n/s",
        "dup/n/s",
        "nodedup",
        "B in/n/s",
        "B out/n/s",
        "all B/n/sec",
        "choices ms",
        "tally ms",
        "population",
        "rejected"
    );
    for p in &r.phases {
        let _ = writeln!(
            s,
            "{:<9} {:>10.2} {:>10.2} {:>10.3} {:>10.0} {:>10.0} {:>12.0} {:>10} {:>10} {:>11} {:>9.0}",
            p.name,
            p.gossip_received_per_node_per_signal,
            p.gossip_duplicates_per_node_per_signal,
            p.node_duplicates_per_node_per_signal,
            p.gossip_bytes_received_per_node_per_signal,
            p.gossip_bytes_sent_per_node_per_signal,
            p.transport_bytes_per_node_per_sec,
            opt(p.choices_converged_ms),
            opt(p.tally_converged_ms),
            p.tally_total_nodes_range
                .map_or_else(|| "-".into(), |(lo, hi)| format!("{lo}..{hi}")),
            p.signals_rejected
        );
    }
    for p in &r.phases {
        if p.spam_published > 0 || p.churn_stops > 0 {
            let _ = writeln!(
                s,
                "{}: {} spam messages published, {} churn stops",
                p.name, p.spam_published, p.churn_stops
            );
        }
        if let Some(line) = ingest_behind(&p.name, &p.counters) {
            let _ = writeln!(s, "{line}");
        }
    }
    s
}

/// A line for a phase whose honest daemons fell behind their gossip: verdicts given after
/// gossipsub's validation window (accepted messages it then never forwarded) or events the
/// networking layer shed. Either means the run measured an overloaded machine, not the
/// protocol, which the reach times alone do not say. `None` when neither happened.
fn ingest_behind(phase: &str, honest: &Counters) -> Option<String> {
    if honest.late_verdicts == 0.0 && honest.events_dropped == 0.0 {
        return None;
    }
    Some(format!(
        "{phase}: the daemons fell behind their gossip: {:.0} verdicts came after gossipsub's \
         validation window (those messages were not forwarded), {:.0} events shed",
        honest.late_verdicts, honest.events_dropped
    ))
}

/// Writes `summary.json` and `signals.csv` into `dir`.
pub(super) fn write_outputs(dir: &std::path::Path, r: &Report) -> Result<(), SimError> {
    let fail = |what: &str, e: std::io::Error| {
        SimError::Runtime(format!("cannot write {}: {e}", dir.join(what).display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| fail("", e))?;
    let json = serde_json::to_string_pretty(r).expect("the report serialises");
    std::fs::write(dir.join("summary.json"), json + "\n").map_err(|e| fail("summary.json", e))?;
    let mut csv = String::from(
        "phase,signal,caster,sequence,reached,measured_nodes,reach50_ms,reach90_ms,reach99_ms,reach100_ms\n",
    );
    for p in &r.phases {
        for row in &p.per_signal {
            let t = row
                .reach_ms
                .map(|v| v.map_or(String::new(), |v| format!("{v}")));
            csv.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{}\n",
                p.name,
                row.signal,
                row.caster,
                row.sequence,
                row.reached,
                p.measured_nodes,
                t[0],
                t[1],
                t[2],
                t[3]
            ));
        }
    }
    std::fs::write(dir.join("signals.csv"), csv).map_err(|e| fail("signals.csv", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_whose_daemons_kept_up_gets_no_backlog_line() {
        assert_eq!(ingest_behind("baseline", &Counters::default()), None);
    }

    #[test]
    fn late_verdicts_and_shed_events_are_reported() {
        let late = Counters {
            late_verdicts: 178_811.0,
            ..Counters::default()
        };
        let line = ingest_behind("spam", &late).expect("late verdicts are reported");
        assert!(line.starts_with("spam: "), "{line}");
        assert!(line.contains("178811 verdicts came after"), "{line}");
        let shed = Counters {
            events_dropped: 3.0,
            ..Counters::default()
        };
        let line = ingest_behind("baseline", &shed).expect("shed events are reported");
        assert!(
            line.contains("0 verdicts") && line.contains("3 events shed"),
            "{line}"
        );
    }
}
