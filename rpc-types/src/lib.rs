//! The JSON-RPC 2.0 interface of `commonsd`: the name, parameters and answer of every method,
//! as one set of types that the node builds its answers from and that `commons-cli` and the
//! tests read them into. A field renamed here is renamed on both sides at once, and a field
//! one side still uses by its old name no longer compiles.
//!
//! The JSON these types make is the wire format documented in `docs/OPERATING.md`: field
//! names as written here, `null` for an absent optional value unless a field says it is left
//! out instead, keys, ids and hashes as lowercase hex strings, weights and shares as JSON
//! numbers. Clients ignore fields they do not know, so a node may add fields without breaking
//! older clients.
//!
//! Each method is a type implementing [`Method`] (in [`method`]), which ties the method's
//! name to its parameters and its answer.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod envelope;
mod types;

pub use types::*;

/// JSON-RPC error codes of `commonsd`.
pub mod code {
    /// Invalid JSON was received.
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist: the node is older than the client.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Malformed, missing or unknown parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// The node failed internally (storage, say).
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The object asked for does not exist (an unknown proposal, say).
    pub const NOT_FOUND: i64 = -32001;
    /// The request was understood but refused by the node's rules (an invalid proposal, a
    /// signal on a proposal that is not locked).
    pub const REJECTED: i64 = -32002;
    /// A call of a batch that was not run: the batch's earlier answers already reached
    /// [`crate::envelope::MAX_BATCH_RESPONSE_BYTES`].
    pub const RESPONSE_TOO_LARGE: i64 = -32003;
}

/// One JSON-RPC method: its name, what it takes and what it answers.
pub trait Method {
    /// The method name on the wire.
    const NAME: &'static str;
    /// The parameters, sent by name (a JSON object).
    type Params: Serialize + DeserializeOwned;
    /// The `result` of a successful call.
    type Response: Serialize + DeserializeOwned;
}

/// The parameters of `method` as the JSON object sent on the wire.
pub fn params_json<M: Method>(params: &M::Params) -> Value {
    serde_json::to_value(params).expect("RPC parameters serialize to JSON")
}

/// An answer of `method` as the JSON `result` sent on the wire.
pub fn response_json<M: Method>(response: &M::Response) -> Value {
    serde_json::to_value(response).expect("RPC answers serialize to JSON")
}

/// Reads the `result` of a call of `method`; an error means the node speaks another version
/// of the interface.
pub fn parse_response<M: Method>(result: Value) -> Result<M::Response, serde_json::Error> {
    serde_json::from_value(result)
}

/// The methods, one type each.
pub mod method {
    use super::*;

    macro_rules! methods {
        ($($(#[$doc:meta])* $marker:ident = $name:literal ($params:ty) -> $response:ty;)*) => {
            $(
                $(#[$doc])*
                #[derive(Debug, Clone, Copy, PartialEq, Eq)]
                pub struct $marker;

                impl Method for $marker {
                    const NAME: &'static str = $name;
                    type Params = $params;
                    type Response = $response;
                }
            )*

            /// The name of every method, in the order `docs/OPERATING.md` lists them.
            pub const NAMES: &[&str] = &[$($name),*];
        };
    }

    methods! {
        /// `getinfo`: the node, its network, its peers and proposals in numbers, and its own
        /// uptime status.
        GetInfo = "getinfo" (NoParams) -> NodeInfo;
        /// `getpeers`: the connected peers.
        GetPeers = "getpeers" (NoParams) -> Vec<PeerInfo>;
        /// `listproposals`: the proposals the node holds, by lock start, then id.
        ListProposals = "listproposals" (NoParams) -> Vec<ProposalSummary>;
        /// `gettally {id}`: a proposal's tally at the current epoch.
        GetTally = "gettally" (IdParams) -> Tally;
        /// `getuptime {key?}`: a key's uptime status (this node's by default).
        GetUptime = "getuptime" (UptimeParams) -> UptimeReport;
        /// `signal {proposal, choice}`: signs, stores and publishes this node's signal.
        CastSignal = "signal" (SignalParams) -> SignalReceipt;
        /// `submitproposal {hex}`: verifies, stores and publishes a signed proposal.
        SubmitProposal = "submitproposal" (SubmitProposalParams) -> ProposalReceipt;
        /// `listreleases`: the release bundles the node holds, newest first per channel.
        ListReleases = "listreleases" (NoParams) -> Vec<Release>;
        /// `getrelease {id}`: one release, with its bundle.
        GetRelease = "getrelease" (IdParams) -> Release;
        /// `publishrelease {bundle, artifacts}`: verifies a bundle and its artifacts in a
        /// directory on the node's machine, stores them and publishes the bundle.
        PublishRelease = "publishrelease" (PublishReleaseParams) -> PublishReceipt;
    }
}

/// The parameters of a method that takes none: sent as `{}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoParams {}

/// The parameters of a method that names one object by its id (`gettally`, `getrelease`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdParams {
    /// The proposal or release id: 64 hex characters.
    pub id: String,
}

impl IdParams {
    /// The parameters naming `id`.
    pub fn new(id: impl Into<String>) -> Self {
        IdParams { id: id.into() }
    }
}

/// The parameters of `getuptime`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UptimeParams {
    /// The x-only public key (64 hex characters) asked about; left out for the node's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The parameters of `signal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalParams {
    /// The proposal id (64 hex characters).
    pub proposal: String,
    /// `support`, `oppose`, `override` or `abstain`.
    pub choice: String,
}

/// The parameters of `submitproposal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitProposalParams {
    /// The signed proposal's canonical CBOR, as hex.
    pub hex: String,
}

/// The parameters of `publishrelease`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishReleaseParams {
    /// The signed bundle's canonical CBOR, as hex.
    pub bundle: String,
    /// The absolute path, on the node's machine, of a directory holding every artifact
    /// under its manifest name.
    pub artifacts: String,
}
