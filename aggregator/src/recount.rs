//! A recount anyone can run: every message behind a node's tally of one proposal, as one
//! file, and the recomputation of that tally from the file alone.
//!
//! A node takes a [`Snapshot`] under its lock (the proposal, the signals on it, the
//! equivocation evidence against its signers, every attestation that makes the population,
//! and the tally those give at that epoch) and turns it into a [`RecountFile`] outside the
//! lock. [`recount`] feeds the file's messages to a fresh [`Intake`], the decision code every
//! node runs on what it receives (signatures verified as the node verifies them), and
//! compares what comes out with what the node recorded: the tally field by field, bit for
//! bit, and the counted population node by node. The format is written up in
//! `docs/PROTOCOL.md`, "Recount".

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::IpAddr;

use commons_signaling::{
    Equivocation, Hash32, MessageKind, NetworkSpec, Presence, Proposal, PublicKey, Signal,
    UptimeAttestation, WireIp, wire,
};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::aggregator::Aggregator;
use crate::intake::{Checked, Intake, Pending, Reason, Verified};
use crate::population::AttestationOutcome;
use crate::tally::{ProposalState, Tally};

/// The first 16 bytes of every recount file: readable by `head -1`, and what tells a recount
/// file from any other.
pub const MAGIC: &[u8; 16] = b"commons-recount\n";

/// The version of the file format this code writes and reads.
pub const FORMAT_VERSION: u64 = 1;

/// One message's canonical bytes, as they travel on the wire (a CBOR byte string in the
/// file). Kept as bytes so each message is decoded by its own strict decoder, and named by
/// its place in the file when it does not decode.
#[derive(Clone, PartialEq, Eq)]
pub struct MessageBytes(pub Vec<u8>);

impl fmt::Debug for MessageBytes {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "MessageBytes({} bytes)", self.0.len())
    }
}

impl Serialize for MessageBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for MessageBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl Visitor<'_> for BytesVisitor {
            type Value = MessageBytes;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a message as a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<MessageBytes, E> {
                Ok(MessageBytes(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<MessageBytes, E> {
                Ok(MessageBytes(v))
            }
        }
        // A byte buffer grows as it is read, so a declared length larger than the file
        // allocates nothing it does not hold.
        d.deserialize_byte_buf(BytesVisitor)
    }
}

/// A node of the counted population, at the address it counts at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountedNode {
    /// Its key.
    pub key: PublicKey,
    /// The address it counts at.
    pub ip: WireIp,
}

/// What the exporting node said: its tally and state of the proposal at the file's epoch, and
/// the population it counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    /// The exporting node's key (it does not sign the file: the messages carry their own
    /// signatures, and the numbers are checked rather than trusted).
    pub exporter: PublicKey,
    /// Its tally, as `gettally` gave it at that moment.
    pub tally: Tally,
    /// The proposal's state at the file's time.
    pub state: ProposalState,
    /// The epoch at which the node latched an override, if it did. A latched verdict
    /// depends on an earlier epoch's population, which one epoch's messages cannot
    /// reproduce: the recount takes it from here, as a restarting node takes it from its
    /// store.
    pub overridden_at: Option<u64>,
    /// Every node it counted in the population, by key.
    pub counted: Vec<CountedNode>,
}

/// A recount file, format version 1: [`MAGIC`], then this struct as canonical CBOR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecountFile {
    /// [`FORMAT_VERSION`].
    pub version: u64,
    /// The network's name.
    pub network: String,
    /// The network id every signature is bound to.
    pub network_id: Hash32,
    /// The proposal's id.
    pub proposal_id: Hash32,
    /// The epoch the tally was taken at.
    pub epoch: u64,
    /// The node's clock (Unix seconds) when it was taken.
    pub time: u64,
    /// What the node said.
    pub node: NodeView,
    /// The signed proposal.
    pub proposal: MessageBytes,
    /// Presences that carry attestations of the population (each the latest its node sent),
    /// by node.
    pub presences: Vec<MessageBytes>,
    /// Attestations of the population found in no presence or signal of the file (the
    /// exporting node's own, or ones whose carrier the node no longer holds), by subject,
    /// then attester.
    pub attestations: Vec<MessageBytes>,
    /// The latest signal of every signer on the proposal, by signer.
    pub signals: Vec<MessageBytes>,
    /// Equivocation evidence held against signers of the proposal, by signer.
    pub evidence: Vec<MessageBytes>,
}

/// Why bytes are not a recount file this code can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    /// The file does not start with [`MAGIC`].
    #[error("not a recount file (it starts with {start:?}, not \"commons-recount\")")]
    Foreign {
        /// Its first bytes, printable.
        start: String,
    },
    /// A newer format than this code reads.
    #[error(
        "recount file format {found}; this commons-cli reads format {FORMAT_VERSION}: upgrade it"
    )]
    NewerVersion {
        /// The version the file declares.
        found: u64,
    },
    /// The file ends in the middle of its content: cut short in a copy or a download.
    #[error("truncated: the file ends before its content does")]
    Truncated,
    /// The content is not a recount file of this format.
    #[error("malformed recount file: {0}")]
    Malformed(String),
}

/// Just the version, read first so that a newer format is reported as such.
#[derive(Deserialize)]
struct VersionOnly {
    version: u64,
}

fn cbor_error(e: ciborium::de::Error<std::io::Error>) -> FileError {
    match e {
        ciborium::de::Error::Io(_) => FileError::Truncated,
        ciborium::de::Error::Syntax(at) => FileError::Malformed(format!("bad CBOR at byte {at}")),
        ciborium::de::Error::Semantic(_, what) => FileError::Malformed(what),
        ciborium::de::Error::RecursionLimitExceeded => {
            FileError::Malformed("nested too deeply".into())
        }
    }
}

impl RecountFile {
    /// The file's bytes: [`MAGIC`], then canonical CBOR.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&wire::encode(self));
        out
    }

    /// Reads a file strictly: the magic, a version this code reads, one canonical CBOR
    /// value and nothing after it. The messages inside are decoded later, one by one, by
    /// [`recount`].
    pub fn decode(bytes: &[u8]) -> Result<Self, FileError> {
        let Some(content) = bytes.strip_prefix(MAGIC.as_slice()) else {
            let start = &bytes[..bytes.len().min(16)];
            return Err(FileError::Foreign {
                start: String::from_utf8_lossy(start).into_owned(),
            });
        };
        let header: VersionOnly =
            ciborium::de::from_reader_with_recursion_limit(content, 32).map_err(cbor_error)?;
        if header.version > FORMAT_VERSION {
            return Err(FileError::NewerVersion {
                found: header.version,
            });
        }
        if header.version != FORMAT_VERSION {
            return Err(FileError::Malformed(format!(
                "format version {}",
                header.version
            )));
        }
        let mut reader = content;
        let file: RecountFile =
            ciborium::de::from_reader_with_recursion_limit(&mut reader, 32).map_err(cbor_error)?;
        if !reader.is_empty() {
            return Err(FileError::Malformed(format!(
                "{} bytes after the content",
                reader.len()
            )));
        }
        if wire::encode(&file) != content {
            return Err(FileError::Malformed("not in its canonical encoding".into()));
        }
        Ok(file)
    }
}

/// What a node holds of one proposal at one moment: taken under the node's lock with
/// [`Snapshot::take`], turned into a file outside it with [`Snapshot::into_file`].
#[derive(Debug, Clone)]
pub struct Snapshot {
    network: String,
    network_id: Hash32,
    window: u64,
    proposal_id: Hash32,
    time: u64,
    node: NodeView,
    proposal: Proposal,
    signals: Vec<Signal>,
    evidence: Vec<Equivocation>,
    attestations: Vec<UptimeAttestation>,
}

impl Snapshot {
    /// Copies what the tally of proposal `id` depends on out of `aggregator`, at Unix time
    /// `now`, for the node `exporter`; `None` when the proposal is not held.
    pub fn take(
        aggregator: &Aggregator,
        id: &Hash32,
        now: u64,
        exporter: PublicKey,
    ) -> Option<Self> {
        let proposal = aggregator.proposal(id)?.clone();
        let tally = aggregator.tally(id)?;
        let state = aggregator.state(id, now)?;
        let signals = aggregator
            .signals()
            .filter(|s| s.body.proposal == *id)
            .cloned()
            .collect();
        let evidence = aggregator.evidence(Some(id)).into_iter().cloned().collect();
        let counted = aggregator
            .counted_nodes()
            .into_iter()
            .map(|(key, ip)| CountedNode {
                key,
                ip: WireIp(ip),
            })
            .collect();
        Some(Snapshot {
            network: aggregator.spec().name.clone(),
            network_id: *aggregator.network_id(),
            window: u64::from(aggregator.spec().uptime_window_epochs),
            proposal_id: *id,
            time: now,
            node: NodeView {
                exporter,
                tally,
                state,
                overridden_at: aggregator.overridden_at(id),
                counted,
            },
            proposal,
            signals,
            evidence,
            attestations: aggregator.attestations().collect(),
        })
    }

    /// The number of signals, evidence and attestations held.
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.signals.len(),
            self.evidence.len(),
            self.attestations.len(),
        )
    }

    /// The file. `presences` are the presences the node stored (the latest of each node),
    /// read **before** the snapshot was taken, so that everything they carry was applied by
    /// then: those that carry an attestation of the population are its carriers in the file,
    /// and each attestation is written once, in a signal, a presence, or bare.
    pub fn into_file(self, presences: impl IntoIterator<Item = Presence>) -> RecountFile {
        let epoch = self.node.tally.epoch;
        let mut signals = self.signals;
        signals.sort_by_key(|s| s.body.signer);
        let mut evidence = self.evidence;
        evidence.sort_by_key(|e| *e.signer());
        // Attestations are compared by their canonical bytes: equal bytes, one message.
        let in_signals: HashSet<Vec<u8>> = signals
            .iter()
            .flat_map(|s| s.body.attestations.iter().map(|a| a.encode()))
            .collect();
        let mut remaining: BTreeMap<Vec<u8>, &UptimeAttestation> = self
            .attestations
            .iter()
            .map(|a| (a.encode(), a))
            .filter(|(bytes, _)| !in_signals.contains(bytes))
            .collect();
        let mut carriers: Vec<Presence> = presences
            .into_iter()
            // A presence older than the window is refused as stale: what it carried has
            // expired, unless it names later epochs, and then it is written bare.
            .filter(|p| p.body.epoch + self.window >= epoch)
            .filter(|p| {
                p.body
                    .attestations
                    .iter()
                    .any(|a| remaining.contains_key(&a.encode()))
            })
            .collect();
        carriers.sort_by_key(|p| p.body.node);
        for p in &carriers {
            for a in p.body.attestations.iter() {
                remaining.remove(&a.encode());
            }
        }
        let mut bare: Vec<&UptimeAttestation> = remaining.into_values().collect();
        bare.sort_by_key(|a| (a.body.subject, a.body.attester));
        let bytes = |b: Vec<u8>| MessageBytes(b);
        RecountFile {
            version: FORMAT_VERSION,
            network: self.network,
            network_id: self.network_id,
            proposal_id: self.proposal_id,
            epoch,
            time: self.time,
            node: self.node,
            proposal: bytes(self.proposal.encode()),
            presences: carriers.iter().map(|p| bytes(p.encode())).collect(),
            attestations: bare.iter().map(|a| bytes(a.encode())).collect(),
            signals: signals.iter().map(|s| bytes(s.encode())).collect(),
            evidence: evidence.iter().map(|e| bytes(e.encode())).collect(),
        }
    }
}

/// Why a file cannot be recounted at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecountError {
    /// The file's messages are bound to another network than the one the recount runs.
    #[error(
        "the file is of network {file_network} (id {file_id}), not {network} (id {id}): pass --network"
    )]
    OtherNetwork {
        /// The file's network name.
        file_network: String,
        /// The file's network id.
        file_id: Hash32,
        /// The recount's network name.
        network: String,
        /// The recount's network id.
        id: Hash32,
    },
    /// The proposal does not decode or breaks the network's rules.
    #[error("the proposal is not valid on this network: {0}")]
    InvalidProposal(String),
    /// The proposal is valid but not the one the file names.
    #[error("the file's proposal has id {found}, but the file says {expected}")]
    ProposalMismatch {
        /// The id the file names.
        expected: Hash32,
        /// The proposal's real id.
        found: Hash32,
    },
}

/// One reason the recount does not reproduce the node's numbers, naming what causes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What it is about: a message section of the file (`presence`, `attestation`,
    /// `signal`, `evidence`), `tally` (a recorded number), `state`, or `population` (a node
    /// counted on one side only).
    pub about: &'static str,
    /// The message's place in its section of the file, for messages.
    pub index: Option<usize>,
    /// Who or what, as a person finds it in the file: a signal's signer and sequence, an
    /// attestation's attester and subject, a tally's field.
    pub name: String,
    /// What is wrong.
    pub problem: String,
}

/// What a recount found.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The tally recomputed from the file's messages, at the file's epoch.
    pub tally: Tally,
    /// The proposal's state at the file's time, recomputed (with the node's latched
    /// override, if any, taken from the file).
    pub state: ProposalState,
    /// The population the recount counted, by key.
    pub counted: Vec<CountedNode>,
    /// Signatures verified: the proposal's, each signal's, presence's and evidence's, and
    /// every attestation that could change the population. Carried attestations the intake
    /// finds already held or superseded are not verified, exactly as on a node.
    pub signatures_checked: u64,
    /// Attestations in the file without a carrying presence or signal.
    pub bare_attestations: usize,
    /// Everything that differs or was refused; empty when the recount reproduces the node's
    /// numbers bit for bit.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether the recount reproduces the node's tally, state and population exactly, with
    /// every message accepted.
    pub fn matches(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Verifies pending messages on up to `threads` threads; the results keep their order.
fn verify_all(
    pending: Vec<Pending>,
    spec: &NetworkSpec,
    now: u64,
    threads: usize,
) -> Vec<Verified> {
    map_on_threads(pending, threads, |p| p.verify(spec, now))
}

/// `f` of each item, on up to `threads` threads (on this one for fewer than two items a
/// thread); the results keep the items' order.
fn map_on_threads<T: Send, R: Send>(
    items: Vec<T>,
    threads: usize,
    f: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let threads = threads.max(1);
    if threads == 1 || items.len() < 2 * threads {
        return items.into_iter().map(f).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let mut chunks: Vec<Vec<T>> = Vec::new();
    let mut rest = items.into_iter().peekable();
    while rest.peek().is_some() {
        chunks.push(rest.by_ref().take(per_thread).collect());
    }
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| scope.spawn(move || chunk.into_iter().map(f).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("signature verification does not panic"))
            .collect()
    })
}

/// How a message of the file is named in a finding.
fn describe(kind: MessageKind, bytes: &[u8]) -> String {
    let decoded = match kind {
        MessageKind::Signal => Signal::decode(bytes).ok().map(|s| {
            format!(
                "by {} (sequence {}, {})",
                s.body.signer, s.body.sequence, s.body.choice
            )
        }),
        MessageKind::Presence => Presence::decode(bytes)
            .ok()
            .map(|p| format!("of {} (epoch {})", p.body.node, p.body.epoch)),
        MessageKind::Attestation => UptimeAttestation::decode(bytes).ok().map(|a| {
            format!(
                "by {} about {} (epoch {})",
                a.body.attester, a.body.subject, a.body.epoch
            )
        }),
        MessageKind::Evidence => Equivocation::decode(bytes)
            .ok()
            .map(|e| format!("against {} (sequence {})", e.signer(), e.sequence())),
        _ => None,
    };
    decoded.unwrap_or_else(|| "that does not decode".into())
}

fn section(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Signal => "signal",
        MessageKind::Presence => "presence",
        MessageKind::Attestation => "attestation",
        MessageKind::Evidence => "evidence",
        MessageKind::Proposal => "proposal",
        MessageKind::Release => "release",
    }
}

fn refusal_text(reason: Reason) -> String {
    match reason {
        Reason::BadSignature => "refused: a signature does not verify".into(),
        Reason::Malformed => "refused: does not decode as a canonical message".into(),
        other => format!("refused ({})", other.label()),
    }
}

struct Run<'a> {
    spec: &'a NetworkSpec,
    intake: Intake,
    time: u64,
    threads: usize,
    signatures: u64,
    findings: Vec<Finding>,
}

impl Run<'_> {
    fn refuse(&mut self, kind: MessageKind, index: usize, bytes: &[u8], problem: String) {
        self.findings.push(Finding {
            about: section(kind),
            index: Some(index),
            name: describe(kind, bytes),
            problem,
        });
    }

    /// Runs a section of the file through the intake as a node runs what it receives: the
    /// cheap checks, the signatures (in parallel), then the application.
    fn ingest(&mut self, kind: MessageKind, items: &[MessageBytes]) {
        let mut waiting = Vec::new();
        let mut pending = Vec::new();
        for (index, item) in items.iter().enumerate() {
            match self.intake.check(kind, &item.0, self.time) {
                Checked::Decided(reason) => self.refuse(kind, index, &item.0, refusal_text(reason)),
                Checked::Verify(p) => {
                    let own = if kind == MessageKind::Evidence { 2 } else { 1 };
                    self.signatures += own + p.attestations().len() as u64;
                    waiting.push(index);
                    pending.push(*p);
                }
            }
        }
        let verified = verify_all(pending, self.spec, self.time, self.threads);
        for (index, v) in waiting.into_iter().zip(verified) {
            let applied = self.intake.apply(v, self.time);
            if applied.reason != Reason::New {
                let bytes = &items[index].0;
                self.refuse(kind, index, bytes, refusal_text(applied.reason));
            }
        }
    }

    /// Bare attestations go to the aggregator as a restarting node replays its stored ones,
    /// each verified first.
    fn ingest_bare(&mut self, items: &[MessageBytes]) {
        let max_epoch = self
            .spec
            .epoch_at(self.time.saturating_add(self.spec.max_clock_skew_secs));
        let network_id = *self.intake.aggregator().network_id();
        let mut decoded = Vec::new();
        for (index, item) in items.iter().enumerate() {
            match UptimeAttestation::decode(&item.0) {
                Ok(a) if a.body.epoch > max_epoch => self.refuse(
                    MessageKind::Attestation,
                    index,
                    &item.0,
                    format!(
                        "refused: issued at epoch {}, after the file's time",
                        a.body.epoch
                    ),
                ),
                Ok(a) => decoded.push((index, a)),
                Err(e) => self.refuse(MessageKind::Attestation, index, &item.0, e.to_string()),
            }
        }
        self.signatures += decoded.len() as u64;
        let valid: Vec<bool> = map_on_threads(decoded.iter().collect(), self.threads, |item| {
            item.1.verify(&network_id)
        });
        for ((index, a), ok) in decoded.into_iter().zip(valid) {
            if !ok {
                let bytes = &items[index].0;
                self.refuse(
                    MessageKind::Attestation,
                    index,
                    bytes,
                    refusal_text(Reason::BadSignature),
                );
                continue;
            }
            let outcome = self.intake.aggregator_mut().add_attestation(a);
            if outcome != AttestationOutcome::New {
                let bytes = &items[index].0;
                self.refuse(
                    MessageKind::Attestation,
                    index,
                    bytes,
                    format!("changes nothing ({outcome:?})"),
                );
            }
        }
    }
}

/// Recomputes the tally of `file` on the network `spec` with the intake every node runs,
/// verifying signatures on up to `threads` threads, and compares it with what the node
/// recorded.
pub fn recount(
    file: &RecountFile,
    spec: &NetworkSpec,
    threads: usize,
) -> Result<Report, RecountError> {
    let network_id = spec.network_id();
    if file.network_id != network_id {
        return Err(RecountError::OtherNetwork {
            file_network: file.network.clone(),
            file_id: file.network_id,
            network: spec.name.clone(),
            id: network_id,
        });
    }
    let proposal = Proposal::decode(&file.proposal.0)
        .map_err(|e| RecountError::InvalidProposal(e.to_string()))?;
    let id = proposal.id(&network_id);
    if id != file.proposal_id {
        return Err(RecountError::ProposalMismatch {
            expected: file.proposal_id,
            found: id,
        });
    }
    let signatures = proposal.signatures.len() as u64;
    let mut intake = Intake::new(spec.clone(), file.epoch, None);
    intake
        .aggregator_mut()
        .add_proposal(proposal)
        .map_err(|e| RecountError::InvalidProposal(e.to_string()))?;
    let mut run = Run {
        spec,
        intake,
        time: file.time,
        threads,
        signatures,
        findings: Vec::new(),
    };
    // The order a restarting node replays its store in: what qualifies signers, then the
    // signals, then the evidence that excludes some of them.
    run.ingest(MessageKind::Presence, &file.presences);
    run.ingest_bare(&file.attestations);
    run.ingest(MessageKind::Signal, &file.signals);
    run.ingest(MessageKind::Evidence, &file.evidence);
    let Run {
        mut intake,
        signatures,
        mut findings,
        ..
    } = run;
    let agg = intake.aggregator_mut();
    if let Some(at) = file.node.overridden_at {
        agg.restore_override(&id, at);
    }
    let tally = agg.tally(&id).expect("the proposal was added");
    let state = agg.state(&id, file.time).expect("the proposal was added");
    let counted: Vec<CountedNode> = agg
        .counted_nodes()
        .into_iter()
        .map(|(key, ip)| CountedNode {
            key,
            ip: WireIp(ip),
        })
        .collect();
    findings.extend(population_differences(agg, file, &counted));
    findings.extend(tally_differences(&file.node.tally, &tally));
    if file.node.state != state {
        findings.push(Finding {
            about: "state",
            index: None,
            name: "state".into(),
            problem: format!(
                "the node says {}, the recount gives {}",
                file.node.state.name(),
                state.name()
            ),
        });
    }
    Ok(Report {
        tally,
        state,
        counted,
        signatures_checked: signatures,
        bare_attestations: file.attestations.len(),
        findings,
    })
}

/// Why the recount does not count `key`, from its standing.
fn why_not_counted(agg: &Aggregator, key: &PublicKey) -> String {
    let spec = agg.spec();
    match agg.uptime(key) {
        None => "the file holds no live attestation about it".into(),
        Some(s) if s.qualified => format!(
            "it qualifies, but another node counts for its address {} (IP dedup)",
            s.ip.map_or_else(|| "-".into(), |ip| ip.to_string())
        ),
        Some(s) => format!(
            "the file's attestations do not qualify it: uptime {} epochs (needs {}) at {}, \
             attested by {} measurers or netgroups",
            s.uptime_epochs,
            spec.min_uptime_epochs,
            s.ip.map_or_else(|| "no address".into(), |ip| ip.to_string()),
            s.attester_netgroups,
        ),
    }
}

fn population_differences(
    agg: &Aggregator,
    file: &RecountFile,
    counted: &[CountedNode],
) -> Vec<Finding> {
    let node: BTreeMap<PublicKey, IpAddr> =
        file.node.counted.iter().map(|c| (c.key, c.ip.0)).collect();
    let ours: BTreeMap<PublicKey, IpAddr> = counted.iter().map(|c| (c.key, c.ip.0)).collect();
    let signal_of = |key: &PublicKey| agg.signal(&file.proposal_id, key);
    let mut out = Vec::new();
    for (key, ip) in &node {
        let problem = match ours.get(key) {
            Some(our_ip) if our_ip == ip => continue,
            Some(our_ip) => format!("the node counts it at {ip}, the recount at {our_ip}"),
            None => {
                let mut text = format!(
                    "the node counts it at {ip}, but {}",
                    why_not_counted(agg, key)
                );
                if let Some(s) = signal_of(key) {
                    text.push_str(&format!(
                        "; its signal (sequence {}, {}) is in the node's tally",
                        s.body.sequence, s.body.choice
                    ));
                }
                text
            }
        };
        out.push(Finding {
            about: "population",
            index: None,
            name: key.to_string(),
            problem,
        });
    }
    for (key, ip) in &ours {
        if !node.contains_key(key) {
            out.push(Finding {
                about: "population",
                index: None,
                name: key.to_string(),
                problem: format!(
                    "the file's attestations qualify it at {ip}, but the node did not count it"
                ),
            });
        }
    }
    out
}

/// Every field of the two tallies that differs, compared bit for bit.
fn tally_differences(node: &Tally, ours: &Tally) -> Vec<Finding> {
    // Both lists have the same names in the same order: a tally has every choice.
    tally_fields(node)
        .into_iter()
        .zip(tally_fields(ours))
        .filter(|((_, a), (_, b))| a != b)
        .map(|((name, a), (_, b))| Finding {
            about: "tally",
            index: None,
            name,
            problem: format!("the node recorded {a}, the recount gives {b}"),
        })
        .collect()
}

/// A tally's fields as (name, exact text), in a fixed order.
fn tally_fields(t: &Tally) -> Vec<(String, String)> {
    // `{:?}` of an f64 is its shortest exact form, so equal text is equal bits.
    let float = |x: f64| format!("{x:?}");
    let mut fields = vec![
        ("proposal".to_string(), t.proposal.to_string()),
        ("tier".to_string(), t.tier.to_string()),
        ("epoch".to_string(), t.epoch.to_string()),
    ];
    for c in &t.choices {
        let name = c.choice;
        fields.push((format!("{name}.nodes"), c.nodes.to_string()));
        fields.push((format!("{name}.weight_units"), c.weight_units.to_string()));
        fields.push((format!("{name}.weight"), float(c.weight)));
    }
    let rest = [
        ("total_nodes", t.total_nodes.to_string()),
        ("total_weight_units", t.total_weight_units.to_string()),
        ("total_weight", float(t.total_weight)),
        ("override_weight_share", float(t.override_weight_share)),
        ("override_node_share", float(t.override_node_share)),
        ("required_weight_share", float(t.required_weight_share)),
        ("required_node_share", float(t.required_node_share)),
        ("override_met", t.override_met.to_string()),
        ("signers", t.signers.to_string()),
        ("uncounted_signers", t.uncounted_signers.to_string()),
        ("excluded_signers", t.excluded_signers.to_string()),
    ];
    fields.extend(
        rest.into_iter()
            .map(|(name, text)| (name.to_string(), text)),
    );
    fields
}
