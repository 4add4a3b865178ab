//! `--json` on every offline command, through the real binary: standard output is one JSON
//! document with the fields docs/CLI.md lists, errors still go to standard error with their
//! exit codes, and nothing else is printed.

mod common;

use common::{Run, Workdir};
use serde_json::Value;

const NET: &str = "net/spec.toml";

/// Runs `commons-cli --json ARGS`, asserts the exit code, and parses standard output as one
/// JSON document.
fn json(w: &Workdir, args: &[&str], code: i32) -> (Value, Run) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let run = w.run(&all).expect(code);
    let doc: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "`commons-cli {}`: stdout is not one JSON document ({e}):\n{}",
            all.join(" "),
            run.stdout
        )
    });
    if code == 0 {
        assert_eq!(run.stderr, "", "{all:?}");
    }
    (doc, run)
}

fn is_hex64(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[test]
fn keys_and_networks() {
    let w = Workdir::new();
    let (key, _) = json(&w, &["key", "generate", "--out", "a.key"], 0);
    assert!(is_hex64(&key["public_key"]), "{key}");
    assert_eq!(key["file"], "a.key");
    let (shown, _) = json(&w, &["key", "show", "a.key"], 0);
    assert_eq!(shown["public_key"], key["public_key"]);
    let (m, _) = json(
        &w,
        &["key", "regtest-maintainer", "0", "--out", "m0.key"],
        0,
    );
    assert_eq!(
        m["public_key"],
        commons_signaling::spec::regtest_maintainer_key(0)
            .public_key()
            .to_hex()
    );
    let (measurer, _) = json(&w, &["key", "regtest-measurer", "1", "--out", "q1.key"], 0);
    assert!(is_hex64(&measurer["public_key"]));
    // Errors: stderr and the exit code, as without --json, and nothing on stdout.
    let run = w.run(&["--json", "key", "show", "missing.key"]).expect(2);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "error: missing.key: no such file or directory\n"
    );

    let (net, _) = json(
        &w,
        &[
            "network",
            "init",
            "--out",
            "net",
            "--maintainers",
            "3",
            "--release-signers",
            "4",
            "--name",
            "jnet",
        ],
        0,
    );
    let spec = commons_signaling::NetworkSpec::load(&w.path("net/spec.toml")).unwrap();
    assert_eq!(net["network"], "jnet");
    assert_eq!(net["id"], spec.network_id().to_hex());
    assert_eq!(net["spec"], "net/spec.toml");
    let keys = net["keys"].as_array().unwrap();
    let roles: Vec<&str> = keys.iter().map(|k| k["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        [
            "maintainer",
            "maintainer",
            "maintainer",
            "release-signer",
            "measurer",
            "measurer",
            "measurer"
        ]
    );
    assert_eq!(keys[3]["file"], "net/release-signer-4.key");
    assert_eq!(keys[0]["public_key"], spec.maintainers[0].to_hex());
    assert_eq!(net["tiers"][0]["tier"], 1);
    assert_eq!(net["tiers"][0]["signatures_required"], 3);
    assert_eq!(net["tiers"][0]["maintainers"], 3);
    assert_eq!(net["tiers"][0]["min_lock_secs"], 35);
    assert_eq!(net["release_classes"][0]["class"], "consensus");
    assert_eq!(net["release_classes"][0]["signers"], 4);
    assert_eq!(net["measurer_quorum"], 2);
    assert_eq!(net["measurers"], 3);
}

#[test]
fn proposals() {
    let w = Workdir::new();
    w.init_network("net", 5);
    let (created, _) = json(
        &w,
        &[
            "--network",
            NET,
            "proposal",
            "create",
            "--tier",
            "1",
            "--title",
            "T",
            "--reference",
            "R",
            "--lock-start",
            "1800000000",
            "--out",
            "p.cbor",
        ],
        0,
    );
    assert!(is_hex64(&created["id"]));
    assert_eq!(created["network"], "net");
    assert!(is_hex64(&created["network_id"]));
    assert_eq!(created["tier"], 1);
    assert_eq!(created["tier_name"], "routine maintenance");
    assert_eq!(created["title"], "T");
    assert_eq!(created["reference"], "R");
    assert_eq!(created["lock_start"], 1_800_000_000u64);
    assert_eq!(created["lock_end"], 1_800_000_035u64);
    assert_eq!(created["counted"], 0);
    assert_eq!(created["required"], 3);
    assert_eq!(created["file"], "p.cbor");

    let sign = |k: u32| {
        json(
            &w,
            &[
                "--network",
                NET,
                "proposal",
                "sign",
                "p.cbor",
                "--key",
                &format!("net/maintainer-{k}.key"),
            ],
            0,
        )
        .0
    };
    let signed = sign(1);
    assert_eq!(signed["id"], created["id"]);
    assert!(is_hex64(&signed["signer"]));
    assert_eq!(signed["replaced"], false);
    assert_eq!(signed["counted"], 1);
    assert_eq!(signed["required"], 3);
    assert_eq!(signed["threshold_met"], false);
    assert_eq!(sign(1)["replaced"], true);

    // Invalid: the report on stdout, the error on stderr, exit 1.
    let (report, run) = json(&w, &["--network", NET, "proposal", "verify", "p.cbor"], 1);
    assert_eq!(report["valid"], false);
    assert_eq!(report["counted"], 1);
    assert_eq!(report["signatures"][0]["index"], 1);
    assert_eq!(report["signatures"][0]["fate"], "counted");
    assert_eq!(report["signatures"][0]["signer"], signed["signer"]);
    assert_eq!(
        run.stderr,
        "error: p.cbor: not valid on network net: 1 of 3 required maintainer signatures\n"
    );
    sign(2);
    assert_eq!(sign(4)["threshold_met"], true);
    let (report, _) = json(&w, &["--network", NET, "proposal", "verify", "p.cbor"], 0);
    assert_eq!(report["valid"], true);
    assert_eq!(report["signatures"].as_array().unwrap().len(), 3);
    assert_eq!(report["signatures"][2]["index"], 4);

    // Another network's keys are unknown there.
    w.init_network("other", 3);
    let (report, _) = json(
        &w,
        &[
            "--network",
            "other/spec.toml",
            "proposal",
            "verify",
            "p.cbor",
        ],
        1,
    );
    assert_eq!(report["signatures"][0]["index"], Value::Null);
    assert_eq!(report["signatures"][0]["fate"], "unknown-key");

    // decode was JSON already, and stays the same document.
    let (decoded, _) = json(&w, &["--network", NET, "decode", "p.cbor"], 0);
    let plain = w.on(NET, &["decode", "p.cbor"]).ok();
    assert_eq!(
        decoded,
        serde_json::from_str::<Value>(&plain.stdout).unwrap()
    );
    assert_eq!(decoded["kind"], "proposal");
}

#[test]
fn releases() {
    let w = Workdir::new();
    w.init_network("net", 5);
    w.write("dist/app.tar.gz", &[7u8; 1000]);
    w.write("dist/NOTES", b"notes\n");
    let (created, _) = json(
        &w,
        &[
            "--network",
            NET,
            "release",
            "create",
            "--channel",
            "stable",
            "--version",
            "1.2.0",
            "--class",
            "application",
            "--artifact",
            "dist/app.tar.gz",
            "dist/NOTES",
            "--source-commit",
            "abc123",
            "--out",
            "r.cbor",
        ],
        0,
    );
    assert!(is_hex64(&created["id"]));
    assert_eq!(created["network"], "net");
    assert_eq!(created["channel"], "stable");
    assert_eq!(created["version"], "1.2.0");
    assert_eq!(created["class"], "application");
    assert_eq!(created["signers"], 5);
    assert_eq!(created["required"], 3);
    assert_eq!(created["counted"], 0);
    assert_eq!(created["expired"], false);
    assert_eq!(
        created["expires"].as_u64().unwrap() - created["created"].as_u64().unwrap(),
        30 * 86_400
    );
    assert_eq!(created["source_commit"], "abc123");
    assert_eq!(created["build_hash"], Value::Null);
    assert_eq!(created["ots_proof_bytes"], Value::Null);
    assert_eq!(created["artifacts"][0]["name"], "app.tar.gz");
    assert_eq!(created["artifacts"][0]["size"], 1000);
    assert!(is_hex64(&created["artifacts"][0]["sha256"]));
    assert_eq!(created["artifacts"][1]["name"], "NOTES");
    assert_eq!(created["file"], "r.cbor");

    let release = |args: &[&str], code| {
        let mut all = vec!["--network", NET, "release"];
        all.extend_from_slice(args);
        json(&w, &all, code)
    };
    let (signed, _) = release(&["sign", "r.cbor", "--key", "net/maintainer-1.key"], 0);
    assert_eq!(signed["id"], created["id"]);
    assert_eq!(signed["counted"], 1);
    assert_eq!(signed["replaced"], false);
    assert_eq!(signed["threshold_met"], false);
    for k in [2, 3] {
        let (detached, _) = release(
            &[
                "sign",
                "r.cbor",
                "--key",
                &format!("net/maintainer-{k}.key"),
                "--detached",
                &format!("m{k}.sig"),
            ],
            0,
        );
        assert_eq!(detached["detached"], format!("m{k}.sig"));
        assert_eq!(detached["file"], "r.cbor");
        assert!(is_hex64(&detached["signer"]));
    }
    let (combined, _) = release(&["combine", "r.cbor", "m2.sig", "m3.sig"], 0);
    assert_eq!(combined["added"][1]["file"], "m3.sig");
    assert!(is_hex64(&combined["added"][0]["signer"]));
    assert_eq!(combined["counted"], 3);
    assert_eq!(combined["threshold_met"], true);

    let (verified, _) = release(&["verify", "r.cbor", "--artifacts", "dist"], 0);
    assert_eq!(verified["valid"], true);
    assert_eq!(verified["problems"], serde_json::json!([]));
    assert_eq!(verified["artifacts_checked"], true);
    assert_eq!(verified["artifacts"][0]["check"], "ok");
    assert_eq!(verified["artifacts"][0]["problem"], Value::Null);
    assert_eq!(verified["signatures"].as_array().unwrap().len(), 3);
    assert_eq!(verified["signatures"][1]["index"], 2);
    let (unchecked, _) = release(&["verify", "r.cbor"], 0);
    assert_eq!(unchecked["artifacts"][1]["check"], "not-checked");
    assert_eq!(unchecked["artifacts_checked"], false);

    w.write("dist/NOTES", b"Notes\n");
    let (failed, run) = release(&["verify", "r.cbor", "--artifacts", "dist"], 1);
    assert_eq!(failed["valid"], false);
    assert_eq!(failed["artifacts"][0]["check"], "ok");
    assert_eq!(failed["artifacts"][1]["check"], "failed");
    let problem = failed["artifacts"][1]["problem"].as_str().unwrap();
    assert!(problem.starts_with("NOTES: SHA-256 "), "{problem}");
    assert_eq!(failed["problems"][0], format!("artifact {problem}"));
    assert_eq!(run.stderr, format!("error: r.cbor: artifact {problem}\n"));
}

#[test]
fn help_lists_every_method() {
    let w = Workdir::new();
    let (all, _) = json(&w, &["help"], 0);
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = commons_rpc::method::HELP.iter().map(|h| h.name).collect();
    assert_eq!(names, expected);
    let (one, _) = json(&w, &["help", "getuptime"], 0);
    assert_eq!(one["name"], "getuptime");
    assert!(one["summary"].as_str().unwrap().contains("uptime"));
    assert_eq!(one["params"][0]["name"], "key");
    assert_eq!(one["params"][0]["type"], "string");
    assert_eq!(one["params"][0]["required"], false);
    assert!(one["result"].is_string());
    let run = w.run(&["--json", "help", "nosuch"]).expect(2);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.starts_with("error: help: unknown method"));
}
