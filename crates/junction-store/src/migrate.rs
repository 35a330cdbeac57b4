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

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sqlite: include_str!("../migrations/sqlite/0001_initial.sql"),
        postgres: include_str!("../migrations/postgres/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "step_introspection",
        sqlite: include_str!("../migrations/sqlite/0002_step_introspection.sql"),
        postgres: include_str!("../migrations/postgres/0002_step_introspection.sql"),
    },
    Migration {
        version: 3,
        name: "queue",
        sqlite: include_str!("../migrations/sqlite/0003_queue.sql"),
        postgres: include_str!("../migrations/postgres/0003_queue.sql"),
    },
    Migration {
        version: 4,
        name: "scheduler",
        sqlite: include_str!("../migrations/sqlite/0004_scheduler.sql"),
        postgres: include_str!("../migrations/postgres/0004_scheduler.sql"),
    },
    Migration {
        version: 5,
        name: "events",
        sqlite: include_str!("../migrations/sqlite/0005_events.sql"),
        postgres: include_str!("../migrations/postgres/0005_events.sql"),
    },
    Migration {
        version: 6,
        name: "xds",
        sqlite: include_str!("../migrations/sqlite/0006_xds.sql"),
        postgres: include_str!("../migrations/postgres/0006_xds.sql"),
    },
    Migration {
        version: 7,
        name: "triggers",
        sqlite: include_str!("../migrations/sqlite/0007_triggers.sql"),
        postgres: include_str!("../migrations/postgres/0007_triggers.sql"),
    },
    Migration {
        version: 8,
        name: "inbound",
        sqlite: include_str!("../migrations/sqlite/0008_inbound.sql"),
        postgres: include_str!("../migrations/postgres/0008_inbound.sql"),
    },
    Migration {
        version: 9,
        name: "sessions",
        sqlite: include_str!("../migrations/sqlite/0009_sessions.sql"),
        postgres: include_str!("../migrations/postgres/0009_sessions.sql"),
    },
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
