//! Step 5 of the Sybil rule: per-proposal tallies kept up to date incrementally, and the
//! time-lock state machine.

use std::collections::HashMap;
use std::fmt;

use commons_signaling::spec::{ActivationSpec, TierSpec};
use commons_signaling::{Choice, Hash32, PublicKey, Signal};
use serde::{Deserialize, Serialize};

use crate::netgroup::Netgroup;
use crate::population::{Move, Population};
use crate::weight::{netgroup_units, units_to_weight};

/// The counted signers of one choice.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChoiceTally {
    /// The choice.
    pub choice: Choice,
    /// How many counted nodes' latest signal is this choice.
    pub nodes: u64,
    /// Their summed weight in units of 1/[`WEIGHT_SCALE`](crate::WEIGHT_SCALE): exact, the
    /// same on every node.
    pub weight_units: u64,
    /// The same weight in node-weights.
    pub weight: f64,
}

/// Where a proposal stands, from the counted nodes at the current epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// The proposal.
    pub proposal: Hash32,
    /// Its tier.
    pub tier: u8,
    /// The epoch whose qualified population this tally counts.
    pub epoch: u64,
    /// Support, oppose, override and abstain, in that order. Abstain is a withdrawal: it is
    /// reported but takes part in no verdict.
    pub choices: [ChoiceTally; 4],
    /// The denominator: every counted node at this epoch, signalling or not.
    pub total_nodes: u64,
    /// Their total weight, in units.
    pub total_weight_units: u64,
    /// Their total weight, in node-weights.
    pub total_weight: f64,
    /// Override weight over total weight (0 when nobody counts).
    pub override_weight_share: f64,
    /// Override nodes over total nodes (0 when nobody counts).
    pub override_node_share: f64,
    /// The tier's weight share threshold.
    pub required_weight_share: f64,
    /// The tier's node share threshold.
    pub required_node_share: f64,
    /// Both shares reach their thresholds.
    pub override_met: bool,
    /// Signers with a stored signal, counted or not.
    pub signers: u64,
    /// Signers whose signal is stored but who do not count at this epoch (not qualified, or
    /// another node counts for their address); proven equivocators are not among them.
    pub uncounted_signers: u64,
    /// Signers proven to equivocate on this proposal (evidence held), whose signals count in
    /// no choice whether they qualify or not.
    pub excluded_signers: u64,
}

impl Tally {
    /// The tally of one choice.
    pub fn choice(&self, choice: Choice) -> &ChoiceTally {
        &self.choices[choice.index()]
    }
}

/// Whether override reaches both of the tier's thresholds.
pub(crate) fn override_met(
    override_units: u64,
    override_nodes: u64,
    total_units: u64,
    total_nodes: u64,
    tier: &TierSpec,
) -> bool {
    let (weight_share, node_share) =
        shares(override_units, override_nodes, total_units, total_nodes);
    total_nodes > 0
        && weight_share >= tier.override_weight_share
        && node_share >= tier.override_node_share
}

fn shares(units: u64, nodes: u64, total_units: u64, total_nodes: u64) -> (f64, f64) {
    let share = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    (share(units, total_units), share(nodes, total_nodes))
}

/// The counted signers of one proposal per netgroup and choice, and the sums per choice.
#[derive(Debug, Default, Clone)]
pub(crate) struct ProposalTally {
    by_netgroup: HashMap<Netgroup, [u64; 4]>,
    units: [u64; 4],
    nodes: [u64; 4],
}

impl ProposalTally {
    /// Builds the tally from scratch.
    pub(crate) fn rebuild<E>(
        signals: &HashMap<PublicKey, Signal>,
        excluded: &HashMap<PublicKey, E>,
        population: &Population,
        sqrt: bool,
    ) -> Self {
        let mut by_netgroup: HashMap<Netgroup, [u64; 4]> = HashMap::new();
        for (signer, signal) in signals {
            if excluded.contains_key(signer) {
                continue;
            }
            if let Some(g) = population.counted(signer) {
                by_netgroup.entry(g).or_default()[signal.body.choice.index()] += 1;
            }
        }
        let mut tally = ProposalTally {
            by_netgroup,
            ..Default::default()
        };
        for (g, ks) in &tally.by_netgroup {
            let n = population.netgroup_size(g);
            for (c, &k) in ks.iter().enumerate() {
                tally.units[c] += netgroup_units(k, n, sqrt);
                tally.nodes[c] += k;
            }
        }
        tally
    }

    /// Replaces netgroup `g`'s contribution: its size goes from `n0` to `n1` and the count
    /// of each choice changes by `delta`. Every other netgroup's contribution is untouched,
    /// which is what makes one change cost O(1) per proposal.
    fn reweigh(&mut self, g: Netgroup, n0: u64, n1: u64, delta: [i64; 4], sqrt: bool) {
        let ks = self.by_netgroup.entry(g).or_default();
        for c in 0..4 {
            let k0 = ks[c];
            if k0 == 0 && delta[c] == 0 {
                continue;
            }
            let k1 = k0
                .checked_add_signed(delta[c])
                .expect("a netgroup never counts fewer than 0 signers");
            self.units[c] =
                self.units[c] + netgroup_units(k1, n1, sqrt) - netgroup_units(k0, n0, sqrt);
            self.nodes[c] = self.nodes[c] + k1 - k0;
            ks[c] = k1;
        }
        if ks.iter().all(|&k| k == 0) {
            self.by_netgroup.remove(&g);
        }
    }

    /// Follows a change of the counted population. `choice` is the moving node's current
    /// choice on this proposal, if it signalled.
    pub(crate) fn apply_move(&mut self, mv: &Move, choice: Option<Choice>, sqrt: bool) {
        let (g, n0, n1, step) = match *mv {
            Move::Leave {
                netgroup, n_before, ..
            } => (netgroup, n_before, n_before - 1, -1),
            Move::Join {
                netgroup, n_before, ..
            } => (netgroup, n_before, n_before + 1, 1),
        };
        let mut delta = [0; 4];
        if let Some(c) = choice {
            delta[c.index()] = step;
        }
        self.reweigh(g, n0, n1, delta, sqrt);
    }

    /// A counted signer in netgroup `g` of size `n` changed its choice.
    pub(crate) fn change_choice(
        &mut self,
        g: Netgroup,
        n: u64,
        old: Option<Choice>,
        new: Choice,
        sqrt: bool,
    ) {
        let mut delta = [0; 4];
        if let Some(old) = old {
            delta[old.index()] -= 1;
        }
        delta[new.index()] += 1;
        self.reweigh(g, n, n, delta, sqrt);
    }

    /// A counted signer in netgroup `g` of size `n` whose choice was `old` stops counting
    /// (it was proven to equivocate); the netgroup's size is unchanged, as the node still
    /// counts in the population.
    pub(crate) fn remove_choice(&mut self, g: Netgroup, n: u64, old: Choice, sqrt: bool) {
        let mut delta = [0; 4];
        delta[old.index()] = -1;
        self.reweigh(g, n, n, delta, sqrt);
    }

    pub(crate) fn override_counts(&self) -> (u64, u64) {
        let i = Choice::Override.index();
        (self.units[i], self.nodes[i])
    }

    /// The public view.
    pub(crate) fn view(
        &self,
        proposal: Hash32,
        tier: &TierSpec,
        epoch: u64,
        (signers, excluded_signers, excluded_held): (u64, u64, u64),
        (total_nodes, total_units): (u64, u64),
    ) -> Tally {
        let choices = Choice::ALL.map(|choice| ChoiceTally {
            choice,
            nodes: self.nodes[choice.index()],
            weight_units: self.units[choice.index()],
            weight: units_to_weight(self.units[choice.index()]),
        });
        let (o_units, o_nodes) = self.override_counts();
        let (override_weight_share, override_node_share) =
            shares(o_units, o_nodes, total_units, total_nodes);
        Tally {
            proposal,
            tier: tier.tier,
            epoch,
            choices,
            total_nodes,
            total_weight_units: total_units,
            total_weight: units_to_weight(total_units),
            override_weight_share,
            override_node_share,
            required_weight_share: tier.override_weight_share,
            required_node_share: tier.override_node_share,
            override_met: override_met(o_units, o_nodes, total_units, total_nodes, tier),
            signers,
            uncounted_signers: signers - excluded_held - self.nodes.iter().sum::<u64>(),
            excluded_signers,
        }
    }
}

/// Where a proposal is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProposalState {
    /// Before its lock starts.
    Pending,
    /// In its time lock: users may override it.
    Locked,
    /// Users overrode it: the change must not ship. Terminal.
    Overridden,
    /// The lock ended without an override; activation has not started.
    Ready,
    /// Activation stage: on testnet.
    Testnet,
    /// Activation stage: on signet.
    Signet,
    /// Activation stage: on mainnet for those who opt in.
    MainnetOptIn,
    /// Activated: the mainnet default.
    MainnetDefault,
}

impl ProposalState {
    /// Every state, in life order.
    pub const ALL: [ProposalState; 8] = [
        ProposalState::Pending,
        ProposalState::Locked,
        ProposalState::Overridden,
        ProposalState::Ready,
        ProposalState::Testnet,
        ProposalState::Signet,
        ProposalState::MainnetOptIn,
        ProposalState::MainnetDefault,
    ];

    /// The lowercase name used in RPC, metrics and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            ProposalState::Pending => "pending",
            ProposalState::Locked => "locked",
            ProposalState::Overridden => "overridden",
            ProposalState::Ready => "ready",
            ProposalState::Testnet => "testnet",
            ProposalState::Signet => "signet",
            ProposalState::MainnetOptIn => "mainnet-opt-in",
            ProposalState::MainnetDefault => "mainnet-default",
        }
    }

    /// The activation stage `elapsed` seconds after a lock ended without an override.
    pub fn after_lock(activation: &ActivationSpec, elapsed: u64) -> ProposalState {
        let stages = [
            (activation.ready_secs, ProposalState::Ready),
            (activation.testnet_secs, ProposalState::Testnet),
            (activation.signet_secs, ProposalState::Signet),
            (activation.mainnet_opt_in_secs, ProposalState::MainnetOptIn),
        ];
        let mut end = 0u64;
        for (secs, state) in stages {
            end = end.saturating_add(secs);
            if elapsed < end {
                return state;
            }
        }
        ProposalState::MainnetDefault
    }
}

impl fmt::Display for ProposalState {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_stages_follow_the_spec_durations() {
        let a = ActivationSpec {
            ready_secs: 10,
            testnet_secs: 20,
            signet_secs: 30,
            mainnet_opt_in_secs: 40,
        };
        let at = |t| ProposalState::after_lock(&a, t);
        assert_eq!(at(0), ProposalState::Ready);
        assert_eq!(at(9), ProposalState::Ready);
        assert_eq!(at(10), ProposalState::Testnet);
        assert_eq!(at(29), ProposalState::Testnet);
        assert_eq!(at(30), ProposalState::Signet);
        assert_eq!(at(60), ProposalState::MainnetOptIn);
        assert_eq!(at(99), ProposalState::MainnetOptIn);
        assert_eq!(at(100), ProposalState::MainnetDefault);
        assert_eq!(at(u64::MAX), ProposalState::MainnetDefault);
        // Mainnet has no ready period: testnet starts when the lock ends.
        let mainnet = commons_signaling::NetworkSpec::mainnet().activation;
        assert_eq!(
            ProposalState::after_lock(&mainnet, 0),
            ProposalState::Testnet
        );
    }

    #[test]
    fn states_have_stable_names() {
        for s in ProposalState::ALL {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.name())
            );
            assert_eq!(s.to_string(), s.name());
        }
        assert_eq!(ProposalState::MainnetOptIn.name(), "mainnet-opt-in");
    }
}
