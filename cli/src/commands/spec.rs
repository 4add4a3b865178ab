//! `spec ...`: a network spec built from public keys, in a ceremony where no machine ever
//! holds two secrets, then signed by its maintainers so a node can tell where it came from.
//!
//! A spec being built may require more signatures than it lists keys yet (a draft); the
//! editing commands accept that and `spec show` says what is missing. Signing and verifying
//! need a complete spec, one that `--network` would load.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use commons_signaling::spec::MeasurerSpec;
use commons_signaling::spec_bundle::{SignedSpec, SpecBundle};
use commons_signaling::spec_signatures::{
    SpecSignatureError, SpecSignatureFate, check_spec_signatures, sign_spec, spec_signing_digest,
    spec_threshold,
};
use commons_signaling::{Hash32, NetworkSpec, PublicKey, ReleaseClass, wire};
use serde_json::{Value, json};

use super::{Context, load_detached};
use crate::cli::{BaseArg, PassphraseArgs, SpecCommand};
use crate::error::{CliError, Result, input, spec_error};
use crate::files;
use crate::format;

/// Runs one `spec` command.
pub fn run(ctx: &Context, command: SpecCommand) -> Result {
    match command {
        SpecCommand::New { name, base, out } => new(ctx, &name, base, &out),
        SpecCommand::AddMaintainer { file, key } => edit(ctx, &file, |spec| {
            let key = parse_key(&key)?;
            if spec.maintainers.contains(&key) {
                return Err(anyhow!("{key} is a maintainer already").into());
            }
            spec.maintainers.push(key);
            Ok(Change::new(
                format!("added maintainer {key}"),
                json!({ "public_key": key }),
            ))
        }),
        SpecCommand::RemoveMaintainer { file, key } => edit(ctx, &file, |spec| {
            let key = parse_key(&key)?;
            let before = spec.maintainers.len();
            spec.maintainers.retain(|k| *k != key);
            if spec.maintainers.len() == before {
                return Err(anyhow!("{key} is not a maintainer").into());
            }
            Ok(Change::new(
                format!("removed maintainer {key}"),
                json!({ "public_key": key }),
            ))
        }),
        SpecCommand::AddReleaseSigner { file, key, class } => edit(ctx, &file, |spec| {
            let key = parse_key(&key)?;
            let mut added = Vec::new();
            for class in class.into_iter().map(ReleaseClass::from) {
                let rules = class_rules(spec, class)?;
                if !rules.signers.contains(&key) {
                    rules.signers.push(key);
                    added.push(class.name());
                }
            }
            if added.is_empty() {
                return Err(anyhow!("{key} signs those classes already").into());
            }
            Ok(Change::new(
                format!("added release signer {key} of {}", added.join(", ")),
                json!({ "public_key": key, "classes": added }),
            ))
        }),
        SpecCommand::RemoveReleaseSigner { file, key, class } => edit(ctx, &file, |spec| {
            let key = parse_key(&key)?;
            let classes: Vec<ReleaseClass> = if class.is_empty() {
                spec.release_classes.iter().map(|c| c.class).collect()
            } else {
                class.into_iter().map(ReleaseClass::from).collect()
            };
            let mut removed = Vec::new();
            for class in classes {
                let rules = class_rules(spec, class)?;
                let before = rules.signers.len();
                rules.signers.retain(|k| *k != key);
                if rules.signers.len() != before {
                    removed.push(class.name());
                }
            }
            if removed.is_empty() {
                return Err(anyhow!("{key} signs none of those classes").into());
            }
            Ok(Change::new(
                format!("removed release signer {key} from {}", removed.join(", ")),
                json!({ "public_key": key, "classes": removed }),
            ))
        }),
        SpecCommand::AddMeasurer {
            file,
            key,
            addresses,
        } => edit(ctx, &file, |spec| {
            let key = parse_key(&key)?;
            if spec.is_measurer(&key) {
                return Err(anyhow!("{key} is a measurer already").into());
            }
            for address in &addresses {
                check_multiaddr(address)?;
            }
            let fields = json!({ "public_key": key, "addresses": addresses });
            spec.measurers.push(MeasurerSpec { key, addresses });
            Ok(Change::new(format!("added measurer {key}"), fields))
        }),
        SpecCommand::RemoveMeasurer { file, key } => edit(ctx, &file, |spec| {
            let key = parse_key(&key)?;
            let before = spec.measurers.len();
            spec.measurers.retain(|m| m.key != key);
            if spec.measurers.len() == before {
                return Err(anyhow!("{key} is not a measurer").into());
            }
            Ok(Change::new(
                format!("removed measurer {key}"),
                json!({ "public_key": key }),
            ))
        }),
        SpecCommand::SetThreshold {
            file,
            threshold,
            tier,
            class,
            measurers,
        } => edit(ctx, &file, |spec| {
            if !tier.is_empty() {
                let known: Vec<String> = spec.tiers.iter().map(|t| t.tier.to_string()).collect();
                for number in &tier {
                    let rules = spec
                        .tiers
                        .iter_mut()
                        .find(|t| t.tier == *number)
                        .ok_or_else(|| {
                            anyhow!(
                                "tier {number} does not exist in this spec; it has tiers {}",
                                known.join(", ")
                            )
                        })?;
                    rules.signatures_required = threshold;
                }
                let list: Vec<String> = tier.iter().map(u8::to_string).collect();
                Ok(Change::new(
                    format!(
                        "tier {} needs {threshold} maintainer signatures",
                        list.join(", ")
                    ),
                    threshold_json(threshold, &tier, &[], false),
                ))
            } else if !class.is_empty() {
                let mut names = Vec::new();
                for class in class.into_iter().map(ReleaseClass::from) {
                    class_rules(spec, class)?.threshold = threshold;
                    names.push(class.name());
                }
                Ok(Change::new(
                    format!("{} releases need {threshold} signatures", names.join(", ")),
                    threshold_json(threshold, &[], &names, false),
                ))
            } else if measurers {
                spec.measurer_quorum = threshold;
                Ok(Change::new(
                    format!("{threshold} measurers must agree"),
                    threshold_json(threshold, &[], &[], true),
                ))
            } else {
                Err(anyhow!("say which threshold: --tier T, --class CLASS or --measurers").into())
            }
        }),
        SpecCommand::Show { file } => show(ctx, &file),
        SpecCommand::Id { file } => {
            let spec = load_draft(&file)?;
            if ctx.json() {
                return ctx.emit(&json!({
                    "id": spec.spec_id(),
                    "network_id": spec.network_id(),
                    "version": spec.version(),
                    "network": spec.name,
                    "file": file.display().to_string(),
                }));
            }
            ctx.say(spec.spec_id())
        }
        SpecCommand::Digest { file } => {
            let spec = load_complete(&file)?;
            let digest = spec_signing_digest(&spec.spec_id());
            if ctx.json() {
                return ctx.emit(&json!({
                    "digest": digest,
                    "id": spec.spec_id(),
                    "version": spec.version(),
                    "network": spec.name,
                    "file": file.display().to_string(),
                }));
            }
            ctx.say(digest)
        }
        SpecCommand::Next { file, out } => next(ctx, &file, &out),
        SpecCommand::Sign {
            file,
            previous,
            key,
            out,
            passphrase,
        } => sign(ctx, &file, previous.as_deref(), &key, &out, passphrase),
        SpecCommand::Verify {
            file,
            signatures,
            previous,
        } => verify(ctx, &file, previous.as_deref(), &signatures),
        SpecCommand::Bundle {
            file,
            signatures,
            onto,
            out,
        } => bundle(ctx, &file, &signatures, onto.as_deref(), &out),
        SpecCommand::VerifyBundle { file, anchor } => verify_bundle(ctx, &file, anchor),
    }
}

/// The spec in force that a file names: a spec file, or a bundle's newest version.
fn load_in_force(path: &Path) -> Result<NetworkSpec> {
    if is_bundle(path) {
        let bundle = SpecBundle::load(path).map_err(|e| anyhow!("{e}"))?;
        let newest = bundle
            .versions
            .last()
            .expect("a parsed bundle holds a version");
        return Ok(newest.spec.clone());
    }
    load_complete(path)
}

/// Whether a file is a spec bundle rather than a spec.
pub fn is_bundle(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| SpecBundle::is_bundle_text(&text))
}

/// The spec whose maintainers sign `spec`: itself for version 1, else `--previous`, which
/// must be the version it replaces.
fn authority_of(spec: &NetworkSpec, file: &Path, previous: Option<&Path>) -> Result<NetworkSpec> {
    match (spec.version(), previous) {
        (1, None) => Ok(spec.clone()),
        (1, Some(_)) => Err(anyhow!(
            "{}: is version 1 of its network, signed by its own maintainers; drop --previous",
            file.display()
        )
        .into()),
        (version, None) => Err(anyhow!(
            "{}: is version {version}, signed by the maintainers of version {}: give --previous \
             SPEC|BUNDLE",
            file.display(),
            version - 1
        )
        .into()),
        (_, Some(path)) => {
            let previous = load_in_force(path)?;
            previous.check_successor(spec).map_err(|e| {
                anyhow!(
                    "{}: does not follow {} (version {}): {e}",
                    file.display(),
                    path.display(),
                    previous.version()
                )
            })?;
            Ok(previous)
        }
    }
}

/// `spec next SPEC|BUNDLE --out FILE`.
fn next(ctx: &Context, file: &Path, out: &Path) -> Result {
    let current = load_in_force(file)?;
    let draft = current.successor_draft();
    files::write_new(out, draft.to_toml().as_bytes())?;
    if ctx.json() {
        let mut doc = state_json(&draft, out);
        merge(
            &mut doc,
            json!({ "version": draft.version(), "previous": current.spec_id() }),
        );
        return ctx.emit(&doc);
    }
    ctx.say(format_args!("network     {}", draft.name))?;
    ctx.say(format_args!(
        "version     {} (replaces {})",
        draft.version(),
        current.spec_id()
    ))?;
    ctx.say(format_args!("wrote       {}", out.display()))?;
    ctx.say(format_args!(
        "next        edit its keys (spec add-maintainer, remove-maintainer, ...), then each \
         maintainer of version {} runs spec sign {} --previous {}",
        current.version(),
        out.display(),
        file.display()
    ))
}

/// `spec bundle SPEC SIG... [--onto BUNDLE] --out FILE`: refuses to write a bundle a node
/// would refuse.
fn bundle(
    ctx: &Context,
    file: &Path,
    signature_files: &[PathBuf],
    onto: Option<&Path>,
    out: &Path,
) -> Result {
    let spec = load_complete(file)?;
    let signatures = signature_files
        .iter()
        .map(|path| load_detached(path))
        .collect::<Result<Vec<_>>>()?;
    let signed = SignedSpec { spec, signatures };
    let bundle = match onto {
        None => SpecBundle::new(signed),
        Some(path) => {
            let mut bundle = SpecBundle::load(path).map_err(|e| anyhow!("{e}"))?;
            bundle.versions.push(signed);
            bundle
        }
    };
    let anchor = bundle.genesis_id();
    bundle
        .verify(&anchor, "the bundle's own version 1")
        .map_err(|e| CliError::failed(format_args!("{}: {e}", file.display())))?;
    files::write_new(out, bundle.to_toml().as_bytes())?;
    let newest = &bundle.versions.last().expect("not empty").spec;
    if ctx.json() {
        return ctx.emit(&json!({
            "network": newest.name,
            "versions": bundle.versions.len(),
            "anchor": anchor,
            "id": newest.spec_id(),
            "file": out.display().to_string(),
        }));
    }
    ctx.say(format_args!("network     {}", newest.name))?;
    ctx.say(format_args!("versions    {}", bundle.versions.len()))?;
    ctx.say(format_args!("anchor      {anchor} (spec id of version 1)"))?;
    ctx.say(format_args!("newest      {}", newest.spec_id()))?;
    ctx.say(format_args!("wrote       {}", out.display()))
}

/// `spec verify-bundle BUNDLE [--anchor ID]`.
fn verify_bundle(ctx: &Context, file: &Path, anchor: Option<Hash32>) -> Result {
    let bundle = SpecBundle::load(file).map_err(|e| anyhow!("{e}"))?;
    let (anchor, why) = match anchor {
        Some(anchor) => (anchor, "--anchor"),
        None => (bundle.genesis_id(), "the bundle's own version 1"),
    };
    let verdict = bundle.verify(&anchor, why);
    if ctx.json() {
        ctx.emit(&json!({
            "anchor": anchor,
            "versions": bundle.versions.iter().map(|v| json!({
                "version": v.spec.version(),
                "id": v.spec.spec_id(),
                "maintainers": v.spec.maintainers.len(),
                "measurers": v.spec.measurers.len(),
                "signatures": v.signatures.len(),
            })).collect::<Vec<_>>(),
            "valid": verdict.is_ok(),
            "error": verdict.as_ref().err().map(ToString::to_string),
        }))?;
    } else {
        ctx.say(format_args!("anchor      {anchor} ({why})"))?;
        for v in &bundle.versions {
            ctx.say(format_args!(
                "  version {:<3} {}  {} maintainers, {} measurers, {} signatures",
                v.spec.version(),
                v.spec.spec_id(),
                v.spec.maintainers.len(),
                v.spec.measurers.len(),
                v.signatures.len()
            ))?;
        }
    }
    match verdict {
        Ok(_) => {
            if ctx.json() {
                Ok(())
            } else {
                ctx.say("valid       every version signed by the threshold of the one before")
            }
        }
        Err(e) => {
            if !ctx.json() {
                ctx.say("INVALID")?;
            }
            Err(CliError::failed(format_args!("{}: {e}", file.display())))
        }
    }
}

/// What an editing command did: the line it prints, and its own fields of the JSON document.
struct Change {
    text: String,
    fields: Value,
}

impl Change {
    fn new(text: String, fields: Value) -> Self {
        Change { text, fields }
    }
}

/// The fields of `spec set-threshold --json`: every kind of threshold is present, empty or
/// `false` when not the one set, so scripts see one shape.
fn threshold_json(threshold: u32, tiers: &[u8], classes: &[&str], measurers: bool) -> Value {
    json!({
        "threshold": threshold,
        "tiers": tiers,
        "classes": classes,
        "measurers": measurers,
    })
}

/// The state every editing command (and `spec new`) reports: the name, the draft's spec id
/// (it changes with every key; for a version 1 it is the network id), whether it is complete
/// and what it still lacks.
fn state_json(spec: &NetworkSpec, file: &Path) -> Value {
    let missing = spec.missing_keys();
    json!({
        "network": spec.name,
        "id": spec.spec_id(),
        "complete": missing.is_empty(),
        "missing": missing,
        "file": file.display().to_string(),
    })
}

/// Adds `fields` (an object) to the object `doc`.
fn merge(doc: &mut Value, fields: Value) {
    if let (Value::Object(doc), Value::Object(fields)) = (doc, fields) {
        doc.extend(fields);
    }
}

fn parse_key(text: &str) -> Result<PublicKey> {
    text.parse()
        .map_err(|e| CliError::Input(anyhow!("KEY: {e}")))
}

fn class_rules(
    spec: &mut NetworkSpec,
    class: ReleaseClass,
) -> Result<&mut commons_signaling::spec::ReleaseClassSpec> {
    spec.release_classes
        .iter_mut()
        .find(|c| c.class == class)
        .ok_or_else(|| anyhow!("release class {} is not in this spec", class.name()).into())
}

/// Catches the obvious mistakes in a multiaddr (a bare host, a port without its protocol);
/// the node parses it fully when it dials.
fn check_multiaddr(address: &str) -> Result {
    let parts: Vec<&str> = address.split('/').collect();
    let ok = address.starts_with('/')
        && parts.len() >= 3
        && parts[1..].iter().all(|p| !p.is_empty())
        && address.is_ascii()
        && !address.contains(char::is_whitespace);
    if !ok {
        return Err(anyhow!(
            "--address {address:?} is not a multiaddr; it looks like /ip4/192.0.2.7/tcp/8733 \
             or /dns4/measurer.example.org/tcp/8733"
        )
        .into());
    }
    Ok(())
}

/// A spec file that may still lack keys.
fn load_draft(path: &Path) -> Result<NetworkSpec> {
    NetworkSpec::load_draft(path).map_err(spec_error)
}

/// A spec file that lacks nothing: what a node would run.
fn load_complete(path: &Path) -> Result<NetworkSpec> {
    let spec = load_draft(path)?;
    let missing = spec.missing_keys();
    if !missing.is_empty() {
        return Err(anyhow!(
            "{}: the spec is not complete yet: {}",
            path.display(),
            missing.join("; ")
        )
        .into());
    }
    spec.validate(&path.display().to_string())
        .map_err(spec_error)?;
    if spec.maintainers.is_empty() {
        return Err(anyhow!(
            "{}: the spec lists no maintainers, so nobody can sign it",
            path.display()
        )
        .into());
    }
    Ok(spec)
}

/// `spec new --name NAME [--base NET] --out FILE`.
fn new(ctx: &Context, name: &str, base: BaseArg, out: &Path) -> Result {
    let mut spec = match base {
        BaseArg::Mainnet => NetworkSpec::mainnet(),
        BaseArg::Testnet => NetworkSpec::testnet(),
        BaseArg::Regtest => NetworkSpec::regtest(),
    };
    spec.name = name.to_string();
    // Every key comes from the ceremony; none of a built-in network's is kept.
    spec.maintainers.clear();
    spec.measurers.clear();
    spec.bootstrap.clear();
    for class in &mut spec.release_classes {
        class.signers.clear();
    }
    spec.validate_draft("--name").map_err(input)?;
    files::write_new(out, spec.to_toml().as_bytes())?;
    if ctx.json() {
        return ctx.emit(&state_json(&spec, out));
    }
    ctx.say(format_args!("network     {}", spec.name))?;
    ctx.say(format_args!("wrote       {}", out.display()))?;
    ctx.say(format_args!(
        "next        commons-cli spec add-maintainer {} KEY, for each maintainer's public key",
        out.display()
    ))
}

/// Applies one change to a spec file in place; the change says what it did.
fn edit(
    ctx: &Context,
    file: &Path,
    change: impl FnOnce(&mut NetworkSpec) -> Result<Change>,
) -> Result {
    let mut spec = load_draft(file)?;
    let done = change(&mut spec).map_err(|e| match e {
        CliError::Input(e) => CliError::Input(anyhow!("{}: {e:#}", file.display())),
        other => other,
    })?;
    spec.validate_draft(&file.display().to_string())
        .map_err(spec_error)?;
    files::replace(file, spec.to_toml().as_bytes())?;
    if ctx.json() {
        let mut doc = state_json(&spec, file);
        merge(&mut doc, done.fields);
        return ctx.emit(&doc);
    }
    ctx.say(done.text)?;
    ctx.say(format_args!("id          {}", spec.spec_id()))?;
    let missing = spec.missing_keys().len();
    if missing == 0 {
        ctx.say("complete    yes")
    } else {
        ctx.say(format_args!(
            "complete    no: {missing} threshold{} above the keys listed (`spec show` lists them)",
            if missing == 1 { " is" } else { "s are" }
        ))
    }
}

/// `spec show FILE`.
fn show(ctx: &Context, file: &Path) -> Result {
    let spec = load_draft(file)?;
    if ctx.json() {
        return ctx.emit(&show_json(&spec, file));
    }
    let missing = spec.missing_keys();
    ctx.say(format_args!("network     {}", spec.name))?;
    ctx.say(format_args!("id          {}", spec.spec_id()))?;
    if missing.is_empty() {
        ctx.say("complete    yes")?;
    } else {
        ctx.say("complete    no")?;
        for line in &missing {
            ctx.say(format_args!("  {line}"))?;
        }
    }
    ctx.say(format_args!(
        "epochs      {}; {} of uptime in a window of {} epochs qualify",
        format::duration(spec.epoch_secs),
        format::duration(
            spec.epoch_secs
                .saturating_mul(spec.min_uptime_epochs.into())
        ),
        spec.uptime_window_epochs
    ))?;
    ctx.say(format_args!("maintainers {}", spec.maintainers.len()))?;
    for key in &spec.maintainers {
        ctx.say(format_args!("  {key}"))?;
    }
    ctx.say("tiers (maintainer signatures, shortest lock)")?;
    for tier in &spec.tiers {
        ctx.say(format_args!(
            "  tier {} {:<20} {} of {}, {}",
            tier.tier,
            tier.name,
            tier.signatures_required,
            spec.maintainers.len(),
            format::duration(tier.min_lock_secs)
        ))?;
    }
    ctx.say("release classes")?;
    for class in &spec.release_classes {
        ctx.say(format_args!(
            "  {:<12} {} of {}",
            class.class.name(),
            class.threshold,
            class.signers.len()
        ))?;
        for key in &class.signers {
            ctx.say(format_args!("    {key}"))?;
        }
    }
    ctx.say(format_args!(
        "measurers   {} ({} must agree; qualification rule {})",
        spec.measurers.len(),
        spec.measurer_quorum,
        spec.qualification
    ))?;
    for measurer in &spec.measurers {
        let at = if measurer.addresses.is_empty() {
            "no address listed".to_string()
        } else {
            measurer.addresses.join(" ")
        };
        ctx.say(format_args!("  {}  {at}", measurer.key))?;
    }
    ctx.say(format_args!(
        "spec signatures {} of the {} maintainers (the strictest tier's threshold)",
        spec_threshold(&spec),
        spec.maintainers.len()
    ))
}

/// What `spec show --json` prints: the state of [`state_json`] and every rule and key. Where
/// a name is also in `network init`'s document (`tiers`, `release_classes[].signers`,
/// `measurers`) it means the same, a count; the keys themselves are in fields of their own.
fn show_json(spec: &NetworkSpec, file: &Path) -> Value {
    let mut doc = state_json(spec, file);
    merge(
        &mut doc,
        json!({
            "epoch_secs": spec.epoch_secs,
            "min_uptime_epochs": spec.min_uptime_epochs,
            "uptime_window_epochs": spec.uptime_window_epochs,
            "maintainers": spec.maintainers,
            "tiers": spec.tiers.iter().map(|tier| json!({
                "tier": tier.tier,
                "name": tier.name,
                "signatures_required": tier.signatures_required,
                "maintainers": spec.maintainers.len(),
                "min_lock_secs": tier.min_lock_secs,
            })).collect::<Vec<_>>(),
            "release_classes": spec.release_classes.iter().map(|class| json!({
                "class": class.class.name(),
                "threshold": class.threshold,
                "signers": class.signers.len(),
                "keys": class.signers,
            })).collect::<Vec<_>>(),
            "measurer_quorum": spec.measurer_quorum,
            "measurers": spec.measurers.len(),
            "measurer_keys": spec.measurers.iter().map(|m| json!({
                "public_key": m.key,
                "addresses": m.addresses,
            })).collect::<Vec<_>>(),
            "qualification": spec.qualification.name(),
            "spec_signatures_required": spec_threshold(spec),
        }),
    );
    doc
}

/// `spec sign FILE --key KEY --out SIG`.
fn sign(
    ctx: &Context,
    file: &Path,
    previous: Option<&Path>,
    key_file: &Path,
    out: &Path,
    passphrase: PassphraseArgs,
) -> Result {
    let spec = load_complete(file)?;
    let authority = authority_of(&spec, file, previous)?;
    let public = super::key::public_key(key_file)?;
    if !authority.maintainers.contains(&public) {
        let of = match previous {
            None => format!("in {}", file.display()),
            Some(path) => format!("of version {} ({})", authority.version(), path.display()),
        };
        return Err(anyhow!(
            "{}: key {public} is not a maintainer {of}",
            key_file.display()
        )
        .into());
    }
    if out.exists() {
        return Err(anyhow!(
            "{}: exists already; refusing to overwrite it",
            out.display()
        )
        .into());
    }
    let key = super::key::load(key_file, passphrase)?;
    let signature = sign_spec(&spec, &key);
    files::write_new(out, &wire::encode(&signature))?;
    if ctx.json() {
        return ctx.emit(&json!({
            "network": spec.name,
            "id": spec.spec_id(),
            "signer": public,
            "detached": out.display().to_string(),
            "file": file.display().to_string(),
        }));
    }
    ctx.say(format_args!("network     {}", spec.name))?;
    ctx.say(format_args!("id          {}", spec.spec_id()))?;
    ctx.say(format_args!("signed as {public}"))?;
    ctx.say(format_args!(
        "wrote       detached signature {}",
        out.display()
    ))
}

/// `spec verify FILE SIG...`: exit code 0 only when enough of the spec's maintainers signed.
fn verify(
    ctx: &Context,
    file: &Path,
    previous: Option<&Path>,
    signature_files: &[PathBuf],
) -> Result {
    let spec = load_complete(file)?;
    let authority = authority_of(&spec, file, previous)?;
    let signatures = signature_files
        .iter()
        .map(|path| load_detached(path))
        .collect::<Result<Vec<_>>>()?;
    let report = check_spec_signatures(&spec, &authority, &signatures);
    let verdict =
        commons_signaling::spec_signatures::verify_spec_signatures(&spec, &authority, &signatures);
    let invalid = |error: SpecSignatureError| {
        // Both errors are verdicts on the signatures given, hence exit 1 like any `verify`.
        match error {
            SpecSignatureError::BelowThreshold(_) | SpecSignatureError::NoMaintainers => {
                CliError::failed(format_args!("{}: {error}", file.display()))
            }
        }
    };
    if ctx.json() {
        ctx.emit(&json!({
            "network": spec.name,
            "id": report.spec_id,
            "digest": report.digest,
            "signatures": report.signatures.iter().zip(signature_files).map(|((key, fate), path)| json!({
                "signer": key,
                "index": authority.maintainers.iter().position(|k| k == key).map(|i| i + 1),
                "fate": fate_name(*fate),
                "file": path.display().to_string(),
            })).collect::<Vec<_>>(),
            "counted": report.counted,
            "required": report.required,
            "valid": verdict.is_ok(),
        }))?;
        return verdict.map(|_| ()).map_err(invalid);
    }
    ctx.say(format_args!("network     {}", spec.name))?;
    ctx.say(format_args!("id          {}", report.spec_id))?;
    ctx.say("signatures")?;
    for ((key, fate), path) in report.signatures.iter().zip(signature_files) {
        let who = authority
            .maintainers
            .iter()
            .position(|k| k == key)
            .map_or("-".to_string(), |i| format!("maintainer {}", i + 1));
        ctx.say(format_args!(
            "  {key}  {who:<13} {fate}  ({})",
            path.display()
        ))?;
    }
    ctx.say(format_args!(
        "counted     {} of {} required",
        report.counted, report.required
    ))?;
    match verdict {
        Ok(_) => ctx.say(format_args!("valid       signed by its maintainers")),
        Err(error) => {
            ctx.say("INVALID")?;
            Err(invalid(error))
        }
    }
}

/// The stable name of a spec signature's fate in JSON output, the same names as
/// [`crate::format::fate_name`] gives the fates of proposal and release signatures.
fn fate_name(fate: SpecSignatureFate) -> &'static str {
    match fate {
        SpecSignatureFate::Counted => "counted",
        SpecSignatureFate::DuplicateSigner => "duplicate-signer",
        SpecSignatureFate::UnknownKey => "unknown-key",
        SpecSignatureFate::BadSignature => "bad-signature",
    }
}
