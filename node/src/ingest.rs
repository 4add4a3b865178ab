//! The ingest glue around the intake (`commons_aggregator::Intake`, which makes every
//! decision): the state lock, the blocking pool for signature checks, the RocksDB batch, the
//! verdict for gossipsub and the metrics.
//!
//! Locking: the lock is taken for the intake's check, released while the signatures are
//! verified on tokio's blocking pool, and taken again for the intake's apply (which re-checks
//! what may have changed meanwhile) and the store write that records it, so that the store
//! sees writes in the order the intake applied them.
//!
//! A store that cannot write (a full disk) makes the pipeline refuse new messages before the
//! intake applies them (`store_failed`, not forwarded), until a retry finds the disk writable.

use commons_aggregator::{Checked, Pending, Reason, Record, Refusal, Verified};
use commons_p2p::{TopicKind, Verdict};
use commons_signaling::{Equivocation, MessageKind, ReleaseBundle};

use crate::node::{Node, Outcome};
use crate::store::Batch;

/// The gossip verdict of the intake's verdict.
pub(crate) fn gossip_verdict(reason: Reason) -> Verdict {
    match reason.verdict() {
        commons_aggregator::Verdict::Accept => Verdict::Accept,
        commons_aggregator::Verdict::Reject => Verdict::Reject,
        commons_aggregator::Verdict::Ignore => Verdict::Ignore,
    }
}

/// The reason a message is refused for when its verification task failed (it panicked or
/// the runtime is shutting down): as if its signatures had not verified.
fn verification_failed(kind: MessageKind) -> Reason {
    match kind {
        MessageKind::Proposal => Reason::InvalidProposal,
        MessageKind::Release => Reason::BadArtifacts,
        _ => Reason::BadSignature,
    }
}

impl Node {
    /// Runs a received message through the pipeline: the intake's check (size bound, decode,
    /// cheap checks, duplicate check before signature verification), verification off the
    /// reactor, the intake's apply, persistence. Returns the verdict to report to gossipsub.
    pub async fn ingest(&self, kind: MessageKind, bytes: &[u8]) -> Outcome {
        let started = std::time::Instant::now();
        let now = self.now();
        let checked = self.state().intake.check(kind, bytes, now);
        let reason = match checked {
            Checked::Decided(reason) => reason,
            Checked::Verify(pending) => {
                let verified = self.verify_off_reactor(*pending, now).await;
                let (reason, made) = self.apply_verified_making(verified, now);
                if let Some(evidence) = made {
                    self.publish_evidence(evidence).await;
                }
                reason
            }
        };
        let outcome = Outcome::of(reason);
        if reason == Reason::Duplicate {
            self.metrics.duplicate(kind.name());
        }
        if kind == MessageKind::Release && !matches!(reason, Reason::New | Reason::Duplicate) {
            self.release_metrics().rejected(reason.label());
        }
        self.metrics
            .received(kind.name(), outcome.verdict_name(), reason.label());
        self.metrics.ingested_in(kind.name(), started.elapsed());
        tracing::debug!(
            kind = kind.name(),
            verdict = outcome.verdict_name(),
            reason = reason.label(),
            "ingested"
        );
        outcome
    }

    /// Checks the signatures the intake asked for on the blocking pool.
    pub(crate) async fn verify_off_reactor(&self, pending: Pending, now: u64) -> Verified {
        let kind = pending.kind();
        let spec = self.spec.clone();
        let queued = std::time::Instant::now();
        let checked = tokio::task::spawn_blocking(move || {
            let waited = queued.elapsed();
            let started = std::time::Instant::now();
            let verified = pending.verify(&spec, now);
            (verified, waited, started.elapsed())
        })
        .await;
        match checked {
            Ok((verified, waited, verifying)) => {
                self.metrics.verified_in(kind.name(), waited, verifying);
                verified
            }
            Err(_) => Verified::failed(verification_failed(kind)),
        }
    }

    /// Applies a verified message through the intake and writes what it says to persist, in
    /// one batch under the lock; the reason for the verdict.
    pub(crate) fn apply_verified(&self, verified: Verified, now: u64) -> Reason {
        self.apply_verified_making(verified, now).0
    }

    /// [`Node::apply_verified`], and the equivocation evidence the message revealed (once it
    /// is stored), which the caller publishes.
    fn apply_verified_making(
        &self,
        verified: Verified,
        now: u64,
    ) -> (Reason, Option<Equivocation>) {
        let mut release_added = false;
        let (reason, made) = {
            let mut st = self.state();
            // Nothing new is applied while the store cannot write: the message is refused
            // (not forwarded; peers give it back at the catch-up after the disk heals), so
            // memory holds nothing the disk would not get.
            if self.store_writable().is_err() {
                return (Reason::StoreFailed, None);
            }
            let applied = st.intake.apply(verified, now);
            if applied.persist.is_empty() {
                return (applied.reason, None);
            }
            let mut batch = Batch::new();
            for record in &applied.persist {
                match record {
                    Record::Signal(s) => batch.put_signal(s),
                    Record::Proposal(id, p) => {
                        tracing::info!(proposal = %id, title = %p.body.title, "new proposal");
                        batch.put_proposal(id, p);
                    }
                    Record::Presence(p) => batch.put_presence(p),
                    Record::Attestation(a) => batch.put_attestation(a),
                    Record::Release(id, b) => {
                        release_added = true;
                        log_release(id, b);
                        batch.put_release(id, b);
                    }
                    Record::Evidence(e) => {
                        let origin = if applied.made.is_some() {
                            "made"
                        } else {
                            "received"
                        };
                        tracing::warn!(
                            proposal = %e.proposal(),
                            signer = %e.signer(),
                            sequence = e.sequence(),
                            origin,
                            "equivocation proven: the signer no longer counts on this proposal"
                        );
                        self.metrics.evidence(origin);
                        batch.put_evidence(e);
                    }
                }
            }
            if self.write(batch) {
                (applied.reason, applied.made)
            } else {
                (Reason::StoreFailed, None)
            }
        };
        if release_added && reason == Reason::New {
            self.releases.notify_added();
        }
        (reason, made)
    }

    /// Publishes evidence this node made: the peers that sent it the two signals may each
    /// have sent only one of them on, so nobody else may be able to prove it.
    async fn publish_evidence(&self, evidence: Equivocation) {
        let published = self.publish(TopicKind::Evidence, evidence.encode()).await;
        tracing::info!(
            proposal = %evidence.proposal(),
            signer = %evidence.signer(),
            published,
            "equivocation evidence made"
        );
    }
}

impl Node {
    /// Checks a release bundle a maintainer publishes against the network's release rules
    /// and the newest release held on its channel, on the blocking pool: `None` when it is
    /// held already.
    pub(crate) async fn verify_release_off_reactor(
        &self,
        bundle: &ReleaseBundle,
    ) -> Result<Option<Verified>, Refusal> {
        let checked = self.state().intake.check_release_bundle(bundle.clone());
        let pending = match checked {
            Ok(pending) => pending,
            Err(Reason::Duplicate) => return Ok(None),
            Err(reason) => {
                return Err(Refusal {
                    reason,
                    detail: reason.label().into(),
                });
            }
        };
        let verified = self.verify_off_reactor(pending, self.now()).await;
        match verified.refusal() {
            Some(refusal) => Err(refusal.clone()),
            None => Ok(Some(verified)),
        }
    }

    /// Records a verified bundle: `Ok(false)` when it was held already, `Err(reason)` when a
    /// newer one for its channel arrived meanwhile or the store failed.
    pub(crate) fn accept_release(&self, verified: Verified) -> Result<bool, Reason> {
        match self.apply_verified(verified, self.now()) {
            Reason::New => Ok(true),
            Reason::Duplicate => Ok(false),
            reason => Err(reason),
        }
    }
}

fn log_release(id: &commons_signaling::Hash32, bundle: &ReleaseBundle) {
    tracing::info!(release = %bundle.body.release, channel = %bundle.body.channel, id = %id, "new release bundle");
}
