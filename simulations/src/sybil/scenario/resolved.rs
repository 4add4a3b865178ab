//! A scenario turned into what the aggregator runs with: spec, policy, tier and epoch.

use commons_aggregator::Policy;
use commons_signaling::spec::TierSpec;
use commons_signaling::{NetworkSpec, QualificationRule};

/// Seconds in a day: costs are per day, epochs are the spec's.
pub const DAY_SECS: f64 = 86_400.0;

/// The network spec, aggregator policy and proposal tier one scenario runs with.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The spec the aggregator gets (base spec, policy fields and thresholds applied, the
    /// well-known regtest maintainers so that the simulator can sign its proposal).
    pub spec: NetworkSpec,
    /// The aggregator's policy.
    pub policy: Policy,
    /// The proposal's tier, with the thresholds in force.
    pub tier: TierSpec,
    /// The tally epoch.
    pub epoch: u64,
    /// Days per epoch, for costs.
    pub epoch_days: f64,
    /// Step 2's rule and the world's measurers and anchors.
    pub qualifying: Qualifying,
}

/// The qualification rule a scenario runs, with the sizes of the world's measurer set and
/// anchor set (their keys are made per run: measurers are keys of their own, anchors are
/// honest nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qualifying {
    /// The rule.
    pub rule: QualificationRule,
    /// A: measurers in the world.
    pub measurers: u32,
    /// q_m.
    pub measurer_quorum: u32,
    /// L, in epochs.
    pub liveness_epochs: u32,
    /// Ticket anchors (honest nodes).
    pub anchors: u32,
    /// Tickets per anchor.
    pub tickets_per_anchor: u32,
    /// K: anchors a node needs tickets from.
    pub anchors_required: u32,
}

impl Resolved {
    /// Epochs in `days` days (rounded down).
    pub fn epochs(&self, days: f64) -> u64 {
        (days / self.epoch_days).floor().max(0.0) as u64
    }

    /// The shortest time up that qualifies whatever share `[view, 1]` of it the honest
    /// attesters saw: `ceil(m / view)` epochs, in days. The default hold of every attacker
    /// that runs real nodes: the cheapest sure way to qualify.
    pub fn qualifying_days(&self, view: f64) -> f64 {
        let m = f64::from(self.policy.min_uptime_epochs);
        (m / view.max(1e-9)).ceil() * self.epoch_days
    }

    /// The window in days.
    pub fn window_days(&self) -> f64 {
        f64::from(self.policy.uptime_window_epochs) * self.epoch_days
    }
}
