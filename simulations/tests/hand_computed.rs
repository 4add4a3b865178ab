//! A scenario small enough to compute by hand, run through the real aggregator.
//!
//! Six honest nodes, two in each of three /24s (round-robin), each attested by the five
//! others for the whole window; an attacker with four keys behind one address in a /24 of
//! its own, up for exactly the 90 days that qualify. On mainnet's rule (q = 3, m = 90, /24):
//!
//! - every honest node qualifies and counts; each /24 holds 2 and weighs sqrt(2), so the
//!   honest weight is 3 sqrt(2) = 4.242640686 (units(2, 2) = 1_414_213_562 each);
//! - all four attacker keys qualify, IP dedup keeps one, alone in its /24: weight 1;
//! - the attacker's share is 1 / (1 + 3 sqrt(2)) = 0.190744, its node share 1/7;
//! - without the defences every qualified node weighs 1: honest 6, attacker 4.

use commons_sim::sybil::engine::{LoadMode, Outcome, run};
use commons_sim::sybil::scenario::Scenario;

const SCENARIO: &str = r#"
[honest]
nodes = 6
ipv4_slash24s = 3
distribution = "round-robin"
attesters = 5

[[attacker]]
name = "box"
strategy = "many-keys-one-ip"
keys = 4
cost_per_ip_day = 0.5
cost_per_key = 1.0
"#;

const S: u64 = 1_000_000_000;
const SQRT2_UNITS: u64 = 1_414_213_562;

fn outcome(extra: &str, mode: LoadMode) -> Outcome {
    let text = format!("{SCENARIO}\n{extra}");
    let scenario = Scenario::from_toml_str(&text, "hand").expect("the scenario parses");
    run(&scenario, 7, mode).expect("the run succeeds")
}

#[test]
fn weights_under_the_mainnet_rule_match_the_hand_computation() {
    for mode in [LoadMode::EpochBoundary, LoadMode::Incremental] {
        let o = outcome("", mode);
        assert_eq!((o.honest_qualified, o.honest_counted), (6, 6));
        assert_eq!((o.attacker_qualified, o.attacker_counted), (4, 1));
        assert_eq!(o.honest_units, 3 * SQRT2_UNITS);
        assert_eq!(o.attacker_units, S);
        assert_eq!(o.total_units, 3 * SQRT2_UNITS + S);
        assert_eq!(o.total_nodes, 7);
        let share = S as f64 / (3 * SQRT2_UNITS + S) as f64;
        assert_eq!(o.attacker_share(), share);
        assert!((share - 0.190_744).abs() < 1e-6);
        // The attacker's keys all signal override, nobody else does: the aggregator's own
        // override shares are the attacker's shares.
        assert_eq!(o.override_weight_share, share);
        assert_eq!(o.override_node_share, 1.0 / 7.0);
        assert!(!o.overridden, "tier 2 needs 30%");
        assert_eq!(o.honest_weight_nodefence(), 6.0);
        assert_eq!(o.attacker_weight_nodefence(), 4.0);
        // 6 - 3 * 1.414213562 (the units are rounded to 1e-9 per netgroup).
        assert!((o.honest_weight_lost() - 1.757_359_314).abs() < 1e-12);
        assert_eq!(o.attacker_share_nodefence(), 0.4);
        // One address for 90 days at 0.5 a day, four keys at 1.0.
        assert_eq!(o.attacker_cost, 49.0);
    }
}

#[test]
fn without_ip_dedup_all_four_keys_count_in_one_netgroup() {
    let o = outcome("[policy]\nip_dedup = false\n", LoadMode::EpochBoundary);
    assert_eq!(o.attacker_counted, 4);
    // Four counted nodes in one /24 weigh sqrt(4) = 2 together.
    assert_eq!(o.attacker_units, 2 * S);
    assert_eq!(o.honest_units, 3 * SQRT2_UNITS);
    assert_eq!(o.total_nodes, 10);
}

#[test]
fn without_square_root_weighting_every_counted_node_weighs_one() {
    let o = outcome(
        "[policy]\nsqrt_weighting = false\n",
        LoadMode::EpochBoundary,
    );
    assert_eq!(o.honest_units, 6 * S);
    assert_eq!(o.attacker_units, S);
    assert_eq!(o.attacker_share(), 1.0 / 7.0);
    assert_eq!(o.honest_weight_lost(), 0.0);
}

#[test]
fn the_aggregator_latches_the_override_when_thresholds_are_met() {
    // 0.1907 of the weight and 1/7 = 0.1429 of the nodes reach 0.19 and 0.14.
    let o = outcome(
        "[policy]\noverride_weight_share = 0.19\noverride_node_share = 0.14\n",
        LoadMode::EpochBoundary,
    );
    assert!(o.overridden);
    let o = outcome(
        "[policy]\noverride_weight_share = 0.20\noverride_node_share = 0.14\n",
        LoadMode::EpochBoundary,
    );
    assert!(!o.overridden);
}

#[test]
fn attackers_up_less_than_the_minimum_do_not_qualify() {
    let text = SCENARIO.replace("cost_per_key = 1.0", "cost_per_key = 1.0\ndays_held = 89");
    let scenario = Scenario::from_toml_str(&text, "hand").unwrap();
    let o = run(&scenario, 7, LoadMode::EpochBoundary).unwrap();
    assert_eq!(
        (o.attacker_qualified, o.attacker_counted, o.attacker_units),
        (0, 0, 0)
    );
    assert_eq!(o.total_units, 3 * SQRT2_UNITS);
}
