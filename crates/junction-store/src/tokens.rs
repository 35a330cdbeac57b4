//! API tokens. A token is 256 random bits shown once; the store keeps only
//! its SHA-256 digest.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use junction_core::role::Role;
use junction_core::secret::SecretString;
use junction_core::token::{check_token_name, TokenInfo};
use junction_core::Invalid;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{lock_key, read, ts, write_tx, Result, Store, StoreError};

/// Prefix of generated tokens, so a leaked one is recognisable in a scan.
const PREFIX: &str = "jct_";
/// Shortest token accepted from `JUNCTION_ADMIN_TOKEN`.
pub const MIN_GIVEN_TOKEN_LEN: usize = 16;
/// `last_used_at` is refreshed at most this often, so authenticating is
/// not a write per request.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;

pub(crate) fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn generate() -> String {
    generate_with_prefix(PREFIX)
}

/// 256 random bits, base64url without padding, after `prefix`.
pub(crate) fn generate_with_prefix(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// What the first start of a store did about the admin token.
#[derive(Debug)]
pub enum Bootstrap {
    /// The store already had its tokens.
    AlreadyDone,
    /// The admin token is the one given (`JUNCTION_ADMIN_TOKEN`).
    Given,
    /// A token was generated; it must be shown once, now.
    Generated(SecretString),
}

/// How long an authenticated token is trusted without asking the database.
pub const TOKEN_CACHE_TTL_MS: i64 = 5_000;
const TOKEN_CACHE_ENTRIES: usize = 10_000;

/// Digest → (token, when it was read).
pub(crate) type TokenCache = std::sync::Mutex<std::collections::HashMap<Vec<u8>, (TokenInfo, i64)>>;

const TOKEN_COLUMNS: &str = "id, name, role, company_id, created_at, last_used_at";

fn token_from_row<R: Row>(row: &R) -> Result<TokenInfo>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database>,
    for<'a> Option<String>: sqlx::Decode<'a, R::Database>,
{
    let role: String = row.try_get("role")?;
    // Stored as text (the column predates numeric company ids).
    let company: Option<String> = row.try_get("company_id")?;
    let company_id = company
        .map(|c| c.parse::<i64>().map_err(|_| StoreError::Corrupt(format!("token company id {c:?}"))))
        .transpose()?;
    Ok(TokenInfo {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("unknown role {role:?}")))?,
        company_id,
        created_at: ts(row.try_get("created_at")?)?,
        last_used_at: row.try_get::<Option<i64>, _>("last_used_at")?.map(ts).transpose()?,
    })
}

impl Store {
    /// Creates a token; returns it with its secret, which is not kept.
    pub async fn create_token(&self, name: &str, role: Role) -> Result<(TokenInfo, SecretString)> {
        self.create_company_token(name, role, None).await
    }

    /// A token; with `company`, a personal access token of that company
    /// (which must exist).
    pub async fn create_company_token(
        &self,
        name: &str,
        role: Role,
        company: Option<i64>,
    ) -> Result<(TokenInfo, SecretString)> {
        check_token_name(name)?;
        junction_core::token::check_company_role(role, company)?;
        let secret = generate();
        let info = self.insert_token(name, role, company, &secret).await?;
        Ok((info, SecretString::new(secret)))
    }

    async fn insert_token(&self, name: &str, role: Role, company: Option<i64>, secret: &str) -> Result<TokenInfo> {
        let info = TokenInfo {
            id: uuid::Uuid::new_v4().to_string(),
            name: name.to_string(),
            role,
            company_id: company,
            created_at: self.now(),
            last_used_at: None,
        };
        write_tx!(self, tx => {
            if let Some(c) = company {
                let found: Option<i64> = sqlx::query_scalar("SELECT id FROM companies WHERE id = $1")
                    .bind(c)
                    .fetch_optional(&mut *tx)
                    .await?;
                if found.is_none() {
                    return Err(Invalid::one("company_id", "exists", format!("no company {c}")).into());
                }
            }
            sqlx::query(
                "INSERT INTO tokens (id, name, role, digest, company_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&info.id)
            .bind(&info.name)
            .bind(role.as_str())
            .bind(digest(secret))
            .bind(company.map(|c| c.to_string()))
            .bind(info.created_at.as_millisecond())
            .execute(&mut *tx)
            .await?;
        });
        Ok(info)
    }

    /// On the first start of an empty store, creates the admin token:
    /// `given` when set (`JUNCTION_ADMIN_TOKEN`), else a generated one.
    /// Runs once per store even when several servers start together.
    pub async fn bootstrap_admin(&self, given: Option<&str>) -> Result<Bootstrap> {
        let given = given.map(str::trim).filter(|g| !g.is_empty());
        if let Some(g) = given {
            if g.len() < MIN_GIVEN_TOKEN_LEN || g.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(Invalid::one(
                    "JUNCTION_ADMIN_TOKEN",
                    "token_syntax",
                    format!("must be at least {MIN_GIVEN_TOKEN_LEN} characters without spaces"),
                )
                .into());
            }
        }
        let secret = given.map(str::to_string).unwrap_or_else(generate);
        let now = self.now_ms();
        let created = write_tx!(self, tx => {
            let first = sqlx::query(
                "INSERT INTO settings (key, value) VALUES ('bootstrapped', $1) ON CONFLICT (key) DO NOTHING",
            )
            .bind(now.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if first {
                sqlx::query("INSERT INTO tokens (id, name, role, digest, created_at) VALUES ($1, 'admin', 'admin', $2, $3)")
                    .bind(uuid::Uuid::new_v4().to_string())
                    .bind(digest(&secret))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            first
        });
        Ok(match (created, given) {
            (false, _) => Bootstrap::AlreadyDone,
            (true, Some(_)) => Bootstrap::Given,
            (true, None) => Bootstrap::Generated(SecretString::new(secret)),
        })
    }

    /// The token a presented secret belongs to, if any. A token found is
    /// remembered for [`TOKEN_CACHE_TTL_MS`] (by the store's clock), so
    /// a busy agent does not cost a database read per request; a revoke
    /// in this process applies at once, one in another process within that
    /// time.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<TokenInfo>> {
        let d = digest(secret);
        let now = self.now_ms();
        if let Some((info, at)) = self.inner.tokens.lock().unwrap_or_else(|e| e.into_inner()).get(&d) {
            if now - at < TOKEN_CACHE_TTL_MS && now >= *at {
                return Ok(Some(info.clone()));
            }
        }
        let generation = self.inner.token_generation.load(std::sync::atomic::Ordering::SeqCst);
        let found = self.authenticate_uncached(&d).await?;
        let mut cache = self.inner.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let revoked_meanwhile = self.inner.token_generation.load(std::sync::atomic::Ordering::SeqCst) != generation;
        match &found {
            Some(_) if revoked_meanwhile => {}
            Some(info) => {
                if cache.len() >= TOKEN_CACHE_ENTRIES {
                    cache.clear();
                }
                cache.insert(d, (info.clone(), now));
            }
            None => {
                cache.remove(&d);
            }
        }
        Ok(found)
    }

    async fn authenticate_uncached(&self, d: &[u8]) -> Result<Option<TokenInfo>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE digest = $1");
        let info = read!(self, db => {
            match sqlx::query(&sql).bind(d).fetch_optional(db).await? {
                Some(row) => Some(token_from_row(&row)?),
                None => None,
            }
        });
        if let Some(info) = &info {
            let now = self.now_ms();
            let stale = info.last_used_at.is_none_or(|t| now - t.as_millisecond() >= LAST_USED_GRANULARITY_MS);
            if stale {
                write_tx!(self, tx => {
                    sqlx::query("UPDATE tokens SET last_used_at = $1 WHERE id = $2")
                        .bind(now)
                        .bind(&info.id)
                        .execute(&mut *tx)
                        .await?;
                });
            }
        }
        Ok(info)
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id");
        read!(self, db => {
            let rows = sqlx::query(&sql).fetch_all(db).await?;
            rows.iter().map(token_from_row).collect()
        })
    }

    /// Revokes a token. The last admin token cannot be revoked: that would
    /// lock everyone out of token management.
    pub async fn revoke_token(&self, id: &str) -> Result<()> {
        write_tx!(self, tx => {
            // Two admins revoking each other at once must not both succeed.
            lock_key!(self, tx, "tokens");
            let role: Option<String> = sqlx::query_scalar("SELECT role FROM tokens WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(role) = role else {
                return Err(StoreError::NotFound(format!("token {id:?}")));
            };
            if role == Role::Admin.as_str() {
                let admins: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tokens WHERE role = 'admin'")
                    .fetch_one(&mut *tx)
                    .await?;
                if admins <= 1 {
                    return Err(StoreError::Conflict("the last admin token cannot be revoked; create another admin token first".into()));
                }
            }
            sqlx::query("DELETE FROM tokens WHERE id = $1").bind(id).execute(&mut *tx).await?;
        });
        let mut cache = self.inner.tokens.lock().unwrap_or_else(|e| e.into_inner());
        self.inner.token_generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        cache.retain(|_, (info, _)| info.id != id);
        Ok(())
    }
}
