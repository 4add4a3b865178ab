//! Inbound rate limits (governor token buckets per peer and per IP) and the ban policy.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use governor::DefaultKeyedRateLimiter;
use libp2p::PeerId;

use crate::config::RateLimits;

/// What to do with one inbound item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Within the limits.
    Allow,
    /// Over a limit: drop it (for gossip: report `Ignore`) and count a violation.
    Throttle,
    /// Over a limit once too often: drop it and ban the peer.
    Ban,
}

/// Which limit tripped, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Peer,
    Ip,
}

struct Pair {
    per_peer: DefaultKeyedRateLimiter<PeerId>,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
}

impl Pair {
    /// Checks the peer bucket first so that a peer over its own limit does not also drain
    /// the bucket it shares with the other peers on its IP.
    fn check(&self, peer: &PeerId, ip: Option<IpAddr>) -> Option<Scope> {
        if self.per_peer.check_key(peer).is_err() {
            return Some(Scope::Peer);
        }
        match ip {
            Some(ip) if self.per_ip.check_key(&ip).is_err() => Some(Scope::Ip),
            _ => None,
        }
    }

    fn retain_recent(&self) {
        self.per_peer.retain_recent();
        self.per_peer.shrink_to_fit();
        self.per_ip.retain_recent();
        self.per_ip.shrink_to_fit();
    }
}

/// Rate limiters, violation history and bans.
pub(crate) struct Limiter {
    gossip: Pair,
    requests: Pair,
    fetches: Pair,
    max_violations: usize,
    violation_window: Duration,
    ban_duration: Duration,
    violations: HashMap<PeerId, VecDeque<Instant>>,
    bans: HashMap<PeerId, Instant>,
}

impl Limiter {
    /// Builds the limiters; `config` must have passed `P2pConfig::validate`.
    pub(crate) fn new(config: &RateLimits) -> Result<Self, String> {
        let quota = |limit: crate::config::RateLimit| {
            limit
                .quota()
                .ok_or_else(|| "rate limits must be positive".to_owned())
        };
        Ok(Self {
            gossip: Pair {
                per_peer: DefaultKeyedRateLimiter::keyed(quota(config.gossip_per_peer)?),
                per_ip: DefaultKeyedRateLimiter::keyed(quota(config.gossip_per_ip)?),
            },
            requests: Pair {
                per_peer: DefaultKeyedRateLimiter::keyed(quota(config.requests_per_peer)?),
                per_ip: DefaultKeyedRateLimiter::keyed(quota(config.requests_per_ip)?),
            },
            fetches: Pair {
                per_peer: DefaultKeyedRateLimiter::keyed(quota(config.fetches_per_peer)?),
                per_ip: DefaultKeyedRateLimiter::keyed(quota(config.fetches_per_ip)?),
            },
            max_violations: usize::try_from(config.max_violations).unwrap_or(usize::MAX),
            violation_window: config.violation_window,
            ban_duration: config.ban_duration,
            violations: HashMap::new(),
            bans: HashMap::new(),
        })
    }

    /// Checks one inbound gossip message first delivered by `peer`.
    pub(crate) fn check_gossip(
        &mut self,
        peer: PeerId,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> (Decision, Option<Scope>) {
        let scope = self.gossip.check(&peer, ip);
        (self.decide(peer, scope, now), scope)
    }

    /// Checks one inbound sync request (`fetch` false) or artifact fetch request from
    /// `peer`. Fetches have their own, larger buckets: a download asks for many chunks in a
    /// row, and must not use up the allowance of catch-up sync.
    pub(crate) fn check_request(
        &mut self,
        peer: PeerId,
        ip: Option<IpAddr>,
        fetch: bool,
        now: Instant,
    ) -> (Decision, Option<Scope>) {
        let pair = if fetch { &self.fetches } else { &self.requests };
        let scope = pair.check(&peer, ip);
        (self.decide(peer, scope, now), scope)
    }

    fn decide(&mut self, peer: PeerId, scope: Option<Scope>, now: Instant) -> Decision {
        match scope {
            None => Decision::Allow,
            Some(_) if self.record_violation(peer, now) => Decision::Ban,
            Some(_) => Decision::Throttle,
        }
    }

    /// Counts a violation; returns true when the peer has now exceeded the allowance and must
    /// be banned (the caller then calls [`Limiter::ban`]).
    pub(crate) fn record_violation(&mut self, peer: PeerId, now: Instant) -> bool {
        if self.bans.contains_key(&peer) {
            return false;
        }
        let window = self.violation_window;
        let history = self.violations.entry(peer).or_default();
        history.push_back(now);
        while history
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > window)
        {
            history.pop_front();
        }
        history.len() > self.max_violations
    }

    /// Records a ban; returns false if the peer was already banned.
    pub(crate) fn ban(&mut self, peer: PeerId, now: Instant) -> bool {
        self.violations.remove(&peer);
        self.bans.insert(peer, now + self.ban_duration).is_none()
    }

    /// Whether `peer` is currently banned.
    pub(crate) fn is_banned(&self, peer: &PeerId) -> bool {
        self.bans.contains_key(peer)
    }

    /// Removes and returns the bans that have run out.
    pub(crate) fn expire_bans(&mut self, now: Instant) -> Vec<PeerId> {
        let expired: Vec<PeerId> = self
            .bans
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in &expired {
            self.bans.remove(peer);
        }
        expired
    }

    /// Drops state of peers and IPs that have been quiet long enough to be back at a full
    /// bucket, so memory stays proportional to the recently active peers.
    pub(crate) fn garbage_collect(&mut self, now: Instant) {
        self.gossip.retain_recent();
        self.requests.retain_recent();
        let window = self.violation_window;
        self.violations.retain(|_, history| {
            history
                .back()
                .is_some_and(|t| now.saturating_duration_since(*t) <= window)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateLimit;

    fn limits() -> RateLimits {
        RateLimits {
            gossip_per_peer: RateLimit::new(1, 2),
            gossip_per_ip: RateLimit::new(1, 3),
            requests_per_peer: RateLimit::new(1, 1),
            requests_per_ip: RateLimit::new(1, 1),
            fetches_per_peer: RateLimit::new(1, 3),
            fetches_per_ip: RateLimit::new(1, 3),
            max_violations: 2,
            violation_window: Duration::from_secs(60),
            ban_duration: Duration::from_secs(1),
        }
    }

    fn peer(n: u8) -> PeerId {
        let kp = crate::identity::keypair_from_secret(&[n; 32]).unwrap();
        kp.public().to_peer_id()
    }

    #[test]
    fn throttles_then_bans_one_peer_only() {
        let mut limiter = Limiter::new(&limits()).unwrap();
        let (a, b, c) = (peer(1), peer(2), peer(3));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other_ip: IpAddr = "10.0.0.2".parse().unwrap();
        let now = Instant::now();
        assert_eq!(limiter.check_gossip(a, Some(ip), now).0, Decision::Allow);
        assert_eq!(limiter.check_gossip(a, Some(ip), now).0, Decision::Allow);
        assert_eq!(
            limiter.check_gossip(a, Some(ip), now),
            (Decision::Throttle, Some(Scope::Peer))
        );
        assert_eq!(limiter.check_gossip(a, Some(ip), now).0, Decision::Throttle);
        assert_eq!(limiter.check_gossip(a, Some(ip), now).0, Decision::Ban);
        assert!(limiter.ban(a, now));
        assert!(limiter.is_banned(&a));
        // b on another IP is unaffected; on a's IP it gets the one token a left over, after
        // which the shared IP bucket throttles c although c is within its own limit.
        assert_eq!(
            limiter.check_gossip(b, Some(other_ip), now).0,
            Decision::Allow
        );
        assert_eq!(limiter.check_gossip(b, Some(ip), now).0, Decision::Allow);
        assert_eq!(
            limiter.check_gossip(c, Some(ip), now),
            (Decision::Throttle, Some(Scope::Ip))
        );
        assert!(limiter.expire_bans(now).is_empty());
        assert_eq!(limiter.expire_bans(now + Duration::from_secs(2)), vec![a]);
        assert!(!limiter.is_banned(&a));
    }

    #[test]
    fn fetches_do_not_use_up_the_sync_allowance() {
        let mut limiter = Limiter::new(&limits()).unwrap();
        let a = peer(4);
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(
                limiter.check_request(a, Some(ip), true, now).0,
                Decision::Allow
            );
        }
        assert_eq!(
            limiter.check_request(a, Some(ip), true, now),
            (Decision::Throttle, Some(Scope::Peer))
        );
        // Sync has its own bucket, still full.
        assert_eq!(
            limiter.check_request(a, Some(ip), false, now).0,
            Decision::Allow
        );
        assert_eq!(
            limiter.check_request(a, Some(ip), false, now).0,
            Decision::Throttle
        );
    }
}
