//! The simulator's tally of a fixed set of signed messages, computed with the same
//! `commons_aggregator::Aggregator` calls a node makes when those messages reach it.
//!
//! A node's ingest pipeline (in `commons-node`) decodes each message, runs the cheap checks,
//! verifies the signatures of the message and of the attestations it carries that would change
//! something, then calls `add_proposal`, `apply_presence` or `apply_signal`. This module does
//! the same, in one pass and without storage or networking, so that a test can hand the very
//! same bytes to real daemons and require the same tally from them
//! (`simulations/tests/sim_matches_daemons.rs`).

use std::collections::HashMap;

use commons_aggregator::{Aggregator, Policy, Precheck, Tally};
use commons_signaling::{
    Hash32, MessageKind, NetworkSpec, Presence, Proposal, PublicKey, Signal, UptimeAttestation,
};

/// What became of one message in [`replay`]: the same verdicts a node reports to gossip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayed {
    /// New and valid: applied.
    Applied,
    /// A duplicate or superseded message: nothing changed.
    Ignored,
    /// Invalid: not applied (a node would reject it).
    Rejected(&'static str),
}

/// The aggregator after a set of messages, with the verdict on each.
#[derive(Debug)]
pub struct Replay {
    /// The aggregator holding everything that was applied, at the epoch of `now`.
    pub aggregator: Aggregator,
    /// One verdict per message, in the order given.
    pub verdicts: Vec<Replayed>,
}

impl Replay {
    /// The tally of a proposal, if it was applied.
    pub fn tally(&self, proposal: &Hash32) -> Option<Tally> {
        self.aggregator.tally(proposal)
    }
}

/// Feeds `messages` (kind and canonical bytes, in order) to a fresh aggregator of `spec` at
/// Unix time `now`, as a node's ingest pipeline does: the node's cheap checks, signature
/// verification of the message and of the attestations it carries that are new, then the
/// aggregator call. Presences keep the latest per node (a later epoch, or on the same epoch the
/// larger signature), like a node.
pub fn replay(spec: &NetworkSpec, messages: &[(MessageKind, Vec<u8>)], now: u64) -> Replay {
    let network_id = spec.network_id();
    let mut agg = Aggregator::new(spec.clone(), Policy::from_spec(spec), spec.epoch_at(now));
    let max_epoch = spec.epoch_at(now.saturating_add(spec.max_clock_skew_secs));
    let window = u64::from(spec.uptime_window_epochs);
    let mut presences: HashMap<PublicKey, (u64, [u8; 64])> = HashMap::new();
    let carried_ok = |carrier: &PublicKey, attestations: &[UptimeAttestation]| {
        if attestations.iter().any(|a| a.body.subject != *carrier) {
            return Err(Replayed::Rejected("attestation_not_about_carrier"));
        }
        if attestations.iter().any(|a| a.body.epoch > max_epoch) {
            return Err(Replayed::Ignored);
        }
        Ok(())
    };
    let mut verdicts = Vec::with_capacity(messages.len());
    for (kind, bytes) in messages {
        let verdict = if bytes.len() > kind.max_bytes() {
            Replayed::Rejected("too_large")
        } else {
            match kind {
                MessageKind::Proposal => match Proposal::decode(bytes) {
                    Err(_) => Replayed::Rejected("malformed"),
                    // add_proposal verifies the maintainer signatures itself.
                    Ok(p) => match agg.add_proposal(p) {
                        Ok(commons_aggregator::ProposalOutcome::New) => Replayed::Applied,
                        Ok(commons_aggregator::ProposalOutcome::Duplicate) => Replayed::Ignored,
                        Err(_) => Replayed::Rejected("invalid_proposal"),
                    },
                },
                MessageKind::Presence => match Presence::decode(bytes) {
                    Err(_) => Replayed::Rejected("malformed"),
                    Ok(p) => {
                        let body = &p.body;
                        if let Err(v) = carried_ok(&body.node, &body.attestations) {
                            v
                        } else if body.epoch > max_epoch
                            || body.epoch + window < agg.epoch()
                            || presences.get(&body.node).is_some_and(|held| {
                                (body.epoch, &p.signature.0) <= (held.0, &held.1)
                            })
                        {
                            // From the future, stale, or not newer than the one held.
                            Replayed::Ignored
                        } else if !p.verify(&network_id)
                            || !agg
                                .unverified_attestations(&body.attestations)
                                .iter()
                                .all(|a| a.verify(&network_id))
                        {
                            Replayed::Rejected("bad_signature")
                        } else {
                            presences.insert(body.node, (body.epoch, p.signature.0));
                            agg.apply_presence(p);
                            Replayed::Applied
                        }
                    }
                },
                MessageKind::Signal => match Signal::decode(bytes) {
                    Err(_) => Replayed::Rejected("malformed"),
                    Ok(s) => {
                        if let Err(v) = carried_ok(&s.body.signer, &s.body.attestations) {
                            v
                        } else {
                            match agg.precheck_signal(&s, now) {
                                Ok(Precheck::Duplicate) | Err(_) => Replayed::Ignored,
                                Ok(Precheck::New) => {
                                    if !s.verify(&network_id)
                                        || !agg
                                            .unverified_attestations(&s.body.attestations)
                                            .iter()
                                            .all(|a| a.verify(&network_id))
                                    {
                                        Replayed::Rejected("bad_signature")
                                    } else {
                                        match agg.apply_signal(s, now) {
                                            Ok(_) => Replayed::Applied,
                                            Err(_) => Replayed::Ignored,
                                        }
                                    }
                                }
                            }
                        }
                    }
                },
                // Bare attestations count only when their subject carries them, and releases
                // do not touch tallies.
                MessageKind::Attestation | MessageKind::Release => Replayed::Ignored,
            }
        };
        verdicts.push(verdict);
    }
    Replay {
        aggregator: agg,
        verdicts,
    }
}
