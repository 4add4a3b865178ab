//! Fair scheduling of received gossip messages for ingest, the way mature gossip nodes do it
//! (Bitcoin Core processes one message per peer in turn; Lighthouse keeps bounded queues
//! per kind of work): one bounded queue per propagation source, served round-robin by a few
//! ingest workers. A peer with a backlog (a flooder) then delays another peer's message by
//! one turn, not by its whole backlog as one first-in first-out queue does.
//!
//! A peer that sent a message with an invalid signature becomes a suspect: its queued
//! messages are dropped unverified and, for [`QueueLimits::suspect_for`], it may queue only
//! [`QueueLimits::per_suspect`] messages at a time.
//!
//! Each key is served at one of two priorities: urgent (signals, proposals, evidence, releases:
//! what someone waits for) before bulk (presences, which every node publishes at about the
//! same moment of each epoch and which only need to arrive before the next boundary). A
//! burst of presences then no longer stands in front of a signal; bulk still gets
//! one turn in [`URGENT_RUN`] + 1 while both have work, so it never starves.
//!
//! [`FairQueue`] is the bookkeeping (no I/O, any key); [`GossipScheduler`] shares it between
//! the event loop and the workers.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;

/// Urgent turns taken in a row, while bulk messages wait, before a bulk one goes.
pub(crate) const URGENT_RUN: usize = 4;

/// Which of the two lines of turns a key waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Priority {
    /// Served first.
    Urgent,
    /// Served when no urgent message waits, and every [`URGENT_RUN`] + 1 turns.
    Bulk,
}

/// The bounds of a [`FairQueue`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueLimits {
    /// Messages one peer may have waiting.
    pub per_peer: usize,
    /// Messages a suspect peer may have waiting.
    pub per_suspect: usize,
    /// Messages waiting in all.
    pub total: usize,
    /// Bulk messages in the pipeline at once: the rest of the workers stay free for urgent
    /// ones, whose verification then shares the cores with only this many bulk ones.
    pub bulk_in_flight: usize,
    /// How long a peer stays a suspect after an invalid signature.
    pub suspect_for: Duration,
    /// Suspects remembered at once (beyond it, the one whose suspicion ends first is
    /// forgotten).
    pub max_suspects: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            // Four seconds of a peer's rate limit (50 a second), its burst (200) included.
            per_peer: 256,
            per_suspect: 4,
            // About 2 MiB of signals; 16 MiB at the largest message size (presences).
            total: 8192,
            bulk_in_flight: 2,
            suspect_for: Duration::from_secs(600),
            max_suspects: 4096,
        }
    }
}

/// What [`FairQueue::push`] did with a message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed<K, T> {
    /// Queued.
    Queued,
    /// Refused: its peer's queue (or the whole queue, with no longer queue to take room
    /// from) is full.
    Refused(T),
    /// Queued in place of the newest message of the peer with the longest queue, which is
    /// returned with that peer: a full queue sheds from the biggest backlog, not from the
    /// newcomer.
    Displaced(K, T),
}

/// Per-peer queues served in turn. Bounded per peer and in total.
#[derive(Debug)]
pub(crate) struct FairQueue<K, T> {
    queues: HashMap<K, VecDeque<(T, Instant)>>,
    /// Peers with something queued and no message in the pipeline, in the order of their
    /// next turn (each once), urgent and bulk.
    turns: [VecDeque<K>; 2],
    /// The priority of each key.
    priority_of: fn(&K) -> Priority,
    /// Urgent turns taken in a row while bulk ones waited.
    urgent_run: usize,
    /// Bulk keys with a message in the pipeline.
    bulk_busy: usize,
    /// Peers one of whose messages a worker is ingesting: a peer's messages are ingested one
    /// after the other, in the order they came, as one sender's messages may depend on each
    /// other (a signal on the proposal just before it, a signal on the one before).
    busy: std::collections::HashSet<K>,
    /// Until when each suspect is one.
    suspects: HashMap<K, Instant>,
    len: usize,
    limits: QueueLimits,
}

impl<K: Hash + Eq + Clone, T> FairQueue<K, T> {
    /// An empty queue whose keys wait at the priority `priority_of` gives them.
    pub(crate) fn new(limits: QueueLimits, priority_of: fn(&K) -> Priority) -> Self {
        FairQueue {
            queues: HashMap::new(),
            turns: [VecDeque::new(), VecDeque::new()],
            priority_of,
            urgent_run: 0,
            bulk_busy: 0,
            busy: std::collections::HashSet::new(),
            suspects: HashMap::new(),
            len: 0,
            limits,
        }
    }

    /// Messages waiting.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether `peer` is a suspect at `now`.
    pub(crate) fn is_suspect(&self, peer: &K, now: Instant) -> bool {
        self.suspects.get(peer).is_some_and(|until| *until > now)
    }

    /// Queues a message from `peer` received at `now`.
    pub(crate) fn push(&mut self, peer: K, item: T, now: Instant) -> Pushed<K, T> {
        let cap = if self.is_suspect(&peer, now) {
            self.limits.per_suspect
        } else {
            self.limits.per_peer
        };
        let held = self.queues.get(&peer).map_or(0, VecDeque::len);
        if held >= cap {
            return Pushed::Refused(item);
        }
        let mut displaced = None;
        if self.len >= self.limits.total {
            match self.take_from_longest(held) {
                Some(shed) => displaced = Some(shed),
                None => return Pushed::Refused(item),
            }
        }
        let first = self.queues.get(&peer).is_none_or(VecDeque::is_empty);
        if first && !self.busy.contains(&peer) {
            self.turns_of(&peer).push_back(peer.clone());
        }
        self.queues.entry(peer).or_default().push_back((item, now));
        self.len += 1;
        match displaced {
            Some((from, shed)) => Pushed::Displaced(from, shed),
            None => Pushed::Queued,
        }
    }

    /// Removes the newest message of the longest queue, if it is longer than `than`; with
    /// its peer.
    fn take_from_longest(&mut self, than: usize) -> Option<(K, T)> {
        let (peer, _) = self
            .queues
            .iter()
            .map(|(peer, queue)| (peer, queue.len()))
            .filter(|(_, len)| *len > than)
            .max_by_key(|(_, len)| *len)?;
        let peer = peer.clone();
        let queue = self.queues.get_mut(&peer)?;
        let (shed, _) = queue.pop_back()?;
        if queue.is_empty() {
            self.queues.remove(&peer);
            self.turns_of(&peer).retain(|p| *p != peer);
        }
        self.len -= 1;
        Some((peer, shed))
    }

    /// The line of turns of `peer`'s priority.
    fn turns_of(&mut self, peer: &K) -> &mut VecDeque<K> {
        match (self.priority_of)(peer) {
            Priority::Urgent => &mut self.turns[0],
            Priority::Bulk => &mut self.turns[1],
        }
    }

    /// The key whose turn it is: urgent first, but bulk after [`URGENT_RUN`] urgent turns in
    /// a row while it waited; bulk only while fewer than `bulk_in_flight` are in the
    /// pipeline.
    fn next_turn(&mut self) -> Option<K> {
        let bulk_may_go = self.bulk_busy < self.limits.bulk_in_flight;
        let [urgent, bulk] = &mut self.turns;
        if bulk.is_empty() || !bulk_may_go {
            self.urgent_run = 0;
            return urgent.pop_front();
        }
        if self.urgent_run < URGENT_RUN
            && let Some(peer) = urgent.pop_front()
        {
            self.urgent_run += 1;
            return Some(peer);
        }
        self.urgent_run = 0;
        self.bulk_busy += 1;
        bulk.pop_front()
    }

    /// Whether a message could be popped now.
    fn ready(&self) -> bool {
        !self.turns[0].is_empty()
            || (!self.turns[1].is_empty() && self.bulk_busy < self.limits.bulk_in_flight)
    }

    /// The next message in turn: the oldest of the peer whose turn it is. The peer is busy
    /// until [`FairQueue::done`], and then goes to the back of the line if it has more. With
    /// the message, its peer and when it was queued.
    pub(crate) fn pop(&mut self) -> Option<(K, T, Instant)> {
        let peer = self.next_turn()?;
        let queue = self.queues.get_mut(&peer)?;
        let (item, queued) = queue.pop_front()?;
        if queue.is_empty() {
            self.queues.remove(&peer);
        }
        self.busy.insert(peer.clone());
        self.len -= 1;
        Some((peer, item, queued))
    }

    /// The message [`FairQueue::pop`] gave of `peer` is ingested: its next one may go;
    /// whether a message may be popped now.
    pub(crate) fn done(&mut self, peer: &K) -> bool {
        if self.busy.remove(peer) && (self.priority_of)(peer) == Priority::Bulk {
            self.bulk_busy -= 1;
        }
        let more = self.queues.contains_key(peer);
        if more && !self.turns_of(peer).contains(peer) {
            self.turns_of(peer).push_back(peer.clone());
        }
        self.ready()
    }

    /// Makes `peer` a suspect from `now` on and returns its queued messages, dropped.
    pub(crate) fn punish(&mut self, peer: &K, now: Instant) -> Vec<T> {
        if self.suspects.len() >= self.limits.max_suspects && !self.suspects.contains_key(peer) {
            self.suspects.retain(|_, until| *until > now);
            if self.suspects.len() >= self.limits.max_suspects
                && let Some(first) = self
                    .suspects
                    .iter()
                    .min_by_key(|(_, until)| **until)
                    .map(|(p, _)| p.clone())
            {
                self.suspects.remove(&first);
            }
        }
        self.suspects
            .insert(peer.clone(), now + self.limits.suspect_for);
        let Some(queue) = self.queues.remove(peer) else {
            return Vec::new();
        };
        self.turns_of(peer).retain(|p| p != peer);
        self.len -= queue.len();
        queue.into_iter().map(|(item, _)| item).collect()
    }
}

/// A [`FairQueue`] shared between the event loop, which pushes without waiting, and the
/// ingest workers, which wait for the next message in turn; `queued` shows its length.
pub(crate) struct GossipScheduler<K, T> {
    queue: Mutex<FairQueue<K, T>>,
    ready: tokio::sync::Notify,
    queued: Gauge,
}

impl<K: Hash + Eq + Clone, T> GossipScheduler<K, T> {
    /// An empty scheduler with the priorities of `priority_of`, whose length `queued` shows.
    pub(crate) fn new(limits: QueueLimits, priority_of: fn(&K) -> Priority, queued: Gauge) -> Self {
        GossipScheduler {
            queue: Mutex::new(FairQueue::new(limits, priority_of)),
            ready: tokio::sync::Notify::new(),
            queued,
        }
    }

    /// Runs `f` on the queue, and shows its length after (under the lock, so the gauge
    /// never shows a stale length last).
    fn with<R>(&self, f: impl FnOnce(&mut FairQueue<K, T>) -> R) -> R {
        // The queue's invariants hold between its calls, none of which panics midway.
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = f(&mut queue);
        self.queued
            .set(i64::try_from(queue.len()).unwrap_or(i64::MAX));
        result
    }

    /// Queues a message (see [`FairQueue::push`]) and wakes a worker.
    pub(crate) fn push(&self, peer: K, item: T) -> Pushed<K, T> {
        let pushed = self.with(|queue| queue.push(peer, item, Instant::now()));
        if !matches!(pushed, Pushed::Refused(_)) {
            self.ready.notify_one();
        }
        pushed
    }

    /// The next message in turn, waiting for one; with its peer and how long it waited.
    pub(crate) async fn next(&self) -> (K, T, Duration) {
        loop {
            if let Some((peer, item, queued)) = self.with(FairQueue::pop) {
                return (peer, item, queued.elapsed());
            }
            self.ready.notified().await;
        }
    }

    /// See [`FairQueue::punish`].
    pub(crate) fn punish(&self, peer: &K) -> Vec<T> {
        self.with(|queue| queue.punish(peer, Instant::now()))
    }

    /// See [`FairQueue::done`]; wakes a worker for the peer's next message, or for the bulk
    /// message it made room for.
    pub(crate) fn done(&self, peer: &K) {
        if self.with(|queue| queue.done(peer)) {
            self.ready.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> QueueLimits {
        QueueLimits {
            per_peer: 100,
            per_suspect: 2,
            total: 150,
            bulk_in_flight: 2,
            suspect_for: Duration::from_secs(60),
            max_suspects: 2,
        }
    }

    /// Upper-case peers are bulk.
    fn priority(peer: &char) -> Priority {
        if peer.is_uppercase() {
            Priority::Bulk
        } else {
            Priority::Urgent
        }
    }

    /// Pops and finishes each message in turn.
    fn drain(queue: &mut FairQueue<char, u32>) -> Vec<(char, u32)> {
        std::iter::from_fn(|| {
            let (peer, item, _) = queue.pop()?;
            queue.done(&peer);
            Some((peer, item))
        })
        .collect()
    }

    #[test]
    fn a_peers_next_message_waits_until_its_previous_one_is_ingested() {
        let now = Instant::now();
        let mut queue = FairQueue::new(limits(), priority);
        for i in 0..3 {
            assert_eq!(queue.push('a', i, now), Pushed::Queued);
        }
        assert_eq!(queue.push('b', 10, now), Pushed::Queued);
        let (first, _, _) = queue.pop().unwrap();
        let (second, item, _) = queue.pop().unwrap();
        assert_eq!((first, second, item), ('a', 'b', 10));
        assert!(queue.pop().is_none(), "a's next waits for its first");
        // A message a peer sends while one of its own is ingested waits too.
        assert_eq!(queue.push('b', 11, now), Pushed::Queued);
        assert!(queue.pop().is_none());
        assert!(queue.done(&'a'));
        assert_eq!(queue.pop().map(|(p, i, _)| (p, i)), Some(('a', 1)));
        assert!(queue.done(&'b'));
        assert_eq!(queue.pop().map(|(p, i, _)| (p, i)), Some(('b', 11)));
        assert!(!queue.done(&'b'));
    }

    #[test]
    fn a_backlog_delays_another_peer_by_one_turn() {
        let now = Instant::now();
        let mut queue = FairQueue::new(limits(), priority);
        for i in 0..50 {
            assert_eq!(queue.push('f', i, now), Pushed::Queued);
        }
        assert_eq!(queue.push('h', 1000, now), Pushed::Queued);
        assert_eq!(queue.push('h', 1001, now), Pushed::Queued);
        let order = drain(&mut queue);
        assert_eq!(&order[..4], &[('f', 0), ('h', 1000), ('f', 1), ('h', 1001)]);
        // Each peer's own messages stay in their order.
        let flooder: Vec<u32> = order
            .iter()
            .filter(|(p, _)| *p == 'f')
            .map(|x| x.1)
            .collect();
        assert_eq!(flooder, (0..50).collect::<Vec<_>>());
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn urgent_messages_pass_a_bulk_backlog_which_still_gets_its_turns() {
        let now = Instant::now();
        let mut queue = FairQueue::new(limits(), priority);
        for i in 0..20 {
            assert_eq!(queue.push('P', i, now), Pushed::Queued);
            assert_eq!(queue.push('Q', 100 + i, now), Pushed::Queued);
        }
        let (peer, item, _) = queue.pop().unwrap();
        assert_eq!((peer, item), ('P', 0));
        // An urgent message arriving behind the bulk backlog goes next.
        assert_eq!(queue.push('s', 1000, now), Pushed::Queued);
        let (next, item, _) = queue.pop().unwrap();
        assert_eq!((next, item), ('s', 1000));
        queue.done(&'P');
        queue.done(&'s');
        // A stream of urgent messages: one bulk turn after every URGENT_RUN of them.
        for i in 0..12 {
            queue.push('s', 2000 + i, now);
            queue.push('t', 3000 + i, now);
        }
        let order = drain(&mut queue);
        let mut run = 0;
        for (peer, _) in &order {
            if peer.is_uppercase() {
                run = 0;
            } else {
                run += 1;
                assert!(run <= URGENT_RUN, "{order:?}");
            }
        }
        // The 24 urgent ones are done after at most one bulk turn per URGENT_RUN of them.
        let last_urgent = order.iter().rposition(|(p, _)| !p.is_uppercase()).unwrap();
        assert!(last_urgent < 24 + 24 / URGENT_RUN, "{order:?}");
        // Nothing lost, and each key's messages in their order.
        assert_eq!(order.len(), 39 + 24);
        for key in ['P', 'Q', 's', 't'] {
            let items: Vec<u32> = order
                .iter()
                .filter(|(p, _)| *p == key)
                .map(|x| x.1)
                .collect();
            assert!(items.windows(2).all(|w| w[0] < w[1]), "{key}: {items:?}");
        }
    }

    #[test]
    fn bulk_messages_in_the_pipeline_are_bounded_urgent_ones_are_not() {
        let now = Instant::now();
        let mut queue = FairQueue::new(limits(), priority);
        for peer in ['A', 'B', 'C', 'd', 'e', 'f'] {
            assert_eq!(queue.push(peer, 0, now), Pushed::Queued);
        }
        let mut taken: Vec<char> = std::iter::from_fn(|| queue.pop().map(|(p, _, _)| p)).collect();
        taken.sort();
        // Two bulk ones (limits().bulk_in_flight) and every urgent one.
        assert_eq!(taken, vec!['A', 'B', 'd', 'e', 'f']);
        assert!(!queue.done(&'d'), "C still waits for a bulk place");
        assert!(queue.done(&'A'));
        assert_eq!(queue.pop().map(|(p, _, _)| p), Some('C'));
    }

    #[test]
    fn each_peer_and_the_whole_queue_are_bounded() {
        let now = Instant::now();
        let mut queue = FairQueue::new(limits(), priority);
        for i in 0..100 {
            assert_eq!(queue.push('f', i, now), Pushed::Queued);
        }
        assert_eq!(queue.push('f', 100, now), Pushed::Refused(100));
        for i in 0..50 {
            assert_eq!(queue.push('g', i, now), Pushed::Queued);
        }
        // Full: a newcomer takes the room of the longest backlog's newest message.
        assert_eq!(queue.push('h', 7, now), Pushed::Displaced('f', 99));
        assert_eq!(queue.len(), 150);
        // A peer as long as the longest cannot displace anyone.
        for i in 50..99 {
            queue.push('g', i, now);
        }
        assert_eq!(queue.len(), 150);
        assert!(matches!(queue.push('g', 500, now), Pushed::Refused(500)));
        let order = drain(&mut queue);
        assert!(order.contains(&('h', 7)));
        assert_eq!(order.len(), 150);
    }

    #[test]
    fn a_punished_peer_loses_its_backlog_and_most_of_its_room() {
        let now = Instant::now();
        let mut queue = FairQueue::new(limits(), priority);
        for i in 0..10 {
            queue.push('f', i, now);
        }
        queue.push('h', 1000, now);
        assert_eq!(queue.punish(&'f', now), (0..10).collect::<Vec<_>>());
        assert_eq!(queue.len(), 1);
        assert!(queue.is_suspect(&'f', now));
        assert_eq!(queue.push('f', 20, now), Pushed::Queued);
        assert_eq!(queue.push('f', 21, now), Pushed::Queued);
        assert_eq!(queue.push('f', 22, now), Pushed::Refused(22));
        assert_eq!(drain(&mut queue), vec![('h', 1000), ('f', 20), ('f', 21)]);
        // Suspicion ends.
        let later = now + Duration::from_secs(61);
        assert!(!queue.is_suspect(&'f', later));
        for i in 0..5 {
            assert_eq!(queue.push('f', i, later), Pushed::Queued);
        }
        // Suspects are bounded: the one whose suspicion ends first goes.
        queue.punish(&'a', later);
        queue.punish(&'b', later + Duration::from_secs(1));
        assert!(!queue.is_suspect(&'f', now));
        assert!(queue.is_suspect(&'a', later) && queue.is_suspect(&'b', later));
        queue.punish(&'c', later + Duration::from_secs(2));
        assert!(!queue.is_suspect(&'a', later));
        assert!(queue.is_suspect(&'c', later));
    }
}
