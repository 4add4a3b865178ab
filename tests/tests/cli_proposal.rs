//! Scenario 1b: the maintainer workflow of `commons-cli` against a running daemon: a
//! proposal created and signed with the CLI (three regtest maintainer key files) verifies
//! offline and is accepted by `commonsd` (`commons-cli proposal submit`); with two
//! signatures both the CLI and the daemon refuse it.

use std::path::Path;

use commons_e2e::{NodeSpec, TestNode, cli, cli_succeeds, scenario};
use commons_rpc::{NoParams, ProposalReceipt, SubmitProposalParams, method};
use commons_signaling::spec::regtest_maintainer_key;

fn path(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

#[test]
fn cli_signed_proposal_is_accepted_by_the_daemon() {
    scenario(
        "scenario 1b: proposal made with commons-cli (3 regtest maintainers) submitted to commonsd (127.0.0.3)",
    );
    let node = TestNode::start(
        "cli",
        NodeSpec {
            ip: "127.0.0.3".into(),
            bootstrap: vec![],
            measurer: None,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<_> = (0..3)
        .map(|i| {
            let p = dir.path().join(format!("maintainer-{i}.key"));
            regtest_maintainer_key(i).save(&p).unwrap();
            p
        })
        .collect();
    let file = dir.path().join("p.proposal");
    cli_succeeds(&[
        "--network",
        "regtest",
        "proposal",
        "create",
        "--tier",
        "1",
        "--title",
        "e2e via the cli",
        "--reference",
        "https://example.invalid/pull/2",
        "--lock-start",
        "now",
        "--lock-end",
        "+120",
        "--out",
        path(&file),
    ]);
    for key in &keys[..2] {
        cli_succeeds(&[
            "--network",
            "regtest",
            "proposal",
            "sign",
            path(&file),
            "--key",
            path(key),
        ]);
    }

    // Two of the three signatures tier 1 needs: the CLI and the daemon both refuse it.
    let out = cli(&["--network", "regtest", "proposal", "verify", path(&file)]);
    assert!(!out.status.success(), "two signatures verified: {out:?}");
    let out = node.cli(&["proposal", "submit", path(&file)]);
    assert!(!out.status.success(), "two signatures submitted: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
    let two = hex::encode(std::fs::read(&file).unwrap());
    let err = node
        .call::<method::SubmitProposal>(&SubmitProposalParams { hex: two })
        .unwrap_err()
        .to_string();
    assert!(err.contains("-32002"), "{err}");
    assert_eq!(
        node.call::<method::ListProposals>(&NoParams {}).unwrap(),
        []
    );

    cli_succeeds(&[
        "--network",
        "regtest",
        "proposal",
        "sign",
        path(&file),
        "--key",
        path(&keys[2]),
    ]);
    cli_succeeds(&["--network", "regtest", "proposal", "verify", path(&file)]);
    let out = node.cli_ok(&["--json", "proposal", "submit", path(&file)]);
    let r: ProposalReceipt = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(r.new, "{r:?}");
    let id = r.id;
    let three = hex::encode(std::fs::read(&file).unwrap());
    let list = node.call::<method::ListProposals>(&NoParams {}).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].id, id, "{list:?}");
    assert_eq!(list[0].title, "e2e via the cli", "{list:?}");
    assert_eq!(list[0].state, "locked", "{list:?}");
    assert_eq!(list[0].signatures, 3, "{list:?}");

    // Submitting it again is not an error, and not new.
    let r = node
        .call::<method::SubmitProposal>(&SubmitProposalParams { hex: three })
        .unwrap();
    assert!(!r.new, "{r:?}");
}
