//! Resolving a scenario into its spec, policy and tier, and checking every value, so that a
//! bad value is refused with its key before anything runs.

use std::fmt;

use commons_aggregator::Policy;
use commons_signaling::NetworkSpec;

use super::{
    Attacker, DAY_SECS, FleetShape, HonestBlocks, PUBLIC_V4_SLASH16S, Qualifying, Resolved,
    Scenario, Uptime,
};
use crate::error::SimError;

/// A scenario value that is out of range, with the key it belongs to.
fn invalid(key: &str, reason: impl fmt::Display) -> SimError {
    SimError::Usage(format!("scenario key `{key}`: {reason}"))
}

fn check_share(key: &str, v: f64) -> Result<(), SimError> {
    if !(0.0..=1.0).contains(&v) {
        return Err(invalid(key, format!("{v} is not a share between 0 and 1")));
    }
    Ok(())
}

impl Scenario {
    /// The spec, policy and tier this scenario runs with; checks every value.
    pub fn resolve(&self) -> Result<Resolved, SimError> {
        let p = &self.policy;
        let mut spec = p.base.spec();
        // The base networks other than regtest list no maintainers yet; the simulator signs
        // its proposal with the well-known regtest keys, which only changes the network id.
        spec.maintainers = NetworkSpec::regtest().maintainers;
        if let Some(q) = p.quorum {
            spec.attestation_quorum = q;
        }
        if let Some(m) = p.min_uptime_epochs {
            spec.min_uptime_epochs = m;
        }
        if let Some(w) = p.window_epochs {
            spec.uptime_window_epochs = w;
        }
        if let Some(v4) = p.ipv4_prefix {
            spec.netgroup_ipv4_prefix = v4;
        }
        if let Some(v6) = p.ipv6_prefix {
            spec.netgroup_ipv6_prefix = v6;
        }
        if let Some(a) = p.allow_unroutable {
            spec.allow_unroutable = a;
        }
        if spec.attestation_quorum == 0 {
            return Err(invalid("policy.quorum", "must be at least 1"));
        }
        if spec.uptime_window_epochs == 0 {
            return Err(invalid("policy.window_epochs", "must be at least 1"));
        }
        if !(1..=32).contains(&spec.netgroup_ipv4_prefix) {
            return Err(invalid("policy.ipv4_prefix", "must be between 1 and 32"));
        }
        if !(1..=128).contains(&spec.netgroup_ipv6_prefix) {
            return Err(invalid("policy.ipv6_prefix", "must be between 1 and 128"));
        }
        let Some(tier) = spec.tiers.iter_mut().find(|t| t.tier == p.tier) else {
            return Err(invalid(
                "policy.tier",
                format!("tier {} does not exist", p.tier),
            ));
        };
        if tier.min_lock_secs == 0 {
            return Err(invalid(
                "policy.tier",
                format!("tier {} has no lock, so it can never be overridden", p.tier),
            ));
        }
        if let Some(w) = p.override_weight_share {
            check_share("policy.override_weight_share", w)?;
            tier.override_weight_share = w;
        }
        if let Some(n) = p.override_node_share {
            check_share("policy.override_node_share", n)?;
            tier.override_node_share = n;
        }
        let tier = tier.clone();
        let qualifying = self.qualifying(&spec)?;
        let mut policy = Policy::from_spec(&spec);
        policy.ip_dedup = p.ip_dedup;
        policy.sqrt_weighting = p.sqrt_weighting;
        let resolved = Resolved {
            epoch_days: spec.epoch_secs as f64 / DAY_SECS,
            spec,
            policy,
            tier,
            epoch: self.run.epoch,
            qualifying,
        };
        if resolved.epoch <= u64::from(resolved.policy.uptime_window_epochs) {
            return Err(invalid("run.epoch", "must be larger than the window"));
        }
        self.check(&resolved)?;
        Ok(resolved)
    }

    /// Step 2's rule and the sizes of the measurer and anchor sets, defaults filled in from
    /// the base spec (9 measurers and 9 anchors where it lists none).
    fn qualifying(&self, spec: &NetworkSpec) -> Result<Qualifying, SimError> {
        let p = &self.policy;
        let listed = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let or_nine = |n: usize| if n == 0 { 9 } else { listed(n) };
        let t = &spec.tickets;
        // Anchors are honest nodes: a tiny hand-built network has fewer than nine.
        let fits = u32::try_from(self.honest.nodes).unwrap_or(u32::MAX);
        let anchors = p.anchors.unwrap_or(or_nine(t.anchors.len()).min(fits));
        let honest_tickets = u32::try_from(self.honest.nodes.saturating_mul(2)).unwrap_or(u32::MAX);
        let q = Qualifying {
            rule: p.qualification.unwrap_or(spec.qualification),
            measurers: p.measurers.unwrap_or(or_nine(spec.measurers.len())),
            measurer_quorum: p.measurer_quorum.unwrap_or(spec.measurer_quorum),
            liveness_epochs: p.liveness_epochs.unwrap_or(spec.liveness_epochs),
            anchors,
            tickets_per_anchor: p.tickets_per_anchor.unwrap_or(match t.tickets_per_anchor {
                0 => honest_tickets,
                n => n,
            }),
            anchors_required: p.anchors_required.unwrap_or(match t.anchors_required {
                0 => anchors / 2 + 1,
                n => n,
            }),
        };
        if q.measurer_quorum == 0 || q.measurer_quorum > q.measurers.max(1) {
            return Err(invalid(
                "policy.measurer_quorum",
                format!("must be between 1 and the {} measurers", q.measurers),
            ));
        }
        if q.liveness_epochs == 0 {
            return Err(invalid("policy.liveness_epochs", "must be at least 1"));
        }
        if u64::from(q.anchors) > self.honest.nodes {
            return Err(invalid(
                "policy.anchors",
                "anchors are honest nodes: at most honest.nodes",
            ));
        }
        if q.anchors_required == 0 || q.anchors_required > q.anchors.max(1) {
            return Err(invalid(
                "policy.anchors_required",
                format!("must be between 1 and the {} anchors", q.anchors),
            ));
        }
        Ok(q)
    }

    fn check(&self, r: &Resolved) -> Result<(), SimError> {
        let h = &self.honest;
        if h.nodes == 0 {
            return Err(invalid("honest.nodes", "must be at least 1"));
        }
        for (key, v) in [
            ("honest.ipv6_share", h.ipv6_share),
            ("honest.shared_ip_share", h.shared_ip_share),
            ("honest.attester_view", h.attester_view),
            ("honest.left_share", h.left_share),
            ("honest.joined_share", h.joined_share),
            ("honest.choices.support", h.choices.support),
            ("honest.choices.oppose", h.choices.oppose),
            ("honest.choices.override", h.choices.override_),
            ("honest.choices.abstain", h.choices.abstain),
        ] {
            check_share(key, v)?;
        }
        if h.left_share + h.joined_share > 1.0 {
            return Err(invalid(
                "honest.left_share",
                "left_share + joined_share is above 1",
            ));
        }
        let c = h.choices;
        if c.support + c.oppose + c.override_ + c.abstain > 1.0 + 1e-9 {
            return Err(invalid(
                "honest.choices",
                "the shares add up to more than 1",
            ));
        }
        if h.nodes_per_shared_ip < 2 {
            return Err(invalid("honest.nodes_per_shared_ip", "must be at least 2"));
        }
        if !(h.zipf_exponent.is_finite() && h.zipf_exponent >= 0.0) {
            return Err(invalid("honest.zipf_exponent", "must be 0 or more"));
        }
        match h.uptime {
            Uptime::Uniform { min, max } if min > max => {
                return Err(invalid("honest.uptime", "min is above max"));
            }
            Uptime::Exponential { mean } if !(mean.is_finite() && mean > 0.0) => {
                return Err(invalid("honest.uptime", "mean must be above 0"));
            }
            Uptime::Share { qualified } => check_share("honest.uptime.qualified", qualified)?,
            _ => {}
        }
        let blocks = HonestBlocks::of(h);
        if blocks.v4_24 == 0 || blocks.v4_16 == 0 || blocks.v6_48 == 0 || blocks.v6_32 == 0 {
            return Err(invalid(
                "honest.ipv4_slash24s",
                "block counts must be at least 1",
            ));
        }
        if blocks.v4_24 > blocks.v4_16 * 256 {
            return Err(invalid(
                "honest.ipv4_slash24s",
                format!("{} /24s do not fit in {} /16s", blocks.v4_24, blocks.v4_16),
            ));
        }
        if blocks.v4_16 > PUBLIC_V4_SLASH16S {
            return Err(invalid(
                "honest.ipv4_slash16s",
                format!(
                    "at most {} public /16s exist in the simulator's address pool",
                    PUBLIC_V4_SLASH16S
                ),
            ));
        }
        if blocks.v6_48 > blocks.v6_32 * 65_536 {
            return Err(invalid("honest.ipv6_slash48s", "do not fit in the /32s"));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, a) in self.attackers.iter().enumerate() {
            let key = |field: &str| format!("attacker[{i}].{field}");
            if !names.insert(a.name()) {
                return Err(invalid(
                    &key("name"),
                    format!(
                        "two attackers are called `{}`; give them distinct names",
                        a.name()
                    ),
                ));
            }
            match a {
                Attacker::ManyKeysOneIp(f)
                | Attacker::CloudProvider(f)
                | Attacker::RentedIps(f)
                | Attacker::Patient(f) => {
                    let fleet = FleetShape::of(a, f, r, h.attester_view);
                    if fleet.ips == 0 || fleet.netgroups == 0 || fleet.slash16s == 0 {
                        return Err(invalid(&key("ips"), "ips and netgroups must be at least 1"));
                    }
                    if fleet.netgroups > fleet.ips {
                        return Err(invalid(&key("netgroups"), "more netgroups than ips"));
                    }
                    if !f.ipv6 && fleet.ips.div_ceil(fleet.netgroups) > 254 {
                        return Err(invalid(
                            &key("ips"),
                            format!(
                                "{} addresses do not fit in {} /24s (254 each)",
                                fleet.ips, fleet.netgroups
                            ),
                        ));
                    }
                    if f.days_held.is_some_and(|d| d.is_nan() || d < 0.0) {
                        return Err(invalid(&key("days_held"), "must be 0 or more"));
                    }
                }
                Attacker::Churn(c) => {
                    if c.slots == 0 {
                        return Err(invalid(&key("slots"), "must be at least 1"));
                    }
                    let hold = c.hold_days.unwrap_or(r.qualifying_days(h.attester_view));
                    if hold.is_nan() || r.epochs(hold) == 0 {
                        return Err(invalid(&key("hold_days"), "must be at least one epoch"));
                    }
                }
                Attacker::ColludingReal(c) => {
                    if c.ips == 0 {
                        return Err(invalid(&key("ips"), "must be at least 1"));
                    }
                    let groups = c.fake_netgroups.unwrap_or(c.keys);
                    if c.keys > 0 && (groups == 0 || groups > c.keys) {
                        return Err(invalid(
                            &key("fake_netgroups"),
                            "must be between 1 and keys",
                        ));
                    }
                    if c.keys > 0 && c.keys.div_ceil(groups) > 254 {
                        return Err(invalid(
                            &key("keys"),
                            "more than 254 keys per fake /24 would share addresses",
                        ));
                    }
                    if c.days_held.is_some_and(|d| d.is_nan() || d < 0.0) {
                        return Err(invalid(&key("days_held"), "must be 0 or more"));
                    }
                }
                Attacker::ColludingMeasurers(c) => {
                    check_share(&key("censor_share"), c.censor_share)?;
                    let k = c
                        .measurers
                        .unwrap_or(r.qualifying.measurer_quorum.saturating_sub(1));
                    if k > r.qualifying.measurers {
                        return Err(invalid(
                            &key("measurers"),
                            format!("the world has {} measurers", r.qualifying.measurers),
                        ));
                    }
                    let groups = c.fake_netgroups.unwrap_or(c.keys);
                    if c.keys > 0 && (groups == 0 || groups > c.keys) {
                        return Err(invalid(
                            &key("fake_netgroups"),
                            "must be between 1 and keys",
                        ));
                    }
                    if c.keys > 0 && c.keys.div_ceil(groups) > 254 {
                        return Err(invalid(
                            &key("keys"),
                            "more than 254 keys per fake /24 would share addresses",
                        ));
                    }
                }
                Attacker::MeasurerOutage(o) => {
                    if o.measurers > r.qualifying.measurers {
                        return Err(invalid(
                            &key("measurers"),
                            format!("the world has {} measurers", r.qualifying.measurers),
                        ));
                    }
                    let bad = |d: f64| d.is_nan() || d < 0.0;
                    if o.down_days.is_some_and(bad) {
                        return Err(invalid(&key("down_days"), "must be 0 or more"));
                    }
                    if bad(o.ends_days_before) {
                        return Err(invalid(&key("ends_days_before"), "must be 0 or more"));
                    }
                }
                Attacker::ColludingAttesters(c) => {
                    check_share(&key("hijack_share"), c.hijack_share)?;
                    let groups = c.fake_netgroups.unwrap_or(c.keys);
                    if c.keys > 0 && (groups == 0 || groups > c.keys) {
                        return Err(invalid(
                            &key("fake_netgroups"),
                            "must be between 1 and keys",
                        ));
                    }
                    if c.keys > 0 && c.keys.div_ceil(groups) > 254 {
                        return Err(invalid(
                            &key("keys"),
                            "more than 254 keys per fake /24 would share addresses",
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
