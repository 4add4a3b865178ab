//! The aggregator: one per node or simulation, holding every message that counts and the
//! tallies they give.

use std::collections::{HashMap, HashSet};

use commons_signaling::spec::TierSpec;
use commons_signaling::{
    Choice, Equivocation, Hash32, NetworkSpec, Presence, Proposal, PublicKey, Signal, Signature,
    UptimeAttestation,
};
use serde::Serialize;

use crate::netgroup::Netgroup;
use crate::policy::{Policy, Qualification};
use crate::population::{AttestationOutcome, Move, Population, UptimeStatus};
use crate::rules::{ProposalError, verify_proposal};
use crate::tally::{ProposalState, ProposalTally, Tally, override_met};

/// How a rotation proposal's `reference` begins; the spec id of the version it puts in force
/// follows, in hex.
pub const ROTATION_REFERENCE_PREFIX: &str = "spec-rotation:";

/// Where a rotation proposal stands on this node ([`Aggregator::rotations`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationState {
    /// Not overridden, and its activation epoch is still to come.
    Pending,
    /// The version it names is, or was, in force here.
    Activated,
    /// Its lock passed without an override, yet the version it names is not in force here:
    /// this node does not hold that version, or not the one before it.
    Stalled,
    /// Overridden: it puts nothing in force.
    Overridden,
}

impl RotationState {
    /// The state's name in RPC answers and logs.
    pub fn name(self) -> &'static str {
        match self {
            RotationState::Pending => "pending",
            RotationState::Activated => "activated",
            RotationState::Stalled => "stalled",
            RotationState::Overridden => "overridden",
        }
    }
}

/// A held rotation proposal: a tier-5 (or tier-4) proposal whose reference is
/// `spec-rotation:<spec id>` of a later version ([`Aggregator::rotations`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The proposal's id.
    pub proposal: Hash32,
    /// The spec id its reference names.
    pub spec_id: Hash32,
    /// That version's number when this node holds it (in force, earlier or staged); `None`
    /// when it does not, and cannot switch to it until it is given the version's bundle.
    pub version: Option<u32>,
    /// The epoch from which it puts its version in force ([`Aggregator::rotation_epoch`]).
    pub activation_epoch: u64,
    /// Where it stands.
    pub state: RotationState,
}

impl Rotation {
    /// Whether this rotation passed or may still pass and names a version this node does
    /// not hold: the node stays on its version while the network moves on.
    pub fn names_missing_version(&self) -> bool {
        self.version.is_none()
            && matches!(self.state, RotationState::Pending | RotationState::Stalled)
    }
}

/// What became of a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProposalOutcome {
    /// Valid and stored.
    New,
    /// A proposal with this id is already stored (the first one stored is kept).
    Duplicate,
}

/// The verdict of the cheap checks on a signal, before its signature is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Precheck {
    /// It would change the tally: verify it, then [`Aggregator::apply_signal`].
    New,
    /// Exactly the signal already held: nothing to verify or forward.
    Duplicate,
    /// The sequence number of the held signal with another body, by a signer not yet proven
    /// to equivocate on this proposal: verify it, and [`Aggregator::apply_signal`] makes the
    /// pair into evidence.
    Equivocates,
}

/// What [`Aggregator::apply_signal`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalOutcome {
    /// The signer's first signal on this proposal.
    New,
    /// It replaced the signer's earlier signal, which had this sequence number.
    Replaced {
        /// The sequence number of the replaced signal.
        previous_sequence: u64,
    },
    /// Exactly the signal already held: nothing changed.
    Duplicate,
    /// It and the held signal prove the signer equivocated: the evidence is held
    /// ([`Aggregator::evidence_of`]) and the signer no longer counts on this proposal.
    Equivocated {
        /// Whether the signal also became the signer's stored signal (it won the tie on
        /// canonical bytes), as it would have without the evidence.
        stored: bool,
    },
}

/// What [`Aggregator::add_evidence`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceOutcome {
    /// The first evidence against this signer on this proposal: it no longer counts there.
    New,
    /// The signer is already proven to equivocate on this proposal (by this evidence or
    /// another pair); the evidence held is kept.
    AlreadyProven,
}

/// Why a signal is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalRejection {
    /// No such proposal is known (yet).
    #[error("unknown proposal {0}")]
    UnknownProposal(Hash32),
    /// Cast at or after the end of the proposal's lock.
    #[error("cast at {time}, not before the end of the lock at {lock_end}")]
    AfterLockEnd {
        /// The signal's time.
        time: u64,
        /// The proposal's lock end.
        lock_end: u64,
    },
    /// Its time is further in the future than the network's clock skew allows.
    #[error("cast at {time}, more than {max_skew} s after now ({now})")]
    FromFuture {
        /// The signal's time.
        time: u64,
        /// The time it was checked at.
        now: u64,
        /// The spec's largest clock skew.
        max_skew: u64,
    },
    /// A lower sequence number than the signer's latest signal on this proposal.
    #[error("sequence {offered} is below the signer's latest, {latest}")]
    Replay {
        /// The held signal's sequence number.
        latest: u64,
        /// This signal's.
        offered: u64,
    },
    /// The same sequence number as the held signal but other content, and the held one wins
    /// (larger canonical bytes), as it does on every node. Only when it proves nothing new:
    /// its body is the held one's (a second signature over one statement), or the signer is
    /// already proven to equivocate on this proposal.
    #[error("another signal with sequence {sequence} by this signer is held and wins")]
    Equivocation {
        /// The sequence number both carry.
        sequence: u64,
    },
}

struct Entry {
    proposal: Proposal,
    tier: TierSpec,
    /// The latest signal of each signer.
    signals: HashMap<PublicKey, Signal>,
    /// Signers proven to equivocate on this proposal, with the first evidence held against
    /// each: their signals are still stored (so what is held does not depend on the order
    /// of arrival) but count in no tally.
    excluded: HashMap<PublicKey, Equivocation>,
    tally: ProposalTally,
    /// The epoch at which the override verdict was latched.
    overridden_at: Option<u64>,
    /// The tally the override verdict was latched with; `None` for a latch restored after a
    /// restart, which did not keep it (see [`Aggregator::add_evidence`]).
    latched_with: Option<Latch>,
}

/// What an override verdict was reached with: enough to take it again without one signer.
#[derive(Debug, Clone)]
struct Latch {
    tally: ProposalTally,
    /// The population's (nodes, weight units) then.
    totals: (u64, u64),
    /// Each signer whose override counted, with its netgroup and that netgroup's size then.
    by: HashMap<PublicKey, (Netgroup, u64)>,
}

impl Entry {
    fn lock(&self) -> (u64, u64) {
        (self.proposal.body.lock_start, self.proposal.body.lock_end)
    }
}

/// The Sybil rule and the tallies of one node (or one simulated network).
///
/// Sans-IO and deterministic: the same messages, in any order and with any duplicates, at the
/// same epoch, give bit-identical tallies. Signature verification is the caller's job
/// (proposals excepted), so that it can run off the caller's event loop and be skipped for
/// duplicates: [`Aggregator::precheck_signal`] and [`Aggregator::unverified_attestations`]
/// say what needs verifying, and the `apply`/`add` methods trust that it was.
pub struct Aggregator {
    /// The spec version in force.
    spec: NetworkSpec,
    /// The first epoch `spec` is in force (0 for a network's first spec).
    spec_since: u64,
    /// The versions before `spec`, oldest first, each with its first epoch in force.
    history: Vec<(u64, NetworkSpec)>,
    /// Later versions held (from a spec bundle), not yet in force, the next one first.
    staged: Vec<NetworkSpec>,
    network_id: Hash32,
    policy: Policy,
    population: Population,
    proposals: HashMap<Hash32, Entry>,
    /// Signatures of the signals held, to drop a duplicate before decoding it.
    held_signatures: HashSet<Signature>,
}

impl std::fmt::Debug for Aggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Aggregator")
            .field("network", &self.spec.name)
            .field("epoch", &self.epoch())
            .field("proposals", &self.proposals.len())
            .finish_non_exhaustive()
    }
}

impl Aggregator {
    /// An empty aggregator for `spec` at `epoch`, qualifying nodes by the spec's rule
    /// ([`Qualification::from_spec`]).
    pub fn new(spec: NetworkSpec, policy: Policy, epoch: u64) -> Self {
        let qualification = Qualification::from_spec(&spec);
        Self::with_qualification(spec, policy, qualification, epoch)
    }

    /// An empty aggregator for `spec` at `epoch` under another qualification rule than the
    /// spec's, so that the simulator can compare rules on the same messages.
    pub fn with_qualification(
        spec: NetworkSpec,
        policy: Policy,
        qualification: Qualification,
        epoch: u64,
    ) -> Self {
        Aggregator {
            network_id: spec.network_id(),
            spec,
            spec_since: 0,
            history: Vec::new(),
            staged: Vec::new(),
            population: Population::new(policy.clone(), qualification, epoch),
            policy,
            proposals: HashMap::new(),
            held_signatures: HashSet::new(),
        }
    }

    /// Lets each epoch boundary ([`Aggregator::set_epoch`]) recompute the standings on up to
    /// `threads` threads (1 unless set, values below 1 act as 1). The aggregator never asks
    /// the system how many cores it has: the caller knows what else runs.
    pub fn set_threads(&mut self, threads: usize) {
        self.population.set_threads(threads);
    }

    /// The network spec.
    pub fn spec(&self) -> &NetworkSpec {
        &self.spec
    }

    /// Holds the later versions of the spec, from a spec bundle whose chain the caller
    /// verified ([`commons_signaling::spec_bundle::SpecBundle::verify`]): each comes into
    /// force when its rotation proposal activates ([`Aggregator::activate_rotations`]).
    /// Versions already staged or in force are skipped; a version that does not follow the
    /// last one held is refused.
    pub fn stage_successors(
        &mut self,
        specs: impl IntoIterator<Item = NetworkSpec>,
    ) -> Result<(), commons_signaling::spec::SuccessionError> {
        for spec in specs {
            let last = self.staged.last().unwrap_or(&self.spec);
            if spec.version() <= last.version() {
                continue;
            }
            last.check_successor(&spec)?;
            self.staged.push(spec);
        }
        Ok(())
    }

    /// The later spec versions held but not in force yet, the next one first.
    pub fn staged_specs(&self) -> &[NetworkSpec] {
        &self.staged
    }

    /// Every version that was or is in force, oldest first, with its first epoch in force.
    pub fn spec_versions(&self) -> impl Iterator<Item = (u64, &NetworkSpec)> {
        self.history
            .iter()
            .map(|(since, spec)| (*since, spec))
            .chain(std::iter::once((self.spec_since, &self.spec)))
    }

    /// Whether a rotation ever activated: some version before the one in force existed.
    pub fn rotated(&self) -> bool {
        !self.history.is_empty()
    }

    /// The spec version in force at `epoch`.
    pub fn spec_at_epoch(&self, epoch: u64) -> &NetworkSpec {
        self.spec_versions()
            .filter(|(since, _)| *since <= epoch)
            .last()
            .map_or(&self.spec, |(_, spec)| spec)
    }

    /// The spec whose maintainers must sign `proposal`: the version in force at the epoch its
    /// lock starts in, so a proposal is judged by the same keys on every node however late it
    /// arrives, and a key rotated out stops counting for proposals locked after the rotation.
    pub fn spec_for_proposal(&self, proposal: &Proposal) -> &NetworkSpec {
        self.spec_at_epoch(self.spec.epoch_at(proposal.body.lock_start))
    }

    /// The reference a rotation proposal for `spec` carries: `spec-rotation:<spec id>`.
    pub fn rotation_reference(spec: &NetworkSpec) -> String {
        format!("{ROTATION_REFERENCE_PREFIX}{}", spec.spec_id())
    }

    /// The epoch from which a rotation proposal with this lock end puts its spec in force:
    /// the one after the last epoch in which an override of it can still be latched, so the
    /// verdict is final on every node before any of them switches.
    pub fn rotation_epoch(&self, lock_end: u64) -> u64 {
        lock_end.div_ceil(self.spec.epoch_secs.max(1)) + 1
    }

    /// The held proposal that activates the next staged version, and the epoch from which it
    /// does: tier 5, or tier 4 for a version that only revokes keys, carrying
    /// [`Aggregator::rotation_reference`] and not overridden. The earliest if several.
    pub fn pending_rotation(&self) -> Option<(Hash32, u64)> {
        let next = self.staged.first()?;
        let reference = Self::rotation_reference(next);
        let emergency_ok = self.spec.is_revocation_only(next);
        self.proposals
            .iter()
            .filter(|(_, e)| e.proposal.body.reference.as_str() == reference)
            .filter(|(_, e)| e.tier.tier == 5 || (e.tier.tier == 4 && emergency_ok))
            .filter(|(_, e)| e.overridden_at.is_none())
            .map(|(id, e)| (*id, self.rotation_epoch(e.proposal.body.lock_end)))
            .min_by_key(|(id, epoch)| (*epoch, *id))
    }

    /// Puts in force every staged version whose rotation proposal has activated by the
    /// current epoch (see [`Aggregator::pending_rotation`]); returns the versions activated.
    /// From a version's activation epoch, the maintainers, release signers and measurers of
    /// the versions before it count no more: proposals whose lock starts then, releases
    /// checked from then, and measurer attestations in every standing from then on.
    pub fn activate_rotations(&mut self) -> Vec<NetworkSpec> {
        let mut activated = Vec::new();
        while let Some((_, since)) = self.pending_rotation() {
            if since > self.epoch() {
                break;
            }
            let next = self.staged.remove(0);
            let previous = std::mem::replace(&mut self.spec, next.clone());
            self.history.push((self.spec_since, previous));
            self.spec_since = since;
            activated.push(next);
        }
        // A simulator that chose another rule than the spec's keeps it.
        if !activated.is_empty() && self.qualification().rule() == self.spec.qualification {
            self.population
                .set_qualification(Qualification::from_spec(&self.spec));
            self.follow_population();
        }
        activated
    }

    /// Every held rotation proposal, by activation epoch then id: those carrying
    /// `spec-rotation:<spec id>` at tier 5, or at tier 4 unless they name a held version
    /// that adds keys (which could never activate). A reference naming the network's first
    /// version, or no spec id at all, is no rotation. Unlike
    /// [`Aggregator::pending_rotation`] this lists proposals naming versions this node does
    /// not hold, so that an operator learns a bundle is missing before the network moves on.
    pub fn rotations(&self) -> Vec<Rotation> {
        let held: Vec<&NetworkSpec> = self
            .spec_versions()
            .map(|(_, spec)| spec)
            .chain(&self.staged)
            .collect();
        let ids: Vec<Hash32> = held.iter().map(|spec| spec.spec_id()).collect();
        let in_force = self.history.len() + 1;
        let mut out: Vec<Rotation> = self
            .proposals
            .iter()
            .filter(|(_, e)| matches!(e.tier.tier, 4 | 5))
            .filter_map(|(id, e)| {
                let named = e
                    .proposal
                    .body
                    .reference
                    .as_str()
                    .strip_prefix(ROTATION_REFERENCE_PREFIX)?;
                let spec_id: Hash32 = named.parse().ok()?;
                let position = ids.iter().position(|held| *held == spec_id);
                if position == Some(0) {
                    return None;
                }
                if let Some(i) = position
                    && e.tier.tier == 4
                    && !held[i - 1].is_revocation_only(held[i])
                {
                    return None;
                }
                let activation_epoch = self.rotation_epoch(e.proposal.body.lock_end);
                let state = if e.overridden_at.is_some() {
                    RotationState::Overridden
                } else if position.is_some_and(|i| i < in_force) {
                    RotationState::Activated
                } else if activation_epoch > self.epoch() {
                    RotationState::Pending
                } else {
                    RotationState::Stalled
                };
                Some(Rotation {
                    proposal: *id,
                    spec_id,
                    version: position.map(|i| held[i].version()),
                    activation_epoch,
                    state,
                })
            })
            .collect();
        out.sort_by_key(|r| (r.activation_epoch, r.proposal));
        out
    }

    /// The network id that signatures are bound to.
    pub fn network_id(&self) -> &Hash32 {
        &self.network_id
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The qualification rule in force (step 2 of the Sybil rule).
    pub fn qualification(&self) -> &Qualification {
        self.population.qualification()
    }

    /// Under the tickets rule, whether `key` is admitted and from how many anchors it holds a
    /// ticket; `None` under the other rules.
    pub fn admission(&self, key: &PublicKey) -> Option<(bool, u32)> {
        self.population.admission(key)
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.population.epoch()
    }

    /// Verifies a proposal against the spec (tier, lock, maintainer threshold, which checks
    /// signatures) and stores it.
    pub fn add_proposal(&mut self, proposal: Proposal) -> Result<ProposalOutcome, ProposalError> {
        let id = proposal.id(&self.network_id);
        if self.proposals.contains_key(&id) {
            return Ok(ProposalOutcome::Duplicate);
        }
        let authority = self.spec_for_proposal(&proposal);
        verify_proposal(&proposal, authority, &self.network_id)?;
        let tier = authority
            .tier(proposal.body.tier)
            .expect("verified proposals have a known tier")
            .clone();
        let entry = Entry {
            proposal,
            tier,
            signals: HashMap::new(),
            excluded: HashMap::new(),
            tally: ProposalTally::default(),
            overridden_at: None,
            latched_with: None,
        };
        self.proposals.insert(id, entry);
        Ok(ProposalOutcome::New)
    }

    /// Whether `bytes` encode a signal held here, judged before decoding by the signature alone
    /// (the last 64 bytes of a canonical signal). A different message carrying a held
    /// signature cannot verify, so dropping it too loses nothing.
    pub fn holds_signal_encoding(&self, bytes: &[u8]) -> bool {
        Signal::signature_of_encoding(bytes).is_some_and(|s| self.held_signatures.contains(&s))
    }

    /// The cheap checks, without signature verification: a known proposal, cast before its
    /// lock ends and not from the future, and not a replay of what is held. A duplicate is
    /// found with two hash lookups and one comparison.
    pub fn precheck_signal(&self, signal: &Signal, now: u64) -> Result<Precheck, SignalRejection> {
        let body = &signal.body;
        let entry = self
            .proposals
            .get(&body.proposal)
            .ok_or(SignalRejection::UnknownProposal(body.proposal))?;
        let held = entry.signals.get(&body.signer);
        if held.is_some_and(|h| h == signal) {
            return Ok(Precheck::Duplicate);
        }
        let lock_end = entry.proposal.body.lock_end;
        if body.time >= lock_end {
            return Err(SignalRejection::AfterLockEnd {
                time: body.time,
                lock_end,
            });
        }
        let max_skew = self.spec.max_clock_skew_secs;
        if body.time > now.saturating_add(max_skew) {
            return Err(SignalRejection::FromFuture {
                time: body.time,
                now,
                max_skew,
            });
        }
        if let Some(held) = held {
            let (latest, offered) = (held.body.sequence, body.sequence);
            if offered < latest {
                return Err(SignalRejection::Replay { latest, offered });
            }
            if offered == latest {
                if held.body != *body && !entry.excluded.contains_key(&body.signer) {
                    return Ok(Precheck::Equivocates);
                }
                if signal.encode() < held.encode() {
                    return Err(SignalRejection::Equivocation { sequence: offered });
                }
            }
        }
        Ok(Precheck::New)
    }

    /// Applies a signal whose signature, and that of every attestation it carries that
    /// [`Aggregator::unverified_attestations`] lists, the caller has verified. Re-runs the
    /// cheap checks, stores the signal as the signer's latest, absorbs its attestations and
    /// updates the tallies they touch.
    pub fn apply_signal(
        &mut self,
        signal: Signal,
        now: u64,
    ) -> Result<SignalOutcome, SignalRejection> {
        match self.precheck_signal(&signal, now)? {
            Precheck::Duplicate => Ok(SignalOutcome::Duplicate),
            Precheck::New => Ok(self.store_signal(signal)),
            Precheck::Equivocates => {
                let (id, signer) = (signal.body.proposal, signal.body.signer);
                let held = self
                    .signal(&id, &signer)
                    .cloned()
                    .expect("prechecked: a signal is held");
                let sequence = signal.body.sequence;
                let Ok(evidence) = Equivocation::new(held, signal.clone()) else {
                    // Unreachable for decoded signals (same signer, proposal and sequence,
                    // other body); refused as a plain equivocation rather than trusted.
                    return Err(SignalRejection::Equivocation { sequence });
                };
                self.add_evidence(evidence)
                    .expect("prechecked: the proposal is known");
                // Now that the signer is proven, the signal is judged as any same-sequence
                // signal is: it is stored when its encoding is the larger, so that what is
                // held does not depend on whether the evidence came first.
                let stored = match self.precheck_signal(&signal, now) {
                    Ok(Precheck::New) => {
                        self.store_signal(signal);
                        true
                    }
                    _ => false,
                };
                Ok(SignalOutcome::Equivocated { stored })
            }
        }
    }

    /// Stores a prechecked, verified signal as its signer's latest and moves the signer's
    /// weight (unless the signer is proven to equivocate on the proposal).
    fn store_signal(&mut self, signal: Signal) -> SignalOutcome {
        let signer = signal.body.signer;
        for attestation in signal.body.attestations.iter() {
            self.add_carried_attestation(&signer, attestation.clone());
        }
        let (id, choice) = (signal.body.proposal, signal.body.choice);
        let sqrt = self.policy.sqrt_weighting;
        let counted = self
            .population
            .counted(&signer)
            .map(|g| (g, self.population.netgroup_size(&g)));
        let entry = self.proposals.get_mut(&id).expect("prechecked");
        self.held_signatures.insert(signal.signature);
        let previous = entry.signals.insert(signer, signal);
        if let Some(previous) = &previous {
            self.held_signatures.remove(&previous.signature);
        }
        let old_choice = previous.as_ref().map(|p| p.body.choice);
        if let Some((g, n)) = counted
            && !entry.excluded.contains_key(&signer)
        {
            entry.tally.change_choice(g, n, old_choice, choice, sqrt);
        }
        match previous {
            None => SignalOutcome::New,
            Some(p) => SignalOutcome::Replaced {
                previous_sequence: p.body.sequence,
            },
        }
    }

    /// Takes equivocation evidence whose two signatures the caller verified (or that this
    /// aggregator made itself): from now on its signer counts in no tally of its proposal.
    /// The signals inside are not applied here; [`Aggregator::apply_evidence`] does both.
    pub fn add_evidence(
        &mut self,
        evidence: Equivocation,
    ) -> Result<EvidenceOutcome, SignalRejection> {
        let (id, signer) = (*evidence.proposal(), *evidence.signer());
        let sqrt = self.policy.sqrt_weighting;
        let counted = self
            .population
            .counted(&signer)
            .map(|g| (g, self.population.netgroup_size(&g)));
        let entry = self
            .proposals
            .get_mut(&id)
            .ok_or(SignalRejection::UnknownProposal(id))?;
        if entry.excluded.contains_key(&signer) {
            return Ok(EvidenceOutcome::AlreadyProven);
        }
        entry.excluded.insert(signer, evidence);
        let held = entry.signals.get(&signer).map(|s| s.body.choice);
        if let (Some((g, n)), Some(choice)) = (counted, held) {
            entry.tally.remove_choice(g, n, choice, sqrt);
        }
        // A latched override is taken again without the equivocator's override signal: a
        // node that got the evidence before that epoch closed never counted the signer, and
        // the verdict must not depend on which came first. If the latched tally without the
        // signer misses the thresholds, the latch is void (an epoch closing later in the
        // override epochs latches again if the tally then meets them). A latch restored after
        // a restart did not keep its tally: then it is void if the signer's held signal is an
        // override.
        if entry.overridden_at.is_some() {
            let stands = match &mut entry.latched_with {
                Some(latch) => match latch.by.remove(&signer) {
                    Some((g, n)) => {
                        latch.tally.remove_choice(g, n, Choice::Override, sqrt);
                        let (units, nodes) = latch.tally.override_counts();
                        let (total_nodes, total_units) = latch.totals;
                        override_met(units, nodes, total_units, total_nodes, &entry.tier)
                    }
                    None => true,
                },
                None => held != Some(Choice::Override),
            };
            if !stands {
                entry.overridden_at = None;
                entry.latched_with = None;
            }
        }
        Ok(EvidenceOutcome::New)
    }

    /// Takes verified evidence ([`Aggregator::add_evidence`]) and applies the two signals in
    /// it as if they had arrived (each is refused or stored by the usual rules, and the
    /// attestations they carry, which the caller verified as for any signal, are absorbed),
    /// so that a node that saw only the evidence holds what a node that saw both signals
    /// holds. Returns what `add_evidence` said.
    pub fn apply_evidence(
        &mut self,
        evidence: Equivocation,
        now: u64,
    ) -> Result<EvidenceOutcome, SignalRejection> {
        let (first, second) = (evidence.first.clone(), evidence.second.clone());
        let outcome = self.add_evidence(evidence)?;
        for signal in [first, second] {
            // A replay, a losing tie or a signal cast after the lock is refused here exactly
            // as it would be on its own.
            let _ = self.apply_signal(signal, now);
        }
        Ok(outcome)
    }

    /// Whether `signer` is proven to equivocate on proposal `id`.
    pub fn is_excluded(&self, id: &Hash32, signer: &PublicKey) -> bool {
        self.proposals
            .get(id)
            .is_some_and(|e| e.excluded.contains_key(signer))
    }

    /// The evidence held against `signer` on proposal `id`.
    pub fn evidence_of(&self, id: &Hash32, signer: &PublicKey) -> Option<&Equivocation> {
        self.proposals.get(id)?.excluded.get(signer)
    }

    /// The evidence held on proposal `id` (all proposals when `None`), by proposal, then
    /// signer.
    pub fn evidence(&self, id: Option<&Hash32>) -> Vec<&Equivocation> {
        let mut all: Vec<&Equivocation> = self
            .proposals
            .iter()
            .filter(|(pid, _)| id.is_none_or(|want| want == *pid))
            .flat_map(|(_, e)| e.excluded.values())
            .collect();
        all.sort_by_key(|e| (*e.proposal(), *e.signer()));
        all
    }

    /// The carried attestations among `attestations` that would change something, and so
    /// need their signatures verified before they are applied; known, superseded, expired,
    /// weightless (see [`Aggregator::weighs`]) and self-attestations are left out.
    pub fn unverified_attestations<'a>(
        &self,
        attestations: &'a [UptimeAttestation],
    ) -> Vec<&'a UptimeAttestation> {
        attestations
            .iter()
            .filter(|a| self.weighs(a) && self.is_new_attestation(a))
            .collect()
    }

    /// Whether [`Aggregator::add_attestation`] would store `attestation`: it is not held
    /// already, superseded, expired or a self-attestation. Unlike
    /// [`Aggregator::unverified_attestations`] this takes a weightless one too: a node holds
    /// the attestations about itself that it carries, whoever made them.
    pub fn is_new_attestation(&self, attestation: &UptimeAttestation) -> bool {
        self.population.classify(attestation) == AttestationOutcome::New
    }

    /// Whether the qualification rule reads `attestation` at all. Under the measurer rule
    /// only a measurer's attestation qualifies or places anyone: a measurer of the spec in
    /// force, or of a staged version (so that its attestations are held when the version
    /// comes into force). Every other attestation a presence or signal carries would cost a
    /// signature check and a record on every node for nothing (at mainnet's 9 measurers and
    /// 16 peers, 16 of the 25 a presence carries), so carried ones are neither checked nor
    /// held. Under rule v1 and the tickets rule every attestation weighs.
    pub fn weighs(&self, attestation: &UptimeAttestation) -> bool {
        let Qualification::Measurers(rule) = self.qualification() else {
            return true;
        };
        let attester = &attestation.body.attester;
        rule.measurers.contains(attester)
            || self
                .staged
                .iter()
                .any(|spec| spec.measurers.iter().any(|m| m.key == *attester))
    }

    /// Absorbs an attestation whose signature the caller verified.
    pub fn add_attestation(&mut self, attestation: UptimeAttestation) -> AttestationOutcome {
        let outcome = self.population.add(attestation);
        self.follow_population();
        outcome
    }

    /// Absorbs attestations whose signatures the caller verified, in order; the outcomes
    /// are those of [`Aggregator::add_attestation`] one after another, and so is every
    /// standing and tally after. Faster for many at once (a catch-up, a simulated network):
    /// their keys are looked up together.
    pub fn add_attestations(
        &mut self,
        attestations: Vec<UptimeAttestation>,
    ) -> Vec<AttestationOutcome> {
        let outcomes = self.population.add_all(attestations);
        self.follow_population();
        outcomes
    }

    /// Absorbs the attestations a presence carries (the caller verified the presence and the
    /// attestations [`Aggregator::unverified_attestations`] lists); returns how many were new.
    pub fn apply_presence(&mut self, presence: Presence) -> usize {
        let carrier = presence.body.node;
        presence
            .body
            .attestations
            .into_vec()
            .into_iter()
            .filter(|a| {
                self.add_carried_attestation(&carrier, a.clone()) == AttestationOutcome::New
            })
            .count()
    }

    /// Absorbs a verified attestation that `carrier` announced (in a presence or a signal):
    /// only attestations about the carrier itself are taken, and only those that weigh
    /// ([`Aggregator::weighs`]).
    pub fn add_carried_attestation(
        &mut self,
        carrier: &PublicKey,
        attestation: UptimeAttestation,
    ) -> AttestationOutcome {
        if attestation.body.subject != *carrier {
            return AttestationOutcome::NotCarriedBySubject;
        }
        if !self.weighs(&attestation) {
            return AttestationOutcome::Weightless;
        }
        self.add_attestation(attestation)
    }

    /// Passes the population's changes on to every tally.
    fn follow_population(&mut self) {
        let sqrt = self.policy.sqrt_weighting;
        for mv in self.population.take_moves() {
            let (Move::Leave { node, .. } | Move::Join { node, .. }) = mv;
            for entry in self.proposals.values_mut() {
                let choice = entry
                    .signals
                    .get(&node)
                    .filter(|_| !entry.excluded.contains_key(&node))
                    .map(|s| s.body.choice);
                entry.tally.apply_move(&mv, choice, sqrt);
            }
        }
    }

    /// Moves to `epoch`: latches override verdicts as the old epoch closes, forgets expired
    /// attestations, recomputes every standing and tally, and latches again with the new
    /// population. Epochs are expected to increase; expired attestations are gone for good.
    pub fn set_epoch(&mut self, epoch: u64) {
        let closing = self.epoch();
        self.latch_overrides(closing);
        self.population.set_epoch(epoch);
        let sqrt = self.policy.sqrt_weighting;
        for entry in self.proposals.values_mut() {
            entry.tally =
                ProposalTally::rebuild(&entry.signals, &entry.excluded, &self.population, sqrt);
        }
        self.latch_overrides(epoch);
        self.activate_rotations();
    }

    /// The epochs in which an override can be latched: from the one the lock starts in to
    /// the one after the lock's last, so that signals cast just before the lock ends still
    /// reach every node in time. `None` for a proposal without a lock.
    fn override_epochs(&self, entry: &Entry) -> Option<(u64, u64)> {
        let (start, end) = entry.lock();
        (end > start).then(|| (self.spec.epoch_at(start), self.spec.epoch_at(end - 1) + 1))
    }

    fn override_met_now(&self, entry: &Entry) -> bool {
        let (units, nodes) = entry.tally.override_counts();
        let (total_nodes, total_units) = self.population.totals();
        override_met(units, nodes, total_units, total_nodes, &entry.tier)
    }

    fn latch_overrides(&mut self, epoch: u64) {
        let latch: Vec<Hash32> = self
            .proposals
            .iter()
            .filter(|(_, e)| e.overridden_at.is_none())
            .filter(|(_, e)| {
                self.override_epochs(e)
                    .is_some_and(|(a, b)| (a..=b).contains(&epoch))
            })
            .filter(|(_, e)| self.override_met_now(e))
            .map(|(id, _)| *id)
            .collect();
        for id in latch {
            let entry = self.proposals.get_mut(&id).expect("listed");
            let by = entry
                .signals
                .iter()
                .filter(|(signer, signal)| {
                    signal.body.choice == Choice::Override && !entry.excluded.contains_key(*signer)
                })
                .filter_map(|(signer, _)| {
                    let g = self.population.counted(signer)?;
                    Some((*signer, (g, self.population.netgroup_size(&g))))
                })
                .collect();
            entry.overridden_at = Some(epoch);
            entry.latched_with = Some(Latch {
                tally: entry.tally.clone(),
                totals: self.population.totals(),
                by,
            });
        }
    }

    /// The tally of a proposal at the current epoch.
    pub fn tally(&self, id: &Hash32) -> Option<Tally> {
        let entry = self.proposals.get(id)?;
        let excluded_held = entry
            .excluded
            .keys()
            .filter(|k| entry.signals.contains_key(k))
            .count() as u64;
        Some(entry.tally.view(
            *id,
            &entry.tier,
            self.epoch(),
            (
                entry.signals.len() as u64,
                entry.excluded.len() as u64,
                excluded_held,
            ),
            self.population.totals(),
        ))
    }

    /// Where a proposal stands at `now` (Unix seconds). Overridden once a verdict was
    /// latched; during the override epochs also whenever the current tally meets the
    /// thresholds (the verdict is latched when the epoch closes); otherwise pending before
    /// the lock, locked during it, then the activation stages.
    pub fn state(&self, id: &Hash32, now: u64) -> Option<ProposalState> {
        let entry = self.proposals.get(id)?;
        let (start, end) = entry.lock();
        if entry.overridden_at.is_some() {
            return Some(ProposalState::Overridden);
        }
        if now < start {
            return Some(ProposalState::Pending);
        }
        let epoch = self.epoch();
        let open = self
            .override_epochs(entry)
            .is_some_and(|(a, b)| (a..=b).contains(&epoch));
        if open && self.override_met_now(entry) {
            return Some(ProposalState::Overridden);
        }
        if now < end {
            return Some(ProposalState::Locked);
        }
        Some(ProposalState::after_lock(&self.spec.activation, now - end))
    }

    /// The epoch at which a proposal's override was latched, if it was.
    pub fn overridden_at(&self, id: &Hash32) -> Option<u64> {
        self.proposals.get(id)?.overridden_at
    }

    /// Restores a latched override after a restart (see [`Aggregator::overridden_at`]): the
    /// verdict depends on the population when it was reached, which replaying messages
    /// later cannot reproduce. False when the proposal is unknown.
    pub fn restore_override(&mut self, id: &Hash32, epoch: u64) -> bool {
        match self.proposals.get_mut(id) {
            Some(entry) => {
                entry.overridden_at = Some(entry.overridden_at.map_or(epoch, |e| e.min(epoch)));
                true
            }
            None => false,
        }
    }

    /// A node's uptime standing at the current epoch; `None` when no attestation about it is
    /// held.
    pub fn uptime(&self, key: &PublicKey) -> Option<UptimeStatus> {
        self.population.status(key)
    }

    /// The denominator of every tally: how many nodes count at the current epoch, and their
    /// total weight in units.
    pub fn population(&self) -> (u64, u64) {
        self.population.totals()
    }

    /// The stored proposals, by lock start, then id.
    pub fn proposals(&self) -> Vec<(&Hash32, &Proposal)> {
        let mut all: Vec<(&Hash32, &Proposal)> = self
            .proposals
            .iter()
            .map(|(id, e)| (id, &e.proposal))
            .collect();
        all.sort_by_key(|(id, p)| (p.body.lock_start, **id));
        all
    }

    /// One stored proposal.
    pub fn proposal(&self, id: &Hash32) -> Option<&Proposal> {
        self.proposals.get(id).map(|e| &e.proposal)
    }

    /// A signer's latest signal on a proposal.
    pub fn signal(&self, id: &Hash32, signer: &PublicKey) -> Option<&Signal> {
        self.proposals.get(id)?.signals.get(signer)
    }

    /// Every stored signal (the latest of each signer on each proposal), in no particular
    /// order: with the proposals and attestations, what a restart replays.
    pub fn signals(&self) -> impl Iterator<Item = &Signal> {
        self.proposals.values().flat_map(|e| e.signals.values())
    }

    /// The nodes that count at the current epoch (the population, the denominator of every
    /// tally), with the address each counts at, by key.
    pub fn counted_nodes(&self) -> Vec<(PublicKey, std::net::IpAddr)> {
        self.population.counted_nodes()
    }

    /// Every stored attestation (the latest of each attester about each subject, not yet
    /// expired), in no particular order. The aggregator keeps a compact record of each, so
    /// they are rebuilt as they are read.
    pub fn attestations(&self) -> impl Iterator<Item = UptimeAttestation> + '_ {
        self.population.attestations()
    }
}
