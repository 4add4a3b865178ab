//! `key generate`, `key show`, `key encrypt`, `key export`, `key import`, `key sign-digest`,
//! `key regtest-maintainer` and `key regtest-measurer`, and the loading of secret key files
//! (plain or encrypted) that every signing command shares.

use std::path::Path;

use anyhow::anyhow;
use commons_signaling::{Hash32, MaintainerSignature, PublicKey, SecretKey, wire};
use zeroize::Zeroizing;

use super::Context;
use crate::cli::PassphraseArgs;
use crate::error::{CliError, Result, key_error};
use crate::files;
use crate::keyfile::{self, KeyFile};
use crate::passphrase::{self, Source};

fn source(args: PassphraseArgs) -> Source {
    Source {
        fd: args.passphrase_fd,
    }
}

/// Prints a public key: alone on its line, or with `--json` as `{"public_key", "file",
/// "encrypted"}`, `encrypted` saying whether the key file is sealed with a passphrase.
fn print_key(ctx: &Context, public_key: PublicKey, file: &Path, encrypted: bool) -> Result {
    if ctx.json() {
        return ctx.emit(&key_json(public_key, file, encrypted));
    }
    ctx.say(public_key)
}

/// The JSON form of a key file: its public key, its path, and whether it is encrypted.
fn key_json(public_key: PublicKey, file: &Path, encrypted: bool) -> serde_json::Value {
    serde_json::json!({
        "public_key": public_key,
        "file": file.display().to_string(),
        "encrypted": encrypted,
    })
}

/// Writes a fresh secret key (mode 0600, never over an existing file), encrypted when a
/// passphrase source is given, and prints its public key.
pub fn generate(ctx: &Context, out: &Path, encrypt: Option<PassphraseArgs>) -> Result {
    passphrase::protect_process();
    let key = SecretKey::generate();
    let passphrase = match encrypt {
        Some(args) => Some(source(args).new_passphrase(&out.display().to_string())?),
        None => None,
    };
    keyfile::write_new(out, &key, passphrase.as_deref().map(String::as_str))?;
    print_key(ctx, key.public_key(), out, passphrase.is_some())
}

/// `key encrypt FILE`: seals a plain key file with a passphrase, in place.
pub fn encrypt(ctx: &Context, file: &Path, args: PassphraseArgs) -> Result {
    match keyfile::read(file)? {
        KeyFile::Encrypted(_) => {
            return Err(anyhow!(
                "{}: is encrypted already (to change its passphrase, `key export` it and \
                 `key import --encrypt` the backup)",
                file.display()
            )
            .into());
        }
        KeyFile::Plain => {}
    }
    passphrase::protect_process();
    let key = SecretKey::load(file).map_err(key_error)?;
    let passphrase = source(args).new_passphrase(&file.display().to_string())?;
    keyfile::replace(file, &key, &passphrase)?;
    if ctx.json() {
        return ctx.emit(&key_json(key.public_key(), file, true));
    }
    ctx.say(format_args!(
        "{}  encrypted {}",
        key.public_key(),
        file.display()
    ))
}

/// `key export FILE [--out OUT]`: the paper backup of a key. With `--json` the backup is in
/// the document only when it goes to standard output anyway; with `--out` the document
/// names the file instead, so a log of the command's output holds no secret.
pub fn export(ctx: &Context, file: &Path, out: Option<&Path>, args: PassphraseArgs) -> Result {
    let key = load(file, args)?;
    let compact = keyfile::backup_text(&key);
    let backup = keyfile::grouped(&compact);
    match out {
        Some(out) => {
            let mut text = Zeroizing::new(String::from(backup.as_str()));
            text.push('\n');
            files::write_new_secret(out, text.as_bytes())?;
            if ctx.json() {
                return ctx.emit(&serde_json::json!({
                    "public_key": key.public_key(),
                    "file": file.display().to_string(),
                    "backup_file": out.display().to_string(),
                }));
            }
            ctx.say(format_args!(
                "{}  backup written to {} (mode 0600; it is the secret itself)",
                key.public_key(),
                out.display()
            ))
        }
        None if ctx.json() => emit_backup(key.public_key(), file, &compact),
        None => ctx.say(backup.as_str()),
    }
}

/// The document of `key export --json` without `--out`: the one JSON document that holds a
/// secret.
#[derive(serde::Serialize)]
struct BackupDocument<'a> {
    public_key: PublicKey,
    file: String,
    /// Ungrouped: a script passes it on whole, and `key import` reads either form.
    backup: &'a str,
}

/// Prints the backup document as [`Context::emit`] prints any other, through a buffer that
/// is wiped afterwards instead of strings left behind in freed memory.
fn emit_backup(public_key: PublicKey, file: &Path, backup: &str) -> Result {
    use std::io::Write;
    let document = BackupDocument {
        public_key,
        file: file.display().to_string(),
        backup,
    };
    // Room for the whole document up front, so the buffer never moves (leaving a copy).
    let mut text = Zeroizing::new(Vec::with_capacity(
        256 + 2 * document.file.len() + backup.len(),
    ));
    serde_json::to_writer_pretty(&mut *text, &document)
        .map_err(|e| anyhow!("formatting JSON: {e}"))?;
    text.push(b'\n');
    std::io::stdout()
        .lock()
        .write_all(&text)
        .map_err(|e| CliError::Input(anyhow!("writing to standard output: {e}")))
}

/// `key import --out FILE [--encrypt]`: a key file from a paper backup on standard input.
pub fn import(ctx: &Context, out: &Path, encrypt: Option<PassphraseArgs>) -> Result {
    if out.exists() {
        return Err(anyhow!(
            "{}: file exists already; refusing to overwrite a key",
            out.display()
        )
        .into());
    }
    passphrase::protect_process();
    let text = passphrase::secret_from_stdin("the key backup")?;
    let key = keyfile::from_backup_text(&text)
        .map_err(|e| anyhow!("the backup on standard input: {e}"))?;
    let passphrase = match encrypt {
        Some(args) => Some(source(args).new_passphrase(&out.display().to_string())?),
        None => None,
    };
    keyfile::write_new(out, &key, passphrase.as_deref().map(String::as_str))?;
    print_key(ctx, key.public_key(), out, passphrase.is_some())
}

/// `key sign-digest DIGEST --key KEY --out SIG`: a detached signature over a bare digest.
pub fn sign_digest(
    ctx: &Context,
    digest: &Hash32,
    key_file: &Path,
    out: &Path,
    args: PassphraseArgs,
) -> Result {
    if out.exists() {
        return Err(anyhow!(
            "{}: exists already; refusing to overwrite it",
            out.display()
        )
        .into());
    }
    let key = load(key_file, args)?;
    let signature = MaintainerSignature {
        signer: key.public_key(),
        signature: key.sign(digest),
    };
    files::write_new(out, &wire::encode(&signature))?;
    if ctx.json() {
        return ctx.emit(&serde_json::json!({
            "digest": digest,
            "signer": signature.signer,
            "detached": out.display().to_string(),
        }));
    }
    ctx.say(format_args!("digest      {digest}"))?;
    ctx.say(format_args!("signed as {}", signature.signer))?;
    ctx.say(format_args!(
        "wrote       detached signature {}",
        out.display()
    ))
}

/// Writes the well-known regtest maintainer key `index` (mode 0600, never over an existing
/// file) and prints its public key.
pub fn regtest_maintainer(ctx: &Context, index: u8, out: &Path) -> Result {
    let key = commons_signaling::spec::regtest_maintainer_key(usize::from(index));
    key.save(out).map_err(key_error)?;
    print_key(ctx, key.public_key(), out, false)
}

/// Writes the well-known regtest measurer key `index` (mode 0600, never over an existing
/// file) and prints its public key.
pub fn regtest_measurer(ctx: &Context, index: u8, out: &Path) -> Result {
    let key = commons_signaling::spec::regtest_measurer_key(usize::from(index));
    key.save(out).map_err(key_error)?;
    print_key(ctx, key.public_key(), out, false)
}

/// Prints the public key of a secret key file; never the secret. An encrypted file records
/// its public key, so no passphrase is asked.
pub fn show(ctx: &Context, file: &Path) -> Result {
    let (public, encrypted) = inspect(file)?;
    print_key(ctx, public, file, encrypted)
}

/// The public key of a key file without its passphrase: what an encrypted file records (the
/// seal covers it, so it is checked when the key is opened to sign).
pub fn public_key(path: &Path) -> Result<PublicKey> {
    inspect(path).map(|(public, _)| public)
}

/// The public key of a key file, as [`public_key`] finds it, and whether the file is
/// encrypted.
fn inspect(path: &Path) -> Result<(PublicKey, bool)> {
    match keyfile::read(path)? {
        KeyFile::Encrypted(file) => Ok((file.public, true)),
        KeyFile::Plain => Ok((
            SecretKey::load(path).map_err(key_error)?.public_key(),
            false,
        )),
    }
}

/// Reads a secret key file for signing, plain or encrypted (refusing one that others can
/// read), taking the passphrase from where `args` says.
pub fn load(path: &Path, args: PassphraseArgs) -> Result<SecretKey> {
    let file = keyfile::read(path)?;
    passphrase::protect_process();
    match file {
        KeyFile::Plain => SecretKey::load(path).map_err(key_error),
        KeyFile::Encrypted(file) => {
            let passphrase = source(args).existing(&path.display().to_string())?;
            file.decrypt(path, &passphrase)
        }
    }
}
