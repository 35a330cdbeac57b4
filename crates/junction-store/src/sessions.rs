//! People who sign in to the web UI with a password (argon2id hashes), and
//! browser sessions. A session is a random secret kept in an HttpOnly
//! cookie; the store keeps only its SHA-256 digest, the role it grants and
//! its CSRF token. A session opened with an API token ends when the token
//! is revoked.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use junction_core::role::Role;
use junction_core::Invalid;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::{read, write_tx, Result, Store, StoreError};

/// How long a browser session lasts.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;

/// Who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The user's name, or the token's name for a session opened with a token.
    pub subject: String,
    pub role: Role,
    /// The token a session was opened with, if any.
    pub token_id: Option<String>,
    /// What every state-changing request of this session must send back
    /// (`X-CSRF-Token`).
    pub csrf: String,
}

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Checks a user name: 1-64 characters, letters, digits, `_ - . @`.
fn check_user_name(name: &str) -> Result<(), Invalid> {
    let ok =
        !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Invalid::one("name", "name_syntax", "1-64 letters, digits, '_', '-', '.' or '@'"))
    }
}

impl Store {
    /// Creates (or replaces the password and role of) a user; the password
    /// is kept as an argon2id hash only.
    pub async fn put_user(&self, name: &str, role: Role, password: &str) -> Result<()> {
        check_user_name(name)?;
        if password.chars().count() < 8 {
            return Err(Invalid::one("password", "length", "a password has at least 8 characters").into());
        }
        let password = password.to_string();
        // Hashing is deliberately slow: off the async threads.
        let hash = tokio::task::spawn_blocking(move || {
            let mut salt = [0u8; 16];
            rand::thread_rng().fill_bytes(&mut salt);
            let salt = SaltString::encode_b64(&salt).map_err(|e| StoreError::Config(e.to_string()))?;
            Argon2::default()
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| StoreError::Config(format!("hashing the password: {e}")))
        })
        .await
        .map_err(|e| StoreError::Config(e.to_string()))??;
        let now = self.now_ms();
        write_tx!(self, tx => {
            sqlx::query(
                "INSERT INTO users (name, role, password_hash, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO UPDATE SET role = excluded.role, password_hash = excluded.password_hash",
            )
            .bind(name)
            .bind(role.as_str())
            .bind(&hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    /// The role of a user whose password matches, if any. Takes about as
    /// long for an unknown user as for a wrong password.
    pub async fn check_password(&self, name: &str, password: &str) -> Result<Option<Role>> {
        let row: Option<(String, String)> = read!(self, db => {
            sqlx::query_as("SELECT role, password_hash FROM users WHERE name = $1").bind(name).fetch_optional(db).await
        })?;
        let known = row.is_some();
        let (role, hash) = row.unwrap_or_default();
        let password = password.to_string();
        let matches = tokio::task::spawn_blocking(move || {
            // An unknown user is checked against a hash of a random
            // password, so timing does not tell which names exist.
            static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let hash = if known {
                hash
            } else {
                DUMMY
                    .get_or_init(|| {
                        let salt = SaltString::encode_b64(&[7u8; 16]).expect("16 bytes encode");
                        Argon2::default()
                            .hash_password(random_secret().as_bytes(), &salt)
                            .map(|h| h.to_string())
                            .unwrap_or_default()
                    })
                    .clone()
            };
            PasswordHash::new(&hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        })
        .await
        .unwrap_or(false);
        Ok(if matches && known { Role::parse(&role) } else { None })
    }

    /// Opens a session; returns its secret (for the cookie) and its record.
    pub async fn create_session(
        &self,
        subject: &str,
        role: Role,
        token_id: Option<&str>,
    ) -> Result<(String, SessionInfo)> {
        let secret = random_secret();
        let csrf = random_secret();
        let now = self.now_ms();
        write_tx!(self, tx => {
            // Expired sessions go when new ones come.
            sqlx::query("DELETE FROM sessions WHERE expires_at < $1").bind(now).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO sessions (digest, subject, role, token_id, csrf, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(digest(&secret))
            .bind(subject)
            .bind(role.as_str())
            .bind(token_id)
            .bind(&csrf)
            .bind(now)
            .bind(now + SESSION_TTL_MS)
            .execute(&mut *tx)
            .await?;
        });
        let info = SessionInfo { subject: subject.to_string(), role, token_id: token_id.map(str::to_string), csrf };
        Ok((secret, info))
    }

    /// The live session a cookie's secret opens: not expired, and (if it
    /// was opened with a token) that token not revoked.
    pub async fn session(&self, secret: &str) -> Result<Option<SessionInfo>> {
        let row: Option<(String, String, Option<String>, String)> = read!(self, db => {
            sqlx::query_as(
                "SELECT s.subject, s.role, s.token_id, s.csrf FROM sessions s LEFT JOIN tokens t ON t.id = s.token_id \
                 WHERE s.digest = $1 AND s.expires_at > $2 AND (s.token_id IS NULL OR t.id IS NOT NULL)",
            )
            .bind(digest(secret))
            .bind(self.now_ms())
            .fetch_optional(db)
            .await
        })?;
        row.map(|(subject, role, token_id, csrf)| {
            let role = Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("session role {role:?}")))?;
            Ok(SessionInfo { subject, role, token_id, csrf })
        })
        .transpose()
    }

    /// Signs a session out.
    pub async fn delete_session(&self, secret: &str) -> Result<()> {
        write_tx!(self, tx => {
            sqlx::query("DELETE FROM sessions WHERE digest = $1").bind(digest(secret)).execute(&mut *tx).await?;
        });
        Ok(())
    }
}
