//! Disk faults with real `commonsd` processes: a data directory that fills up (a small tmpfs
//! the test mounts, so it needs root; skipped with a notice otherwise) and store files that are
//! damaged or truncated while the node is down.
//!
//! A full disk: the node keeps answering RPC and gossip, refuses RPC writes with a clear error
//! instead of acknowledging them, shows `commons_store_degraded 1` and counts the failed
//! writes, loses nothing it acknowledged, and heals by itself once the filesystem grows (it
//! catches up with its peer for what it refused meanwhile). A damaged store: `commonsd` exits
//! non-zero at start with an error naming the file and what to do.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use commons_e2e::{
    NodeSpec, TestNode, binary, now, phases, regtest_proposal, run_to_exit, tally_essence,
    wait_until,
};
use commons_rpc::{SignalParams, SubmitProposalParams, method};
use serde_json::json;

/// No other test uses 127.0.91.1-2.
const FULL_IP: &str = "127.0.91.1";
const PEER_IP: &str = "127.0.91.2";

const WAIT: Duration = Duration::from_secs(60);

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A tmpfs mounted by the test, unmounted when dropped (also when the test fails).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size_mib: u64) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        Self::run_mount(&[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size_mib}m,mode=0700"),
            "tmpfs",
            dir.to_str().unwrap(),
        ]);
        Tmpfs {
            dir: dir.to_path_buf(),
        }
    }

    fn path(&self) -> &Path {
        &self.dir
    }

    /// Gives the filesystem a new size, keeping its files.
    fn resize(&self, size_mib: u64) {
        Self::run_mount(&[
            "-o",
            &format!("remount,size={size_mib}m"),
            self.path().to_str().unwrap(),
        ]);
    }

    fn run_mount(args: &[&str]) {
        let status = Command::new("mount").args(args).status().unwrap();
        assert!(status.success(), "mount {args:?}: {status}");
    }

    /// Fills the filesystem with one file until writes fail; the bytes written.
    fn fill(&self) -> u64 {
        use std::io::Write;
        let mut file = std::fs::File::create(self.path().join("filler")).unwrap();
        let chunk = vec![0xa5u8; 64 * 1024];
        let mut written = 0u64;
        while file.write_all(&chunk).is_ok() {
            written += chunk.len() as u64;
        }
        // Whatever part of the last chunk fit: the disk is full to the byte.
        let _ = file.flush();
        written
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.path())
            .stderr(Stdio::null())
            .status();
    }
}

fn signal(node: &TestNode, id: &str, choice: &str) -> anyhow::Result<u64> {
    let params = SignalParams {
        proposal: id.to_string(),
        choice: choice.to_string(),
    };
    Ok(node.call::<method::CastSignal>(&params)?.sequence)
}

#[test]
fn a_full_disk_refuses_writes_keeps_serving_and_heals() {
    let phase = phases("disk_full");
    if !is_root() {
        eprintln!("  NOTICE: not root, so no tmpfs can be mounted; the full-disk test is skipped");
        return;
    }
    // The network's data directory (key, database, cookie) is the tmpfs; the log stays on
    // the base directory's disk, where the test reads it. Declared before the nodes, so they
    // are killed before it is unmounted, and the base after it is.
    let base = tempfile::Builder::new()
        .prefix("commons-diskfull-")
        .tempdir()
        .unwrap();
    let disk = Tmpfs::mount(&base.path().join("regtest"), 16);
    phase("a node whose data directory is a 16 MiB tmpfs, a peer on a normal disk");
    let spec = |ip: &str, bootstrap| NodeSpec {
        ip: ip.into(),
        bootstrap,
        measurer: None,
    };
    let mut full = TestNode::start_in("full", spec(FULL_IP, vec![]), base.path()).unwrap();
    let peer = TestNode::start("peer", spec(PEER_IP, vec![full.multiaddr().unwrap()])).unwrap();

    let t = now();
    let (id, bytes) = regtest_proposal("disk full", t - 1, t + 3600, 3);
    full.call::<method::SubmitProposal>(&SubmitProposalParams {
        hex: hex::encode(&bytes),
    })
    .unwrap();
    // A signal that arrives before its proposal is dropped, so the proposal goes first.
    wait_until(WAIT, "the peer holds the proposal", || {
        peer.tally(&id).map_err(|e| e.to_string())
    });
    let mut acknowledged = signal(&full, &id, "support").unwrap();
    wait_until(WAIT, "the peer holds the proposal and the signal", || {
        let t = peer.tally(&id).map_err(|e| e.to_string())?;
        (t.signers == 1).then_some(()).ok_or(format!("{t:?}"))
    });

    phase("filling the disk");
    let filled = disk.fill();
    phase(&format!("filled with {} KiB", filled / 1024));
    // What fits in RocksDB's buffers may still be acknowledged; the first refusal follows.
    let refusal = loop {
        match signal(&full, &id, "oppose") {
            Ok(sequence) => {
                acknowledged = sequence;
                assert!(acknowledged < 10_000, "the full disk never refused a write");
            }
            Err(e) => break e.to_string(),
        }
    };
    phase(&format!("refused after sequence {acknowledged}: {refusal}"));
    assert!(refusal.contains("-32004"), "{refusal}");
    assert!(refusal.contains("the store cannot write"), "{refusal}");
    assert!(refusal.contains("free space"), "{refusal}");
    // A proposal is refused too, and nothing was applied of either.
    let (other, other_bytes) = regtest_proposal("disk full, second", t - 1, t + 3600, 3);
    let refused = full
        .call::<method::SubmitProposal>(&SubmitProposalParams {
            hex: hex::encode(&other_bytes),
        })
        .unwrap_err()
        .to_string();
    assert!(refused.contains("the store cannot write"), "{refused}");

    phase("the full node still answers RPC, metrics and gossip");
    full.call::<method::GetInfo>(&commons_rpc::NoParams {})
        .unwrap();
    assert_eq!(full.metric("commons_store_degraded"), 1.0);
    assert!(full.metric("commons_store_write_errors_total") >= 1.0);
    // The peer's signal reaches the full node by gossip, which refuses to apply it.
    signal(&peer, &id, "override").unwrap();
    let store_failed = "commons_messages_verdicts_total{kind=\"signal\",verdict=\"ignore\",reason=\"store_failed\"}";
    wait_until(WAIT, "the full node refuses the peer's gossip", || {
        let n = full.metric(store_failed);
        (n >= 1.0)
            .then_some(())
            .ok_or(format!("{store_failed} = {n}"))
    });
    let log = std::fs::read_to_string(full.log_path()).unwrap();
    assert!(log.contains("store write failed"), "{}", full.log_tail(20));
    assert!(!log.contains("panicked"), "{}", full.log_tail(20));
    assert!(full.is_running());
    // The peer keeps the tally it had: the refused writes never went out.
    let peer_tally = peer.tally(&id).unwrap();
    assert_eq!(peer_tally.signers, 2, "{peer_tally:?}");

    phase("the disk grows to 160 MiB: the node heals by itself and catches up");
    // RocksDB resumes once a write buffer (64 MiB) is free.
    disk.resize(160);
    wait_until(WAIT, "the store writes again", || {
        let d = full.metric("commons_store_degraded");
        (d == 0.0).then_some(()).ok_or_else(|| {
            let rocksdb =
                std::fs::read_to_string(full.datadir().join("db/LOG")).unwrap_or_default();
            let tail: Vec<&str> = rocksdb.lines().rev().take(15).collect();
            format!(
                "degraded {d}\n{}\nRocksDB's LOG, newest first:\n{}",
                full.log_tail(5),
                tail.join("\n")
            )
        })
    });
    wait_until(WAIT, "the healed node holds the peer's signal", || {
        let (a, b) = (full.tally(&id), peer.tally(&id));
        match (a, b) {
            (Ok(a), Ok(b)) if tally_essence(&a) == tally_essence(&b) => Ok(()),
            (a, b) => Err(format!("{a:?} vs {b:?}")),
        }
    });
    let next = signal(&full, &id, "abstain").unwrap();
    assert_eq!(next, acknowledged + 1, "the refused signal left no trace");
    acknowledged = next;
    full.call::<method::SubmitProposal>(&SubmitProposalParams {
        hex: hex::encode(&other_bytes),
    })
    .unwrap();

    phase("kill -9 and restart: everything acknowledged is there");
    let before = tally_essence(&full.tally(&id).unwrap());
    full.kill9();
    full.restart().unwrap();
    assert_eq!(tally_essence(&full.tally(&id).unwrap()), before);
    full.tally(&other).unwrap();
    assert_eq!(signal(&full, &id, "support").unwrap(), acknowledged + 1);
    assert!(
        !std::fs::read_to_string(full.log_path())
            .unwrap()
            .contains("panicked")
    );
    drop(peer);
    drop(full);
}

/// Copies a directory tree (files and directories only).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The database's files whose name starts with `prefix` and ends with `suffix`, largest first.
fn db_files(db: &Path, prefix: &str, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(db)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(prefix) && name.ends_with(suffix)
        })
        .map(|p| (std::fs::metadata(&p).unwrap().len(), p))
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    files.into_iter().map(|(_, p)| p).collect()
}

#[test]
fn a_damaged_store_stops_the_start_naming_the_file() {
    let phase = phases("store_damage");
    let mut node = TestNode::start(
        "damage",
        NodeSpec {
            ip: "127.0.0.1".into(),
            bootstrap: vec![],
            measurer: None,
        },
    )
    .unwrap();
    let t = now();
    for i in 0..20 {
        let (id, bytes) = regtest_proposal(&format!("damage {i}"), t - 1, t + 3600, 3);
        node.call::<method::SubmitProposal>(&SubmitProposalParams {
            hex: hex::encode(&bytes),
        })
        .unwrap();
        node.rpc("signal", json!({ "proposal": id, "choice": "support" }))
            .unwrap();
    }
    // A clean stop flushes the memtables: the records are in SST files.
    assert!(node.stop().unwrap().success());
    let db = node.datadir().join("db");
    phase(&format!(
        "files: {:?}",
        std::fs::read_dir(&db)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    ));

    type Damage = fn(&Path) -> String;
    let truncate_current: Damage = |db| {
        std::fs::write(db.join("CURRENT"), b"").unwrap();
        "CURRENT".into()
    };
    let truncate_manifest: Damage = |db| {
        let manifest = &db_files(db, "MANIFEST-", "")[0];
        let len = std::fs::metadata(manifest).unwrap().len();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(manifest)
            .unwrap();
        file.set_len(len / 2).unwrap();
        manifest.file_name().unwrap().to_string_lossy().into_owned()
    };
    let flip_sst: Damage = |db| {
        let sst = &db_files(db, "", ".sst")[0];
        let mut bytes = std::fs::read(sst).unwrap();
        // Inside the first data block, where the records are.
        for b in &mut bytes[16..48] {
            *b ^= 0xff;
        }
        std::fs::write(sst, bytes).unwrap();
        sst.file_name().unwrap().to_string_lossy().into_owned()
    };
    let truncate_sst: Damage = |db| {
        let sst = &db_files(db, "", ".sst")[0];
        let len = std::fs::metadata(sst).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(sst).unwrap();
        file.set_len(len / 2).unwrap();
        sst.file_name().unwrap().to_string_lossy().into_owned()
    };
    let delete_sst: Damage = |db| {
        let sst = &db_files(db, "", ".sst")[0];
        std::fs::remove_file(sst).unwrap();
        sst.file_name().unwrap().to_string_lossy().into_owned()
    };
    let cases: [(&str, Damage); 5] = [
        ("CURRENT emptied", truncate_current),
        ("MANIFEST truncated", truncate_manifest),
        ("SST bytes flipped", flip_sst),
        ("SST truncated", truncate_sst),
        ("SST deleted", delete_sst),
    ];
    for (what, damage) in cases {
        let copy = tempfile::Builder::new()
            .prefix("commons-damage-")
            .tempdir()
            .unwrap();
        copy_tree(&node.base, copy.path());
        let file = damage(&copy.path().join("regtest/db"));
        let (code, stderr) = run_to_exit(&binary("commonsd"), copy.path(), "127.0.0.1", &[]);
        phase(&format!(
            "{what} ({file}): exit {code:?}: {}",
            stderr.trim()
        ));
        assert!(
            matches!(code, Some(c) if c != 0),
            "{what}: {code:?} {stderr}"
        );
        assert!(stderr.contains("is damaged"), "{what}: {stderr}");
        assert!(stderr.contains(&file), "{what}: {file} not named: {stderr}");
        assert!(stderr.contains(".damaged"), "{what}: no advice: {stderr}");
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    }

    phase("the undamaged store still starts");
    node.restart().unwrap();
    assert_eq!(
        node.call::<method::ListProposals>(&commons_rpc::NoParams {})
            .unwrap()
            .len(),
        20
    );
}
