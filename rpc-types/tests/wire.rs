//! The JSON of every type is the documented wire format: each answer as `commonsd` sends it
//! reads into its type and serializes back to the same JSON, field for field, `null`s and
//! left-out fields included.

use commons_rpc::method::{self, NAMES};
use commons_rpc::*;
use serde_json::{Value, json};

/// Reads `wire` as the answer of `M` and checks that it serializes back unchanged.
fn round_trip<M: Method>(wire: Value) -> M::Response {
    let typed =
        parse_response::<M>(wire.clone()).unwrap_or_else(|e| panic!("{}: {e}\n{wire:#}", M::NAME));
    assert_eq!(response_json::<M>(&typed), wire, "{}", M::NAME);
    typed
}

fn uptime() -> Value {
    json!({
        "ip": "127.0.0.8",
        "uptime_epochs": 12,
        "attester_netgroups": 2,
        "qualified": true,
        "counted": false,
        "netgroup": "127.0.0.8/30",
    })
}

#[test]
fn getinfo_with_and_without_networking() {
    let wire = json!({
        "version": "0.1.0",
        "network": { "name": "regtest", "id": "ab".repeat(32) },
        "peer_id": "16Uiu2HAm",
        "public_key": "cd".repeat(32),
        "listen": ["/ip4/127.0.0.8/tcp/4001"],
        "epoch": 7,
        "epoch_secs": 2,
        "time": 1_795_240_505u64,
        "peers": 2,
        "proposals": 1,
        "qualified_nodes": 3,
        "qualified_weight": 2.5,
        "uptime": uptime(),
        "running_secs": 40,
    });
    let info = round_trip::<method::GetInfo>(wire.clone());
    assert_eq!(info.network.name, "regtest");
    assert_eq!(info.uptime.unwrap().ip, Some("127.0.0.8".parse().unwrap()));
    // A node older than the self-check leaves `binary` out.
    assert_eq!(info.binary, None);

    let mut checked = wire.clone();
    checked["binary"] = json!({
        "mode": "warn",
        "status": "verified",
        "path": "/usr/local/bin/commonsd",
        "sha256": "ef".repeat(32),
        "size": 31_457_280u64,
        "release": {
            "id": "12".repeat(32),
            "channel": "stable",
            "version": "1.0.0",
            "artifact": "commonsd",
        },
        "error": null,
    });
    let info = round_trip::<method::GetInfo>(checked);
    assert_eq!(info.binary.unwrap().release.unwrap().version, "1.0.0");
    // A node older than key rotation leaves `spec` out.
    assert_eq!(info.spec, None);

    let mut rotating = wire.clone();
    rotating["spec"] = json!({
        "version": 1,
        "spec_id": "ab".repeat(32),
        "since_epoch": 0,
        "staged": [{ "version": 2, "spec_id": "34".repeat(32) }],
        "rotations": [
            {
                "proposal": "56".repeat(32),
                "spec_id": "34".repeat(32),
                "version": 2,
                "activation_epoch": 90,
                "state": "pending",
            },
            {
                "proposal": "78".repeat(32),
                "spec_id": "9a".repeat(32),
                "version": null,
                "activation_epoch": 95,
                "state": "pending",
            },
        ],
        "warning": "a rotation names a spec version this node does not hold",
    });
    let spec = round_trip::<method::GetInfo>(rotating).spec.unwrap();
    assert_eq!(spec.rotations[1].version, None);
    assert!(spec.warning.is_some());

    let mut offline = wire;
    offline["peer_id"] = Value::Null;
    offline["uptime"] = Value::Null;
    offline["listen"] = json!([]);
    let info = round_trip::<method::GetInfo>(offline);
    assert_eq!((info.peer_id, info.uptime), (None, None));
}

#[test]
fn getpeers() {
    let peer = json!({
        "peer_id": "16Uiu2HAm",
        "public_key": null,
        "addrs": ["/ip4/127.0.0.9/tcp/4001"],
        "listen_addrs": [],
        "observed_ip": "127.0.0.9",
        "connected_since": 1_795_240_505u64,
        "outbound": true,
        "agent": "commonsd/0.1.0",
        "gossip_score": -1.5,
        "seen_epochs": 3,
        "uptime": null,
    });
    let mut bare = peer.clone();
    for field in ["observed_ip", "agent", "gossip_score"] {
        bare[field] = Value::Null;
    }
    bare["uptime"] = uptime();
    let peers = round_trip::<method::GetPeers>(json!([peer, bare]));
    assert!(peers[0].outbound);
    assert_eq!(peers[1].gossip_score, None);
}

#[test]
fn proposals_tallies_and_uptime() {
    let summary = json!({
        "id": "ef".repeat(32),
        "tier": 1,
        "title": "t",
        "reference": "https://example.invalid/pr/1",
        "state": "overridden",
        "lock_start": 10,
        "lock_end": 20,
        "signatures": 3,
        "overridden_at_epoch": 4,
    });
    let mut pending = summary.clone();
    pending["overridden_at_epoch"] = Value::Null;
    round_trip::<method::ListProposals>(json!([summary, pending]));

    let choice = |weight: f64, nodes: u64| json!({ "weight": weight, "nodes": nodes });
    let tally = round_trip::<method::GetTally>(json!({
        "id": "ef".repeat(32),
        "tier": 1,
        "epoch": 9,
        "state": "locked",
        "choices": {
            "support": choice(1.0, 1),
            "oppose": choice(0.0, 0),
            "override": choice(1.7071067811865475, 2),
            "abstain": choice(0.0, 0),
        },
        "total_nodes": 4,
        "total_weight": 3.414213562373095,
        "override_weight_share": 0.5,
        "override_node_share": 0.5,
        "required_weight_share": 0.4,
        "required_node_share": 0.4,
        "override_met": true,
        "signers": 3,
        "uncounted_signers": 0,
        "excluded_signers": 1,
    }));
    assert_eq!(tally.choices.r#override.nodes, 2);
    assert_eq!(tally.excluded_signers, 1);
    // A node older than the field answers without it: read as no exclusions.
    let mut older = response_json::<method::GetTally>(&tally);
    older.as_object_mut().unwrap().remove("excluded_signers");
    assert_eq!(
        parse_response::<method::GetTally>(older)
            .unwrap()
            .excluded_signers,
        0
    );

    let evidence = round_trip::<method::ListEquivocations>(json!([{
        "id": "01".repeat(32),
        "proposal": "ef".repeat(32),
        "signer": "cd".repeat(32),
        "sequence": 4,
        "signals": [
            { "choice": "support", "time": 100, "attestations": 0, "signature": "aa".repeat(64) },
            { "choice": "override", "time": 101, "attestations": 2, "signature": "bb".repeat(64) },
        ],
        "evidence": "a3",
    }]));
    assert_eq!(evidence[0].signals[1].choice, "override");
    assert_eq!(
        tally.choices.get("override"),
        Some(&tally.choices.r#override)
    );
    assert_eq!(tally.choices.get("veto"), None);

    let report = round_trip::<method::GetUptime>(json!({
        "key": "cd".repeat(32),
        "epoch": 9,
        "min_uptime_epochs": 3,
        "status": uptime(),
        "observed_by_this_node": { "ip": "127.0.0.8", "seen_epochs": 4 },
    }));
    assert_eq!(report.observed_by_this_node.unwrap().seen_epochs, 4);
    round_trip::<method::GetUptime>(json!({
        "key": "cd".repeat(32),
        "epoch": 9,
        "min_uptime_epochs": 3,
        "status": null,
        "observed_by_this_node": null,
    }));
}

#[test]
fn receipts() {
    round_trip::<method::CastSignal>(json!({
        "proposal": "ef".repeat(32),
        "choice": "override",
        "sequence": 2,
        "time": 1_795_240_505u64,
        "attestations": 3,
        "published": false,
    }));
    round_trip::<method::SubmitProposal>(json!({
        "id": "ef".repeat(32), "new": true, "published": true,
    }));
    round_trip::<method::PublishRelease>(json!({
        "id": "ef".repeat(32),
        "channel": "stable",
        "version": "1.0.0",
        "new": false,
        "published": true,
        "artifacts": 2,
    }));
}

#[test]
fn releases_leave_out_bundle_and_path_until_they_exist() {
    let release = json!({
        "id": "ef".repeat(32),
        "channel": "stable",
        "version": "1.0.0",
        "class": "application",
        "created": 1,
        "expires": 2,
        "signers": 3,
        "state": "fetching",
        "artifacts": [
            { "name": "a", "sha256": "00".repeat(32), "size": 5, "state": "verified",
              "have_bytes": 5, "path": "/data/releases/stable/1.0.0/a" },
            { "name": "b", "sha256": "11".repeat(32), "size": 9, "state": "waiting",
              "have_bytes": 0 },
        ],
    });
    let list = round_trip::<method::ListReleases>(json!([release.clone()]));
    assert_eq!(
        (&list[0].bundle, &list[0].artifacts[1].path),
        (&None, &None)
    );
    let mut shown = release;
    shown["bundle"] = json!("a0");
    let shown = round_trip::<method::GetRelease>(shown);
    assert_eq!(shown.bundle.as_deref(), Some("a0"));
}

#[test]
fn parameters_are_named_objects() {
    assert_eq!(params_json::<method::GetInfo>(&NoParams {}), json!({}));
    assert_eq!(
        params_json::<method::GetTally>(&IdParams::new("ab")),
        json!({ "id": "ab" })
    );
    assert_eq!(
        params_json::<method::GetUptime>(&UptimeParams::default()),
        json!({})
    );
    assert_eq!(
        params_json::<method::GetUptime>(&UptimeParams {
            key: Some("cd".into())
        }),
        json!({ "key": "cd" })
    );
    assert_eq!(
        params_json::<method::CastSignal>(&SignalParams {
            proposal: "ab".into(),
            choice: "support".into()
        }),
        json!({ "proposal": "ab", "choice": "support" })
    );
    assert_eq!(
        params_json::<method::PublishRelease>(&PublishReleaseParams {
            bundle: "a0".into(),
            artifacts: "/dist".into()
        }),
        json!({ "bundle": "a0", "artifacts": "/dist" })
    );
    assert_eq!(
        params_json::<method::SubmitProposal>(&SubmitProposalParams { hex: "a0".into() }),
        json!({ "hex": "a0" })
    );
    let wait = WaitSignersParams {
        id: "ab".into(),
        signers: 3,
        timeout: None,
    };
    assert_eq!(
        params_json::<method::WaitForSigners>(&wait),
        json!({ "id": "ab", "signers": 3 })
    );
    assert_eq!(
        params_json::<method::WaitForSigners>(&WaitSignersParams {
            timeout: Some(500),
            ..wait
        }),
        json!({ "id": "ab", "signers": 3, "timeout": 500 })
    );
}

#[test]
fn an_answer_of_another_shape_does_not_parse() {
    let renamed = json!({ "id": "ab", "new": true, "sent": true });
    assert!(parse_response::<method::SubmitProposal>(renamed).is_err());
    assert_eq!(NAMES.len(), 16);
    assert!(NAMES.contains(&method::CastSignal::NAME));
    assert!(NAMES.contains(&method::WaitForSigners::NAME));
}

/// Every method has help, in the order of `NAMES`, and the parameters the help names are
/// exactly those its parameter type takes: each, given as a string (or a number), reads into the type and
/// comes back out under the same name; and each the help calls required is required.
#[test]
fn every_method_has_help_naming_its_real_parameters() {
    let helped: Vec<&str> = method::HELP.iter().map(|h| h.name).collect();
    assert_eq!(helped, NAMES);
    for help in method::HELP {
        assert!(
            !help.summary.is_empty() && !help.result.is_empty(),
            "{}",
            help.name
        );
        let all: serde_json::Map<String, Value> = help
            .params
            .iter()
            .map(|p| {
                let sample = match p.kind {
                    "string" => json!("x"),
                    "number" => json!(7),
                    other => panic!("{}: {}: kind {other}", help.name, p.name),
                };
                (p.name.to_string(), sample)
            })
            .collect();
        let back = method::params_round_trip(help.name, Value::Object(all.clone()))
            .expect("a known method")
            .unwrap_or_else(|e| panic!("{}: {e}", help.name));
        assert_eq!(back, Value::Object(all.clone()), "{}", help.name);
        for p in help.params.iter().filter(|p| p.required) {
            let mut without = all.clone();
            without.remove(p.name);
            let read = method::params_round_trip(help.name, Value::Object(without)).unwrap();
            assert!(read.is_err(), "{}: `{}` is not required", help.name, p.name);
        }
        assert!(
            method::help(help.name)
                .unwrap()
                .text()
                .contains(help.summary)
        );
    }
    assert!(method::params_round_trip("nosuchmethod", json!({})).is_none());
    assert_eq!(
        method::help("getuptime").unwrap().usage(),
        "getuptime [key]"
    );
    assert_eq!(
        method::help("signal").unwrap().usage(),
        "signal proposal choice"
    );
    assert_eq!(method::overview().lines().count(), NAMES.len());
}

#[test]
fn deployment_info_round_trips() {
    let wire = json!({
        "epoch": 9,
        "time": 1_795_240_505u64,
        "qualified_nodes": 3,
        "qualified_weight": 3.0,
        "proposals": [{
            "id": "ab".repeat(32),
            "tier": 1,
            "tier_name": "routine maintenance",
            "title": "t",
            "state": "locked",
            "lock_start": 1_795_240_500u64,
            "lock_end": 1_795_240_540u64,
            "lock_secs_left": 35,
            "next_state": "ready",
            "next_state_at": 1_795_240_540u64,
            "override_weight_share": 0.5,
            "override_node_share": 0.3333333333333333,
            "required_weight_share": 0.6,
            "required_node_share": 0.5,
            "override_met": false,
            "overridden_at_epoch": null,
            "signers": 1,
        }],
    });
    let info = round_trip::<method::GetDeploymentInfo>(wire);
    assert_eq!(info.proposals[0].next_state.as_deref(), Some("ready"));
}
