//! Restoring the node's state from the store at start-up: a restart, also after a crash,
//! comes back with the tallies, overrides, releases, presences and observations it had.

use std::collections::{HashMap, HashSet};

use commons_aggregator::{Aggregator, Policy};
use commons_signaling::{Hash32, NetworkSpec, PublicKey, ReleaseVersion};

use crate::node::{State, be_u64, hex32};
use crate::store::{Store, StoreError};

impl State {
    /// Replays the store into a fresh aggregator at Unix time `now`.
    pub(crate) fn restore(spec: &NetworkSpec, store: &Store, now: u64) -> Result<State, StoreError> {
        let network_id = spec.network_id();
        let epoch = spec.epoch_at(now);
        let mut agg = Aggregator::new(spec.clone(), Policy::from_spec(spec), epoch);
        let mut skipped = 0usize;
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
        let mut overrides = HashSet::new();
        for (key, value) in store.meta_prefix("override/")? {
            if let (Some(id), Some(at)) = (hex32(&key, "override"), be_u64(&value)) {
                agg.restore_override(&Hash32(id), at);
                overrides.insert(Hash32(id));
            }
        }
        let mut releases = HashMap::new();
        let mut newest_release: HashMap<String, ReleaseVersion> = HashMap::new();
        for bundle in store.releases()? {
            let channel = bundle.body.channel.as_str().to_string();
            let version = bundle.body.release.clone();
            if newest_release.get(&channel).is_none_or(|v| version > *v) {
                newest_release.insert(channel, version);
            }
            releases.insert(bundle.id(&network_id), bundle);
        }
        let presences = store
            .presences()?
            .into_iter()
            .map(|p| (p.body.node, (p.body.epoch, p.signature.0)))
            .collect();
        let mut observed = HashMap::new();
        for (key, value) in store.meta_prefix("observed/")? {
            if let (Some(k), Ok(o)) = (hex32(&key, "observed"), serde_json::from_slice(&value)) {
                observed.insert(PublicKey(k), o);
            }
        }
        if skipped > 0 {
            // Records become invalid only if the spec changed under the data directory.
            tracing::warn!(
                skipped,
                "stored messages no longer valid under this network spec"
            );
        }
        tracing::info!(
            proposals = agg.proposals().len(),
            signals = agg.signals().count(),
            attestations = agg.attestations().count(),
            epoch,
            "state restored from the store"
        );
        Ok(State {
            agg,
            presences,
            releases,
            newest_release,
            overrides,
            peers: HashMap::new(),
            seen_this_epoch: HashMap::new(),
            observed,
        })
    }
}
