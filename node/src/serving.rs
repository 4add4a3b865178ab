//! Bounds on the answers to peers' sync and fetch requests.
//!
//! An answer (a catch-up page, an artifact chunk: up to about 1 MiB each) stays in memory
//! until the peer has read it or the request timeout has passed, however slowly the peer
//! reads. libp2p bounds the streams of one connection (32 at once) and each request's time,
//! not how many answers all peers together make the node hold. A [`Lane`] does: at most
//! `in_flight` answers of one protocol exist at once, the requests beyond wait in a bounded
//! queue (past it they are refused, and the peer asks again or elsewhere), and one peer, or
//! one IP, may only take a few of the places, so that slow readers keep their own requests
//! waiting and not everybody else's.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use commons_p2p::PeerId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits of one lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneLimits {
    /// Answers prepared and not yet taken by their peer.
    pub in_flight: usize,
    /// Requests accepted and not answered yet, those in flight included.
    pub queued: usize,
    /// Requests of one peer accepted and not answered yet.
    pub per_peer: usize,
    /// Requests of the peers on one IP accepted and not answered yet.
    pub per_ip: usize,
}

/// Why a request was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The peer has its share of requests under way.
    Peer,
    /// The peers on its IP have their share.
    Ip,
    /// The queue is full.
    Queue,
}

impl Refusal {
    /// A short name for logs.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Peer => "peer",
            Refusal::Ip => "ip",
            Refusal::Queue => "queue",
        }
    }
}

/// Counts per key, each entry gone once back at zero so the map holds only active peers.
#[derive(Debug)]
struct Shares<K> {
    counts: HashMap<K, usize>,
}

impl<K: Hash + Eq + Copy> Shares<K> {
    fn count(&self, key: &K) -> usize {
        self.counts.get(key).copied().unwrap_or(0)
    }

    fn add(&mut self, key: K) {
        *self.counts.entry(key).or_default() += 1;
    }

    fn remove(&mut self, key: &K) {
        if let Some(n) = self.counts.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(key);
            }
        }
    }
}

#[derive(Debug)]
struct Owners {
    peers: Shares<PeerId>,
    ips: Shares<IpAddr>,
}

/// One protocol's answers: see the module documentation.
#[derive(Debug, Clone)]
pub struct Lane {
    limits: LaneLimits,
    queue: Arc<Semaphore>,
    in_flight: Arc<Semaphore>,
    owners: Arc<Mutex<Owners>>,
}

/// A request accepted into a lane; dropping it gives its place back.
#[derive(Debug)]
pub struct Ticket {
    peer: PeerId,
    ip: Option<IpAddr>,
    owners: Arc<Mutex<Owners>>,
    in_flight: Arc<Semaphore>,
    _queued: OwnedSemaphorePermit,
}

impl Lane {
    /// An empty lane.
    pub fn new(limits: LaneLimits) -> Self {
        Lane {
            limits,
            queue: Arc::new(Semaphore::new(limits.queued)),
            in_flight: Arc::new(Semaphore::new(limits.in_flight)),
            owners: Arc::new(Mutex::new(Owners {
                peers: Shares {
                    counts: HashMap::new(),
                },
                ips: Shares {
                    counts: HashMap::new(),
                },
            })),
        }
    }

    /// Accepts a request of `peer` (connected from `ip`), or says why not.
    pub fn admit(&self, peer: PeerId, ip: Option<IpAddr>) -> Result<Ticket, Refusal> {
        let mut owners = self.owners.lock().expect("lane lock");
        if owners.peers.count(&peer) >= self.limits.per_peer {
            return Err(Refusal::Peer);
        }
        if let Some(ip) = ip
            && owners.ips.count(&ip) >= self.limits.per_ip
        {
            return Err(Refusal::Ip);
        }
        let queued = self
            .queue
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Queue)?;
        owners.peers.add(peer);
        if let Some(ip) = ip {
            owners.ips.add(ip);
        }
        Ok(Ticket {
            peer,
            ip,
            owners: self.owners.clone(),
            in_flight: self.in_flight.clone(),
            _queued: queued,
        })
    }

    /// Answers in flight now.
    pub fn in_flight(&self) -> usize {
        self.limits.in_flight - self.in_flight.available_permits()
    }
}

impl Ticket {
    /// Waits for a place to prepare the answer in; hold it until the answer was taken.
    pub async fn in_flight(&self) -> Option<OwnedSemaphorePermit> {
        self.in_flight.clone().acquire_owned().await.ok()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut owners = self.owners.lock().expect("lane lock");
        owners.peers.remove(&self.peer);
        if let Some(ip) = &self.ip {
            owners.ips.remove(ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        commons_p2p::Keypair::generate_secp256k1()
            .public()
            .to_peer_id()
    }

    #[tokio::test]
    async fn a_peer_and_an_ip_get_their_share_only() {
        let lane = Lane::new(LaneLimits {
            in_flight: 2,
            queued: 5,
            per_peer: 2,
            per_ip: 3,
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let (a, b, c) = (peer(), peer(), peer());
        let a1 = lane.admit(a, Some(ip)).unwrap();
        let _a2 = lane.admit(a, Some(ip)).unwrap();
        assert_eq!(lane.admit(a, Some(ip)).unwrap_err(), Refusal::Peer);
        let _b1 = lane.admit(b, Some(ip)).unwrap();
        assert_eq!(lane.admit(b, Some(ip)).unwrap_err(), Refusal::Ip);
        // Elsewhere b is still within its own share; then the queue is full.
        let _b2 = lane.admit(b, None).unwrap();
        let _c1 = lane.admit(c, None).unwrap();
        assert_eq!(lane.admit(c, None).unwrap_err(), Refusal::Queue);
        // Places come back when requests end.
        drop(a1);
        let _a3 = lane.admit(a, Some(ip)).unwrap();

        let first = _a2.in_flight().await.unwrap();
        let _second = _b1.in_flight().await.unwrap();
        assert_eq!(lane.in_flight(), 2);
        let third = _c1.in_flight();
        tokio::pin!(third);
        assert!(futures::poll!(&mut third).is_pending());
        drop(first);
        assert!(third.await.is_some());
    }
}
