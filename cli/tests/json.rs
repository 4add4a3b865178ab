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
    json_with(w, args, &[], None, code)
}

/// [`json`] with environment variables and standard input, as [`Workdir::run_with`] takes.
fn json_with(
    w: &Workdir,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&[u8]>,
    code: i32,
) -> (Value, Run) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let run = w.run_with(&all, env, stdin).expect(code);
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

const PASS: [(&str, &str); 1] = [("COMMONS_PASSPHRASE", "correct horse battery staple")];

/// The sorted field names of a JSON object, to show that a document holds these and no more.
fn fields(doc: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = doc
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names
}

#[test]
fn key_files_backups_and_detached_signatures() {
    let w = Workdir::new();
    let (plain, run) = json(&w, &["key", "generate", "--out", "a.key"], 0);
    let secret = String::from_utf8(w.read("a.key"))
        .unwrap()
        .trim()
        .to_string();
    assert!(!run.stdout.contains(&secret));
    assert_eq!(plain["encrypted"], false);
    let (sealed, _) = json_with(
        &w,
        &["key", "generate", "--encrypt", "--out", "e.key"],
        &PASS,
        None,
        0,
    );
    assert_eq!(fields(&sealed), ["encrypted", "file", "public_key"]);
    assert!(is_hex64(&sealed["public_key"]));
    assert_eq!(sealed["encrypted"], true);
    assert_eq!(sealed["file"], "e.key");
    let (shown, _) = json(&w, &["key", "show", "e.key"], 0);
    assert_eq!(shown, sealed);

    let (encrypted, run) = json_with(&w, &["key", "encrypt", "a.key"], &PASS, None, 0);
    assert!(!run.stdout.contains(&secret));
    assert_eq!(encrypted["public_key"], plain["public_key"]);
    assert_eq!(encrypted["encrypted"], true);
    assert_eq!(encrypted["file"], "a.key");
    assert_eq!(json(&w, &["key", "show", "a.key"], 0).0["encrypted"], true);
    // Encrypting twice is the same error as without --json, and prints no document.
    let run = w
        .run_with(&["--json", "key", "encrypt", "a.key"], &PASS, None)
        .expect(2);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.starts_with("error: a.key: is encrypted already"));

    // With --out the document names the backup file and holds no secret.
    let (to_file, run) = json_with(
        &w,
        &["key", "export", "a.key", "--out", "a.backup"],
        &PASS,
        None,
        0,
    );
    assert_eq!(fields(&to_file), ["backup_file", "file", "public_key"]);
    assert_eq!(to_file["backup_file"], "a.backup");
    assert_eq!(to_file["public_key"], plain["public_key"]);
    let written: String = String::from_utf8(w.read("a.backup"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert!(written.starts_with("commonssecret1"), "{written}");
    let compact_stdout: String = run.stdout.split_whitespace().collect();
    // No twelve characters of the secret part, grouped or not, are on stdout.
    let data = &written["commonssecret1".len()..];
    for start in 0..data.len() - 12 {
        assert!(
            !compact_stdout.contains(&data[start..start + 12]),
            "a piece of the backup is on stdout: {}",
            run.stdout
        );
    }
    // Without --out the backup is the document, ungrouped, and restores the same key.
    let (exported, _) = json_with(&w, &["key", "export", "a.key"], &PASS, None, 0);
    assert_eq!(fields(&exported), ["backup", "file", "public_key"]);
    assert_eq!(exported["backup"], written.as_str());
    assert_eq!(exported["file"], "a.key");
    let backup = exported["backup"].as_str().unwrap().as_bytes();
    let (imported, _) = json_with(
        &w,
        &["key", "import", "--out", "b.key"],
        &[],
        Some(backup),
        0,
    );
    assert_eq!(imported["public_key"], plain["public_key"]);
    assert_eq!(imported["encrypted"], false);
    assert_eq!(imported["file"], "b.key");
    assert_eq!(String::from_utf8(w.read("b.key")).unwrap().trim(), secret);
    let (sealed_import, _) = json_with(
        &w,
        &["key", "import", "--encrypt", "--out", "c.key"],
        &PASS,
        Some(backup),
        0,
    );
    assert_eq!(sealed_import["public_key"], plain["public_key"]);
    assert_eq!(sealed_import["encrypted"], true);
    let run = w
        .run_with(
            &["--json", "key", "export", "a.key"],
            &[("COMMONS_PASSPHRASE", "wrong")],
            None,
        )
        .expect(2);
    assert_eq!(run.stdout, "");

    let digest = "ab".repeat(32);
    let (signed, _) = json_with(
        &w,
        &[
            "key",
            "sign-digest",
            &digest,
            "--key",
            "a.key",
            "--out",
            "d.sig",
        ],
        &PASS,
        None,
        0,
    );
    assert_eq!(fields(&signed), ["detached", "digest", "signer"]);
    assert_eq!(signed["digest"], digest.as_str());
    assert_eq!(signed["signer"], plain["public_key"]);
    assert_eq!(signed["detached"], "d.sig");
    let (decoded, _) = json(&w, &["decode", "d.sig"], 0);
    assert!(
        decoded
            .to_string()
            .contains(plain["public_key"].as_str().unwrap())
    );
    let run = w
        .run_with(
            &[
                "--json",
                "key",
                "sign-digest",
                &digest,
                "--key",
                "a.key",
                "--out",
                "d.sig",
            ],
            &PASS,
            None,
        )
        .expect(2);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "error: d.sig: exists already; refusing to overwrite it\n"
    );
}

#[test]
fn spec_ceremony() {
    let w = Workdir::new();
    let key = |name: &str| {
        let (doc, _) = json(&w, &["key", "generate", "--out", &format!("{name}.key")], 0);
        doc["public_key"].as_str().unwrap().to_string()
    };
    let maintainers: Vec<String> = ["k1", "k2", "k3"].iter().map(|n| key(n)).collect();
    let measurers: Vec<String> = ["q1", "q2"].iter().map(|n| key(n)).collect();
    let spec = |args: &[&str], code| {
        let mut all = vec!["spec"];
        all.extend_from_slice(args);
        json(&w, &all, code)
    };

    let (new, _) = spec(
        &[
            "new", "--name", "cer", "--base", "regtest", "--out", "s.toml",
        ],
        0,
    );
    assert_eq!(
        fields(&new),
        ["complete", "file", "id", "missing", "network"]
    );
    assert_eq!(new["network"], "cer");
    assert!(is_hex64(&new["id"]));
    assert_eq!(new["complete"], false);
    assert_eq!(new["file"], "s.toml");
    assert!(
        new["missing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m.as_str().is_some_and(
                |m| m.starts_with("tier 1 needs ") && m.ends_with(", 0 maintainers listed")
            )),
        "{new}"
    );

    let mut id = new["id"].clone();
    for public in &maintainers {
        let (added, _) = spec(&["add-maintainer", "s.toml", public], 0);
        assert_eq!(added["public_key"], public.as_str());
        assert_eq!(added["network"], "cer");
        assert_ne!(added["id"], id, "every key changes the network id");
        id = added["id"].clone();
        let (signer, _) = spec(
            &[
                "add-release-signer",
                "s.toml",
                public,
                "--class",
                "consensus",
                "protocol",
            ],
            0,
        );
        assert_eq!(
            signer["classes"],
            serde_json::json!(["consensus", "protocol"])
        );
        let (signer, _) = spec(
            &[
                "add-release-signer",
                "s.toml",
                public,
                "--class",
                "protocol",
                "application",
            ],
            0,
        );
        // Only the class it was not in yet.
        assert_eq!(signer["classes"], serde_json::json!(["application"]));
    }
    let (removed, _) = spec(&["remove-maintainer", "s.toml", &maintainers[2]], 0);
    assert_eq!(removed["public_key"], maintainers[2].as_str());
    spec(&["add-maintainer", "s.toml", &maintainers[2]], 0);
    let (unsigned, _) = spec(&["remove-release-signer", "s.toml", &maintainers[2]], 0);
    assert_eq!(
        unsigned["classes"],
        serde_json::json!(["consensus", "protocol", "application"])
    );
    spec(
        &[
            "add-release-signer",
            "s.toml",
            &maintainers[2],
            "--class",
            "consensus",
            "protocol",
            "application",
        ],
        0,
    );
    let (measurer, _) = spec(
        &[
            "add-measurer",
            "s.toml",
            &measurers[0],
            "--address",
            "/ip4/127.0.0.1/tcp/4001",
        ],
        0,
    );
    assert_eq!(measurer["public_key"], measurers[0].as_str());
    assert_eq!(
        measurer["addresses"],
        serde_json::json!(["/ip4/127.0.0.1/tcp/4001"])
    );
    let (gone, _) = spec(&["remove-measurer", "s.toml", &measurers[0]], 0);
    assert_eq!(gone["public_key"], measurers[0].as_str());
    for q in &measurers {
        spec(
            &[
                "add-measurer",
                "s.toml",
                q,
                "--address",
                "/dns4/m.example.org/tcp/8733",
            ],
            0,
        );
    }
    // An edit that fails prints no document, as without --json.
    let run = w
        .run(&[
            "--json",
            "spec",
            "add-maintainer",
            "s.toml",
            &maintainers[0],
        ])
        .expect(2);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains("is a maintainer already"),
        "{}",
        run.stderr
    );

    let (tiers, _) = spec(
        &[
            "set-threshold",
            "s.toml",
            "3",
            "--tier",
            "1",
            "2",
            "3",
            "4",
            "5",
        ],
        0,
    );
    assert_eq!(tiers["threshold"], 3);
    assert_eq!(tiers["tiers"], serde_json::json!([1, 2, 3, 4, 5]));
    assert_eq!(tiers["classes"], serde_json::json!([]));
    assert_eq!(tiers["measurers"], false);
    let (quorum, _) = spec(&["set-threshold", "s.toml", "2", "--measurers"], 0);
    assert_eq!(quorum["measurers"], true);
    assert_eq!(quorum["tiers"], serde_json::json!([]));
    let (classes, _) = spec(
        &[
            "set-threshold",
            "s.toml",
            "2",
            "--class",
            "consensus",
            "protocol",
            "application",
        ],
        0,
    );
    assert_eq!(
        classes["classes"],
        serde_json::json!(["consensus", "protocol", "application"])
    );
    assert_eq!(classes["complete"], true, "{classes}");
    assert_eq!(classes["missing"], serde_json::json!([]));

    let (show, _) = spec(&["show", "s.toml"], 0);
    assert_eq!(show["id"], classes["id"]);
    assert_eq!(show["complete"], true);
    assert_eq!(show["maintainers"], serde_json::json!(maintainers));
    assert_eq!(show["tiers"][0]["tier"], 1);
    assert_eq!(show["tiers"][0]["signatures_required"], 3);
    assert_eq!(show["tiers"][0]["maintainers"], 3);
    assert!(show["tiers"][0]["name"].is_string());
    assert_eq!(show["release_classes"][2]["class"], "application");
    assert_eq!(show["release_classes"][2]["threshold"], 2);
    assert_eq!(show["release_classes"][2]["signers"], 3);
    assert_eq!(
        show["release_classes"][2]["keys"],
        serde_json::json!(maintainers)
    );
    assert_eq!(show["measurer_quorum"], 2);
    assert_eq!(show["measurers"], 2);
    assert_eq!(
        show["measurer_keys"][1]["public_key"],
        measurers[1].as_str()
    );
    assert_eq!(
        show["measurer_keys"][1]["addresses"],
        serde_json::json!(["/dns4/m.example.org/tcp/8733"])
    );
    assert!(show["qualification"].is_string());
    assert_eq!(show["spec_signatures_required"], 3);
    assert!(show["epoch_secs"].as_u64().unwrap() > 0);
    assert!(show["min_uptime_epochs"].is_u64());
    assert!(show["uptime_window_epochs"].is_u64());

    let (spec_id, _) = spec(&["id", "s.toml"], 0);
    assert_eq!(spec_id["id"], show["id"]);
    assert_eq!(spec_id["network"], "cer");
    let plain_id = w.run(&["spec", "id", "s.toml"]).ok().stdout;
    assert_eq!(spec_id["id"], plain_id.trim());
    let (digest, _) = spec(&["digest", "s.toml"], 0);
    assert_eq!(digest["id"], show["id"]);
    assert!(is_hex64(&digest["digest"]));
    assert_ne!(digest["digest"], digest["id"]);

    let (signed, _) = spec(&["sign", "s.toml", "--key", "k1.key", "--out", "k1.sig"], 0);
    assert_eq!(signed["signer"], maintainers[0].as_str());
    assert_eq!(signed["detached"], "k1.sig");
    assert_eq!(signed["id"], show["id"]);
    assert_eq!(signed["file"], "s.toml");
    // The offline path: sign the digest alone.
    let digest_hex = digest["digest"].as_str().unwrap();
    json(
        &w,
        &[
            "key",
            "sign-digest",
            digest_hex,
            "--key",
            "k2.key",
            "--out",
            "k2.sig",
        ],
        0,
    );
    json(
        &w,
        &[
            "key",
            "sign-digest",
            digest_hex,
            "--key",
            "q1.key",
            "--out",
            "q1.sig",
        ],
        0,
    );

    // Two of three: the report on stdout, the error on stderr, exit 1.
    let (report, run) = spec(&["verify", "s.toml", "k1.sig", "k2.sig", "q1.sig"], 1);
    assert_eq!(report["valid"], false);
    assert_eq!(report["counted"], 2);
    assert_eq!(report["required"], 3);
    assert_eq!(report["digest"], digest["digest"]);
    assert_eq!(report["id"], show["id"]);
    assert_eq!(report["signatures"][0]["index"], 1);
    assert_eq!(report["signatures"][0]["fate"], "counted");
    assert_eq!(report["signatures"][0]["file"], "k1.sig");
    assert_eq!(report["signatures"][1]["index"], 2);
    assert_eq!(report["signatures"][2]["index"], Value::Null);
    assert_eq!(report["signatures"][2]["fate"], "unknown-key");
    assert_eq!(report["signatures"][2]["signer"], measurers[0].as_str());
    assert_eq!(
        run.stderr,
        "error: s.toml: 2 of 3 required maintainer signatures over the spec\n"
    );
    spec(&["sign", "s.toml", "--key", "k3.key", "--out", "k3.sig"], 0);
    let (report, _) = spec(
        &["verify", "s.toml", "k1.sig", "k2.sig", "k3.sig", "k1.sig"],
        0,
    );
    assert_eq!(report["valid"], true);
    assert_eq!(report["counted"], 3);
    assert_eq!(report["signatures"][3]["fate"], "duplicate-signer");
    // A signature file that cannot be read is an input error: no report at all.
    let run = w
        .run(&["--json", "spec", "verify", "s.toml", "none.sig"])
        .expect(2);
    assert_eq!(run.stdout, "");
}

#[test]
fn offline_digests_and_attached_signatures() {
    let w = Workdir::new();
    w.init_network("net", 5);
    w.on(
        NET,
        &[
            "proposal",
            "create",
            "--tier",
            "1",
            "--title",
            "T",
            "--reference",
            "R",
            "--out",
            "p.cbor",
        ],
    )
    .ok();
    let (digest, _) = json(&w, &["--network", NET, "proposal", "digest", "p.cbor"], 0);
    assert_eq!(
        fields(&digest),
        ["digest", "file", "id", "network", "network_id"]
    );
    assert!(is_hex64(&digest["digest"]));
    assert_eq!(digest["id"], digest["digest"]);
    assert_eq!(digest["network"], "net");
    assert_eq!(digest["file"], "p.cbor");
    let plain = w.on(NET, &["proposal", "digest", "p.cbor"]).ok().stdout;
    assert_eq!(digest["digest"], plain.trim());
    let d = digest["digest"].as_str().unwrap().to_string();
    for k in [1, 2] {
        w.run(&[
            "key",
            "sign-digest",
            &d,
            "--key",
            &format!("net/maintainer-{k}.key"),
            "--out",
            &format!("p{k}.sig"),
        ])
        .ok();
    }
    let (attached, _) = json(
        &w,
        &[
            "--network",
            NET,
            "proposal",
            "attach",
            "p.cbor",
            "p1.sig",
            "p2.sig",
        ],
        0,
    );
    assert_eq!(attached["id"], digest["id"]);
    assert_eq!(attached["added"][0]["file"], "p1.sig");
    assert_eq!(attached["added"][1]["file"], "p2.sig");
    assert!(is_hex64(&attached["added"][1]["signer"]));
    assert_eq!(attached["counted"], 2);
    assert_eq!(attached["required"], 3);
    assert_eq!(attached["threshold_met"], false);
    assert_eq!(attached["file"], "p.cbor");
    // A signature over something else is refused with no document.
    w.run(&[
        "key",
        "sign-digest",
        &"00".repeat(32),
        "--key",
        "net/maintainer-3.key",
        "--out",
        "bad.sig",
    ])
    .ok();
    let run = w
        .run(&[
            "--json",
            "--network",
            NET,
            "proposal",
            "attach",
            "p.cbor",
            "bad.sig",
        ])
        .expect(2);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains("is not over this proposal"),
        "{}",
        run.stderr
    );

    w.create_release(NET, "app", "r.cbor");
    let (digest, _) = json(&w, &["--network", NET, "release", "digest", "r.cbor"], 0);
    assert_eq!(
        fields(&digest),
        ["digest", "file", "id", "network", "network_id"]
    );
    assert_eq!(digest["id"], digest["digest"]);
    let plain = w.on(NET, &["release", "digest", "r.cbor"]).ok().stdout;
    assert_eq!(digest["digest"], plain.trim());
    assert_eq!(digest["file"], "r.cbor");
}

#[test]
fn man_pages_lists_the_files_written() {
    let w = Workdir::new();
    let (doc, _) = json(&w, &["man-pages", "man"], 0);
    let files: Vec<&str> = doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    assert!(files.contains(&"man/commons-cli.1"), "{files:?}");
    assert!(
        files.contains(&"man/commons-cli-spec-verify.1"),
        "{files:?}"
    );
    for file in &files {
        assert!(w.path(file).is_file(), "{file}");
    }
}
