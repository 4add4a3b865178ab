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
        successors: Vec<NetworkSpec>,
        me: PublicKey,
        store: &Store,
        now: u64,
    ) -> Result<State, StoreError> {
        let network_id = spec.network_id();
        let epoch = spec.epoch_at(now);
        let mut intake = Intake::new(spec.clone(), epoch, Some(me));
        let agg = intake.aggregator_mut();
        // Epoch boundaries recompute every standing: on every core, as ingest verifies.
        agg.set_threads(crate::ingest::cores());
        if let Err(e) = agg.stage_successors(successors) {
            // The bundle's chain was checked at start, so this is a bug, not bad input.
            tracing::error!(error = %e, "spec versions do not follow each other");
        }
        let mut skipped;
        let mut overrides = HashSet::new();
        // A rotation that activated puts later proposals under the keys of its version:
        // replay again after each activation, so those verify as they did when received.
        // Records applied already are duplicates the second time.
        loop {
            skipped = 0;
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
            // After the signals: a signer proven to equivocate stops counting, whatever it
            // holds.
            for evidence in store.evidence()? {
                if agg.apply_evidence(evidence, now).is_err() {
                    skipped += 1;
                }
            }
            for (id, at) in store.overrides()? {
                agg.restore_override(&id, at);
                overrides.insert(id);
            }
            let activated = agg.activate_rotations();
            for spec in &activated {
                tracing::info!(
                    version = spec.version(),
                    spec_id = %spec.spec_id(),
                    "spec version in force (restored)"
                );
            }
            if activated.is_empty() {
                break;
            }
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
            warned_rotations: Default::default(),
        })
    }
}
