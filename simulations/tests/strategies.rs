//! Every strategy on a small network: both ways of feeding the aggregator agree, the numbers
//! follow from the rule, and generated addresses are public.

use commons_aggregator::netgroup::is_unroutable;
use commons_sim::sybil::engine::{LoadMode, Outcome, run};
use commons_sim::sybil::scenario::Scenario;
use commons_sim::sybil::world::World;

const ALL: &str = r#"
[honest]
nodes = 400
ipv6_share = 0.3
ipv4_slash24s = 200
ipv6_slash48s = 60
shared_ip_share = 0.1
attesters = 6
attester_view = 0.9
uptime = { dist = "exponential", mean = 200 }
left_share = 0.1
joined_share = 0.05
choices = { support = 0.3, oppose = 0.1, override = 0.1, abstain = 0.05 }

[[attacker]]
strategy = "many-keys-one-ip"
keys = 30

[[attacker]]
strategy = "cloud-provider"
ips = 40

[[attacker]]
strategy = "rented-ips"
ips = 20
ipv6 = true

[[attacker]]
strategy = "patient"
ips = 10
days_held = 50

[[attacker]]
strategy = "churn"
slots = 10

[[attacker]]
strategy = "colluding-attesters"
keys = 15
fake_netgroups = 5
hijack_share = 0.1
"#;

fn without_timing(mut o: Outcome) -> Outcome {
    o.runtime_ms = 0;
    o.phases_ms.clear();
    o
}

#[test]
fn epoch_boundary_and_incremental_loading_give_the_same_numbers() {
    let scenario = Scenario::from_toml_str(ALL, "all").unwrap();
    for seed in [1, 2] {
        let a = without_timing(run(&scenario, seed, LoadMode::EpochBoundary).unwrap());
        let b = without_timing(run(&scenario, seed, LoadMode::Incremental).unwrap());
        assert_eq!(a, b, "seed {seed}");
    }
}

#[test]
fn each_strategy_gets_what_the_rule_allows() {
    let scenario = Scenario::from_toml_str(ALL, "all").unwrap();
    let o = run(&scenario, 3, LoadMode::EpochBoundary).unwrap();
    let by = |name: &str| o.attackers.iter().find(|a| a.name == name).unwrap();
    // One address: one counted key.
    assert_eq!(by("many-keys-one-ip").counted, 1);
    // Forty addresses in four /24s: all count, but weigh 4 * sqrt(10) together.
    let cloud = by("cloud-provider");
    assert_eq!(cloud.counted, 40);
    assert!((cloud.weight_units as f64 / 1e9 - 4.0 * 10f64.sqrt()).abs() < 1e-6);
    // Twenty /48s, one address each: weight 20.
    assert_eq!(by("rented-ips").weight_units, 20_000_000_000);
    // Fifty days is below mainnet's 90: nothing.
    assert_eq!(by("patient").qualified, 0);
    // The clique qualifies every key it makes, whatever nobody honest saw.
    let clique = by("colluding-attesters");
    assert_eq!(clique.counted, 15);
    // Churned keys still count after their address is gone.
    assert!(by("churn").counted > 10);
}

#[test]
fn generated_addresses_are_public() {
    let scenario = Scenario::from_toml_str(ALL, "all").unwrap();
    let resolved = scenario.resolve().unwrap();
    let world = World::build(&scenario, &resolved, 9);
    assert!(world.nodes.iter().all(|n| !is_unroutable(n.ip)));
    assert_eq!(world.honest, 400);
}
