//! Anchored ticket admission (SumUp, GateKeeper): the decentralised alternative to measurers
//! that `commons-sim` compares against them.
//!
//! Each anchor holds `tickets_per_anchor` tickets and hands them out breadth first over
//! attestation edges (attester to subject). A node that receives tickets at some level keeps
//! one and splits the rest evenly among the subjects it attests that no earlier level
//! reached, in key order for the remainder. A node holding a ticket from at least
//! `anchors_required` anchors is admitted. Since every node reached uses a ticket, an anchor
//! reaches at most `tickets_per_anchor` nodes, and a region joined to the anchors by few
//! edges receives only the tickets those edges carry, however many keys it makes.
//!
//! The result depends only on the edge set, never on the order edges arrived in. One
//! computation costs O(anchors x edges).

use std::collections::{HashMap, HashSet};

use commons_signaling::PublicKey;

use crate::policy::TicketPolicy;

/// Who received tickets, from how many anchors, and who is admitted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Admission {
    /// Per node reached by at least one anchor: how many anchors reached it.
    reached: HashMap<PublicKey, u32>,
    admitted: HashSet<PublicKey>,
}

impl Admission {
    /// Hands out every anchor's tickets over `edges` (each node's attested subjects, sorted
    /// by key and free of duplicates).
    pub(crate) fn compute(
        policy: &TicketPolicy,
        edges: &HashMap<PublicKey, Vec<PublicKey>>,
    ) -> Self {
        let mut reached: HashMap<PublicKey, u32> = HashMap::new();
        let tickets = u64::from(policy.tickets_per_anchor);
        for anchor in &policy.anchors {
            for node in distribute(anchor, tickets, edges) {
                *reached.entry(node).or_default() += 1;
            }
        }
        let required = policy.anchors_required.max(1);
        let admitted = reached
            .iter()
            .filter(|(_, n)| **n >= required)
            .map(|(k, _)| *k)
            .collect();
        Admission { reached, admitted }
    }

    /// Whether `key` is admitted.
    pub(crate) fn admitted(&self, key: &PublicKey) -> bool {
        self.admitted.contains(key)
    }

    /// Whether any anchor's tickets reached `key`: only an edge out of such a node can
    /// change where tickets go.
    pub(crate) fn reached(&self, key: &PublicKey) -> bool {
        self.reached.contains_key(key)
    }

    /// How many anchors reached `key`.
    pub(crate) fn anchors_reaching(&self, key: &PublicKey) -> u32 {
        self.reached.get(key).copied().unwrap_or(0)
    }

    /// Whether both admit the same nodes.
    pub(crate) fn same_admitted(&self, other: &Admission) -> bool {
        self.admitted == other.admitted
    }
}

/// The nodes one anchor's tickets reach, the anchor first.
fn distribute(
    anchor: &PublicKey,
    tickets: u64,
    edges: &HashMap<PublicKey, Vec<PublicKey>>,
) -> Vec<PublicKey> {
    if tickets == 0 {
        return vec![];
    }
    let mut visited: HashSet<PublicKey> = HashSet::from([*anchor]);
    let mut reached = vec![*anchor];
    let mut level: Vec<(PublicKey, u64)> = vec![(*anchor, tickets)];
    while !level.is_empty() {
        let mut next: HashMap<PublicKey, u64> = HashMap::new();
        for (node, held) in &level {
            let spare = held - 1;
            if spare == 0 {
                continue;
            }
            let Some(out) = edges.get(node) else { continue };
            let children: Vec<&PublicKey> = out.iter().filter(|c| !visited.contains(*c)).collect();
            if children.is_empty() {
                continue;
            }
            let n = children.len() as u64;
            let (share, extra) = (spare / n, spare % n);
            for (i, child) in children.into_iter().enumerate() {
                let give = share + u64::from((i as u64) < extra);
                if give > 0 {
                    *next.entry(*child).or_default() += give;
                }
            }
        }
        level = next.into_iter().collect();
        for (node, _) in &level {
            visited.insert(*node);
            reached.push(*node);
        }
    }
    reached
}
