//! The ingest pipeline: what the node does with a message a peer sent.


use commons_aggregator::rules::{ReleaseError, verify_proposal, verify_release};
use commons_aggregator::{AttestationOutcome, Precheck, ProposalOutcome, SignalOutcome, SignalRejection};
use commons_p2p::Verdict;
use commons_signaling::{
    DecodeError, Hash32, MessageKind, Presence, Proposal, PublicKey, ReleaseBundle, Signal,
    UptimeAttestation,
};

use crate::node::{Node, Outcome, presence_supersedes};
use crate::releases::release_error_reason;
use crate::store::Batch;

impl Node {

    /// Runs a received message through the pipeline: size bound, decode, cheap checks,
    /// duplicate check before signature verification, verification off the reactor,
    /// aggregation, persistence. Returns the verdict to report to gossipsub.
    pub async fn ingest(&self, kind: MessageKind, bytes: &[u8]) -> Outcome {
        let outcome = if bytes.len() > kind.max_bytes() {
            Outcome::reject("too_large")
        } else {
            match kind {
                MessageKind::Signal => self.ingest_signal(bytes).await,
                MessageKind::Proposal => self.ingest_proposal(bytes).await,
                MessageKind::Presence => self.ingest_presence(bytes).await,
                MessageKind::Attestation => self.ingest_attestation(bytes).await,
                MessageKind::Release => self.ingest_release(bytes).await,
            }
        };
        if outcome.reason == "duplicate" {
            self.metrics.duplicate(kind.name());
        }
        self.metrics.received(kind.name(), outcome.verdict_name());
        tracing::debug!(
            kind = kind.name(),
            verdict = outcome.verdict_name(),
            reason = outcome.reason,
            "ingested"
        );
        outcome
    }

    fn decode_failure(error: &DecodeError) -> Outcome {
        match error {
            // A newer protocol version may be valid to nodes that speak it; not the sender's
            // fault that this node does not.
            DecodeError::UnknownVersion { .. } => Outcome::ignore("unknown_version"),
            DecodeError::TooLarge { .. } => Outcome::reject("too_large"),
            _ => Outcome::reject("malformed"),
        }
    }

    fn signal_rejection(rejection: &SignalRejection) -> Outcome {
        match rejection {
            // Could become valid once the proposal arrives (sync fills it in).
            SignalRejection::UnknownProposal(_) => Outcome::ignore("unknown_proposal"),
            SignalRejection::FromFuture { .. } => Outcome::ignore("too_early"),
            // An older signal can still be in flight after a newer one; the relay did
            // nothing wrong.
            SignalRejection::Replay { .. } => Outcome::ignore("replay"),
            SignalRejection::Equivocation { .. } => Outcome::ignore("equivocation"),
            // Deterministic, clock-independent invalidity: no honest node forwards it.
            SignalRejection::AfterLockEnd { .. } => Outcome::reject("after_lock_end"),
        }
    }

    /// The latest epoch a message may carry: the epoch at now plus the allowed clock skew.
    fn max_epoch(&self, now: u64) -> u64 {
        self.spec
            .epoch_at(now.saturating_add(self.spec.max_clock_skew_secs))
    }

    /// Checks attestations carried by a message of `carrier`: each must be about the carrier
    /// (they vouch for its uptime) and not issued in the future.
    fn check_carried(
        &self,
        carrier: &PublicKey,
        attestations: &[UptimeAttestation],
        now: u64,
    ) -> Option<Outcome> {
        if attestations.iter().any(|a| a.body.subject != *carrier) {
            return Some(Outcome::reject("attestation_not_about_carrier"));
        }
        let max_epoch = self.max_epoch(now);
        if attestations.iter().any(|a| a.body.epoch > max_epoch) {
            return Some(Outcome::ignore("too_early"));
        }
        None
    }

    /// Verifies a message and attestations on the blocking pool.
    async fn verify_off_reactor(
        &self,
        check: impl FnOnce(&Hash32) -> bool + Send + 'static,
        attestations: Vec<UptimeAttestation>,
    ) -> bool {
        let network_id = self.network_id;
        tokio::task::spawn_blocking(move || {
            check(&network_id) && attestations.iter().all(|a| a.verify(&network_id))
        })
        .await
        .unwrap_or(false)
    }

    async fn ingest_signal(&self, bytes: &[u8]) -> Outcome {
        // The cheapest duplicate check there is: the signature at the end of the bytes.
        if self.state().agg.holds_signal_encoding(bytes) {
            return Outcome::ignore("duplicate");
        }
        let signal = match Signal::decode(bytes) {
            Ok(s) => s,
            Err(e) => return Self::decode_failure(&e),
        };
        let now = self.now();
        if let Some(outcome) =
            self.check_carried(&signal.body.signer, &signal.body.attestations, now)
        {
            return outcome;
        }
        let to_verify: Vec<UptimeAttestation> = {
            let st = self.state();
            match st.agg.precheck_signal(&signal, now) {
                Ok(Precheck::Duplicate) => return Outcome::ignore("duplicate"),
                Err(e) => return Self::signal_rejection(&e),
                Ok(Precheck::New) => st
                    .agg
                    .unverified_attestations(&signal.body.attestations)
                    .into_iter()
                    .cloned()
                    .collect(),
            }
        };
        let copy = signal.clone();
        if !self
            .verify_off_reactor(move |id| copy.verify(id), to_verify)
            .await
        {
            return Outcome::reject("bad_signature");
        }
        let mut st = self.state();
        // What is new can only have shrunk since the check above, so all of it was verified.
        let new_attestations: Vec<UptimeAttestation> = st
            .agg
            .unverified_attestations(&signal.body.attestations)
            .into_iter()
            .cloned()
            .collect();
        match st.agg.apply_signal(signal.clone(), now) {
            Ok(SignalOutcome::Duplicate) => Outcome::ignore("duplicate"),
            Ok(_) => {
                let mut batch = Batch::new();
                batch.put_signal(&signal);
                for a in &new_attestations {
                    batch.put_attestation(a);
                }
                if self.write(batch) {
                    Outcome::accept()
                } else {
                    Outcome::ignore("store_failed")
                }
            }
            Err(e) => Self::signal_rejection(&e),
        }
    }

    async fn ingest_proposal(&self, bytes: &[u8]) -> Outcome {
        let proposal = match Proposal::decode(bytes) {
            Ok(p) => p,
            Err(e) => return Self::decode_failure(&e),
        };
        let id = proposal.id(&self.network_id);
        if self.state().agg.proposal(&id).is_some() {
            return Outcome::ignore("duplicate");
        }
        let spec = self.spec.clone();
        let copy = proposal.clone();
        if !self
            .verify_off_reactor(
                move |nid| verify_proposal(&copy, &spec, nid).is_ok(),
                Vec::new(),
            )
            .await
        {
            return Outcome::reject("invalid_proposal");
        }
        let mut st = self.state();
        // add_proposal checks the signatures again; proposals are rare and carry at most a
        // handful, so that is cheap next to keeping the aggregator's own guarantee.
        match st.agg.add_proposal(proposal.clone()) {
            Ok(ProposalOutcome::New) => {
                let mut batch = Batch::new();
                batch.put_proposal(&id, &proposal);
                tracing::info!(proposal = %id, title = %proposal.body.title, "new proposal");
                if self.write(batch) {
                    Outcome::accept()
                } else {
                    Outcome::ignore("store_failed")
                }
            }
            Ok(ProposalOutcome::Duplicate) => Outcome::ignore("duplicate"),
            Err(_) => Outcome::reject("invalid_proposal"),
        }
    }

    async fn ingest_presence(&self, bytes: &[u8]) -> Outcome {
        let presence = match Presence::decode(bytes) {
            Ok(p) => p,
            Err(e) => return Self::decode_failure(&e),
        };
        let body = &presence.body;
        if body.node == self.me {
            return Outcome::ignore("own");
        }
        let now = self.now();
        if let Some(outcome) = self.check_carried(&body.node, &body.attestations, now) {
            return outcome;
        }
        if body.epoch > self.max_epoch(now) {
            return Outcome::ignore("too_early");
        }
        let to_verify: Vec<UptimeAttestation> = {
            let st = self.state();
            // A presence from earlier in the window may still carry live attestations (a
            // peer serves the latest it holds of a node that went offline); older ones cannot.
            if body.epoch + u64::from(self.spec.uptime_window_epochs) < st.agg.epoch() {
                return Outcome::ignore("stale");
            }
            match st.presences.get(&body.node) {
                Some(held) if held.1 == presence.signature.0 => {
                    return Outcome::ignore("duplicate");
                }
                Some(held) if !presence_supersedes(body.epoch, &presence.signature.0, held) => {
                    return Outcome::ignore("superseded");
                }
                _ => {}
            }
            st.agg
                .unverified_attestations(&body.attestations)
                .into_iter()
                .cloned()
                .collect()
        };
        let copy = presence.clone();
        if !self
            .verify_off_reactor(move |id| copy.verify(id), to_verify)
            .await
        {
            return Outcome::reject("bad_signature");
        }
        let mut st = self.state();
        if let Some(held) = st.presences.get(&presence.body.node)
            && !presence_supersedes(presence.body.epoch, &presence.signature.0, held)
        {
            return Outcome::ignore("duplicate");
        }
        let new_attestations: Vec<UptimeAttestation> = st
            .agg
            .unverified_attestations(&presence.body.attestations)
            .into_iter()
            .cloned()
            .collect();
        st.presences.insert(
            presence.body.node,
            (presence.body.epoch, presence.signature.0),
        );
        let mut batch = Batch::new();
        batch.put_presence(&presence);
        for a in &new_attestations {
            batch.put_attestation(a);
        }
        st.agg.apply_presence(presence);
        if self.write(batch) {
            Outcome::accept()
        } else {
            Outcome::ignore("store_failed")
        }
    }

    /// A bare attestation: only one about this node counts, handed over by its attester
    /// (a sync `deliver`), because an attestation counts only when its subject carries it
    /// (docs/PROTOCOL.md, "Who carries attestations"); this node then carries it in its
    /// presence and signals.
    async fn ingest_attestation(&self, bytes: &[u8]) -> Outcome {
        let attestation = match UptimeAttestation::decode(bytes) {
            Ok(a) => a,
            Err(e) => return Self::decode_failure(&e),
        };
        if attestation.body.subject != self.me {
            return Outcome::ignore("not_carried_by_subject");
        }
        if attestation.body.epoch > self.max_epoch(self.now()) {
            return Outcome::ignore("too_early");
        }
        if self
            .state()
            .agg
            .unverified_attestations(std::slice::from_ref(&attestation))
            .is_empty()
        {
            // Held, superseded, expired or a self-attestation: nothing it could change.
            return Outcome::ignore("duplicate");
        }
        let copy = attestation.clone();
        if !self
            .verify_off_reactor(move |id| copy.verify(id), Vec::new())
            .await
        {
            return Outcome::reject("bad_signature");
        }
        let mut st = self.state();
        let mut batch = Batch::new();
        batch.put_attestation(&attestation);
        match st.agg.add_carried_attestation(&self.me, attestation) {
            AttestationOutcome::New => {
                if self.write(batch) {
                    Outcome::accept()
                } else {
                    Outcome::ignore("store_failed")
                }
            }
            _ => Outcome::ignore("duplicate"),
        }
    }

    async fn ingest_release(&self, bytes: &[u8]) -> Outcome {
        let bundle = match ReleaseBundle::decode(bytes) {
            Ok(b) => b,
            Err(e) => {
                let outcome = Self::decode_failure(&e);
                self.release_metrics.rejected(outcome.reason);
                return outcome;
            }
        };
        let id = bundle.id(&self.network_id);
        if self.state().releases.contains_key(&id) {
            return Outcome::ignore("duplicate");
        }
        if let Err(e) = self.verify_release_off_reactor(&bundle).await {
            let reason = release_error_reason(&e);
            self.release_metrics.rejected(reason);
            return match e {
                // A superseded or expired bundle was valid once; relays may still hold it.
                ReleaseError::Rollback { .. } | ReleaseError::Expired { .. } => {
                    Outcome::ignore(reason)
                }
                _ => Outcome::reject(reason),
            };
        }
        match self.accept_release(id, &bundle) {
            Ok(true) => Outcome::accept(),
            Ok(false) => Outcome::ignore("duplicate"),
            Err(reason) => {
                self.release_metrics.rejected(reason);
                Outcome::ignore(reason)
            }
        }
    }

    /// Checks a bundle against the network's release rules and the newest release held on
    /// its channel, on the blocking pool.
    pub(crate) async fn verify_release_off_reactor(
        &self,
        bundle: &ReleaseBundle,
    ) -> Result<(), ReleaseError> {
        let newest = self
            .state()
            .newest_release
            .get(bundle.body.channel.as_str())
            .cloned();
        let spec = self.spec.clone();
        let now = self.now();
        let copy = bundle.clone();
        tokio::task::spawn_blocking(move || {
            verify_release(&copy, &spec, &spec.network_id(), newest.as_ref(), now).map(|_| ())
        })
        .await
        .unwrap_or_else(|_| {
            Err(ReleaseError::BadArtifacts(
                "verification task failed".into(),
            ))
        })
    }

    /// Records a verified bundle: `Ok(false)` when it was held already, `Err(reason)` when a
    /// newer one for its channel arrived meanwhile or the store failed.
    pub(crate) fn accept_release(
        &self,
        id: Hash32,
        bundle: &ReleaseBundle,
    ) -> Result<bool, &'static str> {
        let channel = bundle.body.channel.as_str().to_string();
        {
            let mut st = self.state();
            if st.releases.contains_key(&id) {
                return Ok(false);
            }
            if st
                .newest_release
                .get(&channel)
                .is_some_and(|v| bundle.body.release <= *v)
            {
                return Err("rollback");
            }
            let mut batch = Batch::new();
            batch.put_release(&id, bundle);
            if !self.write(batch) {
                return Err("store_failed");
            }
            st.releases.insert(id, bundle.clone());
            st.newest_release
                .insert(channel, bundle.body.release.clone());
        }
        tracing::info!(release = %bundle.body.release, channel = %bundle.body.channel, id = %id, "new release bundle");
        self.release_added.notify_one();
        Ok(true)
    }
}
