//! The worked example of docs/PROTOCOL.md, "The tally rule": this test reads the example's
//! tables from the document, builds every message they describe with real keys and
//! signatures, and checks every number the document shows.

use std::collections::HashMap;

use commons_aggregator::{Aggregator, Policy, ProposalState, netgroup_units};
use commons_signaling::{Choice, Hash32, NetworkSpec, PublicKey, SecretKey};

const EPOCH: u64 = 1000;
const LOCK_START: u64 = 2000;
const LOCK_END: u64 = 2200;
const SIGNAL_TIME: u64 = 2010;

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");
    std::fs::read_to_string(path).expect("docs/PROTOCOL.md")
}

/// The body rows of the table between `<!-- example:NAME -->` and its closing marker.
fn table(doc: &str, name: &str) -> Vec<Vec<String>> {
    let start = doc
        .find(&format!("<!-- example:{name} -->"))
        .expect("table start marker");
    let end = doc
        .find(&format!("<!-- /example:{name} -->"))
        .expect("table end marker");
    doc[start..end]
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// "2.707106781" as weight units.
fn units(cell: &str) -> u64 {
    if cell == "-" {
        return 0;
    }
    let (whole, frac) = cell.split_once('.').expect("a weight with 9 decimals");
    assert_eq!(frac.len(), 9, "{cell}");
    format!("{whole}{frac}").parse().unwrap()
}

fn yes(cell: &str) -> bool {
    match cell {
        "yes" => true,
        "no" => false,
        other => panic!("expected yes or no, got {other:?}"),
    }
}

fn key(node: &str) -> SecretKey {
    SecretKey::from_seed(&format!("worked example {node}"))
}

fn choice(word: &str) -> Choice {
    word.parse().unwrap()
}

struct Row {
    node: String,
    address: String,
    attested_by: Vec<(String, u32)>,
    signals: Vec<Choice>,
    uptime: u32,
    qualified: bool,
    counted: bool,
    netgroup: String,
    weight_units: u64,
}

fn rows(doc: &str) -> Vec<Row> {
    table(doc, "nodes")
        .into_iter()
        .map(|c| Row {
            node: c[0].clone(),
            address: c[1].clone(),
            attested_by: c[2]
                .split(", ")
                .map(|a| {
                    let (who, seen) = a.split_once(' ').unwrap();
                    (who.to_string(), seen.parse().unwrap())
                })
                .collect(),
            signals: if c[3] == "-" {
                vec![]
            } else {
                c[3].split(", then ").map(choice).collect()
            },
            uptime: c[4].parse().unwrap(),
            qualified: yes(&c[5]),
            counted: yes(&c[6]),
            netgroup: c[7].clone(),
            weight_units: units(&c[8]),
        })
        .collect()
}

fn example_policy(spec: &NetworkSpec) -> Policy {
    Policy {
        attestation_quorum: 2,
        min_uptime_epochs: 3,
        uptime_window_epochs: 30,
        netgroup_ipv4_prefix: 24,
        netgroup_ipv6_prefix: 48,
        allow_unroutable: true,
        ..Policy::from_spec(spec)
    }
}

/// Builds the example's messages and feeds them to an aggregator under `policy`.
fn run(rows: &[Row], policy: Policy) -> (Aggregator, Hash32) {
    let spec = NetworkSpec::regtest_peer_attested();
    let net = spec.network_id();
    let mut agg = Aggregator::new(spec.clone(), policy, EPOCH);
    let proposal = commons_test_util::proposal(
        &net,
        2,
        "Worked example: a feature change",
        LOCK_START,
        LOCK_END,
        0..4,
    );
    let id = proposal.id(&net);
    agg.add_proposal(proposal).unwrap();
    for row in rows {
        for (attester, seen) in &row.attested_by {
            let a = commons_test_util::attestation(
                &net,
                &key(attester),
                key(&row.node).public_key(),
                row.address.as_str(),
                EPOCH,
                *seen,
            );
            assert!(a.verify(&net));
            agg.add_attestation(a);
        }
        for (i, &c) in row.signals.iter().enumerate() {
            let s = commons_test_util::signal(
                &net,
                &key(&row.node),
                id,
                c,
                i as u64 + 1,
                SIGNAL_TIME + i as u64,
                vec![],
            );
            assert!(s.verify(&net));
            agg.apply_signal(s, SIGNAL_TIME + i as u64).unwrap();
        }
    }
    (agg, id)
}

#[test]
fn the_node_table_is_what_the_rule_computes() {
    let doc = doc();
    let rows = rows(&doc);
    assert_eq!(rows.len(), 13);
    let spec = NetworkSpec::regtest_peer_attested();
    let (agg, _) = run(&rows, example_policy(&spec));
    let pk = |node: &str| -> PublicKey { key(node).public_key() };
    let mut netgroup_sizes: HashMap<String, u64> = HashMap::new();
    for row in &rows {
        let status = agg.uptime(&pk(&row.node)).expect("attested");
        assert_eq!(status.ip.unwrap().to_string(), row.address, "{}", row.node);
        assert_eq!(status.uptime_epochs, row.uptime, "uptime of {}", row.node);
        assert_eq!(status.qualified, row.qualified, "qualified: {}", row.node);
        assert_eq!(status.counted, row.counted, "counted: {}", row.node);
        assert_eq!(
            status.netgroup.unwrap().to_string(),
            row.netgroup,
            "{}",
            row.node
        );
        if status.counted {
            *netgroup_sizes.entry(row.netgroup.clone()).or_default() += 1;
        }
    }
    for row in &rows {
        let expected = if row.counted {
            netgroup_units(1, netgroup_sizes[&row.netgroup], true)
        } else {
            0
        };
        assert_eq!(row.weight_units, expected, "weight of {}", row.node);
    }
}

#[test]
fn the_tally_table_is_what_the_rule_computes() {
    let doc = doc();
    let rows = rows(&doc);
    let spec = NetworkSpec::regtest_peer_attested();
    let (agg, id) = run(&rows, example_policy(&spec));
    let tally = agg.tally(&id).unwrap();
    let lines = table(&doc, "tally");
    assert_eq!(lines.len(), 5);
    for line in &lines {
        let (nodes, weight): (u64, u64) = (line[1].parse().unwrap(), units(&line[2]));
        if line[0] == "all counted nodes" {
            assert_eq!(
                (tally.total_nodes, tally.total_weight_units),
                (nodes, weight)
            );
        } else {
            let c = tally.choice(choice(&line[0]));
            assert_eq!((c.nodes, c.weight_units), (nodes, weight), "{}", line[0]);
        }
    }
    assert_eq!(
        (tally.signers, tally.uncounted_signers),
        (12, 3),
        "F, K and L do not count"
    );
    assert!(doc.contains(&format!("4 / 10 = **{:.4}**", tally.override_node_share)));
    assert!(doc.contains(&format!(
        "2.000000000 / 7.414213562 =\n**{:.4}**",
        tally.override_weight_share
    )));
}

#[test]
fn the_policy_table_is_what_the_rule_computes() {
    let doc = doc();
    let rows = rows(&doc);
    let spec = NetworkSpec::regtest_peer_attested();
    let lines = table(&doc, "policies");
    assert_eq!(lines.len(), 3);
    for line in lines {
        let mut policy = example_policy(&spec);
        match line[0].as_str() {
            "as specified" => {}
            "without square-root weighting" => policy.sqrt_weighting = false,
            "without IP dedup" => policy.ip_dedup = false,
            other => panic!("unknown policy {other:?}"),
        }
        let (mut agg, id) = run(&rows, policy);
        let t = agg.tally(&id).unwrap();
        let o = t.choice(Choice::Override);
        let what = &line[0];
        assert_eq!(o.nodes, line[1].parse::<u64>().unwrap(), "{what}");
        assert_eq!(t.total_nodes, line[2].parse::<u64>().unwrap(), "{what}");
        assert_eq!(format!("{:.4}", t.override_node_share), line[3], "{what}");
        assert_eq!(o.weight_units, units(&line[4]), "{what}");
        assert_eq!(t.total_weight_units, units(&line[5]), "{what}");
        assert_eq!(format!("{:.4}", t.override_weight_share), line[6], "{what}");

        // The verdict, as a node sees it through the lock and after.
        agg.set_epoch(EPOCH + 1);
        let during = agg.state(&id, LOCK_START + 10).unwrap();
        assert_eq!(during.name(), line[7], "{what}");
        let after = agg.state(&id, LOCK_END).unwrap();
        let expected_after = if line[7] == "overridden" {
            ProposalState::Overridden
        } else {
            ProposalState::Ready
        };
        assert_eq!(after, expected_after, "{what}");
    }
}
