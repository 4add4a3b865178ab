//! The maintainer flow for proposals, run through the real binary.

mod common;

use common::{Workdir, chmod};
use commons_signaling::{BoundedVec, Proposal};

const NET: &str = "net/spec.toml";
const TITLE: &str = "Raise the relay fee floor";

/// A network of five maintainers and a tier-1 proposal on it.
fn setup() -> Workdir {
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
            TITLE,
            "--reference",
            "https://example.invalid/pr/7",
            "--out",
            "p.cbor",
        ],
    )
    .ok()
    .stdout_has("tier        1 (routine maintenance)")
    .stdout_has("0 of 3 required");
    w
}

fn sign(w: &Workdir, maintainer: u32) -> common::Run {
    w.on(
        NET,
        &[
            "proposal",
            "sign",
            "p.cbor",
            "--key",
            &format!("net/maintainer-{maintainer}.key"),
        ],
    )
}

fn load(w: &Workdir) -> Proposal {
    Proposal::decode(&w.read("p.cbor")).expect("a proposal")
}

fn store(w: &Workdir, proposal: &Proposal) {
    w.write("p.cbor", &proposal.encode());
}

#[test]
fn three_of_five_signatures_make_a_valid_proposal() {
    let w = setup();
    sign(&w, 1).ok().stdout_has("counted     1 of 3 required");
    sign(&w, 4).ok().stdout_has("counted     2 of 3 required");

    // Two are not enough: exit code 1, and the message says how many counted.
    w.on(NET, &["proposal", "verify", "p.cbor"])
        .expect(1)
        .stdout_has("counted     2 of 3 required")
        .stderr_has("p.cbor: not valid on network net: 2 of 3 required maintainer signatures");

    sign(&w, 5)
        .ok()
        .stdout_has("counted     3 of 3 required (threshold met)");
    let run = w.on(NET, &["proposal", "verify", "p.cbor"]).ok();
    let run = run
        .stdout_has("valid       on network net")
        .stdout_has(TITLE);
    assert_eq!(run.stdout.matches("  counted").count(), 3, "{}", run.stdout);
    assert!(
        run.stdout.contains("maintainer 4"),
        "signers are named by position: {}",
        run.stdout
    );
    assert!(run.stderr.is_empty(), "{}", run.stderr);

    // A network directory works as --network too.
    w.on("net", &["proposal", "verify", "p.cbor"]).ok();
    // On another network (the built-in regtest) none of these keys is a maintainer.
    w.run(&["proposal", "verify", "p.cbor"])
        .expect(1)
        .stdout_has("unknown key")
        .stderr_has("is --network right?");
}

#[test]
fn signing_twice_with_one_key_counts_once() {
    let w = setup();
    sign(&w, 2).ok();
    sign(&w, 2)
        .ok()
        .stdout_has("replaced the earlier signature")
        .stdout_has("1 of 3");
    assert_eq!(load(&w).signatures.len(), 1);
}

#[test]
fn a_duplicated_signature_counts_once() {
    let w = setup();
    for i in [1, 2] {
        sign(&w, i).ok();
    }
    // A file crafted with the first signature twice: still two signers.
    let mut proposal = load(&w);
    let mut signatures = proposal.signatures.to_vec();
    signatures.push(signatures[0].clone());
    proposal.signatures = BoundedVec::new(signatures).unwrap();
    store(&w, &proposal);
    w.on(NET, &["proposal", "verify", "p.cbor"])
        .expect(1)
        .stdout_has("duplicate signer")
        .stderr_has("2 of 3 required");

    // With a third signer it is valid, the duplicate still reported.
    sign(&w, 3).ok();
    w.on(NET, &["proposal", "verify", "p.cbor"])
        .ok()
        .stdout_has("duplicate signer");
}

#[test]
fn a_key_of_another_network_is_an_unknown_key() {
    let w = setup();
    w.init_network("other", 5);
    for i in [1, 2] {
        sign(&w, i).ok();
    }
    // This network refuses to sign with a key that is not one of its maintainers ...
    let before = w.read("p.cbor");
    w.on(
        NET,
        &[
            "proposal",
            "sign",
            "p.cbor",
            "--key",
            "other/maintainer-1.key",
        ],
    )
    .expect(2)
    .stderr_has("other/maintainer-1.key: key")
    .stderr_has("is not a maintainer of network net");
    assert_eq!(
        w.read("p.cbor"),
        before,
        "a refused signature leaves the file as it was"
    );

    // ... but a maintainer of the other network can sign there, and here it does not count.
    w.on(
        "other/spec.toml",
        &[
            "proposal",
            "sign",
            "p.cbor",
            "--key",
            "other/maintainer-1.key",
        ],
    )
    .ok();
    w.on(NET, &["proposal", "verify", "p.cbor"])
        .expect(1)
        .stdout_has("unknown key")
        .stderr_has("2 of 3 required");
}

#[test]
fn a_changed_title_breaks_every_signature() {
    let w = setup();
    for i in [1, 2, 3] {
        sign(&w, i).ok();
    }
    w.on(NET, &["proposal", "verify", "p.cbor"]).ok();

    // Flip one byte of the title inside the file: still a well-formed proposal.
    let mut bytes = w.read("p.cbor");
    let at = bytes
        .windows(TITLE.len())
        .position(|win| win == TITLE.as_bytes())
        .unwrap();
    bytes[at] ^= 0x20; // 'R' becomes 'r'
    w.write("p.cbor", &bytes);
    let run = w
        .on(NET, &["proposal", "verify", "p.cbor"])
        .expect(1)
        .stdout_has("raise the relay fee floor")
        .stderr_has("0 of 3 required")
        .stderr_has("changed after signing");
    assert_eq!(
        run.stdout.matches("bad signature").count(),
        3,
        "{}",
        run.stdout
    );
}

#[test]
fn a_changed_tier_is_rejected() {
    let w = setup();
    for i in [1, 2, 3] {
        sign(&w, i).ok();
    }
    let original = load(&w);

    // Tier 2 needs a longer lock than this tier-1 proposal has.
    let mut proposal = original.clone();
    proposal.body.tier = 2;
    store(&w, &proposal);
    w.on(NET, &["proposal", "verify", "p.cbor"])
        .expect(1)
        .stderr_has("shorter than the 150 s that tier 2 requires");

    // Tier 4 has no lock, but the signatures were made for tier 1.
    proposal.body.tier = 4;
    store(&w, &proposal);
    w.on(NET, &["proposal", "verify", "p.cbor"])
        .expect(1)
        .stdout_has("bad signature")
        .stderr_has("0 of 4 required");

    // A tier the network does not have.
    proposal.body.tier = 9;
    store(&w, &proposal);
    w.on(NET, &["proposal", "verify", "p.cbor"])
        .expect(1)
        .stderr_has("tier 9 does not exist");
}

#[test]
fn broken_files_are_input_errors() {
    let w = setup();
    let bytes = w.read("p.cbor");
    w.write("cut.cbor", &bytes[..bytes.len() - 3]);
    w.on(NET, &["proposal", "verify", "cut.cbor"])
        .expect(2)
        .stderr_has("cut.cbor: not a valid proposal: malformed message");
    w.write("junk.cbor", b"hello, world\n");
    w.on(NET, &["proposal", "verify", "junk.cbor"])
        .expect(2)
        .stderr_has("junk.cbor: ");
    w.on(NET, &["proposal", "verify", "missing.cbor"])
        .expect(2)
        .stderr_has("missing.cbor: no such file or directory");
    w.on(
        NET,
        &[
            "proposal",
            "sign",
            "junk.cbor",
            "--key",
            "net/maintainer-1.key",
        ],
    )
    .expect(2)
    .stderr_has("junk.cbor");
    assert_eq!(w.read("junk.cbor"), b"hello, world\n");
}

#[test]
fn world_readable_keys_are_refused() {
    let w = setup();
    chmod(&w.path("net/maintainer-1.key"), 0o644);
    let before = w.read("p.cbor");
    sign(&w, 1)
        .expect(2)
        .stderr_has("net/maintainer-1.key: key file is readable by other users")
        .stderr_has("chmod 600");
    assert_eq!(w.read("p.cbor"), before);
}

#[test]
fn lock_times_are_checked_when_creating() {
    let w = Workdir::new();
    w.init_network("net", 5);
    let create = |extra: &[&str], out: &str| {
        let mut args = vec![
            "proposal",
            "create",
            "--tier",
            "1",
            "--title",
            "t",
            "--reference",
            "r",
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        w.on(NET, &args)
    };
    // Tier 1 on a network made by `network init` needs a 35-second lock.
    create(&["--lock-end", "+10"], "short.cbor")
        .expect(2)
        .stderr_has("shorter than the 35 s");
    assert!(!w.path("short.cbor").exists());
    create(
        &["--lock-start", "2000000000", "--lock-end", "1999999999"],
        "inverted.cbor",
    )
    .expect(2)
    .stderr_has("before it starts");
    create(
        &["--lock-start", "2000000000", "--lock-end", "+86400"],
        "abs.cbor",
    )
    .ok()
    .stdout_has("2033-05-18 03:33:20 UTC to 2033-05-19 03:33:20 UTC (1 day)");
    create(&["--lock-start", "+60"], "later.cbor")
        .ok()
        .stdout_has("(35 s)");
    // An existing file is never overwritten.
    create(&[], "abs.cbor")
        .expect(2)
        .stderr_has("abs.cbor: exists already");
    // An unknown tier names the ones there are.
    w.on(
        NET,
        &[
            "proposal",
            "create",
            "--tier",
            "7",
            "--title",
            "t",
            "--reference",
            "r",
            "--out",
            "x.cbor",
        ],
    )
    .expect(2)
    .stderr_has("tier 7 does not exist on network net; it has tiers 1 (routine maintenance)");
}
