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
use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use commons_signaling::{PublicKey, UptimeAttestation};
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

/// One stored attestation with what the rule reads from it.
#[derive(Debug, Clone)]
struct Record {
    attestation: UptimeAttestation,
    ip: IpAddr,
    epoch: u64,
    seen: u32,
}

/// A node's standing as the rule computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Standing {
    ip: Option<IpAddr>,
    uptime: u32,
    netgroups: u32,
    qualified: bool,
}

#[derive(Debug, Default)]
struct Node {
    /// The latest attestation of each attester about this node.
    about: HashMap<PublicKey, Record>,
    /// The nodes this one has a stored attestation about (empty under the measurer rule,
    /// where an attester's standing never moves anyone else's).
    vouches_for: HashSet<PublicKey>,
    /// Where this node stands as an attester: the address others attest it at.
    placement: Option<IpAddr>,
    standing: Standing,
    counted: Option<Netgroup>,
}

/// The qualified population and the counted nodes per netgroup.
#[derive(Debug)]
pub(crate) struct Population {
    policy: Policy,
    qualification: Qualification,
    /// Under the tickets rule, who holds tickets at the current edge set.
    admission: Admission,
    epoch: u64,
    nodes: HashMap<PublicKey, Node>,
    /// Qualified nodes per address, best first: the first is the one that counts.
    by_ip: HashMap<IpAddr, BTreeSet<(Reverse<u32>, PublicKey)>>,
    /// The node that counts for each address (with IP dedup).
    ip_winner: HashMap<IpAddr, PublicKey>,
    netgroup_n: HashMap<Netgroup, u64>,
    total_units: u64,
    total_nodes: u64,
    moves: Vec<Move>,
}

/// Whether `a` replaces `b` as its attester's latest about the subject: a higher epoch, or
/// the same epoch and larger canonical bytes, so every node keeps the same one.
fn supersedes(a: &UptimeAttestation, b: &UptimeAttestation) -> bool {
    match a.body.epoch.cmp(&b.body.epoch) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => a.encode() > b.encode(),
    }
}

impl Population {
    pub(crate) fn new(policy: Policy, qualification: Qualification, epoch: u64) -> Self {
        let mut population = Population {
            policy,
            qualification,
            admission: Admission::default(),
            epoch,
            nodes: HashMap::new(),
            by_ip: HashMap::new(),
            ip_winner: HashMap::new(),
            netgroup_n: HashMap::new(),
            total_units: 0,
            total_nodes: 0,
            moves: Vec::new(),
        };
        // Anchors hold their own tickets before any edge exists.
        population.recompute_admission();
        population
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
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

    /// What [`Population::add`] would do with `a`, without doing it.
    pub(crate) fn classify(&self, a: &UptimeAttestation) -> AttestationOutcome {
        let body = &a.body;
        if body.attester == body.subject {
            return AttestationOutcome::SelfAttestation;
        }
        if self.expired(body.epoch) {
            return AttestationOutcome::Expired;
        }
        match self
            .nodes
            .get(&body.subject)
            .and_then(|n| n.about.get(&body.attester))
        {
            None => AttestationOutcome::New,
            Some(held) if held.attestation == *a => AttestationOutcome::Duplicate,
            Some(held) if supersedes(a, &held.attestation) => AttestationOutcome::New,
            Some(_) => AttestationOutcome::Superseded,
        }
    }

    /// Stores a verified attestation and updates the standings it can change.
    pub(crate) fn add(&mut self, a: UptimeAttestation) -> AttestationOutcome {
        let outcome = self.classify(&a);
        if outcome != AttestationOutcome::New {
            return outcome;
        }
        let (attester, subject) = (a.body.attester, a.body.subject);
        let record = Record {
            ip: canonical_ip(a.body.subject_ip.0),
            epoch: a.body.epoch,
            seen: a.body.seen_epochs.min(self.policy.uptime_window_epochs),
            attestation: a,
        };
        let previous = self
            .nodes
            .entry(subject)
            .or_default()
            .about
            .insert(attester, record);
        let had_live_edge = previous.as_ref().is_some_and(|r| self.live(r.epoch));
        // A replaced record was already listed; a million-node set_epoch or ingest spends
        // most of its time in these hash inserts, so none is made twice. Under the measurer
        // rule nobody's standing depends on an attester's, so the edges are not kept at all.
        if previous.is_none() && !matches!(self.qualification, Qualification::Measurers(_)) {
            self.nodes
                .entry(attester)
                .or_default()
                .vouches_for
                .insert(subject);
        }
        match &self.qualification {
            Qualification::PeerAttestations => {}
            Qualification::Measurers(m) => {
                // Only a measurer's attestation moves anyone, and only its subject.
                if m.measurers.contains(&attester) {
                    self.refresh_standing(&subject);
                }
                return outcome;
            }
            Qualification::Tickets(_) => {
                let live_edge = self.live(self.nodes[&subject].about[&attester].epoch);
                // A superseding attestation dated later than now removes the edge for now.
                if live_edge != had_live_edge
                    && self.admission.reached(&attester)
                    && self.recompute_admission()
                {
                    self.refresh_everyone();
                    return outcome;
                }
            }
        }
        let mut dirty = vec![subject];
        if self.update_placement(&subject) {
            dirty.extend(self.nodes[&subject].vouches_for.iter().copied());
        }
        for node in dirty {
            self.refresh_standing(&node);
        }
        outcome
    }

    /// Moves to `epoch`: forgets expired attestations and recomputes every standing.
    pub(crate) fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
        let window = self.window();
        // Only expired records leave `vouches_for`: it lists exactly the subjects whose
        // `about` holds the attester, and records leave `about` only here.
        let mut expired: Vec<(PublicKey, PublicKey)> = Vec::new();
        for (subject, node) in self.nodes.iter_mut() {
            node.about.retain(|attester, r| {
                let keep = r.epoch.saturating_add(window) > epoch;
                if !keep {
                    expired.push((*attester, *subject));
                }
                keep
            });
        }
        for (attester, subject) in expired {
            if let Some(node) = self.nodes.get_mut(&attester) {
                node.vouches_for.remove(&subject);
            }
        }
        self.nodes
            .retain(|_, n| !n.about.is_empty() || !n.vouches_for.is_empty());

        self.recompute_admission();
        let keys: Vec<PublicKey> = self.nodes.keys().copied().collect();
        for key in &keys {
            let placement = self.compute_placement(key);
            self.nodes.get_mut(key).expect("listed").placement = placement;
        }
        for key in &keys {
            let standing = self.compute_standing(key);
            let node = self.nodes.get_mut(key).expect("listed");
            node.standing = standing;
            node.counted = None;
        }

        self.by_ip.clear();
        self.ip_winner.clear();
        self.netgroup_n.clear();
        self.moves.clear();
        let mut counted: Vec<(PublicKey, Netgroup)> = Vec::new();
        for (key, node) in &self.nodes {
            let s = node.standing;
            if let (true, Some(ip)) = (s.qualified, s.ip) {
                if self.policy.ip_dedup {
                    self.by_ip
                        .entry(ip)
                        .or_default()
                        .insert((Reverse(s.uptime), *key));
                } else {
                    counted.push((*key, self.policy.netgroup(ip)));
                }
            }
        }
        for (ip, members) in &self.by_ip {
            if let Some((_, winner)) = members.first() {
                self.ip_winner.insert(*ip, *winner);
                counted.push((*winner, self.policy.netgroup(*ip)));
            }
        }
        for (key, netgroup) in counted {
            self.nodes.get_mut(&key).expect("listed").counted = Some(netgroup);
            *self.netgroup_n.entry(netgroup).or_default() += 1;
        }
        self.total_nodes = self.netgroup_n.values().sum();
        self.total_units = self
            .netgroup_n
            .values()
            .map(|&n| netgroup_units(n, n, self.policy.sqrt_weighting))
            .sum();
    }

    /// Under the tickets rule, hands the anchors' tickets out again over the live edges;
    /// whether that changed who is admitted. Does nothing under the other rules.
    fn recompute_admission(&mut self) -> bool {
        let Qualification::Tickets(tickets) = &self.qualification else {
            return false;
        };
        let mut edges: HashMap<PublicKey, Vec<PublicKey>> = HashMap::new();
        for (subject, node) in &self.nodes {
            for (attester, record) in &node.about {
                if self.live(record.epoch) {
                    edges.entry(*attester).or_default().push(*subject);
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

    /// Whether `key` may vouch or qualify under the rule in force: under the tickets rule
    /// only admitted nodes may; under the others everyone may.
    fn admitted(&self, key: &PublicKey) -> bool {
        match self.qualification {
            Qualification::Tickets(_) => self.admission.admitted(key),
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

    /// Recomputes every placement, then every standing (with the moves they make).
    /// Replaces the qualification rule's parameters (a key rotation changed the measurers)
    /// and recomputes every standing under them.
    pub(crate) fn set_qualification(&mut self, qualification: Qualification) {
        self.qualification = qualification;
        self.recompute_admission();
        self.refresh_everyone();
    }

    fn refresh_everyone(&mut self) {
        let keys: Vec<PublicKey> = self.nodes.keys().copied().collect();
        for key in &keys {
            self.update_placement(key);
        }
        for key in &keys {
            self.refresh_standing(key);
        }
    }

    /// The address others attest `key` at, which places it in a netgroup as an attester: the
    /// live attestation about it with the most seen epochs, ties to the smaller address.
    /// Under the tickets rule only admitted attesters place; under the measurer rule nobody
    /// needs a placement.
    fn compute_placement(&self, key: &PublicKey) -> Option<IpAddr> {
        if matches!(self.qualification, Qualification::Measurers(_)) {
            return None;
        }
        self.nodes
            .get(key)?
            .about
            .iter()
            .filter(|(attester, r)| self.live(r.epoch) && self.admitted(attester))
            .map(|(_, r)| r)
            .max_by_key(|r| (r.seen, Reverse(r.ip)))
            .map(|r| r.ip)
    }

    /// Recomputes `key`'s placement; whether it changed.
    fn update_placement(&mut self, key: &PublicKey) -> bool {
        let placement = self.compute_placement(key);
        let node = self.nodes.get_mut(key).expect("present");
        let changed = node.placement != placement;
        node.placement = placement;
        changed
    }

    /// Step 2: per address, the best value of each attester netgroup; the uptime at that
    /// address is the q-th largest of them.
    fn compute_standing(&self, key: &PublicKey) -> Standing {
        let Some(node) = self.nodes.get(key) else {
            return Standing::default();
        };
        if let Qualification::Measurers(m) = &self.qualification {
            return self.measured_standing(node, m);
        }
        let mut per_ip: HashMap<IpAddr, HashMap<Netgroup, u32>> = HashMap::new();
        for (attester, record) in &node.about {
            if !self.live(record.epoch) || !self.admitted(attester) {
                continue;
            }
            // An attester nobody else attests has no netgroup, so it cannot vouch.
            let Some(at) = self.nodes.get(attester).and_then(|a| a.placement) else {
                continue;
            };
            let best = per_ip
                .entry(record.ip)
                .or_default()
                .entry(self.policy.netgroup(at))
                .or_default();
            *best = (*best).max(record.seen);
        }
        let q = self.policy.quorum();
        let mut best: Option<(bool, u32, u32, Reverse<IpAddr>)> = None;
        for (ip, groups) in per_ip {
            let mut values: Vec<u32> = groups.into_values().collect();
            values.sort_unstable_by(|a, b| b.cmp(a));
            let quorum = values.len() >= q;
            let uptime = if quorum { values[q - 1] } else { 0 };
            let candidate = (quorum, uptime, values.len() as u32, Reverse(ip));
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
                qualified: quorum && uptime >= self.policy.min_uptime_epochs && self.admitted(key),
            },
        }
    }

    /// Step 2 under the measurer rule: per address, the `seen` of each measurer whose
    /// latest attestation names it; the uptime is the q_m-th largest, and the address is
    /// live while the latest of those attestations is less than `L` epochs old.
    fn measured_standing(&self, node: &Node, m: &MeasurerPolicy) -> Standing {
        // Per address: the measurers' values and the epoch of the freshest sighting. A node
        // is nearly always measured at one address, so a list searched in place beats a
        // map (this runs for every node at every epoch boundary).
        let mut per_ip: Vec<(IpAddr, Vec<u32>, u64)> = Vec::new();
        for (attester, record) in &node.about {
            if !self.live(record.epoch) || !m.measurers.contains(attester) {
                continue;
            }
            match per_ip.iter_mut().find(|(ip, _, _)| *ip == record.ip) {
                Some((_, values, latest)) => {
                    values.push(record.seen);
                    *latest = (*latest).max(record.epoch);
                }
                None => per_ip.push((record.ip, vec![record.seen], record.epoch)),
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

    /// Recomputes `key`'s standing and, step 3, who counts for the addresses involved.
    fn refresh_standing(&mut self, key: &PublicKey) {
        let new = self.compute_standing(key);
        let node = self.nodes.get_mut(key).expect("present");
        let old = std::mem::replace(&mut node.standing, new);
        if old == new {
            return;
        }
        let qualified_ip = |s: Standing| if s.qualified { s.ip } else { None };
        let (old_ip, new_ip) = (qualified_ip(old), qualified_ip(new));
        if !self.policy.ip_dedup {
            let netgroup = new_ip.map(|ip| self.policy.netgroup(ip));
            self.set_counted(key, netgroup);
            return;
        }
        if let Some(ip) = old_ip {
            let members = self
                .by_ip
                .get_mut(&ip)
                .expect("a qualified node is listed at its address");
            members.remove(&(Reverse(old.uptime), *key));
        }
        if let Some(ip) = new_ip {
            self.by_ip
                .entry(ip)
                .or_default()
                .insert((Reverse(new.uptime), *key));
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
        let winner = self.by_ip.get(&ip).and_then(|m| m.first()).map(|(_, k)| *k);
        let previous = self.ip_winner.get(&ip).copied();
        if winner == previous {
            return;
        }
        if let Some(previous) = previous {
            self.set_counted(&previous, None);
        }
        match winner {
            Some(winner) => {
                self.ip_winner.insert(ip, winner);
                self.set_counted(&winner, Some(self.policy.netgroup(ip)));
            }
            None => {
                self.ip_winner.remove(&ip);
                self.by_ip.remove(&ip);
            }
        }
    }

    /// Step 4 bookkeeping: netgroup sizes and the total weight.
    fn set_counted(&mut self, key: &PublicKey, netgroup: Option<Netgroup>) {
        let node = self.nodes.get_mut(key).expect("present");
        if node.counted == netgroup {
            return;
        }
        let old = std::mem::replace(&mut node.counted, netgroup);
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
                node: *key,
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
                node: *key,
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
        self.nodes.get(key).and_then(|n| n.counted)
    }

    pub(crate) fn netgroup_size(&self, netgroup: &Netgroup) -> u64 {
        self.netgroup_n.get(netgroup).copied().unwrap_or(0)
    }

    /// Counted nodes and their total weight in units.
    pub(crate) fn totals(&self) -> (u64, u64) {
        (self.total_nodes, self.total_units)
    }

    pub(crate) fn status(&self, key: &PublicKey) -> Option<UptimeStatus> {
        let node = self.nodes.get(key).filter(|n| !n.about.is_empty())?;
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

    /// Every stored attestation: the latest per attester and subject that has not expired.
    pub(crate) fn attestations(&self) -> impl Iterator<Item = &UptimeAttestation> {
        self.nodes
            .values()
            .flat_map(|n| n.about.values().map(|r| &r.attestation))
    }
}
