//! `spec ...`: a network spec built from public keys, in a ceremony where no machine ever
//! holds two secrets, then signed by its maintainers so a node can tell where it came from.
//!
//! A spec being built may require more signatures than it lists keys yet (a draft); the
//! editing commands accept that and `spec show` says what is missing. Signing and verifying
//! need a complete spec, one that `--network` would load.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use commons_signaling::spec::MeasurerSpec;
use commons_signaling::spec_signatures::{
    SpecSignatureError, SpecSignatureFate, check_spec_signatures, sign_spec, spec_signing_digest,
    spec_threshold,
};
use commons_signaling::{NetworkSpec, PublicKey, ReleaseClass, wire};
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
                    "id": spec.network_id(),
                    "network": spec.name,
                    "file": file.display().to_string(),
                }));
            }
            ctx.say(spec.network_id())
        }
        SpecCommand::Digest { file } => {
            let spec = load_complete(&file)?;
            let digest = spec_signing_digest(&spec.network_id());
            if ctx.json() {
                return ctx.emit(&json!({
                    "digest": digest,
                    "id": spec.network_id(),
                    "network": spec.name,
                    "file": file.display().to_string(),
                }));
            }
            ctx.say(digest)
        }
        SpecCommand::Sign {
            file,
            key,
            out,
            passphrase,
        } => sign(ctx, &file, &key, &out, passphrase),
        SpecCommand::Verify { file, signatures } => verify(ctx, &file, &signatures),
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

/// The state every editing command (and `spec new`) reports: the name, the draft's network
/// id (it changes with every key), whether it is complete and what it still lacks.
fn state_json(spec: &NetworkSpec, file: &Path) -> Value {
    let missing = spec.missing_keys();
    json!({
        "network": spec.name,
        "id": spec.network_id(),
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
    ctx.say(format_args!("id          {}", spec.network_id()))?;
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
    ctx.say(format_args!("id          {}", spec.network_id()))?;
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
    key_file: &Path,
    out: &Path,
    passphrase: PassphraseArgs,
) -> Result {
    let spec = load_complete(file)?;
    let public = super::key::public_key(key_file)?;
    if !spec.maintainers.contains(&public) {
        return Err(anyhow!(
            "{}: key {public} is not a maintainer in {}",
            key_file.display(),
            file.display()
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
            "id": spec.network_id(),
            "signer": public,
            "detached": out.display().to_string(),
            "file": file.display().to_string(),
        }));
    }
    ctx.say(format_args!("network     {}", spec.name))?;
    ctx.say(format_args!("id          {}", spec.network_id()))?;
    ctx.say(format_args!("signed as {public}"))?;
    ctx.say(format_args!(
        "wrote       detached signature {}",
        out.display()
    ))
}

/// `spec verify FILE SIG...`: exit code 0 only when enough of the spec's maintainers signed.
fn verify(ctx: &Context, file: &Path, signature_files: &[PathBuf]) -> Result {
    let spec = load_complete(file)?;
    let signatures = signature_files
        .iter()
        .map(|path| load_detached(path))
        .collect::<Result<Vec<_>>>()?;
    let report = check_spec_signatures(&spec, &spec, &signatures);
    let verdict =
        commons_signaling::spec_signatures::verify_spec_signatures(&spec, &spec, &signatures);
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
            "id": report.network_id,
            "digest": report.digest,
            "signatures": report.signatures.iter().zip(signature_files).map(|((key, fate), path)| json!({
                "signer": key,
                "index": spec.maintainers.iter().position(|k| k == key).map(|i| i + 1),
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
    ctx.say(format_args!("id          {}", report.network_id))?;
    ctx.say("signatures")?;
    for ((key, fate), path) in report.signatures.iter().zip(signature_files) {
        let who = spec
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
