//! The measurer rule's worked example in docs/PROTOCOL.md: this test reads the example's
//! tables from the document, builds every attestation they describe with real keys and
//! signatures, and checks every number the document shows, under both rules.

use std::collections::HashMap;

use commons_aggregator::{Aggregator, Policy, Qualification, netgroup_units};
use commons_signaling::spec::regtest_measurer_key;
use commons_signaling::{AttestationBody, NetworkSpec, PublicKey, SecretKey, Signed, WireIp};

const EPOCH: u64 = 1000;

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
        .skip(2)
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

/// "0.707106781" as weight units; "-" is none.
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

/// M0 to M2 are regtest's well-known measurers; every other name is a node.
fn key(name: &str) -> SecretKey {
    match name.strip_prefix('M') {
        Some(i) => regtest_measurer_key(i.parse().unwrap()),
        None => SecretKey::from_seed(&format!("worked example {name}")),
    }
}

/// One attestation a row lists: attester, seen, issued at.
type Claim = (String, u32, u64);

struct Row {
    node: String,
    address: String,
    claims: Vec<Claim>,
    uptime: u32,
    qualified: bool,
    counted: bool,
    weight_units: u64,
}

/// "M0 10 @1000, M1 12 @999" (measurers) or "G 30, H 30" (peers, issued at EPOCH).
fn claims(cell: &str) -> Vec<Claim> {
    if cell == "-" {
        return vec![];
    }
    cell.split(", ")
        .map(|c| {
            let parts: Vec<&str> = c.split(' ').collect();
            let epoch = parts
                .get(2)
                .map_or(EPOCH, |e| e.trim_start_matches('@').parse().unwrap());
            (parts[0].to_string(), parts[1].parse().unwrap(), epoch)
        })
        .collect()
}

fn rows(doc: &str) -> Vec<Row> {
    table(doc, "measured")
        .into_iter()
        .map(|c| Row {
            node: c[0].clone(),
            address: c[1].clone(),
            claims: [claims(&c[2]), claims(&c[3])].concat(),
            uptime: c[4].parse().unwrap(),
            qualified: yes(&c[5]),
            counted: yes(&c[6]),
            weight_units: units(&c[7]),
        })
        .collect()
}

/// Regtest under the measurer rule, with /24 and /48 netgroups as in the first example.
fn spec_and_policy() -> (NetworkSpec, Policy) {
    let spec = NetworkSpec::regtest();
    let policy = Policy {
        netgroup_ipv4_prefix: 24,
        netgroup_ipv6_prefix: 48,
        ..Policy::from_spec(&spec)
    };
    (spec, policy)
}

fn run(rows: &[Row], qualification: Qualification) -> Aggregator {
    let (spec, policy) = spec_and_policy();
    let net = spec.network_id();
    let mut agg = Aggregator::with_qualification(spec, policy, qualification, EPOCH);
    for row in rows {
        for (attester, seen, epoch) in &row.claims {
            let body = AttestationBody {
                version: 1,
                attester: key(attester).public_key(),
                subject: key(&row.node).public_key(),
                subject_ip: WireIp(row.address.parse().unwrap()),
                epoch: *epoch,
                seen_epochs: *seen,
            };
            let a = Signed::sign(body, &key(attester), &net);
            assert!(a.verify(&net));
            agg.add_carried_attestation(&key(&row.node).public_key(), a);
        }
    }
    agg
}

#[test]
fn the_measured_node_table_is_what_the_rule_computes() {
    let doc = doc();
    let rows = rows(&doc);
    assert_eq!(rows.len(), 10);
    let (spec, policy) = spec_and_policy();
    let agg = run(&rows, Qualification::from_spec(&spec));
    let pk = |node: &str| -> PublicKey { key(node).public_key() };
    let mut sizes: HashMap<String, u64> = HashMap::new();
    for row in &rows {
        // A node only peers attest is not held at all: their attestations weigh nothing.
        let (uptime, qualified, counted) =
            agg.uptime(&pk(&row.node)).map_or((0, false, false), |s| {
                (s.uptime_epochs, s.qualified, s.counted)
            });
        assert_eq!(uptime, row.uptime, "uptime of {}", row.node);
        assert_eq!(qualified, row.qualified, "qualified: {}", row.node);
        assert_eq!(counted, row.counted, "counted: {}", row.node);
        if counted {
            let g = policy.netgroup(row.address.parse().unwrap()).to_string();
            *sizes.entry(g).or_default() += 1;
        }
    }
    for row in &rows {
        let g = policy.netgroup(row.address.parse().unwrap()).to_string();
        let expected = if row.counted {
            netgroup_units(1, sizes[&g], true)
        } else {
            0
        };
        assert_eq!(row.weight_units, expected, "weight of {}", row.node);
    }
}

#[test]
fn the_rule_table_is_what_each_rule_computes() {
    let doc = doc();
    let rows = rows(&doc);
    let (spec, _) = spec_and_policy();
    let lines = table(&doc, "measured-rules");
    assert_eq!(lines.len(), 2);
    for line in lines {
        let qualification = match line[0].as_str() {
            "measurers" => Qualification::from_spec(&spec),
            "peer-attestations" => Qualification::PeerAttestations,
            other => panic!("unknown rule {other:?}"),
        };
        let agg = run(&rows, qualification);
        let (nodes, weight) = agg.population();
        assert_eq!(nodes, line[1].parse::<u64>().unwrap(), "{}", line[0]);
        assert_eq!(weight, units(&line[2]), "{}", line[0]);
        let clique: u64 = ["F", "G", "H"]
            .iter()
            .filter(|n| agg.uptime(&key(n).public_key()).is_some_and(|s| s.counted))
            .count() as u64;
        assert_eq!(clique, line[3].parse::<u64>().unwrap(), "{}", line[0]);
    }
}
