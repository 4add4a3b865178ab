//! `key generate`, `key show`, `key regtest-maintainer` and `key regtest-measurer`.

use std::path::Path;

use anyhow::anyhow;
use commons_signaling::SecretKey;

use super::Context;
use crate::error::{Result, key_error};

/// Prints a public key: alone on its line, or with `--json` as `{"public_key", "file"}`.
fn print_key(ctx: &Context, key: &SecretKey, file: &Path) -> Result {
    if ctx.json() {
        return ctx.emit(&serde_json::json!({
            "public_key": key.public_key(),
            "file": file.display().to_string(),
        }));
    }
    ctx.say(key.public_key())
}

/// Writes a fresh secret key (mode 0600, never over an existing file) and prints its public
/// key.
pub fn generate(ctx: &Context, out: &Path) -> Result {
    let key = SecretKey::generate();
    key.save(out).map_err(key_error)?;
    print_key(ctx, &key, out)
}

/// Writes the well-known regtest maintainer key `index` (mode 0600, never over an existing
/// file) and prints its public key.
pub fn regtest_maintainer(ctx: &Context, index: u8, out: &Path) -> Result {
    let key = commons_signaling::spec::regtest_maintainer_key(usize::from(index));
    key.save(out).map_err(key_error)?;
    print_key(ctx, &key, out)
}

/// Writes the well-known regtest measurer key `index` (mode 0600, never over an existing
/// file) and prints its public key.
pub fn regtest_measurer(ctx: &Context, index: u8, out: &Path) -> Result {
    let key = commons_signaling::spec::regtest_measurer_key(usize::from(index));
    key.save(out).map_err(key_error)?;
    print_key(ctx, &key, out)
}

/// Prints the public key of a secret key file; never the secret.
pub fn show(ctx: &Context, file: &Path) -> Result {
    print_key(ctx, &load(file)?, file)
}

/// Reads a secret key file (refusing one that others can read), for signing.
pub fn load(path: &Path) -> Result<SecretKey> {
    if path.is_dir() {
        return Err(anyhow!("{}: is a directory, not a key file", path.display()).into());
    }
    SecretKey::load(path).map_err(key_error)
}
