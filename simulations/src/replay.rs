//! The simulator's tally of a fixed set of signed messages, decided by the node's own
//! intake (`commons_aggregator::Intake`).
//!
//! A node's ingest pipeline (in `commons-node`) asks the intake what to do with each message
//! it receives, verifies the signatures the intake asks for off its event loop, and hands
//! the result back to the intake, which applies it. This module runs the same two steps in
//! one loop, verifying inline and without storage or networking, so that a test can hand the
//! very same bytes to real daemons and require the same verdicts and the same tally from
//! them (`simulations/tests/sim_matches_daemons.rs`).

use commons_aggregator::{Aggregator, Checked, Intake, Reason, Tally, Verdict};
use commons_signaling::{Hash32, MessageKind, NetworkSpec};

/// The intake after a set of messages, with the reason for the verdict on each.
#[derive(Debug)]
pub struct Replay {
    /// The intake holding everything that was applied, at the epoch of `now`.
    pub intake: Intake,
    /// One reason per message, in the order given; [`Reason::verdict`] is what a node
    /// reports to gossip.
    pub reasons: Vec<Reason>,
}

impl Replay {
    /// The aggregator holding everything that was applied.
    pub fn aggregator(&self) -> &Aggregator {
        self.intake.aggregator()
    }

    /// The tally of a proposal, if it was applied.
    pub fn tally(&self, proposal: &Hash32) -> Option<Tally> {
        self.aggregator().tally(proposal)
    }

    /// The gossip verdict on each message, in the order given.
    pub fn verdicts(&self) -> Vec<Verdict> {
        self.reasons.iter().map(|r| r.verdict()).collect()
    }
}

/// Feeds `messages` (kind and bytes, in order) to a fresh intake of `spec` at Unix time
/// `now`, as a node's ingest pipeline does: [`Intake::check`], the signature checks it asks
/// for, then [`Intake::apply`]. The replay plays an observer without a key of its own, so a
/// bare attestation is never about it.
pub fn replay(spec: &NetworkSpec, messages: &[(MessageKind, Vec<u8>)], now: u64) -> Replay {
    let mut intake = Intake::new(spec.clone(), spec.epoch_at(now), None);
    let mut reasons = Vec::with_capacity(messages.len());
    for (kind, bytes) in messages {
        let reason = match intake.check(*kind, bytes, now) {
            Checked::Decided(reason) => reason,
            Checked::Verify(pending) => {
                let verified = pending.verify(spec, now);
                intake.apply(verified, now).reason
            }
        };
        reasons.push(reason);
    }
    Replay { intake, reasons }
}
