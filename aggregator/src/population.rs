//! Steps 2 to 4 of the Sybil rule: uptime qualification from attestations, IP dedup, and the
//! counted nodes per netgroup with their square-root weight.
//!
//! Step 2 follows the [`Qualification`] in force: peer attestations (rule v1), measurers, or
//! anchored tickets. Adding an attestation recomputes only what it can change: its subject's
//! standing, and, when the subject's own netgroup as an attester moved, the standing of the
//! nodes it vouches for. Under the measurer rule only a measurer's attestation changes
//! anything; under the tickets rule a new edge out of a node that holds tickets hands the
//! tickets out again, and if that admits someone else, every standing is recomputed. A new
//! epoch recomputes everything.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use commons_signaling::{AttestationBody, PublicKey, Signature, Signed, UptimeAttestation, WireIp};
use serde::Serialize;

use crate::netgroup::{Netgroup, canonical_ip};
use crate::policy::{MeasurerPolicy, Policy, Qualification};
use crate::tickets::Admission;
use crate::weight::netgroup_units;

/// What became of an attestation offered to the aggregator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttestationOutcome {
    /// Stored: the first from this attester about this subject, or later than the one held.
    New,
    /// Exactly the attestation already held.
    Duplicate,
    /// The attester's attestation about this subject that is held is later (a higher epoch,
    /// or the same epoch and larger canonical bytes), so this one changes nothing.
    Superseded,
    /// Out of the uptime window at the current epoch; it can never count again.
    Expired,
    /// A node attesting itself: never counts.
    SelfAttestation,
    /// Carried in a presence or signal of a node other than its subject. Only a subject
    /// carries attestations about itself; otherwise any key could announce attestations that
    /// move an honest node to an address of the announcer's choosing.
    NotCarriedBySubject,
    /// Carried by its subject, but from a key the qualification rule in force does not
    /// read: under the measurer rule, an attester that is no measurer (of the spec in force
    /// or of a staged version). It could change no standing, so it is neither verified nor
    /// held; it stays inside the presence or signal that carried it, for audits.
    Weightless,
}

/// What the aggregator knows about one node's uptime at the current epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UptimeStatus {
    /// The address its uptime is attested at: among the addresses live attestations name,
    /// the one with a quorum, then the highest uptime, then the most attesting netgroups,
    /// then the smallest address. `None` when no live attestation from a placed attester
    /// names any address. Under the measurer rule only measurer attestations name
    /// addresses, and an address with a quorum but no measurer sighting within the liveness
    /// window ranks below one with both.
    pub ip: Option<IpAddr>,
    /// The q-th largest value that attesters in distinct netgroups give for that address; 0
    /// without a quorum. Under the measurer rule, the q_m-th largest value measurers give.
    pub uptime_epochs: u32,
    /// How many distinct netgroups of attesters vouch for that address; under the measurer
    /// rule, how many measurers.
    pub attester_netgroups: u32,
    /// A quorum of netgroups agrees and the uptime reaches the minimum; under the measurer
    /// rule, a quorum of measurers agrees, the uptime reaches the minimum and a measurer saw
    /// the node there within the liveness window; under the tickets rule, also admitted.
    pub qualified: bool,
    /// Qualified and, with IP dedup, the one node that counts for its address.
    pub counted: bool,
    /// The netgroup of `ip`.
    pub netgroup: Option<Netgroup>,
}

/// A change of a node's counted status, with the size of the netgroup before it, so that
/// tallies can follow the population incrementally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Move {
    /// The node stopped counting in the netgroup.
    Leave {
        node: PublicKey,
        netgroup: Netgroup,
        n_before: u64,
    },
    /// The node started counting in the netgroup.
    Join {
        node: PublicKey,
        netgroup: Netgroup,
        n_before: u64,
    },
}

/// The maps keyed by what the network sends (public keys, addresses, netgroups): foldhash
/// with a random seed per process. SipHash was a quarter of a million-node epoch boundary;
/// the keys are chosen by whoever sends them, so the seed stays random.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A node's place in [`Population::nodes`]. Records refer to their attester by it, so the
/// rule follows an index instead of hashing a public key for every attestation it reads.
type NodeId = u32;

/// A node's attesters are searched in place up to this many; past it, through an index.
const FEW_ATTESTERS: usize = 16;
/// An address's qualified nodes are kept in a sorted list up to this many; past it, in an
/// ordered set.
const FEW_AT_ADDRESS: usize = 32;

/// One stored attestation: everything it says except the two keys its place already names
/// (the subject holds it, the attester is `attester`). About half the size of the signed
/// message, and the whole of it comes back from [`Record::attestation`].
#[derive(Debug, Clone)]
struct Record {
    epoch: u64,
    signature: Signature,
    attester: NodeId,
    seen_epochs: u32,
    /// The address as signed (possibly IPv4-mapped); the rule reads [`Record::ip`].
    subject_ip: IpAddr,
    version: u8,
    /// Whether the attester is one of the measurers of the rule in force (set again when a
    /// key rotation changes them), so the measurer rule never looks the attester up.
    from_measurer: bool,
}

impl Record {
    /// The address the rule counts the subject at.
    fn ip(&self) -> IpAddr {
        canonical_ip(self.subject_ip)
    }

    /// Epochs seen, capped at the window.
    fn seen(&self, window: u32) -> u32 {
        self.seen_epochs.min(window)
    }

    /// Whether `a` (from this record's attester about its subject) is exactly this record.
    fn holds(&self, a: &UptimeAttestation) -> bool {
        self.epoch == a.body.epoch
            && self.seen_epochs == a.body.seen_epochs
            && self.subject_ip == a.body.subject_ip.0
            && self.version == a.body.version
            && self.signature == a.signature
    }

    /// The signed attestation this record was made from.
    fn attestation(&self, attester: PublicKey, subject: PublicKey) -> UptimeAttestation {
        Signed {
            body: AttestationBody {
                version: self.version,
                attester,
                subject,
                subject_ip: WireIp(self.subject_ip),
                epoch: self.epoch,
                seen_epochs: self.seen_epochs,
            },
            signature: self.signature,
        }
    }
}

/// Grows a per-node list by half instead of doubling it: a million nodes hold a handful of
/// entries each, and doubling would leave a third of that memory unused.
fn reserve_one<T>(list: &mut Vec<T>) {
    if list.len() == list.capacity() {
        list.reserve_exact((list.len() / 2).max(2));
    }
}

/// The latest record of each attester about one node.
#[derive(Debug, Default)]
struct About {
    records: Vec<Record>,
    /// Position of each attester's record, only once there are more than [`FEW_ATTESTERS`]:
    /// a key that thousands attest must not cost a linear search per attestation.
    index: Option<Box<FastMap<NodeId, u32>>>,
}

impl About {
    fn position(&self, attester: NodeId) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(&attester).map(|&i| i as usize),
            None => self.records.iter().position(|r| r.attester == attester),
        }
    }

    fn get(&self, attester: NodeId) -> Option<&Record> {
        self.position(attester).map(|i| &self.records[i])
    }

    /// Stores the record of an attester that has none here yet.
    fn push(&mut self, record: Record) {
        reserve_one(&mut self.records);
        if let Some(index) = &mut self.index {
            index.insert(record.attester, self.records.len() as u32);
        }
        self.records.push(record);
        if self.index.is_none() && self.records.len() > FEW_ATTESTERS {
            self.reindex();
        }
    }

    /// Keeps the records `keep` accepts.
    fn retain(&mut self, keep: impl FnMut(&Record) -> bool) {
        let before = self.records.len();
        self.records.retain(keep);
        if self.records.len() != before {
            self.reindex();
        }
    }

    fn reindex(&mut self) {
        self.index = (self.records.len() > FEW_ATTESTERS).then(|| {
            Box::new(
                self.records
                    .iter()
                    .enumerate()
                    .map(|(i, r)| (r.attester, i as u32))
                    .collect(),
            )
        });
        if self.records.is_empty() {
            self.records = Vec::new();
        }
    }
}

/// A node's standing as the rule computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Standing {
    ip: Option<IpAddr>,
    uptime: u32,
    netgroups: u32,
    qualified: bool,
}

#[derive(Debug)]
struct Node {
    key: PublicKey,
    /// Whether the slot holds a node (freed slots wait in [`Population::free`]).
    listed: bool,
    /// The latest attestation of each attester about this node.
    about: About,
    /// How many stored records name this node as their attester: while any does, the slot
    /// cannot be reused.
    attesting: u32,
    /// The nodes this one has a stored attestation about (empty under the measurer rule,
    /// where an attester's standing never moves anyone else's).
    vouches_for: Vec<NodeId>,
    /// Where this node stands as an attester: the address others attest it at.
    placement: Option<IpAddr>,
    standing: Standing,
    counted: Option<Netgroup>,
}

impl Node {
    fn new(key: PublicKey) -> Self {
        Node {
            key,
            listed: true,
            about: About::default(),
            attesting: 0,
            vouches_for: Vec::new(),
            placement: None,
            standing: Standing::default(),
            counted: None,
        }
    }

    /// Nothing refers to this node any more: no record about it, none by it.
    fn unreferenced(&self) -> bool {
        self.about.records.is_empty() && self.attesting == 0
    }
}

/// One qualified node at an address, in the order that picks who counts there: the highest
/// uptime, then the smallest key (the id only comes along).
type Member = (Reverse<u32>, PublicKey, NodeId);

/// The qualified nodes at one address, best first. Nearly every address holds one, for which
/// an ordered set would allocate a whole tree node; an address with many keys gets one.
#[derive(Debug)]
enum Members {
    Few(Vec<Member>),
    Many(BTreeSet<Member>),
}

impl Members {
    fn insert(&mut self, member: Member) {
        match self {
            Members::Few(list) => {
                if let Err(at) = list.binary_search(&member) {
                    if list.len() < FEW_AT_ADDRESS {
                        if list.len() == list.capacity() {
                            list.reserve_exact(list.len().max(1));
                        }
                        list.insert(at, member);
                    } else {
                        let mut set: BTreeSet<Member> = list.drain(..).collect();
                        set.insert(member);
                        *self = Members::Many(set);
                    }
                }
            }
            Members::Many(set) => {
                set.insert(member);
            }
        }
    }

    fn remove(&mut self, member: &Member) {
        match self {
            Members::Few(list) => {
                if let Ok(at) = list.binary_search(member) {
                    list.remove(at);
                }
            }
            Members::Many(set) => {
                set.remove(member);
            }
        }
    }

    fn first(&self) -> Option<&Member> {
        match self {
            Members::Few(list) => list.first(),
            Members::Many(set) => set.first(),
        }
    }
}

/// Who is qualified at an address, and who counts for it (with IP dedup).
#[derive(Debug)]
struct AtAddress {
    members: Members,
    winner: Option<NodeId>,
}

impl Default for AtAddress {
    fn default() -> Self {
        AtAddress {
            members: Members::Few(Vec::new()),
            winner: None,
        }
    }
}

/// The qualified population and the counted nodes per netgroup.
#[derive(Debug)]
pub(crate) struct Population {
    policy: Policy,
    qualification: Qualification,
    /// Under the tickets rule, who holds tickets at the current edge set.
    admission: Admission,
    epoch: u64,
    ids: FastMap<PublicKey, NodeId>,
    nodes: Vec<Node>,
    /// Slots of `nodes` that no node holds, reused before the list grows.
    free: Vec<NodeId>,
    /// Qualified nodes per address, and the one that counts there.
    by_ip: FastMap<IpAddr, AtAddress>,
    netgroup_n: FastMap<Netgroup, u64>,
    total_units: u64,
    total_nodes: u64,
    moves: Vec<Move>,
    /// How many threads an epoch boundary may recompute placements and standings on.
    threads: usize,
    /// Attestations dated after the current epoch whose attester's record about the same
    /// subject is live, by (subject, attester): the live one stays in force until the
    /// boundary that makes the later one live. Nodes cross a boundary at slightly different
    /// instants (clocks differ by up to the allowed skew), and a measurer's attestation of
    /// the new epoch reaches nodes still in the old one; replacing the live record with it
    /// would take its subject out of the count until their own boundary.
    early: BTreeMap<(NodeId, NodeId), Record>,
    /// (attester, subject) of first records not yet counted on the attester's side
    /// (`attesting`, `vouches_for`), in arrival order. Records that are not live yet (every
    /// attestation loaded before the boundary that makes it live) change no standing, so
    /// their attesters are updated together, in attester order, before anything reads
    /// them: a random attester of a million costs a cache miss per attestation, one run of
    /// them sorted costs a few per attester.
    pending_edges: Vec<(NodeId, NodeId)>,
}

/// Where an attestation goes, given what its attester has on record about its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Held already, in force or early.
    Duplicate,
    /// What is held is later.
    Superseded,
    /// The attester's first record about the subject.
    First,
    /// Replaces the record in force.
    Replace,
    /// Dated after the current epoch while the record in force is live: waits in `early`.
    Early,
    /// Live, while the record in force is dated after the current epoch: takes its place,
    /// and that record waits in `early`.
    Demote,
}

/// Whether `a` replaces `held` as its attester's latest about the subject: a higher epoch,
/// or the same epoch and larger canonical bytes, so every node keeps the same one.
fn supersedes(a: &UptimeAttestation, held: &Record) -> bool {
    match a.body.epoch.cmp(&held.epoch) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => {
            a.encode() > held.attestation(a.body.attester, a.body.subject).encode()
        }
    }
}

impl Population {
    pub(crate) fn new(policy: Policy, qualification: Qualification, epoch: u64) -> Self {
        let mut population = Population {
            policy,
            qualification,
            admission: Admission::default(),
            epoch,
            ids: FastMap::default(),
            nodes: Vec::new(),
            free: Vec::new(),
            by_ip: FastMap::default(),
            netgroup_n: FastMap::default(),
            total_units: 0,
            total_nodes: 0,
            moves: Vec::new(),
            threads: 1,
            early: BTreeMap::new(),
            pending_edges: Vec::new(),
        };
        // Anchors hold their own tickets before any edge exists.
        population.recompute_admission();
        population
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Lets epoch boundaries use up to `threads` threads (at least 1).
    pub(crate) fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// `f` of every slot's id, in slot order, on up to `self.threads` threads: at a
    /// boundary each node's placement, and then its standing, depends only on state that
    /// no other node's computation changes, so the slots can be shared out in ranges.
    fn map_slots<R: Send + Default + Clone>(
        &self,
        f: impl Fn(&Self, NodeId) -> R + Sync,
    ) -> Vec<R> {
        let n = self.nodes.len();
        // Below this many slots a thread costs more than it saves.
        const SLOTS_PER_THREAD: usize = 16_384;
        let threads = self.threads.min(n / SLOTS_PER_THREAD).max(1);
        if threads == 1 {
            return (0..n as NodeId).map(|id| f(self, id)).collect();
        }
        // Each thread fills its own range of one list: no second copy of a million results.
        let mut all = vec![R::default(); n];
        let per_thread = n.div_ceil(threads);
        let f = &f;
        std::thread::scope(|scope| {
            for (t, part) in all.chunks_mut(per_thread).enumerate() {
                let first = t * per_thread;
                scope.spawn(move || {
                    for (offset, slot) in part.iter_mut().enumerate() {
                        *slot = f(self, (first + offset) as NodeId);
                    }
                });
            }
        });
        all
    }

    pub(crate) fn qualification(&self) -> &Qualification {
        &self.qualification
    }

    fn window(&self) -> u64 {
        u64::from(self.policy.uptime_window_epochs)
    }

    fn expired(&self, epoch: u64) -> bool {
        epoch.saturating_add(self.window()) <= self.epoch
    }

    /// Live at the current epoch E: `E - window < epoch <= E`. Later epochs are kept for
    /// when they come.
    fn live(&self, epoch: u64) -> bool {
        epoch <= self.epoch && !self.expired(epoch)
    }

    /// Whether the rule keeps `vouches_for`: under the measurer rule nobody's standing
    /// depends on an attester's.
    fn keeps_edges(&self) -> bool {
        !matches!(self.qualification, Qualification::Measurers(_))
    }

    fn id(&self, key: &PublicKey) -> Option<NodeId> {
        self.ids.get(key).copied()
    }

    fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id as usize]
    }

    /// The node of `key`, listed now if it was not.
    fn id_or_insert(&mut self, key: PublicKey) -> NodeId {
        match self.ids.entry(key) {
            std::collections::hash_map::Entry::Occupied(e) => *e.get(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let id = match self.free.pop() {
                    Some(id) => {
                        self.nodes[id as usize] = Node::new(key);
                        id
                    }
                    None => {
                        self.nodes.push(Node::new(key));
                        // Every node holds or makes a stored attestation: memory runs out
                        // long before four billion of them.
                        NodeId::try_from(self.nodes.len() - 1).expect("fewer than 2^32 nodes")
                    }
                };
                *e.insert(id)
            }
        }
    }

    /// The listed nodes, in slot order.
    fn listed(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.listed)
            .map(|(i, _)| i as NodeId)
    }

    /// What [`Population::add`] would do with `a`, without doing it.
    pub(crate) fn classify(&self, a: &UptimeAttestation) -> AttestationOutcome {
        if let Some(refused) = self.refused(a) {
            return refused;
        }
        let body = &a.body;
        let fate = match self.id(&body.subject).zip(self.id(&body.attester)) {
            Some((subject, attester)) => self.fate(
                a,
                self.node(subject).about.get(attester),
                self.early.get(&(subject, attester)),
            ),
            None => Fate::First,
        };
        match fate {
            Fate::Duplicate => AttestationOutcome::Duplicate,
            Fate::Superseded => AttestationOutcome::Superseded,
            Fate::First | Fate::Replace | Fate::Early | Fate::Demote => AttestationOutcome::New,
        }
    }

    /// Where `a`, from `attester` about `subject`, goes. The record in force is the latest
    /// live one the attester issued about the subject (or, while none is live, the latest),
    /// whatever order they arrive in.
    fn fate(&self, a: &UptimeAttestation, held: Option<&Record>, early: Option<&Record>) -> Fate {
        let Some(held) = held else {
            return Fate::First;
        };
        if held.holds(a) || early.is_some_and(|e| e.holds(a)) {
            return Fate::Duplicate;
        }
        // Records are never expired between boundaries: one that is not live is dated later.
        match (self.live(held.epoch), self.live(a.body.epoch)) {
            (true, false) if early.is_none_or(|e| supersedes(a, e)) => Fate::Early,
            (true, false) => Fate::Superseded,
            (false, true) => Fate::Demote,
            _ if supersedes(a, held) => Fate::Replace,
            _ => Fate::Superseded,
        }
    }

    /// Why `a` is refused whatever is on record: a self-attestation or an expired one.
    fn refused(&self, a: &UptimeAttestation) -> Option<AttestationOutcome> {
        if a.body.attester == a.body.subject {
            return Some(AttestationOutcome::SelfAttestation);
        }
        if self.expired(a.body.epoch) {
            return Some(AttestationOutcome::Expired);
        }
        None
    }

    /// Stores a verified attestation and updates the standings it can change.
    pub(crate) fn add(&mut self, a: UptimeAttestation) -> AttestationOutcome {
        if let Some(refused) = self.refused(&a) {
            return refused;
        }
        let subject = self.id_or_insert(a.body.subject);
        let attester = self.id_or_insert(a.body.attester);
        self.add_listed(a, subject, attester)
    }

    /// Stores verified attestations in order, with the outcomes [`Population::add`] one
    /// after another gives. The keys are all looked up first: a run of independent lookups
    /// lets the processor wait for several of their cache misses at once, where each one
    /// between two whole updates waits alone. Nodes are listed in the same order either
    /// way (nothing but listing a key gives out a slot).
    pub(crate) fn add_all(&mut self, batch: Vec<UptimeAttestation>) -> Vec<AttestationOutcome> {
        let ids: Vec<Result<(NodeId, NodeId), AttestationOutcome>> = batch
            .iter()
            .map(|a| match self.refused(a) {
                Some(refused) => Err(refused),
                None => {
                    let subject = self.id_or_insert(a.body.subject);
                    Ok((subject, self.id_or_insert(a.body.attester)))
                }
            })
            .collect();
        batch
            .into_iter()
            .zip(ids)
            .map(|(a, ids)| match ids {
                Ok((subject, attester)) => self.add_listed(a, subject, attester),
                Err(refused) => refused,
            })
            .collect()
    }

    /// [`Population::add`] of an attestation that is neither a self-attestation nor expired,
    /// its subject and attester listed.
    fn add_listed(
        &mut self,
        a: UptimeAttestation,
        subject: NodeId,
        attester: NodeId,
    ) -> AttestationOutcome {
        let body = &a.body;
        let position = self.node(subject).about.position(attester);
        let held = position.map(|i| &self.node(subject).about.records[i]);
        let fate = self.fate(&a, held, self.early.get(&(subject, attester)));
        match fate {
            Fate::Duplicate => return AttestationOutcome::Duplicate,
            Fate::Superseded => return AttestationOutcome::Superseded,
            Fate::First | Fate::Replace | Fate::Early | Fate::Demote => {}
        }
        let from_measurer = match &self.qualification {
            Qualification::Measurers(m) => m.measurers.contains(&body.attester),
            _ => false,
        };
        let record = Record {
            epoch: body.epoch,
            signature: a.signature,
            attester,
            seen_epochs: body.seen_epochs,
            subject_ip: body.subject_ip.0,
            version: body.version,
            from_measurer,
        };
        if let Fate::Early = fate {
            // The record in force stays, so nothing it decides moves.
            self.early.insert((subject, attester), record);
            return AttestationOutcome::New;
        }
        let live_edge = self.live(record.epoch);
        let about = &mut self.node_mut(subject).about;
        let previous = match position {
            Some(i) => Some(std::mem::replace(&mut about.records[i], record)),
            None => {
                about.push(record);
                None
            }
        };
        let had_live_edge = previous.as_ref().is_some_and(|r| self.live(r.epoch));
        let first = previous.is_none();
        if let (Fate::Demote, Some(later)) = (fate, previous) {
            self.early.insert((subject, attester), later);
        }
        // A replaced record was already listed, so the edge is counted once.
        if first {
            self.pending_edges.push((attester, subject));
        }
        // Standings, placements and tickets read live records only: a record that is not
        // live replacing one that was not either changes none of them (this is every
        // attestation a node loads before the epoch boundary that makes it live).
        if !live_edge && !had_live_edge {
            return AttestationOutcome::New;
        }
        self.apply_pending_edges();
        match &self.qualification {
            Qualification::PeerAttestations => {}
            Qualification::Measurers(_) => {
                // Only a measurer's attestation moves anyone, and only its subject.
                if from_measurer {
                    self.refresh_standing(subject);
                }
                return AttestationOutcome::New;
            }
            Qualification::Tickets(_) => {
                // A live attestation taking the place of one dated later adds an edge.
                if live_edge != had_live_edge
                    && self.admission.reached(&a.body.attester)
                    && self.recompute_admission()
                {
                    self.refresh_everyone();
                    return AttestationOutcome::New;
                }
            }
        }
        self.refresh_standing(subject);
        if self.update_placement(subject) {
            let dependents = std::mem::take(&mut self.node_mut(subject).vouches_for);
            for &node in &dependents {
                self.refresh_standing(node);
            }
            self.node_mut(subject).vouches_for = dependents;
        }
        AttestationOutcome::New
    }

    /// Counts the pending edges on their attesters' side. Each attester's subjects keep
    /// their arrival order, so `vouches_for` is the list immediate updates would have made.
    fn apply_pending_edges(&mut self) {
        if self.pending_edges.is_empty() {
            return;
        }
        let mut edges = std::mem::take(&mut self.pending_edges);
        // Stable: the order within an attester is the arrival order.
        edges.sort_by_key(|&(attester, _)| attester);
        let keeps_edges = self.keeps_edges();
        for by_attester in edges.chunk_by(|a, b| a.0 == b.0) {
            let node = self.node_mut(by_attester[0].0);
            node.attesting += by_attester.len() as u32;
            if keeps_edges {
                let list = &mut node.vouches_for;
                if list.capacity() - list.len() < by_attester.len() {
                    list.reserve_exact(by_attester.len().max(list.len() / 2));
                }
                list.extend(by_attester.iter().map(|&(_, subject)| subject));
            }
        }
        // Keep a small buffer for the next attestations; give a load's worth back.
        if edges.capacity() <= 1024 {
            edges.clear();
            self.pending_edges = edges;
        }
    }

    /// Moves to `epoch`: forgets expired attestations and recomputes every standing.
    pub(crate) fn set_epoch(&mut self, epoch: u64) {
        self.apply_pending_edges();
        self.epoch = epoch;
        let window = self.window();
        self.promote_early(epoch, window);
        // Only expired records leave `vouches_for`: it lists exactly the subjects whose
        // `about` holds the attester, and records leave `about` only here.
        let mut expired: Vec<(NodeId, NodeId)> = Vec::new();
        for (subject, node) in self.nodes.iter_mut().enumerate() {
            node.about.retain(|r| {
                let keep = r.epoch.saturating_add(window) > epoch;
                if !keep {
                    expired.push((r.attester, subject as NodeId));
                }
                keep
            });
        }
        expired.sort_unstable();
        let keeps_edges = self.keeps_edges();
        for by_attester in expired.chunk_by(|a, b| a.0 == b.0) {
            let node = self.node_mut(by_attester[0].0);
            node.attesting -= by_attester.len() as u32;
            if keeps_edges {
                node.vouches_for.retain(|subject| {
                    by_attester
                        .binary_search_by_key(subject, |&(_, s)| s)
                        .is_err()
                });
            }
        }
        for (id, node) in self.nodes.iter_mut().enumerate() {
            if node.listed && node.unreferenced() {
                self.ids.remove(&node.key);
                *node = Node::new(node.key);
                node.listed = false;
                self.free.push(id as NodeId);
            }
        }

        self.recompute_admission();
        let placements = self.map_slots(Self::compute_placement);
        for (node, placement) in self.nodes.iter_mut().zip(placements) {
            node.placement = placement;
        }
        let standings = self.map_slots(Self::compute_standing);
        for (node, standing) in self.nodes.iter_mut().zip(standings) {
            node.standing = standing;
            node.counted = None;
        }

        self.by_ip.clear();
        self.netgroup_n.clear();
        self.moves.clear();
        let mut counted: Vec<(NodeId, Netgroup)> = Vec::new();
        for (id, node) in self.nodes.iter().enumerate() {
            let s = node.standing;
            if let (true, Some(ip)) = (s.qualified, s.ip) {
                if self.policy.ip_dedup {
                    self.by_ip.entry(ip).or_default().members.insert((
                        Reverse(s.uptime),
                        node.key,
                        id as NodeId,
                    ));
                } else {
                    counted.push((id as NodeId, self.policy.netgroup(ip)));
                }
            }
        }
        for (ip, at) in self.by_ip.iter_mut() {
            if let Some(&(_, _, winner)) = at.members.first() {
                at.winner = Some(winner);
                counted.push((winner, self.policy.netgroup(*ip)));
            }
        }
        for (id, netgroup) in counted {
            self.node_mut(id).counted = Some(netgroup);
            *self.netgroup_n.entry(netgroup).or_default() += 1;
        }
        self.total_nodes = self.netgroup_n.values().sum();
        self.total_units = self
            .netgroup_n
            .values()
            .map(|&n| netgroup_units(n, n, self.policy.sqrt_weighting))
            .sum();
    }

    /// Puts in force each early record that is live at `epoch`, or whose record in force
    /// expires at it (the early one is the attester's latest either way).
    fn promote_early(&mut self, epoch: u64, window: u64) {
        let due: Vec<(NodeId, NodeId)> = self
            .early
            .iter()
            .filter(|&(&(subject, attester), later)| {
                later.epoch <= epoch
                    || self
                        .node(subject)
                        .about
                        .get(attester)
                        .is_none_or(|held| held.epoch.saturating_add(window) <= epoch)
            })
            .map(|(&pair, _)| pair)
            .collect();
        for (subject, attester) in due {
            let later = self
                .early
                .remove(&(subject, attester))
                .expect("listed above");
            let about = &mut self.node_mut(subject).about;
            // An early record always has a record in force beside it: both leave `about`
            // only at a boundary, and this runs first.
            let i = about
                .position(attester)
                .expect("an early record has a record in force");
            about.records[i] = later;
        }
    }

    /// Under the tickets rule, hands the anchors' tickets out again over the live edges;
    /// whether that changed who is admitted. Does nothing under the other rules.
    fn recompute_admission(&mut self) -> bool {
        let Qualification::Tickets(tickets) = &self.qualification else {
            return false;
        };
        let mut edges: HashMap<PublicKey, Vec<PublicKey>> = HashMap::new();
        for node in &self.nodes {
            for record in &node.about.records {
                if self.live(record.epoch) {
                    edges
                        .entry(self.node(record.attester).key)
                        .or_default()
                        .push(node.key);
                }
            }
        }
        for out in edges.values_mut() {
            out.sort_unstable();
        }
        let admission = Admission::compute(tickets, &edges);
        let changed = !admission.same_admitted(&self.admission);
        self.admission = admission;
        changed
    }

    /// Whether node `id` may vouch or qualify under the rule in force: under the tickets rule
    /// only admitted nodes may; under the others everyone may.
    fn admitted(&self, id: NodeId) -> bool {
        match self.qualification {
            Qualification::Tickets(_) => self.admission.admitted(&self.node(id).key),
            _ => true,
        }
    }

    /// Under the tickets rule, whether `key` is admitted and from how many anchors it holds
    /// tickets; `None` under the other rules.
    pub(crate) fn admission(&self, key: &PublicKey) -> Option<(bool, u32)> {
        match self.qualification {
            Qualification::Tickets(_) => Some((
                self.admission.admitted(key),
                self.admission.anchors_reaching(key),
            )),
            _ => None,
        }
    }

    /// Replaces the qualification rule's parameters (a key rotation changed the measurers)
    /// and recomputes every standing under them.
    pub(crate) fn set_qualification(&mut self, qualification: Qualification) {
        // Under the rule they were recorded by: it decides whether `vouches_for` keeps them.
        self.apply_pending_edges();
        self.qualification = qualification;
        // Each record remembers whether its attester is a measurer: after a rotation that
        // changed the measurers, every record is told again.
        if let Qualification::Measurers(m) = &self.qualification {
            let keys: Vec<PublicKey> = self.nodes.iter().map(|n| n.key).collect();
            let records = self
                .nodes
                .iter_mut()
                .flat_map(|n| n.about.records.iter_mut());
            for record in records.chain(self.early.values_mut()) {
                record.from_measurer = m.measurers.contains(&keys[record.attester as usize]);
            }
        }
        self.recompute_admission();
        self.refresh_everyone();
    }

    /// Recomputes every placement, then every standing (with the moves they make).
    fn refresh_everyone(&mut self) {
        let ids: Vec<NodeId> = self.listed().collect();
        for &id in &ids {
            self.update_placement(id);
        }
        for &id in &ids {
            self.refresh_standing(id);
        }
    }

    /// The address others attest node `id` at, which places it in a netgroup as an attester:
    /// the live attestation about it with the most seen epochs, ties to the smaller address.
    /// Under the tickets rule only admitted attesters place; under the measurer rule nobody
    /// needs a placement.
    fn compute_placement(&self, id: NodeId) -> Option<IpAddr> {
        if matches!(self.qualification, Qualification::Measurers(_)) {
            return None;
        }
        let window = self.policy.uptime_window_epochs;
        self.node(id)
            .about
            .records
            .iter()
            .filter(|r| self.live(r.epoch) && self.admitted(r.attester))
            .map(|r| (r.seen(window), Reverse(r.ip())))
            .max()
            .map(|(_, Reverse(ip))| ip)
    }

    /// Recomputes node `id`'s placement; whether it changed.
    fn update_placement(&mut self, id: NodeId) -> bool {
        let placement = self.compute_placement(id);
        let node = self.node_mut(id);
        let changed = node.placement != placement;
        node.placement = placement;
        changed
    }

    /// Step 2: per address, the best value of each attester netgroup; the uptime at that
    /// address is the q-th largest of them.
    fn compute_standing(&self, id: NodeId) -> Standing {
        let node = self.node(id);
        if let Qualification::Measurers(m) = &self.qualification {
            return self.measured_standing(node, m);
        }
        let window = self.policy.uptime_window_epochs;
        // Every live sighting as (address, attester netgroup, seen), sorted so that each
        // address is one run and each netgroup's best value leads its run within it: a
        // node has a handful, for which two hash maps per node cost more than the rule.
        let mut sightings: Vec<(IpAddr, Netgroup, Reverse<u32>)> =
            Vec::with_capacity(node.about.records.len());
        for record in &node.about.records {
            if !self.live(record.epoch) || !self.admitted(record.attester) {
                continue;
            }
            // An attester nobody else attests has no netgroup, so it cannot vouch.
            let Some(at) = self.node(record.attester).placement else {
                continue;
            };
            sightings.push((
                record.ip(),
                self.policy.netgroup(at),
                Reverse(record.seen(window)),
            ));
        }
        sightings.sort_unstable();
        let q = self.policy.quorum();
        let mut values: Vec<u32> = Vec::new();
        let mut best: Option<(bool, u32, u32, Reverse<IpAddr>)> = None;
        for at_ip in sightings.chunk_by(|a, b| a.0 == b.0) {
            values.clear();
            values.extend(
                at_ip
                    .chunk_by(|a, b| a.1 == b.1)
                    .map(|by_netgroup| by_netgroup[0].2.0),
            );
            values.sort_unstable_by(|a, b| b.cmp(a));
            let quorum = values.len() >= q;
            let uptime = if quorum { values[q - 1] } else { 0 };
            let candidate = (quorum, uptime, values.len() as u32, Reverse(at_ip[0].0));
            if best.is_none_or(|b| candidate > b) {
                best = Some(candidate);
            }
        }
        match best {
            None => Standing::default(),
            Some((quorum, uptime, netgroups, Reverse(ip))) => Standing {
                ip: Some(ip),
                uptime,
                netgroups,
                qualified: quorum && uptime >= self.policy.min_uptime_epochs && self.admitted(id),
            },
        }
    }

    /// Step 2 under the measurer rule: per address, the `seen` of each measurer whose
    /// latest attestation names it; the uptime is the q_m-th largest, and the address is
    /// live while the latest of those attestations is less than `L` epochs old.
    fn measured_standing(&self, node: &Node, m: &MeasurerPolicy) -> Standing {
        let window = self.policy.uptime_window_epochs;
        // Per address: the measurers' values and the epoch of the freshest sighting. A node
        // is nearly always measured at one address, so a list searched in place beats a
        // map (this runs for every node at every epoch boundary).
        let mut per_ip: Vec<(IpAddr, Vec<u32>, u64)> = Vec::new();
        for record in &node.about.records {
            if !self.live(record.epoch) || !record.from_measurer {
                continue;
            }
            let ip = record.ip();
            match per_ip.iter_mut().find(|(at, _, _)| *at == ip) {
                Some((_, values, latest)) => {
                    values.push(record.seen(window));
                    *latest = (*latest).max(record.epoch);
                }
                None => per_ip.push((ip, vec![record.seen(window)], record.epoch)),
            }
        }
        let q = m.quorum();
        let mut best: Option<(bool, bool, u32, u32, Reverse<IpAddr>)> = None;
        for (ip, mut values, latest) in per_ip {
            values.sort_unstable_by(|a, b| b.cmp(a));
            let quorum = values.len() >= q;
            let uptime = if quorum { values[q - 1] } else { 0 };
            let fresh = self.epoch - latest < m.liveness();
            let candidate = (
                quorum && fresh,
                quorum,
                uptime,
                values.len() as u32,
                Reverse(ip),
            );
            if best.is_none_or(|b| candidate > b) {
                best = Some(candidate);
            }
        }
        match best {
            None => Standing::default(),
            Some((live_quorum, _, uptime, measurers, Reverse(ip))) => Standing {
                ip: Some(ip),
                uptime,
                netgroups: measurers,
                qualified: live_quorum && uptime >= self.policy.min_uptime_epochs,
            },
        }
    }

    /// Recomputes node `id`'s standing and, step 3, who counts for the addresses involved.
    fn refresh_standing(&mut self, id: NodeId) {
        let new = self.compute_standing(id);
        let node = self.node_mut(id);
        let old = std::mem::replace(&mut node.standing, new);
        let key = node.key;
        if old == new {
            return;
        }
        let qualified_ip = |s: Standing| if s.qualified { s.ip } else { None };
        let (old_ip, new_ip) = (qualified_ip(old), qualified_ip(new));
        if !self.policy.ip_dedup {
            let netgroup = new_ip.map(|ip| self.policy.netgroup(ip));
            self.set_counted(id, netgroup);
            return;
        }
        if let Some(ip) = old_ip {
            self.by_ip
                .get_mut(&ip)
                .expect("a qualified node is listed at its address")
                .members
                .remove(&(Reverse(old.uptime), key, id));
        }
        if let Some(ip) = new_ip {
            self.by_ip
                .entry(ip)
                .or_default()
                .members
                .insert((Reverse(new.uptime), key, id));
        }
        // The old address first: a node that moved must stop counting there before it can
        // start counting at its new address.
        if let Some(ip) = old_ip {
            self.resync_ip(ip);
        }
        if let Some(ip) = new_ip.filter(|ip| Some(*ip) != old_ip) {
            self.resync_ip(ip);
        }
    }

    /// Makes the best qualified node at `ip` the one that counts for it.
    fn resync_ip(&mut self, ip: IpAddr) {
        let Some(at) = self.by_ip.get_mut(&ip) else {
            return;
        };
        let winner = at.members.first().map(|&(_, _, id)| id);
        let previous = std::mem::replace(&mut at.winner, winner);
        if winner.is_none() {
            self.by_ip.remove(&ip);
        }
        if winner == previous {
            return;
        }
        if let Some(previous) = previous {
            self.set_counted(previous, None);
        }
        if let Some(winner) = winner {
            self.set_counted(winner, Some(self.policy.netgroup(ip)));
        }
    }

    /// Step 4 bookkeeping: netgroup sizes and the total weight.
    fn set_counted(&mut self, id: NodeId, netgroup: Option<Netgroup>) {
        let node = self.node_mut(id);
        if node.counted == netgroup {
            return;
        }
        let old = std::mem::replace(&mut node.counted, netgroup);
        let key = node.key;
        let sqrt = self.policy.sqrt_weighting;
        if let Some(g) = old {
            let n = self
                .netgroup_n
                .get_mut(&g)
                .expect("a counted node's netgroup is listed");
            let n_before = *n;
            *n -= 1;
            if *n == 0 {
                self.netgroup_n.remove(&g);
            }
            self.total_units = self.total_units - netgroup_units(n_before, n_before, sqrt)
                + netgroup_units(n_before - 1, n_before - 1, sqrt);
            self.total_nodes -= 1;
            self.moves.push(Move::Leave {
                node: key,
                netgroup: g,
                n_before,
            });
        }
        if let Some(g) = netgroup {
            let n = self.netgroup_n.entry(g).or_default();
            let n_before = *n;
            *n += 1;
            self.total_units = self.total_units - netgroup_units(n_before, n_before, sqrt)
                + netgroup_units(n_before + 1, n_before + 1, sqrt);
            self.total_nodes += 1;
            self.moves.push(Move::Join {
                node: key,
                netgroup: g,
                n_before,
            });
        }
    }

    /// The counted-status changes since the last call, in order.
    pub(crate) fn take_moves(&mut self) -> Vec<Move> {
        std::mem::take(&mut self.moves)
    }

    pub(crate) fn counted(&self, key: &PublicKey) -> Option<Netgroup> {
        self.id(key).and_then(|id| self.node(id).counted)
    }

    pub(crate) fn netgroup_size(&self, netgroup: &Netgroup) -> u64 {
        self.netgroup_n.get(netgroup).copied().unwrap_or(0)
    }

    /// Counted nodes and their total weight in units.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (self.total_nodes, self.total_units)
    }

    pub(crate) fn status(&self, key: &PublicKey) -> Option<UptimeStatus> {
        let node = self
            .id(key)
            .map(|id| self.node(id))
            .filter(|n| !n.about.records.is_empty())?;
        let s = node.standing;
        Some(UptimeStatus {
            ip: s.ip,
            uptime_epochs: s.uptime,
            attester_netgroups: s.netgroups,
            qualified: s.qualified,
            counted: node.counted.is_some(),
            netgroup: s.ip.map(|ip| self.policy.netgroup(ip)),
        })
    }

    /// The counted nodes with the address each counts at, by key.
    pub(crate) fn counted_nodes(&self) -> Vec<(PublicKey, IpAddr)> {
        let mut all: Vec<(PublicKey, IpAddr)> = self
            .nodes
            .iter()
            .filter(|n| n.listed && n.counted.is_some())
            .filter_map(|n| Some((n.key, n.standing.ip?)))
            .collect();
        all.sort_unstable();
        all
    }

    /// Every stored attestation, rebuilt from its record: per attester and subject, the one
    /// in force, then the later one waiting for its epoch if there is one.
    pub(crate) fn attestations(&self) -> impl Iterator<Item = UptimeAttestation> + '_ {
        let in_force = self.nodes.iter().flat_map(move |subject| {
            subject
                .about
                .records
                .iter()
                .map(move |r| r.attestation(self.node(r.attester).key, subject.key))
        });
        let early = self.early.iter().map(|(&(subject, _), r)| {
            r.attestation(self.node(r.attester).key, self.node(subject).key)
        });
        in_force.chain(early)
    }
}
