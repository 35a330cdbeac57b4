//! Schema migrations, embedded in the binary, one file per backend per
//! version. Each applies in its own transaction; on PostgreSQL an advisory
//! lock makes concurrent starts of several servers apply each one once.
//!
//! A database that is newer than this binary is accepted (a worker may run
//! an older binary than the API): migrations only add, and queries name
//! their columns.

use crate::{write_tx, Result, Store};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

/// A migration by its file name: both dialects' files are embedded.
macro_rules! migration {
    ($version:literal, $name:literal, $file:literal) => {
        Migration {
            version: $version,
            name: $name,
            sqlite: include_str!(concat!("../migrations/sqlite/", $file, ".sql")),
            postgres: include_str!(concat!("../migrations/postgres/", $file, ".sql")),
        }
    };
}

const MIGRATIONS: &[Migration] = &[
    migration!(1, "initial", "0001_initial"),
    migration!(2, "step_introspection", "0002_step_introspection"),
    migration!(3, "queue", "0003_queue"),
    migration!(4, "scheduler", "0004_scheduler"),
    migration!(5, "events", "0005_events"),
    migration!(6, "xds", "0006_xds"),
    migration!(7, "triggers", "0007_triggers"),
    migration!(8, "inbound", "0008_inbound"),
    migration!(9, "sessions", "0009_sessions"),
    migration!(10, "sealed_output", "0010_sealed_output"),
    migration!(11, "stacks", "0011_stacks"),
    migration!(12, "flows", "0012_flows"),
];

/// Arbitrary constant naming Junction's migration lock.
const PG_LOCK_KEY: i64 = 0x6a75_6e63_7469_6f6e;

pub(crate) async fn run(store: &Store) -> Result<()> {
    let postgres = store.backend_name() == "postgres";
    for m in MIGRATIONS {
        let applied = write_tx!(store, tx => {
            if postgres {
                sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(PG_LOCK_KEY).execute(&mut *tx).await?;
            }
            sqlx::raw_sql(
                "CREATE TABLE IF NOT EXISTS junction_migrations \
                 (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            )
            .execute(&mut *tx)
            .await?;
            let done: Option<i64> = sqlx::query_scalar("SELECT version FROM junction_migrations WHERE version = $1")
                .bind(m.version)
                .fetch_optional(&mut *tx)
                .await?;
            if done.is_none() {
                sqlx::raw_sql(if postgres { m.postgres } else { m.sqlite }).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO junction_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                    .bind(m.version)
                    .bind(m.name)
                    .bind(store.now_ms())
                    .execute(&mut *tx)
                    .await?;
            }
            done.is_none()
        });
        if applied {
            tracing::info!(version = m.version, name = m.name, "applied migration");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two backends' files must describe the same tables and columns.
    #[test]
    fn backends_declare_the_same_columns() {
        fn columns(sql: &str) -> Vec<String> {
            sql.lines()
                .map(str::trim)
                .filter(|l| !l.starts_with("--") && !l.is_empty())
                .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
                .collect()
        }
        for m in MIGRATIONS {
            assert_eq!(columns(m.sqlite), columns(m.postgres), "migration {}", m.version);
        }
    }
}
