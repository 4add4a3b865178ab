//! A recount anyone can run, on a live regtest network of real `commonsd` processes: three
//! measurers and two user nodes signal on a proposal; `commons-cli proposal export` writes a
//! user node's recount file, and `commons-cli recount` on that file, offline, prints exactly
//! the numbers `gettally` gave at that epoch. A file with a forged signal, a cut-short file
//! and a file of another kind are each caught and named.

use std::time::Duration;

use commons_aggregator::recount::RecountFile;
use commons_e2e::{TestNode, cli, now, phases, regtest_proposal, start_mesh, wait_until};
use commons_rpc::{SubmitProposalParams, method};
use commons_signaling::{Choice, Signal};
use serde_json::{Value, json};

/// Three measurers and two user nodes, each in a /30 netgroup of its own. No other test
/// uses 127.0.92.0/24.
const NODES: [&str; 5] = [
    "127.0.92.4",
    "127.0.92.8",
    "127.0.92.12",
    "127.0.92.16",
    "127.0.92.20",
];

const WAIT: Duration = Duration::from_secs(90);

/// `commons-cli --network regtest ARGS`, offline: its exit code, standard output and error.
fn offline(args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["--network", "regtest"];
    all.extend_from_slice(args);
    let out = cli(&all);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Exports the tally of `id` on `node` into `path` while the tally holds still: `gettally`
/// before and after the export agree, at the export's epoch. That tally, as JSON.
fn export_steady(node: &TestNode, id: &str, path: &std::path::Path) -> Value {
    let path_text = path.to_str().unwrap();
    wait_until(WAIT, "an export between two equal gettally answers", || {
        let _ = std::fs::remove_file(path);
        let before = node
            .rpc("gettally", json!({ "id": id }))
            .map_err(|e| e.to_string())?;
        let exported = node.cli_ok(&["--json", "proposal", "export", id, "--out", path_text]);
        let after = node
            .rpc("gettally", json!({ "id": id }))
            .map_err(|e| e.to_string())?;
        let exported: Value = serde_json::from_str(&exported).map_err(|e| e.to_string())?;
        if before == after && exported["tally"] == before {
            Ok(before)
        } else {
            Err(format!(
                "the tally moved: {before} / {} / {after}",
                exported["tally"]
            ))
        }
    })
}

#[test]
fn a_recount_of_an_exported_tally_prints_the_nodes_numbers_and_catches_a_forgery() {
    let phase = phases("recount");
    phase("three measurers and two user nodes on 127.0.92.4-20");
    let nodes = start_mesh("r", &NODES);
    wait_until(WAIT, "all five counted by the user node", || {
        let info = nodes[3]
            .call::<method::GetInfo>(&commons_rpc::NoParams {})
            .map_err(|e| e.to_string())?;
        if info.qualified_nodes == 5 {
            Ok(())
        } else {
            Err(format!("{} qualified", info.qualified_nodes))
        }
    });

    phase("a proposal; signals from a measurer and both user nodes");
    let t = now();
    let (id, bytes) = regtest_proposal("e2e recount", t - 1, t + 900, 3);
    nodes[0]
        .call::<method::SubmitProposal>(&SubmitProposalParams {
            hex: hex::encode(&bytes),
        })
        .unwrap();
    wait_until(WAIT, "the proposal on every node", || {
        nodes
            .iter()
            .try_for_each(|n| n.tally(&id).map(|_| ()).map_err(|e| e.to_string()))
    });
    for (node, choice) in [
        (&nodes[0], "oppose"),
        (&nodes[3], "support"),
        (&nodes[4], "override"),
    ] {
        node.cli_ok(&["signal", &id, choice]);
    }
    wait_until(WAIT, "three counted signals on the user node", || {
        let tally = nodes[3].tally(&id).map_err(|e| e.to_string())?;
        let counted = tally.choices.support.nodes
            + tally.choices.oppose.nodes
            + tally.choices.r#override.nodes;
        if counted == 3 {
            Ok(())
        } else {
            Err(format!("{tally:?}"))
        }
    });

    phase("export from the user node, recount offline");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tally.recount");
    let gettally = export_steady(&nodes[3], &id, &file);
    let file_text = file.to_str().unwrap();
    let (code, stdout, stderr) = offline(&["--json", "recount", file_text]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["matches"], json!(true), "{report:#}");
    // The same JSON `gettally` answered, number for number.
    assert_eq!(report["recount"], gettally, "{report:#}");
    assert_eq!(report["node"], gettally);
    assert_eq!(report["messages"]["signals"], json!(3));
    assert!(report["signatures_checked"].as_u64().unwrap() >= 3 + 3 + 5 * 2);
    let (code, text, _) = offline(&["recount", file_text]);
    assert_eq!(code, Some(0));
    assert!(text.contains("matches the node's tally"), "{text}");
    let support_line = text.lines().find(|l| l.starts_with("support")).unwrap();
    assert!(support_line.trim_end().ends_with(" 1"), "{text}");

    phase("a forged signal: the user node's support made an override");
    let mut forged = RecountFile::decode(&std::fs::read(&file).unwrap()).unwrap();
    let signer = nodes[3].public_key().unwrap();
    let index = forged
        .signals
        .iter()
        .position(|s| Signal::decode(&s.0).unwrap().body.signer.to_hex() == signer)
        .unwrap();
    let mut signal = Signal::decode(&forged.signals[index].0).unwrap();
    signal.body.choice = Choice::Override;
    forged.signals[index].0 = signal.encode();
    let forged_path = dir.path().join("forged.recount");
    std::fs::write(&forged_path, forged.encode()).unwrap();
    let (code, stdout, stderr) = offline(&["--json", "recount", forged_path.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["matches"], json!(false));
    let findings = report["findings"].as_array().unwrap();
    assert!(
        findings.iter().any(|f| f["about"] == "signal"
            && f["index"] == json!(index)
            && f["name"].as_str().unwrap().contains(&signer)
            && f["problem"].as_str().unwrap().contains("signature")),
        "{report:#}"
    );
    assert!(stderr.contains("does not reproduce"), "{stderr}");

    phase("a cut-short file and a file of another kind");
    let whole = std::fs::read(&file).unwrap();
    let cut = dir.path().join("cut.recount");
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let (code, _, stderr) = offline(&["recount", cut.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("truncated"), "{stderr}");
    let proposal = dir.path().join("proposal.cbor");
    std::fs::write(&proposal, &bytes).unwrap();
    let (code, _, stderr) = offline(&["recount", proposal.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("not a recount file"), "{stderr}");
}
