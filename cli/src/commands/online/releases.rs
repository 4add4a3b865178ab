//! The online release commands: `release publish`, `release verify-binary`, `release list`
//! and `release show`.
//!
//! What the node answers is turned into text by pure functions over its JSON (parsed into
//! [`Release`]), so the wording and the matching of a binary are tested without a node.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::anyhow;
use commons_rpc::{
    IdParams, Method, NoParams, PublishReceipt, PublishReleaseParams, Release, ReleaseArtifact,
    method,
};
use commons_signaling::artifact::ArtifactDigest;
use commons_signaling::{Hash32, ReleaseBundle, ReleaseVersion};
use serde_json::{Value, json};

use super::Online;
use crate::commands::{Context, load_release_bytes};
use crate::error::{CliError, Result};
use crate::files;
use crate::format;
use crate::rpc::{code, parse_answer};

/// How long `publishrelease` may take: the node hashes every artifact before it answers,
/// which for artifacts of gigabytes on a slow disk takes minutes, not the usual seconds.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(3600);

/// How the commands read a [`Release`].
trait ReleaseView {
    /// Whether the node holds the whole release, checked.
    fn is_verified(&self) -> bool;
    /// `channel version`, safe to print.
    fn label(&self) -> String;
    /// Bytes held over bytes listed, over all artifacts.
    fn progress(&self) -> (u64, u64);
    /// Whether the node is downloading the release's artifacts now (it does not for a
    /// release superseded by a newer one, or expired, before it had them all).
    fn is_fetching(&self) -> bool;
    /// `verified`, `fetching 37%`, or the node's state for a release it does not fetch.
    fn state_text(&self) -> String;
}

impl ReleaseView for Release {
    fn is_verified(&self) -> bool {
        self.state == "verified"
    }

    fn label(&self) -> String {
        format!(
            "{} {}",
            format::one_line(&self.channel),
            format::one_line(&self.version)
        )
    }

    fn progress(&self) -> (u64, u64) {
        self.artifacts.iter().fold((0, 0), |(have, total), a| {
            let held = if artifact_verified(a) {
                a.size
            } else {
                a.have_bytes.min(a.size)
            };
            (have.saturating_add(held), total.saturating_add(a.size))
        })
    }

    fn is_fetching(&self) -> bool {
        self.state == "fetching"
    }

    fn state_text(&self) -> String {
        let (have, total) = self.progress();
        if !self.is_fetching() || total == 0 {
            return format::one_line(&self.state);
        }
        format!(
            "{} {}%",
            format::one_line(&self.state),
            u128::from(have) * 100 / u128::from(total)
        )
    }
}

/// Whether the node holds the artifact and checked it.
fn artifact_verified(artifact: &ReleaseArtifact) -> bool {
    artifact.state == "verified"
}

/// The lines `release publish` prints for the node's answer.
fn publish_lines(receipt: &PublishReceipt) -> Vec<String> {
    let status = match (receipt.new, receipt.published) {
        (false, _) => "already known to the node",
        (true, true) => "new; sent to peers",
        (true, false) => "new; stored, it goes to peers when they connect",
    };
    vec![
        format!("release     {}", format::one_line(&receipt.id)),
        format!("channel     {}", format::one_line(&receipt.channel)),
        format!("version     {}", format::one_line(&receipt.version)),
        format!(
            "artifacts   {} verified and stored by the node",
            receipt.artifacts
        ),
        format!("status      {status}"),
    ]
}

/// The table `release list` prints.
fn list_lines(releases: &[Release]) -> Vec<String> {
    if releases.is_empty() {
        return vec!["no releases".to_string()];
    }
    let header = [
        "channel", "version", "class", "state", "signers", "expires", "id",
    ];
    let rows: Vec<[String; 7]> = releases
        .iter()
        .map(|r| {
            [
                format::one_line(&r.channel),
                format::one_line(&r.version),
                format::one_line(&r.class),
                r.state_text(),
                r.signers.to_string(),
                format::utc(r.expires),
                format::one_line(&r.id),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 7]| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            match i {
                6 => out.push_str(cell),
                // Counts read best aligned right.
                4 => {
                    let _ = write!(out, "{cell:>width$}  ");
                }
                _ => {
                    let _ = write!(out, "{cell:<width$}  ");
                }
            }
        }
        out
    };
    let mut lines = vec![line(header)];
    lines.extend(
        rows.iter()
            .map(|row| line(row.each_ref().map(String::as_str))),
    );
    lines
}

/// The lines `release show` prints for one release, at Unix time `now`.
fn show_lines(release: &Release, now: u64) -> Vec<String> {
    let mut lines = vec![
        format!("release     {}", format::one_line(&release.id)),
        format!("channel     {}", format::one_line(&release.channel)),
        format!("version     {}", format::one_line(&release.version)),
        format!("class       {}", format::one_line(&release.class)),
        format!("signers     {} counted", release.signers),
        format!("created     {}", format::utc(release.created)),
    ];
    let left = if now >= release.expires {
        "expired".to_string()
    } else {
        format!("in {}", format::approx(release.expires - now))
    };
    lines.push(format!(
        "expires     {} ({left})",
        format::utc(release.expires)
    ));
    // The bundle carries what the summary fields leave out; the node checked it already, so
    // a bundle that does not decode here only means an older commons-cli, not a problem.
    let bundle = release
        .bundle
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .and_then(|bytes| ReleaseBundle::decode(&bytes).ok());
    if let Some(bundle) = bundle {
        lines.push(format!(
            "source      {}",
            format::one_line(bundle.body.source_commit.as_str())
        ));
    }
    lines.push(format!("state       {}", release.state_text()));
    lines.push("artifacts".to_string());
    let name_width = widest(&release.artifacts, |a| format::one_line(&a.name));
    let size_width = widest(&release.artifacts, |a| a.size.to_string());
    for a in &release.artifacts {
        let state = if artifact_verified(a) {
            match &a.path {
                Some(path) => format!("verified  {}", format::one_line(path)),
                None => "verified".to_string(),
            }
        } else {
            format!(
                "{} {} of {} bytes",
                format::one_line(&a.state),
                a.have_bytes,
                a.size
            )
        };
        lines.push(format!(
            "  {:<name_width$}  {:>size_width$} bytes  sha256 {}  {state}",
            format::one_line(&a.name),
            a.size,
            format::one_line(&a.sha256),
        ));
    }
    if release.artifacts.is_empty() {
        lines.push("  (none)".to_string());
    }
    lines
}

/// The release of `channel` at `version`. Versions compare as the rules compare them, so
/// `1.4` finds `1.4.0`; a channel holds one release per version, since the node refuses one
/// that is not newer than those it has.
fn find_by_version<'a>(
    releases: &'a [Release],
    channel: &str,
    version: &ReleaseVersion,
) -> Option<&'a Release> {
    releases.iter().find(|r| {
        r.channel == channel
            && r.version
                .parse::<ReleaseVersion>()
                .is_ok_and(|v| v.cmp(version).is_eq())
    })
}

/// The widest of a column, in characters.
fn widest(artifacts: &[ReleaseArtifact], cell: impl Fn(&ReleaseArtifact) -> String) -> usize {
    artifacts
        .iter()
        .map(|a| cell(a).chars().count())
        .max()
        .unwrap_or(0)
}

/// An artifact of a release that has the same bytes as the file checked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    release: usize,
    artifact: usize,
}

/// What `release verify-binary` found for a file's digest among the node's releases.
#[derive(Debug, Default)]
struct BinaryMatch {
    /// Same size and SHA-256 as an artifact the node verified, in a release it verified.
    verified: Vec<Found>,
    /// Same size and SHA-256 as an artifact of a release the node is still fetching.
    pending: Vec<Found>,
}

/// Finds the artifacts whose size and SHA-256 are the file's. Hashes are compared in the
/// parsed form, so letter case in the node's hex does not matter.
fn find_binary(releases: &[Release], sha256: &Hash32, size: u64) -> BinaryMatch {
    let mut found = BinaryMatch::default();
    for (r, release) in releases.iter().enumerate() {
        for (i, artifact) in release.artifacts.iter().enumerate() {
            let same = artifact.size == size
                && artifact.sha256.parse::<Hash32>().ok().as_ref() == Some(sha256);
            if !same {
                continue;
            }
            let at = Found {
                release: r,
                artifact: i,
            };
            // The self-check answers "a release the node holds as verified": the release as a
            // whole and this artifact. The manifest's hash alone would already be signed, but
            // a release still fetching may yet be superseded before the node ever has it.
            if release.is_verified() && artifact_verified(artifact) {
                found.verified.push(at);
            } else {
                found.pending.push(at);
            }
        }
    }
    found
}

/// The verdict of `release verify-binary` on the file shown as `shown` with `digest`: the
/// lines to print when it is an artifact of a verified release, or the one-line reason why
/// not.
fn binary_verdict(
    shown: &str,
    file_name: Option<&str>,
    digest: &ArtifactDigest,
    releases: &[Release],
) -> std::result::Result<Vec<String>, String> {
    let found = find_binary(releases, &digest.sha256, digest.size);
    if !found.verified.is_empty() {
        let mut lines: Vec<String> = found
            .verified
            .iter()
            .map(|f| {
                let release = &releases[f.release];
                format!(
                    "{shown}: {}, release {} (id {}), verified by the node",
                    format::one_line(&release.artifacts[f.artifact].name),
                    release.label(),
                    format::one_line(&release.id)
                )
            })
            .collect();
        lines.extend(newer_notes(releases, &found.verified));
        return Ok(lines);
    }
    let mut reason = format!(
        "{shown}: not an artifact of any release the node holds as verified \
         (SHA-256 {}, {} bytes)",
        digest.sha256, digest.size
    );
    if let Some(f) = found.pending.first() {
        let release = &releases[f.release];
        let artifact = &release.artifacts[f.artifact];
        let _ = write!(
            reason,
            "; it matches {} of release {} (id {}), ",
            format::one_line(&artifact.name),
            release.label(),
            format::one_line(&release.id),
        );
        if release.is_fetching() {
            let _ = write!(
                reason,
                "which the node is still fetching ({} of {} bytes of that artifact): try \
                 again once `commons-cli release list` shows the release verified",
                artifact.have_bytes.min(artifact.size),
                artifact.size
            );
        } else {
            let _ = write!(
                reason,
                "which the node has not verified and does not fetch (release state {})",
                format::one_line(&release.state)
            );
        }
        return Err(reason);
    }
    // A file named like an artifact but with other bytes is the case worth a warning: a
    // changed or corrupted download, or a build that is not the released one.
    let namesake = file_name.and_then(|name| {
        releases
            .iter()
            .find_map(|r| r.artifacts.iter().find(|a| a.name == name).map(|a| (r, a)))
    });
    match namesake {
        Some((release, artifact)) => {
            let _ = write!(
                reason,
                "; release {} lists {} with SHA-256 {}, {} bytes",
                release.label(),
                format::one_line(&artifact.name),
                format::one_line(&artifact.sha256),
                artifact.size
            );
        }
        None => {
            let verified = releases.iter().filter(|r| r.is_verified()).count();
            let _ = write!(reason, "; the node holds {verified} verified releases");
        }
    }
    Err(reason)
}

/// A note for each channel of a matched release whose newest verified version is newer:
/// the binary is authentic, but not the latest.
fn newer_notes(releases: &[Release], matched: &[Found]) -> Vec<String> {
    let mut notes = Vec::new();
    let mut seen_channels: Vec<&str> = Vec::new();
    for f in matched {
        let release = &releases[f.release];
        if seen_channels.contains(&release.channel.as_str()) {
            continue;
        }
        seen_channels.push(&release.channel);
        let Ok(mine) = release.version.parse::<ReleaseVersion>() else {
            continue;
        };
        let newest = releases
            .iter()
            .filter(|r| r.channel == release.channel && r.is_verified())
            .filter_map(|r| Some((r.version.parse::<ReleaseVersion>().ok()?, r)))
            .max_by(|a, b| a.0.cmp(&b.0));
        // Several matches in one channel: the note is about the newest one matched.
        let newest_matched = matched
            .iter()
            .map(|f| &releases[f.release])
            .filter(|r| r.channel == release.channel)
            .filter_map(|r| r.version.parse::<ReleaseVersion>().ok())
            .max()
            .unwrap_or(mine);
        let Some((version, newer)) = newest else {
            continue;
        };
        if version > newest_matched {
            notes.push(format!(
                "note: release {} (id {}) is newer on channel {}",
                newer.label(),
                format::one_line(&newer.id),
                format::one_line(&release.channel)
            ));
        }
    }
    notes
}

/// The JSON `release verify-binary --json` prints.
fn binary_json(path: &str, digest: &ArtifactDigest, releases: &[Release]) -> Value {
    let found = find_binary(releases, &digest.sha256, digest.size);
    let list = |found: &[Found]| {
        found
            .iter()
            .map(|f| {
                let release = &releases[f.release];
                json!({
                    "id": release.id,
                    "channel": release.channel,
                    "version": release.version,
                    "artifact": release.artifacts[f.artifact].name,
                })
            })
            .collect::<Vec<_>>()
    };
    json!({
        "path": path,
        "sha256": digest.sha256.to_hex(),
        "size": digest.size,
        "verified": !found.verified.is_empty(),
        "matches": list(&found.verified),
        "fetching": list(&found.pending),
    })
}

/// `DIR` as the absolute path the node is given, or an input error saying what is wrong.
fn artifacts_dir(dir: &Path) -> Result<String> {
    let absolute = std::fs::canonicalize(dir).map_err(|e| files::io_error(dir, &e))?;
    if !absolute.is_dir() {
        return Err(anyhow!("{}: not a directory", dir.display()).into());
    }
    absolute.into_os_string().into_string().map_err(|_| {
        anyhow!(
            "{}: the path is not UTF-8, which JSON-RPC cannot carry",
            dir.display()
        )
        .into()
    })
}

impl Online {
    /// `release publish FILE --artifacts DIR`
    pub fn publish_release(&self, ctx: &Context, file: &Path, dir: &Path) -> Result {
        // A file that is not a bundle, or a directory that is not there, is the caller's
        // mistake: said here in the caller's words, before the node is asked.
        let (bytes, bundle) = load_release_bytes(file)?;
        let dir = artifacts_dir(dir)?;
        let params = PublishReleaseParams {
            bundle: hex::encode(&bytes),
            artifacts: dir,
        };
        let client = self.client.clone().with_read_timeout(PUBLISH_TIMEOUT);
        let params = commons_rpc::params_json::<method::PublishRelease>(&params);
        // The node reads and hashes the artifacts itself and says nothing until it is done:
        // all there is to show meanwhile is how much it has to read, and for how long it has.
        let artifacts = &bundle.body.artifacts;
        let total = artifacts
            .iter()
            .map(|a| a.size)
            .fold(0u64, u64::saturating_add);
        let waiting = ctx.spinner(format!(
            "publishing: the node is checking {} artifact{} ({})",
            artifacts.len(),
            if artifacts.len() == 1 { "" } else { "s" },
            crate::progress::human_bytes(total)
        ));
        let answer = client.call_raw(method::PublishRelease::NAME, params);
        drop(waiting);
        let result = match answer? {
            Ok(result) => result,
            Err(error) if error.code == code::REJECTED => {
                // The node's reason may start by saying it refused; this line says so once.
                let reason = error
                    .message
                    .strip_prefix("release refused: ")
                    .unwrap_or(&error.message);
                return Err(CliError::failed(format!(
                    "{}: refused by the node: {reason}",
                    file.display(),
                )));
            }
            Err(error) if error.code == code::INVALID_PARAMS => {
                return Err(CliError::Input(anyhow!(
                    "{}: the node cannot use it: {}",
                    file.display(),
                    error.message
                )));
            }
            Err(error) => return Err(error.into_cli("publishrelease")),
        };
        if self.json {
            return ctx.say(pretty(&result));
        }
        let receipt = parse_answer::<method::PublishRelease>(result)?;
        for line in publish_lines(&receipt) {
            ctx.say(line)?;
        }
        Ok(())
    }

    /// `release verify-binary PATH`
    pub fn verify_binary(&self, ctx: &Context, path: &Path) -> Result {
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        let progress = ctx.progress(size, "hashing");
        progress.set_item(&path.display().to_string());
        let digest =
            files::digest_file(path, u64::MAX, &progress).map_err(|e| files::io_error(path, &e))?;
        drop(progress);
        let releases = self.client.request::<method::ListReleases>(&NoParams {})?;
        let shown = path.display().to_string();
        if self.json {
            let verdict = binary_json(&shown, &digest, &releases);
            ctx.say(pretty(&verdict))?;
            if verdict["verified"] == Value::Bool(true) {
                return Ok(());
            }
            return Err(CliError::failed(format!(
                "{shown}: not an artifact of any release the node holds as verified"
            )));
        }
        let file_name = path.file_name().and_then(|n| n.to_str());
        match binary_verdict(&format::one_line(&shown), file_name, &digest, &releases) {
            Ok(lines) => {
                for line in lines {
                    ctx.say(line)?;
                }
                Ok(())
            }
            Err(reason) => Err(CliError::failed(reason)),
        }
    }

    /// `release list`
    pub fn list_releases(&self, ctx: &Context) -> Result {
        let Some(releases) = self.call::<method::ListReleases>(ctx, &NoParams {})? else {
            return Ok(());
        };
        for line in list_lines(&releases) {
            ctx.say(line)?;
        }
        Ok(())
    }

    /// `release show ID` or `release show CHANNEL VERSION`
    pub fn show_release(
        &self,
        ctx: &Context,
        release: &str,
        version: Option<&ReleaseVersion>,
    ) -> Result {
        let id = match version {
            None => release.parse::<Hash32>().map_err(|_| {
                anyhow!(
                    "{release:?}: expected 64 hex characters (a release id), or a channel and \
                     a version"
                )
            })?,
            Some(version) => {
                let releases = self.client.request::<method::ListReleases>(&NoParams {})?;
                let found = find_by_version(&releases, release, version).ok_or_else(|| {
                    CliError::failed(format!(
                        "the node knows no release {} {version} (`commons-cli release list` \
                         shows those it knows)",
                        format::one_line(release)
                    ))
                })?;
                found.id.parse().map_err(|_| {
                    CliError::Unavailable(anyhow!(
                        "listreleases: the node gave {:?} as an id, which is not 64 hex characters",
                        found.id
                    ))
                })?
            }
        };
        let id = &id;
        let params = commons_rpc::params_json::<method::GetRelease>(&IdParams::new(id.to_hex()));
        let result = match self.client.call_raw(method::GetRelease::NAME, params)? {
            Ok(result) => result,
            Err(error) if error.code == code::NOT_FOUND => {
                return Err(CliError::failed(format!(
                    "the node knows no release {id} (`commons-cli release list` shows those it knows)"
                )));
            }
            Err(error) => return Err(error.into_cli("getrelease")),
        };
        if self.json {
            return ctx.say(pretty(&result));
        }
        let release = parse_answer::<method::GetRelease>(result)?;
        for line in show_lines(&release, ctx.now()?) {
            ctx.say(line)?;
        }
        Ok(())
    }
}

/// A JSON value, indented.
fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).expect("JSON values serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_240_505;

    fn artifact(name: &str, bytes: &[u8], state: &str, have: u64) -> Value {
        let digest = files::digest_reader(bytes, u64::MAX).unwrap();
        let mut a = json!({
            "name": name,
            "sha256": digest.sha256.to_hex(),
            "size": digest.size,
            "state": state,
            "have_bytes": have,
        });
        if state == "verified" {
            a["path"] = json!(format!("/data/releases/{name}"));
        }
        a
    }

    fn release(id: char, version: &str, state: &str, artifacts: Vec<Value>) -> Value {
        json!({
            "id": id.to_string().repeat(64),
            "channel": "stable",
            "version": version,
            "class": "application",
            "created": NOW,
            "expires": NOW + 30 * 86_400,
            "signers": 3,
            "state": state,
            "artifacts": artifacts,
        })
    }

    fn releases(values: Vec<Value>) -> Vec<Release> {
        serde_json::from_value(Value::Array(values)).unwrap()
    }

    fn digest(bytes: &[u8]) -> ArtifactDigest {
        files::digest_reader(bytes, u64::MAX).unwrap()
    }

    #[test]
    fn a_binary_of_a_verified_release_is_named_with_its_release() {
        let list = releases(vec![release(
            'a',
            "1.4.0",
            "verified",
            vec![
                artifact("NOTES.txt", b"notes", "verified", 5),
                artifact("commonsd-x86_64-linux", b"the binary", "verified", 10),
            ],
        )]);
        let lines = binary_verdict(
            "./commonsd",
            Some("commonsd"),
            &digest(b"the binary"),
            &list,
        )
        .unwrap();
        assert_eq!(
            lines,
            [format!(
                "./commonsd: commonsd-x86_64-linux, release stable 1.4.0 (id {}), verified by the node",
                "a".repeat(64)
            )]
        );
    }

    #[test]
    fn a_binary_still_being_fetched_is_not_verified_but_said_so() {
        let list = releases(vec![release(
            'b',
            "1.5.0",
            "fetching",
            vec![artifact("commonsd", b"new binary", "fetching", 4)],
        )]);
        let reason = binary_verdict("commonsd", Some("commonsd"), &digest(b"new binary"), &list)
            .unwrap_err();
        assert!(
            reason
                .starts_with("commonsd: not an artifact of any release the node holds as verified"),
            "{reason}"
        );
        assert!(
            reason.contains("matches commonsd of release stable 1.5.0")
                && reason.contains("still fetching (4 of 10 bytes"),
            "{reason}"
        );
        assert_eq!(reason.lines().count(), 1);

        // A verified artifact of a release that is still fetching others does not count:
        // the node does not hold that release as verified.
        let list = releases(vec![release(
            'c',
            "1.5.0",
            "fetching",
            vec![
                artifact("commonsd", b"new binary", "verified", 10),
                artifact("big.tar", b"big", "fetching", 0),
            ],
        )]);
        let found = find_binary(&list, &digest(b"new binary").sha256, 10);
        assert!(found.verified.is_empty());
        assert_eq!(
            found.pending,
            [Found {
                release: 0,
                artifact: 0
            }]
        );

        // A release the node gave up on is not promised to become verified.
        let list = releases(vec![release(
            'd',
            "1.3.0",
            "superseded",
            vec![artifact("commonsd", b"old binary", "waiting", 0)],
        )]);
        let reason = binary_verdict("commonsd", None, &digest(b"old binary"), &list).unwrap_err();
        assert!(
            reason.ends_with(
                "which the node has not verified and does not fetch (release state superseded)"
            ),
            "{reason}"
        );
        assert_eq!(
            list_lines(&list)[1].split_whitespace().nth(3),
            Some("superseded")
        );
    }

    #[test]
    fn other_bytes_under_an_artifact_name_are_pointed_out() {
        let list = releases(vec![release(
            'a',
            "1.4.0",
            "verified",
            vec![artifact("commonsd", b"the binary", "verified", 10)],
        )]);
        // Same size, other bytes: size alone must not match.
        let reason = binary_verdict("commonsd", Some("commonsd"), &digest(b"THE BINARY"), &list)
            .unwrap_err();
        let expected = digest(b"the binary").sha256.to_hex();
        assert!(
            reason.contains(&format!(
                "release stable 1.4.0 lists commonsd with SHA-256 {expected}, 10 bytes"
            )),
            "{reason}"
        );
        let reason = binary_verdict("x", Some("x"), &digest(b"unrelated"), &list).unwrap_err();
        assert!(
            reason.ends_with("the node holds 1 verified releases"),
            "{reason}"
        );
        assert!(
            reason.contains(&digest(b"unrelated").sha256.to_hex()),
            "{reason}"
        );
    }

    #[test]
    fn a_newer_verified_release_on_the_channel_is_noted() {
        let list = releases(vec![
            release(
                'b',
                "1.10.0",
                "verified",
                vec![artifact("commonsd", b"new", "verified", 3)],
            ),
            release(
                'a',
                "1.9.0",
                "verified",
                vec![artifact("commonsd", b"old", "verified", 3)],
            ),
        ]);
        let lines = binary_verdict("commonsd", None, &digest(b"old"), &list).unwrap();
        assert_eq!(lines.len(), 2, "{lines:?}");
        // Versions compare numerically: 1.10.0 is newer than 1.9.0.
        assert!(
            lines[1].starts_with("note: release stable 1.10.0 (id bbbb"),
            "{lines:?}"
        );
        let lines = binary_verdict("commonsd", None, &digest(b"new"), &list).unwrap();
        assert_eq!(lines.len(), 1, "the newest needs no note: {lines:?}");
    }

    #[test]
    fn verify_binary_json_lists_matches_and_fetches() {
        let list = releases(vec![
            release(
                'a',
                "1.4.0",
                "verified",
                vec![artifact("commonsd", b"bin", "verified", 3)],
            ),
            release(
                'b',
                "1.5.0",
                "fetching",
                vec![artifact("commonsd", b"bin", "fetching", 1)],
            ),
        ]);
        let out = binary_json("./commonsd", &digest(b"bin"), &list);
        assert_eq!(out["verified"], true);
        assert_eq!(out["size"], 3);
        assert_eq!(out["matches"][0]["version"], "1.4.0");
        assert_eq!(out["fetching"][0]["version"], "1.5.0");
        let out = binary_json("./x", &digest(b"nothing"), &list);
        assert_eq!(out["verified"], false);
        assert_eq!(out["matches"], json!([]));
    }

    #[test]
    fn the_list_is_a_table_with_progress() {
        let list = releases(vec![
            release(
                'b',
                "1.5.0",
                "fetching",
                vec![
                    artifact("a", &[0; 30], "fetching", 10),
                    artifact("b", &[0; 10], "verified", 10),
                ],
            ),
            release(
                'a',
                "1.4.0",
                "verified",
                vec![artifact("a", b"x", "verified", 1)],
            ),
        ]);
        let lines = list_lines(&list);
        // Columns as wide as their widest cell; 10 of 30 bytes plus a verified 10-byte
        // artifact make 20 of 40 bytes held.
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        assert_eq!(
            lines,
            [
                "channel  version  class        state         signers  expires                  id"
                    .to_string(),
                format!(
                    "stable   1.5.0    application  fetching 50%        3  2026-12-21 05:55:05 UTC  {b}"
                ),
                format!(
                    "stable   1.4.0    application  verified            3  2026-12-21 05:55:05 UTC  {a}"
                ),
            ]
        );
        assert_eq!(list_lines(&[]), ["no releases"]);
    }

    #[test]
    fn show_gives_each_artifact_its_state_and_escapes_names() {
        let mut value = release(
            'a',
            "1.4.0",
            "fetching",
            vec![
                artifact("commonsd", b"binary!", "verified", 7),
                artifact("evil\nname", b"zz", "fetching", 1),
            ],
        );
        value["bundle"] = json!("not hex");
        let release: Release = serde_json::from_value(value).unwrap();
        let lines = show_lines(&release, NOW);
        assert!(
            lines.contains(&"expires     2026-12-21 05:55:05 UTC (in 30 days)".to_string()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"state       fetching 88%".to_string()),
            "{lines:?}"
        );
        let verified = lines.iter().find(|l| l.starts_with("  commonsd")).unwrap();
        assert!(
            verified.ends_with("verified  /data/releases/commonsd"),
            "{verified}"
        );
        let fetching = lines.iter().find(|l| l.starts_with("  evil")).unwrap();
        assert!(fetching.starts_with("  evil\\nname"), "{fetching}");
        assert!(fetching.ends_with("fetching 1 of 2 bytes"), "{fetching}");
        assert!(
            !lines.iter().any(|l| l.starts_with("source")),
            "undecodable bundle: no source"
        );
        assert!(
            show_lines(&release, NOW + 31 * 86_400)
                .iter()
                .any(|l| l.ends_with("(expired)"))
        );
    }

    #[test]
    fn a_release_is_found_by_channel_and_version() {
        let list = releases(vec![
            release('b', "1.10.0", "verified", vec![]),
            release('a', "1.4.0", "verified", vec![]),
        ]);
        let version = |v: &str| v.parse::<ReleaseVersion>().unwrap();
        let found = find_by_version(&list, "stable", &version("1.4.0")).unwrap();
        assert_eq!(found.id, "a".repeat(64));
        assert_eq!(
            find_by_version(&list, "stable", &version("1.4"))
                .unwrap()
                .id,
            found.id
        );
        assert!(find_by_version(&list, "stable", &version("1.1")).is_none());
        assert!(find_by_version(&list, "beta", &version("1.4.0")).is_none());
    }

    #[test]
    fn publish_summary_says_what_the_node_did() {
        let answer: PublishReceipt =
            serde_json::from_value(json!({"id": "ab", "channel": "stable",
            "version": "1.4.0", "new": true, "published": true, "artifacts": 2}))
            .unwrap();
        assert_eq!(
            publish_lines(&answer),
            [
                "release     ab",
                "channel     stable",
                "version     1.4.0",
                "artifacts   2 verified and stored by the node",
                "status      new; sent to peers",
            ]
        );
        let mut answer = answer;
        answer.published = false;
        assert_eq!(
            publish_lines(&answer)[4],
            "status      new; stored, it goes to peers when they connect"
        );
        answer.new = false;
        assert_eq!(
            publish_lines(&answer)[4],
            "status      already known to the node"
        );
    }

    #[test]
    fn answers_of_another_shape_are_an_unusable_node() {
        let error = parse_answer::<method::ListReleases>(json!([{"id": "x"}])).unwrap_err();
        assert_eq!(error.exit_code(), 3);
        assert!(
            error
                .to_string()
                .starts_with("listreleases: the node's answer is not"),
            "{error}"
        );
    }

    #[test]
    fn the_artifacts_directory_is_made_absolute_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let absolute = artifacts_dir(dir.path()).unwrap();
        assert!(Path::new(&absolute).is_absolute());
        let relative = dir.path().join("sub/..");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(artifacts_dir(&relative).unwrap(), absolute);

        let missing = dir.path().join("missing");
        let error = artifacts_dir(&missing).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(
            error
                .to_string()
                .ends_with("missing: no such file or directory"),
            "{error}"
        );

        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let error = artifacts_dir(&file).unwrap_err();
        assert_eq!(error.exit_code(), 2);
        assert!(
            error.to_string().ends_with("file: not a directory"),
            "{error}"
        );
    }
}
