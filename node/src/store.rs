//! The node's RocksDB store: the source of truth on restart.
//!
//! One column family per record kind, each keyed so that the record a node keeps replaces the
//! one it supersedes:
//!
//! | column family | key | value |
//! |---|---|---|
//! | `proposals` | proposal id | the signed proposal |
//! | `signals` | proposal id ‖ signer | the signer's latest signal on that proposal |
//! | `attestations` | subject ‖ attester | the attester's latest attestation of that subject |
//! | `presences` | node | the node's latest presence |
//! | `releases` | bundle id | the signed release bundle |
//! | `evidence` | proposal id ‖ signer | the first equivocation evidence held against that signer on that proposal |
//! | `meta` | text key | the node's own bookkeeping: `override/<id>` (latched overrides), `observed/<key>` (observed uptime), `seq/<id>` (own signal sequences), written and read by typed methods |
//!
//! Values are the canonical CBOR of the messages, which were verified before they were
//! stored; all writes of one ingested message go through one [`Batch`], so a crash (even
//! `kill -9`) leaves either all or none of them. Writes go to the write-ahead log without an
//! fsync: that survives a process crash, and only a power loss can lose the last messages,
//! which peers give back at the next catch-up sync.
//!
//! A write that fails (a full disk, an I/O error) is kept, in order, and written again before
//! any later write and by [`Store::retry_unwritten`]: what the node applied in memory always
//! reaches the disk once it accepts writes again, and nothing is written out of order. While
//! such writes wait the store is *degraded* ([`Store::degraded`]): the node then refuses new
//! messages before applying them (see `ingest.rs` and the RPC methods), so the backlog stays
//! as small as the writes that failed when the disk filled.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use commons_signaling::{
    Equivocation, Hash32, MessageKind, Presence, Proposal, PublicKey, ReleaseBundle, Signal,
    UptimeAttestation,
};
use rocksdb::{ColumnFamilyDescriptor, DB, IteratorMode, Options, WriteBatch};

use crate::epoch::Observed;

/// Meta key prefixes: `<prefix>/<hex of 32 bytes>`.
const OVERRIDE: &str = "override";
const OBSERVED: &str = "observed";
const SEQUENCE: &str = "seq";
/// The file in the database directory holding its sequence number at the last clean
/// shutdown (RocksDB leaves files of names it does not use alone).
pub const SEQUENCE_FILE: &str = "COMMONS-SEQUENCE";
/// The record [`Store::retry_unwritten`] writes to find out whether the disk takes writes.
const PROBE: &str = "probe";
/// Present while this node's own signing history is not known to be complete (see
/// [`Store::history_unverified`]).
const HISTORY_UNVERIFIED: &str = "history-unverified";

fn meta_key(prefix: &str, bytes: &[u8; 32]) -> String {
    format!("{prefix}/{}", hex::encode(bytes))
}

fn hex32(key: &str, prefix: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(key.strip_prefix(prefix)?.strip_prefix('/')?, &mut out).ok()?;
    Some(out)
}

fn be_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// Column family names, in the order records are replayed at start: proposals first (signals
/// refer to them), then attestations and presences (they qualify signers), then signals,
/// then equivocation evidence (which excludes signers already held).
pub const COLUMN_FAMILIES: [&str; 7] = [
    "proposals",
    "attestations",
    "presences",
    "signals",
    "releases",
    "meta",
    "evidence",
];

const CF_PROPOSALS: &str = "proposals";
const CF_SIGNALS: &str = "signals";
const CF_ATTESTATIONS: &str = "attestations";
const CF_PRESENCES: &str = "presences";
const CF_RELEASES: &str = "releases";
const CF_META: &str = "meta";
const CF_EVIDENCE: &str = "evidence";

/// A store failure, with what the node was doing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB reported an error.
    #[error("database: {0}")]
    Db(#[from] rocksdb::Error),
    /// Earlier writes still wait for the disk (it is full or failing): this one waits behind
    /// them, in memory.
    #[error("the store cannot write ({waiting} writes waiting): {last}")]
    Degraded {
        /// Writes waiting, this one included.
        waiting: usize,
        /// The latest error of the disk.
        last: String,
    },
    /// The database holds fewer writes than at its last clean shutdown: a file lost records
    /// that RocksDB's own recovery passed over (a truncated MANIFEST, say).
    #[error(
        "it holds writes up to sequence {found}, but it held {recorded} at its last clean shutdown ({SEQUENCE_FILE}): {manifest} or an SST file lost records"
    )]
    Regressed {
        /// The sequence number recorded at the last clean shutdown.
        recorded: u64,
        /// The sequence number the database opened with.
        found: u64,
        /// The MANIFEST file `CURRENT` names.
        manifest: String,
    },
    /// A stored record does not decode: the database is damaged or from another version.
    #[error("corrupt record in {cf}: {reason}")]
    Corrupt {
        /// The column family.
        cf: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The most failed writes kept for a retry. The node stops applying new messages while any
/// wait, so only its own bookkeeping (one batch an epoch or so) adds to them; past this bound
/// the oldest is dropped with an error (peers give its messages back at a catch-up).
const MAX_UNWRITTEN: usize = 10_000;

/// The RocksDB database of one network's data directory.
pub struct Store {
    db: DB,
    /// Batches whose write failed, oldest first, with the latest error.
    unwritten: Mutex<Unwritten>,
    /// Writes that failed since start (each retry that fails counts too).
    write_errors: AtomicU64,
    /// Set when a write succeeded after writes failed, whichever path wrote it.
    recovered: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Unwritten {
    batches: std::collections::VecDeque<Batch>,
    /// The error of the latest write, while writes fail.
    failing: Option<String>,
}

/// How a store opening failed, for the operator: what is wrong and what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenFailure {
    /// The files are damaged (a checksum, a size or a format does not match).
    Damaged,
    /// Another process holds the database's lock.
    Locked,
    /// Anything else (permissions, I/O).
    Other,
}

impl StoreError {
    /// What kind of failure this is at open or replay.
    pub fn open_failure(&self) -> OpenFailure {
        match self {
            StoreError::Corrupt { .. } | StoreError::Regressed { .. } => OpenFailure::Damaged,
            StoreError::Db(e) => match e.kind() {
                rocksdb::ErrorKind::Corruption => OpenFailure::Damaged,
                // RocksDB reports the lock as an I/O error on the LOCK file.
                rocksdb::ErrorKind::IOError if e.to_string().contains("LOCK") => {
                    OpenFailure::Locked
                }
                _ => OpenFailure::Other,
            },
            StoreError::Degraded { .. } => OpenFailure::Other,
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.db.path())
            .finish()
    }
}

/// One write: column family, key, and the value to put (`None` deletes).
type Op = (&'static str, Vec<u8>, Option<Vec<u8>>);

/// The writes of one ingested message, applied atomically by [`Store::write`].
#[derive(Default)]
pub struct Batch {
    ops: Vec<Op>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "Batch({} writes)", self.ops.len())
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Stores a proposal under its id.
    pub fn put_proposal(&mut self, id: &Hash32, proposal: &Proposal) {
        self.ops
            .push((CF_PROPOSALS, id.0.to_vec(), Some(proposal.encode())));
    }

    /// Stores a signal as its signer's latest on its proposal.
    pub fn put_signal(&mut self, signal: &Signal) {
        let key = pair_key(&signal.body.proposal.0, &signal.body.signer.0);
        self.ops.push((CF_SIGNALS, key, Some(signal.encode())));
    }

    /// Stores an attestation as its attester's latest about its subject.
    pub fn put_attestation(&mut self, attestation: &UptimeAttestation) {
        let key = pair_key(&attestation.body.subject.0, &attestation.body.attester.0);
        self.ops
            .push((CF_ATTESTATIONS, key, Some(attestation.encode())));
    }

    /// Stores a presence as its node's latest.
    pub fn put_presence(&mut self, presence: &Presence) {
        self.ops.push((
            CF_PRESENCES,
            presence.body.node.0.to_vec(),
            Some(presence.encode()),
        ));
    }

    /// Stores a release bundle under its id.
    pub fn put_release(&mut self, id: &Hash32, bundle: &ReleaseBundle) {
        self.ops
            .push((CF_RELEASES, id.0.to_vec(), Some(bundle.encode())));
    }

    /// Stores equivocation evidence under its proposal and signer (one per pair: the first
    /// held excludes the signer, later ones add nothing).
    pub fn put_evidence(&mut self, evidence: &Equivocation) {
        let key = pair_key(&evidence.proposal().0, &evidence.signer().0);
        self.ops.push((CF_EVIDENCE, key, Some(evidence.encode())));
    }

    /// Stores a bookkeeping value.
    pub fn put_meta(&mut self, key: &str, value: &[u8]) {
        self.ops
            .push((CF_META, key.as_bytes().to_vec(), Some(value.to_vec())));
    }

    /// Deletes a bookkeeping value.
    pub fn delete_meta(&mut self, key: &str) {
        self.ops.push((CF_META, key.as_bytes().to_vec(), None));
    }

    /// Records that a proposal's override was latched at `epoch` (the verdict depends on the
    /// population then, which replaying messages later cannot reproduce).
    pub fn put_override(&mut self, proposal: &Hash32, epoch: u64) {
        self.put_meta(&meta_key(OVERRIDE, &proposal.0), &epoch.to_be_bytes());
    }

    /// Forgets a latched override that equivocation evidence made void.
    pub fn delete_override(&mut self, proposal: &Hash32) {
        self.delete_meta(&meta_key(OVERRIDE, &proposal.0));
    }

    /// Records what this node observed of a peer.
    pub fn put_observed(&mut self, peer: &PublicKey, observed: &Observed) {
        let value = serde_json::to_vec(observed).expect("an observation serializes");
        self.put_meta(&meta_key(OBSERVED, &peer.0), &value);
    }

    /// Forgets what this node observed of a peer.
    pub fn delete_observed(&mut self, peer: &PublicKey) {
        self.delete_meta(&meta_key(OBSERVED, &peer.0));
    }

    /// Records the sequence number of this node's latest signal on a proposal, so that it
    /// never goes back (even if the stored signal is replaced by a peer's view of it).
    pub fn put_sequence(&mut self, proposal: &Hash32, sequence: u64) {
        self.put_meta(&meta_key(SEQUENCE, &proposal.0), &sequence.to_be_bytes());
    }

    /// Deletes the attestation by `attester` about `subject` (it expired).
    pub fn delete_attestation(&mut self, subject: &PublicKey, attester: &PublicKey) {
        self.ops
            .push((CF_ATTESTATIONS, pair_key(&subject.0, &attester.0), None));
    }
}

fn pair_key(a: &[u8; 32], b: &[u8; 32]) -> Vec<u8> {
    let mut key = Vec::with_capacity(64);
    key.extend_from_slice(a);
    key.extend_from_slice(b);
    key
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        options.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // The records are small and few next to what RocksDB is tuned for; keep its own
        // logs from piling up in the data directory.
        options.set_keep_log_file_num(4);
        let cfs = || {
            COLUMN_FAMILIES.iter().map(|name| {
                let mut cf = Options::default();
                cf.set_compression_type(rocksdb::DBCompressionType::Lz4);
                ColumnFamilyDescriptor::new(*name, cf)
            })
        };
        // RocksDB passes over a MANIFEST cut short (as a crash while writing it leaves it),
        // recovering an earlier state, and a read-write open would then write a new MANIFEST
        // and delete the files the short one does not list. The sequence number recorded at
        // the last clean shutdown tells a crash apart from a file that lost what was durable;
        // it is checked on a read-only open first, which changes nothing on disk.
        let recorded = std::fs::read_to_string(path.join(SEQUENCE_FILE))
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok());
        if let Some(recorded) = recorded {
            let manifest = std::fs::read_to_string(path.join("CURRENT"))
                .map(|name| path.join(name.trim()).display().to_string())
                .unwrap_or_else(|_| "the MANIFEST".into());
            let found = DB::open_cf_descriptors_read_only(&options, path, cfs(), false)?
                .latest_sequence_number();
            if found < recorded {
                return Err(StoreError::Regressed {
                    recorded,
                    found,
                    manifest,
                });
            }
        }
        let db = DB::open_cf_descriptors(&options, path, cfs())?;
        Ok(Store {
            db,
            unwritten: Mutex::default(),
            write_errors: AtomicU64::new(0),
            recovered: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("every column family is created at open")
    }

    /// Applies a batch atomically, after the writes that failed before it. For a batch the
    /// caller applied in memory already: when it cannot be written now it is kept for a retry
    /// (and the error says so), so that memory and disk agree again once the disk takes writes.
    pub fn write(&self, batch: Batch) -> Result<(), StoreError> {
        self.write_keeping(batch, true)
    }

    /// [`Store::write`] for a batch nothing was applied from yet: when it cannot be written it
    /// is dropped, and the caller drops what it stands for.
    pub fn write_unapplied(&self, batch: Batch) -> Result<(), StoreError> {
        self.write_keeping(batch, false)
    }

    fn write_keeping(&self, batch: Batch, keep: bool) -> Result<(), StoreError> {
        let mut unwritten = self.unwritten.lock().expect("unwritten lock poisoned");
        if let Err(e) = self.write_waiting(&mut unwritten) {
            if keep {
                Self::keep(&mut unwritten, batch);
            }
            return Err(StoreError::Degraded {
                waiting: unwritten.batches.len(),
                last: e.to_string(),
            });
        }
        let written = self.write_now(&batch);
        self.note(&mut unwritten, &written);
        written.map_err(|e| {
            if keep {
                Self::keep(&mut unwritten, batch);
            }
            StoreError::Db(e)
        })
    }

    fn write_now(&self, batch: &Batch) -> Result<(), rocksdb::Error> {
        let mut wb = WriteBatch::default();
        for (cf, key, value) in &batch.ops {
            match value {
                Some(value) => wb.put_cf(self.cf(cf), key, value),
                None => wb.delete_cf(self.cf(cf), key),
            }
        }
        self.db.write(wb)
    }

    /// Records the outcome of a write: a failure degrades the store, a success heals it.
    fn note(&self, unwritten: &mut Unwritten, written: &Result<(), rocksdb::Error>) {
        match written {
            Ok(()) => {
                if unwritten.failing.take().is_some() {
                    self.recovered.store(true, Ordering::Relaxed);
                }
            }
            Err(e) => {
                self.write_errors.fetch_add(1, Ordering::Relaxed);
                unwritten.failing = Some(e.to_string());
            }
        }
    }

    /// Writes the waiting batches in order, stopping at the first failure.
    fn write_waiting(&self, unwritten: &mut Unwritten) -> Result<(), rocksdb::Error> {
        while let Some(batch) = unwritten.batches.front() {
            let written = self.write_now(batch);
            self.note(unwritten, &written);
            written?;
            unwritten.batches.pop_front();
        }
        Ok(())
    }

    fn keep(unwritten: &mut Unwritten, batch: Batch) {
        if unwritten.batches.len() >= MAX_UNWRITTEN {
            unwritten.batches.pop_front();
            tracing::error!(
                kept = MAX_UNWRITTEN,
                "too many writes waiting for the disk; dropped the oldest (its messages come back at a catch-up)"
            );
        }
        unwritten.batches.push_back(batch);
    }

    /// Tries the disk again when the store is degraded: writes the batches that wait, or a
    /// small probe record when none does. `Ok(true)` when it was degraded and writes again,
    /// `Ok(false)` when it was not degraded, the error while it still cannot write.
    pub fn retry_unwritten(&self) -> Result<bool, StoreError> {
        let mut unwritten = self.unwritten.lock().expect("unwritten lock poisoned");
        if unwritten.failing.is_none() && unwritten.batches.is_empty() {
            return Ok(false);
        }
        let degraded = |unwritten: &Unwritten, e: rocksdb::Error| StoreError::Degraded {
            waiting: unwritten.batches.len(),
            last: e.to_string(),
        };
        if let Err(e) = self.write_waiting(&mut unwritten) {
            return Err(degraded(&unwritten, e));
        }
        if unwritten.failing.is_some() {
            let mut probe = Batch::new();
            probe.put_meta(PROBE, &[]);
            let written = self.write_now(&probe);
            self.note(&mut unwritten, &written);
            if let Err(e) = written {
                return Err(degraded(&unwritten, e));
            }
        }
        Ok(true)
    }

    /// While the store cannot write: how many writes wait, and the disk's latest error.
    pub fn degraded(&self) -> Option<(usize, String)> {
        let unwritten = self.unwritten.lock().expect("unwritten lock poisoned");
        unwritten
            .failing
            .clone()
            .or_else(|| (!unwritten.batches.is_empty()).then(String::new))
            .map(|error| (unwritten.batches.len(), error))
    }

    /// Whether the store wrote again after failing since the last call.
    pub fn take_recovered(&self) -> bool {
        self.recovered.swap(false, Ordering::Relaxed)
    }

    /// Writes that failed since start, retries included.
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }

    /// Writes memtables to SST files, so the next start does not replay the WAL (and the
    /// writes that waited for the disk before, if it takes them now).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.retry_unwritten()?;
        let cfs: Vec<&rocksdb::ColumnFamily> = COLUMN_FAMILIES.iter().map(|n| self.cf(n)).collect();
        self.db
            .flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default())?;
        self.db.flush_wal(true)?;
        if let Err(e) = self.record_sequence() {
            // Only the next start's check of lost records is weaker for it.
            tracing::warn!(error = %e, file = SEQUENCE_FILE, "cannot record the store's sequence number");
        }
        Ok(())
    }

    /// Records the database's sequence number, all of it durable after a flush, for the next
    /// open to check against.
    fn record_sequence(&self) -> std::io::Result<()> {
        use std::io::Write;
        let path = self.db.path().join(SEQUENCE_FILE);
        let temporary = path.with_extension("tmp");
        let mut file = std::fs::File::create(&temporary)?;
        writeln!(file, "{}", self.db.latest_sequence_number())?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        self.db.path()
    }

    /// Approximate bytes the store uses: SST files plus memtables, over all column families.
    pub fn size_bytes(&self) -> u64 {
        COLUMN_FAMILIES
            .iter()
            .map(|name| {
                let cf = self.cf(name);
                [
                    "rocksdb.total-sst-files-size",
                    "rocksdb.cur-size-all-mem-tables",
                ]
                .iter()
                .filter_map(|p| self.db.property_int_value_cf(cf, *p).ok().flatten())
                .sum::<u64>()
            })
            .sum()
    }

    fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }

    fn decode<T>(
        cf: &'static str,
        bytes: &[u8],
        decode: fn(&[u8]) -> Result<T, commons_signaling::DecodeError>,
    ) -> Result<T, StoreError> {
        decode(bytes).map_err(|e| StoreError::Corrupt {
            cf,
            reason: e.to_string(),
        })
    }

    fn all<T>(
        &self,
        cf: &'static str,
        decode: fn(&[u8]) -> Result<T, commons_signaling::DecodeError>,
    ) -> Result<Vec<T>, StoreError> {
        self.scan(cf, &[], decode)
    }

    fn scan<T>(
        &self,
        cf: &'static str,
        prefix: &[u8],
        decode: fn(&[u8]) -> Result<T, commons_signaling::DecodeError>,
    ) -> Result<Vec<T>, StoreError> {
        let mode = IteratorMode::From(prefix, rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(cf), mode) {
            let (key, value) = item?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push(Self::decode(cf, &value, decode)?);
        }
        Ok(out)
    }

    /// A proposal by id.
    pub fn proposal(&self, id: &Hash32) -> Result<Option<Proposal>, StoreError> {
        self.get(CF_PROPOSALS, &id.0)?
            .map(|b| Self::decode(CF_PROPOSALS, &b, Proposal::decode))
            .transpose()
    }

    /// The latest signal of `signer` on `proposal`.
    pub fn signal(
        &self,
        proposal: &Hash32,
        signer: &PublicKey,
    ) -> Result<Option<Signal>, StoreError> {
        self.get(CF_SIGNALS, &pair_key(&proposal.0, &signer.0))?
            .map(|b| Self::decode(CF_SIGNALS, &b, Signal::decode))
            .transpose()
    }

    /// The latest attestation by `attester` about `subject`.
    pub fn attestation(
        &self,
        subject: &PublicKey,
        attester: &PublicKey,
    ) -> Result<Option<UptimeAttestation>, StoreError> {
        self.get(CF_ATTESTATIONS, &pair_key(&subject.0, &attester.0))?
            .map(|b| Self::decode(CF_ATTESTATIONS, &b, UptimeAttestation::decode))
            .transpose()
    }

    /// The latest presence of `node`.
    pub fn presence(&self, node: &PublicKey) -> Result<Option<Presence>, StoreError> {
        self.get(CF_PRESENCES, &node.0)?
            .map(|b| Self::decode(CF_PRESENCES, &b, Presence::decode))
            .transpose()
    }

    /// A release bundle by id.
    pub fn release(&self, id: &Hash32) -> Result<Option<ReleaseBundle>, StoreError> {
        self.get(CF_RELEASES, &id.0)?
            .map(|b| Self::decode(CF_RELEASES, &b, ReleaseBundle::decode))
            .transpose()
    }

    /// Every proposal, by id.
    pub fn proposals(&self) -> Result<Vec<Proposal>, StoreError> {
        self.all(CF_PROPOSALS, Proposal::decode)
    }

    /// Every stored signal (the latest per signer and proposal).
    pub fn signals(&self) -> Result<Vec<Signal>, StoreError> {
        self.all(CF_SIGNALS, Signal::decode)
    }

    /// Every stored attestation (the latest per attester and subject).
    pub fn attestations(&self) -> Result<Vec<UptimeAttestation>, StoreError> {
        self.all(CF_ATTESTATIONS, UptimeAttestation::decode)
    }

    /// The stored attestations whose subject is `subject`.
    pub fn attestations_about(
        &self,
        subject: &PublicKey,
    ) -> Result<Vec<UptimeAttestation>, StoreError> {
        self.scan(CF_ATTESTATIONS, &subject.0, UptimeAttestation::decode)
    }

    /// Every stored presence (the latest per node).
    pub fn presences(&self) -> Result<Vec<Presence>, StoreError> {
        self.all(CF_PRESENCES, Presence::decode)
    }

    /// Every release bundle.
    pub fn releases(&self) -> Result<Vec<ReleaseBundle>, StoreError> {
        self.all(CF_RELEASES, ReleaseBundle::decode)
    }

    /// Every stored equivocation evidence, by proposal, then signer.
    pub fn evidence(&self) -> Result<Vec<Equivocation>, StoreError> {
        self.all(CF_EVIDENCE, Equivocation::decode)
    }

    /// One page of the raw records of a kind, in key order, starting after `after`: at most
    /// `max_items` records and about `max_bytes` of values (always at least one record, so
    /// paging makes progress). The flag says whether more records follow.
    #[allow(clippy::type_complexity)]
    pub fn page(
        &self,
        kind: MessageKind,
        after: Option<&[u8]>,
        max_items: usize,
        max_bytes: usize,
    ) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, bool), StoreError> {
        let cf = match kind {
            MessageKind::Proposal => CF_PROPOSALS,
            MessageKind::Signal => CF_SIGNALS,
            MessageKind::Attestation => CF_ATTESTATIONS,
            MessageKind::Presence => CF_PRESENCES,
            MessageKind::Release => CF_RELEASES,
            MessageKind::Evidence => CF_EVIDENCE,
        };
        let mode = match after {
            Some(key) => IteratorMode::From(key, rocksdb::Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for item in self.db.iterator_cf(self.cf(cf), mode) {
            let (key, value) = item?;
            if after.is_some_and(|a| *key == *a) {
                continue;
            }
            if out.len() >= max_items || (!out.is_empty() && bytes + value.len() > max_bytes) {
                return Ok((out, true));
            }
            bytes += value.len();
            out.push((key.to_vec(), value.to_vec()));
        }
        Ok((out, false))
    }

    /// A bookkeeping value.
    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(CF_META, key.as_bytes())
    }

    /// The latched overrides: proposal and the epoch the verdict was latched at.
    pub fn overrides(&self) -> Result<Vec<(Hash32, u64)>, StoreError> {
        Ok(self
            .meta_prefix(&format!("{OVERRIDE}/"))?
            .into_iter()
            .filter_map(|(key, value)| Some((Hash32(hex32(&key, OVERRIDE)?), be_u64(&value)?)))
            .collect())
    }

    /// What this node observed of each peer.
    pub fn observed(&self) -> Result<Vec<(PublicKey, Observed)>, StoreError> {
        Ok(self
            .meta_prefix(&format!("{OBSERVED}/"))?
            .into_iter()
            .filter_map(|(key, value)| {
                Some((
                    PublicKey(hex32(&key, OBSERVED)?),
                    serde_json::from_slice(&value).ok()?,
                ))
            })
            .collect())
    }

    /// The sequence number of this node's latest signal on a proposal.
    pub fn sequence(&self, proposal: &Hash32) -> Result<Option<u64>, StoreError> {
        Ok(self
            .meta(&meta_key(SEQUENCE, &proposal.0))?
            .and_then(|v| be_u64(&v)))
    }

    /// Whether this node's own signing history may be incomplete: marked when its key is
    /// older than its database (the data directory was lost or replaced while the key was
    /// kept), cleared once a catch-up with a peer gave back what the network holds of it.
    pub fn history_unverified(&self) -> Result<bool, StoreError> {
        Ok(self.meta(HISTORY_UNVERIFIED)?.is_some())
    }

    /// Marks (or clears) the node's signing history as unverified.
    pub fn set_history_unverified(&self, unverified: bool) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        if unverified {
            batch.put_meta(HISTORY_UNVERIFIED, &[1]);
        } else {
            batch.delete_meta(HISTORY_UNVERIFIED);
        }
        self.write(batch)
    }

    /// Every bookkeeping value whose key starts with `prefix`, with its key.
    pub fn meta_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mode = IteratorMode::From(prefix.as_bytes(), rocksdb::Direction::Forward);
        let mut out = Vec::new();
        for item in self.db.iterator_cf(self.cf(CF_META), mode) {
            let (key, value) = item?;
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            let key = String::from_utf8(key.to_vec()).map_err(|_| StoreError::Corrupt {
                cf: CF_META,
                reason: "key is not UTF-8".into(),
            })?;
            out.push((key, value.to_vec()));
        }
        Ok(out)
    }
}
