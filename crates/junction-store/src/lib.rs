//! Junction's persistence. One [`Store`] API, speaking `junction-core`
//! types, over two backends: SQLite (embedded default) and PostgreSQL
//! (scale-out).
//!
//! Architecture invariants:
//! - Every SQL statement of Junction lives in this crate.
//! - Clear text of a secret is sealed here ([`seal`]) before it reaches a
//!   table, and only this crate can unseal it.
//! - Both backends run the same statements wherever the dialects agree: a
//!   method body is written once and expanded for each backend by the
//!   `read!`/`write_tx!` macros, so the two cannot drift apart. Where the
//!   dialects differ (migrations; later, claiming work) the code matches on
//!   the backend explicitly.

mod applications;
mod configurations;
mod events;
mod files;
mod flows;
mod migrate;
mod runs;
mod schedules;
pub mod seal;
mod secrets;
mod sessions;
mod stacks;
mod steps;
mod tokens;
mod triggers;
mod xds;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use junction_core::{Clock, Invalid};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

pub use applications::ApplicationRecord;
pub use configurations::ConfigurationRecord;
pub use events::{CicdJobFilter, CicdJobRecord, CompanyRecord, NewCicdJob, ServiceRecord, CUSTOM_CD};
pub use files::{secure_data_dir, DATA_DIR_MODE, DATA_FILE_MODE};
pub use flows::{
    FlowErrorFilter, FlowErrorRecord, FlowProgress, FlowRecord, NewFlowError, NewFlowRevision, PageCommit,
    MAX_ERRORS_PER_STEP,
};
pub use runs::{Finish, FinishItem, LogLine, NewRun, NewTask, RunRecord, TaskRecord};
pub use schedules::{Fired, Firing, Leadership, PutSchedule, ScheduleRecord};
pub use seal::Sealer;
pub use sessions::{SessionInfo, SESSION_TTL_MS};
pub use stacks::{CallFilter, NewStackCall, NewStackVersion, StackSettings, DEFAULT_CALLS_LIMIT, MAX_CALLS_LIMIT};
pub use steps::NewStepVersion;
pub use tokens::{Bootstrap, MIN_GIVEN_TOKEN_LEN};
pub use triggers::TriggerRecord;
pub use xds::{
    NewXdsActivity, NewXdsRejection, XdsAccepted, XdsActivityFilter, XdsActivityRecord, XdsRefusal, XdsRegistration,
    XdsRejectionFilter, XdsRejectionRecord, XdsSchemaRecord, XdsSchemaSummary, XdsSourceRecord, XdsStreamEntry,
    XdsStreamFilter, XdsSubEvent, XdsViolation, MAX_REJECTED_BODY,
};

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite database file.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl Location {
    /// Reads `--database-url`: `postgres://...`/`postgresql://...`, or
    /// `sqlite://PATH` / `sqlite:PATH`.
    pub fn from_url(url: &str) -> Result<Location, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Location::Postgres(url.to_string()))
        } else if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() {
                return Err(StoreError::Config("a sqlite URL needs a file path".into()));
            }
            Ok(Location::Sqlite(PathBuf::from(path)))
        } else {
            Err(StoreError::Config("the database URL must start with postgres://, postgresql:// or sqlite://".into()))
        }
    }

    /// The embedded default: `DATA_DIR/junction.db`.
    pub fn in_data_dir(data_dir: &Path) -> Location {
        Location::Sqlite(data_dir.join("junction.db"))
    }

    /// Describes the location without credentials (user info and query
    /// parameters, which may hold a password), for logs and errors.
    pub fn redacted(&self) -> String {
        match self {
            Location::Sqlite(p) => format!("sqlite:{}", p.display()),
            Location::Postgres(url) => {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
                let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                let rest = rest.split('?').next().unwrap_or_default();
                format!("postgres://{rest}")
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A cap on runs going at once was reached.
    #[error("{0}")]
    Busy(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("secret key: {0}")]
    Key(#[from] seal::KeyError),
    #[error("store configuration: {0}")]
    Config(String),
}

impl StoreError {
    /// Whether the error is about the data written (a constraint, a value
    /// the database refuses) rather than the database being unreachable or
    /// a commit whose outcome is unknown. Only then may a failed batch be
    /// retried item by item: a batch that may have committed must not be
    /// written again.
    pub fn is_data_error(&self) -> bool {
        match self {
            StoreError::Invalid(_) | StoreError::Conflict(_) | StoreError::Corrupt(_) => true,
            StoreError::Database(sqlx::Error::Database(db)) => {
                !matches!(db.kind(), sqlx::error::ErrorKind::Other)
                    || db.code().is_some_and(|c| c.starts_with("22") || c.starts_with("23"))
            }
            _ => false,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // Writers of one name are serialized, so a duplicate key means a
        // concurrent writer won a race the caller may retry; not a fault.
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict("a concurrent change to the same item won; retry".into())
            }
            _ => StoreError::Database(e),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug)]
enum Backend {
    /// Readers share a pool; all writes go through one connection, so
    /// SQLite's single writer is never contended inside one process and
    /// `BEGIN IMMEDIATE` transactions never deadlock on upgrade.
    Sqlite {
        read: SqlitePool,
        write: SqlitePool,
    },
    Postgres {
        pool: PgPool,
    },
}

/// The store. Cheap to clone; every clone shares the pools.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    backend: Backend,
    sealer: Sealer,
    clock: Arc<dyn Clock>,
    /// Recently authenticated tokens (see `Store::authenticate`).
    tokens: tokens::TokenCache,
    /// Bumped by every revoke, so a lookup that read a token before the
    /// revoke cannot put it back into the cache after it.
    token_generation: std::sync::atomic::AtomicU64,
    /// Committed service users by (company, name): they never change.
    service_users: std::sync::Mutex<std::collections::HashMap<(i64, String), i64>>,
}

/// Runs `$body` with `$db` bound to a pool fit for reading, once per
/// backend.
macro_rules! read {
    ($store:expr, $db:ident => $body:expr) => {
        match &$store.inner.backend {
            $crate::Backend::Sqlite { read: $db, .. } => $body,
            $crate::Backend::Postgres { pool: $db } => $body,
        }
    };
}

/// Runs `$body` inside one write transaction bound to `$tx`, once per
/// backend, committing when the body yields a value; an early `return` or
/// `?` rolls back.
macro_rules! write_tx {
    ($store:expr, $tx:ident => $body:expr) => {
        match &$store.inner.backend {
            $crate::Backend::Sqlite { write, .. } => {
                #[allow(unused_mut)]
                let mut $tx = write.begin_with("BEGIN IMMEDIATE").await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
            $crate::Backend::Postgres { pool } => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    };
}
/// Inside `write_tx!`: serializes writers of `$key` (e.g. `step:NAME`).
/// SQLite's `BEGIN IMMEDIATE` already admits one writer at a time; on
/// PostgreSQL (read committed) a transaction-scoped advisory lock makes a
/// read-then-write sequence (next version number, sealed names) atomic
/// against other servers.
macro_rules! lock_key {
    ($store:expr, $tx:ident, $key:expr) => {
        if $store.is_postgres() {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))").bind($key).execute(&mut *$tx).await?;
        }
    };
}
pub(crate) use {lock_key, read, write_tx};

fn private_file_error(db: &Path, e: std::io::Error) -> StoreError {
    StoreError::Config(format!("cannot create {} (or make it private to its owner): {e}", db.display()))
}

impl Store {
    /// Opens (creating if needed) the store at `location` and brings its
    /// schema up to date.
    pub async fn open(location: &Location, sealer: Sealer, clock: Arc<dyn Clock>) -> Result<Store> {
        let backend = match location {
            Location::Sqlite(path) => {
                files::prepare_sqlite_file(path).map_err(|e| private_file_error(path, e))?;
                let opts = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true);
                let write = SqlitePoolOptions::new().max_connections(1).connect_with(opts.clone()).await?;
                let read = SqlitePoolOptions::new().max_connections(4).connect_with(opts.read_only(true)).await?;
                Backend::Sqlite { read, write }
            }
            Location::Postgres(url) => {
                let opts = PgConnectOptions::from_str(url)?;
                let pool = PgPoolOptions::new()
                    .max_connections(10)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(opts)
                    .await?;
                Backend::Postgres { pool }
            }
        };
        let store = Store {
            inner: Arc::new(Inner {
                backend,
                sealer,
                clock,
                tokens: Default::default(),
                token_generation: Default::default(),
                service_users: Default::default(),
            }),
        };
        migrate::run(&store).await?;
        store.check_key().await?;
        if let Location::Sqlite(path) = location {
            // The -wal and -shm files exist by now.
            files::secure_sqlite_files(path).map_err(|e| private_file_error(path, e))?;
        }
        Ok(store)
    }

    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self.inner.backend, Backend::Postgres { .. })
    }

    /// Which backend this is, for logs and health output.
    pub fn backend_name(&self) -> &'static str {
        match self.inner.backend {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres { .. } => "postgres",
        }
    }

    /// Waits for in-flight statements and closes every connection.
    pub async fn close(&self) {
        match &self.inner.backend {
            Backend::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Backend::Postgres { pool } => pool.close().await,
        }
    }

    /// A cheap round trip to the database, for health checks.
    pub async fn ping(&self) -> Result<()> {
        read!(self, db => sqlx::query("SELECT 1").execute(db).await.map(|_| ()))?;
        Ok(())
    }

    /// Signs `message` with a key derived from the sealing key (see
    /// [`Sealer::sign`]).
    pub fn sign(&self, message: &str) -> String {
        self.inner.sealer.sign(message)
    }

    pub fn verify_signature(&self, message: &str, signature: &str) -> bool {
        self.inner.sealer.verify(message, signature)
    }

    /// The store's clock: the one clock every layer above asks.
    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    fn now_ms(&self) -> i64 {
        self.now().as_millisecond()
    }

    /// A stored value is written by the key it was sealed with; a store
    /// opened with another key would fail on every secret later, so it is
    /// refused at once with a clear reason.
    async fn check_key(&self) -> Result<()> {
        const CHECK: &str = "junction key check";
        let read_check = || async {
            read!(self, db => {
                sqlx::query_scalar::<_, Vec<u8>>("SELECT sealed FROM secrets WHERE scope = 'system' AND name = 'key_check'")
                    .fetch_optional(db)
                    .await
            })
        };
        let stored = match read_check().await? {
            Some(sealed) => sealed,
            None => {
                let sealed = self.inner.sealer.seal("system", "key_check", CHECK);
                let now = self.now_ms();
                write_tx!(self, tx => {
                    sqlx::query(
                        "INSERT INTO secrets (scope, name, sealed, updated_at) VALUES ('system', 'key_check', $1, $2) \
                         ON CONFLICT (scope, name) DO NOTHING",
                    )
                    .bind(sealed)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                });
                // Read back: another server starting at the same moment
                // may have written its own check value first.
                read_check().await?.ok_or_else(|| StoreError::Corrupt("key check value vanished".into()))?
            }
        };
        match self.inner.sealer.unseal("system", "key_check", &stored) {
            Ok(plain) if plain.expose() == CHECK => Ok(()),
            _ => Err(seal::KeyError::Mismatch.into()),
        }
    }
}

pub(crate) fn ts(ms: i64) -> Result<Timestamp> {
    Timestamp::from_millisecond(ms).map_err(|e| StoreError::Corrupt(format!("timestamp {ms}: {e}")))
}

pub(crate) fn json_of(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stored JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A commit answered 201 survives a power loss: every SQLite
    /// connection, the writer's and the readers', syncs in full.
    #[tokio::test]
    async fn sqlite_commits_are_synced_in_full() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::in_data_dir(dir.path());
        let store =
            Store::open(&location, Sealer::from_key([1; 32]), Arc::new(junction_core::SystemClock)).await.unwrap();
        let Backend::Sqlite { read, write } = &store.inner.backend else { unreachable!("a SQLite location") };
        for pool in [write, read] {
            let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(pool).await.unwrap();
            assert_eq!(synchronous, 2, "FULL (0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA)");
            let journal: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(pool).await.unwrap();
            assert_eq!(journal, "wal");
        }
        store.close().await;
    }
}
