//! Publishing this node's own messages, in the order they were made, with a retry for those
//! no peer took yet.

use std::collections::VecDeque;
use std::future::Future;

use commons_p2p::TopicKind;

use crate::node::{MAX_UNPUBLISHED, Node};

impl Node {
    /// Publishes a message if the node has a network; whether it went out. A message no
    /// peer took (none subscribed yet, as right after start) is kept and retried by
    /// [`Node::retry_unpublished`], and every later one but a presence waits behind it.
    pub async fn publish(&self, topic: TopicKind, bytes: Vec<u8>) -> bool {
        let Some(net) = &self.net else { return false };
        let mut outbox = self.unpublished.lock().await;
        outbox
            .send(topic, bytes, |topic, bytes| async move {
                match net.publish(topic, bytes).await {
                    Ok(_) | Err(commons_p2p::P2pError::Duplicate) => true,
                    Err(e) => {
                        tracing::debug!(topic = %topic, error = %e, "not published yet");
                        false
                    }
                }
            })
            .await
    }

    /// Publishes again the own messages that did not go out; returns how many went out now.
    pub async fn retry_unpublished(&self) -> usize {
        let Some(net) = &self.net else { return 0 };
        let mut outbox = self.unpublished.lock().await;
        outbox
            .flush(|topic, bytes| async move {
                matches!(
                    net.publish(topic, bytes).await,
                    Ok(_) | Err(commons_p2p::P2pError::Duplicate)
                )
            })
            .await
    }
}

/// Own messages that no peer took yet, oldest first.
///
/// Order matters because messages depend on each other: a signal that went out while the
/// proposal it is on still waited here would reach peers that do not know the proposal,
/// which ignore it (`unknown_proposal`) without passing it on, so it would reach them only at
/// their next catch-up, minutes later. So a message goes out only once everything made before
/// it went out.
#[derive(Default)]
pub(crate) struct Outbox {
    waiting: VecDeque<(TopicKind, Vec<u8>)>,
}

impl Outbox {
    /// Sends `bytes` through `publish` (which says whether a peer took it) after whatever
    /// waits; keeps it for later if it cannot go out now. Presences neither wait nor are
    /// kept: nothing depends on them, and each is worth only its own epoch, a newer one
    /// following anyway.
    pub(crate) async fn send<F, Fut>(
        &mut self,
        topic: TopicKind,
        bytes: Vec<u8>,
        mut publish: F,
    ) -> bool
    where
        F: FnMut(TopicKind, Vec<u8>) -> Fut,
        Fut: Future<Output = bool>,
    {
        if topic == TopicKind::Presences {
            return publish(topic, bytes).await;
        }
        self.flush(&mut publish).await;
        if self.waiting.is_empty() && publish(topic, bytes.clone()).await {
            return true;
        }
        if self.waiting.len() >= MAX_UNPUBLISHED {
            // Peers still get the oldest through catch-up sync.
            self.waiting.pop_front();
        }
        self.waiting.push_back((topic, bytes));
        false
    }

    /// Sends what waits, oldest first, up to the first message no peer takes; returns how
    /// many went out.
    pub(crate) async fn flush<F, Fut>(&mut self, mut publish: F) -> usize
    where
        F: FnMut(TopicKind, Vec<u8>) -> Fut,
        Fut: Future<Output = bool>,
    {
        let mut sent = 0;
        while let Some((topic, bytes)) = self.waiting.front() {
            if !publish(*topic, bytes.clone()).await {
                break;
            }
            self.waiting.pop_front();
            sent += 1;
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// A network that takes the next `takes` messages and then none, recording what it took.
    #[derive(Default)]
    struct Network {
        takes: usize,
        took: Vec<(TopicKind, &'static str)>,
    }

    fn publisher(
        net: &RefCell<Network>,
    ) -> impl FnMut(TopicKind, Vec<u8>) -> std::future::Ready<bool> + '_ {
        move |topic, bytes| {
            let mut net = net.borrow_mut();
            let taken = net.takes > 0;
            if taken {
                net.takes -= 1;
                let name = match bytes.as_slice() {
                    b"proposal" => "proposal",
                    b"signal 1" => "signal 1",
                    b"signal 2" => "signal 2",
                    _ => "presence",
                };
                net.took.push((topic, name));
            }
            std::future::ready(taken)
        }
    }

    fn run<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_message_made_after_one_that_waits_goes_out_after_it() {
        let net = RefCell::new(Network::default());
        let mut outbox = Outbox::default();
        run(async {
            let proposal = outbox.send(TopicKind::Proposals, b"proposal".to_vec(), publisher(&net));
            assert!(!proposal.await, "no peer yet");
            // A peer appears between the proposal and its signal: the signal must not overtake.
            net.borrow_mut().takes = usize::MAX;
            let signal = outbox.send(TopicKind::Signals, b"signal 1".to_vec(), publisher(&net));
            assert!(signal.await);
        });
        assert_eq!(
            net.borrow().took,
            [
                (TopicKind::Proposals, "proposal"),
                (TopicKind::Signals, "signal 1")
            ]
        );
        assert!(outbox.waiting.is_empty());
    }

    #[test]
    fn a_retry_stops_at_the_first_message_no_peer_takes_and_keeps_the_order() {
        let net = RefCell::new(Network::default());
        let mut outbox = Outbox::default();
        run(async {
            for (topic, bytes) in [
                (TopicKind::Proposals, b"proposal"),
                (TopicKind::Signals, b"signal 1"),
                (TopicKind::Signals, b"signal 2"),
            ] {
                assert!(!outbox.send(topic, bytes.to_vec(), publisher(&net)).await);
            }
            net.borrow_mut().takes = 1;
            assert_eq!(outbox.flush(publisher(&net)).await, 1);
            net.borrow_mut().takes = usize::MAX;
            assert_eq!(outbox.flush(publisher(&net)).await, 2);
        });
        assert_eq!(
            net.borrow().took,
            [
                (TopicKind::Proposals, "proposal"),
                (TopicKind::Signals, "signal 1"),
                (TopicKind::Signals, "signal 2")
            ]
        );
    }

    #[test]
    fn a_presence_neither_waits_nor_is_kept() {
        let net = RefCell::new(Network::default());
        let mut outbox = Outbox::default();
        run(async {
            assert!(
                !outbox
                    .send(TopicKind::Proposals, b"proposal".to_vec(), publisher(&net))
                    .await
            );
            assert!(
                !outbox
                    .send(TopicKind::Presences, b"presence".to_vec(), publisher(&net))
                    .await
            );
            assert_eq!(outbox.waiting.len(), 1, "only the proposal waits");
            // Taken by a peer while the proposal still waits: nothing depends on a presence.
            net.borrow_mut().takes = 1;
            assert!(
                outbox
                    .send(TopicKind::Presences, b"presence".to_vec(), publisher(&net))
                    .await
            );
        });
        assert_eq!(net.borrow().took, [(TopicKind::Presences, "presence")]);
        assert_eq!(outbox.waiting.len(), 1);
    }
}
