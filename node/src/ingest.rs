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

/// Messages of one kind checked, verified and applied as one step of
/// [`Node::ingest_many`]: the state lock is held for one check pass and one apply pass (and
/// one store write) per step, so a step bounds how long gossip ingest waits for the lock.
const INGEST_STEP: usize = 256;

/// The cores of this machine (2 where the system cannot tell), which size the node's
/// parallel work: signatures are verified on this many threads (the blocking pool has many
/// more, but more tasks than cores only queue behind each other), the ingest workers are a
/// multiple of it, and the epoch boundary recomputes standings on this many.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// One step of [`Node::ingest_many`] whose signatures are being verified on the blocking
/// pool: where its messages sit in the step, and the verification tasks.
struct Verifying {
    indices: Vec<usize>,
    tasks: Vec<tokio::task::JoinHandle<(Vec<Verified>, std::time::Duration, std::time::Duration)>>,
    kind: MessageKind,
}

/// A batch of [`Node::ingest_batch_after`] whose steps are all checked and applied but the
/// last, which is still verifying. Dropping it drops that step unapplied: hand it to
/// [`Node::finish_batch`] or to the next batch.
pub(crate) struct IngestingBatch {
    kinds: Vec<MessageKind>,
    reasons: Vec<Option<Reason>>,
    last: Option<(usize, Verifying)>,
    started: std::time::Instant,
}

impl IngestingBatch {
    /// The kind of the step still verifying, if any.
    fn last_kind(&self) -> Option<MessageKind> {
        self.last.as_ref().map(|(_, verifying)| verifying.kind)
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
        self.record_ingested(kind, reason, started.elapsed())
    }

    /// Runs many messages through the pipeline of [`Node::ingest`], with the same verdict
    /// for each as if they had been ingested one after the other, but with their signatures
    /// verified on every core: consecutive messages of one kind are checked together,
    /// verified in parallel on the blocking pool while the previous step is applied, and
    /// applied in their order with one store write per step. A message of another kind
    /// waits until those before it are applied, since it may depend on them (a signal on a
    /// proposal earlier in a catch-up page). Within a step messages are checked before any
    /// is applied, as concurrent gossip ingest checks them, so a reason may differ where one
    /// message changes what a later one of its step is (a copy of a signal superseded in the
    /// same step is refused as a duplicate instead of a replay; both are ignored); the
    /// intake's apply re-checks each, so the state is the same.
    pub async fn ingest_many(&self, items: &[(MessageKind, &[u8])]) -> Vec<Outcome> {
        let (_, batch) = self.ingest_batch_after(None, items).await;
        self.finish_batch(batch).await
    }

    /// [`Node::ingest_many`] for consecutive pages (what a catch-up receives), pipelined as
    /// catch-up pipelines them: each page's first step starts verifying before the previous
    /// page's last step is applied. Returns each page's outcomes, which are those of all the
    /// pages ingested as one batch.
    pub async fn ingest_pages(&self, pages: &[&[(MessageKind, &[u8])]]) -> Vec<Vec<Outcome>> {
        let mut outcomes = Vec::with_capacity(pages.len());
        let mut in_flight = None;
        for page in pages {
            let (previous, batch) = self.ingest_batch_after(in_flight.take(), page).await;
            outcomes.extend(previous);
            in_flight = Some(batch);
        }
        if let Some(batch) = in_flight {
            outcomes.push(self.finish_batch(batch).await);
        }
        outcomes
    }

    /// [`Node::ingest_many`] for a batch that follows `previous`, whose last step is still
    /// verifying: this batch's first step is checked and starts verifying before that last
    /// step is applied, so the cores do not idle between batches (catch-up pages). Returns
    /// `previous`'s outcomes, every step of it applied, and this batch with its own last
    /// step still verifying, for [`Node::finish_batch`] or the next call. The verdicts are
    /// those of the two batches ingested as one.
    pub(crate) async fn ingest_batch_after(
        &self,
        mut previous: Option<IngestingBatch>,
        items: &[(MessageKind, &[u8])],
    ) -> (Option<Vec<Outcome>>, IngestingBatch) {
        let mut previous_outcomes = None;
        let mut batch = IngestingBatch {
            kinds: items.iter().map(|(kind, _)| *kind).collect(),
            reasons: vec![None; items.len()],
            last: None,
            started: std::time::Instant::now(),
        };
        let mut start = 0;
        while start < items.len() {
            let kind = items[start].0;
            let same_kind = items[start..]
                .iter()
                .take(INGEST_STEP)
                .take_while(|(k, _)| *k == kind)
                .count();
            let end = start + same_kind;
            let now = self.now();
            if let Some((_, verifying)) = &batch.last
                && verifying.kind != kind
            {
                let (offset, verifying) = batch.last.take().expect("checked just above");
                self.apply_step(verifying, offset, now, &mut batch.reasons)
                    .await;
            }
            // A step of another kind may depend on the previous batch's last step.
            if let Some(p) = previous.take_if(|p| p.last_kind() != Some(kind)) {
                previous_outcomes = Some(self.finish_batch(p).await);
            }
            let step = self.check_step(&items[start..end], start, now, &mut batch.reasons);
            if let Some(p) = previous.take() {
                previous_outcomes = Some(self.finish_batch(p).await);
            }
            if let Some((offset, verifying)) = batch.last.replace((start, step)) {
                self.apply_step(verifying, offset, now, &mut batch.reasons)
                    .await;
            }
            start = end;
        }
        if let Some(p) = previous.take() {
            previous_outcomes = Some(self.finish_batch(p).await);
        }
        (previous_outcomes, batch)
    }

    /// Applies a batch's last step and returns the verdict of each of its messages.
    pub(crate) async fn finish_batch(&self, mut batch: IngestingBatch) -> Vec<Outcome> {
        if let Some((offset, verifying)) = batch.last.take() {
            self.apply_step(verifying, offset, self.now(), &mut batch.reasons)
                .await;
        }
        // Each message is counted with its share of the whole batch's time.
        let took =
            batch.started.elapsed() / u32::try_from(batch.kinds.len().max(1)).unwrap_or(u32::MAX);
        batch
            .kinds
            .into_iter()
            .zip(batch.reasons)
            .map(|(kind, reason)| {
                let reason = reason.unwrap_or_else(|| verification_failed(kind));
                self.record_ingested(kind, reason, took)
            })
            .collect()
    }

    /// The intake's check of one step of [`Node::ingest_many`] (one kind) under one lock:
    /// the decided reasons go to `reasons` (from `offset` on), the rest start verifying.
    fn check_step(
        &self,
        step: &[(MessageKind, &[u8])],
        offset: usize,
        now: u64,
        reasons: &mut [Option<Reason>],
    ) -> Verifying {
        let kind = step.first().map_or(MessageKind::Signal, |(k, _)| *k);
        let mut indices = Vec::new();
        let mut pending = Vec::new();
        {
            let st = self.state();
            for (i, (kind, bytes)) in step.iter().enumerate() {
                match st.intake.check(*kind, bytes, now) {
                    Checked::Decided(reason) => reasons[offset + i] = Some(reason),
                    Checked::Verify(p) => {
                        indices.push(i);
                        pending.push(*p);
                    }
                }
            }
        }
        let per_task = pending.len().div_ceil(cores()).max(1);
        let mut tasks = Vec::new();
        while !pending.is_empty() {
            let rest = pending.split_off(per_task.min(pending.len()));
            let part = std::mem::replace(&mut pending, rest);
            let spec = self.spec.clone();
            let signatures = self.signatures.clone();
            let queued = std::time::Instant::now();
            tasks.push(tokio::task::spawn_blocking(move || {
                let waited = queued.elapsed();
                let started = std::time::Instant::now();
                let verified = part
                    .into_iter()
                    .map(|p| p.verify_with(&spec, now, signatures.as_ref()))
                    .collect();
                (verified, waited, started.elapsed())
            }));
        }
        Verifying {
            indices,
            tasks,
            kind,
        }
    }

    /// Waits for a step's verification and applies it in order (one lock, one store write),
    /// publishing any equivocation evidence it revealed.
    async fn apply_step(
        &self,
        step: Verifying,
        offset: usize,
        now: u64,
        reasons: &mut [Option<Reason>],
    ) {
        let mut verified = Vec::with_capacity(step.indices.len());
        for task in step.tasks {
            // A task that failed (it panicked, or the runtime is shutting down) leaves fewer
            // results than messages: the whole step is refused below, as if its signatures
            // had not verified.
            if let Ok((part, waited, verifying)) = task.await {
                let each = verifying / u32::try_from(part.len().max(1)).unwrap_or(u32::MAX);
                for _ in 0..part.len() {
                    self.metrics.verified_in(step.kind.name(), waited, each);
                }
                verified.extend(part);
            }
        }
        let applied = if verified.len() == step.indices.len() {
            self.apply_many(verified, now)
        } else {
            vec![(verification_failed(step.kind), None); step.indices.len()]
        };
        for (i, (reason, made)) in step.indices.into_iter().zip(applied) {
            reasons[offset + i] = Some(reason);
            if let Some(evidence) = made {
                self.publish_evidence(evidence).await;
            }
        }
    }

    /// Counts a message's outcome in the metrics and the debug log.
    fn record_ingested(
        &self,
        kind: MessageKind,
        reason: Reason,
        took: std::time::Duration,
    ) -> Outcome {
        let outcome = Outcome::of(reason);
        if reason == Reason::Duplicate {
            self.metrics.duplicate(kind.name());
        }
        if kind == MessageKind::Release && !matches!(reason, Reason::New | Reason::Duplicate) {
            self.release_metrics().rejected(reason.label());
        }
        self.metrics
            .received(kind.name(), outcome.verdict_name(), reason.label());
        self.metrics.ingested_in(kind.name(), took);
        tracing::debug!(
            kind = kind.name(),
            verdict = outcome.verdict_name(),
            reason = reason.label(),
            "ingested"
        );
        outcome
    }

    /// Checks the signatures the intake asked for off the reactor: presences and
    /// attestations on the background threads, everything else on the blocking pool.
    pub(crate) async fn verify_off_reactor(&self, pending: Pending, now: u64) -> Verified {
        let kind = pending.kind();
        let spec = self.spec.clone();
        let signatures = self.signatures.clone();
        let queued = std::time::Instant::now();
        let work = move || {
            let waited = queued.elapsed();
            let started = std::time::Instant::now();
            let verified = pending.verify_with(&spec, now, signatures.as_ref());
            (verified, waited, started.elapsed())
        };
        // The bulk of gossip yields the cores to everything else (see `background`).
        let checked = if matches!(kind, MessageKind::Presence | MessageKind::Attestation) {
            crate::background::run(work).await
        } else {
            tokio::task::spawn_blocking(work).await.ok()
        };
        match checked {
            Some((verified, waited, verifying)) => {
                self.metrics.verified_in(kind.name(), waited, verifying);
                verified
            }
            None => Verified::failed(verification_failed(kind)),
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
        self.apply_many(vec![verified], now)
            .pop()
            .unwrap_or((Reason::StoreFailed, None))
    }

    /// Applies verified messages through the intake in their order and writes what they say
    /// to persist in one batch under one lock: per message, the reason for its verdict and
    /// the equivocation evidence it revealed (once stored). When the write fails, every
    /// message that had something to persist is refused with [`Reason::StoreFailed`].
    fn apply_many(&self, verified: Vec<Verified>, now: u64) -> Vec<(Reason, Option<Equivocation>)> {
        let mut release_added = false;
        let mut results = Vec::with_capacity(verified.len());
        let mut persisting = Vec::with_capacity(verified.len());
        let written = {
            let mut st = self.state();
            // Nothing new is applied while the store cannot write: the messages are refused
            // (not forwarded; peers give them back at the catch-up after the disk heals), so
            // memory holds nothing the disk would not get.
            if self.store_writable().is_err() {
                return std::iter::repeat_with(|| (Reason::StoreFailed, None))
                    .take(verified.len())
                    .collect();
            }
            let mut batch = Batch::new();
            for verified in verified {
                let applied = st.intake.apply(verified, now);
                persisting.push(!applied.persist.is_empty());
                for record in &applied.persist {
                    let release = self.stage(record, applied.made.is_some(), &mut batch);
                    release_added |= release && applied.reason == Reason::New;
                }
                results.push((applied.reason, applied.made));
            }
            batch.is_empty() || self.write(batch)
        };
        if !written {
            for (result, persisted) in results.iter_mut().zip(&persisting) {
                if *persisted {
                    *result = (Reason::StoreFailed, None);
                }
            }
        }
        if release_added && written {
            self.releases.notify_added();
        }
        self.changed.notify_waiters();
        results
    }

    /// Adds one record to persist to `batch` (logging what deserves it); whether it is a
    /// release bundle. `made` says whether this node made the evidence the record may be.
    fn stage(&self, record: &Record, made: bool, batch: &mut Batch) -> bool {
        match record {
            Record::Signal(s) => batch.put_signal(s),
            Record::Proposal(id, p) => {
                tracing::info!(proposal = %id, title = %p.body.title, "new proposal");
                batch.put_proposal(id, p);
            }
            Record::Presence(p) => batch.put_presence(p),
            Record::Attestation(a) => batch.put_attestation(a),
            Record::Release(id, b) => {
                log_release(id, b);
                batch.put_release(id, b);
                return true;
            }
            Record::Evidence(e) => {
                let origin = if made { "made" } else { "received" };
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
            Record::OverrideVoided(id) => {
                tracing::warn!(
                    proposal = %id,
                    "latched override void: an equivocator's override signal helped reach it"
                );
                batch.delete_override(id);
            }
        }
        false
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
