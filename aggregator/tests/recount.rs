//! The recount file and the recount: a node's snapshot, written and read back, recomputes to
//! the node's tally bit for bit, and a file changed anywhere names what changed. Real keys
//! and signatures on regtest (the measurer rule), messages fed to the node's intake as a node
//! receives them.

use commons_aggregator::recount::{self, FileError, MAGIC, RecountError, RecountFile, Snapshot};
use commons_aggregator::{Intake, Reason};
use commons_signaling::spec::regtest_measurer_key;
use commons_signaling::{
    Choice, Equivocation, Hash32, MessageKind, NetworkSpec, Presence, SecretKey, Signal,
    UptimeAttestation,
};
use commons_test_util::{attestation, presence, proposal, shuffle, signal};
use proptest::prelude::*;

const EPOCH: u64 = 1_000;

fn spec() -> NetworkSpec {
    NetworkSpec::regtest()
}

fn time() -> u64 {
    EPOCH * spec().epoch_secs + 1
}

fn node_key(i: usize) -> SecretKey {
    SecretKey::from_seed(&format!("commons-aggregator recount test node {i}"))
}

/// How a node of the test world gets its standing and what it says.
#[derive(Debug, Clone, Copy)]
struct Member {
    /// How many of the three measurers attest it (the quorum is two).
    measured_by: usize,
    /// Attested uptime (the minimum is three epochs).
    seen: u32,
    /// Its address is shared with the previous member (IP dedup).
    shares_ip: bool,
    /// Its attestations travel in its signal rather than in a presence.
    in_signal: bool,
    /// What it signals, if anything.
    choice: Option<Choice>,
    /// It signs two signals with one sequence number, and the node holds the evidence.
    equivocates: bool,
}

struct World {
    /// The node whose tally is recounted.
    intake: Intake,
    network: Hash32,
    id: Hash32,
    presences: Vec<Presence>,
}

fn ingest(intake: &mut Intake, kind: MessageKind, bytes: &[u8]) {
    let applied = intake.ingest(kind, bytes, time());
    assert!(
        matches!(
            applied.reason,
            Reason::New | Reason::Equivocation | Reason::Duplicate
        ),
        "{kind:?}: {:?}",
        applied.reason
    );
}

/// A node that received the members' messages in the order `seed` shuffles them into.
fn world(members: &[Member], seed: u64) -> World {
    let spec = spec();
    let network = spec.network_id();
    let me = SecretKey::from_seed("commons-aggregator recount test exporter");
    let mut intake = Intake::new(spec.clone(), EPOCH, Some(me.public_key()));
    let lock = spec.tier(1).unwrap().min_lock_secs;
    let p = proposal(
        &network,
        1,
        "recount",
        time() - 10,
        time() - 10 + lock,
        0..5,
    );
    let id = p.id(&network);
    ingest(&mut intake, MessageKind::Proposal, &p.encode());
    let mut messages: Vec<(MessageKind, Vec<u8>)> = Vec::new();
    let mut presences = Vec::new();
    let mut ip = 0;
    for (i, m) in members.iter().enumerate() {
        if !m.shares_ip || i == 0 {
            ip += 1;
        }
        let address = format!("10.9.{}.{}", ip / 200, 1 + ip % 200);
        let key = node_key(i);
        let attestations: Vec<UptimeAttestation> = (0..m.measured_by)
            .map(|k| {
                let measurer = regtest_measurer_key(k);
                attestation(
                    &network,
                    &measurer,
                    key.public_key(),
                    address.as_str(),
                    EPOCH,
                    m.seen,
                )
            })
            .collect();
        let carried = if m.in_signal && m.choice.is_some() {
            attestations.clone()
        } else {
            let p = presence(&network, &key, EPOCH, attestations);
            messages.push((MessageKind::Presence, p.encode()));
            presences.push(p);
            vec![]
        };
        if let Some(choice) = m.choice {
            let s = signal(&network, &key, id, choice, 1, time() - 5, carried.clone());
            messages.push((MessageKind::Signal, s.encode()));
            if m.equivocates {
                let other = Choice::ALL[(choice.index() + 1) % 4];
                let t = signal(&network, &key, id, other, 1, time() - 5, carried);
                let evidence = Equivocation::new(s, t).unwrap();
                messages.push((MessageKind::Evidence, evidence.encode()));
            }
        }
    }
    shuffle(&mut messages, seed);
    for (kind, bytes) in &messages {
        ingest(&mut intake, *kind, bytes);
    }
    World {
        intake,
        network,
        id,
        presences,
    }
}

fn member(choice: Option<Choice>) -> Member {
    Member {
        measured_by: 2,
        seen: 10,
        shares_ip: false,
        in_signal: false,
        choice,
        equivocates: false,
    }
}

/// Every case at once: counted signers of each choice, one carried in its signal, one not
/// qualified (too few measurers), one too young, a pair on one address, an equivocator, and
/// counted nodes that did not signal.
fn mixed() -> Vec<Member> {
    let mut all: Vec<Member> = Choice::ALL.iter().map(|c| member(Some(*c))).collect();
    all.push(Member {
        in_signal: true,
        ..member(Some(Choice::Override))
    });
    all.push(Member {
        measured_by: 1,
        ..member(Some(Choice::Override))
    });
    all.push(Member {
        seen: 2,
        ..member(Some(Choice::Support))
    });
    all.push(member(Some(Choice::Oppose)));
    all.push(Member {
        shares_ip: true,
        seen: 8,
        ..member(Some(Choice::Override))
    });
    all.push(Member {
        equivocates: true,
        ..member(Some(Choice::Support))
    });
    all.push(member(None));
    all.push(Member {
        measured_by: 3,
        ..member(None)
    });
    all
}

fn export(w: &World) -> RecountFile {
    let exporter = SecretKey::from_seed("commons-aggregator recount test exporter").public_key();
    let snapshot = Snapshot::take(w.intake.aggregator(), &w.id, time(), exporter).unwrap();
    let file = snapshot.into_file(w.presences.clone());
    RecountFile::decode(&file.encode()).expect("a file reads back")
}

fn findings_about<'a>(report: &'a recount::Report, about: &str) -> Vec<&'a recount::Finding> {
    report
        .findings
        .iter()
        .filter(|f| f.about == about)
        .collect()
}

#[test]
fn an_export_recounts_to_the_nodes_tally_bit_for_bit() {
    let w = world(&mixed(), 7);
    let file = export(&w);
    let report = recount::recount(&file, &spec(), 2).unwrap();
    assert!(report.matches(), "{:#?}", report.findings);
    let node_tally = w.intake.aggregator().tally(&w.id).unwrap();
    assert_eq!(report.tally, node_tally);
    assert_eq!(file.node.tally, node_tally);
    // The world really exercises the rule: some count, some do not, one is excluded.
    assert!(node_tally.total_nodes >= 8, "{node_tally:?}");
    assert!(node_tally.uncounted_signers >= 3, "{node_tally:?}");
    assert_eq!(node_tally.excluded_signers, 1);
    assert_eq!(file.evidence.len(), 1);
    // Each attestation is written once: the one carried in a signal is in no presence.
    assert_eq!(file.attestations.len(), 0);
    assert_eq!(file.presences.len(), w.presences.len());
    assert!(report.signatures_checked > file.signals.len() as u64);
}

#[test]
fn a_signal_whose_signature_fails_is_named() {
    let w = world(&mixed(), 3);
    let mut file = export(&w);
    let signer = node_key(0).public_key();
    let target = file
        .signals
        .iter()
        .position(|s| Signal::decode(&s.0).unwrap().body.signer == signer)
        .unwrap();
    let mut s = Signal::decode(&file.signals[target].0).unwrap();
    // Support becomes override, keeping the signature: what a forger would do.
    s.body.choice = Choice::Override;
    file.signals[target].0 = s.encode();
    let report = recount::recount(&file, &spec(), 1).unwrap();
    assert!(!report.matches());
    let bad = findings_about(&report, "signal");
    assert_eq!(bad.len(), 1, "{:#?}", report.findings);
    assert_eq!(bad[0].index, Some(target));
    assert!(bad[0].name.contains(&signer.to_string()), "{}", bad[0].name);
    assert!(bad[0].problem.contains("signature"), "{}", bad[0].problem);
    // Without the signal the node's support count is one above the recount's.
    assert!(
        findings_about(&report, "tally")
            .iter()
            .any(|f| f.name == "support.nodes"),
        "{:#?}",
        report.findings
    );
}

#[test]
fn a_counted_signer_without_its_attestations_is_named_with_its_signal() {
    let w = world(&mixed(), 5);
    let mut file = export(&w);
    let signer = node_key(1).public_key();
    file.presences
        .retain(|p| Presence::decode(&p.0).unwrap().body.node != signer);
    let report = recount::recount(&file, &spec(), 1).unwrap();
    let population = findings_about(&report, "population");
    assert_eq!(population.len(), 1, "{:#?}", report.findings);
    assert_eq!(population[0].name, signer.to_string());
    assert!(
        population[0].problem.contains("no live attestation")
            && population[0]
                .problem
                .contains("its signal (sequence 1, oppose)"),
        "{}",
        population[0].problem
    );
}

#[test]
fn a_changed_recorded_number_is_named() {
    let w = world(&mixed(), 11);
    let mut file = export(&w);
    file.node.tally.choices[2].nodes += 1;
    file.node.tally.total_weight = f64::from_bits(file.node.tally.total_weight.to_bits() + 1);
    let report = recount::recount(&file, &spec(), 1).unwrap();
    let names: Vec<&str> = report.findings.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["override.nodes", "total_weight"]);
}

#[test]
fn a_forged_measurer_attestation_is_refused_and_named() {
    let w = world(&mixed(), 13);
    let mut file = export(&w);
    let subject = node_key(2).public_key();
    let index = file
        .presences
        .iter()
        .position(|p| Presence::decode(&p.0).unwrap().body.node == subject)
        .unwrap();
    let mut p = Presence::decode(&file.presences[index].0).unwrap();
    let mut attestations = p.body.attestations.clone().into_vec();
    attestations[0].body.seen_epochs = 30;
    p.body.attestations = commons_signaling::BoundedVec::new(attestations).unwrap();
    // Re-signed by its subject: only the measurer's own signature is wrong now.
    let p = Presence::sign(p.body, &node_key(2), &w.network);
    file.presences[index].0 = p.encode();
    let report = recount::recount(&file, &spec(), 1).unwrap();
    let bad = findings_about(&report, "presence");
    assert_eq!(bad.len(), 1, "{:#?}", report.findings);
    assert!(bad[0].name.contains(&subject.to_string()));
    assert!(bad[0].problem.contains("signature"));
    assert!(!findings_about(&report, "population").is_empty());
}

#[test]
fn a_file_of_another_network_is_refused() {
    let w = world(&mixed()[..3], 1);
    let file = export(&w);
    let err = recount::recount(&file, &NetworkSpec::regtest_peer_attested(), 1).unwrap_err();
    assert!(matches!(err, RecountError::OtherNetwork { .. }), "{err}");
    assert!(err.to_string().contains("--network"));
}

#[test]
fn foreign_truncated_and_newer_files_say_so() {
    let w = world(&mixed()[..3], 1);
    let bytes = export(&w).encode();
    assert!(matches!(
        RecountFile::decode(b"PK\x03\x04 a zip file"),
        Err(FileError::Foreign { .. })
    ));
    assert!(matches!(
        RecountFile::decode(b""),
        Err(FileError::Foreign { .. })
    ));
    for cut in [
        MAGIC.len(),
        MAGIC.len() + 1,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        assert_eq!(
            RecountFile::decode(&bytes[..cut]),
            Err(FileError::Truncated),
            "cut at {cut}"
        );
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        RecountFile::decode(&trailing),
        Err(FileError::Malformed(_))
    ));
    let mut newer = export(&w);
    newer.version = 2;
    assert_eq!(
        RecountFile::decode(&newer.encode()),
        Err(FileError::NewerVersion { found: 2 })
    );
    let message = FileError::NewerVersion { found: 2 }.to_string();
    assert!(message.contains("upgrade"), "{message}");
}

fn arb_member() -> impl Strategy<Value = Member> {
    (
        0usize..=3,
        1u32..=12,
        prop::bool::weighted(0.2),
        any::<bool>(),
        prop::option::weighted(0.8, prop::sample::select(Choice::ALL.to_vec())),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(measured_by, seen, shares_ip, in_signal, choice, equivocates)| Member {
                measured_by,
                seen,
                shares_ip,
                in_signal,
                choice,
                equivocates,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Whatever the world and the order the node received it in, the file recounts to the
    /// aggregator's tally and population.
    #[test]
    fn export_then_recount_equals_the_aggregators_tally(
        members in prop::collection::vec(arb_member(), 1..24),
        seed in any::<u64>(),
    ) {
        let w = world(&members, seed);
        let file = export(&w);
        let report = recount::recount(&file, &spec(), 2).unwrap();
        prop_assert!(report.matches(), "{:#?}", report.findings);
        prop_assert_eq!(&report.tally, &w.intake.aggregator().tally(&w.id).unwrap());
        let counted: Vec<_> = report.counted.iter().map(|c| (c.key, c.ip.0)).collect();
        prop_assert_eq!(counted, w.intake.aggregator().counted_nodes());
    }
}
