//! `decode FILE`: any message, or a detached signature, as JSON.

use std::path::Path;

use anyhow::anyhow;
use commons_signaling::{AnyMessage, Hash32};
use serde::Serialize;

use super::{Context, decode_detached, max_message_bytes};
use crate::error::Result;
use crate::files;

/// What `decode` prints, in this field order.
#[derive(Serialize)]
struct Decoded<'a, M: Serialize> {
    /// The kind of message, or `detached-signature`.
    kind: &'a str,
    /// The network the id or digest is computed for.
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<&'a str>,
    /// That network's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    network_id: Option<Hash32>,
    /// The id maintainers sign (proposals, releases).
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<Hash32>,
    /// The digest the signer signed (signals, presences, attestations).
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<Hash32>,
    /// Whether that signature verifies on the network.
    #[serde(skip_serializing_if = "Option::is_none")]
    signature_valid: Option<bool>,
    /// The message itself.
    message: &'a M,
}

/// Prints the file as one pretty JSON document: its kind, the network its id is computed
/// for, the id (maintainer-signed messages) or signing digest and signature check (signed
/// messages), and the message itself.
pub fn decode(ctx: &Context, file: &Path) -> Result {
    let bytes = files::read_bounded(file, max_message_bytes(), "message")?;
    let message = match AnyMessage::decode(&bytes) {
        Ok(message) => message,
        Err(error) => {
            return match decode_detached(&bytes) {
                Some(signature) => print(
                    ctx,
                    &Decoded {
                        kind: "detached-signature",
                        network: None,
                        network_id: None,
                        id: None,
                        digest: None,
                        signature_valid: None,
                        message: &signature,
                    },
                ),
                None => Err(anyhow!("{}: {error}", file.display()).into()),
            };
        }
    };
    let net = ctx.network()?;
    let kind = message.kind().name();
    let doc = |id, digest, signature_valid| Decoded {
        kind,
        network: Some(&net.spec.name),
        network_id: Some(net.id),
        id,
        digest,
        signature_valid,
        message: &(),
    };
    // The document without the message, then the message in its place.
    match &message {
        AnyMessage::Proposal(m) => {
            print(ctx, &with_message(doc(Some(m.id(&net.id)), None, None), m))
        }
        AnyMessage::Release(m) => {
            print(ctx, &with_message(doc(Some(m.id(&net.id)), None, None), m))
        }
        AnyMessage::Signal(m) => print(
            ctx,
            &with_message(
                doc(None, Some(m.digest(&net.id)), Some(m.verify(&net.id))),
                m,
            ),
        ),
        AnyMessage::Presence(m) => print(
            ctx,
            &with_message(
                doc(None, Some(m.digest(&net.id)), Some(m.verify(&net.id))),
                m,
            ),
        ),
        AnyMessage::Attestation(m) => print(
            ctx,
            &with_message(
                doc(None, Some(m.digest(&net.id)), Some(m.verify(&net.id))),
                m,
            ),
        ),
        // Evidence: valid when both signals' signatures are the signer's on this network.
        AnyMessage::Evidence(m) => print(
            ctx,
            &with_message(doc(Some(m.id(&net.id)), None, Some(m.verify(&net.id))), m),
        ),
    }
}

/// Puts the message into a document built without one.
fn with_message<'a, M: Serialize>(shell: Decoded<'a, ()>, message: &'a M) -> Decoded<'a, M> {
    Decoded {
        kind: shell.kind,
        network: shell.network,
        network_id: shell.network_id,
        id: shell.id,
        digest: shell.digest,
        signature_valid: shell.signature_valid,
        message,
    }
}

fn print<M: Serialize>(ctx: &Context, doc: &Decoded<'_, M>) -> Result {
    let text = serde_json::to_string_pretty(doc).map_err(|e| anyhow!("formatting JSON: {e}"))?;
    ctx.say(text)
}
