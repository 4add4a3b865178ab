//! Sybil-resistant, deterministic tallies of commons-signal: uptime qualification, IP
//! dedup, netgroups, square-root weights, tallies and time locks, plus the validity rules of
//! proposals and release bundles.
//!
//! Sans-IO: no clock, network or storage. Time is passed in, so the same messages give the
//! same result on every node and in the simulator. [`Intake`] is the decision about each
//! received message that both the node and the simulator run around it. The rule itself is written up in
//! `docs/PROTOCOL.md`, "The tally rule"; [`Aggregator`] is where it runs.

mod aggregator;
pub mod intake;
pub mod netgroup;
pub mod policy;
mod population;
pub mod recount;
pub mod rules;
pub mod signatures;
pub mod tally;
mod tickets;
pub mod weight;

pub use aggregator::{
    Aggregator, EvidenceOutcome, Precheck, ProposalOutcome, ROTATION_REFERENCE_PREFIX, Rotation,
    RotationState, SignalOutcome, SignalRejection,
};
pub use intake::{
    Applied, Checked, Intake, Pending, Reason, Record, Refusal, ReleaseBook, Verdict, Verified,
};
pub use netgroup::Netgroup;
pub use policy::{MeasurerPolicy, Policy, Qualification, TicketPolicy};
pub use population::{AttestationOutcome, UptimeStatus};
pub use signatures::{PlainSignatures, SignatureCheck};
pub use tally::{ChoiceTally, ProposalState, Tally};
pub use weight::{WEIGHT_SCALE, netgroup_units, units_to_weight};
