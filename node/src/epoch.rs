//! The epoch work: who was online, the attestations this node issues about its peers, and
//! this node's presence.


use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use commons_p2p::{PeerId, peer_xonly_key};
use commons_signaling::messages::MAX_PRESENCE_ATTESTATIONS;
use commons_signaling::{
    AttestationBody, BoundedVec, Hash32, PROTOCOL_VERSION, Presence, PresenceBody, PublicKey,
    Signed, UptimeAttestation, WireIp,
};

use crate::node::{ConnectedPeer, Node, Observed, meta_key};
use crate::store::Batch;

impl Node {

    /// Records a new connection: the peer counts as seen in this epoch at the IP observed on
    /// the connection.
    pub fn peer_connected(&self, peer: PeerId, ip: Option<IpAddr>) {
        let key = peer_xonly_key(&peer).map(PublicKey);
        let mut st = self.state();
        if let (Some(key), Some(ip)) = (key, ip) {
            st.seen_this_epoch.insert(key, ip);
        }
        st.peers.insert(peer, ConnectedPeer { key, ip });
    }

    /// Records that the last connection to a peer closed.
    pub fn peer_disconnected(&self, peer: &PeerId) {
        self.state().peers.remove(peer);
    }

    /// Number of connected peers.
    pub fn peer_count(&self) -> usize {
        self.state().peers.len()
    }

    /// What this node observed of a peer.
    pub fn observed(&self, key: &PublicKey) -> Option<Observed> {
        self.state().observed.get(key).cloned()
    }

    /// The epoch work at the start of `epoch`: moves the aggregator on (latching and
    /// persisting overrides), records which peers were online during the epoch that ended,
    /// and issues and returns this node's attestations about them; the caller delivers each
    /// to its subject, which carries it in its presence. Expired attestations are pruned
    /// from the store.
    pub fn on_epoch(&self, epoch: u64) -> Vec<(PeerId, UptimeAttestation)> {
        let window = u64::from(self.spec.uptime_window_epochs);
        let mut batch = Batch::new();
        let mut issued = Vec::new();
        {
            let mut st = self.state();
            if epoch > st.agg.epoch() {
                st.agg.set_epoch(epoch);
            }
            let latched: Vec<(Hash32, u64)> = st
                .agg
                .proposals()
                .into_iter()
                .filter_map(|(id, _)| st.agg.overridden_at(id).map(|at| (*id, at)))
                .filter(|(id, _)| !st.overrides.contains(id))
                .collect();
            for (id, at) in latched {
                tracing::info!(proposal = %id, epoch = at, "proposal overridden");
                batch.put_meta(&meta_key("override", &id.0), &at.to_be_bytes());
                st.overrides.insert(id);
            }

            // Who was online in the epoch that just ended: everyone seen during it, and
            // everyone still connected. The connected ones start the new epoch as seen.
            let closing = epoch.saturating_sub(1);
            let mut seen = std::mem::take(&mut st.seen_this_epoch);
            let connected: Vec<(PeerId, PublicKey, IpAddr)> = st
                .peers
                .iter()
                .filter_map(|(id, p)| Some((*id, p.key?, p.ip?)))
                .collect();
            for (_, key, ip) in &connected {
                seen.insert(*key, *ip);
                st.seen_this_epoch.insert(*key, *ip);
            }
            let peer_of: HashMap<PublicKey, PeerId> =
                connected.iter().map(|(id, k, _)| (*k, *id)).collect();
            for (key, ip) in seen {
                if key == self.me {
                    continue;
                }
                let observed = st.observed.entry(key).or_default();
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
                batch.put_meta(
                    &meta_key("observed", &key.0),
                    &serde_json::to_vec(&*observed).expect("serializable"),
                );
                // Only peers still connected get an attestation delivered; the others get
                // theirs when they are seen again.
                if let Some(peer) = peer_of.get(&key) {
                    let body = AttestationBody {
                        version: PROTOCOL_VERSION,
                        attester: self.me,
                        subject: key,
                        subject_ip: WireIp(ip),
                        epoch,
                        seen_epochs,
                    };
                    issued.push((*peer, Signed::sign(body, &self.key, &self.network_id)));
                }
            }
            // Forget peers not seen over a whole window.
            let stale: Vec<PublicKey> = st
                .observed
                .iter()
                .filter(|(_, o)| o.epochs.last().is_none_or(|last| last + window < epoch))
                .map(|(k, _)| *k)
                .collect();
            for key in stale {
                st.observed.remove(&key);
                batch.delete_meta(&meta_key("observed", &key.0));
            }
            // Presences older than the window tell nothing any more.
            st.presences.retain(|_, (e, _)| *e + window >= epoch);
            // Attestations the aggregator no longer holds have expired: drop them from the
            // store too, so catch-up never serves them.
            let live: HashSet<(PublicKey, PublicKey)> = st
                .agg
                .attestations()
                .map(|a| (a.body.subject, a.body.attester))
                .collect();
            match self.store.attestations() {
                Ok(stored) => {
                    for a in stored {
                        let pair = (a.body.subject, a.body.attester);
                        if !live.contains(&pair) && a.body.epoch + window < epoch {
                            batch.delete_attestation(&pair.0, &pair.1);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not scan attestations for pruning"),
            }
            self.write(batch);
        }
        // This node's own attestations count nowhere until their subjects carry them in their
        // presences, which every node, this one included, absorbs.
        if !issued.is_empty() {
            tracing::debug!(epoch, attested = issued.len(), "issued uptime attestations");
        }
        issued
    }

    /// The live attestations about this node, latest first, at most `max`.
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
        about.retain(|a| a.body.epoch + window >= epoch && a.body.attester != self.me);
        about.sort_by(|a, b| {
            b.body
                .epoch
                .cmp(&a.body.epoch)
                .then(a.body.attester.cmp(&b.body.attester))
        });
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

}
