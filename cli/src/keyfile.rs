//! Secret key files, plain or encrypted with a passphrase, and their paper backups.
//!
//! A plain key file is what `commons-signaling` reads and writes: 64 hex characters and a
//! newline. Node keys stay plain so that `commonsd` starts unattended. A maintainer's key
//! is encrypted: scrypt turns the passphrase into a key, and XChaCha20-Poly1305 (RustCrypto,
//! audited) seals the 32 secret bytes. The file is text, four lines:
//!
//! ```text
//! commons-signal encrypted secret key v1
//! public <x-only public key, 64 hex>
//! scrypt <log2 N> <r> <p> <salt, 64 hex>
//! xchacha20poly1305 <nonce, 48 hex> <ciphertext and tag, 96 hex>
//! ```
//!
//! The first three lines, newlines included, are the associated data, so none of them can be
//! changed without decryption failing; the public key is there in the clear so that the key
//! can be named (`key show`, a wrong `--network`) before anyone types a passphrase.
//! `docs/KEYS.md` gives the format in full.
//!
//! A paper backup is the 32 secret bytes in bech32m (BIP 350) under the human-readable part
//! `commonssecret`: its checksum catches any mistyping of up to four characters, it reads the
//! same in upper or lower case, and it avoids the characters people confuse (1, b, i, o).

use std::fs;
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use bech32::{Bech32m, Hrp};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use commons_signaling::{PublicKey, SecretKey};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::error::{CliError, Result, key_error};

/// The first line of an encrypted key file.
pub const MAGIC: &str = "commons-signal encrypted secret key v1";

/// scrypt's cost for new files: N = 2^17 with r = 8 takes 128 MiB and about 0.4 s of CPU on
/// the development machine (docs/KEYS.md has the measurement), so every guess at a
/// passphrase costs an attacker as much.
pub const SCRYPT_LOG_N: u8 = 17;
/// scrypt's block size.
pub const SCRYPT_R: u32 = 8;
/// scrypt's parallelism.
pub const SCRYPT_P: u32 = 1;
/// The largest cost a file may ask for (1 GiB with r = 8): a file can make us spend memory,
/// and a damaged or hostile one must not make us spend it all.
pub const MAX_SCRYPT_LOG_N: u8 = 20;
/// The smallest cost a file may ask for: below it a passphrase is cheap to guess.
pub const MIN_SCRYPT_LOG_N: u8 = 14;

/// The human-readable part of a paper backup.
pub const BACKUP_HRP: &str = "commonssecret";

/// No key file of either kind is larger.
const MAX_KEY_FILE: usize = 1024;

/// What a key file holds.
pub enum KeyFile {
    /// 64 hex characters: usable as it is.
    Plain,
    /// Sealed with a passphrase; the public key is readable without it.
    Encrypted(Encrypted),
}

/// The fields of an encrypted key file.
pub struct Encrypted {
    /// The key's public half, as the file records it.
    pub public: PublicKey,
    log_n: u8,
    r: u32,
    p: u32,
    salt: [u8; 32],
    nonce: [u8; 24],
    sealed: Vec<u8>,
    /// The first three lines, the associated data of the seal.
    header: String,
}

impl std::fmt::Debug for Encrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "Encrypted(public {}, scrypt 2^{})",
            self.public, self.log_n
        )
    }
}

/// Reads a key file of either kind, refusing one that other users can read (a key that has
/// been readable may have been copied, and an encrypted one may be guessed at offline).
pub fn read(path: &Path) -> Result<KeyFile> {
    if path.is_dir() {
        return Err(anyhow!("{}: is a directory, not a key file", path.display()).into());
    }
    check_mode(path)?;
    let bytes = Zeroizing::new(crate::files::read_bounded(path, MAX_KEY_FILE, "key file")?);
    if bytes.starts_with(MAGIC.as_bytes()) {
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| anyhow!("{}: damaged encrypted key file (not text)", path.display()))?;
        return parse(text)
            .map(KeyFile::Encrypted)
            .map_err(|e| anyhow!("{}: damaged encrypted key file: {e}", path.display()).into());
    }
    Ok(KeyFile::Plain)
}

#[cfg(unix)]
fn check_mode(path: &Path) -> Result {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(|e| crate::files::io_error(path, &e))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(key_error(commons_signaling::KeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        }));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_path: &Path) -> Result {
    Ok(())
}

fn parse(text: &str) -> anyhow::Result<Encrypted> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    if lines.len() != 4 || !text.ends_with('\n') {
        bail!("expected four lines");
    }
    let header = lines[..3].concat();
    let words = |line: &str, first: &str, count: usize| -> anyhow::Result<Vec<String>> {
        let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        if words.first().map(String::as_str) != Some(first) || words.len() != count + 1 {
            bail!("expected a line `{first}` with {count} fields");
        }
        Ok(words[1..].to_vec())
    };
    if lines[0].trim_end() != MAGIC {
        bail!("unknown first line");
    }
    let public: PublicKey = words(lines[1], "public", 1)?[0]
        .parse()
        .map_err(|_| anyhow!("the public key is not a secp256k1 key"))?;
    let kdf = words(lines[2], "scrypt", 4)?;
    let log_n: u8 = kdf[0].parse().context("scrypt log2 N")?;
    let r: u32 = kdf[1].parse().context("scrypt r")?;
    let p: u32 = kdf[2].parse().context("scrypt p")?;
    if !(MIN_SCRYPT_LOG_N..=MAX_SCRYPT_LOG_N).contains(&log_n) || r != SCRYPT_R || p != SCRYPT_P {
        bail!(
            "scrypt parameters {log_n} {r} {p} are outside what is accepted (log2 N \
             {MIN_SCRYPT_LOG_N} to {MAX_SCRYPT_LOG_N}, r {SCRYPT_R}, p {SCRYPT_P})"
        );
    }
    let mut salt = [0u8; 32];
    hex::decode_to_slice(&kdf[3], &mut salt).context("the salt is not 64 hex characters")?;
    let seal = words(lines[3], "xchacha20poly1305", 2)?;
    let mut nonce = [0u8; 24];
    hex::decode_to_slice(&seal[0], &mut nonce).context("the nonce is not 48 hex characters")?;
    let sealed = hex::decode(&seal[1]).context("the ciphertext is not hex")?;
    if sealed.len() != 48 {
        bail!("the ciphertext is {} bytes, not 48", sealed.len());
    }
    Ok(Encrypted {
        public,
        log_n,
        r,
        p,
        salt,
        nonce,
        sealed,
        header,
    })
}

/// The 32-byte key scrypt derives from a passphrase.
fn derive(passphrase: &str, salt: &[u8; 32], log_n: u8, r: u32, p: u32) -> Zeroizing<[u8; 32]> {
    let params = scrypt::Params::new(log_n, r, p, 32)
        .expect("the scrypt parameters are checked when a file is read");
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(passphrase.as_bytes(), salt, &params, &mut key[..])
        .expect("a 32-byte scrypt output is always valid");
    key
}

impl Encrypted {
    /// Opens the seal with a passphrase.
    pub fn decrypt(&self, path: &Path, passphrase: &str) -> Result<SecretKey> {
        let key = derive(passphrase, &self.salt, self.log_n, self.r, self.p);
        let cipher = XChaCha20Poly1305::new((&*key).into());
        let secret = cipher
            .decrypt(
                XNonce::from_slice(&self.nonce),
                Payload {
                    msg: &self.sealed,
                    aad: self.header.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| {
                CliError::Input(anyhow!(
                    "{}: wrong passphrase, or the file was changed (it does not decrypt)",
                    path.display()
                ))
            })?;
        let bytes: &[u8; 32] = secret
            .as_slice()
            .try_into()
            .map_err(|_| anyhow!("{}: damaged encrypted key file", path.display()))?;
        let secret = SecretKey::from_bytes(bytes).map_err(key_error)?;
        if secret.public_key() != self.public {
            return Err(anyhow!(
                "{}: damaged encrypted key file: the secret is not that of the public key it lists",
                path.display()
            )
            .into());
        }
        Ok(secret)
    }
}

/// The text of an encrypted key file holding `key` under `passphrase`, with a fresh salt and
/// nonce.
pub fn encrypt(key: &SecretKey, passphrase: &str) -> String {
    let mut salt = [0u8; 32];
    let mut nonce = [0u8; 24];
    OsRng.fill_bytes(&mut salt);
    OsRng.fill_bytes(&mut nonce);
    encrypt_with(key, passphrase, SCRYPT_LOG_N, &salt, &nonce)
}

fn encrypt_with(
    key: &SecretKey,
    passphrase: &str,
    log_n: u8,
    salt: &[u8; 32],
    nonce: &[u8; 24],
) -> String {
    let header = format!(
        "{MAGIC}\npublic {}\nscrypt {log_n} {SCRYPT_R} {SCRYPT_P} {}\n",
        key.public_key(),
        hex::encode(salt)
    );
    let derived = derive(passphrase, salt, log_n, SCRYPT_R, SCRYPT_P);
    let cipher = XChaCha20Poly1305::new((&*derived).into());
    let secret = Zeroizing::new(key.secret_bytes());
    let sealed = cipher
        .encrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: &secret[..],
                aad: header.as_bytes(),
            },
        )
        .expect("sealing 32 bytes cannot fail");
    format!(
        "{header}xchacha20poly1305 {} {}\n",
        hex::encode(nonce),
        hex::encode(sealed)
    )
}

/// The paper backup of a key: bech32m of its 32 secret bytes.
pub fn backup_text(key: &SecretKey) -> Zeroizing<String> {
    let hrp = Hrp::parse(BACKUP_HRP).expect("the backup prefix is a valid bech32 prefix");
    let secret = Zeroizing::new(key.secret_bytes());
    Zeroizing::new(
        bech32::encode::<Bech32m>(hrp, &secret[..]).expect("32 bytes always fit bech32m"),
    )
}

/// Reads a paper backup, ignoring white space (so it may be written in groups).
pub fn from_backup_text(text: &str) -> anyhow::Result<SecretKey> {
    let compact: Zeroizing<String> =
        Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect());
    if compact.is_empty() {
        bail!("no backup was given");
    }
    let checked = bech32::primitives::decode::CheckedHrpstring::new::<Bech32m>(&compact)
        .map_err(|e| anyhow!("not a valid backup ({e}); check it for typing mistakes"))?;
    if !checked.hrp().as_str().eq_ignore_ascii_case(BACKUP_HRP) {
        bail!(
            "this is a bech32m string for {:?}, not a {BACKUP_HRP} key backup",
            checked.hrp().as_str()
        );
    }
    let bytes: Zeroizing<Vec<u8>> = Zeroizing::new(checked.byte_iter().collect());
    let bytes: &[u8; 32] = bytes[..]
        .try_into()
        .map_err(|_| anyhow!("the backup holds {} bytes, not 32", bytes.len()))?;
    SecretKey::from_bytes(bytes).map_err(|e| anyhow!("{e}"))
}

/// A paper backup: its prefix, then groups of four characters, eight groups a line.
pub fn grouped(backup: &str) -> Zeroizing<String> {
    let (prefix, rest) = backup.split_at(BACKUP_HRP.len() + 1);
    let mut out = Zeroizing::new(String::from(prefix));
    for (i, chunk) in rest.as_bytes().chunks(4).enumerate() {
        out.push(if i % 8 == 7 { '\n' } else { ' ' });
        out.push_str(std::str::from_utf8(chunk).expect("bech32 is ASCII"));
    }
    out
}

/// Writes a new key file (mode 0600, never over an existing file, never half written).
pub fn write_new(path: &Path, key: &SecretKey, passphrase: Option<&str>) -> Result {
    let text = Zeroizing::new(match passphrase {
        Some(passphrase) => encrypt(key, passphrase),
        None => format!("{}\n", hex::encode(Zeroizing::new(key.secret_bytes()))),
    });
    crate::files::write_new_secret(path, text.as_bytes())?;
    Ok(())
}

/// Replaces a key file's content (it keeps mode 0600).
pub fn replace(path: &Path, key: &SecretKey, passphrase: &str) -> Result {
    let text = Zeroizing::new(encrypt(key, passphrase));
    crate::files::replace(path, text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey::from_seed("keyfile test")
    }

    /// The cheapest accepted cost keeps these tests fast.
    fn sealed(passphrase: &str) -> String {
        encrypt_with(&key(), passphrase, MIN_SCRYPT_LOG_N, &[7; 32], &[9; 24])
    }

    #[test]
    fn an_encrypted_key_opens_with_its_passphrase_only() {
        let text = sealed("correct horse");
        let file = parse(&text).unwrap();
        assert_eq!(file.public, key().public_key());
        let path = Path::new("k.key");
        let opened = file.decrypt(path, "correct horse").unwrap();
        assert_eq!(opened.public_key(), key().public_key());
        let err = file.decrypt(path, "correct hors").unwrap_err().to_string();
        assert!(err.contains("wrong passphrase"), "{err}");
        assert!(!text.contains(&hex::encode(key().secret_bytes())));
    }

    #[test]
    fn every_changed_line_is_caught() {
        let text = sealed("pass");
        let lines: Vec<&str> = text.lines().collect();
        let other_public = SecretKey::from_seed("other").public_key().to_hex();
        let mut changed = vec![
            // Another public key: the associated data no longer matches.
            text.replace(&key().public_key().to_hex(), &other_public),
            // Another salt.
            text.replace(&hex::encode([7u8; 32]), &hex::encode([8u8; 32])),
        ];
        // One flipped bit of the ciphertext.
        let seal_line = lines[3];
        let last = seal_line.len() - 1;
        let flipped = if seal_line.ends_with('0') { '1' } else { '0' };
        changed.push(text.replace(seal_line, &format!("{}{flipped}", &seal_line[..last])));
        for text in changed {
            let file = parse(&text).unwrap();
            let err = file
                .decrypt(Path::new("k"), "pass")
                .unwrap_err()
                .to_string();
            assert!(err.contains("does not decrypt"), "{err}");
        }
    }

    #[test]
    fn absurd_costs_and_damaged_files_are_refused_before_any_work() {
        let text = sealed("pass");
        let costly = text.replace("scrypt 14 8 1", "scrypt 30 8 1");
        assert!(parse(&costly).unwrap_err().to_string().contains("outside"));
        let cheap = text.replace("scrypt 14 8 1", "scrypt 4 8 1");
        assert!(parse(&cheap).is_err());
        assert!(parse(&text[..text.len() - 10]).is_err());
        assert!(parse(&format!("{text}extra\n")).is_err());
    }

    #[test]
    fn the_file_format_is_exactly_as_documented() {
        let text = sealed("pass");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], MAGIC);
        assert_eq!(lines[1], format!("public {}", key().public_key()));
        assert_eq!(
            lines[2],
            format!("scrypt 14 8 1 {}", hex::encode([7u8; 32]))
        );
        let seal: Vec<&str> = lines[3].split(' ').collect();
        assert_eq!(seal[0], "xchacha20poly1305");
        assert_eq!(seal[1], hex::encode([9u8; 24]));
        assert_eq!(seal[2].len(), 96);
    }

    #[test]
    fn backups_round_trip_in_groups_and_catch_typing_mistakes() {
        let backup = backup_text(&key());
        assert!(backup.starts_with("commonssecret1"));
        let restored = from_backup_text(&grouped(&backup)).unwrap();
        assert_eq!(restored.public_key(), key().public_key());
        let upper = from_backup_text(&backup.to_uppercase()).unwrap();
        assert_eq!(upper.public_key(), key().public_key());

        // One mistyped character.
        let mut chars: Vec<char> = backup.chars().collect();
        let at = chars.len() - 10;
        chars[at] = if chars[at] == 'q' { 'p' } else { 'q' };
        let typo: String = chars.into_iter().collect();
        let err = from_backup_text(&typo).unwrap_err().to_string();
        assert!(err.contains("typing mistakes"), "{err}");

        let other = bech32::encode::<Bech32m>(Hrp::parse("other").unwrap(), &[1u8; 32]).unwrap();
        assert!(from_backup_text(&other).is_err());
    }
}
