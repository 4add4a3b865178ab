//! The watcher: a plain thread that looks at every daemon's aggregator and records when each
//! holds each signal and when the tallies agree.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use commons_aggregator::Tally;
use commons_signaling::{Hash32, PublicKey};

use super::cluster::ClusterNode;

/// A tally with the epoch left out: nodes cross an epoch boundary a few milliseconds apart,
/// and the epoch alone does not make two tallies differ.
fn comparable(mut tally: Tally) -> Tally {
    tally.epoch = 0;
    tally
}

/// Whether two tallies count the same signers for the same choices with the same weights,
/// whatever their denominators.
fn same_counted_signers(a: Option<&Tally>, b: Option<&Tally>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            a.choices == b.choices
                && a.signers == b.signers
                && a.uncounted_signers == b.uncounted_signers
                && a.excluded_signers == b.excluded_signers
        }
        _ => false,
    }
}

/// One tracked signal.
pub(super) struct Tracked {
    /// Its signer.
    pub(super) signer: PublicKey,
    /// Its sequence number: a node holds it once it holds this one or a later one.
    pub(super) sequence: u64,
    /// The node that cast it.
    pub(super) caster: usize,
    /// When it was cast.
    pub(super) cast_at: Instant,
    /// Per node: when it first held the signal, after the cast.
    pub(super) reached: Vec<Option<Duration>>,
}

/// What the watcher thread and the driver share.
pub(super) struct Watch {
    /// The proposal every signal is on.
    pub(super) proposal: Hash32,
    /// The signals cast so far in the phase.
    pub(super) signals: Vec<Tracked>,
    /// Set at the last cast of a phase: from then on the watcher checks the tallies too.
    pub(super) last_cast: Option<Instant>,
    /// How long after the last cast every tally was the same, once it was.
    pub(super) converged: Option<Duration>,
    /// How long after the last cast every node counted the same signers for the same choices
    /// with the same weights, once it did. This can come before `converged`: nodes whose
    /// qualified populations differ (the denominator) still agree on who signalled what.
    pub(super) choices_converged: Option<Duration>,
    /// The smallest and largest denominator (`total_nodes`) among the tallies at the last
    /// look, while the tallies were being compared: when they never agree, this says whether
    /// the populations differed.
    pub(super) total_nodes_range: Option<(u64, u64)>,
}

impl Watch {
    /// Whether every signal reached every node of `targets`.
    pub(super) fn complete(&self, targets: &[usize]) -> bool {
        self.signals
            .iter()
            .all(|s| targets.iter().all(|&n| s.reached[n].is_some()))
    }
}

/// Looks at every running daemon every `poll` until `stop`: records when each holds each
/// tracked signal, and once the phase's last signal is out, when all tallies agree. A plain
/// thread, so that a busy runtime delays the nodes but not the clock that measures them.
pub(super) fn watcher(
    nodes: Arc<Vec<ClusterNode>>,
    targets: Vec<usize>,
    watch: Arc<Mutex<Watch>>,
    stop: Arc<AtomicBool>,
    poll: Duration,
) {
    while !stop.load(Ordering::Relaxed) {
        let (proposal, pending, last_cast, converged, choices_converged) = {
            let w = watch.lock().expect("watch lock");
            let pending: Vec<(usize, PublicKey, u64, Instant)> = w
                .signals
                .iter()
                .enumerate()
                .filter(|(_, s)| targets.iter().any(|&n| s.reached[n].is_none()))
                .map(|(i, s)| (i, s.signer, s.sequence, s.cast_at))
                .collect();
            (
                w.proposal,
                pending,
                w.last_cast,
                w.converged,
                w.choices_converged,
            )
        };
        let mut found: Vec<(usize, usize, Duration)> = Vec::new();
        let check_tally = last_cast.is_some()
            && (converged.is_none() || choices_converged.is_none())
            && pending.is_empty();
        let mut tallies: Vec<Option<Tally>> = Vec::new();
        for &n in &targets {
            let Some(node) = nodes[n].node() else {
                continue;
            };
            node.with_aggregator(|agg| {
                let now = Instant::now();
                for &(i, signer, sequence, cast_at) in &pending {
                    let held = agg
                        .signal(&proposal, &signer)
                        .is_some_and(|s| s.body.sequence >= sequence);
                    if held {
                        found.push((i, n, now.saturating_duration_since(cast_at)));
                    }
                }
                if check_tally {
                    tallies.push(agg.tally(&proposal).map(comparable));
                }
            });
        }
        {
            let mut w = watch.lock().expect("watch lock");
            for (i, n, at) in found {
                w.signals[i].reached[n].get_or_insert(at);
            }
            if check_tally
                && !tallies.is_empty()
                && let Some(last) = w.last_cast
            {
                let all_present = tallies.iter().all(Option::is_some);
                let same_choices = all_present
                    && tallies
                        .iter()
                        .all(|t| same_counted_signers(t.as_ref(), tallies[0].as_ref()));
                if same_choices && w.choices_converged.is_none() {
                    w.choices_converged = Some(last.elapsed());
                }
                if all_present && tallies.iter().all(|t| *t == tallies[0]) && w.converged.is_none()
                {
                    w.converged = Some(last.elapsed());
                }
                let totals = tallies.iter().flatten().map(|t| t.total_nodes);
                w.total_nodes_range = totals.clone().min().zip(totals.max());
            }
        }
        std::thread::sleep(poll);
    }
}
