//! Scenarios 2 to 5 on one network of seven daemons on loopback:
//!
//! - two nodes share one IP (127.0.0.20, different ports) and some share a /30 netgroup;
//! - once all are qualified, a tier-1 proposal signed by three regtest maintainers is
//!   submitted to one node (`commons-cli proposal submit`), signals are cast on several
//!   (`commons-cli signal ID CHOICE`), and every node reports the same
//!   tally, equal to the square-root rule computed here by hand (the shared IP counts once);
//! - a second proposal with too few `override` signals is `ready` after its lock ends;
//! - a node killed with `kill -9` comes back with identical tallies;
//! - `/metrics` passes `promtool check metrics` and carries the proposal's weights;
//! - a third proposal with enough `override` signals is `overridden` on every node.
//!
//! One network for all of them keeps the test to a few dozen seconds of wall time on a
//! 2-core machine; each phase announces itself on stderr.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use commons_e2e::{
    TallyEssence, TestNode, now, phases, regtest_proposal, scenario, start_mesh, tally_essence,
    wait_until,
};
use commons_rpc::{NoParams, SubmitProposalParams, Tally, WaitSignersParams, method};

/// The nodes' addresses. Regtest netgroups are IPv4 /30s: .16/.17 share one, .20 (twice),
/// and .21 another, .24 and .28 are alone in theirs. No other test uses 127.0.0.16-31.
const IPS: [&str; 7] = [
    "127.0.0.16",
    "127.0.0.17",
    "127.0.0.20",
    "127.0.0.20",
    "127.0.0.21",
    "127.0.0.24",
    "127.0.0.28",
];
/// The two nodes on one IP.
const SHARED: [usize; 2] = [2, 3];

const WAIT: Duration = Duration::from_secs(90);

fn proposal(title: &str, lock_start: u64, lock_end: u64) -> (String, String) {
    let (id, bytes) = regtest_proposal(title, lock_start, lock_end, 3);
    (id, hex::encode(bytes))
}

fn netgroup(ip: &str) -> u8 {
    ip.rsplit('.').next().unwrap().parse::<u8>().unwrap() / 4
}

/// What the tally must be, by the design's rule: one counted node per IP; a netgroup of n
/// counted nodes gives each 1/sqrt(n). Every node on a shared IP casts the same choice
/// here, so which of them counts does not matter. Returns choice -> (weight, nodes), the
/// total weight and the total node count.
fn expected(signals: &[(usize, &str)]) -> (BTreeMap<String, (f64, u64)>, f64, u64) {
    let mut ips: Vec<&str> = IPS.to_vec();
    ips.sort();
    ips.dedup();
    let mut per_group: BTreeMap<u8, u64> = BTreeMap::new();
    for ip in &ips {
        *per_group.entry(netgroup(ip)).or_default() += 1;
    }
    let total_weight: f64 = per_group.values().map(|&n| (n as f64).sqrt()).sum();
    let mut by_ip: BTreeMap<&str, &str> = BTreeMap::new();
    for &(node, choice) in signals {
        let prev = by_ip.insert(IPS[node], choice);
        assert!(
            prev.is_none_or(|p| p == choice),
            "test bug: one IP, two choices"
        );
    }
    let mut choices: BTreeMap<String, (f64, u64)> = BTreeMap::new();
    for (ip, choice) in by_ip {
        let n = per_group[&netgroup(ip)];
        let e = choices.entry(choice.to_string()).or_default();
        e.0 += 1.0 / (n as f64).sqrt();
        e.1 += 1;
    }
    (choices, total_weight, ips.len() as u64)
}

/// Checks a `gettally` answer against the expectation; the reason when it differs.
fn matches(tally: &Tally, want: &(BTreeMap<String, (f64, u64)>, f64, u64)) -> Result<(), String> {
    let (choices, total_weight, total_nodes) = want;
    let close = |a: f64, b: f64| (a - b).abs() < 1e-6;
    if tally.total_nodes != *total_nodes || !close(tally.total_weight, *total_weight) {
        return Err(format!(
            "totals differ: want {total_nodes} nodes, weight {total_weight}: {tally:?}"
        ));
    }
    for (name, got) in tally.choices.named() {
        let (w, n) = choices.get(name).copied().unwrap_or((0.0, 0));
        if !close(got.weight, w) || got.nodes != n {
            return Err(format!("{name}: want weight {w} over {n} nodes: {tally:?}"));
        }
    }
    Ok(())
}

/// Waits until every node's tally of `id` is the expected one, in `state`, and all agree.
fn wait_for_tally(
    nodes: &[TestNode],
    id: &str,
    want: &(BTreeMap<String, (f64, u64)>, f64, u64),
    state: &str,
) -> TallyEssence {
    wait_until(
        WAIT,
        &format!("the same tally of {id} in state {state} on every node"),
        || {
            let mut first: Option<TallyEssence> = None;
            for n in nodes {
                let t = n.tally(id).map_err(|e| e.to_string())?;
                matches(&t, want).map_err(|e| format!("{}: {e}", n.name))?;
                if t.state != state {
                    return Err(format!("{}: state {} (want {state})", n.name, t.state));
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
            Ok(first.expect("seven nodes"))
        },
    )
}

/// Casts `node`'s signal with `commons-cli signal ID CHOICE`.
fn signal(node: &TestNode, id: &str, choice: &str) {
    let out = node.cli_ok(&["signal", id, choice]);
    assert!(out.contains(choice), "{}: {out}", node.name);
}

/// Hands a proposal to `node`, with `commons-cli proposal submit FILE` or over RPC, and
/// waits until every node has it.
fn submit(node: &TestNode, nodes: &[TestNode], id: &str, hex: &str, with_cli: bool) {
    if with_cli {
        let file = node.base.join(format!("{id}.proposal"));
        std::fs::write(&file, hex::decode(hex).unwrap()).unwrap();
        let out = node.cli_ok(&["proposal", "submit", file.to_str().unwrap()]);
        assert!(out.contains(id), "{}: {out}", node.name);
    } else {
        let r = node
            .call::<method::SubmitProposal>(&SubmitProposalParams {
                hex: hex.to_string(),
            })
            .unwrap();
        assert_eq!(r.id, id, "{r:?}");
    }
    wait_until(WAIT, &format!("proposal {id} on every node"), || {
        for n in nodes {
            let list = n
                .call::<method::ListProposals>(&NoParams {})
                .map_err(|e| e.to_string())?;
            if !list.iter().any(|p| p.id == id) {
                return Err(format!("{} does not have it: {list:?}", n.name));
            }
        }
        Ok(())
    });
}

#[test]
fn seven_nodes_tally_override_restart_metrics() {
    let phase = phases("seven_nodes");
    scenario(
        "scenario 2-5: seven commonsd on 127.0.0.16-28 (one shared IP), tallies, ready, kill -9, metrics, override",
    );

    // Start: each node dials all that started before it.
    let mut nodes = start_mesh("n", &IPS);
    let keys: Vec<String> = nodes.iter().map(|n| n.public_key().unwrap()).collect();

    // Everyone qualified in everyone's view; exactly one of the shared-IP pair counts.
    phase("waiting for all seven nodes to qualify (2 s epochs, 3 epochs, quorum 2)");
    wait_until(WAIT, "every node qualified everywhere", || {
        for n in &nodes {
            let mut counted_shared = 0;
            for (k, key) in keys.iter().enumerate() {
                let u = n.uptime(key).map_err(|e| e.to_string())?;
                let Some(st) = u.status.as_ref().filter(|st| st.qualified) else {
                    return Err(format!("{}: n{k} not qualified: {u:?}", n.name));
                };
                if st.ip != IPS[k].parse().ok() {
                    return Err(format!("{}: n{k} attested at the wrong IP: {u:?}", n.name));
                }
                if SHARED.contains(&k) {
                    counted_shared += usize::from(st.counted);
                } else if !st.counted {
                    return Err(format!("{}: n{k} qualified but not counted: {u:?}", n.name));
                }
            }
            if counted_shared != 1 {
                return Err(format!(
                    "{}: {counted_shared} of the shared-IP pair count",
                    n.name
                ));
            }
        }
        Ok(())
    });

    // P1: the tally proposal; P3: locked for the shortest tier-1 lock, too few overrides.
    let t = now();
    let (p1, p1_hex) = proposal("e2e tally", t - 1, t + 300);
    let p3_end = t + 37;
    let (p3, p3_hex) = proposal("e2e ready", t - 1, p3_end);
    submit(&nodes[0], &nodes, &p1, &p1_hex, true);
    submit(&nodes[4], &nodes, &p3, &p3_hex, false);

    phase("scenario 2: signals on five nodes, the same tally everywhere");
    let p1_signals = [
        (0, "support"),
        (1, "support"),
        (2, "oppose"),
        (3, "oppose"),
        (5, "support"),
    ];
    let p3_signals = [(6, "override")];
    for &(i, choice) in &p3_signals {
        signal(&nodes[i], &p3, choice);
    }
    // `waitforsigners`: with a count nobody reaches it answers at its timeout; node 6 waits
    // for the five signals on p1 while they are cast and answers once it counts them.
    let wait = |signers: u64, timeout: u64| {
        nodes[6].call::<method::WaitForSigners>(&WaitSignersParams {
            id: p1.clone(),
            signers,
            timeout: Some(timeout),
        })
    };
    let asked = std::time::Instant::now();
    let early = wait(99, 300).unwrap();
    assert!(asked.elapsed() >= Duration::from_millis(300), "{early:?}");
    assert_eq!(early.signers, 0, "{early:?}");
    let counted = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            let asked = std::time::Instant::now();
            (wait(p1_signals.len() as u64, 60_000), asked.elapsed())
        });
        for &(i, choice) in &p1_signals {
            signal(&nodes[i], &p1, choice);
        }
        waiter.join().expect("waiter")
    });
    let (counted, took) = (counted.0.unwrap(), counted.1);
    assert_eq!(counted.signers, p1_signals.len() as u64, "{counted:?}");
    assert!(
        took < Duration::from_secs(60),
        "answered at the timeout: {took:?}"
    );
    let want_p1 = expected(&p1_signals);
    let tally = wait_for_tally(&nodes, &p1, &want_p1, "locked");
    assert_eq!(
        tally.uncounted_signers, 1,
        "the shared-IP pair counts once: {tally:?}"
    );
    assert!(!tally.override_met, "{tally:?}");

    phase("scenario 3b: too few overrides, `ready` after the lock end");
    let want_p3 = expected(&p3_signals);
    wait_for_tally(&nodes, &p3, &want_p3, "locked");
    let left = p3_end.saturating_sub(now());
    wait_until(
        WAIT + Duration::from_secs(left),
        "proposal 3 ready on every node",
        || {
            for n in &nodes {
                let t = n.tally(&p3).map_err(|e| e.to_string())?;
                if t.state != "ready" {
                    return Err(format!("{}: {}", n.name, t.state));
                }
                matches(&t, &want_p3)?;
            }
            Ok(())
        },
    );

    phase("scenario 4: kill -9 and restart of a node keeps its tallies");
    let victim = 1;
    let before: Vec<TallyEssence> = [&p1, &p3]
        .iter()
        .map(|id| tally_essence(&nodes[victim].tally(id).unwrap()))
        .collect();
    nodes[victim].kill9();
    nodes[victim].restart().unwrap_or_else(|e| panic!("{e}"));
    let after: Vec<TallyEssence> = [&p1, &p3]
        .iter()
        .map(|id| tally_essence(&nodes[victim].tally(id).unwrap()))
        .collect();
    assert_eq!(before, after, "tallies after kill -9 and restart");
    wait_until(WAIT, "the restarted node reconnected", || {
        let info = nodes[victim]
            .call::<method::GetInfo>(&NoParams {})
            .map_err(|e| e.to_string())?;
        if info.peers >= 3 {
            Ok(())
        } else {
            Err(format!("{info:?}"))
        }
    });

    phase("scenario 5: /metrics passes promtool and carries the tally");
    let text = nodes[0].metrics().unwrap();
    let has_weight = text.lines().any(|l| {
        l.starts_with("commons_tally_weight{")
            && l.contains(&p1)
            && l.contains("choice=\"support\"")
    });
    assert!(has_weight, "no commons_tally_weight for {p1} in\n{text}");
    promtool_check(&text);

    phase("scenario 3a: enough overrides, `overridden` on every node");
    let t = now();
    let (p2, p2_hex) = proposal("e2e override", t - 1, t + 120);
    submit(&nodes[3], &nodes, &p2, &p2_hex, true);
    let one = [(6, "override")];
    signal(&nodes[6], &p2, "override");
    wait_for_tally(&nodes, &p2, &expected(&one), "locked");
    let two = [(6, "override"), (5, "override")];
    let (_, total_weight, total_nodes) = expected(&two);
    assert!(
        2.0 / total_weight >= 0.25 && 2.0 / total_nodes as f64 >= 0.25,
        "test bug: not enough"
    );
    assert!(
        1.0 / total_weight < 0.25 && 1.0 / (total_nodes as f64) < 0.25,
        "test bug: one is enough"
    );
    signal(&nodes[5], &p2, "override");
    let tally = wait_for_tally(&nodes, &p2, &expected(&two), "overridden");
    assert!(tally.override_met, "{tally:?}");

    phase("seven-node scenario passed");
}

/// Runs `promtool check metrics` on the text, or says on stderr that it was skipped.
fn promtool_check(text: &str) {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            scenario(
                "  NOTICE: promtool not found (Debian package prometheus); metrics format check skipped",
            );
            return;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics failed:\n{report}\n--- metrics ---\n{text}"
    );
}
