//! Fair gossip ingest, as behaviour: a daemon in this process and two libp2p peers on
//! loopback, a flooder and an honest one. The daemon's signature checks go through a gate
//! (its `Options::signatures`) that records the order they start in and holds them while
//! shut, so the flooder's backlog is queued on the daemon when the honest message arrives.
//! Its peer's queues are served in turn, so the honest message is verified before the
//! flooder's backlog (not after it, as one first-in first-out queue would do); and a
//! flooder whose signatures do not verify is banned and its backlog dropped unverified.
//! No timed assertion: every wait is bounded and only fails the test when it runs out.

mod common;

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use commons_aggregator::{PlainSignatures, SignatureCheck};
use commons_node::daemon::{Daemon, Options};
use commons_p2p::{
    Keypair, Multiaddr, P2pConfig, P2pEvent, P2pHandle, P2pNode, TopicKind, Verdict,
};
use commons_rpc::{IdParams, SubmitProposalParams, method};
use commons_signaling::{Choice, Hash32, NetworkSpec, PublicKey, SecretKey, Signal};

/// Signals the flooder sends at once: within its rate limit's burst (200), and far more
/// than the daemon's ingest workers (at most 16) take at a time.
const BACKLOG: usize = 150;

/// Signature checks in the order they start; held while the gate is shut.
#[derive(Default)]
struct Gate {
    state: Mutex<GateState>,
    opened: Condvar,
}

#[derive(Default)]
struct GateState {
    shut: bool,
    held: usize,
    order: Vec<PublicKey>,
}

impl SignatureCheck for Gate {
    fn check(
        &self,
        signer: &PublicKey,
        digest: &Hash32,
        signature: &commons_signaling::Signature,
    ) -> bool {
        let mut state = self.state.lock().unwrap();
        state.order.push(*signer);
        state.held += 1;
        while state.shut {
            state = self.opened.wait(state).unwrap();
        }
        state.held -= 1;
        drop(state);
        PlainSignatures.check(signer, digest, signature)
    }
}

impl Gate {
    fn set_shut(&self, shut: bool) {
        self.state.lock().unwrap().shut = shut;
        self.opened.notify_all();
    }

    /// Checks held at the gate, and checks started so far.
    fn counts(&self) -> (usize, usize) {
        let state = self.state.lock().unwrap();
        (state.held, state.order.len())
    }

    fn order(&self) -> Vec<PublicKey> {
        self.state.lock().unwrap().order.clone()
    }
}

/// A libp2p peer on `ip` dialing `bootstrap`, which forwards nothing it receives.
fn peer(ip: &str, bootstrap: Multiaddr) -> P2pHandle {
    let mut config = P2pConfig::new("regtest");
    config.listen_addrs = vec![format!("/ip4/{ip}/tcp/0").parse().unwrap()];
    config.outbound_source_ip = ip.parse().ok();
    config.bootstrap = vec![bootstrap];
    config.discovery = false;
    config.ip_colocation_threshold = 1_000;
    let mut registry = commons_p2p::prometheus_client::registry::Registry::default();
    let (handle, mut events, _task) =
        P2pNode::spawn(config, Keypair::generate_secp256k1(), &mut registry).unwrap();
    let net = handle.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let P2pEvent::Message {
                message_id,
                propagation_source,
                ..
            } = event
            {
                let _ = net
                    .report_validation(message_id, propagation_source, Verdict::Ignore)
                    .await;
            }
        }
    });
    handle
}

/// Signals on `proposal` by `count` fresh signers named after `seed`.
fn signals(proposal: Hash32, seed: &str, count: usize) -> Vec<Signal> {
    let network = NetworkSpec::regtest().network_id();
    (0..count)
        .map(|i| {
            let key = SecretKey::from_seed(&format!("{seed} {i}"));
            commons_test_util::signal(
                &network,
                &key,
                proposal,
                Choice::Support,
                1,
                common::now(),
                vec![],
            )
        })
        .collect()
}

async fn publish(net: &P2pHandle, signal: &Signal) {
    net.publish(TopicKind::Signals, signal.encode())
        .await
        .expect("the daemon takes the signal");
}

/// Waits until the checks held at the gate and the messages queued on the daemon add up to
/// `total`: everything published so far has arrived. The number held.
async fn arrived(daemon: &Daemon, gate: &Gate, total: usize, what: &str) -> usize {
    common::eventually(60, what, || async {
        let (held, _) = gate.counts();
        let queued = usize::try_from(daemon.node.ingest_metrics().queued.get()).unwrap();
        (held > 0 && held + queued == total).then_some(held)
    })
    .await
}

/// Where `signer`'s check started in `order`.
fn position(order: &[PublicKey], signer: PublicKey) -> usize {
    order
        .iter()
        .position(|k| *k == signer)
        .expect("the signer's signature was checked")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooders_backlog_waits_its_turns() {
    tokio::time::timeout(Duration::from_secs(180), run())
        .await
        .expect("test took too long");
}

async fn run() {
    let gate = Arc::new(Gate::default());
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        signatures: gate.clone(),
        ..common::daemon_options()
    };
    let daemon = Daemon::start(
        &common::daemon_config(dir.path(), "127.0.0.1", vec![]),
        options,
    )
    .await
    .unwrap();
    let spec = NetworkSpec::regtest();
    let proposal = common::proposal(&spec, "fair ingest", common::now() - 1, 600);
    let id = common::call::<method::SubmitProposal>(
        daemon.node.as_ref(),
        &SubmitProposalParams {
            hex: hex::encode(proposal.encode()),
        },
    )
    .await
    .unwrap()
    .id;
    let proposal_id: Hash32 = id.parse().unwrap();
    let addr = common::eventually(10, "a listen address", || async {
        daemon.net.listen_addrs().await.ok()?.into_iter().next()
    })
    .await;
    let addr: Multiaddr = format!("{addr}/p2p/{}", daemon.net.local_peer_id())
        .parse()
        .unwrap();
    let flooder = peer("127.0.0.41", addr.clone());
    let honest = peer("127.0.0.42", addr.clone());
    for (name, net) in [("flooder", &flooder), ("honest", &honest)] {
        common::eventually(
            30,
            &format!("the {name} peer in the daemon's signal mesh"),
            || async { (!net.mesh_peers(TopicKind::Signals).await.ok()?.is_empty()).then_some(()) },
        )
        .await;
    }
    let signers = |count: u64| {
        let (node, id) = (daemon.node.clone(), id.clone());
        async move {
            let tally = common::call::<method::GetTally>(node.as_ref(), &IdParams { id })
                .await
                .ok()?;
            (tally.signers == count).then_some(())
        }
    };

    // A backlog of valid signals from the flooder, then one from the honest peer.
    gate.set_shut(true);
    for signal in signals(proposal_id, "fair flooder", BACKLOG) {
        publish(&flooder, &signal).await;
    }
    let workers = arrived(&daemon, &gate, BACKLOG, "the flooder's backlog queued").await;
    assert!(BACKLOG > 3 * workers, "{workers} workers leave no backlog");
    let honest_signal = &signals(proposal_id, "fair honest", 1)[0];
    publish(&honest, honest_signal).await;
    arrived(&daemon, &gate, BACKLOG + 1, "the honest signal queued").await;
    gate.set_shut(false);
    common::eventually(60, "every signal applied", || signers(BACKLOG as u64 + 1)).await;
    let order = gate.order();
    let at = position(&order, honest_signal.body.signer);
    // The held checks, then at most one turn of the flooder before the honest peer's, on
    // each worker.
    assert!(
        at < 2 * workers,
        "the honest signal was checked {at}th of {}, after the flooder's backlog ({workers} workers)",
        order.len()
    );

    // A backlog of invalid signatures: the flooder is banned at the first, the rest of its
    // backlog is dropped unchecked, and the honest signal still goes through.
    let checked_before = order.len();
    let liar = peer("127.0.0.43", addr);
    let liar_id = liar.local_peer_id();
    common::eventually(30, "the liar in the daemon's signal mesh", || async {
        (!liar.mesh_peers(TopicKind::Signals).await.ok()?.is_empty()).then_some(())
    })
    .await;
    gate.set_shut(true);
    let mut forged = signals(proposal_id, "fair liar", BACKLOG);
    for signal in &mut forged {
        signal.signature.0[63] ^= 1;
        publish(&liar, signal).await;
    }
    let held = arrived(&daemon, &gate, BACKLOG, "the liar's backlog queued").await;
    let honest_signal = &signals(proposal_id, "fair honest again", 1)[0];
    publish(&honest, honest_signal).await;
    arrived(
        &daemon,
        &gate,
        BACKLOG + 1,
        "the second honest signal queued",
    )
    .await;
    gate.set_shut(false);
    common::eventually(60, "the honest signal applied", || {
        signers(BACKLOG as u64 + 2)
    })
    .await;
    common::eventually(30, "the liar banned", || async {
        let peers = daemon.net.peers().await.ok()?;
        (!peers.iter().any(|p| p.peer_id == liar_id)).then_some(())
    })
    .await;
    let (_, checked) = gate.counts();
    let liar_checks = checked - checked_before - 1;
    assert!(
        liar_checks <= held,
        "{liar_checks} of the liar's {BACKLOG} signatures were checked, {held} held at the gate"
    );
    let shed = daemon
        .node
        .ingest_metrics()
        .shed
        .get_or_create(&commons_node::metrics::CauseLabels {
            cause: "invalid_signature".into(),
        })
        .get();
    assert_eq!(shed, (BACKLOG - liar_checks) as u64, "dropped unchecked");

    daemon.shutdown().await;
}
