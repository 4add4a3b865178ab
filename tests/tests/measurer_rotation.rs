//! Measurer rotation on real `commonsd` processes: version 1 of a network has two measurers
//! with quorum two, M0 and "old"; version 2, drafted with `commons-cli spec next`, replaces
//! "old" by a new measurer, is signed by version 1's five maintainers and announced by a
//! tier-5 rotation proposal. Four nodes run the bundle holding both versions: M0, old, new
//! and a user node U. Every node measures, and measurers never measure themselves, so who
//! qualifies shows whose attestations count:
//!
//! - under version 1, U and new qualify (M0 and old vouch for them); old does not, though
//!   new attests it (only M0's attestation counts);
//! - from the activation epoch, U and old qualify (M0 and new); new does not, though old
//!   still attests it; a restart comes back the same.
//!
//! `getuptime`, `getinfo` (the qualified population, the spec version) and `gettally` (new
//! signals support, old opposes) show it on every node.

use std::time::Duration;

use commons_e2e::rotation::{
    Maintainers, activation_epoch, fast_governance, path, proposal, rotation_proposal, spec_info,
    start_on_bundle, submit, wait_held_everywhere, wait_in_force,
};
use commons_e2e::{TestNode, agreed_tally, cli_succeeds, counts_all, scenario, wait_until};
use commons_rpc::{NoParams, SignalParams, method};
use commons_signaling::spec::{MeasurerSpec, regtest_measurer_key};

const NETWORK: &str = "mrotnet";
/// M0, old, new and U, each in a /30 netgroup of its own. No other test uses 127.0.94.x.
const IPS: [&str; 4] = ["127.0.94.4", "127.0.94.8", "127.0.94.12", "127.0.94.16"];
/// The well-known measurer key each node runs with (`NodeSpec::measurer`): regtest's first
/// two for version 1, and a fourth well-known key, which regtest does not list, as the new
/// measurer; U has a key of its own.
const KEYS: [Option<usize>; 4] = [Some(0), Some(1), Some(3), None];
const WAIT: Duration = Duration::from_secs(60);

/// The standing `node` reports of `key`: (qualified, measurers vouching at its address).
fn standing(node: &TestNode, key: &str) -> (bool, u32) {
    let status = node.uptime(key).ok().and_then(|u| u.status);
    status.map_or((false, 0), |s| (s.qualified, s.attester_netgroups))
}

/// Waits until every node reports the standings `expected` of (old, new) and counts U with
/// exactly two measurers vouching, and two qualified nodes in all.
fn wait_standings(nodes: &[TestNode], keys: &[String], expected: [(bool, u32); 2], what: &str) {
    wait_until(WAIT, what, || {
        for node in nodes {
            counts_all(node, &keys[3..])?;
            let got = [standing(node, &keys[1]), standing(node, &keys[2])];
            let user = standing(node, &keys[3]);
            let population = node
                .call::<method::GetInfo>(&NoParams {})
                .map_err(|e| e.to_string())?
                .qualified_nodes;
            if got != expected || user != (true, 2) || population != 2 {
                return Err(format!(
                    "{}: old, new {got:?}, U {user:?}, {population} qualified",
                    node.name
                ));
            }
        }
        Ok(())
    });
}

/// Waits until every node's tally of `id` counts `support` and `oppose` nodes and one
/// uncounted signer of the two, all of them agreeing.
fn wait_tally(nodes: &[TestNode], id: &str, support: u64, oppose: u64) {
    agreed_tally(
        nodes,
        id,
        WAIT,
        &format!("every node counting {support} support, {oppose} oppose"),
        |t| {
            let c = &t.choices;
            (
                c.support.nodes,
                c.oppose.nodes,
                t.signers,
                t.uncounted_signers,
            ) == (support, oppose, 2, 1)
        },
    );
}

#[test]
fn a_measurer_key_is_rotated_and_its_attestations_count_from_activation_only() {
    scenario("measurer rotation: measurer 'old' replaced by 'new' on four commonsd (127.0.94.x)");
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name);
    let (b1_toml, v2_toml, b2_toml) = (file("b1.toml"), file("v2.toml"), file("b2.toml"));
    let maintainers = Maintainers::new(dir.path());
    let measurer = |i: usize| regtest_measurer_key(i).public_key();

    // Version 1: measurers M0 and old, both needed.
    let mut v1 = fast_governance(NETWORK);
    v1.measurers = [0, 1]
        .map(|i| MeasurerSpec {
            key: measurer(i),
            addresses: vec![],
        })
        .to_vec();
    v1.measurer_quorum = 2;
    let anchor = maintainers.first_bundle(&v1, &b1_toml);

    // Version 2: old removed, new added, signed by version 1's maintainers.
    maintainers.draft_next(&b1_toml, &v2_toml);
    cli_succeeds(&[
        "spec",
        "remove-measurer",
        path(&v2_toml),
        &measurer(1).to_hex(),
    ]);
    cli_succeeds(&[
        "spec",
        "add-measurer",
        path(&v2_toml),
        &measurer(3).to_hex(),
    ]);
    let v2 = maintainers.next_bundle(&v2_toml, &b1_toml, &b2_toml, &anchor);
    assert_eq!(v2.version(), 2);
    assert_eq!(
        v2.measurers.iter().map(|m| m.key).collect::<Vec<_>>(),
        [measurer(0), measurer(3)]
    );

    // Every operator runs the bundle holding both versions: version 2 is staged.
    let mut nodes: Vec<TestNode> = Vec::new();
    for (i, (ip, key)) in IPS.iter().zip(KEYS).enumerate() {
        let bootstrap = nodes.iter().map(|n| n.multiaddr().unwrap()).collect();
        let name = ["m0", "old", "new", "user"][i];
        nodes
            .push(start_on_bundle(name, ip, (NETWORK, &b2_toml), &anchor, bootstrap, key).unwrap());
    }
    let keys: Vec<String> = nodes.iter().map(|n| n.public_key().unwrap()).collect();
    assert_eq!(keys[2], measurer(3).to_hex());

    // Under version 1: old's attestations qualify U and new; new's count for nobody.
    wait_standings(
        &nodes,
        &keys,
        [(false, 1), (true, 2)],
        "version 1's standings everywhere",
    );
    for node in &nodes {
        let spec = spec_info(node);
        assert_eq!(spec.version, 1, "{spec:?}");
        assert_eq!(spec.staged[0].spec_id, v2.spec_id().to_hex(), "{spec:?}");
    }
    let maintainer_keys = &maintainers.keys;
    let measured = proposal(
        &v1,
        1,
        "measured",
        600,
        &[
            &maintainer_keys[0],
            &maintainer_keys[1],
            &maintainer_keys[2],
        ],
    );
    let id = submit(&nodes[0], &measured).unwrap();
    wait_held_everywhere(&nodes, &id);
    for (node, choice) in [(&nodes[2], "support"), (&nodes[1], "oppose")] {
        node.call::<method::CastSignal>(&SignalParams {
            proposal: id.clone(),
            choice: choice.into(),
        })
        .unwrap();
    }
    wait_tally(&nodes, &id, 1, 0);

    // The rotation proposal; from its activation epoch new's attestations count and old's
    // no longer do.
    let rotation = rotation_proposal(&v1, &v2, maintainer_keys);
    let activation = activation_epoch(&rotation, v1.epoch_secs);
    let rotation_id = submit(&nodes[3], &rotation).unwrap();
    wait_held_everywhere(&nodes, &rotation_id);
    for node in &nodes {
        let spec = wait_in_force(node, 2);
        assert_eq!(
            (spec.spec_id, spec.since_epoch),
            (v2.spec_id().to_hex(), activation)
        );
        assert_eq!(spec.rotations[0].state, "activated", "{:?}", spec.rotations);
    }
    wait_standings(
        &nodes,
        &keys,
        [(true, 2), (false, 1)],
        "version 2's standings everywhere",
    );
    wait_tally(&nodes, &id, 0, 1);

    // A restart comes back under version 2 with the same standings and tally.
    let user = &mut nodes[3];
    user.stop().unwrap();
    user.restart().unwrap();
    let spec = spec_info(user);
    assert_eq!(
        (spec.version, spec.since_epoch),
        (2, activation),
        "{spec:?}"
    );
    assert!(
        user.log_tail(40)
            .contains("spec version in force (restored)"),
        "{}",
        user.log_tail(40)
    );
    wait_standings(
        &nodes,
        &keys,
        [(true, 2), (false, 1)],
        "version 2's standings after a restart",
    );
    wait_tally(&nodes[3..], &id, 0, 1);
}
