//! Key rotation on a local network of real `commonsd` processes: a maintainer key is
//! replaced by a new spec version that the old threshold signs (`commons-cli spec next`,
//! `spec sign --previous`, `spec bundle --onto`), announced by a tier-5 rotation proposal;
//! every node switches when its lock has passed without an override, after which the old
//! key's signatures stop counting and the new key's count, also after a restart. Bundles
//! with a wrong signer, below the threshold, tampered with or from another anchor are refused
//! at start with an error naming what failed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use commons_e2e::{NodeSpec, TestNode, binary, cli, cli_succeeds, now, scenario, wait_until};
use commons_rpc::{NoParams, SubmitProposalParams, method};
use commons_signaling::spec::regtest_maintainer_key;
use commons_signaling::spec_bundle::SpecBundle;
use commons_signaling::spec_signatures::sign_spec;
use commons_signaling::{BoundedString, NetworkSpec, Proposal, ProposalBody, SecretKey};

const NETWORK: &str = "rotnet";

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// Regtest's rules as a network of its own whose governance lock is 6 s, so a rotation
/// passes in seconds; five well-known maintainers.
fn genesis() -> NetworkSpec {
    let mut spec = NetworkSpec::regtest();
    spec.name = NETWORK.into();
    for tier in &mut spec.tiers {
        if tier.tier == 5 {
            tier.min_lock_secs = 6;
        }
    }
    spec
}

/// A proposal of `tier` signed by `keys`, locked from now for `lock` seconds.
fn proposal(
    spec: &NetworkSpec,
    tier: u8,
    reference: &str,
    lock: u64,
    keys: &[&SecretKey],
) -> Proposal {
    let start = now();
    let mut proposal = Proposal::new(ProposalBody {
        version: 1,
        tier,
        title: BoundedString::new(format!("{reference} at {start}")).unwrap(),
        reference: BoundedString::new(reference).unwrap(),
        lock_start: start,
        lock_end: start + lock,
    });
    for key in keys {
        proposal.add_signature(key, &spec.network_id()).unwrap();
    }
    proposal
}

fn submit(node: &TestNode, proposal: &Proposal) -> anyhow::Result<String> {
    let receipt = node.call::<method::SubmitProposal>(&SubmitProposalParams {
        hex: hex::encode(proposal.encode()),
    })?;
    Ok(receipt.id)
}

fn holds(node: &TestNode, id: &str) -> bool {
    node.call::<method::ListProposals>(&NoParams {})
        .map(|list| list.iter().any(|p| p.id == id))
        .unwrap_or(false)
}

fn start(
    name: &str,
    ip: &str,
    bundle: &Path,
    anchor: &str,
    bootstrap: Vec<String>,
) -> anyhow::Result<TestNode> {
    TestNode::start_on(
        name,
        NodeSpec {
            ip: ip.into(),
            bootstrap,
            measurer: None,
        },
        (path(bundle), NETWORK),
        binary("commonsd"),
        vec!["--spec-anchor".into(), anchor.into()],
    )
}

#[test]
fn a_maintainer_key_is_rotated_by_the_old_threshold_and_nodes_switch_at_activation() {
    scenario("key rotation: maintainer 5 replaced by a new key on three commonsd (127.0.93.1-3)");
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| -> PathBuf { dir.path().join(name) };
    let (v1_toml, b1_toml, v2_toml, b2_toml, short_toml) = (
        file("v1.toml"),
        file("b1.toml"),
        file("v2.toml"),
        file("b2.toml"),
        file("short.toml"),
    );
    let old: Vec<SecretKey> = (0..5).map(regtest_maintainer_key).collect();
    let key_files: Vec<PathBuf> = (0..5)
        .map(|i| {
            let p = file(&format!("m{i}.key"));
            cli_succeeds(&[
                "key",
                "regtest-maintainer",
                &i.to_string(),
                "--out",
                path(&p),
            ]);
            p
        })
        .collect();
    let new_key_file = file("new.key");
    cli_succeeds(&["key", "generate", "--out", path(&new_key_file)]);
    let new = SecretKey::load(&new_key_file).unwrap();

    // Version 1, signed by its own five maintainers (tier 5 needs all of them).
    let v1 = genesis();
    std::fs::write(&v1_toml, v1.to_toml()).unwrap();
    let mut sigs = Vec::new();
    for (i, key) in key_files.iter().enumerate() {
        let sig = file(&format!("v1-{i}.sig"));
        cli_succeeds(&[
            "spec",
            "sign",
            path(&v1_toml),
            "--key",
            path(key),
            "--out",
            path(&sig),
        ]);
        sigs.push(sig);
    }
    let mut args = vec!["spec", "bundle", path(&v1_toml)];
    args.extend(sigs.iter().map(|p| path(p)));
    args.extend(["--out", path(&b1_toml)]);
    cli_succeeds(&args);
    let anchor = cli_succeeds(&["spec", "id", path(&v1_toml)])
        .trim()
        .to_string();
    assert_eq!(anchor, v1.spec_id().to_string());

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

    // Version 2: maintainer 5 (index 4) replaced, signed by the five maintainers of version 1.
    cli_succeeds(&["spec", "next", path(&b1_toml), "--out", path(&v2_toml)]);
    let gone = old[4].public_key().to_string();
    cli_succeeds(&["spec", "remove-maintainer", path(&v2_toml), &gone]);
    cli_succeeds(&[
        "spec",
        "add-maintainer",
        path(&v2_toml),
        &new.public_key().to_string(),
    ]);
    let mut v2_sigs = Vec::new();
    for (i, key) in key_files.iter().enumerate() {
        let sig = file(&format!("v2-{i}.sig"));
        cli_succeeds(&[
            "spec",
            "sign",
            path(&v2_toml),
            "--previous",
            path(&b1_toml),
            "--key",
            path(key),
            "--out",
            path(&sig),
        ]);
        v2_sigs.push(sig);
    }
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
    let mut args = vec!["spec", "bundle", path(&v2_toml)];
    args.extend(v2_sigs.iter().map(|p| path(p)));
    args.extend(["--onto", path(&b1_toml), "--out", path(&b2_toml)]);
    cli_succeeds(&args);
    cli_succeeds(&["spec", "verify-bundle", path(&b2_toml), "--anchor", &anchor]);
    let b2 = SpecBundle::load(&b2_toml).unwrap();
    let v2 = b2.versions[1].spec.clone();

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

    // The rotation proposal, tier 5 and signed by version 1's threshold, then every node
    // restarts on the bundle that holds version 2 (staged, not yet in force).
    let reference = format!("spec-rotation:{}", v2.spec_id());
    let rotation = proposal(&v1, 5, &reference, 6, &old.iter().collect::<Vec<_>>());
    let rotation_id = submit(&a, &rotation).unwrap();
    let mut nodes = vec![a, b, c];
    for node in &mut nodes {
        node.stop().unwrap();
        node.network = path(&b2_toml).to_string();
        node.restart().unwrap();
    }
    for node in &nodes {
        wait_until(
            Duration::from_secs(30),
            "the rotation proposal everywhere",
            || {
                holds(node, &rotation_id)
                    .then_some(())
                    .ok_or_else(|| format!("{} does not hold it", node.name))
            },
        );
    }

    // Activation: each node logs the switch once the lock passed without an override.
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
    }

    // The old key's signature counts no more; the new key's does, on every node.
    let by_old = proposal(&v2, 1, "by-old-after", 40, &[&old[0], &old[1], &old[4]]);
    let err = submit(&nodes[1], &by_old).unwrap_err().to_string();
    assert!(
        err.contains("proposal refused") && err.contains("2 of 3"),
        "{err}"
    );
    let by_new = proposal(&v2, 1, "by-new-after", 40, &[&old[0], &old[1], &new]);
    let id = submit(&nodes[0], &by_new).unwrap();
    for node in &nodes {
        wait_until(
            Duration::from_secs(30),
            "the new key's proposal everywhere",
            || {
                holds(node, &id)
                    .then_some(())
                    .ok_or_else(|| format!("{} does not hold it", node.name))
            },
        );
    }

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
    let err = submit(
        node,
        &proposal(&v2, 1, "by-old-restart", 40, &[&old[0], &old[1], &old[4]]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("2 of 3"), "{err}");
}
