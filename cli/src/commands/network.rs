//! `network init`: a local test network with fresh maintainer and measurer keys, all of them
//! on this machine. A real network is built with `spec` from keys generated apart.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use commons_signaling::spec::{ReleaseClassSpec, TierSpec};
use commons_signaling::{NetworkSpec, PublicKey, SecretKey};

use super::Context;
use crate::cli::NetworkInitArgs;
use crate::error::{Result, input, key_error, spec_error};
use crate::files;

/// Builds the spec of a new network: regtest's parameters, the given name, `maintainers` as
/// the proposal signers and `release_signers` as the signers of every release class, with
/// each threshold the reference one or, where fewer keys exist, all of them, and `measurers`
/// in place of regtest's well-known ones (regtest's quorum of two).
pub fn spec_for(
    name: &str,
    maintainers: &[PublicKey],
    release_signers: &[PublicKey],
    measurers: &[PublicKey],
) -> NetworkSpec {
    let mut spec = NetworkSpec::regtest();
    spec.name = name.to_string();
    spec.maintainers = maintainers.to_vec();
    spec.measurers = measurers
        .iter()
        .map(|key| commons_signaling::spec::MeasurerSpec {
            key: *key,
            addresses: vec![],
        })
        .collect();
    let clamp = |reference: u32, keys: usize| reference.min(keys as u32).max(1);
    spec.tiers = spec
        .tiers
        .into_iter()
        .map(|tier| TierSpec {
            signatures_required: clamp(tier.signatures_required, maintainers.len()),
            ..tier
        })
        .collect();
    spec.release_classes = spec
        .release_classes
        .into_iter()
        .map(|class| ReleaseClassSpec {
            threshold: clamp(class.threshold, release_signers.len()),
            signers: release_signers.to_vec(),
            ..class
        })
        .collect();
    spec.bootstrap.clear();
    spec
}

/// Refuses a directory that exists and is not empty; creates a missing one (mode 0700).
fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{}: directory is not empty; refusing to write a network into it",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder
                .create(dir)
                .with_context(|| format!("{}: cannot create directory", dir.display()))
        }
        Err(e) if dir.exists() && !dir.is_dir() => {
            Err(anyhow!("{}: not a directory ({e})", dir.display()))
        }
        Err(e) => Err(anyhow!("{}: {e}", dir.display())),
    }
}

/// `network init --out DIR --maintainers N [--name NAME] [--release-signers M]`.
pub fn init(ctx: &Context, args: &NetworkInitArgs) -> Result {
    let dir = &args.out;
    let n = args.maintainers as usize;
    let m = args.release_signers.map_or(n, |m| m as usize);

    // Everything is generated and checked before the first file is written.
    let maintainer_keys: Vec<SecretKey> = (0..n).map(|_| SecretKey::generate()).collect();
    let extra_keys: Vec<SecretKey> = (n..m).map(|_| SecretKey::generate()).collect();
    let maintainers: Vec<PublicKey> = maintainer_keys.iter().map(SecretKey::public_key).collect();
    let release_signers: Vec<PublicKey> = maintainers
        .iter()
        .copied()
        .chain(extra_keys.iter().map(SecretKey::public_key))
        .take(m)
        .collect();
    // A network of its own measures with keys of its own: regtest's well-known measurer keys
    // would let anyone who runs them qualify nodes here.
    let measurer_keys: Vec<SecretKey> = (0..commons_signaling::spec::REGTEST_MEASURERS)
        .map(|_| SecretKey::generate())
        .collect();
    let measurers: Vec<PublicKey> = measurer_keys.iter().map(SecretKey::public_key).collect();
    let spec = spec_for(&args.name, &maintainers, &release_signers, &measurers);
    spec.validate("--name").map_err(input)?;

    prepare_dir(dir)?;
    let mut key_files: Vec<(PathBuf, PublicKey, &str)> = Vec::new();
    let spec_path = dir.join("spec.toml");
    let written = (|| -> Result {
        for (i, key) in maintainer_keys.iter().enumerate() {
            let path = dir.join(format!("maintainer-{}.key", i + 1));
            key.save(&path).map_err(key_error)?;
            key_files.push((path, key.public_key(), "maintainer"));
        }
        for (i, key) in extra_keys.iter().enumerate() {
            let path = dir.join(format!("release-signer-{}.key", n + i + 1));
            key.save(&path).map_err(key_error)?;
            key_files.push((path, key.public_key(), "release-signer"));
        }
        for (i, key) in measurer_keys.iter().enumerate() {
            let path = dir.join(format!("measurer-{}.key", i + 1));
            key.save(&path).map_err(key_error)?;
            key_files.push((path, key.public_key(), "measurer"));
        }
        files::write_new(&spec_path, spec.to_toml().as_bytes())?;
        Ok(())
    })();
    if let Err(error) = written {
        // The directory was empty: leave it so, rather than half a network.
        for (path, _, _) in &key_files {
            let _ = fs::remove_file(path);
        }
        return Err(error);
    }

    // What other commands will read: check it gives the same network.
    let reloaded = NetworkSpec::load(&spec_path).map_err(spec_error)?;
    let id = reloaded.network_id();
    if id != spec.network_id() {
        return Err(anyhow!(
            "{}: the spec as written reads back differently",
            spec_path.display()
        )
        .into());
    }

    if ctx.json() {
        return ctx.emit(&init_json(&spec, &id, &spec_path, &key_files, n));
    }
    ctx.say(format_args!("network {} (a local test network)", spec.name))?;
    ctx.say(format_args!("id          {id}"))?;
    ctx.say(format_args!("spec        {}", spec_path.display()))?;
    ctx.say(format_args!(
        "keys        (secret, mode 0600; keep them safe)"
    ))?;
    for (path, public, _) in &key_files {
        ctx.say(format_args!("  {public}  {}", path.display()))?;
    }
    ctx.say("proposal thresholds (maintainer signatures, shortest lock):")?;
    for tier in &spec.tiers {
        ctx.say(format_args!(
            "  tier {} {:<20} {} of {}, {}",
            tier.tier,
            tier.name,
            tier.signatures_required,
            n,
            crate::format::duration(tier.min_lock_secs)
        ))?;
    }
    ctx.say("release thresholds:")?;
    for class in &spec.release_classes {
        ctx.say(format_args!(
            "  {:<12} {} of {}",
            class.class.name(),
            class.threshold,
            class.signers.len()
        ))?;
    }
    ctx.say(format_args!(
        "measurers: {} of {} must agree; a commonsd whose node.key is a measurer key measures",
        spec.measurer_quorum,
        spec.measurers.len()
    ))?;
    ctx.say(format_args!(
        "use it with: commons-cli --network {} ...",
        spec_path.display()
    ))?;
    ctx.say(
        "for tests only: every secret key is on this machine; build a real network with \
         `commons-cli spec` from keys each maintainer generates alone (docs/KEYS.md)",
    )
}

/// What `network init --json` prints.
fn init_json(
    spec: &NetworkSpec,
    id: &commons_signaling::Hash32,
    spec_path: &Path,
    key_files: &[(PathBuf, PublicKey, &str)],
    maintainers: usize,
) -> serde_json::Value {
    serde_json::json!({
        "network": spec.name,
        "id": id,
        "spec": spec_path.display().to_string(),
        "keys": key_files.iter().map(|(path, public, role)| serde_json::json!({
            "role": role,
            "public_key": public,
            "file": path.display().to_string(),
        })).collect::<Vec<_>>(),
        "tiers": spec.tiers.iter().map(|tier| serde_json::json!({
            "tier": tier.tier,
            "name": tier.name,
            "signatures_required": tier.signatures_required,
            "maintainers": maintainers,
            "min_lock_secs": tier.min_lock_secs,
        })).collect::<Vec<_>>(),
        "release_classes": spec.release_classes.iter().map(|class| serde_json::json!({
            "class": class.class.name(),
            "threshold": class.threshold,
            "signers": class.signers.len(),
        })).collect::<Vec<_>>(),
        "measurer_quorum": spec.measurer_quorum,
        "measurers": spec.measurers.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use commons_signaling::ReleaseClass;

    fn keys(n: usize) -> Vec<PublicKey> {
        (0..n)
            .map(|i| SecretKey::from_seed(&format!("k{i}")).public_key())
            .collect()
    }

    #[test]
    fn thresholds_are_clamped_to_the_keys_there_are() {
        let five = keys(5);
        let spec = spec_for("five", &five, &five, &[]);
        spec.validate("test").unwrap();
        let sigs: Vec<u32> = spec.tiers.iter().map(|t| t.signatures_required).collect();
        assert_eq!(sigs, [3, 4, 5, 4, 5]);
        assert_eq!(
            spec.release_class(ReleaseClass::Consensus)
                .unwrap()
                .threshold,
            5
        );
        assert_eq!(
            spec.release_class(ReleaseClass::Protocol)
                .unwrap()
                .threshold,
            4
        );
        assert_eq!(
            spec.release_class(ReleaseClass::Application)
                .unwrap()
                .threshold,
            3
        );

        let two = keys(2);
        let spec = spec_for("two", &two, &two, &[]);
        spec.validate("test").unwrap();
        assert!(spec.tiers.iter().all(|t| t.signatures_required == 2));

        let seven = keys(7);
        let spec = spec_for("seven", &five, &seven, &[]);
        spec.validate("test").unwrap();
        assert_eq!(
            spec.release_class(ReleaseClass::Consensus)
                .unwrap()
                .threshold,
            6
        );
    }
}
