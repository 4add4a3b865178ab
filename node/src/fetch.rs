//! The payloads of the fetch request-response protocol. They live in
//! [`commons_signaling::fetch`], so that they can be tested and fuzzed without the daemon's
//! store; re-exported here, where the node uses them.

pub use commons_signaling::fetch::*;
