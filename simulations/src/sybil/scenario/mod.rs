//! Scenario files: the TOML format and its defaults, the checks, and `--set` and `--sweep`
//! overrides, with error messages that name the line and the key.
//!
//! One file per job, each depending only on the ones above it:
//!
//! | file | job |
//! |---|---|
//! | `schema.rs` | the format: every table and strategy, with its defaults |
//! | `parse.rs` | reading a file, errors with line and key |
//! | `overrides.rs` | `--set` and `--sweep`, applied to the document before it is read |
//! | `resolved.rs` | what a scenario runs with: spec, policy, tier, epoch |
//! | `shape.rs` | the honest blocks and the fleets with defaults filled in, and the address pool: what the checks and the world both use |
//! | `checks.rs` | resolving a scenario and refusing every value out of range |
//!
//! The world (`sybil::world`) builds nodes from these types and never the other way round.

mod checks;
mod overrides;
mod parse;
mod resolved;
mod schema;
mod shape;

pub use overrides::{
    MAX_SWEEP_STEPS, Sweep, apply_value, build, parse_set, parse_sweep, parse_value, value_text,
};
pub use resolved::{DAY_SECS, Qualifying, Resolved};
pub use schema::{
    Attacker, AttackerFields, Base, Choices, Churn, Clique, ColludingMeasurers, ColludingReal,
    Fleet, HonestSection, MeasurerOutage, PolicySection, RunSection, Scenario, Spread,
    StrategyKind, Uptime,
};
pub use shape::{FleetShape, HonestBlocks, PUBLIC_V4_SLASH16S, public_first_octets};
