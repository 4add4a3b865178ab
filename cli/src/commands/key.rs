//! `key generate`, `key show`, `key regtest-maintainer` and `key regtest-measurer`.

use std::path::Path;

use anyhow::anyhow;
use commons_signaling::SecretKey;

use super::Context;
use crate::error::{Result, key_error};

/// Writes a fresh secret key (mode 0600, never over an existing file) and prints its public
/// key.
pub fn generate(ctx: &Context, out: &Path) -> Result {
    let key = SecretKey::generate();
    key.save(out).map_err(key_error)?;
    ctx.say(key.public_key())
}

/// Writes the well-known regtest maintainer key `index` (mode 0600, never over an existing
/// file) and prints its public key.
pub fn regtest_maintainer(ctx: &Context, index: u8, out: &Path) -> Result {
    let key = commons_signaling::spec::regtest_maintainer_key(usize::from(index));
    key.save(out).map_err(key_error)?;
    ctx.say(key.public_key())
}

/// Writes the well-known regtest measurer key `index` (mode 0600, never over an existing
/// file) and prints its public key.
pub fn regtest_measurer(ctx: &Context, index: u8, out: &Path) -> Result {
    let key = commons_signaling::spec::regtest_measurer_key(usize::from(index));
    key.save(out).map_err(key_error)?;
    ctx.say(key.public_key())
}

/// Prints the public key of a secret key file; never the secret.
pub fn show(ctx: &Context, file: &Path) -> Result {
    ctx.say(load(file)?.public_key())
}

/// Reads a secret key file (refusing one that others can read), for signing.
pub fn load(path: &Path) -> Result<SecretKey> {
    if path.is_dir() {
        return Err(anyhow!("{}: is a directory, not a key file", path.display()).into());
    }
    SecretKey::load(path).map_err(key_error)
}
