//! The payloads of the sync request-response protocol, in canonical CBOR. The networking
//! layer carries opaque bytes; these are their meaning (the node serves and sends them,
//! `node/src/sync.rs`):
//!
//! - `catchup`: "send me what you hold", one page at a time. The answer is a batch of
//!   messages, each as the exact bytes a gossip message would carry, so the receiver runs them
//!   through the same ingest pipeline (size bound, decode, duplicate check, verification), and
//!   a cursor for the next page. Proposals come first (signals refer to them), then the
//!   latest presence of each node (its attestations qualify it), signals, releases and
//!   equivocation evidence (last: it refers to a proposal, and it is applied with the
//!   signals it carries, so the order of the rest does not matter to it). Bare
//!   attestations are not served: one counts only inside its subject's own presence or
//!   signal, which proves the subject carries it.
//! - `deliver`: an attester hands the subject the attestations it just made about it, so that
//!   the subject can carry them in its presence and signals.
//!
//! Both directions decode strictly ([`crate::wire::decode`]): bounded, canonical, nothing
//! after the value.

use serde::{Deserialize, Serialize};

use crate::messages::MessageKind;
use crate::types::{BoundedBytes, BoundedString, BoundedVec};
use crate::wire::DecodeError;

/// The largest single message (a release bundle) as one blob.
pub const MAX_ITEM_BYTES: usize = 64 * 1024;
/// The most messages in one catch-up page.
pub const MAX_PAGE_ITEMS: usize = 4096;
/// The most attestations delivered at once.
pub const MAX_DELIVERED: usize = 64;
/// The byte budget of one page, well below the networking layer's response limit (4 MiB) so
/// that CBOR framing never pushes a page over it.
pub const PAGE_BYTES: usize = 1024 * 1024;
/// The largest request accepted (the networking layer's default request limit).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// The largest response accepted (the networking layer's default response limit).
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Opaque bytes of one message.
pub type Blob = BoundedBytes<MAX_ITEM_BYTES>;

/// Where a catch-up page ends: the table and the last key sent from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncCursor {
    /// Index into [`SYNC_TABLES`].
    pub table: u8,
    /// The last key sent (the next page starts after it).
    pub key: BoundedBytes<128>,
}

/// The kinds served by catch-up, in order.
pub const SYNC_TABLES: [MessageKind; 5] = [
    MessageKind::Proposal,
    MessageKind::Presence,
    MessageKind::Signal,
    MessageKind::Release,
    MessageKind::Evidence,
];

/// A sync request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncRequest {
    /// Send the next page of everything held, starting after `after` (from the start when
    /// absent).
    Catchup {
        /// Where the previous page ended.
        after: Option<SyncCursor>,
    },
    /// Attestations about the receiver, made by the sender.
    Deliver {
        /// Canonical attestation bytes.
        attestations: BoundedVec<Blob, MAX_DELIVERED>,
    },
}

/// One message in a catch-up page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncItem {
    /// Which kind of message `bytes` holds.
    pub kind: MessageKind,
    /// Its canonical bytes.
    pub bytes: Blob,
}

/// A sync response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncResponse {
    /// A page of catch-up.
    Batch {
        /// The messages.
        items: BoundedVec<SyncItem, MAX_PAGE_ITEMS>,
        /// Where to continue; absent on the last page.
        next: Option<SyncCursor>,
    },
    /// Delivered attestations were received; `accepted` of them were new and valid.
    Delivered {
        /// How many were taken.
        accepted: u32,
    },
    /// The request was not served.
    Refused {
        /// Why.
        reason: BoundedString<200>,
    },
}

impl SyncRequest {
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::wire::encode(self)
    }

    /// Strictly decodes a request.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        crate::wire::decode(bytes, MAX_REQUEST_BYTES)
    }
}

impl SyncResponse {
    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        crate::wire::encode(self)
    }

    /// Strictly decodes a response.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        crate::wire::decode(bytes, MAX_RESPONSE_BYTES)
    }

    /// A refusal with a reason (cut to fit).
    pub fn refused(reason: &str) -> Self {
        let mut reason = reason.to_string();
        while reason.len() > 200 {
            reason.pop();
        }
        SyncResponse::Refused {
            reason: BoundedString::new(reason).expect("cut to fit"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let request = SyncRequest::Catchup {
            after: Some(SyncCursor {
                table: 2,
                key: BoundedBytes::new(vec![1; 64]).unwrap(),
            }),
        };
        assert_eq!(SyncRequest::decode(&request.encode()).unwrap(), request);
        let response = SyncResponse::Batch {
            items: BoundedVec::new(vec![SyncItem {
                kind: MessageKind::Signal,
                bytes: BoundedBytes::new(vec![7; 300]).unwrap(),
            }])
            .unwrap(),
            next: None,
        };
        assert_eq!(SyncResponse::decode(&response.encode()).unwrap(), response);
        assert!(SyncResponse::decode(b"\xff").is_err());
    }
}
