//! Stacks: hosted integrator.io extension functions. A stack has immutable
//! versions (the uploaded bytes), settings, a system token (its SHA-256
//! digest only) and a record of its calls. Encrypted env values are sealed
//! under the scope `stack:NAME`; the `env` column holds the plain entries
//! and only the names of the encrypted ones.

use junction_core::secret::{check_against_sealed, SecretString, SecretWrite, SecretWrites};
use junction_core::stack::{
    CallOutcome, Stack, StackCall, StackEnv, StackVersion, DEFAULT_MAX_CONCURRENCY, DEFAULT_TIMEOUT_SECONDS,
};
use junction_core::Invalid;
use sha2::{Digest, Sha256};

use crate::secrets::{stack_scope, sync_secrets};
use crate::tokens::{digest, generate_with_prefix};
use crate::{json_of, lock_key, read, ts, write_tx, Result, Store, StoreError};

/// Prefix of stack system tokens (API tokens have `jct_`).
const TOKEN_PREFIX: &str = "jst_";
/// Calls listed when a filter gives no limit.
pub const DEFAULT_CALLS_LIMIT: u32 = 50;
/// Most calls one listing returns.
pub const MAX_CALLS_LIMIT: u32 = 500;
/// Rows per multi-row insert of calls (14 binds each, well under both
/// backends' bind limits).
const CALLS_PER_INSERT: usize = 500;

/// A stack version to store.
#[derive(Clone)]
pub struct NewStackVersion<'a> {
    pub name: &'a str,
    pub config: &'a serde_json::Value,
    /// `js`, `zip` or `tgz`.
    pub format: &'a str,
    /// The upload's bytes.
    pub archive: &'a [u8],
    pub functions: &'a serde_json::Value,
}

impl std::fmt::Debug for NewStackVersion<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewStackVersion")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("format", &self.format)
            .field("archive", &format_args!("{} bytes", self.archive.len()))
            .field("functions", &self.functions)
            .finish()
    }
}

/// Settings to change; `None` keeps what is stored (or the default, for a
/// new stack).
#[derive(Clone, Default)]
pub struct StackSettings {
    pub timeout_seconds: Option<u32>,
    pub max_concurrency: Option<u32>,
    /// The whole list: entries not listed are removed. An encrypted entry
    /// with `value: None` keeps its sealed value.
    pub env: Option<Vec<StackEnv>>,
}

impl std::fmt::Debug for StackSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values may be secrets: names only.
        let env: Option<Vec<(&str, bool)>> =
            self.env.as_ref().map(|e| e.iter().map(|e| (e.name.as_str(), e.encrypted)).collect());
        f.debug_struct("StackSettings")
            .field("timeout_seconds", &self.timeout_seconds)
            .field("max_concurrency", &self.max_concurrency)
            .field("env", &env)
            .finish()
    }
}

/// One call of a stack function to record.
#[derive(Debug, Clone)]
pub struct NewStackCall {
    pub stack: String,
    pub version: i64,
    pub started_at_ms: i64,
    pub duration_ms: i64,
    pub function: String,
    pub kind: Option<String>,
    pub target: Option<String>,
    pub integration_id: Option<String>,
    pub flow_id: Option<String>,
    pub trace_id: Option<String>,
    pub outcome: CallOutcome,
    pub error_code: Option<String>,
    pub response_size: i64,
    pub log: String,
}

/// Which calls to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub function: Option<String>,
    pub kind: Option<String>,
    pub outcome: Option<CallOutcome>,
    /// Calls started at or after this time.
    pub since_ms: Option<i64>,
    /// The cursor: calls with a smaller id.
    pub before_id: Option<i64>,
    /// 1..=[`MAX_CALLS_LIMIT`]; 0 means [`DEFAULT_CALLS_LIMIT`].
    pub limit: u32,
}

/// Settings turned into what the statements bind.
struct Prepared {
    timeout_seconds: Option<i64>,
    max_concurrency: Option<i64>,
    env: Option<PreparedEnv>,
}

struct PreparedEnv {
    /// The stored list: plain entries with their value, encrypted ones
    /// without.
    json: String,
    writes: SecretWrites,
    /// (index, name, encrypted) of each entry, for the sealed-names check.
    entries: Vec<(usize, String, bool)>,
}

impl PreparedEnv {
    fn new(env: &[StackEnv]) -> PreparedEnv {
        let stored: Vec<StackEnv> = env
            .iter()
            .map(|e| StackEnv {
                name: e.name.clone(),
                value: if e.encrypted { None } else { e.value.clone() },
                encrypted: e.encrypted,
            })
            .collect();
        let writes = env
            .iter()
            .filter(|e| e.encrypted)
            .map(|e| {
                let write = match &e.value {
                    Some(v) => SecretWrite::Set(SecretString::new(v.clone())),
                    None => SecretWrite::Keep,
                };
                (e.name.clone(), write)
            })
            .collect();
        PreparedEnv {
            json: serde_json::to_string(&stored).expect("env serializes"),
            writes,
            entries: env.iter().enumerate().map(|(i, e)| (i, e.name.clone(), e.encrypted)).collect(),
        }
    }

    /// Refuses a document that keeps a value nothing is sealed under
    /// (`env[i].value`, `value_required`) or stores a sealed entry in clear
    /// (`env[i].encrypted`, `stays_encrypted`), as for configurations.
    fn check(&self, sealed: &[String]) -> std::result::Result<(), Invalid> {
        check_against_sealed(sealed, &self.writes, "env", self.entries.iter().map(|(i, n, e)| (*i, n.as_str(), *e)))
    }
}

impl Prepared {
    fn new(settings: &StackSettings) -> Prepared {
        Prepared {
            timeout_seconds: settings.timeout_seconds.map(i64::from),
            max_concurrency: settings.max_concurrency.map(i64::from),
            env: settings.env.as_deref().map(PreparedEnv::new),
        }
    }

    fn any(&self) -> bool {
        self.timeout_seconds.is_some() || self.max_concurrency.is_some() || self.env.is_some()
    }
}

/// Inside a write transaction holding the stack's lock, on an existing
/// stacks row: seals and prunes the env's secrets, then updates the row.
macro_rules! apply_settings {
    ($store:expr, $tx:ident, $name:expr, $prepared:expr, $now:expr) => {{
        let name: &str = $name;
        let prepared: &Prepared = $prepared;
        if let Some(env) = &prepared.env {
            let scope = stack_scope(name);
            let _ = sync_secrets!($store, $tx, &scope, &env.writes, |sealed: &[String]| env.check(sealed));
        }
        if prepared.any() {
            sqlx::query(
                "UPDATE stacks SET timeout_seconds = COALESCE($2, timeout_seconds), \
                 max_concurrency = COALESCE($3, max_concurrency), env = COALESCE($4, env), updated_at = $5 \
                 WHERE name = $1",
            )
            .bind(name)
            .bind(prepared.timeout_seconds)
            .bind(prepared.max_concurrency)
            .bind(prepared.env.as_ref().map(|e| e.json.as_str()))
            .bind($now)
            .execute(&mut *$tx)
            .await?;
        }
    }};
}

type StackRow = (String, i64, String, String, i64, i64, String, i64, i64, i64);
const STACK_SELECT: &str =
    "SELECT s.name, s.latest_version, v.config, v.sha256, s.timeout_seconds, s.max_concurrency, \
     s.env, s.token_created_at, s.created_at, s.updated_at \
     FROM stacks s JOIN stack_versions v ON v.name = s.name AND v.version = s.latest_version";

fn setting(value: i64, what: &str) -> Result<u32> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("stack {what} {value}")))
}

fn stack_from_row(row: StackRow) -> Result<Stack> {
    let (
        name,
        version,
        config,
        sha256,
        timeout_seconds,
        max_concurrency,
        env,
        token_created_at,
        created_at,
        updated_at,
    ) = row;
    let env: Vec<StackEnv> =
        serde_json::from_value(json_of(&env)?).map_err(|e| StoreError::Corrupt(format!("stack env: {e}")))?;
    Ok(Stack {
        name,
        version,
        config: json_of(&config)?,
        sha256,
        timeout_seconds: setting(timeout_seconds, "timeout_seconds")?,
        max_concurrency: setting(max_concurrency, "max_concurrency")?,
        // Never a clear value of an encrypted entry (none is stored; this
        // is a second guard).
        env: env.into_iter().map(|e| if e.encrypted { StackEnv { value: None, ..e } } else { e }).collect(),
        token_created_at: ts(token_created_at)?,
        created_at: ts(created_at)?,
        updated_at: ts(updated_at)?,
    })
}

type VersionRow = (String, i64, String, String, String, i64, String, i64);
const VERSION_SELECT: &str =
    "SELECT name, version, sha256, config, format, size, functions, created_at FROM stack_versions";

fn version_from_row(row: VersionRow) -> Result<StackVersion> {
    let (name, version, sha256, config, format, size, functions, created_at) = row;
    Ok(StackVersion {
        name,
        version,
        sha256,
        config: json_of(&config)?,
        format,
        size,
        functions: json_of(&functions)?,
        created_at: ts(created_at)?,
    })
}

type CallRow = (
    i64,
    String,
    i64,
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    i64,
    Option<String>,
);
const CALL_COLUMNS: &str = "id, stack, version, started_at, duration_ms, function, kind, target, integration_id, \
                            flow_id, trace_id, outcome, error_code, response_size";

fn call_from_row(row: CallRow) -> Result<StackCall> {
    let (
        id,
        stack,
        version,
        started_at,
        duration_ms,
        function,
        kind,
        target,
        integration_id,
        flow_id,
        trace_id,
        outcome,
        error_code,
        response_size,
        log,
    ) = row;
    Ok(StackCall {
        outcome: CallOutcome::parse(&outcome)
            .ok_or_else(|| StoreError::Corrupt(format!("call outcome {outcome:?}")))?,
        id,
        stack,
        version,
        started_at: ts(started_at)?,
        duration_ms,
        function,
        kind,
        target,
        integration_id,
        flow_id,
        trace_id,
        error_code,
        response_size,
        log,
    })
}

/// Compares two digests in time independent of where they differ.
fn same_digest(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl Store {
    /// Stores an upload. A new stack is created with a fresh system token,
    /// returned once (`Some`). For an existing stack the upload becomes the
    /// next version (token `None`), unless it is identical to the latest
    /// version (same archive digest and same config), which creates nothing
    /// and returns the latest version. `settings` are applied in the same
    /// transaction.
    pub async fn put_stack_version(
        &self,
        new: &NewStackVersion<'_>,
        settings: &StackSettings,
    ) -> Result<(StackVersion, Option<SecretString>)> {
        let sha256 = hex::encode(Sha256::digest(new.archive));
        let config = serde_json::to_string(new.config).expect("JSON serializes");
        let functions = serde_json::to_string(new.functions).expect("JSON serializes");
        let size = i64::try_from(new.archive.len()).expect("an upload fits in i64");
        let mut prepared = Prepared::new(settings);
        let key = format!("stack:{}", new.name);
        let now = self.now_ms();
        let (row, token) = write_tx!(self, tx => {
            lock_key!(self, tx, &key);
            let current: Option<(i64, String, String)> = sqlx::query_as(
                "SELECT s.latest_version, v.sha256, v.config FROM stacks s \
                 JOIN stack_versions v ON v.name = s.name AND v.version = s.latest_version WHERE s.name = $1",
            )
            .bind(new.name)
            .fetch_optional(&mut *tx)
            .await?;
            let identical = match &current {
                Some((_, sha, cfg)) => *sha == sha256 && json_of(cfg)? == *new.config,
                None => false,
            };
            let mut token = None;
            let version = match current {
                Some((v, _, _)) if identical => v,
                _ => {
                    let next: i64 =
                        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) + 1 FROM stack_versions WHERE name = $1")
                            .bind(new.name)
                            .fetch_one(&mut *tx)
                            .await?;
                    sqlx::query(
                        "INSERT INTO stack_versions (name, version, sha256, config, format, archive, size, functions, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    )
                    .bind(new.name)
                    .bind(next)
                    .bind(&sha256)
                    .bind(&config)
                    .bind(new.format)
                    .bind(new.archive)
                    .bind(size)
                    .bind(&functions)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    if current.is_some() {
                        sqlx::query("UPDATE stacks SET latest_version = $2, updated_at = $3 WHERE name = $1")
                            .bind(new.name)
                            .bind(next)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    } else {
                        let secret = generate_with_prefix(TOKEN_PREFIX);
                        sqlx::query(
                            "INSERT INTO stacks (name, latest_version, token_digest, token_created_at, timeout_seconds, \
                             max_concurrency, env, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, '[]', $4, $4)",
                        )
                        .bind(new.name)
                        .bind(next)
                        .bind(digest(&secret))
                        .bind(now)
                        .bind(i64::from(DEFAULT_TIMEOUT_SECONDS))
                        .bind(i64::from(DEFAULT_MAX_CONCURRENCY))
                        .execute(&mut *tx)
                        .await?;
                        // A new stack starts with no sealed env at all.
                        prepared.env.get_or_insert_with(|| PreparedEnv::new(&[]));
                        token = Some(SecretString::new(secret));
                    }
                    next
                }
            };
            apply_settings!(self, tx, new.name, &prepared, now);
            let row: VersionRow = sqlx::query_as(&format!("{VERSION_SELECT} WHERE name = $1 AND version = $2"))
                .bind(new.name)
                .bind(version)
                .fetch_one(&mut *tx)
                .await?;
            (row, token)
        });
        Ok((version_from_row(row)?, token))
    }

    /// A stack at its current version; `None` if there is no such stack.
    pub async fn get_stack(&self, name: &str) -> Result<Option<Stack>> {
        let sql = format!("{STACK_SELECT} WHERE s.name = $1");
        let row: Option<StackRow> = read!(self, db => sqlx::query_as(&sql).bind(name).fetch_optional(db).await)?;
        row.map(stack_from_row).transpose()
    }

    /// Every stack, by name.
    pub async fn list_stacks(&self) -> Result<Vec<Stack>> {
        let sql = format!("{STACK_SELECT} ORDER BY s.name");
        let rows: Vec<StackRow> = read!(self, db => sqlx::query_as(&sql).fetch_all(db).await)?;
        rows.into_iter().map(stack_from_row).collect()
    }

    /// The versions stored under a name, newest first (also those of a
    /// deleted stack), without their bytes.
    pub async fn stack_versions(&self, name: &str) -> Result<Vec<StackVersion>> {
        let sql = format!("{VERSION_SELECT} WHERE name = $1 ORDER BY version DESC");
        let rows: Vec<VersionRow> = read!(self, db => sqlx::query_as(&sql).bind(name).fetch_all(db).await)?;
        rows.into_iter().map(version_from_row).collect()
    }

    /// The uploaded bytes of one version, with their format.
    pub async fn stack_archive(&self, name: &str, version: i64) -> Result<Option<(String, Vec<u8>)>> {
        read!(self, db => {
            sqlx::query_as("SELECT format, archive FROM stack_versions WHERE name = $1 AND version = $2")
                .bind(name)
                .bind(version)
                .fetch_optional(db)
                .await
        })
        .map_err(StoreError::from)
    }

    /// Deletes a stack and its sealed env, so its token stops working. Its
    /// versions and calls stay; a later upload of the name continues the
    /// numbering. False when there was no such stack.
    pub async fn delete_stack(&self, name: &str) -> Result<bool> {
        let scope = stack_scope(name);
        let gone = write_tx!(self, tx => {
            lock_key!(self, tx, &scope);
            sqlx::query("DELETE FROM secrets WHERE scope = $1").bind(&scope).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM stacks WHERE name = $1").bind(name).execute(&mut *tx).await?.rows_affected()
        });
        Ok(gone > 0)
    }

    /// Replaces a stack's system token; returns the new one (shown once),
    /// `None` when there is no such stack. The old token stops working.
    pub async fn rotate_stack_token(&self, name: &str) -> Result<Option<SecretString>> {
        let secret = generate_with_prefix(TOKEN_PREFIX);
        let key = format!("stack:{name}");
        let now = self.now_ms();
        let changed = write_tx!(self, tx => {
            lock_key!(self, tx, &key);
            sqlx::query("UPDATE stacks SET token_digest = $2, token_created_at = $3, updated_at = $3 WHERE name = $1")
                .bind(name)
                .bind(digest(&secret))
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
        });
        Ok((changed > 0).then(|| SecretString::new(secret)))
    }

    /// Changes a stack's settings; `None` when there is no such stack.
    pub async fn update_stack_settings(&self, name: &str, settings: &StackSettings) -> Result<Option<Stack>> {
        let prepared = Prepared::new(settings);
        let key = format!("stack:{name}");
        let now = self.now_ms();
        let sql = format!("{STACK_SELECT} WHERE s.name = $1");
        let row = write_tx!(self, tx => {
            lock_key!(self, tx, &key);
            let exists: Option<i64> = sqlx::query_scalar("SELECT latest_version FROM stacks WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Ok(None);
            }
            apply_settings!(self, tx, name, &prepared, now);
            let row: StackRow = sqlx::query_as(&sql).bind(name).fetch_one(&mut *tx).await?;
            row
        });
        stack_from_row(row).map(Some)
    }

    /// The stack when `token` is its system token. `None` both when there
    /// is no such stack and when the token is wrong, in the same way.
    pub async fn stack_for_call(&self, name: &str, token: &str) -> Result<Option<Stack>> {
        let presented = digest(token);
        let sql = "SELECT s.token_digest, s.name, s.latest_version, v.config, v.sha256, s.timeout_seconds, \
                   s.max_concurrency, s.env, s.token_created_at, s.created_at, s.updated_at \
                   FROM stacks s JOIN stack_versions v ON v.name = s.name AND v.version = s.latest_version \
                   WHERE s.name = $1";
        type Row = (Vec<u8>, String, i64, String, String, i64, i64, String, i64, i64, i64);
        let row: Option<Row> = read!(self, db => sqlx::query_as(sql).bind(name).fetch_optional(db).await)?;
        let (stored, row) = match row {
            Some((d, a, b, c, e, f, g, h, i, j, k)) => (d, Some((a, b, c, e, f, g, h, i, j, k))),
            // Compare anyway, so a missing stack costs what a wrong token does.
            None => (vec![0u8; presented.len()], None),
        };
        let matches = same_digest(&presented, &stored);
        match row {
            Some(row) if matches => stack_from_row(row).map(Some),
            _ => Ok(None),
        }
    }

    /// The clear values of a stack's encrypted env entries, by name. For
    /// handing to the runtime; never for a response.
    pub async fn stack_env_secrets(&self, name: &str) -> Result<Vec<(String, SecretString)>> {
        self.unseal_scope(&stack_scope(name)).await
    }

    /// Records calls, all in one transaction.
    pub async fn insert_stack_calls(&self, calls: &[NewStackCall]) -> Result<()> {
        if calls.is_empty() {
            return Ok(());
        }
        const COLUMNS: usize = 14;
        write_tx!(self, tx => {
            for chunk in calls.chunks(CALLS_PER_INSERT) {
                let rows: Vec<String> = (0..chunk.len())
                    .map(|i| format!("({})", crate::runs::placeholders(1 + i * COLUMNS, COLUMNS)))
                    .collect();
                let sql = format!(
                    "INSERT INTO stack_calls (stack, version, started_at, duration_ms, function, kind, target, \
                     integration_id, flow_id, trace_id, outcome, error_code, response_size, log) VALUES {}",
                    rows.join(", ")
                );
                let mut q = sqlx::query(&sql);
                for c in chunk {
                    q = q
                        .bind(&c.stack)
                        .bind(c.version)
                        .bind(c.started_at_ms)
                        .bind(c.duration_ms)
                        .bind(&c.function)
                        .bind(&c.kind)
                        .bind(&c.target)
                        .bind(&c.integration_id)
                        .bind(&c.flow_id)
                        .bind(&c.trace_id)
                        .bind(c.outcome.as_str())
                        .bind(&c.error_code)
                        .bind(c.response_size)
                        .bind(&c.log);
                }
                q.execute(&mut *tx).await?;
            }
        });
        Ok(())
    }

    /// A stack's calls matching `filter`, newest first, without their log.
    pub async fn list_stack_calls(&self, name: &str, filter: &CallFilter) -> Result<Vec<StackCall>> {
        let limit = match filter.limit {
            0 => DEFAULT_CALLS_LIMIT,
            n => n.min(MAX_CALLS_LIMIT),
        };
        let mut sql = format!("SELECT {CALL_COLUMNS}, CAST(NULL AS TEXT) FROM stack_calls WHERE stack = $1");
        let mut n = 1;
        let mut cond = |sql: &mut String, expr: &str| {
            n += 1;
            sql.push_str(&format!(" AND {expr} ${n}"));
        };
        if filter.function.is_some() {
            cond(&mut sql, "function =");
        }
        if filter.kind.is_some() {
            cond(&mut sql, "kind =");
        }
        if filter.outcome.is_some() {
            cond(&mut sql, "outcome =");
        }
        if filter.since_ms.is_some() {
            cond(&mut sql, "started_at >=");
        }
        if filter.before_id.is_some() {
            cond(&mut sql, "id <");
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {limit}"));
        let rows: Vec<CallRow> = read!(self, db => {
            let mut q = sqlx::query_as(&sql).bind(name);
            if let Some(f) = &filter.function {
                q = q.bind(f);
            }
            if let Some(k) = &filter.kind {
                q = q.bind(k);
            }
            if let Some(o) = filter.outcome {
                q = q.bind(o.as_str());
            }
            if let Some(s) = filter.since_ms {
                q = q.bind(s);
            }
            if let Some(b) = filter.before_id {
                q = q.bind(b);
            }
            q.fetch_all(db).await
        })?;
        rows.into_iter().map(call_from_row).collect()
    }

    /// One call of a stack, with its log.
    pub async fn get_stack_call(&self, name: &str, id: i64) -> Result<Option<StackCall>> {
        let sql = format!("SELECT {CALL_COLUMNS}, log FROM stack_calls WHERE stack = $1 AND id = $2");
        let row: Option<CallRow> =
            read!(self, db => sqlx::query_as(&sql).bind(name).bind(id).fetch_optional(db).await)?;
        row.map(call_from_row).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_compare_whole() {
        assert!(same_digest(&[1, 2, 3], &[1, 2, 3]));
        assert!(!same_digest(&[1, 2, 3], &[1, 2, 4]));
        assert!(!same_digest(&[1, 2, 3], &[1, 2]));
    }

    #[test]
    fn stored_env_keeps_no_encrypted_value() {
        let env = PreparedEnv::new(&[
            StackEnv { name: "A".into(), value: Some("plain".into()), encrypted: false },
            StackEnv { name: "B".into(), value: Some("SECRET".into()), encrypted: true },
            StackEnv { name: "C".into(), value: None, encrypted: true },
        ]);
        assert_eq!(
            env.json,
            r#"[{"name":"A","value":"plain","encrypted":false},{"name":"B","encrypted":true},{"name":"C","encrypted":true}]"#
        );
        assert_eq!(env.writes.len(), 2);
        let err = env.check(&["B".into()]).unwrap_err();
        let got: Vec<_> = err.0.iter().map(|v| (v.field.as_str(), v.rule.as_str())).collect();
        assert_eq!(got, [("env[2].value", "value_required")]);
        env.check(&["C".into()]).unwrap();
    }
}
