//! Restoring the node's state from the store at start-up: a restart, also after a crash,
//! comes back with the tallies, overrides, releases, presences and observations it had.

use std::collections::HashSet;

use commons_aggregator::Intake;
use commons_signaling::{NetworkSpec, PublicKey};

use crate::epoch::UptimeObserver;
use crate::node::State;
use crate::store::{Store, StoreError};

impl State {
    /// Replays the store into a fresh intake at Unix time `now`, for the node whose key is
    /// `me`. Stored records were verified before they were stored, so they go straight to
    /// the aggregator and the books.
    pub(crate) fn restore(
        spec: &NetworkSpec,
        me: PublicKey,
        store: &Store,
        now: u64,
    ) -> Result<State, StoreError> {
        let network_id = spec.network_id();
        let epoch = spec.epoch_at(now);
        let mut intake = Intake::new(spec.clone(), epoch, Some(me));
        let mut skipped = 0usize;
        let agg = intake.aggregator_mut();
        for proposal in store.proposals()? {
            if agg.add_proposal(proposal).is_err() {
                skipped += 1;
            }
        }
        for attestation in store.attestations()? {
            agg.add_attestation(attestation);
        }
        for signal in store.signals()? {
            if agg.apply_signal(signal, now).is_err() {
                skipped += 1;
            }
        }
        // After the signals: a signer proven to equivocate stops counting, whatever it holds.
        for evidence in store.evidence()? {
            if agg.apply_evidence(evidence, now).is_err() {
                skipped += 1;
            }
        }
        let mut overrides = HashSet::new();
        for (id, at) in store.overrides()? {
            agg.restore_override(&id, at);
            overrides.insert(id);
        }
        for bundle in store.releases()? {
            intake.restore_release(bundle.id(&network_id), bundle);
        }
        for presence in store.presences()? {
            intake.restore_presence(&presence);
        }
        if skipped > 0 {
            // Records become invalid only if the spec changed under the data directory.
            tracing::warn!(
                skipped,
                "stored messages no longer valid under this network spec"
            );
        }
        let agg = intake.aggregator();
        tracing::info!(
            proposals = agg.proposals().len(),
            signals = agg.signals().count(),
            attestations = agg.attestations().count(),
            epoch,
            "state restored from the store"
        );
        Ok(State {
            intake,
            overrides,
            observer: UptimeObserver::restore(store.observed()?),
            measured: Default::default(),
        })
    }
}
