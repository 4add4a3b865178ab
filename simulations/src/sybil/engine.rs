//! One run: the world's messages through a real [`commons_aggregator::Aggregator`], and what
//! came out of it.
//!
//! The simulator never computes a rule itself. Qualification, IP dedup, netgroups and weights
//! are read back from the aggregator ([`Aggregator::uptime`], [`Aggregator::population`],
//! [`Aggregator::tally`], [`Aggregator::state`]); the only arithmetic here is splitting the
//! aggregator's per-netgroup weights between honest and attacker nodes with the aggregator's
//! own [`netgroup_units`], and a check that those parts add up to the aggregator's total.

use std::collections::HashMap;
use std::time::Instant;

use commons_aggregator::{
    Aggregator, MeasurerPolicy, Netgroup, ProposalState, Qualification, TicketPolicy, WEIGHT_SCALE,
    netgroup_units,
};
use commons_signaling::spec::regtest_maintainer_key;
use commons_signaling::{
    BoundedString, BoundedVec, PROTOCOL_VERSION, Proposal, ProposalBody, PublicKey,
    QualificationRule, Signal, SignalBody, Signature, Signed, UptimeAttestation,
};
use serde::Serialize;

use crate::error::SimError;
use crate::sybil::scenario::{Resolved, Scenario};
use crate::sybil::world::{Side, World};

/// How messages reach the aggregator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// The aggregator starts at epoch 0, before every attestation of the world, receives
    /// every message (attestations dated later are held for their epoch), then moves to the
    /// tally epoch with [`Aggregator::set_epoch`], which computes every standing once. This is what a
    /// node does at an epoch boundary, and it is fast.
    EpochBoundary,
    /// The aggregator sits at the tally epoch and updates standings and tallies after every
    /// message, as a node does between boundaries. Slower; used to check that both paths give
    /// the same numbers.
    Incremental,
}

/// What one attacker got.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AttackerOutcome {
    /// Its name.
    pub name: String,
    /// Its strategy.
    pub strategy: &'static str,
    /// Keys it made.
    pub keys: u64,
    /// Addresses it paid for.
    pub ips: u64,
    /// Keys that qualified.
    pub qualified: u64,
    /// Keys that counted.
    pub counted: u64,
    /// Its weight, in weight units.
    pub weight_units: u64,
    /// Its cost.
    pub cost: f64,
}

/// The numbers of one run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Outcome {
    /// The run's seed.
    pub seed: u64,
    /// Honest nodes.
    pub honest_nodes: u64,
    /// Honest nodes that qualified (step 2).
    pub honest_qualified: u64,
    /// Honest nodes that counted (after IP dedup).
    pub honest_counted: u64,
    /// Honest weight, in units.
    pub honest_units: u64,
    /// Attacker keys, all attackers.
    pub attacker_keys: u64,
    /// Attacker addresses paid for.
    pub attacker_ips: u64,
    /// Attacker keys that qualified.
    pub attacker_qualified: u64,
    /// Attacker keys that counted.
    pub attacker_counted: u64,
    /// Attacker weight, in units.
    pub attacker_units: u64,
    /// Counted nodes (the aggregator's population).
    pub total_nodes: u64,
    /// Total weight in units (the aggregator's population weight, the tally denominator).
    pub total_units: u64,
    /// The aggregator's override weight share of the proposal.
    pub override_weight_share: f64,
    /// The aggregator's override node share.
    pub override_node_share: f64,
    /// Whether the aggregator reports the proposal overridden.
    pub overridden: bool,
    /// What the attackers paid, together.
    pub attacker_cost: f64,
    /// Per attacker.
    pub attackers: Vec<AttackerOutcome>,
    /// Wall-clock time of the run (never written to the CSV).
    pub runtime_ms: u64,
    /// Wall-clock time of each phase of the run, in order (never written to the CSV).
    pub phases_ms: Vec<(&'static str, u64)>,
}

impl Outcome {
    fn share(units: u64, total: u64) -> f64 {
        if total == 0 {
            0.0
        } else {
            units as f64 / total as f64
        }
    }

    /// Honest weight in node-weights.
    pub fn honest_weight(&self) -> f64 {
        self.honest_units as f64 / WEIGHT_SCALE as f64
    }

    /// Attacker weight in node-weights.
    pub fn attacker_weight(&self) -> f64 {
        self.attacker_units as f64 / WEIGHT_SCALE as f64
    }

    /// Total weight in node-weights.
    pub fn total_weight(&self) -> f64 {
        self.total_units as f64 / WEIGHT_SCALE as f64
    }

    /// Attacker weight over total weight.
    pub fn attacker_share(&self) -> f64 {
        Self::share(self.attacker_units, self.total_units)
    }

    /// Honest weight over total weight.
    pub fn honest_share(&self) -> f64 {
        Self::share(self.honest_units, self.total_units)
    }

    /// Attacker counted nodes over all counted nodes.
    pub fn attacker_node_share(&self) -> f64 {
        Self::share(self.attacker_counted, self.total_nodes)
    }

    /// Honest weight without IP dedup and square-root weighting: every qualified honest node
    /// weighs 1 (what `netgroup_units(k, n, false)` gives).
    pub fn honest_weight_nodefence(&self) -> f64 {
        self.honest_qualified as f64
    }

    /// Honest weight the defences cost: without them minus with them.
    pub fn honest_weight_lost(&self) -> f64 {
        self.honest_weight_nodefence() - self.honest_weight()
    }

    /// Attacker weight without the defences.
    pub fn attacker_weight_nodefence(&self) -> f64 {
        self.attacker_qualified as f64
    }

    /// Attacker share without the defences.
    pub fn attacker_share_nodefence(&self) -> f64 {
        let total = self.honest_qualified + self.attacker_qualified;
        Self::share(self.attacker_qualified, total)
    }
}

/// The proposal of every run: signed for real by the well-known regtest maintainers (five
/// BIP340 signatures are cheap), locked from the start of the tally epoch for the tier's
/// minimum lock.
fn proposal(r: &Resolved, network: &commons_signaling::Hash32) -> Proposal {
    let lock_start = r.epoch * r.spec.epoch_secs;
    let lock_end = lock_start + r.tier.min_lock_secs.max(r.spec.epoch_secs);
    let mut p = Proposal::new(ProposalBody {
        version: PROTOCOL_VERSION,
        tier: r.tier.tier,
        title: BoundedString::new("commons-sim proposal").expect("short title"),
        reference: BoundedString::new("commons-sim").expect("short reference"),
        lock_start,
        lock_end,
    });
    for i in 0..r.tier.signatures_required as usize {
        p.add_signature(&regtest_maintainer_key(i), network)
            .expect("the regtest maintainers may sign");
    }
    p
}

/// Runs `scenario` once with `seed`.
pub fn run(scenario: &Scenario, seed: u64, mode: LoadMode) -> Result<Outcome, SimError> {
    run_on(scenario, seed, mode, 1)
}

/// [`run`], with the epoch boundary's standings computed on up to `threads` threads
/// ([`Aggregator::set_threads`]); the outcome is the same whatever the number.
pub fn run_on(
    scenario: &Scenario,
    seed: u64,
    mode: LoadMode,
    threads: usize,
) -> Result<Outcome, SimError> {
    let started = Instant::now();
    let mut phases = Phases::new();
    let r = scenario.resolve()?;
    let world = World::build(scenario, &r, seed);
    phases.mark("build world");
    let start_epoch = match mode {
        // Before every attestation of the world (churned and departed nodes' are dated up
        // to a window back), so that none is live while loading and nothing is computed
        // until the boundary: under the tickets rule a live edge arriving out of a node that
        // holds tickets hands every anchor's tickets out again, which made loading
        // quadratic in the churned nodes.
        LoadMode::EpochBoundary => 0,
        LoadMode::Incremental => r.epoch,
    };
    let mut agg = Aggregator::with_qualification(
        r.spec.clone(),
        r.policy.clone(),
        qualification(&world, &r),
        start_epoch,
    );
    agg.set_threads(threads);
    let network = *agg.network_id();
    let proposal = proposal(&r, &network);
    let lock_start = proposal.body.lock_start;
    let id = proposal.id(&network);
    agg.add_proposal(proposal)
        .map_err(|e| SimError::Runtime(format!("the aggregator refused the proposal: {e}")))?;

    let window = r.policy.uptime_window_epochs;
    // Under the measurer rule only measurers' attestations are taken, as the node takes them
    // (`Aggregator::weighs`). Under the other rules a measurer's attestation weighs nothing:
    // nobody attests a measurer, so rule v1 never places it and no ticket reaches it. Handing
    // them over anyway would triple a million-node run's attestations (9 measurers beside 5
    // peers) for a byte-identical result.
    // A handful of keys, checked for each of millions of attestations: their first eight
    // bytes, sorted, turn nearly every attester away without comparing a whole key.
    let measurers: Vec<PublicKey> = world.measurers.iter().map(|m| m.key).collect();
    let take_measurers = r.qualifying.rule == QualificationRule::Measurers;
    let key_prefix = |key: &PublicKey| u64::from_be_bytes(key.0[..8].try_into().expect("8 bytes"));
    let mut measurer_prefixes: Vec<u64> = measurers.iter().map(key_prefix).collect();
    measurer_prefixes.sort_unstable();
    // What `add_carried_attestation` would take, handed over in batches, whose keys the
    // aggregator looks up together.
    let mut load = Vec::with_capacity(LOAD_BATCH);
    let mut add = |carrier: PublicKey, a: UptimeAttestation| {
        let attester = &a.body.attester;
        let from_measurer = measurer_prefixes
            .binary_search(&key_prefix(attester))
            .is_ok()
            && measurers.contains(attester);
        if from_measurer == take_measurers && a.body.subject == carrier {
            load.push(a);
            if load.len() == LOAD_BATCH {
                agg.add_attestations(std::mem::replace(&mut load, Vec::with_capacity(LOAD_BATCH)));
            }
        }
    };
    let view = scenario.honest.attester_view;
    if threads < 2 {
        world.attestations(view, window, &mut add);
    } else {
        // The world draws the attestations on a thread of their own while this one hands
        // them to the aggregator, in the order they are drawn, so the outcome is the same.
        let world = &world;
        std::thread::scope(|scope| {
            let (batches, received) = std::sync::mpsc::sync_channel(LOAD_QUEUE_BATCHES);
            scope.spawn(move || {
                let mut batch = Vec::with_capacity(LOAD_BATCH);
                world.attestations(view, window, |carrier, a| {
                    batch.push((carrier, a));
                    if batch.len() == LOAD_BATCH {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(LOAD_BATCH));
                        // The receiver lives until every batch is in.
                        let _ = batches.send(full);
                    }
                });
                let _ = batches.send(batch);
            });
            for batch in received {
                for (carrier, a) in batch {
                    add(carrier, a);
                }
            }
        });
    }
    agg.add_attestations(load);
    phases.mark("add_attestation");
    for node in &world.nodes {
        let Some(choice) = node.choice else { continue };
        let signal = Signed {
            body: SignalBody {
                version: PROTOCOL_VERSION,
                proposal: id,
                choice,
                sequence: 1,
                time: lock_start,
                signer: node.key,
                attestations: BoundedVec::truncating(vec![]),
            },
            signature: Signature::default(),
        };
        apply(&mut agg, signal, lock_start)?;
    }
    phases.mark("apply_signal");
    if mode == LoadMode::EpochBoundary {
        agg.set_epoch(r.epoch);
        phases.mark("set_epoch");
    }
    let mut outcome = measure(&agg, &world, &r, &id, lock_start, seed, started)?;
    phases.mark("measure");
    // Dropping a million-node aggregator takes a while too; it belongs to the run.
    drop(agg);
    drop(world);
    phases.mark("drop");
    outcome.phases_ms = phases.done;
    outcome.runtime_ms = started.elapsed().as_millis() as u64;
    Ok(outcome)
}

/// Step 2's rule for this world: the rule the scenario names, with the world's measurer
/// keys or anchors as the spec would list them.
pub fn qualification(world: &World, r: &Resolved) -> Qualification {
    let q = &r.qualifying;
    match q.rule {
        QualificationRule::PeerAttestations => Qualification::PeerAttestations,
        QualificationRule::Measurers => Qualification::Measurers(MeasurerPolicy {
            measurers: world.measurers.iter().map(|m| m.key).collect(),
            quorum: q.measurer_quorum,
            liveness_epochs: q.liveness_epochs,
        }),
        QualificationRule::Tickets => Qualification::Tickets(TicketPolicy {
            anchors: world.anchors.iter().copied().collect(),
            tickets_per_anchor: q.tickets_per_anchor,
            anchors_required: q.anchors_required,
        }),
    }
}

/// Attestations per batch from the thread that draws them to the one that loads them.
const LOAD_BATCH: usize = 4_096;
/// Batches drawn ahead of the loader at most: bounds the memory the pipeline holds.
const LOAD_QUEUE_BATCHES: usize = 4;

/// Wall-clock time per phase, to show where a run spends it.
struct Phases {
    last: Instant,
    done: Vec<(&'static str, u64)>,
}

impl Phases {
    fn new() -> Self {
        Phases {
            last: Instant::now(),
            done: Vec::new(),
        }
    }

    fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.done
            .push((name, now.duration_since(self.last).as_millis() as u64));
        self.last = now;
    }
}

fn apply(agg: &mut Aggregator, signal: Signal, now: u64) -> Result<(), SimError> {
    agg.apply_signal(signal, now)
        .map(|_| ())
        .map_err(|e| SimError::Runtime(format!("the aggregator refused a signal: {e}")))
}

fn measure(
    agg: &Aggregator,
    world: &World,
    r: &Resolved,
    id: &commons_signaling::Hash32,
    now: u64,
    seed: u64,
    started: Instant,
) -> Result<Outcome, SimError> {
    let sqrt = r.policy.sqrt_weighting;
    let attackers = world.attackers.len();
    // Per netgroup: counted nodes of each side (index 0 honest, 1 + i attacker i).
    let mut groups: HashMap<Netgroup, Vec<u64>> = HashMap::new();
    let mut qualified = vec![0u64; attackers + 1];
    let mut counted = vec![0u64; attackers + 1];
    for node in &world.nodes {
        let side = match node.side {
            Side::Honest => 0,
            Side::Attacker(i) => 1 + i as usize,
        };
        let Some(status) = agg.uptime(&node.key) else {
            continue;
        };
        if status.qualified {
            qualified[side] += 1;
        }
        if status.counted {
            counted[side] += 1;
            let g = status.netgroup.ok_or_else(|| {
                SimError::Runtime("internal: a counted node without a netgroup".into())
            })?;
            groups.entry(g).or_insert_with(|| vec![0; attackers + 1])[side] += 1;
        }
    }
    let mut units = vec![0u64; attackers + 1];
    let (mut nodes_sum, mut units_sum) = (0u64, 0u64);
    for per_side in groups.values() {
        let n: u64 = per_side.iter().sum();
        nodes_sum += n;
        units_sum += netgroup_units(n, n, sqrt);
        for (side, &k) in per_side.iter().enumerate() {
            units[side] += netgroup_units(k, n, sqrt);
        }
    }
    let (total_nodes, total_units) = agg.population();
    if (nodes_sum, units_sum) != (total_nodes, total_units) {
        return Err(SimError::Runtime(format!(
            "internal: the simulator's accounting ({nodes_sum} nodes, {units_sum} units) \
             differs from the aggregator's population ({total_nodes}, {total_units})"
        )));
    }
    let tally = agg
        .tally(id)
        .ok_or_else(|| SimError::Runtime("internal: the proposal vanished".into()))?;
    let overridden = agg.state(id, now) == Some(ProposalState::Overridden);
    let attacker_outcomes: Vec<AttackerOutcome> = world
        .attackers
        .iter()
        .enumerate()
        .map(|(i, a)| AttackerOutcome {
            name: a.name.clone(),
            strategy: a.strategy,
            keys: a.keys,
            ips: a.ips,
            qualified: qualified[i + 1],
            counted: counted[i + 1],
            weight_units: units[i + 1],
            cost: a.cost,
        })
        .collect();
    let sum = |f: fn(&AttackerOutcome) -> u64| attacker_outcomes.iter().map(f).sum::<u64>();
    Ok(Outcome {
        seed,
        honest_nodes: world.honest as u64,
        honest_qualified: qualified[0],
        honest_counted: counted[0],
        honest_units: units[0],
        attacker_keys: sum(|a| a.keys),
        attacker_ips: sum(|a| a.ips),
        attacker_qualified: sum(|a| a.qualified),
        attacker_counted: sum(|a| a.counted),
        attacker_units: sum(|a| a.weight_units),
        total_nodes,
        total_units,
        override_weight_share: tally.override_weight_share,
        override_node_share: tally.override_node_share,
        overridden,
        attacker_cost: attacker_outcomes.iter().map(|a| a.cost).sum(),
        attackers: attacker_outcomes,
        runtime_ms: started.elapsed().as_millis() as u64,
        phases_ms: Vec::new(),
    })
}
