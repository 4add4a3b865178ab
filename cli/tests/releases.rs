//! The maintainer flow for release bundles, run through the real binary.

mod common;

use common::Workdir;

const NET: &str = "net/spec.toml";

/// A network of five maintainers, two artifact files and an unsigned application release.
fn setup() -> Workdir {
    let w = Workdir::new();
    w.init_network("net", 5);
    // Larger than one read buffer, so hashing really streams.
    let tarball: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    w.write("dist/app-1.4.0.tar.gz", &tarball);
    w.write("dist/SHA256SUMS", b"checksums\n");
    w.on(
        NET,
        &[
            "release",
            "create",
            "--channel",
            "stable",
            "--version",
            "1.4.0",
            "--class",
            "application",
            "--artifact",
            "dist/app-1.4.0.tar.gz",
            "dist/SHA256SUMS",
            "--source-commit",
            "9f2c1e7",
            "--out",
            "r.cbor",
        ],
    )
    .ok()
    .stdout_has("needs 3 of 5 release signers")
    .stdout_has("200000 bytes")
    .stdout_has("in 30 days");
    w
}

fn sign(w: &Workdir, maintainer: u32) -> common::Run {
    w.on(
        NET,
        &[
            "release",
            "sign",
            "r.cbor",
            "--key",
            &format!("net/maintainer-{maintainer}.key"),
        ],
    )
}

fn verify(w: &Workdir, extra: &[&str]) -> common::Run {
    let mut args = vec!["release", "verify", "r.cbor", "--artifacts", "dist"];
    args.extend_from_slice(extra);
    w.on(NET, &args)
}

#[test]
fn three_of_five_sign_an_application_release() {
    let w = setup();
    sign(&w, 1).ok().stdout_has("counted     1 of 3 required");
    sign(&w, 3).ok();
    verify(&w, &[])
        .expect(1)
        .stderr_has("r.cbor: not valid on network net: 2 of 3 required release signatures");
    sign(&w, 5)
        .ok()
        .stdout_has("3 of 3 required (threshold met)");
    let run = verify(&w, &[])
        .ok()
        .stdout_has("valid       on network net with all artifacts");
    assert_eq!(run.stdout.matches("  ok").count(), 2, "{}", run.stdout);

    // Without --artifacts only the bundle is checked.
    w.on(NET, &["release", "verify", "r.cbor"])
        .ok()
        .stdout_has("not checked");
    // A later release on the channel is fine; the same or an earlier one is a rollback.
    verify(&w, &["--newest", "1.3.9"]).ok();
    verify(&w, &["--newest", "1.4.0"])
        .expect(1)
        .stderr_has("version 1.4.0 is not newer than 1.4.0");
    verify(&w, &["--newest", "1.4"])
        .expect(1)
        .stderr_has("not newer");
}

#[test]
fn a_changed_artifact_byte_is_caught_and_named() {
    let w = setup();
    for i in [1, 2, 3] {
        sign(&w, i).ok();
    }
    let mut tarball = w.read("dist/app-1.4.0.tar.gz");
    tarball[123_456] ^= 1;
    w.write("dist/app-1.4.0.tar.gz", &tarball);
    verify(&w, &[])
        .expect(1)
        .stdout_has("app-1.4.0.tar.gz")
        .stdout_has("FAILED")
        .stderr_has("r.cbor: artifact app-1.4.0.tar.gz: SHA-256");

    // A longer file and a missing one are caught too.
    w.write("dist/SHA256SUMS", b"checksums\nand more\n");
    std::fs::remove_file(w.path("dist/app-1.4.0.tar.gz")).unwrap();
    verify(&w, &[])
        .expect(1)
        .stderr_has("artifact app-1.4.0.tar.gz: missing from dist")
        .stderr_has("artifact SHA256SUMS: 19 bytes, the manifest says 10");
}

#[test]
fn detached_signatures_combine() {
    let w = setup();
    for i in [2, 4, 5] {
        let sig = format!("sig-{i}");
        w.on(
            NET,
            &[
                "release",
                "sign",
                "r.cbor",
                "--key",
                &format!("net/maintainer-{i}.key"),
                "--detached",
                &sig,
            ],
        )
        .ok()
        .stdout_has("wrote       detached signature");
    }
    // Detached signing leaves the bundle unsigned.
    w.on(NET, &["release", "verify", "r.cbor"])
        .expect(1)
        .stderr_has("0 of 3");
    w.on(NET, &["decode", "sig-2"])
        .ok()
        .stdout_has("\"kind\": \"detached-signature\"");

    w.on(NET, &["release", "combine", "r.cbor", "sig-2", "sig-4"])
        .ok()
        .stdout_has("counted     2 of 3 required");
    w.on(NET, &["release", "combine", "r.cbor", "sig-5", "sig-2"])
        .ok()
        .stdout_has("counted     3 of 3 required (threshold met)");
    verify(&w, &[]).ok();

    // A signature over another manifest is rejected, and the file is left as it was.
    w.on(
        NET,
        &[
            "release",
            "create",
            "--channel",
            "stable",
            "--version",
            "1.5.0",
            "--class",
            "application",
            "--artifact",
            "dist/SHA256SUMS",
            "--source-commit",
            "abc",
            "--out",
            "other.cbor",
        ],
    )
    .ok();
    w.on(
        NET,
        &[
            "release",
            "sign",
            "other.cbor",
            "--key",
            "net/maintainer-1.key",
            "--detached",
            "other.sig",
        ],
    )
    .ok();
    let before = w.read("r.cbor");
    w.on(NET, &["release", "combine", "r.cbor", "other.sig"])
        .expect(2)
        .stderr_has("other.sig: the signature by")
        .stderr_has("is not over this release")
        .stderr_has("r.cbor was not changed");
    assert_eq!(w.read("r.cbor"), before);
    // A file that is not a detached signature is named as such.
    w.on(NET, &["release", "combine", "r.cbor", "other.cbor"])
        .expect(2)
        .stderr_has("other.cbor: this is a release message, not a detached signature");
}

#[test]
fn only_release_signers_sign_and_thresholds_follow_the_class() {
    let w = setup();
    w.init_network("other", 5);
    w.on(
        NET,
        &[
            "release",
            "sign",
            "r.cbor",
            "--key",
            "other/maintainer-1.key",
        ],
    )
    .expect(2)
    .stderr_has("is not a signer of application releases on network net");
    // A consensus release on a five-maintainer network needs all five.
    w.on(
        NET,
        &[
            "release",
            "create",
            "--channel",
            "stable",
            "--version",
            "2.0.0",
            "--class",
            "consensus",
            "--artifact",
            "dist/SHA256SUMS",
            "--source-commit",
            "abc",
            "--out",
            "c.cbor",
        ],
    )
    .ok()
    .stdout_has("needs 5 of 5 release signers");
}

#[test]
fn create_checks_its_inputs() {
    let w = setup();
    let create = |extra: &[&str]| {
        let mut args = vec![
            "release",
            "create",
            "--channel",
            "stable",
            "--class",
            "protocol",
            "--source-commit",
            "abc",
            "--out",
            "new.cbor",
        ];
        args.extend_from_slice(extra);
        w.on(NET, &args)
    };
    create(&["--version", "1.0", "--artifact", "dist/nope"])
        .expect(2)
        .stderr_has("dist/nope: no such file");
    create(&[
        "--version",
        "1.0",
        "--artifact",
        "dist/SHA256SUMS",
        "dist/SHA256SUMS",
    ])
    .expect(2)
    .stderr_has("another artifact is also named \"SHA256SUMS\"");
    create(&["--version", "01.0", "--artifact", "dist/SHA256SUMS"])
        .expect(2)
        .stderr_has("invalid version");
    create(&[
        "--version",
        "1.0",
        "--artifact",
        "dist/SHA256SUMS",
        "--build-hash",
        "abc",
    ])
    .expect(2)
    .stderr_has("expected 64 hex characters");
    assert!(!w.path("new.cbor").exists());
    let hash = "ab".repeat(32);
    create(&[
        "--version",
        "1.0",
        "--artifact",
        "dist/SHA256SUMS",
        "--build-hash",
        &hash,
        "--expires-in",
        "3600",
    ])
    .ok()
    .stdout_has(&format!("build hash  {hash}"))
    .stdout_has("(in 1 h)");
}

#[test]
fn decode_prints_a_release_as_json() {
    let w = setup();
    let run = w.on(NET, &["decode", "r.cbor"]).ok();
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(doc["kind"], "release");
    assert_eq!(doc["message"]["body"]["release"], "1.4.0");
    assert_eq!(doc["message"]["body"]["artifacts"][1]["name"], "SHA256SUMS");
    assert_eq!(doc["id"].as_str().unwrap().len(), 64);
}

/// The online release commands check what they are given before they look for the node:
/// bad input is exit 2 with the file named, and only then is a missing node exit 3.
#[test]
fn online_release_commands_check_their_input_before_the_node() {
    let w = setup();
    // Sign to threshold so the bundle itself is not what is wrong below.
    for m in [1, 2, 3] {
        sign(&w, m).ok();
    }
    // A data directory without a cookie: no node runs there.
    std::fs::create_dir(w.path("nodedata")).unwrap();
    let online = |args: &[&str]| {
        let mut all = vec!["--datadir", "nodedata"];
        all.extend_from_slice(args);
        w.on(NET, &all)
    };

    let publish = |file: &str, dir: &str| online(&["release", "publish", file, "--artifacts", dir]);
    publish("missing.cbor", "dist")
        .expect(2)
        .stderr_has("error: missing.cbor: no such file or directory");
    w.on(
        NET,
        &[
            "proposal",
            "create",
            "--tier",
            "1",
            "--title",
            "t",
            "--reference",
            "r",
            "--out",
            "p.cbor",
        ],
    )
    .ok();
    publish("p.cbor", "dist")
        .expect(2)
        .stderr_has("p.cbor: this is a proposal message, not a release");
    publish("r.cbor", "nowhere")
        .expect(2)
        .stderr_has("error: nowhere: no such file or directory");
    let run = publish("r.cbor", "dist/SHA256SUMS")
        .expect(2)
        .stderr_has("error: dist/SHA256SUMS: not a directory");
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    publish("r.cbor", "dist")
        .expect(3)
        .stderr_has("the node is not running");
    w.run(&["release", "publish", "r.cbor"])
        .expect(2)
        .stderr_has("--artifacts <DIR>");

    online(&["release", "verify-binary", "missing"])
        .expect(2)
        .stderr_has("error: missing: no such file or directory");
    online(&["release", "verify-binary", "dist"])
        .expect(2)
        .stderr_has("error: dist: ");
    online(&["release", "verify-binary", "dist/app-1.4.0.tar.gz"])
        .expect(3)
        .stderr_has("the node is not running");

    online(&["release", "show", "abc"])
        .expect(2)
        .stderr_has("expected 64 hex characters (a release id)");
    online(&["release", "show", &"ab".repeat(32)]).expect(3);
    online(&["release", "show", "stable", "1.4.0"]).expect(3);
    online(&["release", "show", "stable", "one"])
        .expect(2)
        .stderr_has("invalid value 'one' for '[VERSION]'");
    online(&["release", "list"]).expect(3);
}
