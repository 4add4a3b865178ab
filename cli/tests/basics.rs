//! Keys, networks, decoding and usage errors, run through the real binary.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Workdir, chmod};

#[test]
fn keys_show_only_their_public_half() {
    let w = Workdir::new();
    let generated = w.run(&["key", "generate", "--out", "alice.key"]).ok();
    let public = generated.stdout.trim().to_string();
    assert_eq!(public.len(), 64, "{public}");
    let secret = String::from_utf8(w.read("alice.key")).unwrap();
    assert!(!generated.stdout.contains(secret.trim()) && !generated.stderr.contains(secret.trim()));
    let mode = std::fs::metadata(w.path("alice.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    let shown = w.run(&["key", "show", "alice.key"]).ok();
    assert_eq!(shown.stdout.trim(), public);
    assert!(!shown.stdout.contains(secret.trim()));

    // Never overwritten.
    w.run(&["key", "generate", "--out", "alice.key"])
        .expect(2)
        .stderr_has("alice.key: file exists already");
    assert_eq!(String::from_utf8(w.read("alice.key")).unwrap(), secret);

    // A key others can read is refused, with the fix in the message.
    chmod(&w.path("alice.key"), 0o644);
    w.run(&["key", "show", "alice.key"])
        .expect(2)
        .stderr_has("alice.key: key file is readable by other users")
        .stderr_has("chmod 600 alice.key");

    w.write("junk.key", b"not a key\n");
    chmod(&w.path("junk.key"), 0o600);
    w.run(&["key", "show", "junk.key"])
        .expect(2)
        .stderr_has("junk.key: not a secret key file");
    w.run(&["key", "show", "nobody.key"])
        .expect(2)
        .stderr_has("nobody.key: no such file or directory");
}

#[test]
fn network_init_writes_a_usable_network() {
    let w = Workdir::new();
    let run = w
        .run(&[
            "network",
            "init",
            "--out",
            "small",
            "--maintainers",
            "2",
            "--name",
            "small-net",
        ])
        .ok()
        .stdout_has("network small-net")
        .stdout_has("tier 1 routine maintenance  2 of 2")
        .stdout_has("application  2 of 2");
    assert!(run.stdout.contains("id          "), "{}", run.stdout);
    for file in ["small/maintainer-1.key", "small/maintainer-2.key"] {
        let mode = std::fs::metadata(w.path(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    assert!(!w.path("small/maintainer-3.key").exists());
    let spec = commons_signaling::NetworkSpec::load(&w.path("small/spec.toml")).unwrap();
    assert_eq!(spec.name, "small-net");
    assert_eq!(spec.maintainers.len(), 2);
    assert!(run.stdout.contains(&spec.network_id().to_hex()));

    // The keys it wrote are the maintainers it lists.
    let shown = w.run(&["key", "show", "small/maintainer-2.key"]).ok();
    assert_eq!(shown.stdout.trim(), spec.maintainers[1].to_hex());
    // And its measurers: fresh keys, never regtest's well-known ones.
    assert_eq!(spec.measurers.len(), 3);
    for (i, measurer) in spec.measurers.iter().enumerate() {
        let shown = w
            .run(&["key", "show", &format!("small/measurer-{}.key", i + 1)])
            .ok();
        assert_eq!(shown.stdout.trim(), measurer.key.to_hex());
        assert!(
            !commons_signaling::NetworkSpec::regtest()
                .measurers
                .iter()
                .any(|m| m.key == measurer.key)
        );
    }

    // A non-empty directory is refused.
    w.run(&["network", "init", "--out", "small", "--maintainers", "3"])
        .expect(2)
        .stderr_has("small: directory is not empty");

    // More release signers than maintainers get keys of their own.
    w.run(&[
        "network",
        "init",
        "--out",
        "seven",
        "--maintainers",
        "5",
        "--release-signers",
        "7",
    ])
    .ok()
    .stdout_has("consensus    6 of 7")
    .stdout_has("seven/release-signer-7.key");
    assert!(w.path("seven/release-signer-6.key").exists());

    w.run(&[
        "network",
        "init",
        "--out",
        "bad",
        "--maintainers",
        "3",
        "--name",
        "Bad Name",
    ])
    .expect(2)
    .stderr_has("`name` must be 1 to 32 characters");
    assert!(!w.path("bad").exists());
}

#[test]
fn decode_prints_json_with_kind_and_id() {
    let w = Workdir::new();
    w.init_network("net", 3);
    w.on(
        "net",
        &[
            "proposal",
            "create",
            "--tier",
            "5",
            "--title",
            "Adopt the new charter",
            "--reference",
            "r",
            "--out",
            "p.cbor",
        ],
    )
    .ok();
    let run = w
        .on("net", &["decode", "p.cbor"])
        .ok()
        .stdout_has("\"title\": \"Adopt the new charter\"");
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["kind"], "proposal");
    assert_eq!(doc["network"], "net");
    assert_eq!(doc["message"]["body"]["tier"], 5);
    let verify = w.on("net", &["proposal", "verify", "p.cbor"]).expect(1);
    assert!(verify.stdout.contains(doc["id"].as_str().unwrap()));

    w.write("junk.cbor", &[0xa1, 0x61, 0x78, 0x01]);
    w.run(&["decode", "junk.cbor"])
        .expect(2)
        .stderr_has("junk.cbor: malformed message");
    w.write("big.cbor", &vec![0u8; 100_000]);
    w.run(&["decode", "big.cbor"])
        .expect(2)
        .stderr_has("big.cbor: 100000 bytes, larger than any message");
}

#[test]
fn usage_errors_exit_with_code_two() {
    let w = Workdir::new();
    w.run(&[]).expect(2).stderr_has("Usage: commons-cli");
    w.run(&["frobnicate"])
        .expect(2)
        .stderr_has("unrecognized subcommand 'frobnicate'");
    w.run(&["proposal", "create", "--tier", "1"])
        .expect(2)
        .stderr_has("required arguments were not provided");
    w.run(&[
        "proposal",
        "create",
        "--tier",
        "one",
        "--title",
        "t",
        "--reference",
        "r",
        "--out",
        "x",
    ])
    .expect(2)
    .stderr_has("invalid value 'one' for '--tier <T>'");
    w.run(&[
        "proposal",
        "create",
        "--tier",
        "1",
        "--title",
        "t",
        "--reference",
        "r",
        "--out",
        "x",
        "--lock-end",
        "now",
    ])
    .expect(2)
    .stderr_has("expected Unix seconds or `+SECS`");
    w.run(&["release", "verify", "r.cbor", "--newest", "v1"])
        .expect(2)
        .stderr_has("invalid version");
    w.run(&["network", "init", "--out", "d", "--maintainers", "0"])
        .expect(2)
        .stderr_has("0 is not in 1..=16");
    w.run(&["--network", "nowhere", "proposal", "verify", "p.cbor"])
        .expect(2)
        .stderr_has("unknown network \"nowhere\"");
    w.run(&["--help"]).ok().stdout_has("proposal");
    w.run(&["release", "create", "--help"])
        .ok()
        .stdout_has("--expires-in");
    w.run(&["--version"]).ok().stdout_has("commons-cli");
}

#[test]
fn decode_shows_a_signed_message_with_its_digest_and_signature_check() {
    use commons_signaling::{Choice, Hash32, NetworkSpec, SecretKey};
    let w = Workdir::new();
    let key = SecretKey::from_seed("decode test");
    let signal = commons_test_util::signal(
        &NetworkSpec::regtest().network_id(),
        &key,
        Hash32([7; 32]),
        Choice::Override,
        3,
        1_700_000_000,
        vec![],
    );
    w.write("signal.cbor", &signal.encode());
    let run = w
        .run(&["--network", "regtest", "decode", "signal.cbor"])
        .ok();
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["kind"], "signal");
    assert_eq!(doc["signature_valid"], true);
    assert_eq!(
        doc["digest"],
        signal.digest(&NetworkSpec::regtest().network_id()).to_hex()
    );
    assert_eq!(doc["message"]["body"]["choice"], "override");
    // Without --network the network is the daemon's default, mainnet, where the signature
    // made for regtest does not verify.
    let run = w.run(&["decode", "signal.cbor"]).ok();
    assert!(
        run.stdout.contains("\"network\": \"mainnet\""),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("\"signature_valid\": false"),
        "{}",
        run.stdout
    );
    // Signed for regtest, so on testnet the signature does not verify.
    let run = w
        .run(&["--network", "testnet", "decode", "signal.cbor"])
        .ok();
    assert!(
        run.stdout.contains("\"signature_valid\": false"),
        "{}",
        run.stdout
    );
}

/// `commons-cli ... | head -n 1`: once the reader has gone, the command stops quietly with
/// status 0, so a script under `set -o pipefail` does not fail for output it chose to cut.
#[test]
fn a_closed_standard_output_ends_the_command_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    // Closed before the command writes anything: its first line meets a broken pipe.
    drop(reader);
    let out = std::process::Command::new(common::BIN)
        .arg("help")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
