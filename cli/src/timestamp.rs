//! OpenTimestamps proofs of a release, checked up to a Bitcoin block header.
//!
//! A release's proof commits to its release id (the digest its signers sign) and travels
//! beside the bundle: it cannot sit inside the manifest, whose id it would change, and a
//! pending proof is upgraded after the release is signed. The `opentimestamps` crate parses
//! the proof and replays its operations from the digest; what the replay ends in, at each
//! Bitcoin attestation, must be the merkle root of the block header at that height, taken
//! from a file or from a local bitcoind. The block's own time is the attested time.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::anyhow;
use base64::Engine as _;
use opentimestamps::DetachedTimestampFile;
use opentimestamps::attestation::Attestation;
use opentimestamps::timestamp::{Step, StepData};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The largest proof read: real proofs are a few hundred bytes to a few KiB.
pub const MAX_PROOF_BYTES: usize = 16_384;

/// The longest message a proof's operations may produce, as python-opentimestamps (the
/// reference) allows. The crate does not bound it, so [`check_bounds`] does before parsing.
const MAX_MESSAGE_BYTES: usize = 4096;

/// The deepest nesting of operations and forks, as the crate allows.
const MAX_DEPTH: usize = 256;

/// The magic bytes that open a detached timestamp file, and its one known version.
const MAGIC: &[u8] = b"\x00OpenTimestamps\x00\x00Proof\x00\xbf\x89\xe2\xe8\x84\xe8\x92\x94";
const VERSION: u8 = 1;

/// The tags of the attestations whose payload has a grammar of its own.
const BITCOIN_TAG: &[u8] = b"\x05\x88\x96\x0d\x73\xd7\x19\x01";
const PENDING_TAG: &[u8] = b"\x83\xdf\xe3\x0d\x2e\xf9\x0c\x8e";

/// One 80-byte Bitcoin block header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockHeader([u8; 80]);

impl BlockHeader {
    /// A header from 80 raw bytes, or from 160 hex digits (as `bitcoin-cli getblockheader
    /// HASH false` prints it; surrounding white space is ignored).
    pub fn parse(bytes: &[u8]) -> Result<BlockHeader, String> {
        if let Ok(raw) = <[u8; 80]>::try_from(bytes) {
            return Ok(BlockHeader(raw));
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|_| {
                format!(
                    "{} bytes: a block header is 80 bytes, or 160 hex digits",
                    bytes.len()
                )
            })?
            .trim();
        let raw = hex::decode(text).map_err(|e| format!("not a hex block header: {e}"))?;
        <[u8; 80]>::try_from(raw.as_slice())
            .map(BlockHeader)
            .map_err(|_| format!("{} bytes of hex: a block header is 80 bytes", raw.len()))
    }

    /// The merkle root, in the header's own byte order (as a proof's replay ends in it).
    pub fn merkle_root(&self) -> [u8; 32] {
        self.0[36..68].try_into().expect("32 bytes")
    }

    /// The block's time (seconds since 1970), the time a proof in this block attests.
    pub fn time(&self) -> u32 {
        u32::from_le_bytes(self.0[68..72].try_into().expect("4 bytes"))
    }

    /// The block hash, in the byte order block explorers and bitcoind show.
    pub fn block_hash(&self) -> [u8; 32] {
        let mut hash: [u8; 32] = Sha256::digest(Sha256::digest(self.0)).into();
        hash.reverse();
        hash
    }

    /// Whether the hash is at or below the target its `bits` field claims: a header made up
    /// without the work fails this; the chain it belongs to is the header source's word.
    pub fn meets_its_target(&self) -> bool {
        let bits = u32::from_le_bytes(self.0[72..76].try_into().expect("4 bytes"));
        let exponent = (bits >> 24) as usize;
        let mantissa = bits & 0x007f_ffff;
        if bits & 0x0080_0000 != 0 || mantissa == 0 || exponent > 32 {
            return false;
        }
        // The target as a 256-bit big-endian number: the mantissa shifted up (exponent - 3) bytes.
        let mut target = [0u8; 32];
        let mantissa_bytes = mantissa.to_be_bytes();
        for (i, byte) in mantissa_bytes[1..].iter().enumerate() {
            // Byte i of the 3-byte mantissa lands at position 32 - exponent + i.
            if let Some(position) = (32 + i).checked_sub(exponent).filter(|p| *p < 32) {
                target[position] = *byte;
            }
        }
        self.block_hash() <= target
    }
}

/// Where the headers of attested blocks come from.
#[derive(Debug)]
pub enum HeaderSource {
    /// None: a Bitcoin attestation is reported but not checked.
    None,
    /// Header files, matched to an attestation by its merkle root.
    Files(Vec<(PathBuf, BlockHeader)>),
    /// A bitcoind JSON-RPC server, asked for the header at each attested height.
    Rpc(BitcoinRpc),
}

impl HeaderSource {
    /// Reads each header file, or names the one that is not a header.
    pub fn from_files(paths: &[PathBuf]) -> anyhow::Result<HeaderSource> {
        let mut headers = Vec::new();
        for path in paths {
            let bytes = crate::files::read_bounded(path, 4096, "block header file")?;
            let header =
                BlockHeader::parse(&bytes).map_err(|e| anyhow!("{}: {e}", path.display()))?;
            headers.push((path.clone(), header));
        }
        Ok(HeaderSource::Files(headers))
    }
}

/// A bitcoind JSON-RPC endpoint (`getblockhash`, `getblockheader`).
#[derive(Debug)]
pub struct BitcoinRpc {
    url: String,
    auth: Option<String>,
}

impl BitcoinRpc {
    /// The endpoint at `url` (such as `http://127.0.0.1:8332/`), with the `user:password`
    /// of bitcoind's cookie file or `rpcauth` when given. Credentials in the URL are refused:
    /// they would show in the process list.
    pub fn new(url: &str, cookie: Option<&Path>) -> anyhow::Result<BitcoinRpc> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            anyhow!("--bitcoin-rpc {url}: only http:// URLs (bitcoind's RPC is plain HTTP)")
        })?;
        if rest
            .split('/')
            .next()
            .is_some_and(|authority| authority.contains('@'))
        {
            return Err(anyhow!(
                "--bitcoin-rpc {url}: no credentials in the URL (anyone can read process arguments); \
                 give bitcoind's cookie file with --bitcoin-rpc-cookie"
            ));
        }
        let auth = match cookie {
            None => None,
            Some(path) => {
                let text = crate::files::read_bounded(path, 4096, "bitcoind cookie file")?;
                let text = String::from_utf8(text).map_err(|_| {
                    anyhow!(
                        "{}: not a bitcoind cookie file (user:password)",
                        path.display()
                    )
                })?;
                let text = text.trim();
                if !text.contains(':') {
                    return Err(anyhow!(
                        "{}: not a bitcoind cookie file (user:password)",
                        path.display()
                    ));
                }
                Some(base64::engine::general_purpose::STANDARD.encode(text))
            }
        };
        Ok(BitcoinRpc {
            url: url.to_string(),
            auth,
        })
    }

    /// One call; its `result`, or the error in a person's words.
    fn call(&self, method: &str, params: Value) -> Result<Value, String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let body =
            json!({"jsonrpc": "1.0", "id": "commons-cli", "method": method, "params": params});
        let mut request = agent
            .post(self.url.as_str())
            .content_type("application/json");
        if let Some(auth) = &self.auth {
            request = request.header("Authorization", format!("Basic {auth}"));
        }
        let mut response = request
            .send(body.to_string().as_bytes())
            .map_err(|e| format!("bitcoind at {}: {e}", self.url))?;
        let status = response.status().as_u16();
        if status == 401 || status == 403 {
            return Err(format!(
                "bitcoind at {} refused the credentials (HTTP {status}); give its cookie file with --bitcoin-rpc-cookie",
                self.url
            ));
        }
        let answer = response
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| format!("bitcoind at {}: {e}", self.url))?;
        let answer: Value = serde_json::from_slice(&answer).map_err(|_| {
            format!(
                "bitcoind at {} answered HTTP {status} without JSON-RPC",
                self.url
            )
        })?;
        if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("unknown error");
            return Err(format!("bitcoind at {}: {method}: {message}", self.url));
        }
        Ok(answer.get("result").cloned().unwrap_or(Value::Null))
    }

    /// The header of the main chain's block at `height`, checked against the block hash
    /// bitcoind gives for that height.
    pub fn header_at(&self, height: u64) -> Result<BlockHeader, String> {
        let hash = self.call("getblockhash", json!([height]))?;
        let hash = hash
            .as_str()
            .ok_or_else(|| {
                format!(
                    "bitcoind at {}: getblockhash {height} gave no hash",
                    self.url
                )
            })?
            .to_string();
        let header = self.call("getblockheader", json!([hash, false]))?;
        let header = header.as_str().ok_or_else(|| {
            format!(
                "bitcoind at {}: getblockheader {hash} gave no header",
                self.url
            )
        })?;
        let header = BlockHeader::parse(header.as_bytes())
            .map_err(|e| format!("bitcoind at {}: getblockheader {hash}: {e}", self.url))?;
        if hex::encode(header.block_hash()) != hash {
            return Err(format!(
                "bitcoind at {}: the header it gave for block {hash} hashes to {}",
                self.url,
                hex::encode(header.block_hash())
            ));
        }
        Ok(header)
    }
}

/// What came of one Bitcoin attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BitcoinOutcome {
    /// The header's merkle root is what the proof commits to.
    Confirmed {
        /// The block hash.
        block_hash: [u8; 32],
        /// The block's time.
        time: u32,
        /// Where the header came from.
        source: String,
    },
    /// The header source has a header, and it is another block's (or a forged one).
    Mismatch {
        /// What the source said, in a person's words.
        found: String,
    },
    /// No header was given for it.
    NotChecked,
    /// The header could not be had (bitcoind down, not synced that far, ...).
    Unavailable(String),
}

/// One Bitcoin attestation of a proof and what came of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitcoinCheck {
    /// The block height the proof names.
    pub height: u64,
    /// What the replay ends in, which must be the block's merkle root (header byte order).
    pub merkle_root: [u8; 32],
    /// What came of it.
    pub outcome: BitcoinOutcome,
}

/// The verdict on a proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A Bitcoin block header confirms it.
    Confirmed,
    /// The proof is for another digest, or the headers given do not confirm it.
    Mismatch,
    /// It names Bitcoin blocks, but no header was given (or could be had) to check them.
    NotChecked,
    /// Only calendars have it so far: not yet in a Bitcoin block.
    Pending,
}

impl Status {
    /// The word JSON output uses.
    pub fn name(self) -> &'static str {
        match self {
            Status::Confirmed => "confirmed",
            Status::Mismatch => "mismatch",
            Status::NotChecked => "not-checked",
            Status::Pending => "pending",
        }
    }
}

/// A proof, checked against a digest and a header source.
#[derive(Debug, Clone)]
pub struct Report {
    /// The digest the proof is for.
    pub proof_digest: Vec<u8>,
    /// Whether that is the digest it should be for.
    pub digest_matches: bool,
    /// Every Bitcoin attestation.
    pub bitcoin: Vec<BitcoinCheck>,
    /// The calendars of every pending attestation.
    pub pending: Vec<String>,
    /// How many attestations are of kinds this tool does not know (other chains).
    pub unknown: usize,
}

impl Report {
    /// The verdict: a proof for another digest never counts; otherwise the earliest block
    /// that confirms it counts, whatever its other attestations say.
    pub fn status(&self) -> Status {
        if !self.digest_matches {
            return Status::Mismatch;
        }
        if self.confirmed().is_some() {
            return Status::Confirmed;
        }
        if self
            .bitcoin
            .iter()
            .any(|b| matches!(b.outcome, BitcoinOutcome::Mismatch { .. }))
        {
            return Status::Mismatch;
        }
        if !self.bitcoin.is_empty() {
            return Status::NotChecked;
        }
        Status::Pending
    }

    /// The confirmed attestation of the lowest height.
    pub fn confirmed(&self) -> Option<&BitcoinCheck> {
        self.bitcoin
            .iter()
            .filter(|b| matches!(b.outcome, BitcoinOutcome::Confirmed { .. }))
            .min_by_key(|b| b.height)
    }

    /// One line for a person: what the proof attests, or why it does not.
    pub fn summary(&self, expected: &[u8; 32], what: &str) -> String {
        let status = self.status();
        if !self.digest_matches {
            return format!(
                "DOES NOT MATCH: the proof is for digest {}, not {what} {}",
                hex::encode(&self.proof_digest),
                hex::encode(expected)
            );
        }
        match status {
            Status::Confirmed => {
                let check = self.confirmed().expect("confirmed");
                let BitcoinOutcome::Confirmed {
                    block_hash,
                    time,
                    source,
                } = &check.outcome
                else {
                    unreachable!("confirmed() returns confirmed attestations");
                };
                format!(
                    "Bitcoin block {} at {} (block {}, header from {source})",
                    check.height,
                    crate::format::utc(u64::from(*time)),
                    hex::encode(block_hash)
                )
            }
            Status::Mismatch => {
                let mut line = String::from("DOES NOT MATCH:");
                for check in &self.bitcoin {
                    if let BitcoinOutcome::Mismatch { found } = &check.outcome {
                        let _ = write!(
                            line,
                            " at height {} the proof commits to merkle root {}, but {found};",
                            check.height,
                            display_root(&check.merkle_root)
                        );
                    }
                }
                line.pop();
                line
            }
            Status::NotChecked => {
                let mut line = String::from("NOT CHECKED:");
                for check in &self.bitcoin {
                    match &check.outcome {
                        BitcoinOutcome::Unavailable(why) => {
                            let _ = write!(line, " Bitcoin block {}: {why};", check.height);
                        }
                        _ => {
                            let _ = write!(line, " Bitcoin block {} attests it;", check.height);
                        }
                    }
                }
                line.push_str(
                    " give the block header (--block-header FILE or --bitcoin-rpc URL) to check it",
                );
                line
            }
            Status::Pending => {
                if self.pending.is_empty() {
                    "PENDING: no Bitcoin attestation in the proof (only of kinds this tool does not know)".to_string()
                } else {
                    format!(
                        "PENDING: not in a Bitcoin block yet, only submitted to {}; run `ots upgrade` on the proof once a block has it (a few hours)",
                        self.pending.join(", ")
                    )
                }
            }
        }
    }

    /// The report as JSON.
    pub fn json(&self, path: &Path) -> Value {
        json!({
            "proof": path.display().to_string(),
            "status": self.status().name(),
            "digest": hex::encode(&self.proof_digest),
            "digest_matches": self.digest_matches,
            "bitcoin": self.bitcoin.iter().map(|check| {
                let mut entry = json!({
                    "height": check.height,
                    "merkle_root": display_root(&check.merkle_root),
                });
                match &check.outcome {
                    BitcoinOutcome::Confirmed { block_hash, time, source } => {
                        entry["result"] = json!("confirmed");
                        entry["block_hash"] = json!(hex::encode(block_hash));
                        entry["time"] = json!(time);
                        entry["header_from"] = json!(source);
                    }
                    BitcoinOutcome::Mismatch { found } => {
                        entry["result"] = json!("mismatch");
                        entry["problem"] = json!(found);
                    }
                    BitcoinOutcome::NotChecked => entry["result"] = json!("not-checked"),
                    BitcoinOutcome::Unavailable(why) => {
                        entry["result"] = json!("not-checked");
                        entry["problem"] = json!(why);
                    }
                }
                entry
            }).collect::<Value>(),
            "pending": self.pending,
            "unknown_attestations": self.unknown,
        })
    }
}

/// A merkle root in the byte order explorers and bitcoind show.
fn display_root(root: &[u8; 32]) -> String {
    let mut shown = *root;
    shown.reverse();
    hex::encode(shown)
}

/// Checks a detached proof against the digest it must be for and the headers of the blocks
/// it names. `Err` when the bytes are no proof at all.
pub fn check(proof: &[u8], expected: &[u8; 32], headers: &HeaderSource) -> Result<Report, String> {
    check_bounds(proof)?;
    let file = DetachedTimestampFile::from_reader(proof)
        .map_err(|e| format!("not an OpenTimestamps proof: {e}"))?;
    let timestamp = file.timestamp;
    let mut attested = Vec::new();
    collect_attestations(&timestamp.first_step, &mut attested);
    let mut report = Report {
        digest_matches: timestamp.start_digest == expected,
        proof_digest: timestamp.start_digest,
        bitcoin: Vec::new(),
        pending: Vec::new(),
        unknown: 0,
    };
    for (attestation, message) in attested {
        match attestation {
            Attestation::Bitcoin { height } => {
                let height = *height as u64;
                // A replay that does not end in 32 bytes cannot be a merkle root.
                let merkle_root: [u8; 32] = match message.as_slice().try_into() {
                    Ok(root) => root,
                    Err(_) => {
                        return Err(format!(
                            "the Bitcoin attestation at height {height} is on {} bytes, not a 32-byte merkle root",
                            message.len()
                        ));
                    }
                };
                let outcome = bitcoin_outcome(height, &merkle_root, headers);
                report.bitcoin.push(BitcoinCheck {
                    height,
                    merkle_root,
                    outcome,
                });
            }
            Attestation::Pending { uri } => report.pending.push(uri.clone()),
            Attestation::Unknown { .. } => report.unknown += 1,
        }
    }
    report.bitcoin.sort_by_key(|b| b.height);
    Ok(report)
}

/// Every attestation of the proof's tree with the message it attests.
fn collect_attestations<'s>(step: &'s Step, out: &mut Vec<(&'s Attestation, &'s Vec<u8>)>) {
    if let StepData::Attestation(attestation) = &step.data {
        out.push((attestation, &step.output));
    }
    for next in &step.next {
        collect_attestations(next, out);
    }
}

fn bitcoin_outcome(height: u64, merkle_root: &[u8; 32], headers: &HeaderSource) -> BitcoinOutcome {
    let confirmed = |header: &BlockHeader, source: String| BitcoinOutcome::Confirmed {
        block_hash: header.block_hash(),
        time: header.time(),
        source,
    };
    match headers {
        HeaderSource::None => BitcoinOutcome::NotChecked,
        HeaderSource::Files(files) => {
            if let Some((path, header)) =
                files.iter().find(|(_, h)| h.merkle_root() == *merkle_root)
            {
                if !header.meets_its_target() {
                    return BitcoinOutcome::Mismatch {
                        found: format!(
                            "the header in {} (block {}) does not meet its own proof-of-work target",
                            path.display(),
                            hex::encode(header.block_hash())
                        ),
                    };
                }
                return confirmed(header, path.display().to_string());
            }
            let found = files
                .iter()
                .map(|(path, header)| {
                    format!(
                        "{} holds block {} with merkle root {}",
                        path.display(),
                        hex::encode(header.block_hash()),
                        display_root(&header.merkle_root())
                    )
                })
                .collect::<Vec<_>>();
            if found.is_empty() {
                BitcoinOutcome::NotChecked
            } else {
                BitcoinOutcome::Mismatch {
                    found: found.join(", "),
                }
            }
        }
        HeaderSource::Rpc(rpc) => match rpc.header_at(height) {
            Ok(header) if header.merkle_root() == *merkle_root => {
                confirmed(&header, "bitcoind".to_string())
            }
            Ok(header) => BitcoinOutcome::Mismatch {
                found: format!(
                    "bitcoind's block {} at that height has merkle root {}",
                    hex::encode(header.block_hash()),
                    display_root(&header.merkle_root())
                ),
            },
            Err(why) => BitcoinOutcome::Unavailable(why),
        },
    }
}

/// Walks the proof's grammar without computing anything, so that the parser (which replays
/// every operation as it reads) never sees a proof whose messages outgrow
/// [`MAX_MESSAGE_BYTES`] (each hexlify doubles one), an integer longer than 64 bits, or a
/// length beyond the end of the file. Only the digest type SHA-256 is accepted: a release id
/// is a SHA-256 digest.
fn check_bounds(proof: &[u8]) -> Result<(), String> {
    let rest = proof
        .strip_prefix(MAGIC)
        .ok_or("not an OpenTimestamps proof (no magic bytes at its start)")?;
    let mut reader = Reader { bytes: rest, at: 0 };
    let version = reader.byte()?;
    if version != VERSION {
        return Err(format!(
            "OpenTimestamps proof version {version}; only version {VERSION} is known"
        ));
    }
    let digest_type = reader.byte()?;
    if digest_type != 0x08 {
        return Err(format!(
            "the proof's file digest is of type {digest_type:#04x}, not SHA-256 (0x08)"
        ));
    }
    reader.skip(32)?;
    walk(&mut reader, 32, 0)?;
    if reader.at != reader.bytes.len() {
        return Err("bytes after the end of the proof".to_string());
    }
    Ok(())
}

/// One path of the tree, from the next tag on, with the length of the message so far.
fn walk(reader: &mut Reader, mut length: usize, mut depth: usize) -> Result<(), String> {
    loop {
        depth += 1;
        if depth > MAX_DEPTH {
            return Err(format!("operations nested deeper than {MAX_DEPTH}"));
        }
        match reader.byte()? {
            // An attestation ends the path: an 8-byte tag and a length-prefixed payload.
            // The crate reads a Bitcoin or pending payload by its own grammar, not by the
            // length before it: a length that disagrees would make it read on where this walk
            // does not, so the two must agree.
            0x00 => {
                let tag = reader.take(8)?;
                let len = reader.uint()?;
                let end = reader
                    .at
                    .checked_add(len)
                    .filter(|end| *end <= reader.bytes.len());
                let end = end.ok_or("the proof ends in the middle")?;
                if tag == BITCOIN_TAG {
                    reader.uint()?;
                } else if tag == PENDING_TAG {
                    let uri_len = reader.uint()?;
                    reader.skip(uri_len)?;
                } else {
                    reader.at = end;
                }
                if reader.at != end {
                    return Err("an attestation whose length does not fit its contents".to_string());
                }
                return Ok(());
            }
            // A fork: one path, then the rest carries on from the same message.
            0xff => walk(reader, length, depth)?,
            0x02 | 0x03 => length = 20,
            0x08 => length = 32,
            0xf2 => {}
            0xf3 => length = length.saturating_mul(2),
            0xf0 | 0xf1 => {
                let len = reader.uint()?;
                if !(1..=MAX_MESSAGE_BYTES).contains(&len) {
                    return Err(format!("an append or prepend of {len} bytes"));
                }
                reader.skip(len)?;
                length = length.saturating_add(len);
            }
            tag => return Err(format!("unknown operation {tag:#04x}")),
        }
        if length > MAX_MESSAGE_BYTES {
            return Err(format!(
                "an operation makes a message longer than {MAX_MESSAGE_BYTES} bytes"
            ));
        }
    }
}

/// Reads a proof's bytes, failing at its end rather than past it.
struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    fn byte(&mut self) -> Result<u8, String> {
        let byte = *self
            .bytes
            .get(self.at)
            .ok_or("the proof ends in the middle")?;
        self.at += 1;
        Ok(byte)
    }

    fn take(&mut self, len: usize) -> Result<&'b [u8], String> {
        let start = self.at;
        self.skip(len)?;
        let bytes: &'b [u8] = self.bytes;
        Ok(&bytes[start..self.at])
    }

    fn skip(&mut self, len: usize) -> Result<(), String> {
        if self.bytes.len() - self.at < len {
            return Err("the proof ends in the middle".to_string());
        }
        self.at += len;
        Ok(())
    }

    /// A variable-length unsigned integer, 7 bits a byte, low bits first.
    fn uint(&mut self) -> Result<usize, String> {
        let mut value: u64 = 0;
        for shift in (0..63).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return usize::try_from(value).map_err(|_| "an integer too large".to_string());
            }
        }
        Err("an integer longer than 63 bits".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real data: the OpenTimestamps client's example proof of `hello-world.txt`, and the
    /// header of Bitcoin block 358391 it names (tests/fixtures/ots/README.md says where
    /// each comes from and how the header was checked).
    const HELLO: &[u8] = include_bytes!("../tests/fixtures/ots/hello-world.txt");
    const HELLO_PROOF: &[u8] = include_bytes!("../tests/fixtures/ots/hello-world.txt.ots");
    const BAD_STAMP: &[u8] = include_bytes!("../tests/fixtures/ots/bad-stamp.txt");
    const BAD_STAMP_PROOF: &[u8] = include_bytes!("../tests/fixtures/ots/bad-stamp.txt.ots");
    const PENDING: &[u8] = include_bytes!("../tests/fixtures/ots/incomplete.txt");
    const PENDING_PROOF: &[u8] = include_bytes!("../tests/fixtures/ots/incomplete.txt.ots");
    const HEADER_358391: &[u8] = include_bytes!("../tests/fixtures/ots/block-358391.hex");
    const HASH_358391: &str = "000000000000000003e892881a8cdcdc117c06d444057c98b6f04a9ee75a2319";

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn sha256(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    fn header_file() -> HeaderSource {
        HeaderSource::Files(vec![(
            PathBuf::from("block-358391.hex"),
            BlockHeader::parse(HEADER_358391).unwrap(),
        )])
    }

    #[test]
    fn the_fixture_header_is_block_358391() {
        let header = BlockHeader::parse(HEADER_358391).unwrap();
        assert_eq!(hex::encode(header.block_hash()), HASH_358391);
        assert!(header.meets_its_target());
        assert_eq!(header.time(), 1_432_827_678);
        // One bit changed, and the work is gone.
        let mut raw = header.0;
        raw[76] ^= 1;
        assert!(!BlockHeader(raw).meets_its_target());
    }

    #[test]
    fn a_real_proof_is_confirmed_by_its_block_header() {
        let report = check(HELLO_PROOF, &sha256(HELLO), &header_file()).unwrap();
        assert!(report.digest_matches);
        assert_eq!(report.status(), Status::Confirmed);
        let confirmed = report.confirmed().unwrap();
        assert_eq!(confirmed.height, 358_391);
        assert_eq!(
            confirmed.outcome,
            BitcoinOutcome::Confirmed {
                block_hash: hex::decode(HASH_358391).unwrap().try_into().unwrap(),
                time: 1_432_827_678,
                source: "block-358391.hex".to_string(),
            }
        );
        let line = report.summary(&sha256(HELLO), "file");
        assert!(
            line.starts_with("Bitcoin block 358391 at 2015-05-28 15:41:18 UTC"),
            "{line}"
        );
    }

    #[test]
    fn without_a_header_a_real_proof_is_reported_not_checked() {
        let report = check(HELLO_PROOF, &sha256(HELLO), &HeaderSource::None).unwrap();
        assert_eq!(report.status(), Status::NotChecked);
        assert!(
            report
                .summary(&sha256(HELLO), "file")
                .contains("Bitcoin block 358391 attests it")
        );
    }

    #[test]
    fn a_proof_of_another_digest_does_not_match() {
        let report = check(HELLO_PROOF, &sha256(b"something else"), &header_file()).unwrap();
        assert_eq!(report.status(), Status::Mismatch);
        assert!(
            report
                .summary(&sha256(b"x"), "file")
                .contains(&hex::encode(sha256(HELLO)))
        );
    }

    #[test]
    fn a_proof_whose_merkle_root_is_not_the_blocks_does_not_match() {
        // The client's deliberately bad example: it names block 358391 with another root.
        let report = check(BAD_STAMP_PROOF, &sha256(BAD_STAMP), &header_file()).unwrap();
        assert!(report.digest_matches);
        assert_eq!(report.status(), Status::Mismatch);
        let line = report.summary(&sha256(BAD_STAMP), "file");
        assert!(
            line.starts_with("DOES NOT MATCH: at height 358391"),
            "{line}"
        );
        assert!(line.contains(HASH_358391), "{line}");
    }

    #[test]
    fn a_proof_only_calendars_hold_is_pending() {
        let report = check(PENDING_PROOF, &sha256(PENDING), &header_file()).unwrap();
        assert_eq!(report.status(), Status::Pending);
        assert_eq!(
            report.pending,
            ["https://alice.btc.calendar.opentimestamps.org"]
        );
        assert!(
            report
                .summary(&sha256(PENDING), "file")
                .starts_with("PENDING: not in a Bitcoin block yet")
        );
    }

    #[test]
    fn malformed_proofs_are_refused_before_parsing() {
        let digest = sha256(HELLO);
        let none = HeaderSource::None;
        // Cut anywhere, or one byte too many.
        for len in [0, 10, MAGIC.len() + 1, 100, HELLO_PROOF.len() - 1] {
            assert!(
                check(&HELLO_PROOF[..len], &digest, &none).is_err(),
                "cut at {len}"
            );
        }
        assert!(check(&cat(&[HELLO_PROOF, &[0]]), &digest, &none).is_err());
        let start = cat(&[MAGIC, &[VERSION, 0x08], &digest]);
        // Hexlify doubles the message: 8 of them would make 8 KiB from 32 bytes, and 40 of
        // them more memory than there is (the crate itself would try).
        let bomb = cat(&[&start, &[0xf3; 40], &[0x00], &[0u8; 8], &[0]]);
        assert!(
            check(&bomb, &digest, &none)
                .unwrap_err()
                .contains("longer than 4096")
        );
        // An attestation claiming a payload of 2^62 bytes, and an integer of 70 bits.
        let huge = cat(&[&start, &[0x00], &[1u8; 8], &[0xff; 8], &[0x3f]]);
        assert!(
            check(&huge, &digest, &none)
                .unwrap_err()
                .contains("ends in the middle")
        );
        let long = cat(&[&start, &[0x00], &[1u8; 8], &[0xff; 10], &[0x01]]);
        assert!(
            check(&long, &digest, &none)
                .unwrap_err()
                .contains("longer than 63 bits")
        );
        // A Bitcoin attestation whose length covers more than its height: the crate would
        // read the rest as operations (here, the hexlify bomb).
        let hidden = cat(&[&start, &[0xff, 0x00], BITCOIN_TAG, &[42, 0x01], &[0xf3; 41]]);
        assert!(
            check(&hidden, &digest, &none)
                .unwrap_err()
                .contains("does not fit")
        );
        // Forks nested past the limit.
        let deep = cat(&[&start, &[0xff; 300], &[0x00], &[0u8; 8], &[0]]);
        assert!(check(&deep, &digest, &none).unwrap_err().contains("deeper"));
    }

    #[test]
    fn headers_are_read_as_hex_or_raw() {
        let header = BlockHeader::parse(HEADER_358391).unwrap();
        assert_eq!(BlockHeader::parse(&header.0).unwrap(), header);
        assert!(
            BlockHeader::parse(b"00ff")
                .unwrap_err()
                .contains("2 bytes of hex")
        );
        assert!(BlockHeader::parse(&[0xff; 81]).is_err());
    }
}
