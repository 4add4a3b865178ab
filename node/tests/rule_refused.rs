//! `commonsd` refuses a network whose spec selects the tickets rule, which only `commons-sim`
//! runs: one line naming the rule and what to use instead, a non-zero exit, and no data
//! directory left half made.

use std::process::Command;

use commons_signaling::spec::TicketSpec;
use commons_signaling::{NetworkSpec, QualificationRule, SecretKey};

#[test]
fn a_tickets_network_is_refused_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let spec = NetworkSpec {
        name: "tickets-lab".into(),
        qualification: QualificationRule::Tickets,
        tickets: TicketSpec {
            anchors: (0..2)
                .map(|i| SecretKey::from_seed(&format!("anchor {i}")).public_key())
                .collect(),
            tickets_per_anchor: 100,
            anchors_required: 1,
        },
        ..NetworkSpec::regtest()
    };
    spec.validate("test").unwrap();
    let path = dir.path().join("tickets.toml");
    std::fs::write(&path, spec.to_toml()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_commonsd"))
        .env_remove("COMMONS_NETWORK")
        .env_remove("COMMONS_DATADIR")
        .arg("--datadir")
        .arg(dir.path().join("data"))
        .arg("--network")
        .arg(&path)
        .args([
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--rpc-bind",
            "127.0.0.1:0",
        ])
        .args(["--metrics-bind", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.contains("tickets") && last.contains("research") && last.contains("measurers"),
        "{err}"
    );
    assert!(
        !dir.path().join("data").join("tickets-lab").exists(),
        "{err}"
    );
}
