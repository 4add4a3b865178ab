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
pub mod local;
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
    /// The node cannot do this now, and says when it can: its store cannot write (a full
    /// disk), or it waits for a catch-up with peers before signing. Nothing was done; retry.
    pub const UNAVAILABLE: i64 = -32004;
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

/// The methods, one type each, and the one help table that `help` (the RPC method and
/// `commons-cli help`) prints: a method cannot be added without its help.
pub mod method {
    use super::*;

    macro_rules! methods {
        ($(
            $(#[$doc:meta])*
            $marker:ident = $name:literal ($params:ty) -> $response:ty {
                summary: $summary:literal,
                params: [$(($pname:literal, $pkind:literal, $prequired:literal, $pdesc:literal)),* $(,)?],
                result: $result:literal $(,)?
            };
        )*) => {
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

            /// The help of every method, in the order of [`NAMES`].
            pub const HELP: &[MethodHelp] = &[$(
                MethodHelp {
                    name: $name,
                    summary: $summary,
                    params: &[$(ParamHelp {
                        name: $pname,
                        kind: $pkind,
                        required: $prequired,
                        description: $pdesc,
                    }),*],
                    result: $result,
                }
            ),*];

            /// Reads `params` as the parameters of the method `name` and writes them back
            /// as JSON: the names the parameter type really takes, for checking the help
            /// table against the types. `None` for an unknown method.
            pub fn params_round_trip(
                name: &str,
                params: Value,
            ) -> Option<Result<Value, serde_json::Error>> {
                match name {
                    $($name => Some(
                        serde_json::from_value::<$params>(params)
                            .and_then(|typed| serde_json::to_value(&typed)),
                    ),)*
                    _ => None,
                }
            }
        };
    }

    methods! {
        /// `getinfo`: the node, its network, its peers and proposals in numbers, and its own
        /// uptime status.
        GetInfo = "getinfo" (NoParams) -> NodeInfo {
            summary: "The node: version, network, peer id, key, listen addresses, epoch, peers, proposals, the qualified population, its own uptime status, and the spec version in force with the rotations known.",
            params: [],
            result: "an object (see NodeInfo in rpc-types)",
        };
        /// `getpeers`: the connected peers.
        GetPeers = "getpeers" (NoParams) -> Vec<PeerInfo> {
            summary: "The connected peers: peer id, key, addresses, observed IP, direction, agent, gossip score, epochs seen and uptime status.",
            params: [],
            result: "an array of objects (see PeerInfo)",
        };
        /// `listproposals`: the proposals the node holds, by lock start, then id.
        ListProposals = "listproposals" (NoParams) -> Vec<ProposalSummary> {
            summary: "The proposals the node holds, by lock start: id, tier, title, reference, state, lock, signatures, override epoch.",
            params: [],
            result: "an array of objects (see ProposalSummary)",
        };
        /// `getdeploymentinfo`: every proposal's state, lock, time left and override shares
        /// against its tier's thresholds (like bitcoind's `getdeploymentinfo`).
        GetDeploymentInfo = "getdeploymentinfo" (NoParams) -> DeploymentInfo {
            summary: "Every proposal at a glance: tier, state, lock start and end, time left, the next state and when, and the override's weight and node shares against the tier's thresholds.",
            params: [],
            result: "an object (see DeploymentInfo)",
        };
        /// `gettally {id}`: a proposal's tally at the current epoch.
        GetTally = "gettally" (IdParams) -> Tally {
            summary: "A proposal's tally at the current epoch: weight and nodes per choice, the denominator, the override shares and the tier's thresholds.",
            params: [("id", "string", true, "the proposal id, 64 hex characters")],
            result: "an object (see Tally)",
        };
        /// `waitforsigners {id, signers, timeout?}`: a proposal's tally once it counts at
        /// least `signers` signers, or once `timeout` milliseconds have passed (as bitcoind's
        /// `waitforblockheight`).
        WaitForSigners = "waitforsigners" (WaitSignersParams) -> Tally {
            summary: "Waits until a proposal's tally counts at least `signers` signers, or until `timeout` milliseconds have passed, and returns the tally then (as `gettally`): for scripts and tests that would otherwise poll.",
            params: [
                ("id", "string", true, "the proposal id, 64 hex characters"),
                ("signers", "number", true, "the number of signers to wait for"),
                ("timeout", "number", false, "milliseconds to wait at most; 30000 when left out, at most 60000"),
            ],
            result: "an object (see Tally)",
        };
        /// `exportproposal {id, snapshot?, offset?}`: the recount file of a proposal, in
        /// pieces.
        ExportProposal = "exportproposal" (ExportParams) -> ExportChunk {
            summary: "Every message behind the node's tally of a proposal (the proposal, its signals, the equivocation evidence, the presences and attestations of the population) with the tally itself, as one recount file for `commons-cli recount`. The first call takes a snapshot and returns the file's first piece; later calls name the snapshot and the offset of the next piece. A snapshot is kept ten minutes after its last call, two at most.",
            params: [
                ("id", "string", true, "the proposal id, 64 hex characters"),
                ("snapshot", "string", false, "the snapshot of an earlier call; left out to take a new one"),
                ("offset", "number", false, "where the piece starts in the file, in bytes; 0 when left out"),
            ],
            result: "an object (see ExportChunk)",
        };
        /// `listequivocations {proposal?}`: the equivocation evidence held.
        ListEquivocations = "listequivocations" (ProposalFilterParams) -> Vec<EquivocationInfo> {
            summary: "The equivocations the node holds evidence of (a signer that signed two different signals with one sequence number on a proposal, and so counts no more on it), by proposal, then signer, with the evidence as hex.",
            params: [("proposal", "string", false, "only this proposal (64 hex characters); every proposal when left out")],
            result: "an array of objects (see EquivocationInfo)",
        };
        /// `getuptime {key?}`: a key's uptime status (this node's by default).
        GetUptime = "getuptime" (UptimeParams) -> UptimeReport {
            summary: "A node's attested uptime and what this node observed of it.",
            params: [("key", "string", false, "the node's x-only public key, 64 hex characters; this node's when left out")],
            result: "an object (see UptimeReport)",
        };
        /// `signal {proposal, choice}`: signs, stores and publishes this node's signal.
        CastSignal = "signal" (SignalParams) -> SignalReceipt {
            summary: "Signs this node's signal on a proposal with the node key, stores it and publishes it; a later signal replaces an earlier one.",
            params: [
                ("proposal", "string", true, "the proposal id, 64 hex characters"),
                ("choice", "string", true, "support, oppose, override or abstain"),
            ],
            result: "an object (see SignalReceipt)",
        };
        /// `submitproposal {hex}`: verifies, stores and publishes a signed proposal.
        SubmitProposal = "submitproposal" (SubmitProposalParams) -> ProposalReceipt {
            summary: "Checks a signed proposal against the network's rules, stores it and publishes it.",
            params: [("hex", "string", true, "the signed proposal's canonical CBOR, as hex")],
            result: "{id, new, published}",
        };
        /// `listreleases`: the release bundles the node holds, newest first per channel.
        ListReleases = "listreleases" (NoParams) -> Vec<Release> {
            summary: "The releases the node holds, newest first within each channel, with the state of each artifact.",
            params: [],
            result: "an array of objects (see Release)",
        };
        /// `getrelease {id}`: one release, with its bundle.
        GetRelease = "getrelease" (IdParams) -> Release {
            summary: "One release the node holds, with its bundle as hex.",
            params: [("id", "string", true, "the release id, 64 hex characters")],
            result: "an object (see Release)",
        };
        /// `publishrelease {bundle, artifacts}`: verifies a bundle and its artifacts in a
        /// directory on the node's machine, stores them and publishes the bundle.
        PublishRelease = "publishrelease" (PublishReleaseParams) -> PublishReceipt {
            summary: "Checks a signed release bundle and every artifact in a directory on the node's machine, stores them and publishes the bundle.",
            params: [
                ("bundle", "string", true, "the signed bundle's canonical CBOR, as hex"),
                ("artifacts", "string", true, "absolute path of a directory the node can read, holding every artifact under its manifest name"),
            ],
            result: "{id, channel, version, new, published, artifacts}",
        };
        /// `help {method?}`: the methods and their parameters.
        Help = "help" (HelpParams) -> String {
            summary: "Lists every method with its parameters, or describes one.",
            params: [("method", "string", false, "the method to describe; every method when left out")],
            result: "text",
        };
        /// `stop`: shuts the node down cleanly, as SIGTERM does.
        Stop = "stop" (NoParams) -> String {
            summary: "Shuts the node down cleanly, as SIGTERM does: it answers, stops serving, closes its connections, flushes the store and removes its cookie and RPC address file.",
            params: [],
            result: "text: \"commonsd stopping\"",
        };
    }

    /// The help of one method.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct MethodHelp {
        /// The method name.
        pub name: &'static str,
        /// What it does, in a sentence or two.
        pub summary: &'static str,
        /// Its parameters, in positional order.
        pub params: &'static [ParamHelp],
        /// What it answers.
        pub result: &'static str,
    }

    /// The help of one parameter.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ParamHelp {
        /// Its name (parameters go by name, or by position in this order).
        pub name: &'static str,
        /// Its JSON type: `string`, `number`, `boolean`, `object` or `array`.
        pub kind: &'static str,
        /// Whether it must be given.
        pub required: bool,
        /// What it is.
        pub description: &'static str,
    }

    /// The help of the method `name`.
    pub fn help(name: &str) -> Option<&'static MethodHelp> {
        HELP.iter().find(|h| h.name == name)
    }

    impl MethodHelp {
        /// One line: the name and its parameters, optional ones in brackets
        /// (`getuptime [key]`).
        pub fn usage(&self) -> String {
            let mut line = self.name.to_string();
            for p in self.params {
                if p.required {
                    line.push_str(&format!(" {}", p.name));
                } else {
                    line.push_str(&format!(" [{}]", p.name));
                }
            }
            line
        }

        /// The full description: usage, summary, parameters and result.
        pub fn text(&self) -> String {
            let mut text = format!("{}\n\n{}\n", self.usage(), self.summary);
            if self.params.is_empty() {
                text.push_str("\nParameters: none\n");
            } else {
                text.push_str("\nParameters (by name, or by position in this order):\n");
                for p in self.params {
                    text.push_str(&format!(
                        "  {} ({}, {}): {}\n",
                        p.name,
                        p.kind,
                        if p.required { "required" } else { "optional" },
                        p.description
                    ));
                }
            }
            text.push_str(&format!("\nResult: {}\n", self.result));
            text
        }
    }

    /// Every method's usage line, one a line, as `help` without a method prints them.
    pub fn overview() -> String {
        HELP.iter().map(|h| h.usage() + "\n").collect()
    }
}

/// The parameters of `help`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelpParams {
    /// The method to describe; left out for the list of every method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
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

/// The parameters of `waitforsigners`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitSignersParams {
    /// The proposal id: 64 hex characters.
    pub id: String,
    /// The number of signers to wait for.
    pub signers: u64,
    /// Milliseconds to wait at most; 30,000 when left out, at most 60,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

/// The parameters of `exportproposal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportParams {
    /// The proposal id: 64 hex characters.
    pub id: String,
    /// The snapshot an earlier call returned; left out to take a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Where the piece starts, in bytes of the file.
    #[serde(default)]
    pub offset: u64,
}

/// The parameters of `listequivocations`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposalFilterParams {
    /// The proposal id (64 hex characters) to list; left out for every proposal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<String>,
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
