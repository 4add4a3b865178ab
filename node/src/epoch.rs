//! The epoch work: who was online ([`UptimeObserver`], pure and unit-tested), the
//! attestations this node issues about its peers (a measurer: about every node it saw, kept
//! for delivery when the node visits), the overrides latched, the store pruned, and this
//! node's presence, which carries measurer attestations first.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use commons_p2p::{PeerId, TopicKind, peer_xonly_key};
use commons_signaling::messages::MAX_PRESENCE_ATTESTATIONS;
use commons_signaling::{
    AttestationBody, BoundedVec, Hash32, PROTOCOL_VERSION, Presence, PresenceBody, PublicKey,
    QualificationRule, Signed, UptimeAttestation, WireIp,
};
use serde::{Deserialize, Serialize};

use crate::node::Node;
use crate::store::Batch;

/// Under the measurer rule, how many peer attestations a presence or signal carries beside
/// the measurers'. They weigh nothing there (no node checks or holds them,
/// `Aggregator::weighs`) and serve audits only: that peers saw the node where the measurers
/// say, every epoch (docs/PROTOCOL.md, "Auditing a measurer"). Four show that as well as
/// sixteen and keep a presence at 13 attestations instead of 25: at mainnet's nine
/// measurers, 2.1 KB less per presence on every link it crosses (docs/SCALING.md).
pub const AUDIT_PEER_ATTESTATIONS: usize = 4;

/// How long this node has seen a peer online at one IP: the epochs of the uptime window in
/// which it was connected. Persisted so a restart does not reset what the node attests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// The IP the epochs were seen at; a new IP starts over.
    pub ip: Option<IpAddr>,
    /// Epochs in which the peer was connected.
    pub epochs: BTreeSet<u64>,
}

#[derive(Debug, Clone)]
struct ConnectedPeer {
    key: Option<PublicKey>,
    ip: Option<IpAddr>,
}

/// What this node sees of its peers: who is connected, who was connected during the current
/// epoch (and at which IP), and in which epochs of the window each peer was seen. Pure: the
/// caller says when connections open and close and when an epoch starts.
#[derive(Debug, Default)]
pub struct UptimeObserver {
    peers: HashMap<PeerId, ConnectedPeer>,
    /// Peers (by key) connected at some time during the current epoch, at the IP seen.
    seen_this_epoch: HashMap<PublicKey, IpAddr>,
    observed: HashMap<PublicKey, Observed>,
}

/// What [`UptimeObserver::close_epoch`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EpochObservations {
    /// The peers still connected, each with its key, IP and the epochs of the window it was
    /// seen in: those this node attests now (the others get theirs when seen again).
    pub attest: Vec<(PeerId, PublicKey, IpAddr, u32)>,
    /// The peers seen during the epoch that closed but no longer connected, each with its
    /// key, IP and epochs seen: a measurer attests them too and hands each its attestation
    /// when it connects again, since nodes on a long epoch visit a measurer rather than stay.
    pub away: Vec<(PublicKey, IpAddr, u32)>,
    /// The observations that changed, to persist.
    pub changed: Vec<(PublicKey, Observed)>,
    /// The peers not seen over a whole window, forgotten.
    pub forgotten: Vec<PublicKey>,
}

impl UptimeObserver {
    /// An observer that starts from what was persisted.
    pub fn restore(observed: impl IntoIterator<Item = (PublicKey, Observed)>) -> Self {
        UptimeObserver {
            observed: observed.into_iter().collect(),
            ..Default::default()
        }
    }

    /// A new connection: the peer (when its id names a key) counts as seen in this epoch at
    /// the IP observed on the connection.
    pub fn connected(&mut self, peer: PeerId, key: Option<PublicKey>, ip: Option<IpAddr>) {
        if let (Some(key), Some(ip)) = (key, ip) {
            self.seen_this_epoch.insert(key, ip);
        }
        self.peers.insert(peer, ConnectedPeer { key, ip });
    }

    /// The last connection to a peer closed.
    pub fn disconnected(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }

    /// How many peers are connected.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// The connected peers.
    pub fn peer_ids(&self) -> Vec<PeerId> {
        self.peers.keys().copied().collect()
    }

    /// What was observed of a peer.
    pub fn observed(&self, key: &PublicKey) -> Option<&Observed> {
        self.observed.get(key)
    }

    /// At the start of `epoch`: records who was online in the epoch that just ended
    /// (everyone seen during it, and everyone still connected; the connected ones start the
    /// new epoch as seen), keeps the epochs of the last `window`, and forgets peers not seen
    /// over a whole window. `me` is never observed.
    pub fn close_epoch(&mut self, epoch: u64, me: &PublicKey, window: u64) -> EpochObservations {
        let mut out = EpochObservations::default();
        let closing = epoch.saturating_sub(1);
        let mut seen = std::mem::take(&mut self.seen_this_epoch);
        let connected: Vec<(PeerId, PublicKey, IpAddr)> = self
            .peers
            .iter()
            .filter_map(|(id, p)| Some((*id, p.key?, p.ip?)))
            .collect();
        for (_, key, ip) in &connected {
            seen.insert(*key, *ip);
            self.seen_this_epoch.insert(*key, *ip);
        }
        let peer_of: HashMap<PublicKey, PeerId> =
            connected.iter().map(|(id, k, _)| (*k, *id)).collect();
        let mut seen: Vec<(PublicKey, IpAddr)> = seen.into_iter().collect();
        seen.sort();
        for (key, ip) in seen {
            if key == *me {
                continue;
            }
            let observed = self.observed.entry(key).or_default();
            if observed.ip != Some(ip) {
                *observed = Observed {
                    ip: Some(ip),
                    epochs: BTreeSet::new(),
                };
            }
            observed.epochs.insert(closing);
            let oldest = epoch.saturating_sub(window);
            observed.epochs.retain(|e| *e >= oldest && *e < epoch);
            let seen_epochs = u32::try_from(observed.epochs.len()).unwrap_or(u32::MAX);
            out.changed.push((key, observed.clone()));
            match peer_of.get(&key) {
                Some(peer) => out.attest.push((*peer, key, ip, seen_epochs)),
                None => out.away.push((key, ip, seen_epochs)),
            }
        }
        let mut stale: Vec<PublicKey> = self
            .observed
            .iter()
            .filter(|(_, o)| o.epochs.last().is_none_or(|last| last + window < epoch))
            .map(|(k, _)| *k)
            .collect();
        stale.sort();
        for key in &stale {
            self.observed.remove(key);
        }
        out.forgotten = stale;
        out
    }
}

impl Node {
    /// Records a new connection: the peer counts as seen in this epoch at the IP observed on
    /// the connection. On a measurer, returns the latest attestation it issued about the
    /// peer at that IP, still live, for the caller to deliver: a node visiting once an epoch
    /// collects what it earned on its last visit.
    pub fn peer_connected(&self, peer: PeerId, ip: Option<IpAddr>) -> Option<UptimeAttestation> {
        let key = peer_xonly_key(&peer).map(PublicKey);
        let oldest_live = self
            .epoch()
            .saturating_sub(u64::from(self.spec.uptime_window_epochs));
        let mut st = self.state();
        st.observer.connected(peer, key, ip);
        let issued = st.measured.get(&key?)?;
        (Some(issued.body.subject_ip.0) == ip && issued.body.epoch >= oldest_live)
            .then(|| issued.clone())
    }

    /// Whether this node's key is one of the spec's measurers: it then attests every node it
    /// sees, not only the peers that stay connected, and accepts connections from the whole
    /// network.
    pub fn is_measurer(&self) -> bool {
        self.measurers.iter().any(|m| m.key == self.me)
    }

    /// The measurers other than this node, with the addresses the spec lists for each: every
    /// node visits every measurer once an epoch to be measured.
    pub fn measurers_to_visit(&self) -> Vec<(PublicKey, Vec<String>)> {
        self.measurers
            .iter()
            .filter(|m| m.key != self.me)
            .map(|m| (m.key, m.addresses.clone()))
            .collect()
    }

    /// Records that the last connection to a peer closed.
    pub fn peer_disconnected(&self, peer: &PeerId) {
        self.state().observer.disconnected(peer);
    }

    /// Number of connected peers.
    pub fn peer_count(&self) -> usize {
        self.state().observer.peer_count()
    }

    /// Connected peers, for picking one to resynchronise with.
    pub fn connected_peers(&self) -> Vec<PeerId> {
        self.state().observer.peer_ids()
    }

    /// What this node observed of a peer.
    pub fn observed(&self, key: &PublicKey) -> Option<Observed> {
        self.state().observer.observed(key).cloned()
    }

    /// The epoch work at the start of `epoch`: moves the intake on (latching and persisting
    /// overrides, forgetting old presences), records which peers were online during the
    /// epoch that ended, and issues and returns this node's attestations about them; the
    /// caller delivers each to its subject, which carries it in its presence. Expired
    /// attestations are pruned from the store; the scan of the store that finds them runs
    /// without the state lock.
    pub fn on_epoch(&self, epoch: u64) -> Vec<(PeerId, UptimeAttestation)> {
        let window = u64::from(self.spec.uptime_window_epochs);
        let measurer = self.is_measurer();
        let mut batch = Batch::new();
        let body = |subject, ip, seen_epochs| AttestationBody {
            version: PROTOCOL_VERSION,
            attester: self.me,
            subject,
            subject_ip: WireIp(ip),
            epoch,
            seen_epochs,
        };
        let (to_connected, to_away) = {
            let mut st = self.state();
            let version = st.agg().spec().version();
            st.intake.advance_to(epoch);
            if st.agg().spec().version() != version {
                let spec = st.agg().spec();
                tracing::info!(
                    version = spec.version(),
                    spec_id = %spec.spec_id(),
                    epoch,
                    "spec version in force: keys of earlier versions count no more"
                );
            }
            let rotations = st.agg().rotations();
            let in_force = st.agg().spec().version();
            for rotation in crate::specinfo::missing(&rotations) {
                if st.warned_rotations.insert(rotation.proposal) {
                    tracing::warn!(
                        proposal = %rotation.proposal,
                        spec_id = %rotation.spec_id,
                        activation_epoch = rotation.activation_epoch,
                        in_force,
                        "a rotation proposal names a spec version this node does not hold: \
                         restart with --network set to the spec bundle that holds it, or this \
                         node stays behind when it activates (getinfo says the same)"
                    );
                }
            }
            // A latch made void by evidence is gone from the store already; forgetting it
            // here too lets a later latch of the same proposal be stored.
            let crate::node::State {
                intake, overrides, ..
            } = &mut *st;
            overrides.retain(|id| intake.aggregator().overridden_at(id).is_some());
            let latched: Vec<(Hash32, u64)> = st
                .agg()
                .proposals()
                .into_iter()
                .filter_map(|(id, _)| st.agg().overridden_at(id).map(|at| (*id, at)))
                .filter(|(id, _)| !st.overrides.contains(id))
                .collect();
            for (id, at) in latched {
                tracing::info!(proposal = %id, epoch = at, "proposal overridden");
                batch.put_override(&id, at);
                st.overrides.insert(id);
            }
            let seen = st.observer.close_epoch(epoch, &self.me, window);
            for (key, observed) in &seen.changed {
                batch.put_observed(key, observed);
            }
            for key in &seen.forgotten {
                batch.delete_observed(key);
            }
            st.measured
                .retain(|_, issued| issued.body.epoch + window >= epoch);
            self.write(batch);
            let to_connected: Vec<(PeerId, AttestationBody)> = seen
                .attest
                .into_iter()
                .map(|(peer, subject, ip, seen_epochs)| (peer, body(subject, ip, seen_epochs)))
                .collect();
            let to_away: Vec<AttestationBody> = if measurer {
                seen.away
                    .into_iter()
                    .map(|(subject, ip, seen_epochs)| body(subject, ip, seen_epochs))
                    .collect()
            } else {
                Vec::new()
            };
            (to_connected, to_away)
        };
        // Signing runs without the lock: a measurer signs one attestation for every node of
        // the network each epoch, and ingest must not wait for that.
        let issued: Vec<(PeerId, UptimeAttestation)> = to_connected
            .into_iter()
            .map(|(peer, body)| (peer, Signed::sign(body, &self.key, &self.network_id)))
            .collect();
        if measurer {
            let away: Vec<UptimeAttestation> = to_away
                .into_iter()
                .map(|body| Signed::sign(body, &self.key, &self.network_id))
                .collect();
            self.metrics
                .measured
                .inc_by((issued.len() + away.len()) as u64);
            let mut st = self.state();
            for attestation in issued.iter().map(|(_, a)| a).chain(away.iter()) {
                st.measured
                    .insert(attestation.body.subject, attestation.clone());
            }
            tracing::info!(
                epoch,
                connected = issued.len(),
                away = away.len(),
                "measured the nodes seen in the last epoch"
            );
        }
        self.prune_expired_attestations(epoch, window);
        // This node's own attestations count nowhere until their subjects carry them in their
        // presences, which every node, this one included, absorbs.
        if !issued.is_empty() {
            tracing::debug!(epoch, attested = issued.len(), "issued uptime attestations");
        }
        self.changed.notify_waiters();
        issued
    }

    /// Drops from the store the attestations the aggregator no longer holds because they
    /// expired, so catch-up never serves them. The store is scanned without the lock; the
    /// deletions are decided and written under it, so one that a newer attestation of the
    /// same pair replaced meanwhile is kept.
    fn prune_expired_attestations(&self, epoch: u64, window: u64) {
        let expired: Vec<(PublicKey, PublicKey)> = match self.store.attestations() {
            Ok(stored) => stored
                .into_iter()
                .filter(|a| a.body.epoch + window < epoch)
                .map(|a| (a.body.subject, a.body.attester))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "could not scan attestations for pruning");
                return;
            }
        };
        if expired.is_empty() {
            return;
        }
        let st = self.state();
        let live: HashSet<(PublicKey, PublicKey)> = st
            .agg()
            .attestations()
            .map(|a| (a.body.subject, a.body.attester))
            .collect();
        let mut batch = Batch::new();
        for (subject, attester) in expired {
            if !live.contains(&(subject, attester)) {
                batch.delete_attestation(&subject, &attester);
            }
        }
        if !batch.is_empty() {
            self.write(batch);
        }
    }

    /// The live attestations about this node, at most `max`: the latest of each measurer
    /// first (under the measurer rule nothing else qualifies, and a full presence must not
    /// crowd them out), then the others, latest first; under the measurer rule at most
    /// [`AUDIT_PEER_ATTESTATIONS`] of those.
    ///
    /// None from a later epoch than this node's: such an attestation is not live yet, and a
    /// peer whose clock is behind this node's refuses a whole presence or signal that
    /// carries one from beyond its own skew allowance. So a single attester with a clock far
    /// ahead (or lying) could otherwise silence this node at every peer on true time.
    pub fn attestations_about_me(&self, max: usize) -> Vec<UptimeAttestation> {
        let window = u64::from(self.spec.uptime_window_epochs);
        let epoch = self.epoch();
        let mut about = match self.store.attestations_about(&self.me) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "could not read attestations about this node");
                return Vec::new();
            }
        };
        about.retain(|a| {
            a.body.epoch <= epoch && a.body.epoch + window >= epoch && a.body.attester != self.me
        });
        let is_measurer = |key: &PublicKey| self.measurers.iter().any(|m| m.key == *key);
        about.sort_by(|a, b| {
            is_measurer(&b.body.attester)
                .cmp(&is_measurer(&a.body.attester))
                .then(b.body.epoch.cmp(&a.body.epoch))
                .then(a.body.attester.cmp(&b.body.attester))
        });
        if self.spec.qualification == QualificationRule::Measurers {
            let measured = about
                .iter()
                .take_while(|a| is_measurer(&a.body.attester))
                .count();
            about.truncate(measured + AUDIT_PEER_ATTESTATIONS);
        }
        about.truncate(max);
        about
    }

    /// This node's presence for `epoch`, carrying the attestations others made about it.
    pub fn make_presence(&self, epoch: u64) -> Presence {
        let body = PresenceBody {
            version: PROTOCOL_VERSION,
            node: self.me,
            epoch,
            attestations: BoundedVec::truncating(
                self.attestations_about_me(MAX_PRESENCE_ATTESTATIONS),
            ),
        };
        Signed::sign(body, &self.key, &self.network_id)
    }

    /// Makes this node's presence for `epoch`, remembers what it carries for the signals
    /// that follow (see [`Node::signal_attestations`]) and publishes it.
    pub async fn publish_presence(&self, epoch: u64) {
        let presence = self.make_presence(epoch);
        *self
            .presence_carried
            .lock()
            .expect("presence lock poisoned") = presence.body.attestations.to_vec();
        self.publish(TopicKind::Presences, presence.encode()).await;
    }

    /// The attestations a signal of this node carries, at most `max`: those its last
    /// presence carried, then those of attesters that presence did not hear from, in the
    /// order of [`Node::attestations_about_me`].
    ///
    /// A peer that holds the presence holds its attestations too, so it checks no signature
    /// but the signal's: the newest attestation of every attester instead would be new to
    /// every receiver until the next presence, up to sixteen signature checks per signal on
    /// every node it reaches, which is where a loopback network's propagation tail went.
    /// An attester the presence lacks is news that may qualify this node at once, so its
    /// attestation still goes along. A newer attestation from an attester the presence had
    /// (a higher `seen`) waits for the next presence, at most an epoch. Before the first
    /// presence, the newest of every attester.
    pub fn signal_attestations(&self, max: usize) -> Vec<UptimeAttestation> {
        let newest = self.attestations_about_me(MAX_PRESENCE_ATTESTATIONS);
        let carried = self
            .presence_carried
            .lock()
            .expect("presence lock poisoned")
            .clone();
        let window = u64::from(self.spec.uptime_window_epochs);
        let epoch = self.epoch();
        let live = |a: &UptimeAttestation| a.body.epoch + window >= epoch;
        let mut chosen: Vec<UptimeAttestation> = carried.into_iter().filter(live).collect();
        let heard: HashSet<PublicKey> = chosen.iter().map(|a| a.body.attester).collect();
        chosen.extend(
            newest
                .into_iter()
                .filter(|a| !heard.contains(&a.body.attester)),
        );
        chosen.truncate(max);
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> PublicKey {
        commons_signaling::SecretKey::from_seed(&format!("observer {i}")).public_key()
    }

    fn peer() -> PeerId {
        PeerId::random()
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_connected_peer_gains_an_epoch_each_epoch_and_is_attested() {
        let me = key(0);
        let (p, k) = (peer(), key(1));
        let mut o = UptimeObserver::default();
        o.connected(p, Some(k), Some(ip(1)));
        for (epoch, want) in [(11, 1), (12, 2), (13, 3)] {
            let seen = o.close_epoch(epoch, &me, 5);
            assert_eq!(seen.attest, vec![(p, k, ip(1), want)], "epoch {epoch}");
        }
        assert_eq!(o.observed(&k).unwrap().epochs, BTreeSet::from([10, 11, 12]));
        // The window keeps the last 5 epochs only.
        for epoch in 14..=20 {
            o.close_epoch(epoch, &me, 5);
        }
        assert_eq!(o.observed(&k).unwrap().epochs.len(), 5);
    }

    #[test]
    fn a_new_ip_starts_over_and_own_key_is_never_observed() {
        let me = key(0);
        let (p, k) = (peer(), key(1));
        let mut o = UptimeObserver::default();
        o.connected(p, Some(k), Some(ip(1)));
        o.connected(peer(), Some(me), Some(ip(9)));
        o.close_epoch(11, &me, 5);
        o.close_epoch(12, &me, 5);
        o.disconnected(&p);
        o.connected(p, Some(k), Some(ip(2)));
        let seen = o.close_epoch(13, &me, 5);
        assert_eq!(seen.attest, vec![(p, k, ip(2), 1)]);
        assert!(o.observed(&me).is_none());
    }

    #[test]
    fn a_peer_seen_briefly_is_observed_not_attested_then_forgotten() {
        let me = key(0);
        let (p, k) = (peer(), key(1));
        let mut o = UptimeObserver::default();
        o.connected(p, Some(k), Some(ip(1)));
        o.disconnected(&p);
        assert_eq!(o.peer_count(), 0);
        let seen = o.close_epoch(11, &me, 3);
        assert!(seen.attest.is_empty(), "gone before the epoch closed");
        assert_eq!(
            seen.away,
            vec![(k, ip(1), 1)],
            "a measurer attests it anyway"
        );
        assert_eq!(seen.changed.len(), 1);
        assert_eq!(o.observed(&k).unwrap().epochs, BTreeSet::from([10]));
        for epoch in 12..=13 {
            assert!(o.close_epoch(epoch, &me, 3).forgotten.is_empty());
        }
        let seen = o.close_epoch(14, &me, 3);
        assert_eq!(seen.forgotten, vec![k]);
        assert!(o.observed(&k).is_none());
    }
}
