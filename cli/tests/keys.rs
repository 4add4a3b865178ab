//! Keys and provenance, with the real binary: encrypted key files and where their passphrase
//! comes from, paper backups, signing a bare digest offline, and a network spec built from
//! public keys and signed by its maintainers.

mod common;

use common::{Run, Workdir, chmod};
use std::os::unix::fs::PermissionsExt;

const PASS: &str = "correct horse battery staple";

fn mode(work: &Workdir, file: &str) -> u32 {
    std::fs::metadata(work.path(file))
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// The 64 hex characters of a plain key file.
fn secret_hex(work: &Workdir, file: &str) -> String {
    String::from_utf8(work.read(file))
        .unwrap()
        .trim()
        .to_string()
}

/// Asserts that a secret appears in neither output of any run.
fn assert_secret_absent(secret: &str, runs: &[&Run]) {
    for run in runs {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "`commons-cli {}` printed the secret",
            run.args.join(" ")
        );
    }
}

fn with_pass<'a>() -> [(&'a str, &'a str); 1] {
    [("COMMONS_PASSPHRASE", PASS)]
}

/// `commons-cli ARGS --passphrase-fd 3` with `PASSPHRASE\n` on descriptor 3.
fn run_fd(work: &Workdir, passphrase: &str, args: &[&str]) -> Run {
    work.write("fd3.txt", format!("{passphrase}\n").as_bytes());
    let mut all = vec![
        "-c",
        r#"exec "$COMMONS_CLI" "$@" --passphrase-fd 3 3< fd3.txt"#,
        "sh",
    ];
    all.extend_from_slice(args);
    let run = work.run_program("sh", &all, &[], None);
    std::fs::remove_file(work.path("fd3.txt")).unwrap();
    run
}

#[test]
fn an_encrypted_key_signs_proposals_and_releases_and_its_secret_never_shows() {
    let work = Workdir::new();
    work.init_network("demo", 3);
    let secret = secret_hex(&work, "demo/maintainer-1.key");
    let public = work
        .run(&["key", "show", "demo/maintainer-1.key"])
        .ok()
        .stdout;

    let encrypted = work
        .run_with(
            &["key", "encrypt", "demo/maintainer-1.key"],
            &with_pass(),
            None,
        )
        .ok();
    assert_eq!(mode(&work, "demo/maintainer-1.key"), 0o600);
    let file = String::from_utf8(work.read("demo/maintainer-1.key")).unwrap();
    assert!(file.starts_with("commons-signal encrypted secret key v1\n"));
    assert!(!file.contains(&secret), "the secret is in the clear");
    // The public key is readable without the passphrase.
    let shown = work.run(&["key", "show", "demo/maintainer-1.key"]).ok();
    assert_eq!(shown.stdout, public);

    work.on(
        "demo",
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
    let signed = work
        .run_with(
            &[
                "--network",
                "demo",
                "proposal",
                "sign",
                "p.cbor",
                "--key",
                "demo/maintainer-1.key",
            ],
            &with_pass(),
            None,
        )
        .ok()
        .stdout_has(&format!("signed as {}", public.trim()));

    work.create_release("demo", "a.txt", "r.cbor");
    let detached = run_fd(
        &work,
        PASS,
        &[
            "--network",
            "demo",
            "release",
            "sign",
            "r.cbor",
            "--key",
            "demo/maintainer-1.key",
            "--detached",
            "m1.sig",
        ],
    )
    .ok();
    let combined = work
        .on("demo", &["release", "combine", "r.cbor", "m1.sig"])
        .ok()
        .stdout_has("counted     1 of");
    assert_secret_absent(
        &secret,
        &[&encrypted, &shown, &signed, &detached, &combined],
    );
}

#[test]
fn a_wrong_passphrase_is_refused_clearly_and_changes_nothing() {
    let work = Workdir::new();
    work.init_network("demo", 3);
    let secret = secret_hex(&work, "demo/maintainer-2.key");
    work.run_with(
        &["key", "encrypt", "demo/maintainer-2.key"],
        &with_pass(),
        None,
    )
    .ok();
    work.on(
        "demo",
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
    let before = work.read("p.cbor");
    let wrong = work
        .run_with(
            &[
                "--network",
                "demo",
                "proposal",
                "sign",
                "p.cbor",
                "--key",
                "demo/maintainer-2.key",
            ],
            &[("COMMONS_PASSPHRASE", "correct horse battery stapler")],
            None,
        )
        .expect(2)
        .stderr_has("demo/maintainer-2.key: wrong passphrase, or the file was changed");
    assert_eq!(work.read("p.cbor"), before, "the proposal was changed");
    let wrong_fd = run_fd(&work, "nope", &["key", "export", "demo/maintainer-2.key"])
        .expect(2)
        .stderr_has("wrong passphrase");
    assert!(wrong.stdout.is_empty() && wrong_fd.stdout.is_empty());
    assert!(
        !wrong.stderr.contains("stapler"),
        "the passphrase was echoed"
    );
    assert_secret_absent(&secret, &[&wrong, &wrong_fd]);
}

#[test]
fn without_a_passphrase_or_a_terminal_the_error_says_how_to_give_one() {
    let work = Workdir::new();
    work.run_with(
        &["key", "generate", "--encrypt", "--out", "k.key"],
        &with_pass(),
        None,
    )
    .ok();
    // setsid: no controlling terminal, as under cron or systemd.
    let cli = common::BIN;
    work.run_program("setsid", &["-w", cli, "key", "export", "k.key"], &[], None)
        .expect(2)
        .stderr_has("a passphrase is needed and there is no terminal to ask on")
        .stderr_has("--passphrase-fd N or COMMONS_PASSPHRASE");
    work.run_program(
        "setsid",
        &[
            "-w",
            cli,
            "key",
            "generate",
            "--encrypt",
            "--out",
            "new.key",
        ],
        &[],
        None,
    )
    .expect(2);
    assert!(!work.path("new.key").exists());
    // An empty passphrase protects nothing.
    work.run_with(
        &["key", "generate", "--encrypt", "--out", "empty.key"],
        &[("COMMONS_PASSPHRASE", "")],
        None,
    )
    .expect(2)
    .stderr_has("the passphrase is empty");
    assert!(!work.path("empty.key").exists());
    // A descriptor that is not open.
    work.run(&["key", "export", "k.key", "--passphrase-fd", "9"])
        .expect(2)
        .stderr_has("--passphrase-fd 9: cannot read file descriptor 9");
}

#[test]
fn a_tampered_encrypted_key_file_is_refused() {
    let work = Workdir::new();
    let public = run_fd(
        &work,
        PASS,
        &["key", "generate", "--encrypt", "--out", "k.key"],
    )
    .ok()
    .stdout;
    assert_eq!(mode(&work, "k.key"), 0o600);
    let text = String::from_utf8(work.read("k.key")).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    // One changed hex digit of the ciphertext.
    let seal = lines[3];
    let last = seal.chars().last().unwrap();
    let flipped = format!(
        "{}{}",
        &seal[..seal.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    // Another public key in the clear part: a swapped identity must not verify.
    let other = work
        .run(&["key", "generate", "--out", "other.key"])
        .ok()
        .stdout;
    let tampered = [
        text.replace(seal, &flipped),
        text.replace(public.trim(), other.trim()),
    ];
    for (i, bad) in tampered.iter().enumerate() {
        let name = format!("bad{i}.key");
        work.write(&name, bad.as_bytes());
        chmod(&work.path(&name), 0o600);
        work.run_with(&["key", "export", &name], &with_pass(), None)
            .expect(2)
            .stderr_has("does not decrypt");
    }
    // An absurd scrypt cost is refused before any memory is spent on it.
    let costly = text.replace("scrypt 17 ", "scrypt 30 ");
    work.write("costly.key", costly.as_bytes());
    chmod(&work.path("costly.key"), 0o600);
    work.run_with(&["key", "export", "costly.key"], &with_pass(), None)
        .expect(2)
        .stderr_has("damaged encrypted key file: scrypt parameters 30 8 1 are outside");
    // Like a plain one, an encrypted key others can read is refused.
    chmod(&work.path("k.key"), 0o644);
    work.run(&["key", "show", "k.key"])
        .expect(2)
        .stderr_has("readable by other users");
}

#[test]
fn a_paper_backup_restores_the_same_key() {
    let work = Workdir::new();
    let public = work
        .run_with(
            &["key", "generate", "--encrypt", "--out", "k.key"],
            &with_pass(),
            None,
        )
        .ok()
        .stdout;
    let export = work
        .run_with(&["key", "export", "k.key"], &with_pass(), None)
        .ok();
    let backup = export.stdout.clone();
    assert!(backup.starts_with("commonssecret1 "), "{backup}");
    assert!(backup.lines().count() >= 2, "grouped on lines: {backup}");

    // Plain restore, from the grouped text as written on paper.
    let restored = work
        .run_with(
            &["key", "import", "--out", "plain.key"],
            &[],
            Some(backup.as_bytes()),
        )
        .ok();
    assert_eq!(restored.stdout, public);
    assert_eq!(mode(&work, "plain.key"), 0o600);
    let secret = secret_hex(&work, "plain.key");
    assert_secret_absent(&secret, &[&restored]);

    // Encrypted restore, typed in upper case.
    work.run_with(
        &["key", "import", "--encrypt", "--out", "again.key"],
        &with_pass(),
        Some(backup.to_uppercase().as_bytes()),
    )
    .ok();
    let shown = work.run(&["key", "show", "again.key"]).ok();
    assert_eq!(shown.stdout, public);

    // A mistyped character is caught by the checksum; nothing is written.
    let mut typo: Vec<char> = backup.chars().collect();
    let at = typo.len() - 6;
    typo[at] = if typo[at] == 'q' { 'p' } else { 'q' };
    let typo: String = typo.into_iter().collect();
    work.run_with(
        &["key", "import", "--out", "typo.key"],
        &[],
        Some(typo.as_bytes()),
    )
    .expect(2)
    .stderr_has("check it for typing mistakes");
    assert!(!work.path("typo.key").exists());
    // A key is never written over.
    work.run_with(
        &["key", "import", "--out", "plain.key"],
        &[],
        Some(backup.as_bytes()),
    )
    .expect(2)
    .stderr_has("exists already");

    // To a file: mode 0600, and the file holds the same backup.
    let to_file = work
        .run_with(
            &["key", "export", "k.key", "--out", "backup.txt"],
            &with_pass(),
            None,
        )
        .ok();
    assert_eq!(mode(&work, "backup.txt"), 0o600);
    assert_eq!(String::from_utf8(work.read("backup.txt")).unwrap(), backup);
    assert_secret_absent(&secret, &[&to_file]);
}

#[test]
fn proposals_and_releases_are_signed_offline_from_their_digest() {
    let work = Workdir::new();
    work.init_network("demo", 3);
    // The offline signer's keys, encrypted; only digests and signatures cross the air gap.
    for i in 1..=3 {
        let key = format!("demo/maintainer-{i}.key");
        work.run_with(&["key", "encrypt", &key], &with_pass(), None)
            .ok();
    }
    work.on(
        "demo",
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
    let digest = work
        .on("demo", &["proposal", "digest", "p.cbor"])
        .ok()
        .stdout;
    let digest = digest.trim();
    assert_eq!(digest.len(), 64);
    // The digest is the proposal's id, which `verify` prints.
    work.on("demo", &["proposal", "verify", "p.cbor"])
        .expect(1)
        .stdout_has(&format!("proposal    {digest}"));
    for i in 1..=3 {
        work.run_with(
            &[
                "key",
                "sign-digest",
                digest,
                "--key",
                &format!("demo/maintainer-{i}.key"),
                "--out",
                &format!("p{i}.sig"),
            ],
            &with_pass(),
            None,
        )
        .ok()
        .stdout_has(&format!("digest      {digest}"));
    }
    work.on(
        "demo",
        &["proposal", "attach", "p.cbor", "p1.sig", "p2.sig"],
    )
    .ok()
    .stdout_has("counted     2 of 3 required");
    work.on("demo", &["proposal", "attach", "p.cbor", "p3.sig"])
        .ok()
        .stdout_has("counted     3 of 3 required (threshold met)");
    work.on("demo", &["proposal", "verify", "p.cbor"])
        .ok()
        .stdout_has("valid       on network demo");

    // A signature over something else is refused and the file stays as it was.
    work.create_release("demo", "a.txt", "r.cbor");
    let before = work.read("r.cbor");
    work.on("demo", &["release", "combine", "r.cbor", "p1.sig"])
        .expect(2)
        .stderr_has("is not over this release");
    assert_eq!(work.read("r.cbor"), before);

    let digest = work
        .on("demo", &["release", "digest", "r.cbor"])
        .ok()
        .stdout;
    let digest = digest.trim();
    for i in 1..=3 {
        work.run_with(
            &[
                "key",
                "sign-digest",
                digest,
                "--key",
                &format!("demo/maintainer-{i}.key"),
                "--out",
                &format!("r{i}.sig"),
            ],
            &with_pass(),
            None,
        )
        .ok();
    }
    let before = work.read("p.cbor");
    work.on("demo", &["proposal", "attach", "p.cbor", "r1.sig"])
        .expect(2)
        .stderr_has("is not over this proposal");
    assert_eq!(work.read("p.cbor"), before);
    work.on(
        "demo",
        &["release", "combine", "r.cbor", "r1.sig", "r2.sig", "r3.sig"],
    )
    .ok();
    work.on(
        "demo",
        &["release", "verify", "r.cbor", "--artifacts", "dist"],
    )
    .ok()
    .stdout_has("valid       on network demo with all artifacts");

    // A digest that is not one.
    work.run(&[
        "key",
        "sign-digest",
        "abcd",
        "--key",
        "demo/maintainer-1.key",
        "--out",
        "x.sig",
    ])
    .expect(2)
    .stderr_has("expected 64 hex characters");
}

/// Three maintainers and two measurers, each with a key generated in a directory of its own
/// (their machines); only public keys reach the spec.
#[test]
fn a_spec_is_built_from_public_keys_and_signed_by_its_maintainers() {
    let work = Workdir::new();
    let mut maintainers = Vec::new();
    for name in ["alice", "bob", "carol"] {
        std::fs::create_dir(work.path(name)).unwrap();
        let key = format!("{name}/{name}.key");
        let public = work
            .run_with(
                &["key", "generate", "--encrypt", "--out", &key],
                &with_pass(),
                None,
            )
            .ok()
            .stdout;
        maintainers.push((key, public.trim().to_string()));
    }
    let measurers: Vec<String> = ["m1", "m2"]
        .iter()
        .map(|m| {
            work.run(&["key", "generate", "--out", &format!("{m}.key")])
                .ok()
                .stdout
                .trim()
                .to_string()
        })
        .collect();

    work.run(&[
        "spec",
        "new",
        "--name",
        "ceremony",
        "--base",
        "regtest",
        "--out",
        "spec.toml",
    ])
    .ok();
    for (_, public) in &maintainers {
        work.run(&["spec", "add-maintainer", "spec.toml", public])
            .ok();
        work.run(&[
            "spec",
            "add-release-signer",
            "spec.toml",
            public,
            "--class",
            "consensus",
            "protocol",
            "application",
        ])
        .ok();
    }
    work.run(&["spec", "add-maintainer", "spec.toml", &maintainers[0].1])
        .expect(2)
        .stderr_has("is a maintainer already");
    work.run(&["spec", "add-maintainer", "spec.toml", "not-a-key"])
        .expect(2)
        .stderr_has("KEY: invalid key: expected 64 hex characters");
    work.run(&[
        "spec",
        "add-measurer",
        "spec.toml",
        &measurers[0],
        "--address",
        "/ip4/127.0.0.1/tcp/4001",
    ])
    .ok();
    work.run(&[
        "spec",
        "add-measurer",
        "spec.toml",
        &measurers[1],
        "--address",
        "localhost:4001",
    ])
    .expect(2)
    .stderr_has("is not a multiaddr");
    work.run(&["spec", "add-measurer", "spec.toml", &maintainers[0].1])
        .expect(2)
        .stderr_has("measurers must be independent");
    work.run(&["spec", "add-measurer", "spec.toml", &measurers[1]])
        .ok();

    // Not complete yet: the reference thresholds need more maintainers than three.
    work.run(&["spec", "show", "spec.toml"])
        .ok()
        .stdout_has("complete    no")
        .stdout_has("tier 2 needs 4 maintainer signatures, 3 maintainers listed");
    work.run(&[
        "spec",
        "sign",
        "spec.toml",
        "--key",
        &maintainers[0].0,
        "--out",
        "early.sig",
    ])
    .expect(2)
    .stderr_has("the spec is not complete yet");
    work.on("spec.toml", &["proposal", "verify", "nothing.cbor"])
        .expect(2)
        .stderr_has("tier 2 needs 4 signatures but only 3 maintainers are listed");

    work.run(&["spec", "set-threshold", "spec.toml", "2", "--tier", "1"])
        .ok();
    work.run(&[
        "spec",
        "set-threshold",
        "spec.toml",
        "3",
        "--tier",
        "2",
        "3",
        "4",
        "5",
    ])
    .ok();
    work.run(&[
        "spec",
        "set-threshold",
        "spec.toml",
        "3",
        "--class",
        "consensus",
        "protocol",
    ])
    .ok();
    work.run(&[
        "spec",
        "set-threshold",
        "spec.toml",
        "2",
        "--class",
        "application",
    ])
    .ok()
    .stdout_has("complete    yes");
    let show = work.run(&["spec", "show", "spec.toml"]).ok();
    for (_, public) in &maintainers {
        assert!(show.stdout.contains(public.as_str()));
    }
    let show = show
        .stdout_has("/ip4/127.0.0.1/tcp/4001")
        .stdout_has("spec signatures 3 of the 3 maintainers");

    // The id is the network id every command on the network uses.
    let id = work.run(&["spec", "id", "spec.toml"]).ok().stdout;
    let id = id.trim().to_string();
    assert!(show.stdout.contains(&format!("id          {id}")));
    work.on(
        "spec.toml",
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
    .ok()
    .stdout_has(&format!("ceremony ({})", &id[..16]));
    // A measurer's addresses are not part of the id, so a measurer may move.
    work.run(&["spec", "remove-measurer", "spec.toml", &measurers[0]])
        .ok();
    work.run(&[
        "spec",
        "add-measurer",
        "spec.toml",
        &measurers[0],
        "--address",
        "/dns4/m1.example.org/tcp/8733",
    ])
    .ok();
    // (Order of measurers is part of the id: put them back as they were.)
    work.run(&["spec", "remove-measurer", "spec.toml", &measurers[1]])
        .ok();
    work.run(&["spec", "add-measurer", "spec.toml", &measurers[1]])
        .ok();
    assert_eq!(
        work.run(&["spec", "id", "spec.toml"]).ok().stdout.trim(),
        id
    );

    // Each maintainer signs on their own machine, with their encrypted key.
    for (i, (key, _)) in maintainers.iter().enumerate() {
        work.run_with(
            &[
                "spec",
                "sign",
                "spec.toml",
                "--key",
                key,
                "--out",
                &format!("s{i}.sig"),
            ],
            &with_pass(),
            None,
        )
        .ok()
        .stdout_has(&format!("id          {id}"));
    }
    // A stranger's signature, a repeated one and two of three do not make it.
    work.run(&["key", "generate", "--out", "stranger.key"]).ok();
    let digest = work.run(&["spec", "digest", "spec.toml"]).ok().stdout;
    work.run(&[
        "key",
        "sign-digest",
        digest.trim(),
        "--key",
        "stranger.key",
        "--out",
        "stranger.sig",
    ])
    .ok();
    work.run(&[
        "spec",
        "sign",
        "spec.toml",
        "--key",
        "stranger.key",
        "--out",
        "x.sig",
    ])
    .expect(2)
    .stderr_has("is not a maintainer in spec.toml");
    work.run(&[
        "spec",
        "verify",
        "spec.toml",
        "s0.sig",
        "s1.sig",
        "s1.sig",
        "stranger.sig",
    ])
    .expect(1)
    .stdout_has("not counted: this signer already counted")
    .stdout_has("not counted: key is not a maintainer")
    .stdout_has("counted     2 of 3 required")
    .stdout_has("INVALID")
    .stderr_has("spec.toml: 2 of 3 required maintainer signatures over the spec");
    work.run(&["spec", "verify", "spec.toml", "s0.sig", "s1.sig", "s2.sig"])
        .ok()
        .stdout_has("counted     3 of 3 required")
        .stdout_has("valid       signed by its maintainers");

    // Any change to the rules voids every signature.
    work.run(&["spec", "set-threshold", "spec.toml", "1", "--tier", "1"])
        .ok();
    work.run(&["spec", "verify", "spec.toml", "s0.sig", "s1.sig", "s2.sig"])
        .expect(1)
        .stdout_has("not counted: not a signature over this spec");
}

#[test]
fn network_init_says_it_is_for_local_tests() {
    let work = Workdir::new();
    work.run(&[
        "network",
        "init",
        "--out",
        "demo",
        "--maintainers",
        "2",
        "--name",
        "demo",
    ])
    .ok()
    .stdout_has("network demo (a local test network)")
    .stdout_has("for tests only: every secret key is on this machine");
    work.run(&["network", "init", "--help"])
        .ok()
        .stdout_has("For local test networks only");
}

/// The `Max core file size` row of /proc/PID/limits: its soft and hard limit.
#[cfg(target_os = "linux")]
fn core_limit(pid: u32) -> Option<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let row = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))?;
    let mut values = row["Max core file size".len()..].split_whitespace();
    Some((values.next()?.to_string(), values.next()?.to_string()))
}

#[cfg(target_os = "linux")]
#[test]
fn a_key_command_forbids_core_dumps_before_it_reads_the_passphrase() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let work = Workdir::new();
    // The passphrase is held back, so the process waits on it with its protection in place.
    let mut child = Command::new(common::BIN)
        .args(["key", "generate", "--encrypt", "--out", "k.key"])
        .args(["--passphrase-fd", "0"])
        .current_dir(work.root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = core_limit(pid);
    while seen != Some(("0".into(), "0".into())) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        seen = core_limit(pid);
    }
    assert!(
        !work.path("k.key").exists(),
        "the key was written before its passphrase arrived"
    );
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{PASS}").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        seen,
        Some(("0".into(), "0".into())),
        "core dumps still allowed while waiting for the passphrase"
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&work, "k.key"), 0o600);
}
