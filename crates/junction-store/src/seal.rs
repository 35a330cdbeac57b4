//! The one place that seals secrets. XChaCha20-Poly1305 with a random
//! 192-bit nonce per value; the value's slot (scope and name) is bound as
//! associated data, so a sealed value copied into another slot does not
//! open.

use std::io::Write;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::Hmac;
use junction_core::secret::SecretString;
use rand::RngCore;
use sha2::Sha256;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("JUNCTION_SECRET_KEY must be base64 of exactly 32 bytes")]
    BadEnvKey,
    #[error("key file {path} is unreadable or not base64 of 32 bytes: {reason}")]
    BadKeyFile { path: String, reason: String },
    #[error("this store was created with another secret key; set JUNCTION_SECRET_KEY (or the data dir's secret.key) to the original key")]
    Mismatch,
    #[error("a sealed value does not open with this key")]
    Open,
}

pub struct Sealer {
    cipher: XChaCha20Poly1305,
    /// A key of its own for signing links, derived from the sealing key.
    mac_key: [u8; 32],
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    let mut mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(***)")
    }
}

/// Where the key came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    ExistingFile,
    GeneratedFile,
}

impl Sealer {
    pub fn from_key(key: [u8; 32]) -> Sealer {
        let mac_key = hmac_sha256(&key, b"junction: link signing key v1");
        Sealer { cipher: XChaCha20Poly1305::new(&key.into()), mac_key }
    }

    /// A signature of `message` (hex), for links that grant one read without
    /// a token (a run's log opened in a browser tab).
    pub fn sign(&self, message: &str) -> String {
        hex::encode(hmac_sha256(&self.mac_key, message.as_bytes()))
    }

    /// Whether `signature` is [`Sealer::sign`] of `message` (constant time).
    pub fn verify(&self, message: &str, signature: &str) -> bool {
        use hmac::Mac;
        let Ok(given) = hex::decode(signature) else { return false };
        let mut mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(&self.mac_key).expect("HMAC takes any key length");
        mac.update(message.as_bytes());
        mac.verify_slice(&given).is_ok()
    }

    /// The key from `env_key` (base64 of 32 bytes) when given; otherwise
    /// from `key_file`, which is created with a fresh random key and mode
    /// 0600 when it does not exist.
    pub fn load(env_key: Option<&str>, key_file: &Path) -> Result<(Sealer, KeySource), KeyError> {
        if let Some(k) = env_key.map(str::trim).filter(|k| !k.is_empty()) {
            let key = decode_key(k).ok_or(KeyError::BadEnvKey)?;
            return Ok((Sealer::from_key(key), KeySource::Env));
        }
        let bad = |reason: String| KeyError::BadKeyFile { path: key_file.display().to_string(), reason };
        match std::fs::read_to_string(key_file) {
            Ok(text) => {
                let key = decode_key(text.trim()).ok_or_else(|| bad("not base64 of 32 bytes".into()))?;
                Ok((Sealer::from_key(key), KeySource::ExistingFile))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                write_key_file(key_file, &B64.encode(key)).map_err(|e| bad(e.to_string()))?;
                Ok((Sealer::from_key(key), KeySource::GeneratedFile))
            }
            Err(e) => Err(bad(e.to_string())),
        }
    }

    pub fn seal(&self, scope: &str, name: &str, plaintext: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = aad(scope, name);
        let ct = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext.as_bytes(), aad: &aad })
            .expect("XChaCha20-Poly1305 encryption does not fail for in-memory sizes");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn unseal(&self, scope: &str, name: &str, sealed: &[u8]) -> Result<SecretString, KeyError> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != VERSION {
            return Err(KeyError::Open);
        }
        let (nonce, ct) = sealed[1..].split_at(NONCE_LEN);
        let aad = aad(scope, name);
        let plain = self
            .cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| KeyError::Open)?;
        String::from_utf8(plain).map(SecretString::new).map_err(|_| KeyError::Open)
    }
}

fn aad(scope: &str, name: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(scope.len() + name.len() + 1);
    a.extend_from_slice(scope.as_bytes());
    a.push(0);
    a.extend_from_slice(name.as_bytes());
    a
}

fn decode_key(text: &str) -> Option<[u8; 32]> {
    B64.decode(text).ok()?.try_into().ok()
}

fn write_key_file(path: &Path, content: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::files::create_private_dir(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(crate::files::DATA_FILE_MODE);
    }
    // `create_new`: the file is new, so it has that mode already.
    let mut f = opts.open(path)?;
    f.write_all(content.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_in_their_own_slot_and_key() {
        let s = Sealer::from_key([7; 32]);
        let sealed = s.seal("config:c", "pw", "hunter2");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(s.unseal("config:c", "pw", &sealed).unwrap().expose(), "hunter2");
        assert!(s.unseal("config:c", "other", &sealed).is_err());
        assert!(s.unseal("config:d", "pw", &sealed).is_err());
        assert!(Sealer::from_key([8; 32]).unseal("config:c", "pw", &sealed).is_err());
        assert_ne!(sealed, s.seal("config:c", "pw", "hunter2"), "fresh nonce each time");
    }

    #[test]
    fn key_file_is_generated_once_with_mode_0600_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secret.key");
        let (a, src) = Sealer::load(None, &path).unwrap();
        assert_eq!(src, KeySource::GeneratedFile);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let (b, src) = Sealer::load(None, &path).unwrap();
        assert_eq!(src, KeySource::ExistingFile);
        assert_eq!(b.unseal("s", "n", &a.seal("s", "n", "v")).unwrap().expose(), "v");
    }

    #[test]
    fn env_key_wins_and_must_be_32_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let key = B64.encode([1u8; 32]);
        let (_, src) = Sealer::load(Some(&key), &path).unwrap();
        assert_eq!(src, KeySource::Env);
        assert!(!path.exists());
        assert!(matches!(Sealer::load(Some("c2hvcnQ="), &path), Err(KeyError::BadEnvKey)));
    }
}
