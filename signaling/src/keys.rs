//! Node and maintainer keys: secp256k1, x-only public keys, BIP340 Schnorr signatures over
//! tagged hashes.
//!
//! A secret key file holds the 32-byte secret as 64 hex characters and a newline. It is
//! created with mode 0600 and never overwritten; a key file that other users can read is
//! refused, because a key that has been readable may have been copied.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use k256::schnorr::{SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::types::{Hash32, deserialize_fixed, serialize_fixed};

/// Problems with keys and key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file exists already; keys are never overwritten.
    #[error("{0}: file exists already; refusing to overwrite a key")]
    Exists(PathBuf),
    /// Group or other users may read the file.
    #[error(
        "{path}: key file is readable by other users (mode {mode:o}); run `chmod 600 {path}` if \
         you trust that nobody copied it, or generate a new key"
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The content is not a key.
    #[error("{path}: not a secret key file: {reason}")]
    Format {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The bytes are not a valid secp256k1 key.
    #[error("invalid key: {0}")]
    Invalid(String),
}

/// A 32-byte x-only secp256k1 public key (BIP340), the identity of a node or maintainer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Checks a BIP340 signature over a 32-byte digest. An invalid key never verifies.
    pub fn verify(&self, digest: &Hash32, signature: &Signature) -> bool {
        let Ok(key) = VerifyingKey::from_bytes(&self.0) else {
            return false;
        };
        let Ok(sig) = k256::schnorr::Signature::try_from(&signature.0[..]) else {
            return false;
        };
        key.verify_raw(&digest.0, &sig).is_ok()
    }

    /// Whether these bytes are the x coordinate of a point on the curve.
    pub fn is_valid(&self) -> bool {
        VerifyingKey::from_bytes(&self.0).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out)
            .map_err(|_| KeyError::Invalid(format!("expected 64 hex characters, got {s:?}")))?;
        let key = PublicKey(out);
        if !key.is_valid() {
            return Err(KeyError::Invalid(format!(
                "{s} is not a point on secp256k1"
            )));
        }
        Ok(key)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_fixed(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_fixed(d).map(PublicKey)
    }
}

/// A 64-byte BIP340 Schnorr signature.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signature(pub [u8; 64]);

impl Default for Signature {
    fn default() -> Self {
        Signature([0; 64])
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_fixed(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_fixed(d).map(Signature)
    }
}

/// A secp256k1 secret key. Its `Debug` output never shows the secret.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public_key())
    }
}

impl SecretKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> Self {
        SecretKey(SigningKey::random(&mut rand_core::OsRng))
    }

    /// A key from its 32 secret bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        SigningKey::from_bytes(bytes)
            .map(SecretKey)
            .map_err(|_| KeyError::Invalid("secret is zero or not below the curve order".into()))
    }

    /// A key derived from a seed by hashing; for well-known regtest keys and test vectors
    /// only, since anyone who knows the seed knows the key.
    pub fn from_seed(seed: &str) -> Self {
        let mut counter = 0u32;
        loop {
            let digest = Sha256::new()
                .chain_update(seed.as_bytes())
                .chain_update(counter.to_be_bytes())
                .finalize();
            if let Ok(key) = Self::from_bytes(&digest.into()) {
                return key;
            }
            counter += 1;
        }
    }

    /// The 32 secret bytes, for handing to the libp2p identity. Keep them out of logs.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.0.to_bytes().into()
    }

    /// The x-only public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key().to_bytes().into())
    }

    /// Signs a 32-byte digest with fresh auxiliary randomness, as BIP340 recommends.
    pub fn sign(&self, digest: &Hash32) -> Signature {
        let mut aux = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut aux);
        self.sign_with_aux(digest, &aux)
    }

    /// Signs with the given auxiliary randomness: reproducible, for test vectors.
    pub fn sign_with_aux(&self, digest: &Hash32, aux: &[u8; 32]) -> Signature {
        let sig = self
            .0
            .sign_raw(&digest.0, aux)
            .expect("BIP340 signing of a 32-byte digest with a valid key cannot fail");
        Signature(sig.to_bytes())
    }

    /// Writes the key to a new file with mode 0600. An existing file is never overwritten.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists(path.to_path_buf())
            } else {
                KeyError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        let secret = zeroize::Zeroizing::new(self.secret_bytes());
        let mut text = zeroize::Zeroizing::new(hex::encode(&secret[..]));
        text.push('\n');
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| KeyError::Io {
                path: path.to_path_buf(),
                source,
            })
    }

    /// Reads a key file, refusing one that other users can read.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Permissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let text = zeroize::Zeroizing::new(fs::read_to_string(path).map_err(io)?);
        let format = |reason: &str| KeyError::Format {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), &mut bytes[..])
            .map_err(|_| format("expected 64 hex characters"))?;
        Self::from_bytes(&bytes).map_err(|_| format("not a valid secp256k1 secret"))
    }
}

/// `SHA256(SHA256(tag) || SHA256(tag) || data...)`, the BIP340 tagged hash.
pub fn tagged_hash(tag: &str, parts: &[&[u8]]) -> Hash32 {
    let tag_hash = Sha256::digest(tag.as_bytes());
    let mut hasher = Sha256::new();
    hasher.update(tag_hash);
    hasher.update(tag_hash);
    for part in parts {
        hasher.update(part);
    }
    Hash32(hasher.finalize().into())
}
