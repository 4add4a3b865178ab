//! The intake: the one decision about every received message, shared by the node
//! (`commonsd`) and the simulator (`commons-sim`), so that they can never drift apart.
//!
//! A message goes through two steps with the caller's signature check between them:
//!
//! 1. [`Intake::check`]: size bound, decode, the cheap checks (carried attestations about the
//!    carrier and not from the future, stale or superseded presence, known proposal, lock
//!    end, clock skew) and the duplicate check, all before any signature is verified. Either
//!    the message is decided there ([`Checked::Decided`]) or it needs its signatures checked
//!    ([`Checked::Verify`]): the message and those of its carried attestations that would
//!    change something.
//! 2. The caller runs [`Pending::verify`] wherever it likes (the node on its blocking pool,
//!    without holding its lock; the simulator inline), then hands the result to
//!    [`Intake::apply`], which re-checks what may have changed meanwhile, applies it to the
//!    aggregator and the books, and says what to persist ([`Applied::persist`]).
//!
//! The intake never verifies a signature itself, never reads a clock (`now` is passed in)
//! and never touches storage.

use std::collections::HashMap;

use commons_signaling::{
    DecodeError, Equivocation, Hash32, MessageKind, NetworkSpec, Presence, Proposal, PublicKey,
    ReleaseBundle, ReleaseVersion, Signal, UptimeAttestation,
};

use crate::aggregator::{
    Aggregator, EvidenceOutcome, Precheck, ProposalOutcome, SignalOutcome, SignalRejection,
};
use crate::policy::Policy;
use crate::population::AttestationOutcome;
use crate::rules::{ReleaseError, verify_proposal, verify_release};
use crate::signatures::{PlainSignatures, SignatureCheck, signed_ok};

/// What a relay should do with a message, as the gossip layer understands it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Valid and new: forward it.
    Accept,
    /// Invalid whatever the clock or the order of arrival: penalise the sender.
    Reject,
    /// Not forwarded, but the sender did nothing wrong (a duplicate, a message this node
    /// cannot judge yet, or one that is no longer worth anything).
    Ignore,
}

impl Verdict {
    /// The verdict as a metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Accept => "accept",
            Verdict::Reject => "reject",
            Verdict::Ignore => "ignore",
        }
    }
}

/// Why a message got its verdict: one vocabulary for the node's metrics and logs, the
/// release counters and the simulator's replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// New and valid: applied.
    New,
    /// Larger than any valid message of its kind.
    TooLarge,
    /// Does not decode as a canonical message of its kind.
    Malformed,
    /// Declares a protocol version this implementation does not speak.
    UnknownVersion,
    /// Exactly what is held already.
    Duplicate,
    /// A carried attestation is about someone other than the carrier.
    AttestationNotAboutCarrier,
    /// From further in the future than the clock skew allows (by time or by epoch).
    TooEarly,
    /// A signal on a proposal not known (yet).
    UnknownProposal,
    /// A signal with a lower sequence number than the signer's latest.
    Replay,
    /// A signal with the sequence number of the held one and other content: not forwarded.
    /// When its body differs and the signer was not yet proven, the node made evidence of it
    /// (stored and published as an evidence message).
    Equivocation,
    /// Equivocation evidence against a signer already proven to equivocate on that proposal.
    AlreadyProven,
    /// A signal cast at or after the end of its proposal's lock.
    AfterLockEnd,
    /// A signature of the message or of a carried attestation does not verify.
    BadSignature,
    /// A proposal that breaks the spec's rules (tier, lock, maintainer threshold).
    InvalidProposal,
    /// This node's own presence coming back.
    Own,
    /// A presence older than the uptime window.
    Stale,
    /// A presence not newer than the one held of its node.
    Superseded,
    /// A bare attestation about another node: it counts only when its subject carries it.
    NotCarriedBySubject,
    /// The node could not write what it applied (never from the intake itself).
    StoreFailed,
    /// A release bundle of a class the network does not define.
    UnknownClass,
    /// A release bundle with too few authorised signers.
    BelowThreshold,
    /// A release bundle not newer than the newest held on its channel.
    Rollback,
    /// A release bundle past its expiry.
    Expired,
    /// A release bundle that expires before it was created.
    ExpiryBeforeCreation,
    /// A release bundle whose artifact list is empty, repeats a name or has an unsafe one.
    BadArtifacts,
    /// A published artifact file that does not match its bundle (never from the intake).
    ArtifactMismatch,
}

impl Reason {
    /// Every reason, in a fixed order (so each can have a metrics series from the start).
    pub const ALL: [Reason; 26] = [
        Reason::New,
        Reason::TooLarge,
        Reason::Malformed,
        Reason::UnknownVersion,
        Reason::Duplicate,
        Reason::AttestationNotAboutCarrier,
        Reason::TooEarly,
        Reason::UnknownProposal,
        Reason::Replay,
        Reason::Equivocation,
        Reason::AlreadyProven,
        Reason::AfterLockEnd,
        Reason::BadSignature,
        Reason::InvalidProposal,
        Reason::Own,
        Reason::Stale,
        Reason::Superseded,
        Reason::NotCarriedBySubject,
        Reason::StoreFailed,
        Reason::UnknownClass,
        Reason::BelowThreshold,
        Reason::Rollback,
        Reason::Expired,
        Reason::ExpiryBeforeCreation,
        Reason::BadArtifacts,
        Reason::ArtifactMismatch,
    ];

    /// The short snake_case code used as a metrics label and in logs.
    pub fn label(self) -> &'static str {
        match self {
            Reason::New => "new",
            Reason::TooLarge => "too_large",
            Reason::Malformed => "malformed",
            Reason::UnknownVersion => "unknown_version",
            Reason::Duplicate => "duplicate",
            Reason::AttestationNotAboutCarrier => "attestation_not_about_carrier",
            Reason::TooEarly => "too_early",
            Reason::UnknownProposal => "unknown_proposal",
            Reason::Replay => "replay",
            Reason::Equivocation => "equivocation",
            Reason::AlreadyProven => "already_proven",
            Reason::AfterLockEnd => "after_lock_end",
            Reason::BadSignature => "bad_signature",
            Reason::InvalidProposal => "invalid_proposal",
            Reason::Own => "own",
            Reason::Stale => "stale",
            Reason::Superseded => "superseded",
            Reason::NotCarriedBySubject => "not_carried_by_subject",
            Reason::StoreFailed => "store_failed",
            Reason::UnknownClass => "unknown_class",
            Reason::BelowThreshold => "below_threshold",
            Reason::Rollback => "rollback",
            Reason::Expired => "expired",
            Reason::ExpiryBeforeCreation => "expiry_before_creation",
            Reason::BadArtifacts => "bad_artifacts",
            Reason::ArtifactMismatch => "artifact_mismatch",
        }
    }

    /// The gossip verdict that goes with the reason.
    pub fn verdict(self) -> Verdict {
        match self {
            Reason::New => Verdict::Accept,
            // Deterministic invalidity, whatever the clock or the order of arrival: no
            // honest node forwards such a message.
            Reason::TooLarge
            | Reason::Malformed
            | Reason::AttestationNotAboutCarrier
            | Reason::AfterLockEnd
            | Reason::BadSignature
            | Reason::InvalidProposal
            | Reason::UnknownClass
            | Reason::BelowThreshold
            | Reason::ExpiryBeforeCreation
            | Reason::BadArtifacts
            | Reason::ArtifactMismatch => Verdict::Reject,
            // A newer protocol version may be valid to nodes that speak it; a message from
            // the future or on an unknown proposal may become valid; an older signal or a
            // superseded presence or release can still be in flight after a newer one; an
            // expired bundle was valid once. None of it is the relay's fault.
            Reason::UnknownVersion
            | Reason::Duplicate
            | Reason::TooEarly
            | Reason::UnknownProposal
            | Reason::Replay
            | Reason::Equivocation
            | Reason::AlreadyProven
            | Reason::Own
            | Reason::Stale
            | Reason::Superseded
            | Reason::NotCarriedBySubject
            | Reason::StoreFailed
            | Reason::Rollback
            | Reason::Expired => Verdict::Ignore,
        }
    }

    /// The reason a message that does not decode is refused for.
    pub fn of_decode_error(error: &DecodeError) -> Reason {
        match error {
            DecodeError::UnknownVersion { .. } => Reason::UnknownVersion,
            DecodeError::TooLarge { .. } => Reason::TooLarge,
            _ => Reason::Malformed,
        }
    }

    /// The reason a signal fails the aggregator's cheap checks.
    pub fn of_signal_rejection(rejection: &SignalRejection) -> Reason {
        match rejection {
            SignalRejection::UnknownProposal(_) => Reason::UnknownProposal,
            SignalRejection::AfterLockEnd { .. } => Reason::AfterLockEnd,
            SignalRejection::FromFuture { .. } => Reason::TooEarly,
            SignalRejection::Replay { .. } => Reason::Replay,
            SignalRejection::Equivocation { .. } => Reason::Equivocation,
        }
    }

    /// The reason a release bundle breaks the release rules.
    pub fn of_release_error(error: &ReleaseError) -> Reason {
        match error {
            ReleaseError::UnknownClass(_) => Reason::UnknownClass,
            ReleaseError::BelowThreshold(_) => Reason::BelowThreshold,
            ReleaseError::Rollback { .. } => Reason::Rollback,
            ReleaseError::Expired { .. } => Reason::Expired,
            ReleaseError::ExpiryBeforeCreation { .. } => Reason::ExpiryBeforeCreation,
            ReleaseError::BadArtifacts(_) => Reason::BadArtifacts,
            ReleaseError::TooLarge(_) => Reason::TooLarge,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// The release bundles held: by id, and the newest version per channel (for rollback
/// checks).
#[derive(Debug, Default, Clone)]
pub struct ReleaseBook {
    bundles: HashMap<Hash32, ReleaseBundle>,
    newest: HashMap<String, ReleaseVersion>,
}

impl ReleaseBook {
    /// Adds a bundle (verified, or restored from storage); the newest version of its
    /// channel follows.
    pub fn insert(&mut self, id: Hash32, bundle: ReleaseBundle) {
        let channel = bundle.body.channel.as_str().to_string();
        let version = bundle.body.release.clone();
        if self.newest.get(&channel).is_none_or(|v| version > *v) {
            self.newest.insert(channel, version);
        }
        self.bundles.insert(id, bundle);
    }

    /// Whether a bundle with this id is held.
    pub fn contains(&self, id: &Hash32) -> bool {
        self.bundles.contains_key(id)
    }

    /// One held bundle.
    pub fn get(&self, id: &Hash32) -> Option<&ReleaseBundle> {
        self.bundles.get(id)
    }

    /// Every held bundle, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Hash32, &ReleaseBundle)> {
        self.bundles.iter()
    }

    /// The newest version held on a channel.
    pub fn newest(&self, channel: &str) -> Option<&ReleaseVersion> {
        self.newest.get(channel)
    }
}

/// A message that passed the cheap checks and waits for its signatures to be checked.
#[derive(Debug, Clone)]
pub struct Pending {
    message: PendingMessage,
    /// The network the signatures must be bound to.
    network_id: Hash32,
    /// The carried attestations whose signatures must verify too.
    attestations: Vec<UptimeAttestation>,
    /// For a proposal or release after a key rotation: the spec version whose keys must
    /// sign it, chosen when it was checked (see [`Aggregator::spec_for_proposal`]). `None`
    /// means the spec [`Pending::verify`] is given.
    authority: Option<Box<NetworkSpec>>,
}

#[derive(Debug, Clone)]
enum PendingMessage {
    Signal(Signal),
    Proposal(Hash32, Proposal),
    Presence(Presence),
    Attestation(UptimeAttestation),
    /// With the newest version of its channel held when it was checked.
    Release(Hash32, ReleaseBundle, Option<ReleaseVersion>),
    Evidence(Box<Equivocation>),
}

impl Pending {
    /// The kind of the message.
    pub fn kind(&self) -> MessageKind {
        match self.message {
            PendingMessage::Signal(_) => MessageKind::Signal,
            PendingMessage::Proposal(..) => MessageKind::Proposal,
            PendingMessage::Presence(_) => MessageKind::Presence,
            PendingMessage::Attestation(_) => MessageKind::Attestation,
            PendingMessage::Release(..) => MessageKind::Release,
            PendingMessage::Evidence(_) => MessageKind::Evidence,
        }
    }

    /// The carried attestations that need their signatures checked with the message.
    pub fn attestations(&self) -> &[UptimeAttestation] {
        &self.attestations
    }

    /// Checks the signatures the intake asked for: the message's own (for proposals and
    /// release bundles, the spec's signer thresholds and the other rules, which include
    /// them) and those of the listed carried attestations, against `spec` (the intake's own)
    /// at Unix time `now`. The expensive step, pure and `Send`: the caller decides where it
    /// runs.
    pub fn verify(self, spec: &NetworkSpec, now: u64) -> Verified {
        self.verify_with(spec, now, &PlainSignatures)
    }

    /// [`Pending::verify`] with the single-signer signatures (signals, presences,
    /// attestations, evidence and the carried attestations) checked through `check`.
    /// Proposals and release bundles, rare and checked against the spec's maintainer
    /// thresholds, always take the plain check.
    pub fn verify_with(self, spec: &NetworkSpec, now: u64, check: &dyn SignatureCheck) -> Verified {
        let network_id = self.network_id;
        let spec = self.authority.as_deref().unwrap_or(spec);
        let attestations_ok = || {
            self.attestations
                .iter()
                .all(|a| signed_ok(a, &network_id, check))
        };
        let bad_signature = || Refusal {
            reason: Reason::BadSignature,
            detail: "a signature does not verify".into(),
        };
        let result = match &self.message {
            PendingMessage::Signal(s) => (signed_ok(s, &network_id, check) && attestations_ok())
                .then_some(())
                .ok_or_else(bad_signature),
            PendingMessage::Presence(p) => (signed_ok(p, &network_id, check) && attestations_ok())
                .then_some(())
                .ok_or_else(bad_signature),
            PendingMessage::Evidence(e) => (signed_ok(&e.first, &network_id, check)
                && signed_ok(&e.second, &network_id, check)
                && attestations_ok())
            .then_some(())
            .ok_or_else(bad_signature),
            PendingMessage::Attestation(a) => signed_ok(a, &network_id, check)
                .then_some(())
                .ok_or_else(bad_signature),
            PendingMessage::Proposal(_, p) => verify_proposal(p, spec, &network_id)
                .map(|_| ())
                .map_err(|e| Refusal {
                    reason: Reason::InvalidProposal,
                    detail: e.to_string(),
                }),
            PendingMessage::Release(_, b, newest) => {
                verify_release(b, spec, &network_id, newest.as_ref(), now)
                    .map(|_| ())
                    .map_err(|e| Refusal {
                        reason: Reason::of_release_error(&e),
                        detail: e.to_string(),
                    })
            }
        };
        Verified {
            outcome: result.map(|()| self),
        }
    }
}

/// Why a message failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The reason, for the verdict and the metrics.
    pub reason: Reason,
    /// What exactly failed, for people (a publisher's error message).
    pub detail: String,
}

/// A [`Pending`] message after [`Pending::verify`], for [`Intake::apply`].
#[derive(Debug, Clone)]
pub struct Verified {
    /// The message when everything verified, or why not.
    outcome: Result<Pending, Refusal>,
}

impl Verified {
    /// A message whose signatures the caller could not get checked (its verification task
    /// failed), refused for `reason`.
    pub fn failed(reason: Reason) -> Self {
        Verified {
            outcome: Err(Refusal {
                reason,
                detail: "verification task failed".into(),
            }),
        }
    }

    /// Why the message failed verification, if it did.
    pub fn refusal(&self) -> Option<&Refusal> {
        self.outcome.as_ref().err()
    }
}

/// The outcome of [`Intake::check`].
#[derive(Debug, Clone)]
pub enum Checked {
    /// Decided without any signature check.
    Decided(Reason),
    /// Needs its signatures checked, then [`Intake::apply`].
    Verify(Box<Pending>),
}

/// Something to persist after [`Intake::apply`], so that a restart comes back with it.
#[derive(Debug, Clone)]
pub enum Record {
    /// A signal (the signer's latest on its proposal).
    Signal(Signal),
    /// A proposal, by id.
    Proposal(Hash32, Proposal),
    /// A presence (the node's latest).
    Presence(Presence),
    /// An attestation that became part of the population.
    Attestation(UptimeAttestation),
    /// A release bundle, by id.
    Release(Hash32, ReleaseBundle),
    /// Equivocation evidence (the first held against its signer on its proposal).
    Evidence(Equivocation),
    /// The latched override of a proposal is void: the evidence just applied proves that
    /// one whose override signal helped reach it equivocated (see
    /// [`Aggregator::add_evidence`](crate::Aggregator::add_evidence)).
    OverrideVoided(Hash32),
}

/// The outcome of [`Intake::apply`].
#[derive(Debug, Clone)]
pub struct Applied {
    /// Why the message got its verdict.
    pub reason: Reason,
    /// What to write to storage: empty unless the reason is [`Reason::New`], or
    /// [`Reason::Equivocation`] for a signal that revealed an equivocation (not forwarded,
    /// but the evidence it made is kept).
    pub persist: Vec<Record>,
    /// Evidence this intake made from the message (it and the held signal conflict): the
    /// caller publishes it as an evidence message, since nobody else may have both signals.
    pub made: Option<Equivocation>,
}

impl Applied {
    fn refused(reason: Reason) -> Self {
        Applied {
            reason,
            persist: Vec::new(),
            made: None,
        }
    }

    fn new(persist: Vec<Record>) -> Self {
        Applied {
            reason: Reason::New,
            persist,
            made: None,
        }
    }
}

/// The intake of one node (or one simulated node): the aggregator, the presence book and
/// the release book, and the decision about every message that reaches them.
#[derive(Debug)]
pub struct Intake {
    aggregator: Aggregator,
    /// Latest presence per node: its epoch and signature, to drop repeats cheaply.
    presences: HashMap<PublicKey, (u64, [u8; 64])>,
    releases: ReleaseBook,
    /// The key of the node this intake belongs to: its own presences are not taken back,
    /// and bare attestations count only when they are about it. `None` in the simulator's
    /// replay, which plays an observer with no key.
    me: Option<PublicKey>,
}

/// Whether a presence (epoch, signature) replaces the one held: a later epoch, or the same
/// epoch and larger signature bytes, so every node keeps the same one.
fn presence_supersedes(epoch: u64, signature: &[u8; 64], held: &(u64, [u8; 64])) -> bool {
    (epoch, signature) > (held.0, &held.1)
}

impl Intake {
    /// An empty intake for `spec` at `epoch`, for the node whose key is `me`.
    pub fn new(spec: NetworkSpec, epoch: u64, me: Option<PublicKey>) -> Self {
        let policy = Policy::from_spec(&spec);
        Intake {
            aggregator: Aggregator::new(spec, policy, epoch),
            presences: HashMap::new(),
            releases: ReleaseBook::default(),
            me,
        }
    }

    /// The aggregator, for tallies and inspection.
    pub fn aggregator(&self) -> &Aggregator {
        &self.aggregator
    }

    /// The aggregator, for the node's own messages and for restoring stored state (which
    /// do not go through the intake's checks).
    pub fn aggregator_mut(&mut self) -> &mut Aggregator {
        &mut self.aggregator
    }

    /// The release bundles held.
    pub fn releases(&self) -> &ReleaseBook {
        &self.releases
    }

    /// Restores a stored presence into the presence book (its attestations are restored
    /// into the aggregator separately).
    pub fn restore_presence(&mut self, presence: &Presence) {
        let held = (presence.body.epoch, presence.signature.0);
        let keep = self
            .presences
            .get(&presence.body.node)
            .is_none_or(|h| presence_supersedes(held.0, &held.1, h));
        if keep {
            self.presences.insert(presence.body.node, held);
        }
    }

    /// Restores a stored release bundle into the release book.
    pub fn restore_release(&mut self, id: Hash32, bundle: ReleaseBundle) {
        self.releases.insert(id, bundle);
    }

    /// Moves the aggregator on to `epoch` (when it is later) and forgets presences older
    /// than the uptime window, which tell nothing any more.
    pub fn advance_to(&mut self, epoch: u64) {
        if epoch > self.aggregator.epoch() {
            self.aggregator.set_epoch(epoch);
        }
        let window = u64::from(self.aggregator.spec().uptime_window_epochs);
        self.presences.retain(|_, (e, _)| *e + window >= epoch);
    }

    fn network_id(&self) -> Hash32 {
        *self.aggregator.network_id()
    }

    /// The latest epoch a message may carry: the epoch at now plus the allowed clock skew.
    fn max_epoch(&self, now: u64) -> u64 {
        let spec = self.aggregator.spec();
        spec.epoch_at(now.saturating_add(spec.max_clock_skew_secs))
    }

    /// Checks attestations carried by a message of `carrier`: each must be about the carrier
    /// (they vouch for its uptime) and not issued in the future.
    fn check_carried(
        &self,
        carrier: &PublicKey,
        attestations: &[UptimeAttestation],
        now: u64,
    ) -> Result<(), Reason> {
        if attestations.iter().any(|a| a.body.subject != *carrier) {
            return Err(Reason::AttestationNotAboutCarrier);
        }
        let max_epoch = self.max_epoch(now);
        if attestations.iter().any(|a| a.body.epoch > max_epoch) {
            return Err(Reason::TooEarly);
        }
        Ok(())
    }

    fn unverified(&self, attestations: &[UptimeAttestation]) -> Vec<UptimeAttestation> {
        self.aggregator
            .unverified_attestations(attestations)
            .into_iter()
            .cloned()
            .collect()
    }

    /// The first step for a received message (kind and bytes as they arrived), at Unix time
    /// `now`: everything that can be decided before a signature is verified.
    pub fn check(&self, kind: MessageKind, bytes: &[u8], now: u64) -> Checked {
        if bytes.len() > kind.max_bytes() {
            return Checked::Decided(Reason::TooLarge);
        }
        let checked = match kind {
            MessageKind::Signal => self.check_signal(bytes, now),
            MessageKind::Proposal => self.check_proposal(bytes),
            MessageKind::Presence => self.check_presence(bytes, now),
            MessageKind::Attestation => self.check_attestation(bytes, now),
            MessageKind::Release => self.check_release(bytes, now),
            MessageKind::Evidence => self.check_evidence(bytes, now),
        };
        match checked {
            Ok(pending) => Checked::Verify(Box::new(pending)),
            Err(reason) => Checked::Decided(reason),
        }
    }

    fn check_signal(&self, bytes: &[u8], now: u64) -> Result<Pending, Reason> {
        // The cheapest duplicate check there is: the signature at the end of the bytes.
        if self.aggregator.holds_signal_encoding(bytes) {
            return Err(Reason::Duplicate);
        }
        let signal = Signal::decode(bytes).map_err(|e| Reason::of_decode_error(&e))?;
        self.check_carried(&signal.body.signer, &signal.body.attestations, now)?;
        match self.aggregator.precheck_signal(&signal, now) {
            Ok(Precheck::Duplicate) => Err(Reason::Duplicate),
            Err(e) => Err(Reason::of_signal_rejection(&e)),
            Ok(Precheck::New | Precheck::Equivocates) => Ok(Pending {
                network_id: self.network_id(),
                authority: None,
                attestations: self.unverified(&signal.body.attestations),
                message: PendingMessage::Signal(signal),
            }),
        }
    }

    /// Equivocation evidence: decoded strictly (which checks that it is one, in canonical
    /// order), on a known proposal, against a signer not yet proven there, and each signal's
    /// carried attestations checked as a signal's are. What remains to verify: both
    /// signatures and the carried attestations that would change something (the signals are
    /// applied with the evidence).
    fn check_evidence(&self, bytes: &[u8], now: u64) -> Result<Pending, Reason> {
        let evidence = Equivocation::decode(bytes).map_err(|e| Reason::of_decode_error(&e))?;
        let (proposal, signer) = (evidence.proposal(), evidence.signer());
        if self.aggregator.proposal(proposal).is_none() {
            return Err(Reason::UnknownProposal);
        }
        if self.aggregator.is_excluded(proposal, signer) {
            return Err(Reason::AlreadyProven);
        }
        for signal in [&evidence.first, &evidence.second] {
            self.check_carried(signer, &signal.body.attestations, now)?;
        }
        let mut attestations = self.unverified(&evidence.first.body.attestations);
        for a in self.unverified(&evidence.second.body.attestations) {
            if !attestations.contains(&a) {
                attestations.push(a);
            }
        }
        Ok(Pending {
            network_id: self.network_id(),
            authority: None,
            attestations,
            message: PendingMessage::Evidence(Box::new(evidence)),
        })
    }

    fn check_proposal(&self, bytes: &[u8]) -> Result<Pending, Reason> {
        let proposal = Proposal::decode(bytes).map_err(|e| Reason::of_decode_error(&e))?;
        let id = proposal.id(&self.network_id());
        if self.aggregator.proposal(&id).is_some() {
            return Err(Reason::Duplicate);
        }
        Ok(Pending {
            network_id: self.network_id(),
            authority: self
                .aggregator
                .rotated()
                .then(|| Box::new(self.aggregator.spec_for_proposal(&proposal).clone())),
            message: PendingMessage::Proposal(id, proposal),
            attestations: Vec::new(),
        })
    }

    fn check_presence(&self, bytes: &[u8], now: u64) -> Result<Pending, Reason> {
        let presence = Presence::decode(bytes).map_err(|e| Reason::of_decode_error(&e))?;
        let body = &presence.body;
        if Some(body.node) == self.me {
            return Err(Reason::Own);
        }
        self.check_carried(&body.node, &body.attestations, now)?;
        if body.epoch > self.max_epoch(now) {
            return Err(Reason::TooEarly);
        }
        // A presence from earlier in the window may still carry live attestations (a peer
        // serves the latest it holds of a node that went offline); older ones cannot.
        let window = u64::from(self.aggregator.spec().uptime_window_epochs);
        if body.epoch + window < self.aggregator.epoch() {
            return Err(Reason::Stale);
        }
        match self.presences.get(&body.node) {
            Some(held) if held.1 == presence.signature.0 => return Err(Reason::Duplicate),
            Some(held) if !presence_supersedes(body.epoch, &presence.signature.0, held) => {
                return Err(Reason::Superseded);
            }
            _ => {}
        }
        Ok(Pending {
            network_id: self.network_id(),
            authority: None,
            attestations: self.unverified(&body.attestations),
            message: PendingMessage::Presence(presence),
        })
    }

    /// A bare attestation: only one about this node counts, handed over by its attester,
    /// because an attestation counts only when its subject carries it (docs/PROTOCOL.md,
    /// "Who carries attestations"); this node then carries it in its presence and signals.
    fn check_attestation(&self, bytes: &[u8], now: u64) -> Result<Pending, Reason> {
        let attestation =
            UptimeAttestation::decode(bytes).map_err(|e| Reason::of_decode_error(&e))?;
        if Some(attestation.body.subject) != self.me {
            return Err(Reason::NotCarriedBySubject);
        }
        if attestation.body.epoch > self.max_epoch(now) {
            return Err(Reason::TooEarly);
        }
        // Weightless or not: this node carries it (docs/PROTOCOL.md, "Measurers").
        if !self.aggregator.is_new_attestation(&attestation) {
            // Held, superseded, expired or a self-attestation: nothing it could change.
            return Err(Reason::Duplicate);
        }
        Ok(Pending {
            network_id: self.network_id(),
            authority: None,
            message: PendingMessage::Attestation(attestation),
            attestations: Vec::new(),
        })
    }

    fn check_release(&self, bytes: &[u8], _now: u64) -> Result<Pending, Reason> {
        let bundle = ReleaseBundle::decode(bytes).map_err(|e| Reason::of_decode_error(&e))?;
        self.check_release_bundle(bundle)
    }

    /// The first step for a release bundle decoded already (one a maintainer publishes over
    /// RPC): [`Reason::Duplicate`] when it is held, otherwise what to verify.
    pub fn check_release_bundle(&self, bundle: ReleaseBundle) -> Result<Pending, Reason> {
        let id = bundle.id(&self.network_id());
        if self.releases.contains(&id) {
            return Err(Reason::Duplicate);
        }
        let newest = self.releases.newest(bundle.body.channel.as_str()).cloned();
        Ok(Pending {
            network_id: self.network_id(),
            authority: self
                .aggregator
                .rotated()
                .then(|| Box::new(self.aggregator.spec().clone())),
            message: PendingMessage::Release(id, bundle, newest),
            attestations: Vec::new(),
        })
    }

    /// The second step, after [`Pending::verify`]: re-checks what may have changed since
    /// [`Intake::check`] (another copy may have been applied meanwhile), applies the message
    /// and says what to persist.
    pub fn apply(&mut self, verified: Verified, now: u64) -> Applied {
        let pending = match verified.outcome {
            Ok(pending) => pending,
            Err(refusal) => return Applied::refused(refusal.reason),
        };
        let verified_attestations = pending.attestations;
        match pending.message {
            PendingMessage::Signal(signal) => self.apply_signal(signal, now),
            PendingMessage::Proposal(id, proposal) => self.apply_proposal(id, proposal),
            PendingMessage::Presence(presence) => {
                self.apply_presence(presence, &verified_attestations)
            }
            PendingMessage::Attestation(attestation) => self.apply_attestation(attestation),
            PendingMessage::Release(id, bundle, _) => self.apply_release(id, bundle),
            PendingMessage::Evidence(evidence) => self.apply_evidence(*evidence, now),
        }
    }

    fn apply_signal(&mut self, signal: Signal, now: u64) -> Applied {
        // What is new can only have shrunk since the check, so all of it was verified.
        let new_attestations = self.unverified(&signal.body.attestations);
        let (proposal, signer) = (signal.body.proposal, signal.body.signer);
        let latched_before = self.aggregator.overridden_at(&proposal);
        match self.aggregator.apply_signal(signal.clone(), now) {
            Ok(SignalOutcome::Duplicate) => Applied::refused(Reason::Duplicate),
            Ok(SignalOutcome::Equivocated { stored }) => {
                let evidence = self
                    .aggregator
                    .evidence_of(&proposal, &signer)
                    .cloned()
                    .expect("the aggregator holds the evidence it just made");
                let mut persist = vec![Record::Evidence(evidence.clone())];
                persist.extend(self.voided(proposal, latched_before));
                if stored {
                    persist.push(Record::Signal(signal));
                    persist.extend(new_attestations.into_iter().map(Record::Attestation));
                }
                Applied {
                    reason: Reason::Equivocation,
                    persist,
                    made: Some(evidence),
                }
            }
            Ok(SignalOutcome::New | SignalOutcome::Replaced { .. }) => {
                let mut persist = vec![Record::Signal(signal)];
                persist.extend(new_attestations.into_iter().map(Record::Attestation));
                Applied::new(persist)
            }
            Err(e) => Applied::refused(Reason::of_signal_rejection(&e)),
        }
    }

    fn apply_evidence(&mut self, evidence: Equivocation, now: u64) -> Applied {
        let (proposal, signer) = (*evidence.proposal(), *evidence.signer());
        // Another copy, or other evidence against the same signer, may have been applied
        // since the check.
        if self.aggregator.is_excluded(&proposal, &signer) {
            return Applied::refused(Reason::AlreadyProven);
        }
        let held_before = self.aggregator.signal(&proposal, &signer).cloned();
        let latched_before = self.aggregator.overridden_at(&proposal);
        let mut new_attestations = self.unverified(&evidence.first.body.attestations);
        for a in self.unverified(&evidence.second.body.attestations) {
            if !new_attestations.contains(&a) {
                new_attestations.push(a);
            }
        }
        match self.aggregator.apply_evidence(evidence.clone(), now) {
            Ok(EvidenceOutcome::New) => {}
            Ok(EvidenceOutcome::AlreadyProven) => return Applied::refused(Reason::AlreadyProven),
            Err(e) => return Applied::refused(Reason::of_signal_rejection(&e)),
        }
        let mut persist = vec![Record::Evidence(evidence)];
        persist.extend(self.voided(proposal, latched_before));
        let held = self.aggregator.signal(&proposal, &signer);
        if let Some(held) = held.filter(|h| Some(*h) != held_before.as_ref()) {
            persist.push(Record::Signal(held.clone()));
            // Only what the signals stored absorbed; an attestation carried by a refused
            // signal changed nothing.
            let still_new = self.unverified(&new_attestations);
            persist.extend(
                new_attestations
                    .into_iter()
                    .filter(|a| !still_new.contains(a))
                    .map(Record::Attestation),
            );
        }
        Applied::new(persist)
    }

    /// The record saying a proposal's latched override is void, if it was latched before
    /// the evidence just applied and no longer is.
    fn voided(&self, proposal: Hash32, latched_before: Option<u64>) -> Option<Record> {
        (latched_before.is_some() && self.aggregator.overridden_at(&proposal).is_none())
            .then_some(Record::OverrideVoided(proposal))
    }

    fn apply_proposal(&mut self, id: Hash32, proposal: Proposal) -> Applied {
        // add_proposal checks the signatures again; proposals are rare and carry at most a
        // handful, so that is cheap next to keeping the aggregator's own guarantee.
        match self.aggregator.add_proposal(proposal.clone()) {
            Ok(ProposalOutcome::New) => Applied::new(vec![Record::Proposal(id, proposal)]),
            Ok(ProposalOutcome::Duplicate) => Applied::refused(Reason::Duplicate),
            Err(_) => Applied::refused(Reason::InvalidProposal),
        }
    }

    fn apply_presence(&mut self, presence: Presence, verified: &[UptimeAttestation]) -> Applied {
        let node = presence.body.node;
        if let Some(held) = self.presences.get(&node)
            && !presence_supersedes(presence.body.epoch, &presence.signature.0, held)
        {
            return Applied::refused(Reason::Duplicate);
        }
        let new_attestations = self.unverified(&presence.body.attestations);
        debug_assert!(
            new_attestations.iter().all(|a| verified.contains(a)),
            "what is new can only have shrunk since the check"
        );
        self.presences
            .insert(node, (presence.body.epoch, presence.signature.0));
        let mut persist = vec![Record::Presence(presence.clone())];
        persist.extend(new_attestations.into_iter().map(Record::Attestation));
        self.aggregator.apply_presence(presence);
        Applied::new(persist)
    }

    fn apply_attestation(&mut self, attestation: UptimeAttestation) -> Applied {
        if self.me != Some(attestation.body.subject) {
            return Applied::refused(Reason::NotCarriedBySubject);
        }
        // Held even when it weighs nothing: the store's attestations about this node are
        // what its presences carry.
        match self.aggregator.add_attestation(attestation.clone()) {
            AttestationOutcome::New => Applied::new(vec![Record::Attestation(attestation)]),
            _ => Applied::refused(Reason::Duplicate),
        }
    }

    fn apply_release(&mut self, id: Hash32, bundle: ReleaseBundle) -> Applied {
        if self.releases.contains(&id) {
            return Applied::refused(Reason::Duplicate);
        }
        // A newer one for its channel may have arrived since the check.
        if self
            .releases
            .newest(bundle.body.channel.as_str())
            .is_some_and(|v| bundle.body.release <= *v)
        {
            return Applied::refused(Reason::Rollback);
        }
        self.releases.insert(id, bundle.clone());
        Applied::new(vec![Record::Release(id, bundle)])
    }

    /// Both steps at once, with the signature check inline: what the simulator's replay does
    /// for each message, and what a test of the intake needs.
    pub fn ingest(&mut self, kind: MessageKind, bytes: &[u8], now: u64) -> Applied {
        match self.check(kind, bytes, now) {
            Checked::Decided(reason) => Applied::refused(reason),
            Checked::Verify(pending) => {
                let verified = pending.verify(self.aggregator.spec(), now);
                self.apply(verified, now)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_and_verdicts_match_the_documented_split() {
        let mut labels: Vec<&str> = Reason::ALL.iter().map(|r| r.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Reason::ALL.len());
        assert_eq!(Reason::New.verdict(), Verdict::Accept);
        assert_eq!(Reason::AfterLockEnd.verdict(), Verdict::Reject);
        assert_eq!(Reason::UnknownVersion.verdict(), Verdict::Ignore);
        assert_eq!(Reason::BadSignature.verdict(), Verdict::Reject);
        assert_eq!(Reason::TooEarly.verdict(), Verdict::Ignore);
    }

    #[test]
    fn oversized_and_garbage_are_decided_before_any_verification() {
        let intake = Intake::new(NetworkSpec::regtest(), 0, None);
        for kind in [
            MessageKind::Signal,
            MessageKind::Proposal,
            MessageKind::Presence,
            MessageKind::Attestation,
            MessageKind::Release,
        ] {
            let big = vec![0u8; kind.max_bytes() + 1];
            assert!(matches!(
                intake.check(kind, &big, 0),
                Checked::Decided(Reason::TooLarge)
            ));
            assert!(matches!(
                intake.check(kind, b"\xff\x00", 0),
                Checked::Decided(Reason::Malformed)
            ));
        }
    }
}
