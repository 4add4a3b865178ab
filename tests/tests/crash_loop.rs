//! Crash safety by the hundred: `kill -9` a `commonsd` at random moments during heavy ingest
//! (four RPC clients submitting proposals and casting signals as fast as the node answers),
//! restart it, and check that it holds everything it acknowledged: every acknowledged
//! proposal, and per proposal a tally equal to the one `commons_aggregator` recomputes from the
//! acknowledged messages (the node's own signals rebuilt from the receipts and signed with its
//! key). A call in flight at the kill may or may not have been applied; both are accepted, and
//! the next signal's sequence number proves which.
//!
//! The suite runs 3 iterations; `scripts/crash-loop.sh [N]` runs N (100 by default) and prints
//! the figure. `COMMONS_CRASH_LOOP_ITERATIONS` and `COMMONS_CRASH_LOOP_SEED` choose them here.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use commons_aggregator::{Aggregator, Policy};
use commons_e2e::{NodeSpec, TestNode, now, phases, regtest_proposal};
use commons_rpc::{NoParams, SignalParams, SubmitProposalParams, method};
use commons_signaling::{Choice, Hash32, NetworkSpec, SecretKey};

const CLIENTS: usize = 4;
const CHOICES: [&str; 4] = ["support", "oppose", "override", "abstain"];

/// A small deterministic generator (xorshift), so a failing run can be repeated by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The node's own latest acknowledged signal on a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Acked {
    sequence: u64,
    choice: &'static str,
    time: u64,
}

/// What one client knows of its proposals: the acknowledged signal on each (None before the
/// first) and the call in flight when the node died.
#[derive(Debug, Default)]
struct Ledger {
    proposals: BTreeMap<String, Option<Acked>>,
    /// Proposal bytes by id, for the recomputation.
    bytes: BTreeMap<String, Vec<u8>>,
    in_flight: Option<InFlight>,
    /// Proposals whose signal in flight at a kill may have been stored without changing the
    /// tally: their next sequence number may be two above the acknowledged one, once.
    unsettled: HashSet<String>,
}

#[derive(Debug, Clone)]
enum InFlight {
    Proposal(String, Vec<u8>),
    Signal(String, &'static str),
}

/// One client's load until the node stops answering: mostly signals on its own proposals,
/// now and then a new proposal. Each proposal belongs to one client, so at most one call per
/// proposal is in flight.
fn load(node: &TestNode, ledger: &mut Ledger, rng: &mut Rng, client: usize, iteration: usize) {
    let t = now();
    let mut made = 0;
    loop {
        if ledger.proposals.is_empty() || rng.below(10) == 0 {
            let title = format!("crash {iteration}.{client}.{made}");
            made += 1;
            let (id, bytes) = regtest_proposal(&title, t - 1, t + 86_400, 3);
            ledger.in_flight = Some(InFlight::Proposal(id.clone(), bytes.clone()));
            let params = SubmitProposalParams {
                hex: hex::encode(&bytes),
            };
            if node.call::<method::SubmitProposal>(&params).is_err() {
                return;
            }
            ledger.proposals.insert(id.clone(), None);
            ledger.bytes.insert(id, bytes);
        } else {
            let pick = rng.below(ledger.proposals.len() as u64) as usize;
            let id = ledger.proposals.keys().nth(pick).unwrap().clone();
            let choice = CHOICES[rng.below(4) as usize];
            ledger.in_flight = Some(InFlight::Signal(id.clone(), choice));
            let params = SignalParams {
                proposal: id.clone(),
                choice: choice.into(),
            };
            let Ok(receipt) = node.call::<method::CastSignal>(&params) else {
                return;
            };
            // One above the acknowledged sequence: a lost acknowledged signal would give it
            // again (or a lower one); two above only after a call in flight at a kill.
            let previous = ledger.proposals[&id].map_or(0, |a| a.sequence);
            let most = previous + 1 + u64::from(ledger.unsettled.remove(&id));
            assert!(
                receipt.sequence > previous && receipt.sequence <= most,
                "sequence {} after the acknowledged {previous} on {id}",
                receipt.sequence
            );
            assert_eq!(
                receipt.attestations, 0,
                "a lone node carries no attestations"
            );
            ledger.proposals.insert(
                id,
                Some(Acked {
                    sequence: receipt.sequence,
                    choice,
                    time: receipt.time,
                }),
            );
        }
        ledger.in_flight = None;
    }
}

/// The tally fields a recomputation must reproduce, as text for a readable diff.
fn essence(
    state: &str,
    signers: u64,
    uncounted: u64,
    excluded: u64,
    total_nodes: u64,
    choices: [(u64, f64); 4],
) -> String {
    format!(
        "state {state} signers {signers} uncounted {uncounted} excluded {excluded} total_nodes {total_nodes} choices {choices:?}"
    )
}

/// The tally `commons_aggregator` computes for `id` from the acknowledged proposals and the
/// node's signals (`signal`, if any, rebuilt and signed with the node's key).
fn recomputed(
    spec: &NetworkSpec,
    key: &SecretKey,
    proposal: &[u8],
    signal: Option<Acked>,
) -> String {
    let network = spec.network_id();
    let at = now();
    let mut agg = Aggregator::new(spec.clone(), Policy::from_spec(spec), spec.epoch_at(at));
    let proposal = commons_signaling::Proposal::decode(proposal).unwrap();
    let id: Hash32 = proposal.id(&network);
    agg.add_proposal(proposal).unwrap();
    if let Some(s) = signal {
        let choice: Choice = s.choice.parse().unwrap();
        let signed =
            commons_test_util::signal(&network, key, id, choice, s.sequence, s.time, vec![]);
        agg.apply_signal(signed, at).unwrap();
    }
    let tally = agg.tally(&id).unwrap();
    let state = agg.state(&id, at).unwrap().name();
    let choices = [0, 1, 2, 3].map(|i| (tally.choices[i].nodes, tally.choices[i].weight));
    essence(
        state,
        tally.signers,
        tally.uncounted_signers,
        tally.excluded_signers,
        tally.total_nodes,
        choices,
    )
}

fn reported(node: &TestNode, id: &str) -> String {
    let t = node.tally(id).unwrap();
    let c = &t.choices;
    let choices = c.named().map(|(_, c)| (c.nodes, c.weight));
    essence(
        &t.state,
        t.signers,
        t.uncounted_signers,
        t.excluded_signers,
        t.total_nodes,
        choices,
    )
}

/// Checks the restarted node against the ledgers, settling each call that was in flight.
fn check(node: &TestNode, spec: &NetworkSpec, key: &SecretKey, ledgers: &mut [Ledger]) {
    let held: HashSet<String> = node
        .call::<method::ListProposals>(&NoParams {})
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    for ledger in ledgers.iter_mut() {
        match ledger.in_flight.take() {
            // Applied before the kill or not: either way the client knows now.
            Some(InFlight::Proposal(id, bytes)) if held.contains(&id) => {
                ledger.proposals.insert(id.clone(), None);
                ledger.bytes.insert(id, bytes);
            }
            Some(InFlight::Signal(id, choice)) => {
                let acked = ledger.proposals[&id];
                let without = recomputed(spec, key, &ledger.bytes[&id], acked);
                let now_reported = reported(node, &id);
                if now_reported != without {
                    // Then the in-flight signal was stored: one above the acknowledged one.
                    // Its time is unknown; the tally does not depend on it.
                    let stored = Acked {
                        sequence: acked.map_or(0, |a| a.sequence) + 1,
                        choice,
                        time: now(),
                    };
                    let with = recomputed(spec, key, &ledger.bytes[&id], Some(stored));
                    assert_eq!(
                        now_reported, with,
                        "{id}: neither without nor with the call in flight ({without})"
                    );
                    ledger.proposals.insert(id, Some(stored));
                } else {
                    ledger.unsettled.insert(id);
                }
            }
            _ => {}
        }
        for (id, acked) in &ledger.proposals {
            assert!(held.contains(id), "acknowledged proposal {id} lost");
            assert_eq!(
                reported(node, id),
                recomputed(spec, key, &ledger.bytes[id], *acked),
                "{id}: the tally differs from the acknowledged messages"
            );
        }
    }
}

#[test]
fn kill_9_during_heavy_ingest_loses_nothing_acknowledged() {
    let phase = phases("crash_loop");
    let iterations: usize = std::env::var("COMMONS_CRASH_LOOP_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("COMMONS_CRASH_LOOP_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(now)
        | 1;
    phase(&format!("{iterations} iterations, seed {seed}"));
    let spec = NetworkSpec::regtest();
    let mut node = TestNode::start(
        "crash",
        NodeSpec {
            ip: "127.0.0.1".into(),
            bootstrap: vec![],
            measurer: None,
        },
    )
    .unwrap();
    let key = SecretKey::load(&node.datadir().join("node.key")).unwrap();
    let mut rng = Rng(seed);
    let mut ledgers: Vec<Ledger> = (0..CLIENTS).map(|_| Ledger::default()).collect();
    let started = Instant::now();
    let (mut passed, mut acknowledged) = (0usize, 0usize);
    for iteration in 0..iterations {
        let pid = node.pid().unwrap().to_string();
        // Between 50 ms and 1.5 s into the load: during a submission, a signal, a flush.
        let after = Duration::from_millis(50 + rng.below(1450));
        let seeds: Vec<u64> = (0..CLIENTS).map(|_| rng.next() | 1).collect();
        std::thread::scope(|scope| {
            let node = &node;
            for (client, (ledger, seed)) in ledgers.iter_mut().zip(&seeds).enumerate() {
                scope.spawn(move || load(node, ledger, &mut Rng(*seed), client, iteration));
            }
            std::thread::sleep(after);
            let status = std::process::Command::new("kill")
                .args(["-9", &pid])
                .status()
                .unwrap();
            assert!(status.success());
        });
        node.kill9();
        node.restart().unwrap();
        check(&node, &spec, &key, &mut ledgers);
        passed += 1;
        acknowledged = ledgers
            .iter()
            .map(|l| l.proposals.len() + l.proposals.values().flatten().count())
            .sum();
        if (iteration + 1) % 10 == 0 || iteration + 1 == iterations {
            phase(&format!(
                "{passed}/{} passed, {acknowledged} acknowledged proposals and latest signals held, {:.0} s",
                iteration + 1,
                started.elapsed().as_secs_f64()
            ));
        }
    }
    println!(
        "crash loop: {passed} of {iterations} restarts held every acknowledged message ({acknowledged} proposals and latest signals) in {:.1} s, seed {seed}",
        started.elapsed().as_secs_f64()
    );
}
