//! A node that starts after a proposal was submitted and signals were cast catches up
//! through sync: three nodes qualify, a proposal gets two signals, then a fourth node
//! bootstraps from one of them and must reach the same tally as the others.

use std::time::Duration;

use commons_e2e::{
    NodeSpec, TallyEssence, TestNode, now, phases, regtest_proposal, start_mesh, tally_essence,
    wait_until,
};
use commons_rpc::{SubmitProposalParams, Tally, method};

/// One node per regtest netgroup (/30). No other test uses 127.0.0.40-55.
const IPS: [&str; 4] = ["127.0.0.40", "127.0.0.44", "127.0.0.48", "127.0.0.52"];

const WAIT: Duration = Duration::from_secs(45);

fn proposal(title: &str, lock_start: u64, lock_end: u64) -> (String, String) {
    let (id, bytes) = regtest_proposal(title, lock_start, lock_end, 3);
    (id, hex::encode(bytes))
}

fn public_key(node: &TestNode) -> String {
    node.public_key().unwrap()
}

fn tally(node: &TestNode, id: &str) -> Result<Tally, String> {
    node.tally(id).map_err(|e| format!("{}: {e}", node.name))
}

#[test]
fn late_node_catches_up_through_sync() {
    let phase = phases("late_sync");
    phase("three commonsd on 127.0.0.40/44/48, a fourth on .52 joins later");

    let mut nodes = start_mesh("n", &IPS[..3]);
    let keys: Vec<String> = nodes.iter().map(public_key).collect();

    phase("waiting for the three nodes to qualify");
    wait_until(WAIT, "every node qualified everywhere", || {
        for n in &nodes {
            for (k, key) in keys.iter().enumerate() {
                let u = n.uptime(key).map_err(|e| e.to_string())?;
                if !u.status.as_ref().is_some_and(|s| s.qualified && s.counted) {
                    return Err(format!("{}: n{k} not qualified and counted: {u:?}", n.name));
                }
            }
        }
        Ok(())
    });

    phase("a proposal and two signals");
    let t = now();
    let (id, hex) = proposal("e2e late sync", t - 1, t + 300);
    let r = nodes[0]
        .call::<method::SubmitProposal>(&SubmitProposalParams { hex })
        .unwrap();
    assert_eq!(r.id, id, "{r:?}");
    wait_until(WAIT, "the proposal on every node", || {
        for n in &nodes {
            tally(n, &id)?;
        }
        Ok(())
    });
    for (i, choice) in [(1, "support"), (2, "oppose")] {
        let out = nodes[i].cli_ok(&["signal", &id, choice]);
        assert!(out.contains(choice), "{}: {out}", nodes[i].name);
    }
    let settled = wait_until(WAIT, "two signals counted on the three nodes", || {
        let mut first: Option<TallyEssence> = None;
        for n in &nodes {
            let t = tally(n, &id)?;
            let c = &t.choices;
            if c.support.nodes != 1 || c.oppose.nodes != 1 || t.signers != 2 {
                return Err(format!("{}: {t:?}", n.name));
            }
            let e = tally_essence(&t);
            match &first {
                None => first = Some(e),
                Some(f) if *f != e => {
                    return Err(format!("{} disagrees: {e:?} vs {f:?}", n.name));
                }
                Some(_) => {}
            }
        }
        Ok(first.unwrap())
    });

    phase("the fourth node starts, bootstrapping from n0 only, and must catch up");
    let late = TestNode::start(
        &format!("n3@{}", IPS[3]),
        NodeSpec {
            ip: IPS[3].to_string(),
            bootstrap: vec![nodes[0].multiaddr().unwrap()],
            measurer: None,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    nodes.push(late);
    let agreed = wait_until(WAIT, "the late node's tally equals the others'", || {
        let mut first: Option<TallyEssence> = None;
        for n in &nodes {
            let t = tally(n, &id)?;
            let c = &t.choices;
            if c.support.nodes != 1
                || c.oppose.nodes != 1
                || c.r#override.nodes != 0
                || t.signers != 2
            {
                return Err(format!("{}: {t:?}", n.name));
            }
            let e = tally_essence(&t);
            match &first {
                None => first = Some(e),
                Some(f) if *f != e => {
                    return Err(format!("{} disagrees: {e:?} vs {f:?}", n.name));
                }
                Some(_) => {}
            }
        }
        Ok(first.unwrap())
    });
    assert_eq!(
        agreed.choices.support.weight, settled.choices.support.weight,
        "{agreed:?} vs {settled:?}"
    );
    phase("passed");
}
