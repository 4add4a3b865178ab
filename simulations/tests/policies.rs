//! The three qualification rules (peer attestations, measurers, tickets) on the same worlds:
//! the same honest population and messages under each, and what each rule lets every
//! strategy buy. These fail if the measurer rule let a forged clique, made-up keys or fewer
//! than q_m colluding measurers through, or lost honest nodes to an outage it must tolerate.

use commons_sim::sybil::engine::{LoadMode, Outcome, run, run_on};
use commons_sim::sybil::scenario::Scenario;
use commons_sim::sybil::world::World;

const RULES: [&str; 3] = ["peer-attestations", "measurers", "tickets"];

/// A small honest network: every node up the whole window, so that every honest node
/// qualifies under every rule and differences are the attackers'.
const HONEST: &str = r#"
[honest]
nodes = 300
ipv6_share = 0.2
ipv4_slash24s = 150
ipv6_slash48s = 40
shared_ip_share = 0.1
attesters = 6
attester_view = 0.9
uptime = { dist = "full" }
choices = { support = 0.3, oppose = 0.1, override = 0.1 }
"#;

/// The honest network with `rule`, the extra `[policy]` lines and the attackers.
fn scenario(rule: &str, policy: &str, attackers: &str) -> Scenario {
    let text = format!("{HONEST}\n[policy]\nqualification = \"{rule}\"\n{policy}\n{attackers}",);
    Scenario::from_toml_str(&text, "policies").unwrap()
}

fn outcome(rule: &str, policy: &str, attackers: &str, seed: u64) -> Outcome {
    run(
        &scenario(rule, policy, attackers),
        seed,
        LoadMode::EpochBoundary,
    )
    .unwrap()
}

fn without_timing(mut o: Outcome) -> Outcome {
    o.runtime_ms = 0;
    o.phases_ms.clear();
    o
}

#[test]
fn the_three_rules_run_on_the_same_honest_world_and_messages() {
    let attackers = r#"
[[attacker]]
strategy = "colluding-attesters"
keys = 40
[[attacker]]
strategy = "colluding-real"
ips = 3
keys = 40
"#;
    let mut worlds = Vec::new();
    for rule in RULES {
        let s = scenario(rule, "", attackers);
        let r = s.resolve().unwrap();
        let world = World::build(&s, &r, 7);
        let mut messages = Vec::new();
        world.attestations(
            s.honest.attester_view,
            r.policy.uptime_window_epochs,
            |c, a| messages.push((c, a)),
        );
        let nodes: Vec<_> = world
            .nodes
            .iter()
            .map(|n| (n.key, n.ip, n.uptime, n.epoch, n.choice))
            .collect();
        let measurers: Vec<_> = world.measurers.iter().map(|m| m.key).collect();
        worlds.push((nodes, messages, measurers, world.anchors.clone()));
    }
    assert_eq!(worlds[0].2.len(), 9, "mainnet's intended measurer set");
    assert_eq!(worlds[0].3.len(), 9);
    // Every honest node is measured by all nine measurers, beside its six peers.
    assert!(worlds[0].1.len() >= 300 * (6 + 9));
    for other in &worlds[1..] {
        assert!(worlds[0] == *other, "a rule changed the world");
    }
    let outcomes: Vec<Outcome> = RULES
        .iter()
        .map(|rule| outcome(rule, "", attackers, 7))
        .collect();
    for o in &outcomes {
        assert_eq!(o.honest_nodes, 300);
        assert_eq!(o.honest_qualified, 300, "{o:?}");
    }
}

#[test]
fn a_forged_clique_weighs_nothing_under_measurers_and_tickets_at_any_quorum() {
    for q in [2, 3, 5] {
        let policy = format!("quorum = {q}");
        let clique = "[[attacker]]\nstrategy = \"colluding-attesters\"\nkeys = 200\n";
        let v1 = outcome("peer-attestations", &policy, clique, 1);
        assert_eq!(
            v1.attacker_counted, 200,
            "the clique is a real attack on rule v1"
        );
        for rule in ["measurers", "tickets"] {
            let o = outcome(rule, &policy, clique, 1);
            assert_eq!(
                (o.attacker_qualified, o.attacker_units),
                (0, 0),
                "{rule}, q = {q}"
            );
            // And it moves no honest node.
            let alone = outcome(rule, &policy, "", 1);
            assert_eq!(o.honest_counted, alone.honest_counted, "{rule}, q = {q}");
            assert_eq!(o.total_units, alone.total_units, "{rule}, q = {q}");
        }
    }
}

#[test]
fn fewer_than_qm_colluding_measurers_mint_nothing_and_qm_mint_everything() {
    for (k, minted) in [(0, 0), (1, 0), (4, 0), (5, 150), (9, 150)] {
        let attacker = format!(
            "[[attacker]]\nstrategy = \"colluding-measurers\"\nmeasurers = {k}\nkeys = 150\n"
        );
        let o = outcome("measurers", "", &attacker, 2);
        assert_eq!(o.attacker_counted, minted, "{k} colluding measurers");
        // The minted keys are the measurers' word alone: no other rule takes it.
        for rule in ["peer-attestations", "tickets"] {
            assert_eq!(
                outcome(rule, "", &attacker, 2).attacker_counted,
                0,
                "{rule}"
            );
        }
    }
}

#[test]
fn colluding_measurers_censor_only_from_a_minus_qm_plus_one() {
    let censor = |k: u32| {
        let attacker = format!(
            "[[attacker]]\nstrategy = \"colluding-measurers\"\nmeasurers = {k}\nkeys = 0\ncensor_share = 0.5\n"
        );
        outcome("measurers", "", &attacker, 3)
    };
    // A = 9, q_m = 5: four colluders leave five honest measurers, enough for everyone.
    assert_eq!(censor(4).honest_qualified, 300);
    // Five leave four: the censored half loses its standing.
    let five = censor(5);
    assert!(
        (100..200).contains(&five.honest_qualified),
        "about half censored: {}",
        five.honest_qualified
    );
}

#[test]
fn colluding_real_nodes_weigh_at_most_their_own_number_under_measurers() {
    for (r, k) in [(1, 100), (3, 300), (6, 50)] {
        let attacker = format!(
            "[[attacker]]\nstrategy = \"colluding-real\"\nips = {r}\nkeys = {k}\ncost_per_ip_day = 0.17\n"
        );
        let m = outcome("measurers", "", &attacker, 4);
        assert_eq!(m.attacker_keys, r + k);
        assert!(m.attacker_units <= r * 1_000_000_000, "R = {r}: {m:?}");
        assert_eq!(
            m.attacker_counted, r,
            "the real nodes count, the made-up keys do not"
        );
        // Rule v1 takes every made-up key: the ring places them, as it places a clique.
        let v1 = outcome("peer-attestations", "", &attacker, 4);
        assert_eq!(v1.attacker_counted, r + k, "R = {r}");
        // Tickets bound the made-up keys by the tickets that reach the real nodes.
        let t = outcome("tickets", "", &attacker, 4);
        assert!(t.attacker_counted < r + k, "R = {r}: {t:?}");
    }
}

#[test]
fn a_minus_qm_measurers_down_for_the_whole_window_lose_no_honest_node() {
    let healthy = outcome("measurers", "", "", 5);
    assert_eq!(healthy.honest_qualified, 300);
    let down = |n: u32, policy: &str| {
        let attacker = format!("[[attacker]]\nstrategy = \"measurer-outage\"\nmeasurers = {n}\n");
        outcome("measurers", policy, &attacker, 5)
    };
    let four = down(4, "");
    assert_eq!(
        (four.honest_counted, four.honest_units, four.total_units),
        (
            healthy.honest_counted,
            healthy.honest_units,
            healthy.total_units
        )
    );
    // One more and only four measurers are left to agree: nobody reaches the quorum.
    assert_eq!(down(5, "").honest_qualified, 0);
    // With a quorum of 3 of 9, six may be down.
    assert_eq!(down(6, "measurer_quorum = 3").honest_qualified, 300);
}

#[test]
fn a_short_outage_costs_only_the_epochs_it_lasted() {
    // Every measurer down for 40 of the 120 epochs, back 10 days before the tally: each saw
    // 80 epochs of every node, below m = 90, so nobody qualifies; down for 30, 90 are left
    // and everyone does.
    let outage = |days: u32| {
        let attacker = format!(
            "[[attacker]]\nstrategy = \"measurer-outage\"\nmeasurers = 9\ndown_days = {days}\nends_days_before = 10\n"
        );
        outcome("measurers", "", &attacker, 6)
    };
    assert_eq!(outage(40).honest_qualified, 0);
    assert_eq!(outage(30).honest_qualified, 300);
    // Still down at the tally: the last sighting is as old as the outage, and a node counts
    // only while it is less than L = 7 epochs old.
    let at_tally = |days: u32, policy: &str| {
        let attacker = format!(
            "[[attacker]]\nstrategy = \"measurer-outage\"\nmeasurers = 9\ndown_days = {days}\n"
        );
        outcome("measurers", policy, &attacker, 6).honest_qualified
    };
    assert_eq!(at_tally(6, ""), 300);
    assert_eq!(at_tally(7, ""), 0);
    assert_eq!(at_tally(7, "liveness_epochs = 8"), 300);
}

#[test]
fn epoch_boundary_and_incremental_loading_agree_under_every_rule() {
    let attackers = r#"
[[attacker]]
strategy = "rented-ips"
ips = 10
[[attacker]]
strategy = "churn"
slots = 5
[[attacker]]
strategy = "colluding-attesters"
keys = 20
hijack_share = 0.1
[[attacker]]
strategy = "colluding-real"
ips = 3
keys = 30
[[attacker]]
strategy = "colluding-measurers"
measurers = 5
keys = 10
censor_share = 0.2
[[attacker]]
strategy = "measurer-outage"
measurers = 2
down_days = 50
ends_days_before = 20
"#;
    for rule in RULES {
        let s = scenario(rule, "", attackers);
        let a = without_timing(run(&s, 8, LoadMode::EpochBoundary).unwrap());
        let b = without_timing(run(&s, 8, LoadMode::Incremental).unwrap());
        assert_eq!(a, b, "{rule}");
    }
}

#[test]
fn bad_qualification_parameters_are_refused_with_their_key() {
    let bad = |policy: &str, attackers: &str| {
        let text = format!("{HONEST}\n[policy]\n{policy}\n{attackers}");
        let err = Scenario::from_toml_str(&text, "bad")
            .and_then(|s| s.resolve().map(|_| ()))
            .unwrap_err();
        err.to_string()
    };
    assert!(bad("measurer_quorum = 10", "").contains("policy.measurer_quorum"));
    assert!(bad("anchors_required = 0", "").contains("policy.anchors_required"));
    assert!(bad("liveness_epochs = 0", "").contains("policy.liveness_epochs"));
    assert!(bad("qualification = \"trust-me\"", "").contains("qualification"));
    let outage = "[[attacker]]\nstrategy = \"measurer-outage\"\nmeasurers = 10\n";
    assert!(bad("", outage).contains("attacker[0].measurers"));
    let wrong = "[[attacker]]\nstrategy = \"measurer-outage\"\nkeys = 10\n";
    assert!(bad("", wrong).contains("has no field `keys`"));
}

/// Loading on two threads (the world drawing attestations while the aggregator takes them,
/// more than one batch of them) and recomputing the boundary on two gives the outcome of
/// one thread, under every rule.
#[test]
fn two_threads_give_the_outcome_of_one() {
    let text = HONEST.replace("nodes = 300", "nodes = 2000");
    let attackers = r#"
[[attacker]]
name = "proxies"
strategy = "rented-ips"
ips = 40
cost_per_ip_day = 0.10
"#;
    for rule in RULES {
        let scenario = Scenario::from_toml_str(
            &format!("{text}\n[policy]\nqualification = \"{rule}\"\n{attackers}"),
            "threads",
        )
        .unwrap();
        let one = run_on(&scenario, 7, LoadMode::EpochBoundary, 1).unwrap();
        let two = run_on(&scenario, 7, LoadMode::EpochBoundary, 2).unwrap();
        assert!(one.honest_counted > 1_000, "{rule}: {one:?}");
        assert_eq!(without_timing(one), without_timing(two), "{rule}");
    }
}
