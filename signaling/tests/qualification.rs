//! The qualification rule in the network spec: measurers, their quorum and liveness, the
//! tickets rule, and spec files written before there was a choice.

use commons_signaling::spec::{
    MeasurerSpec, REGTEST_MEASURERS, regtest_maintainer_key, regtest_measurer_key,
    regtest_measurer_seed,
};
use commons_signaling::{NetworkSpec, QualificationRule, SecretKey, SpecError};

const NEW_FIELDS: [&str; 5] = [
    "qualification",
    "measurers",
    "measurer_quorum",
    "liveness_epochs",
    "tickets",
];

fn invalid_field(spec: &NetworkSpec) -> String {
    match spec.validate("test").unwrap_err() {
        SpecError::Invalid { field, .. } => field,
        other => panic!("expected an invalid field, got {other}"),
    }
}

#[test]
fn mainnet_and_testnet_keep_rule_v1_until_a_ceremony_and_regtest_runs_measurers() {
    for spec in [NetworkSpec::mainnet(), NetworkSpec::testnet()] {
        assert_eq!(spec.qualification, QualificationRule::PeerAttestations);
        assert!(spec.measurers.is_empty(), "{} lists measurers", spec.name);
        assert_eq!(spec.measurer_quorum, 5, "the intended quorum of nine");
    }
    let regtest = NetworkSpec::regtest();
    assert_eq!(regtest.qualification, QualificationRule::Measurers);
    assert_eq!(regtest.measurers.len(), REGTEST_MEASURERS);
    for (i, m) in regtest.measurers.iter().enumerate() {
        assert_eq!(m.key, regtest_measurer_key(i).public_key());
        assert_eq!(
            m.key,
            SecretKey::from_seed(&format!("commons-signal regtest measurer {i}")).public_key()
        );
        assert_eq!(
            regtest_measurer_seed(i),
            format!("commons-signal regtest measurer {i}")
        );
        assert!(!regtest.maintainers.contains(&m.key));
    }
    // Every measurer is measured by the others: three local nodes qualify each other
    // within a minute.
    assert!((regtest.measurer_quorum as usize) < REGTEST_MEASURERS);
    assert!(regtest.epoch_secs * u64::from(regtest.min_uptime_epochs + 1) < 60);
    assert!(regtest.liveness_epochs > regtest.min_uptime_epochs);
}

#[test]
fn regtest_runs_the_measurer_rule_and_its_rule_v1_twin_has_its_own_id() {
    let regtest = NetworkSpec::regtest();
    regtest.validate("regtest").unwrap();
    assert_eq!(regtest.qualification, QualificationRule::Measurers);
    let v1 = NetworkSpec::regtest_peer_attested();
    v1.validate("regtest").unwrap();
    assert_eq!(
        NetworkSpec {
            name: "regtest-v1".into(),
            qualification: QualificationRule::PeerAttestations,
            ..regtest.clone()
        },
        v1
    );
    assert_ne!(regtest.network_id(), v1.network_id());
}

#[test]
fn measurer_keys_quorum_liveness_and_rule_are_in_the_network_id_but_addresses_are_not() {
    let spec = NetworkSpec::regtest();
    let id = spec.network_id();

    let mut moved = spec.clone();
    moved.measurers[0]
        .addresses
        .push("/ip4/127.0.0.1/tcp/28733".into());
    assert_eq!(moved.network_id(), id);

    let mut changes: Vec<NetworkSpec> = Vec::new();
    let mut other_key = spec.clone();
    other_key.measurers[0].key = SecretKey::from_seed("another measurer").public_key();
    changes.push(other_key);
    let mut fewer = spec.clone();
    fewer.measurers.pop();
    changes.push(fewer);
    changes.push(NetworkSpec {
        measurer_quorum: 1,
        ..spec.clone()
    });
    changes.push(NetworkSpec {
        liveness_epochs: 11,
        ..spec.clone()
    });
    changes.push(NetworkSpec {
        qualification: QualificationRule::Tickets,
        ..spec.clone()
    });
    let mut tickets = spec.clone();
    tickets.tickets.tickets_per_anchor = 100;
    changes.push(tickets);
    for changed in changes {
        assert_ne!(changed.network_id(), id, "{changed:?}");
    }
}

#[test]
fn spec_files_without_the_new_fields_load_as_rule_v1() {
    let dir = tempfile::tempdir().unwrap();
    let spec = NetworkSpec::regtest();

    let mut json = serde_json::to_value(&spec).unwrap();
    for field in NEW_FIELDS {
        json.as_object_mut().unwrap().remove(field).unwrap();
    }
    let path = dir.path().join("old.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let loaded = NetworkSpec::load(&path).unwrap();
    assert_eq!(loaded.qualification, QualificationRule::PeerAttestations);
    assert!(loaded.measurers.is_empty());
    assert_eq!((loaded.measurer_quorum, loaded.liveness_epochs), (0, 0));
    assert_eq!(loaded.maintainers, spec.maintainers);

    let mut toml: toml::Table = toml::from_str(&spec.to_toml()).unwrap();
    for field in NEW_FIELDS {
        toml.remove(field).unwrap();
    }
    let path = dir.path().join("old.toml");
    std::fs::write(&path, toml::to_string(&toml).unwrap()).unwrap();
    assert_eq!(NetworkSpec::load(&path).unwrap(), loaded);
}

#[test]
fn measured_and_ticket_specs_round_trip_through_toml_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = NetworkSpec::regtest();
    spec.measurers[1].addresses = vec![
        "/ip4/127.0.0.1/tcp/28734".into(),
        "/dns4/measurer.example/tcp/8733".into(),
    ];
    let mut tickets = NetworkSpec {
        qualification: QualificationRule::Tickets,
        ..NetworkSpec::regtest()
    };
    tickets.tickets.anchors = (0..4)
        .map(|i| SecretKey::from_seed(&format!("anchor {i}")).public_key())
        .collect();
    tickets.tickets.tickets_per_anchor = 500;
    tickets.tickets.anchors_required = 2;
    for spec in [spec, tickets] {
        let toml_path = dir.path().join("spec.toml");
        std::fs::write(&toml_path, spec.to_toml()).unwrap();
        assert_eq!(NetworkSpec::load(&toml_path).unwrap(), spec);
        let json_path = dir.path().join("spec.json");
        std::fs::write(&json_path, serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(NetworkSpec::load(&json_path).unwrap(), spec);
    }
    assert!(
        NetworkSpec::regtest()
            .to_toml()
            .contains("qualification = \"measurers\"")
    );
}

#[test]
fn invalid_measurer_and_ticket_parameters_name_their_field() {
    let base = NetworkSpec::regtest();

    let spec = NetworkSpec {
        measurer_quorum: 4,
        ..base.clone()
    };
    assert_eq!(invalid_field(&spec), "measurer_quorum");
    let err = spec.validate("test").unwrap_err().to_string();
    assert!(err.contains("only 3 measurers"), "{err}");

    let spec = NetworkSpec {
        measurer_quorum: 0,
        ..base.clone()
    };
    assert_eq!(invalid_field(&spec), "measurer_quorum");
    // Under rule v1 a zero quorum is the default of older spec files, and valid.
    NetworkSpec {
        measurer_quorum: 0,
        ..NetworkSpec::regtest_peer_attested()
    }
    .validate("test")
    .unwrap();

    for liveness in [0, base.uptime_window_epochs + 1] {
        let spec = NetworkSpec {
            liveness_epochs: liveness,
            ..base.clone()
        };
        assert_eq!(invalid_field(&spec), "liveness_epochs", "{liveness}");
    }

    let mut twice = base.clone();
    twice.measurers.push(twice.measurers[0].clone());
    assert_eq!(invalid_field(&twice), "measurers.key");

    let mut maintainer = base.clone();
    maintainer.measurers.push(MeasurerSpec {
        key: regtest_maintainer_key(0).public_key(),
        addresses: vec![],
    });
    let err = maintainer.validate("test").unwrap_err().to_string();
    assert!(err.contains("also a maintainer"), "{err}");

    // Before the ceremony a network lists no measurers; its quorum may already be set.
    NetworkSpec {
        measurers: vec![],
        ..base.clone()
    }
    .validate("test")
    .unwrap();

    let mut tickets = NetworkSpec {
        qualification: QualificationRule::Tickets,
        ..NetworkSpec::regtest()
    };
    assert_eq!(invalid_field(&tickets), "tickets.tickets_per_anchor");
    tickets.tickets.tickets_per_anchor = 10;
    assert_eq!(invalid_field(&tickets), "tickets.anchors_required");
    tickets.tickets.anchors_required = 2;
    tickets.tickets.anchors = vec![SecretKey::from_seed("anchor").public_key()];
    assert_eq!(invalid_field(&tickets), "tickets.anchors_required");
    tickets.tickets.anchors.push(tickets.tickets.anchors[0]);
    assert_eq!(invalid_field(&tickets), "tickets.anchors");
    tickets.tickets.anchors[1] = SecretKey::from_seed("anchor 2").public_key();
    tickets.validate("test").unwrap();
}

#[test]
fn an_unknown_rule_name_is_a_parse_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.toml");
    let text = NetworkSpec::regtest().to_toml().replace(
        "qualification = \"measurers\"",
        "qualification = \"trust-me\"",
    );
    assert!(text.contains("trust-me"));
    std::fs::write(&path, text).unwrap();
    let err = NetworkSpec::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("trust-me") && err.contains("measurers"),
        "{err}"
    );
}
