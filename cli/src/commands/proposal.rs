//! `proposal create`, `proposal sign`, `proposal digest`, `proposal attach` and `proposal
//! verify`.

use std::path::Path;

use anyhow::anyhow;
use commons_aggregator::rules::{ProposalError, ThresholdReport, check_threshold, verify_proposal};
use commons_signaling::{PROTOCOL_VERSION, Proposal, ProposalBody};

use serde_json::{Value, json};

use super::{
    Context, Network, load_detached, load_proposal, signature_lines, signatures_json, text,
};
use crate::cli::{PassphraseArgs, ProposalCreateArgs, TimeArg};
use crate::error::{CliError, Result};
use crate::files;
use crate::format;

/// `proposal create`.
pub fn create(ctx: &Context, args: &ProposalCreateArgs) -> Result {
    let net = ctx.network()?;
    let tier = net
        .spec
        .tier(args.tier)
        .ok_or_else(|| unknown_tier(net, args.tier))?;
    let now = ctx.now()?;
    let overflow = || CliError::Input(anyhow!("lock time is too far in the future"));
    let lock_start = match args.lock_start {
        TimeArg::Now => now,
        TimeArg::At(t) => t,
        TimeArg::After(secs) => now.checked_add(secs).ok_or_else(overflow)?,
    };
    let lock_end = match args.lock_end {
        None => lock_start
            .checked_add(tier.min_lock_secs)
            .ok_or_else(overflow)?,
        Some(TimeArg::At(t)) => t,
        Some(TimeArg::After(secs)) => lock_start.checked_add(secs).ok_or_else(overflow)?,
        Some(TimeArg::Now) => now,
    };
    let body = ProposalBody {
        version: PROTOCOL_VERSION,
        tier: args.tier,
        title: text("--title", &args.title)?,
        reference: text("--reference", &args.reference)?,
        lock_start,
        lock_end,
    };
    let proposal = Proposal::new(body);
    // The network's rules, less the signatures it does not have yet.
    match verify_proposal(&proposal, &net.spec, &net.id) {
        Ok(_) | Err(ProposalError::BelowThreshold(_)) => {}
        Err(error) => {
            return Err(anyhow!(
                "cannot create this proposal on network {}: {error}",
                net.spec.name
            )
            .into());
        }
    }
    files::write_new(&args.out, &proposal.encode())?;
    let id = proposal.id(&net.id);
    if ctx.json() {
        let mut doc = summary_json(net, &proposal, &id.to_hex());
        doc["counted"] = json!(0);
        doc["required"] = json!(tier.signatures_required);
        doc["file"] = json!(args.out.display().to_string());
        return ctx.emit(&doc);
    }
    summary(ctx, net, &proposal, &id.to_hex())?;
    ctx.say(format_args!(
        "signatures  0 of {} required; next: commons-cli --network {} proposal sign {} --key KEY",
        tier.signatures_required,
        shell_word(ctx.network_arg()),
        shell_word(&args.out.display().to_string())
    ))?;
    ctx.say(format_args!("wrote       {}", args.out.display()))
}

/// Quotes a word for a shell hint when it needs it.
fn shell_word(word: &str) -> String {
    if word
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./:+=,@".contains(&b))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn unknown_tier(net: &Network, tier: u8) -> CliError {
    let known: Vec<String> = net
        .spec
        .tiers
        .iter()
        .map(|t| format!("{} ({})", t.tier, t.name))
        .collect();
    CliError::Input(anyhow!(
        "tier {tier} does not exist on network {}; it has tiers {}",
        net.spec.name,
        known.join(", ")
    ))
}

/// The lines every proposal command prints first.
fn summary(ctx: &Context, net: &Network, proposal: &Proposal, id: &str) -> Result {
    let body = &proposal.body;
    let tier_name = net
        .spec
        .tier(body.tier)
        .map_or("not on this network", |t| t.name.as_str());
    ctx.say(format_args!("proposal    {id}"))?;
    ctx.say(format_args!("network     {}", net.label()))?;
    ctx.say(format_args!("tier        {} ({tier_name})", body.tier))?;
    ctx.say(format_args!(
        "title       {}",
        format::one_line(body.title.as_str())
    ))?;
    ctx.say(format_args!(
        "reference   {}",
        format::one_line(body.reference.as_str())
    ))?;
    let length = body
        .lock_end
        .checked_sub(body.lock_start)
        .map_or("ends before it starts".into(), format::duration);
    ctx.say(format_args!(
        "lock        {} to {} ({length})",
        format::utc(body.lock_start),
        format::utc(body.lock_end)
    ))
}

/// What every proposal command's JSON starts with: the fields of [`summary`].
fn summary_json(net: &Network, proposal: &Proposal, id: &str) -> Value {
    let body = &proposal.body;
    json!({
        "id": id,
        "network": net.spec.name,
        "network_id": net.id,
        "tier": body.tier,
        "tier_name": net.spec.tier(body.tier).map(|t| t.name.as_str()),
        "title": body.title.as_str(),
        "reference": body.reference.as_str(),
        "lock_start": body.lock_start,
        "lock_end": body.lock_end,
    })
}

/// The signature report of a proposal on a network, whether or not the rest is valid.
fn report(proposal: &Proposal, net: &Network) -> ThresholdReport {
    let required = net
        .spec
        .tier(proposal.body.tier)
        .map_or(0, |t| t.signatures_required as usize);
    check_threshold(
        proposal.id(&net.id),
        &proposal.signatures,
        &net.spec.maintainers,
        required,
    )
}

/// `proposal sign FILE --key KEY`.
pub fn sign(ctx: &Context, file: &Path, key_file: &Path, passphrase: PassphraseArgs) -> Result {
    let net = ctx.network()?;
    let mut proposal = load_proposal(file)?;
    // Whether the key may sign is known before anyone types its passphrase.
    let public = super::key::public_key(key_file)?;
    if !net.spec.maintainers.contains(&public) {
        return Err(anyhow!(
            "{}: key {public} is not a maintainer of network {}; is --network right?",
            key_file.display(),
            net.spec.name
        )
        .into());
    }
    match verify_proposal(&proposal, &net.spec, &net.id) {
        Ok(_) | Err(ProposalError::BelowThreshold(_)) => {}
        Err(error) => {
            return Err(anyhow!(
                "{}: refusing to sign, the proposal is not valid on network {}: {error}",
                file.display(),
                net.spec.name
            )
            .into());
        }
    }
    let key = super::key::load(key_file, passphrase)?;
    let replaced = proposal.signatures.iter().any(|s| s.signer == public);
    proposal
        .add_signature(&key, &net.id)
        .map_err(|e| anyhow!("{}: {e}", file.display()))?;
    files::replace(file, &proposal.encode())?;

    super::signed_report(
        ctx,
        "proposal",
        &public,
        replaced,
        &report(&proposal, net),
        file,
    )
}

/// `proposal digest FILE`: the id maintainers sign, alone on a line, for an offline signer.
pub fn digest(ctx: &Context, file: &Path) -> Result {
    let net = ctx.network()?;
    let proposal = load_proposal(file)?;
    let id = proposal.id(&net.id);
    if ctx.json() {
        return ctx.emit(&super::digest_json(net, &id, file));
    }
    ctx.say(id)
}

/// `proposal attach FILE SIG...`: every signature is checked before the file is written; one
/// that is not over this proposal on this network, or not by a maintainer, rejects them all.
pub fn attach(ctx: &Context, file: &Path, signature_files: &[std::path::PathBuf]) -> Result {
    let net = ctx.network()?;
    let mut proposal = load_proposal(file)?;
    let id = proposal.id(&net.id);
    let mut added = Vec::new();
    for path in signature_files {
        let signature = load_detached(path)?;
        let signer = signature.signer;
        if !signature.verify(&id) {
            return Err(anyhow!(
                "{}: the signature by {signer} is not over this proposal (id {id}) on network \
                 {}: it was made for another message or network, or is damaged; {} was not \
                 changed",
                path.display(),
                net.spec.name,
                file.display()
            )
            .into());
        }
        if !net.spec.maintainers.contains(&signer) {
            return Err(anyhow!(
                "{}: {signer} is not a maintainer of network {}; {} was not changed",
                path.display(),
                net.spec.name,
                file.display()
            )
            .into());
        }
        proposal
            .add_detached(signature)
            .map_err(|e| anyhow!("{}: {e}", file.display()))?;
        added.push((signer, path));
    }
    files::replace(file, &proposal.encode())?;
    let report = report(&proposal, net);
    if ctx.json() {
        return ctx.emit(&super::added_json(&report, &added, file));
    }
    ctx.say(format_args!("proposal    {id}"))?;
    for (signer, path) in added {
        ctx.say(format_args!("added       {signer} from {}", path.display()))?;
    }
    super::counted_line(ctx, &report)
}

/// `proposal verify FILE`: exit code 0 only when the proposal is valid on the network.
pub fn verify(ctx: &Context, file: &Path) -> Result {
    let net = ctx.network()?;
    let proposal = load_proposal(file)?;
    let verdict = verify_proposal(&proposal, &net.spec, &net.id);
    let report = match &verdict {
        Ok(report) | Err(ProposalError::BelowThreshold(report)) => report.clone(),
        Err(_) => report(&proposal, net),
    };
    if ctx.json() {
        let mut doc = summary_json(net, &proposal, &report.id.to_hex());
        doc["signatures"] = signatures_json(&report, &net.spec.maintainers);
        doc["counted"] = json!(report.counted);
        doc["required"] = json!(report.required);
        doc["valid"] = json!(verdict.is_ok());
        ctx.emit(&doc)?;
        return verdict
            .map(|_| ())
            .map_err(|error| invalid(file, net, &report, &error));
    }
    summary(ctx, net, &proposal, &report.id.to_hex())?;
    ctx.say("signatures")?;
    for line in signature_lines(&report, &net.spec.maintainers, "maintainer") {
        ctx.say(line)?;
    }
    ctx.say(format_args!(
        "counted     {} of {} required",
        report.counted, report.required
    ))?;
    match verdict {
        Ok(_) => ctx.say(format_args!("valid       on network {}", net.spec.name)),
        Err(error) => {
            ctx.say("INVALID")?;
            Err(invalid(file, net, &report, &error))
        }
    }
}

/// The error of `proposal verify` on an invalid proposal, with a hint at the usual causes.
fn invalid(
    file: &Path,
    net: &Network,
    report: &ThresholdReport,
    error: &ProposalError,
) -> CliError {
    let hint = super::bad_signature_hint(report);
    CliError::failed(format_args!(
        "{}: not valid on network {}: {error}{hint}",
        file.display(),
        net.spec.name
    ))
}
