//! The payloads of the fetch protocols. They live in [`commons_signaling::fetch`], so that
//! they can be tested and fuzzed without the daemon's store; re-exported here, where the node
//! uses them, with the framing of `fetch/2` streams (from [`commons_p2p::framing`]).

pub use commons_signaling::fetch::*;

pub use commons_p2p::framing::{read_frame, write_frame};
