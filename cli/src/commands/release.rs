//! `release create`, `release sign`, `release digest`, `release combine` and `release verify`.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use anyhow::anyhow;
use commons_aggregator::rules::{
    ReleaseError, ThresholdReport, check_artifact, check_threshold, is_safe_file_name,
    verify_release,
};
use commons_signaling::messages::MAX_ARTIFACTS;
use commons_signaling::messages::MessageKind;
use commons_signaling::spec::ReleaseClassSpec;
use commons_signaling::{
    Artifact, BoundedString, BoundedVec, MaintainerSignature, PROTOCOL_VERSION, ReleaseBundle,
    ReleaseClass, ReleaseManifest, ReleaseVersion, SecretKey, wire,
};
use sha2::{Digest as _, Sha256};

use serde_json::{Value, json};

use super::{
    Context, Network, bad_signature_hint, load_detached, load_release, signature_lines,
    signatures_json, text,
};
use crate::cli::{PassphraseArgs, ReleaseCreateArgs, TimestampArgs};
use crate::error::{CliError, Result};
use crate::files;
use crate::format;
use crate::progress::Progress;
use crate::timestamp::{self, HeaderSource, Status};

/// The rules of a release class on the network, or an error saying it has none.
fn class_rules(net: &Network, class: ReleaseClass) -> Result<&ReleaseClassSpec> {
    net.spec.release_class(class).ok_or_else(|| {
        CliError::Input(anyhow!(
            "release class {} is not defined on network {}",
            class.name(),
            net.spec.name
        ))
    })
}

/// Streams one artifact file through SHA-256, counting its bytes on `progress`, and makes
/// its manifest entry.
fn hash_artifact(
    path: &Path,
    names: &mut BTreeSet<String>,
    progress: &Progress,
) -> Result<Artifact> {
    let shown = path.display();
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("{shown}: an artifact needs a UTF-8 file name"))?;
    if !is_safe_file_name(name) {
        return Err(anyhow!(
            "{shown}: {name:?} cannot be an artifact name (no hidden files, no control characters)"
        )
        .into());
    }
    if !names.insert(name.to_string()) {
        return Err(anyhow!("{shown}: another artifact is also named {name:?}").into());
    }
    let name = BoundedString::new(name).map_err(|e| anyhow!("{shown}: file name is {e}"))?;
    progress.set_item(name.as_str());
    let digest =
        files::digest_file(path, u64::MAX, progress).map_err(|e| files::io_error(path, &e))?;
    Ok(Artifact {
        name,
        sha256: digest.sha256,
        size: digest.size,
        chunk_list: digest.chunk_list_hash(),
    })
}

/// `release create`.
pub fn create(ctx: &Context, args: &ReleaseCreateArgs) -> Result {
    let net = ctx.network()?;
    let class = ReleaseClass::from(args.class);
    class_rules(net, class)?;
    let now = ctx.now()?;
    let expires = now
        .checked_add(args.expires_in)
        .ok_or_else(|| anyhow!("--expires-in is too far in the future"))?;
    // Hashing can take long: learn first that the output cannot be written.
    if args.out.exists() {
        return Err(anyhow!(
            "{}: exists already; refusing to overwrite it",
            args.out.display()
        )
        .into());
    }
    if args.artifacts.len() > MAX_ARTIFACTS {
        return Err(anyhow!(
            "{} artifacts given; a release lists at most {MAX_ARTIFACTS}",
            args.artifacts.len()
        )
        .into());
    }
    // The bar's length is what the files hold now; one that grows while it is read is still
    // hashed to its end.
    let total = args
        .artifacts
        .iter()
        .filter_map(|path| fs::metadata(path).ok())
        .map(|m| m.len())
        .fold(0u64, u64::saturating_add);
    let progress = ctx.progress(total, "hashing");
    let mut names = BTreeSet::new();
    let artifacts = args
        .artifacts
        .iter()
        .map(|path| hash_artifact(path, &mut names, &progress))
        .collect::<Result<Vec<_>>>()?;
    drop(progress);
    let manifest = ReleaseManifest {
        version: PROTOCOL_VERSION,
        channel: text("--channel", &args.channel)?,
        release: args.version.clone(),
        class,
        created: now,
        expires,
        artifacts: BoundedVec::truncating(artifacts),
        source_commit: text("--source-commit", &args.source_commit)?,
        build_hash: args.build_hash,
        spec_hash: args.spec_hash,
        test_results_hash: args.test_results_hash,
        // The release's timestamp travels beside the bundle: a proof inside the manifest
        // could not commit to the manifest (see `release verify --ots`).
        ots_proof: None,
    };
    let bundle = ReleaseBundle::new(manifest);
    match verify_release(&bundle, &net.spec, &net.id, None, now) {
        Ok(_) | Err(ReleaseError::BelowThreshold(_)) => {}
        Err(error) => {
            return Err(anyhow!(
                "cannot create this release on network {}: {error}",
                net.spec.name
            )
            .into());
        }
    }
    files::write_new(&args.out, &bundle.encode())?;
    let report = report(&bundle, net);
    if ctx.json() {
        let mut doc = summary_json(net, &bundle, &report, now);
        doc["artifacts"] = bundle
            .body
            .artifacts
            .iter()
            .map(artifact_json)
            .collect::<Value>();
        doc["counted"] = json!(report.counted);
        doc["required"] = json!(report.required);
        doc["file"] = json!(args.out.display().to_string());
        return ctx.emit(&doc);
    }
    summary(ctx, net, &bundle, &report, now)?;
    ctx.say("artifacts")?;
    let width = name_width(&bundle.body);
    for artifact in bundle.body.artifacts.iter() {
        ctx.say(artifact_line(artifact, width))?;
    }
    ctx.say(format_args!(
        "signatures  0 of {} required",
        report.required
    ))?;
    ctx.say(format_args!("wrote       {}", args.out.display()))
}

/// The widest artifact name and size, for aligned columns.
fn name_width(manifest: &ReleaseManifest) -> (usize, usize) {
    let widest = |f: fn(&Artifact) -> usize| manifest.artifacts.iter().map(f).max().unwrap_or(0);
    (
        widest(|a| a.name.as_str().chars().count()),
        widest(|a| a.size.to_string().len()),
    )
}

/// One artifact: name, size and SHA-256.
fn artifact_line(artifact: &Artifact, (width, size_width): (usize, usize)) -> String {
    format!(
        "  {:<width$}  {:>size_width$} bytes  sha256 {}",
        format::one_line(artifact.name.as_str()),
        artifact.size,
        artifact.sha256
    )
}

/// One artifact as JSON: name, size and SHA-256.
fn artifact_json(artifact: &Artifact) -> Value {
    json!({
        "name": artifact.name.as_str(),
        "size": artifact.size,
        "sha256": artifact.sha256,
    })
}

/// What every release command's JSON starts with: the fields of [`summary`].
fn summary_json(
    net: &Network,
    bundle: &ReleaseBundle,
    report: &ThresholdReport,
    now: u64,
) -> Value {
    let m = &bundle.body;
    json!({
        "id": report.id,
        "network": net.spec.name,
        "network_id": net.id,
        "channel": m.channel.as_str(),
        "version": m.release.to_string(),
        "class": m.class.name(),
        "signers": net.spec.release_class(m.class).map_or(0, |c| c.signers.len()),
        "created": m.created,
        "expires": m.expires,
        "expired": now >= m.expires,
        "source_commit": m.source_commit.as_str(),
        "build_hash": m.build_hash,
        "spec_hash": m.spec_hash,
        "test_results_hash": m.test_results_hash,
        "ots_proof_bytes": m.ots_proof.as_ref().map(|p| p.as_slice().len()),
    })
}

/// The signature report of a bundle on a network, whether or not the rest is valid.
fn report(bundle: &ReleaseBundle, net: &Network) -> ThresholdReport {
    let (signers, required) = net
        .spec
        .release_class(bundle.body.class)
        .map_or((&[][..], 0), |c| (&c.signers[..], c.threshold as usize));
    check_threshold(bundle.id(&net.id), &bundle.signatures, signers, required)
}

/// The lines every release command prints first.
fn summary(
    ctx: &Context,
    net: &Network,
    bundle: &ReleaseBundle,
    report: &ThresholdReport,
    now: u64,
) -> Result {
    let m = &bundle.body;
    ctx.say(format_args!("release     {}", report.id))?;
    ctx.say(format_args!("network     {}", net.label()))?;
    ctx.say(format_args!(
        "channel     {}",
        format::one_line(m.channel.as_str())
    ))?;
    ctx.say(format_args!("version     {}", m.release))?;
    let signers = net
        .spec
        .release_class(m.class)
        .map_or(0, |c| c.signers.len());
    ctx.say(format_args!(
        "class       {} (needs {} of {signers} release signers)",
        m.class.name(),
        report.required
    ))?;
    ctx.say(format_args!("created     {}", format::utc(m.created)))?;
    let left = if now >= m.expires {
        "expired".to_string()
    } else {
        format!("in {}", format::approx(m.expires - now))
    };
    ctx.say(format_args!(
        "expires     {} ({left})",
        format::utc(m.expires)
    ))?;
    ctx.say(format_args!(
        "source      {}",
        format::one_line(m.source_commit.as_str())
    ))?;
    for (label, hash) in [
        ("build hash", m.build_hash),
        ("spec hash", m.spec_hash),
        ("tests hash", m.test_results_hash),
    ] {
        if let Some(hash) = hash {
            ctx.say(format_args!("{label:<11} {hash}"))?;
        }
    }
    if let Some(proof) = &m.ots_proof {
        ctx.say(format_args!(
            "ots proof   {} bytes inside the manifest (not checked: a proof cannot commit to \
             the manifest that holds it; the release's timestamp travels beside it)",
            proof.as_slice().len()
        ))?;
    }
    Ok(())
}

/// Loads a bundle and the signing key, and checks the key may sign it.
fn prepare_signing<'n>(
    ctx: &'n Context,
    file: &Path,
    key_file: &Path,
    passphrase: PassphraseArgs,
) -> Result<(ReleaseBundle, &'n Network, SecretKey)> {
    let net = ctx.network()?;
    let bundle = load_release(file)?;
    // Whether the key may sign is known before anyone types its passphrase.
    let public = super::key::public_key(key_file)?;
    let class = bundle.body.class;
    if !class_rules(net, class)?.signers.contains(&public) {
        return Err(anyhow!(
            "{}: key {public} is not a signer of {} releases on network {}; is --network right?",
            key_file.display(),
            class.name(),
            net.spec.name
        )
        .into());
    }
    match verify_release(&bundle, &net.spec, &net.id, None, ctx.now()?) {
        Ok(_) | Err(ReleaseError::BelowThreshold(_)) => {
            let key = super::key::load(key_file, passphrase)?;
            Ok((bundle, net, key))
        }
        Err(error) => Err(anyhow!(
            "{}: refusing to sign, the release is not valid on network {}: {error}",
            file.display(),
            net.spec.name
        )
        .into()),
    }
}

/// `release digest FILE [--stamp-file OUT]`: the id release signers sign, alone on a line,
/// for an offline signer; and the bytes whose SHA-256 is that id, for `ots stamp`.
pub fn digest(ctx: &Context, file: &Path, stamp_file: Option<&Path>) -> Result {
    let net = ctx.network()?;
    let bundle = load_release(file)?;
    let id = bundle.id(&net.id);
    if let Some(out) = stamp_file {
        // The id is tagged_hash(tag, network id || manifest): SHA-256 over the tag's hash
        // twice, the network id and the manifest's canonical CBOR.
        let tag_hash = Sha256::digest(MessageKind::Release.tag().as_bytes());
        let preimage = [
            &tag_hash[..],
            &tag_hash[..],
            &net.id.0[..],
            &wire::encode(&bundle.body)[..],
        ]
        .concat();
        if Sha256::digest(&preimage)[..] != id.0[..] {
            return Err(
                anyhow!("internal error: the stamp file does not hash to the release id").into(),
            );
        }
        files::write_new(out, &preimage)?;
    }
    if ctx.json() {
        let mut doc = super::digest_json(net, &id, file);
        if let Some(out) = stamp_file {
            doc["stamp_file"] = json!(out.display().to_string());
        }
        return ctx.emit(&doc);
    }
    ctx.say(id)
}

/// `release sign FILE --key KEY [--detached OUT]`.
pub fn sign(
    ctx: &Context,
    file: &Path,
    key_file: &Path,
    detached: Option<&Path>,
    passphrase: PassphraseArgs,
) -> Result {
    let (mut bundle, net, key) = prepare_signing(ctx, file, key_file, passphrase)?;
    let public = key.public_key();
    let id = bundle.id(&net.id);
    if let Some(out) = detached {
        let signature = MaintainerSignature {
            signer: public,
            signature: key.sign(&id),
        };
        files::write_new(out, &wire::encode(&signature))?;
        if ctx.json() {
            return ctx.emit(&json!({
                "id": id,
                "signer": public,
                "detached": out.display().to_string(),
                "file": file.display().to_string(),
            }));
        }
        ctx.say(format_args!("release     {id}"))?;
        ctx.say(format_args!("signed as {public}"))?;
        ctx.say(format_args!(
            "wrote       detached signature {} ({} unchanged)",
            out.display(),
            file.display()
        ))?;
        return ctx.say(format_args!(
            "next        commons-cli --network {} release combine {} {}",
            ctx.network_arg(),
            file.display(),
            out.display()
        ));
    }
    let replaced = bundle.signatures.iter().any(|s| s.signer == public);
    bundle
        .add_signature(&key, &net.id)
        .map_err(|e| anyhow!("{}: {e}", file.display()))?;
    files::replace(file, &bundle.encode())?;
    super::signed_report(
        ctx,
        "release",
        &public,
        replaced,
        &report(&bundle, net),
        file,
    )
}

/// `release combine FILE SIG...`: all signatures are checked before the file is written;
/// one that is not over this manifest on this network rejects the whole command.
pub fn combine(ctx: &Context, file: &Path, signature_files: &[std::path::PathBuf]) -> Result {
    let net = ctx.network()?;
    let mut bundle = load_release(file)?;
    let class = bundle.body.class;
    let signers = class_rules(net, class)?.signers.clone();
    let id = bundle.id(&net.id);
    let mut added = Vec::new();
    for path in signature_files {
        let signature = load_detached(path)?;
        let signer = signature.signer;
        if !signature.verify(&id) {
            return Err(anyhow!(
                "{}: the signature by {signer} is not over this release (id {id}) on network {}: \
                 it was made for another manifest or network, or is damaged; {} was not changed",
                path.display(),
                net.spec.name,
                file.display()
            )
            .into());
        }
        if !signers.contains(&signer) {
            return Err(anyhow!(
                "{}: {signer} is not a signer of {} releases on network {}; {} was not changed",
                path.display(),
                class.name(),
                net.spec.name,
                file.display()
            )
            .into());
        }
        bundle
            .add_detached(signature)
            .map_err(|e| anyhow!("{}: {e}", file.display()))?;
        added.push((signer, path));
    }
    files::replace(file, &bundle.encode())?;
    if ctx.json() {
        return ctx.emit(&super::added_json(&report(&bundle, net), &added, file));
    }
    ctx.say(format_args!("release     {id}"))?;
    for (signer, path) in added {
        ctx.say(format_args!("added       {signer} from {}", path.display()))?;
    }
    super::counted_line(ctx, &report(&bundle, net))
}

/// `release verify FILE [--artifacts DIR] [--newest VERSION]`: exit code 0 only when the
/// bundle and every checked artifact pass.
pub fn verify(
    ctx: &Context,
    file: &Path,
    artifacts_dir: Option<&Path>,
    newest: Option<&ReleaseVersion>,
    timestamp_args: &TimestampArgs,
) -> Result {
    let net = ctx.network()?;
    let bundle = load_release(file)?;
    let now = ctx.now()?;
    // The timestamp is checked first: bitcoind may be slow, and a bad argument should not
    // wait for every artifact to be hashed.
    let release_id = bundle.id(&net.id).0;
    let stamp = check_timestamp(file, &release_id, timestamp_args)?;
    let verdict = verify_release(&bundle, &net.spec, &net.id, newest, now);
    let report = match &verdict {
        Ok(report) | Err(ReleaseError::BelowThreshold(report)) => report.clone(),
        Err(_) => report(&bundle, net),
    };
    let mut problems = Vec::new();
    if let Err(error) = &verdict {
        problems.push(format!(
            "not valid on network {}: {error}{}",
            net.spec.name,
            bad_signature_hint(&report)
        ));
    }

    // Every artifact is checked before anything is printed, so that the progress bar and the
    // report never share the screen. `None`: not checked (no --artifacts).
    let checks: Vec<Option<std::result::Result<(), String>>> = match artifacts_dir {
        None => bundle.body.artifacts.iter().map(|_| None).collect(),
        Some(dir) => {
            let total = bundle
                .body
                .artifacts
                .iter()
                .map(|a| a.size)
                .fold(0u64, u64::saturating_add);
            let progress = ctx.progress(total, "verifying");
            bundle
                .body
                .artifacts
                .iter()
                .map(|artifact| check_one(dir, artifact, &progress).map(Some))
                .collect::<Result<_>>()?
        }
    };
    for check in checks.iter().flatten() {
        if let Err(problem) = check {
            problems.push(format!("artifact {problem}"));
        }
    }
    let stamp_line = stamp.as_ref().map(|(path, verdict)| match verdict {
        Ok(report) => report.summary(&release_id, "this release's id"),
        Err(problem) => format!("UNREADABLE: {}: {problem}", path.display()),
    });
    if let (Some((path, verdict)), Some(line)) = (&stamp, &stamp_line) {
        let failed = match verdict {
            Ok(report) => report.status() == Status::Mismatch,
            Err(_) => true,
        };
        if failed {
            problems.push(format!("timestamp {}: {line}", path.display()));
        }
    }
    let failure = || CliError::failed(format_args!("{}: {}", file.display(), problems.join("; ")));

    let signers = net
        .spec
        .release_class(bundle.body.class)
        .map_or(&[][..], |c| &c.signers[..]);
    if ctx.json() {
        let mut doc = summary_json(net, &bundle, &report, now);
        doc["signatures"] = signatures_json(&report, signers);
        doc["counted"] = json!(report.counted);
        doc["required"] = json!(report.required);
        doc["artifacts"] = bundle
            .body
            .artifacts
            .iter()
            .zip(&checks)
            .map(|(artifact, check)| {
                let mut entry = artifact_json(artifact);
                let (state, problem) = match check {
                    None => ("not-checked", None),
                    Some(Ok(())) => ("ok", None),
                    Some(Err(problem)) => ("failed", Some(problem)),
                };
                entry["check"] = json!(state);
                entry["problem"] = json!(problem);
                entry
            })
            .collect::<Value>();
        doc["artifacts_checked"] = json!(artifacts_dir.is_some());
        doc["timestamp"] = match &stamp {
            None => Value::Null,
            Some((path, Ok(report))) => report.json(path),
            Some((path, Err(problem))) => json!({
                "proof": path.display().to_string(),
                "status": "unreadable",
                "problem": problem,
            }),
        };
        doc["valid"] = json!(problems.is_empty());
        doc["problems"] = json!(problems);
        ctx.emit(&doc)?;
        return if problems.is_empty() {
            Ok(())
        } else {
            Err(failure())
        };
    }

    summary(ctx, net, &bundle, &report, now)?;
    ctx.say("signatures")?;
    for line in signature_lines(&report, signers, "signer") {
        ctx.say(line)?;
    }
    ctx.say(format_args!(
        "counted     {} of {} required",
        report.counted, report.required
    ))?;
    ctx.say("artifacts")?;
    let width = name_width(&bundle.body);
    for (artifact, check) in bundle.body.artifacts.iter().zip(&checks) {
        let head = artifact_line(artifact, width);
        match check {
            None => ctx.say(format_args!("{head}  not checked (no --artifacts)"))?,
            Some(Ok(())) => ctx.say(format_args!("{head}  ok"))?,
            Some(Err(problem)) => ctx.say(format_args!("{head}  FAILED: {problem}"))?,
        }
    }
    if let Some(line) = &stamp_line {
        ctx.say(format_args!("timestamp   {line}"))?;
    }
    if problems.is_empty() {
        let checked = if artifacts_dir.is_some() {
            " with all artifacts"
        } else {
            ""
        };
        return ctx.say(format_args!(
            "valid       on network {}{checked}",
            net.spec.name
        ));
    }
    ctx.say("INVALID")?;
    Err(failure())
}

/// Checks one artifact in `dir`, counting the bytes read on `progress`: `Ok(Err(problem))`
/// when it does not match the manifest, `Err` when it cannot be read at all.
fn check_one(
    dir: &Path,
    artifact: &Artifact,
    progress: &Progress,
) -> Result<std::result::Result<(), String>> {
    let name = artifact.name.as_str();
    if !is_safe_file_name(name) {
        return Ok(Err(format!("{name:?}: unsafe file name, not read")));
    }
    let path = dir.join(name);
    progress.set_item(name);
    // One byte beyond the expected size is enough to know the size is wrong.
    match files::digest_file(&path, artifact.size.saturating_add(1), progress) {
        Ok(mut digest) => {
            if digest.size > artifact.size {
                digest.size = fs::metadata(&path).map_or(digest.size, |m| m.len());
            }
            Ok(check_artifact(artifact, &digest).map_err(|e| e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(Err(format!("{name}: missing from {}", dir.display())))
        }
        Err(e) => Err(files::io_error(&path, &e).into()),
    }
}

/// The release's timestamp proof, if there is one (`--ots PROOF`, or FILE.ots beside the
/// bundle), checked against the release id: `None` without a proof; the verdict, or why the
/// proof cannot be read as one, with its path. Bad arguments and unreadable files are errors.
#[allow(clippy::type_complexity)]
fn check_timestamp(
    file: &Path,
    id: &[u8; 32],
    args: &TimestampArgs,
) -> Result<
    Option<(
        std::path::PathBuf,
        std::result::Result<timestamp::Report, String>,
    )>,
> {
    let beside = {
        let mut name = file.as_os_str().to_owned();
        name.push(".ots");
        std::path::PathBuf::from(name)
    };
    let path = match &args.ots {
        Some(path) => path.clone(),
        None if beside.exists() => beside,
        None => {
            if !args.block_header.is_empty() || args.bitcoin_rpc.is_some() {
                return Err(anyhow!(
                    "{}: no timestamp proof to check the block headers against (give --ots PROOF, or put it beside the bundle as {})",
                    file.display(),
                    beside.display()
                )
                .into());
            }
            return Ok(None);
        }
    };
    let proof = files::read_bounded(&path, timestamp::MAX_PROOF_BYTES, "OpenTimestamps proof")?;
    let headers = match &args.bitcoin_rpc {
        Some(url) => HeaderSource::Rpc(timestamp::BitcoinRpc::new(
            url,
            args.bitcoin_rpc_cookie.as_deref(),
        )?),
        None if args.block_header.is_empty() => HeaderSource::None,
        None => HeaderSource::from_files(&args.block_header)?,
    };
    Ok(Some((path, timestamp::check(&proof, id, &headers))))
}
