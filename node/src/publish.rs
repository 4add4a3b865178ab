//! Publishing this node's own messages, with a retry for those no peer took yet.

use commons_p2p::TopicKind;

use crate::node::{MAX_UNPUBLISHED, Node};

impl Node {
    /// Publishes a message if the node has a network; whether it went out. A message no
    /// peer took (none subscribed yet, as right after start) is kept and retried by
    /// [`Node::retry_unpublished`].
    pub async fn publish(&self, topic: TopicKind, bytes: Vec<u8>) -> bool {
        let Some(net) = &self.net else { return false };
        match net.publish(topic, bytes.clone()).await {
            Ok(_) => true,
            Err(commons_p2p::P2pError::Duplicate) => true,
            Err(e) => {
                tracing::debug!(topic = %topic, error = %e, "not published yet");
                // Presences are only worth their own epoch; a newer one follows anyway.
                if topic != TopicKind::Presences {
                    let mut queue = self.unpublished.lock().expect("unpublished lock poisoned");
                    if queue.len() >= MAX_UNPUBLISHED {
                        queue.remove(0);
                    }
                    queue.push((topic, bytes));
                }
                false
            }
        }
    }

    /// Publishes again the own messages that did not go out; returns how many went out now.
    pub async fn retry_unpublished(&self) -> usize {
        let Some(net) = &self.net else { return 0 };
        let queue =
            std::mem::take(&mut *self.unpublished.lock().expect("unpublished lock poisoned"));
        let mut sent = 0;
        let mut keep = Vec::new();
        for (topic, bytes) in queue {
            match net.publish(topic, bytes.clone()).await {
                Ok(_) | Err(commons_p2p::P2pError::Duplicate) => sent += 1,
                Err(_) => keep.push((topic, bytes)),
            }
        }
        if !keep.is_empty() {
            let mut queue = self.unpublished.lock().expect("unpublished lock poisoned");
            keep.append(&mut queue);
            *queue = keep;
        }
        sent
    }
}
