//! The node's side of the sync request-response protocol: serving it
//! ([`Node::serve_sync`]) and the client that catches up with a peer (`catch_up`). The
//! payloads (wire types) are [`commons_signaling::sync`], re-exported here.

use std::sync::Arc;

use commons_p2p::{P2pHandle, PeerId, TopicKind, Verdict};
use commons_signaling::{BoundedBytes, BoundedVec, MessageKind, PublicKey, UptimeAttestation};
use tokio::sync::mpsc;

pub use commons_signaling::sync::*;

use crate::ingest::IngestingBatch;
use crate::node::{Node, Outcome};
use crate::store::{Store, StoreError};
use crate::topics::gossip_topic;

impl Node {
    /// Answers a sync request from `peer` (its key, when known). Returns the response and
    /// whether the peer misbehaved (a request that does not decode, or delivered garbage).
    pub async fn serve_sync(&self, peer: Option<PublicKey>, request: &[u8]) -> (Vec<u8>, bool) {
        let request = match SyncRequest::decode(request) {
            Ok(r) => r,
            Err(e) => {
                return (
                    SyncResponse::refused(&format!("bad request: {e}")).encode(),
                    true,
                );
            }
        };
        match request {
            SyncRequest::Catchup { after } => {
                let store = self.store.clone();
                let page = tokio::task::spawn_blocking(move || catchup_page(&store, after)).await;
                match page {
                    Ok(Ok(response)) => (response.encode(), false),
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "catch-up page failed");
                        (SyncResponse::refused("store error").encode(), false)
                    }
                    Err(_) => (SyncResponse::refused("internal error").encode(), false),
                }
            }
            SyncRequest::Deliver { attestations } => {
                let mut accepted = 0u32;
                let mut bad = false;
                for blob in attestations.iter() {
                    // Only the attester hands over its own attestations about us; anything
                    // else is not what this request is for.
                    let fits = UptimeAttestation::decode(blob.as_slice())
                        .is_ok_and(|a| a.body.subject == self.me && Some(a.body.attester) == peer);
                    if !fits {
                        bad = true;
                        continue;
                    }
                    let outcome = self.ingest(MessageKind::Attestation, blob.as_slice()).await;
                    match outcome.verdict {
                        Verdict::Accept => accepted += 1,
                        Verdict::Reject => bad = true,
                        Verdict::Ignore => {}
                    }
                }
                (SyncResponse::Delivered { accepted }.encode(), bad)
            }
        }
    }
}

/// Builds one catch-up page from the store.
fn catchup_page(store: &Store, after: Option<SyncCursor>) -> Result<SyncResponse, StoreError> {
    let (mut table, mut after_key) = match after {
        Some(c) => (
            usize::from(c.table),
            Some(c.key.as_slice().to_vec()).filter(|k| !k.is_empty()),
        ),
        None => (0, None),
    };
    let mut items = Vec::new();
    let mut used = 0usize;
    let cursor = |table: usize, key: Vec<u8>| SyncCursor {
        table: u8::try_from(table).unwrap_or(u8::MAX),
        key: BoundedBytes::new(key).unwrap_or_default(),
    };
    let next = loop {
        if table >= SYNC_TABLES.len() {
            break None;
        }
        if items.len() >= MAX_PAGE_ITEMS || used >= PAGE_BYTES {
            break Some(cursor(table, after_key.unwrap_or_default()));
        }
        let kind = SYNC_TABLES[table];
        let (records, more) = store.page(
            kind,
            after_key.as_deref(),
            MAX_PAGE_ITEMS - items.len(),
            PAGE_BYTES - used,
        )?;
        let last_key = records.last().map(|(k, _)| k.clone());
        for (_, value) in records {
            used += value.len();
            match BoundedBytes::new(value) {
                Ok(bytes) => items.push(SyncItem { kind, bytes }),
                Err(_) => tracing::warn!(kind = kind.name(), "stored record too large to serve"),
            }
        }
        if more {
            break Some(cursor(table, last_key.or(after_key).unwrap_or_default()));
        }
        table += 1;
        after_key = None;
    };
    Ok(SyncResponse::Batch {
        items: BoundedVec::truncating(items),
        next,
    })
}

/// Messages new to this node from one catch-up that it passes on over gossip: a node that
/// was away (or whose neighbours were) hands on what it missed, so that its other peers do
/// not have to wait for their own periodic catch-up. Bounded so that joining an old network
/// does not replay its history into gossip.
const MAX_RELAYED_PER_CATCHUP: usize = 256;
/// The most catch-up pages taken from one peer per connection.
const MAX_CATCHUP_PAGES: usize = 10_000;

/// Pulls everything a newly connected peer holds, page by page, through the ingest
/// pipeline. A peer whose pages do not decode, or carry invalid messages, is penalised.
pub(crate) async fn catch_up(node: Arc<Node>, net: P2pHandle, relay: Relay, peer: PeerId) {
    let mut taken = Taken::default();
    // The next page is asked for while this one is verified, and each page's first step
    // starts verifying before the previous page's last step is applied, so that the cores
    // verifying signatures wait neither for the network nor for the apply between pages.
    let mut request = Some(request_page(&net, peer, None));
    let mut held: Option<(Vec<SyncItem>, IngestingBatch)> = None;
    let mut complete = false;
    for _ in 0..MAX_CATCHUP_PAGES {
        let Some(asked) = request.take() else {
            break;
        };
        let bytes = match asked.await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "catch-up request failed");
                break;
            }
            Err(_) => break,
        };
        let (items, next) = match SyncResponse::decode(&bytes) {
            Ok(SyncResponse::Batch { items, next }) => (items, next),
            Ok(SyncResponse::Refused { reason }) => {
                tracing::debug!(%peer, %reason, "catch-up refused");
                break;
            }
            Ok(SyncResponse::Delivered { .. }) | Err(_) => {
                tracing::debug!(%peer, "catch-up answer is garbage; penalising");
                let _ = net.penalize(peer).await;
                break;
            }
        };
        drop(bytes);
        request = next.map(|cursor| request_page(&net, peer, Some(cursor)));
        let items = items.into_vec();
        let messages: Vec<(MessageKind, &[u8])> = items
            .iter()
            .map(|item| (item.kind, item.bytes.as_slice()))
            .collect();
        let (previous_items, previous_batch) = held.take().unzip();
        let (outcomes, batch) = node.ingest_batch_after(previous_batch, &messages).await;
        drop(messages);
        // The previous page's verdicts are in once this page's first step is verifying.
        if let (Some(outcomes), Some(previous_items)) = (outcomes, previous_items) {
            taken
                .settle(&net, &relay, peer, &previous_items, outcomes)
                .await;
        }
        held = Some((items, batch));
        if request.is_none() {
            complete = true;
        }
    }
    if let Some((items, batch)) = held.take() {
        let outcomes = node.finish_batch(batch).await;
        taken.settle(&net, &relay, peer, &items, outcomes).await;
    }
    if complete {
        node.caught_up();
    }
    if taken.received > 0 {
        tracing::info!(%peer, received = taken.received, new = taken.new, "caught up with peer");
    }
}

/// What one catch-up took from its peer so far.
#[derive(Default)]
struct Taken {
    received: usize,
    new: usize,
}

impl Taken {
    /// Counts a page's verdicts, relays the first new messages over gossip and penalises a
    /// peer whose page carried invalid messages.
    async fn settle(
        &mut self,
        net: &P2pHandle,
        relay: &Relay,
        peer: PeerId,
        items: &[SyncItem],
        outcomes: Vec<Outcome>,
    ) {
        let mut rejected = 0usize;
        for (item, outcome) in items.iter().zip(outcomes) {
            self.received += 1;
            match outcome.verdict {
                Verdict::Accept => {
                    if self.new < MAX_RELAYED_PER_CATCHUP
                        && let Some(topic) = gossip_topic(item.kind)
                    {
                        // A full queue means relaying is behind; catch-up still got the
                        // message, and peers still have their own catch-up.
                        let _ = relay.try_send((topic, item.bytes.as_slice().to_vec()));
                    }
                    self.new += 1;
                }
                Verdict::Reject => rejected += 1,
                Verdict::Ignore => {}
            }
        }
        if rejected > 0 {
            tracing::debug!(%peer, rejected, "catch-up carried invalid messages; penalising");
            let _ = net.penalize(peer).await;
        }
    }
}

/// Asks `peer` for the catch-up page after `after`, in a task of its own.
fn request_page(
    net: &P2pHandle,
    peer: PeerId,
    after: Option<SyncCursor>,
) -> tokio::task::JoinHandle<Result<Vec<u8>, commons_p2p::P2pError>> {
    let net = net.clone();
    let request = SyncRequest::Catchup { after }.encode();
    tokio::spawn(async move { net.request_sync(peer, request).await })
}

/// Messages learnt through catch-up, waiting to be passed on over gossip.
pub(crate) type Relay = mpsc::Sender<(TopicKind, Vec<u8>)>;
