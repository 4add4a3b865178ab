//! Network specs: built-ins, files, validation and network ids.

use commons_signaling::{NetworkSpec, SpecError};

#[test]
fn builtins_are_valid_and_distinct() {
    let specs = [
        NetworkSpec::mainnet(),
        NetworkSpec::testnet(),
        NetworkSpec::regtest(),
    ];
    for spec in &specs {
        spec.validate(&spec.name).unwrap();
    }
    let ids: std::collections::BTreeSet<_> = specs.iter().map(|s| s.network_id()).collect();
    assert_eq!(ids.len(), 3);
}

#[test]
fn regtest_qualifies_a_node_in_under_a_minute_and_splits_loopback() {
    let spec = NetworkSpec::regtest();
    assert!(spec.epoch_secs * u64::from(spec.min_uptime_epochs + 1) < 60);
    assert!(spec.allow_unroutable);
    assert!(
        spec.netgroup_ipv4_prefix >= 24,
        "127.0.0.0/8 must split into several groups"
    );
    assert_eq!(spec.maintainers.len(), 5);
}

#[test]
fn reference_numbers_of_mainnet() {
    let spec = NetworkSpec::mainnet();
    let locks: Vec<(u8, u32, u64)> = spec
        .tiers
        .iter()
        .map(|t| (t.tier, t.signatures_required, t.min_lock_secs / 86_400))
        .collect();
    assert_eq!(
        locks,
        vec![(1, 3, 7), (2, 4, 30), (3, 5, 90), (4, 4, 0), (5, 5, 180)]
    );
    assert_eq!(
        spec.epoch_secs * u64::from(spec.min_uptime_epochs),
        90 * 86_400
    );
    let thresholds: Vec<u32> = spec.release_classes.iter().map(|c| c.threshold).collect();
    assert_eq!(thresholds, vec![6, 4, 3]);
}

#[test]
fn bootstrap_peers_do_not_change_the_network_id() {
    let mut spec = NetworkSpec::regtest();
    let id = spec.network_id();
    spec.bootstrap.push("/ip4/127.0.0.1/tcp/1".into());
    assert_eq!(spec.network_id(), id);
    spec.tiers[0].override_weight_share = 0.5;
    assert_ne!(spec.network_id(), id);
}

#[test]
fn toml_and_json_files_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let spec = NetworkSpec::regtest();
    let toml_path = dir.path().join("spec.toml");
    std::fs::write(&toml_path, spec.to_toml()).unwrap();
    assert_eq!(NetworkSpec::load(&toml_path).unwrap(), spec);
    let json_path = dir.path().join("spec.json");
    std::fs::write(&json_path, serde_json::to_string(&spec).unwrap()).unwrap();
    let loaded = NetworkSpec::resolve(json_path.to_str().unwrap()).unwrap();
    assert_eq!(loaded.network_id(), spec.network_id());
}

/// Found by fuzzing (`spec_toml`): a share written with many digits parsed from TOML to one
/// float and from that float's own JSON to its neighbour, so a spec and its JSON had two
/// network ids. Every float of a spec reads back exactly from either form.
#[test]
fn shares_read_back_exactly_from_json_and_toml() {
    let dir = tempfile::tempdir().unwrap();
    for share in [
        1.1103124481323361e-31,
        0.1 + 0.2,
        2.0f64.powi(-1074) * 3.0,
        0.999_999_999_999_999_9,
        std::f64::consts::FRAC_1_SQRT_2,
    ] {
        let mut spec = NetworkSpec::regtest();
        spec.tiers[0].override_weight_share = share;
        spec.tiers[0].override_node_share = share;
        let json_path = dir.path().join("spec.json");
        std::fs::write(&json_path, serde_json::to_string(&spec).unwrap()).unwrap();
        let from_json: NetworkSpec =
            serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
        assert_eq!(
            from_json.tiers[0].override_weight_share.to_bits(),
            share.to_bits()
        );
        assert_eq!(from_json.network_id(), spec.network_id(), "{share:e}");
        let from_toml: NetworkSpec = toml::from_str(&spec.to_toml()).unwrap();
        assert_eq!(
            from_toml.tiers[0].override_node_share.to_bits(),
            share.to_bits()
        );
        assert_eq!(from_toml.network_id(), spec.network_id(), "{share:e}");
    }
    // The fuzzer's input: the decimal as the spec's author wrote it, in TOML, and the JSON
    // of what it reads as.
    let text = NetworkSpec::mainnet().to_toml().replace(
        "override_weight_share = 0.",
        "override_weight_share = 0.00000000000000000000000000000011103124481323361170 # was 0.",
    );
    let from_toml: NetworkSpec = toml::from_str(&text).unwrap();
    let from_json: NetworkSpec =
        serde_json::from_str(&serde_json::to_string(&from_toml).unwrap()).unwrap();
    assert_eq!(from_json, from_toml);
    assert_eq!(from_json.network_id(), from_toml.network_id());
}

#[test]
fn invalid_spec_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.toml");
    let mut spec = NetworkSpec::regtest();
    spec.min_uptime_epochs = spec.uptime_window_epochs + 1;
    std::fs::write(&path, spec.to_toml()).unwrap();
    let err = NetworkSpec::load(&path).unwrap_err();
    assert!(
        matches!(&err, SpecError::Invalid { field, .. } if field == "min_uptime_epochs"),
        "{err}"
    );
    assert!(err.to_string().contains("spec.toml"));

    let mut spec = NetworkSpec::regtest();
    spec.tiers[1].signatures_required = 9;
    std::fs::write(&path, spec.to_toml()).unwrap();
    let err = NetworkSpec::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("signatures_required") && err.contains("only 5 maintainers"),
        "{err}"
    );
}

#[test]
fn unknown_field_and_syntax_errors_are_reported_with_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.toml");
    std::fs::write(
        &path,
        NetworkSpec::regtest()
            .to_toml()
            .replace("epoch_secs", "epoch_seconds"),
    )
    .unwrap();
    let err = NetworkSpec::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("epoch_seconds") && err.contains("line"),
        "{err}"
    );

    let json = dir.path().join("spec.json");
    std::fs::write(&json, "{\n  \"name\": \"x\",\n  oops\n}").unwrap();
    let err = NetworkSpec::load(&json).unwrap_err().to_string();
    assert!(err.contains("line 3"), "{err}");
}

#[test]
fn unknown_network_gets_a_helpful_message() {
    let err = NetworkSpec::resolve("mainnet-typo")
        .unwrap_err()
        .to_string();
    assert!(err.contains("mainnet, testnet, regtest"), "{err}");
}

#[test]
fn epochs_are_floor_of_time_over_length() {
    let spec = NetworkSpec::mainnet();
    assert_eq!(spec.epoch_at(86_399), 0);
    assert_eq!(spec.epoch_at(86_400), 1);
}

/// Regression (issue 13, known finding): a JSON spec with a u64 above `i64::MAX` passed
/// `load` and `validate`, then `to_toml` panicked. Validation now bounds every duration, so
/// each of these is refused with the field named, and what it accepts TOML can hold.
#[test]
fn absurd_durations_are_refused_and_json_and_toml_accept_the_same_specs() {
    use commons_signaling::spec::{MAX_DURATION_SECS, MAX_EPOCH_SECS};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.json");
    let load_json = |value: &serde_json::Value| {
        std::fs::write(&path, value.to_string()).unwrap();
        NetworkSpec::load(&path)
    };
    let base = serde_json::to_value(NetworkSpec::regtest()).unwrap();
    let cases: [(&[&str], &str); 7] = [
        (&["epoch_secs"], "epoch_secs"),
        (&["max_clock_skew_secs"], "max_clock_skew_secs"),
        (&["activation", "ready_secs"], "activation.ready_secs"),
        (&["activation", "testnet_secs"], "activation.testnet_secs"),
        (&["activation", "signet_secs"], "activation.signet_secs"),
        (
            &["activation", "mainnet_opt_in_secs"],
            "activation.mainnet_opt_in_secs",
        ),
        (&["tiers", "0", "min_lock_secs"], "tiers.min_lock_secs"),
    ];
    for (pointer, field) in cases {
        for absurd in [u64::MAX, i64::MAX as u64 + 1, MAX_DURATION_SECS + 1] {
            let mut value = base.clone();
            let slot = pointer
                .iter()
                .fold(&mut value, |v, key| match key.parse::<usize>() {
                    Ok(i) => &mut v[i],
                    Err(_) => &mut v[*key],
                });
            *slot = absurd.into();
            let err = load_json(&value).unwrap_err();
            assert!(
                matches!(&err, SpecError::Invalid { field: f, .. } if f == field),
                "{field} = {absurd}: {err}"
            );
        }
    }

    // A window of u32::MAX one-year epochs overflows any clock.
    let mut value = base.clone();
    value["epoch_secs"] = MAX_EPOCH_SECS.into();
    value["uptime_window_epochs"] = u32::MAX.into();
    let err = load_json(&value).unwrap_err().to_string();
    assert!(err.contains("uptime_window_epochs"), "{err}");

    // The largest values accepted load from JSON, write as TOML and load back the same.
    let mut value = base.clone();
    value["epoch_secs"] = MAX_EPOCH_SECS.into();
    value["uptime_window_epochs"] = 100.into();
    value["max_clock_skew_secs"] = MAX_DURATION_SECS.into();
    value["activation"]["mainnet_opt_in_secs"] = MAX_DURATION_SECS.into();
    value["tiers"][0]["min_lock_secs"] = MAX_DURATION_SECS.into();
    let from_json = load_json(&value).unwrap();
    let toml_path = dir.path().join("spec.toml");
    std::fs::write(&toml_path, from_json.to_toml()).unwrap();
    assert_eq!(NetworkSpec::load(&toml_path).unwrap(), from_json);
}
