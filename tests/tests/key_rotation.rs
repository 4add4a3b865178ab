//! Key rotation on a local network of real `commonsd` processes: a maintainer key is
//! replaced by a new spec version that the old threshold signs (`commons-cli spec next`,
//! `spec sign --previous`, `spec bundle --onto`), announced by a tier-5 rotation proposal;
//! every node switches when its lock has passed without an override, after which the old
//! key's signatures stop counting and the new key's count, also after a restart. `getinfo`
//! (RPC and `commons-cli`) and `/metrics` show the version in force, its spec id and the
//! rotation before and after the switch; a fourth node that is never given version 2 warns
//! that the rotation names a version it does not hold, stays on version 1 and refuses what
//! the new key signs. Bundles with a wrong signer, below the threshold, tampered with or
//! from another anchor are refused at start with an error naming what failed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use commons_e2e::rotation::{
    Maintainers, activation_epoch, bundle_onto, fast_governance, holds, path, proposal,
    rotation_proposal, spec_info, start_on_bundle, submit, wait_held_everywhere, wait_in_force,
};
use commons_e2e::{TestNode, cli, cli_succeeds, scenario, wait_until};
use commons_rpc::{NoParams, method};
use commons_signaling::SecretKey;
use commons_signaling::spec_bundle::SpecBundle;
use commons_signaling::spec_signatures::sign_spec;

const NETWORK: &str = "rotnet";

fn start(
    name: &str,
    ip: &str,
    bundle: &Path,
    anchor: &str,
    bootstrap: Vec<String>,
) -> anyhow::Result<TestNode> {
    start_on_bundle(name, ip, (NETWORK, bundle), anchor, bootstrap, None)
}

/// `commons-cli getinfo` against `node`, run on the bundle `bundle`.
fn cli_getinfo(node: &TestNode, bundle: &Path) -> String {
    let rpc = node.rpc_addr.to_string();
    cli_succeeds(&[
        "--network",
        path(bundle),
        "--datadir",
        path(&node.base),
        "--rpc-url",
        &rpc,
        "getinfo",
    ])
}

#[test]
fn a_maintainer_key_is_rotated_by_the_old_threshold_and_nodes_switch_at_activation() {
    scenario("key rotation: maintainer 5 replaced by a new key on four commonsd (127.0.93.1-4)");
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| -> PathBuf { dir.path().join(name) };
    let (b1_toml, v2_toml, b2_toml, short_toml) = (
        file("b1.toml"),
        file("v2.toml"),
        file("b2.toml"),
        file("short.toml"),
    );
    let maintainers = Maintainers::new(dir.path());
    let old = &maintainers.keys;
    let new_key_file = file("new.key");
    cli_succeeds(&["key", "generate", "--out", path(&new_key_file)]);
    let new = SecretKey::load(&new_key_file).unwrap();

    // Version 1, signed by its own five maintainers (tier 5 needs all of them).
    let v1 = fast_governance(NETWORK);
    let anchor = maintainers.first_bundle(&v1, &b1_toml);

    let a = start("a", "127.0.93.1", &b1_toml, &anchor, vec![]).unwrap();
    let b = start(
        "b",
        "127.0.93.2",
        &b1_toml,
        &anchor,
        vec![a.multiaddr().unwrap()],
    )
    .unwrap();
    let c = start(
        "c",
        "127.0.93.3",
        &b1_toml,
        &anchor,
        vec![a.multiaddr().unwrap(), b.multiaddr().unwrap()],
    )
    .unwrap();
    // A fourth node, which is never given version 2.
    let d = start(
        "d",
        "127.0.93.4",
        &b1_toml,
        &anchor,
        vec![a.multiaddr().unwrap()],
    )
    .unwrap();
    // Version 1 in force from the network's start: its spec id is the anchor and the
    // network id; nothing staged, no rotation known.
    for node in [&a, &b, &c, &d] {
        let info = node.call::<method::GetInfo>(&NoParams {}).unwrap();
        assert_eq!(info.network.id, anchor);
        let spec = info.spec.unwrap();
        assert_eq!(
            (spec.version, spec.spec_id.as_str(), spec.since_epoch),
            (1, anchor.as_str(), 0),
            "{spec:?}"
        );
        assert!(
            spec.staged.is_empty() && spec.rotations.is_empty(),
            "{spec:?}"
        );
        assert!(spec.warning.is_none(), "{spec:?}");
        assert_eq!(node.metric("commons_spec_version"), 1.0, "{}", node.name);
        let metrics = node.metrics().unwrap();
        assert!(
            metrics.contains("\ncommons_spec_version_missing 0\n"),
            "{metrics}"
        );
    }
    let out = cli_getinfo(&a, &b1_toml);
    assert!(
        out.contains("spec version       1 (in force from the network's start)"),
        "{out}"
    );

    // Version 2: maintainer 5 (index 4) replaced, signed by the five maintainers of version 1.
    maintainers.draft_next(&b1_toml, &v2_toml);
    let gone = old[4].public_key().to_string();
    cli_succeeds(&["spec", "remove-maintainer", path(&v2_toml), &gone]);
    cli_succeeds(&[
        "spec",
        "add-maintainer",
        path(&v2_toml),
        &new.public_key().to_string(),
    ]);
    let v2_sigs = maintainers.sign(&v2_toml, Some(&b1_toml), "v2");
    // The new key cannot sign its own admission.
    let out = cli(&[
        "spec",
        "sign",
        path(&v2_toml),
        "--previous",
        path(&b1_toml),
        "--key",
        path(&new_key_file),
        "--out",
        path(&file("v2-new.sig")),
    ]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a maintainer of version 1"),
        "{out:?}"
    );
    // Four of five is below the threshold: the CLI writes no bundle.
    let mut args = vec!["spec", "bundle", path(&v2_toml)];
    args.extend(v2_sigs[..4].iter().map(|p| path(p)));
    args.extend(["--onto", path(&b1_toml), "--out", path(&short_toml)]);
    let out = cli(&args);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("4 of 5 required"),
        "{out:?}"
    );
    assert!(!short_toml.exists());
    let v2 = bundle_onto(&v2_toml, &v2_sigs, &b1_toml, &b2_toml, &anchor);
    let b2 = SpecBundle::load(&b2_toml).unwrap();

    // Bad bundles never start a node, and say what failed.
    let bad = |name: &str, edit: &dyn Fn(&mut SpecBundle)| {
        let mut bundle = b2.clone();
        edit(&mut bundle);
        let p = file(name);
        std::fs::write(&p, bundle.to_toml()).unwrap();
        p
    };
    let wrong_signer = bad("wrong-signer.toml", &|b| {
        b.versions[1].signatures[4] = sign_spec(&v2, &new);
    });
    let below = bad("below.toml", &|b| {
        b.versions[1].signatures.truncate(4);
    });
    let tampered = bad("tampered.toml", &|b| {
        b.versions[1].spec.tiers[0].signatures_required = 1;
    });
    let cases: [(&Path, &str, &[&str]); 4] = [
        (
            &wrong_signer,
            &anchor,
            &["version 2", "4 of 5 required", "key is not a maintainer"],
        ),
        (&below, &anchor, &["version 2", "4 of 5 required"]),
        (
            &tampered,
            &anchor,
            &["version 2", "not a signature over this spec"],
        ),
        (
            &b2_toml,
            &"ab".repeat(32),
            &["version 1 has spec id", "--spec-anchor"],
        ),
    ];
    for (i, (bundle, anchor, wanted)) in cases.iter().enumerate() {
        let err = start(&format!("bad{i}"), "127.0.93.9", bundle, anchor, vec![])
            .expect_err("a bad bundle started a node")
            .to_string();
        for text in *wanted {
            assert!(
                err.contains(text),
                "{}: no {text:?} in:\n{err}",
                bundle.display()
            );
        }
    }

    // Under version 1 the new key is nobody: a proposal it signs does not reach tier 1's 3.
    let by_new = proposal(&v1, 1, "by-new-before", 40, &[&old[0], &old[1], &new]);
    let err = submit(&a, &by_new).unwrap_err().to_string();
    assert!(
        err.contains("proposal refused") && err.contains("2 of 3"),
        "{err}"
    );

    // The rotation proposal, tier 5 and signed by version 1's threshold.
    let rotation = rotation_proposal(&v1, &v2, old);
    let activation = activation_epoch(&rotation, v1.epoch_secs);
    let rotation_id = submit(&a, &rotation).unwrap();
    let v2_id = v2.spec_id().to_hex();
    wait_held_everywhere([&a, &d], &rotation_id);

    // The node that holds no version 2 says so, in getinfo and its metrics, once it holds
    // the proposal.
    let spec = spec_info(&d);
    assert_eq!(spec.version, 1, "{spec:?}");
    assert_eq!(spec.rotations.len(), 1, "{spec:?}");
    let named = &spec.rotations[0];
    assert_eq!(
        (
            named.proposal.as_str(),
            named.spec_id.as_str(),
            named.version,
            named.activation_epoch
        ),
        (rotation_id.as_str(), v2_id.as_str(), None, activation),
        "{spec:?}"
    );
    assert!(
        matches!(named.state.as_str(), "pending" | "stalled"),
        "{spec:?}"
    );
    let warning = spec.warning.clone().unwrap_or_default();
    for wanted in [
        &v2_id,
        "does not hold",
        "--network BUNDLE",
        "stays on version 1",
    ] {
        assert!(warning.contains(wanted), "{wanted:?} not in {spec:?}");
    }
    assert_eq!(d.metric("commons_spec_version_missing"), 1.0);
    let out = cli_getinfo(&d, &b1_toml);
    for wanted in [
        format!("rotation           spec id {v2_id} (NOT HELD)"),
        "WARNING            a rotation names a spec version this node does not hold".into(),
    ] {
        assert!(out.contains(&wanted), "{wanted:?} not in:\n{out}");
    }

    // Every other node restarts on the bundle that holds version 2 (staged, not yet in force).
    let mut nodes = vec![a, b, c];
    for node in &mut nodes {
        node.stop().unwrap();
        node.network = path(&b2_toml).to_string();
        node.restart().unwrap();
    }
    wait_held_everywhere(&nodes, &rotation_id);
    for node in &nodes {
        let spec = spec_info(node);
        assert!(spec.warning.is_none(), "{spec:?}");
        let named = &spec.rotations[0];
        assert_eq!(
            (named.version, named.activation_epoch),
            (Some(2), activation),
            "{spec:?}"
        );
        // Pending until the activation epoch, which a loaded machine may reach by now.
        match named.state.as_str() {
            "pending" => assert_eq!(spec.staged[0].spec_id, v2_id, "{spec:?}"),
            "activated" => assert_eq!(spec.version, 2, "{spec:?}"),
            other => panic!("{}: rotation {other}: {spec:?}", node.name),
        }
    }

    // Activation: each node logs the switch once the lock passed without an override, and
    // getinfo and the metrics show version 2 in force from the activation epoch.
    for node in &nodes {
        wait_until(
            Duration::from_secs(40),
            "every node to switch to version 2",
            || {
                std::fs::read_to_string(node.log_path())
                    .ok()
                    .filter(|log| log.contains("spec version in force"))
                    .map(|_| ())
                    .ok_or_else(|| format!("{} did not:\n{}", node.name, node.log_tail(10)))
            },
        );
        assert_switched(node, &v2_id, activation, &rotation_id);
    }
    let out = cli_getinfo(&nodes[0], &b2_toml);
    for wanted in [
        format!("spec version       2 (in force since epoch {activation})"),
        format!("spec id            {v2_id}"),
        format!(
            "rotation           version 2 {v2_id}: activated at epoch {activation} (proposal {rotation_id})"
        ),
    ] {
        assert!(out.contains(&wanted), "{wanted:?} not in:\n{out}");
    }
    assert!(!out.contains("WARNING"), "{out}");

    // The node without version 2 stays on version 1 and keeps warning.
    let spec = wait_until(
        Duration::from_secs(40),
        "d to see the rotation pass",
        || {
            let spec = spec_info(&d);
            if spec.rotations.first().is_some_and(|r| r.state == "stalled") {
                Ok(spec)
            } else {
                Err(format!("{spec:?}"))
            }
        },
    );
    assert_eq!(spec.version, 1, "{spec:?}");
    assert!(spec.warning.is_some(), "{spec:?}");
    assert_eq!(d.metric("commons_spec_version"), 1.0);
    assert_eq!(d.metric("commons_spec_version_missing"), 1.0);

    // The old key's signature counts no more; the new key's does, on every node that holds
    // version 2, and the node without it refuses what the new key signs.
    let by_old = proposal(&v2, 1, "by-old-after", 40, &[&old[0], &old[1], &old[4]]);
    let err = submit(&nodes[1], &by_old).unwrap_err().to_string();
    assert!(
        err.contains("proposal refused") && err.contains("2 of 3"),
        "{err}"
    );
    let by_new = proposal(&v2, 1, "by-new-after", 40, &[&old[0], &old[1], &new]);
    let err = submit(&d, &by_new).unwrap_err().to_string();
    assert!(err.contains("2 of 3"), "{err}");
    let id = submit(&nodes[0], &by_new).unwrap();
    wait_held_everywhere(&nodes, &id);

    // A restart comes back under version 2 with the new key's proposal.
    let node = &mut nodes[2];
    node.stop().unwrap();
    node.restart().unwrap();
    assert!(holds(node, &id), "{}", node.log_tail(20));
    assert!(
        node.log_tail(40)
            .contains("spec version in force (restored)"),
        "{}",
        node.log_tail(40)
    );
    assert_switched(node, &v2_id, activation, &rotation_id);
    let err = submit(
        node,
        &proposal(&v2, 1, "by-old-restart", 40, &[&old[0], &old[1], &old[4]]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("2 of 3"), "{err}");
}

/// `node`'s getinfo and metrics once version 2 (spec id `v2_id`) is in force from `activation`.
fn assert_switched(node: &TestNode, v2_id: &str, activation: u64, rotation_id: &str) {
    let spec = wait_in_force(node, 2);
    assert_eq!(
        (spec.spec_id.as_str(), spec.since_epoch),
        (v2_id, activation),
        "{}: {spec:?}",
        node.name
    );
    assert!(spec.staged.is_empty() && spec.warning.is_none(), "{spec:?}");
    assert_eq!(spec.rotations.len(), 1, "{spec:?}");
    assert_eq!(
        (
            spec.rotations[0].proposal.as_str(),
            spec.rotations[0].state.as_str()
        ),
        (rotation_id, "activated"),
        "{spec:?}"
    );
    assert_eq!(node.metric("commons_spec_version"), 2.0, "{}", node.name);
    let metrics = node.metrics().unwrap();
    assert!(
        metrics.contains("\ncommons_spec_version_missing 0\n"),
        "{metrics}"
    );
}
