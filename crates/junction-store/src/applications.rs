//! Applications and their revisions.

use jiff::Timestamp;
use junction_core::application::{Application, ApplicationUpload};
use serde_json::Value;

use crate::secrets::{app_scope, sets_any, sync_secrets};
use crate::{json_of, lock_key, read, ts, write_tx, Result, Store, StoreError};

/// A stored application: the validated document and its bookkeeping.
#[derive(Debug, Clone)]
pub struct ApplicationRecord {
    pub application: Application,
    /// Junction's own counter, bumped by each changing upload (the
    /// document's `version` is the author's and is left alone).
    pub revision: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

type Row = (String, i64, i64, i64);

fn record_from_row((document, revision, created_at, updated_at): Row) -> Result<ApplicationRecord> {
    let application = Application::from_stored(json_of(&document)?)
        .map_err(|e| StoreError::Corrupt(format!("stored application: {e}")))?;
    Ok(ApplicationRecord { application, revision, created_at: ts(created_at)?, updated_at: ts(updated_at)? })
}

/// Nulls `value` and `default_value` of the named variables in a stored
/// document; `None` when nothing changed.
fn scrub_variables(doc: &str, names: &[&str]) -> Result<Option<String>> {
    let mut value = json_of(doc)?;
    let mut changed = false;
    if let Some(vars) = value.get_mut("app_variables").and_then(|v| v.as_array_mut()) {
        for var in vars.iter_mut().filter_map(|v| v.as_object_mut()) {
            if var.get("name").and_then(|n| n.as_str()).is_some_and(|n| names.contains(&n)) {
                for key in ["value", "default_value"] {
                    if var.get(key).is_some_and(|v| !v.is_null()) {
                        var.insert(key.into(), serde_json::Value::Null);
                        changed = true;
                    }
                }
            }
        }
    }
    Ok(changed.then(|| value.to_string()))
}

/// What [`take_keys`] took: each key with its value.
type Taken = Vec<(String, Value)>;

/// Takes the named keys out of a stored JSON object (a run's params, a
/// schedule's params, a trigger's arguments); `None` when it has none of
/// them, else the object without them and what was taken.
fn take_keys(text: &str, names: &[&str]) -> Result<Option<(String, Taken)>> {
    let mut value = json_of(text)?;
    let Some(map) = value.as_object_mut() else { return Ok(None) };
    let taken: Taken = names.iter().filter_map(|n| map.remove(*n).map(|v| (n.to_string(), v))).collect();
    Ok((!taken.is_empty()).then(|| (value.to_string(), taken)))
}

/// A `LIKE` pattern (escape `\`) matching JSON text that has `name` as a
/// key, as serde_json writes it: a cheap filter before parsing.
fn key_pattern(name: &str) -> String {
    let key = format!("{}:", Value::String(name.to_string()));
    let escaped = key.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

/// Inside a write transaction holding the application's lock: stores the
/// next revision of `$name` and evaluates to its number (numbering goes on
/// across deletes, as runs refer to revisions).
macro_rules! insert_revision {
    ($tx:ident, $name:expr, $document:expr, $now:expr) => {{
        let next: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(revision), 0) + 1 FROM application_revisions WHERE name = $1")
                .bind($name)
                .fetch_one(&mut *$tx)
                .await?;
        sqlx::query("INSERT INTO application_revisions (name, revision, document, created_at) VALUES ($1, $2, $3, $4)")
            .bind($name)
            .bind(next)
            .bind($document)
            .bind($now)
            .execute(&mut *$tx)
            .await?;
        next
    }};
}

/// Inside a write transaction holding the application's lock: the clear
/// values of variables that just became encrypted (`$names`) are scrubbed
/// from everything that kept them: the application's earlier revisions, the
/// params of its runs, its schedules and its triggers. On SQLite the
/// transaction zeroes what it frees (`secure_delete`); evaluates to the
/// setting to restore afterwards and whether anything was scrubbed (see
/// [`Store::purge_freed`]).
macro_rules! scrub_clear_values {
    ($store:expr, $tx:ident, $name:expr, $names:expr, $now:expr) => {{
        let names: &[&str] = $names;
        let secure_delete: Option<i64> = if $store.is_postgres() {
            None
        } else {
            let before: i64 = sqlx::query_scalar("PRAGMA secure_delete").fetch_one(&mut *$tx).await?;
            sqlx::query("PRAGMA secure_delete = ON").execute(&mut *$tx).await?;
            Some(before)
        };
        let mut scrubbed_any = false;
        // A variable that was plain in earlier revisions is a secret
        // now: its old clear value must not stay readable there.
        let revisions: Vec<(i64, String)> =
            sqlx::query_as("SELECT revision, document FROM application_revisions WHERE name = $1")
                .bind($name)
                .fetch_all(&mut *$tx)
                .await?;
        for (revision, doc) in revisions {
            if let Some(scrubbed) = scrub_variables(&doc, names)? {
                sqlx::query("UPDATE application_revisions SET document = $1 WHERE name = $2 AND revision = $3")
                    .bind(scrubbed)
                    .bind($name)
                    .bind(revision)
                    .execute(&mut *$tx)
                    .await?;
                scrubbed_any = true;
            }
        }
        // Nor in the params of the application's runs: the value is
        // sealed with the run instead, as a masked value given at run
        // time is (the run shows it masked; a replay still has it).
        // Only rows whose JSON text names one of the variables as a key
        // (`$2`, `$3`, ...) are read and parsed.
        let patterns: Vec<String> = names.iter().map(|n| key_pattern(n)).collect();
        let likes = |column: &str| {
            (0..patterns.len())
                .map(|i| format!("{column} LIKE ${} ESCAPE '\\'", i + 2))
                .collect::<Vec<_>>()
                .join(" OR ")
        };
        let sql =
            format!("SELECT id, params, sealed_params FROM runs WHERE application = $1 AND ({})", likes("params"));
        let mut q = sqlx::query_as::<_, (String, String, Option<Vec<u8>>)>(&sql).bind($name);
        for p in &patterns {
            q = q.bind(p);
        }
        for (id, params, sealed) in q.fetch_all(&mut *$tx).await? {
            let Some((params, taken)) = take_keys(&params, names)? else { continue };
            let sealed = $store.reseal_run_params(&id, sealed.as_deref(), taken)?;
            sqlx::query("UPDATE runs SET params = $1, sealed_params = $2 WHERE id = $3")
                .bind(params)
                .bind(sealed)
                .bind(&id)
                .execute(&mut *$tx)
                .await?;
            scrubbed_any = true;
        }
        // Schedules and triggers may not name an encrypted variable:
        // the key goes, and their runs take the application's sealed
        // value. The version moves on (never backwards), so a firing
        // prepared with the old params is stale.
        let bump = "CASE WHEN updated_at >= $2 THEN updated_at + 1 ELSE $2 END";
        // (table, key column, column with the variable values), fixed names.
        for (table, key, column) in [("schedules", "id", "params"), ("triggers", "name", "arguments")] {
            let sql = format!("SELECT {key}, {column} FROM {table} WHERE application = $1 AND ({})", likes(column));
            let mut q = sqlx::query_as::<_, (String, String)>(&sql).bind($name);
            for p in &patterns {
                q = q.bind(p);
            }
            for (id, values) in q.fetch_all(&mut *$tx).await? {
                let Some((values, _)) = take_keys(&values, names)? else { continue };
                sqlx::query(&format!("UPDATE {table} SET {column} = $1, updated_at = {bump} WHERE {key} = $3"))
                    .bind(values)
                    .bind($now)
                    .bind(&id)
                    .execute(&mut *$tx)
                    .await?;
                scrubbed_any = true;
            }
        }
        secure_delete.map(|before| (before, scrubbed_any))
    }};
}

const SELECT: &str = "SELECT r.document, a.latest_revision, a.created_at, a.updated_at FROM applications a \
                      JOIN application_revisions r ON r.name = a.name AND r.revision = a.latest_revision";

impl Store {
    /// The latest revision of each named application that exists.
    pub async fn get_applications(&self, names: &[&str]) -> Result<Vec<ApplicationRecord>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("{SELECT} WHERE a.name IN ({})", crate::runs::placeholders(1, names.len()));
        let rows: Vec<Row> = read!(self, db => {
            let mut q = sqlx::query_as(&sql);
            for n in names {
                q = q.bind(*n);
            }
            q.fetch_all(db).await
        })?;
        rows.into_iter().map(record_from_row).collect()
    }

    /// Stores an application, sealing its encrypted variables in the same
    /// transaction. An upload identical to the latest revision (and setting
    /// no secret) changes nothing.
    pub async fn put_application(&self, upload: &ApplicationUpload) -> Result<ApplicationRecord> {
        let app = &upload.application;
        let name = app.name();
        let document = serde_json::to_string(app.document()).expect("JSON document serializes");
        let now = self.now_ms();
        let scope = app_scope(name);
        let (row, secure_delete) = write_tx!(self, tx => {
            lock_key!(self, tx, &scope);
            let (secrets_changed, sealed_before) =
                sync_secrets!(self, tx, &scope, &upload.secrets, |sealed: &[String]| app.check_against_sealed(sealed, &upload.secrets));
            let newly_encrypted: Vec<&str> = app
                .variables()
                .iter()
                .filter(|v| v.encrypted && !sealed_before.contains(&v.name))
                .map(|v| v.name.as_str())
                .collect();
            let secure_delete = if newly_encrypted.is_empty() {
                None
            } else {
                scrub_clear_values!(self, tx, name, &newly_encrypted, now)
            };
            let latest: Option<String> = sqlx::query_scalar(
                "SELECT r.document FROM applications a JOIN application_revisions r \
                 ON r.name = a.name AND r.revision = a.latest_revision WHERE a.name = $1",
            )
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            let unchanged = latest.as_deref() == Some(document.as_str()) && !secrets_changed && !sets_any(&upload.secrets);
            if !unchanged {
                let next = insert_revision!(tx, name, &document, now);
                sqlx::query(
                    "INSERT INTO applications (name, latest_revision, created_at, updated_at) VALUES ($1, $2, $3, $3) \
                     ON CONFLICT (name) DO UPDATE SET latest_revision = excluded.latest_revision, updated_at = excluded.updated_at",
                )
                .bind(name)
                .bind(next)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            // Read back inside the transaction: after commit, a concurrent
            // writer's revision could be the one read.
            let sql = format!("{SELECT} WHERE a.name = $1");
            let row: Row = sqlx::query_as(&sql).bind(name).fetch_one(&mut *tx).await?;
            (row, secure_delete)
        });
        if let Some((before, scrubbed)) = secure_delete {
            self.purge_freed(before, scrubbed).await;
        }
        record_from_row(row)
    }

    /// SQLite, after a transaction that ran with `secure_delete` on:
    /// restores that setting and, when clear values were overwritten,
    /// checkpoints the WAL into the database file and truncates it, so the
    /// older page images that still hold the values are gone too. Best
    /// effort (the scrub has committed): a checkpoint that readers keep from
    /// finishing is logged.
    async fn purge_freed(&self, secure_delete: i64, scrubbed: bool) {
        let crate::Backend::Sqlite { write, .. } = &self.inner.backend else { return };
        let restore = if secure_delete == 2 { "FAST".to_string() } else { secure_delete.to_string() };
        let purged = async {
            let mut conn = write.acquire().await?;
            sqlx::query(&format!("PRAGMA secure_delete = {restore}")).execute(&mut *conn).await?;
            if !scrubbed {
                return Ok(true);
            }
            let (busy, _, _): (i64, i64, i64) =
                sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&mut *conn).await?;
            Ok::<_, sqlx::Error>(busy == 0)
        }
        .await;
        match purged {
            Ok(true) => {}
            Ok(false) => tracing::warn!("the WAL checkpoint after scrubbing clear values could not complete (busy)"),
            Err(e) => tracing::warn!(error = %e, "the WAL checkpoint after scrubbing clear values failed"),
        }
    }

    /// Stores a revision that is not a live application (the one-step
    /// application of a lone step run); returns its revision number.
    pub async fn put_adhoc_revision(&self, app: &Application) -> Result<i64> {
        let name = app.name();
        let document = serde_json::to_string(app.document()).expect("JSON document serializes");
        let now = self.now_ms();
        let key = app_scope(name);
        let revision = write_tx!(self, tx => {
            lock_key!(self, tx, &key);
            insert_revision!(tx, name, &document, now)
        });
        Ok(revision)
    }

    pub async fn get_application(&self, name: &str) -> Result<Option<ApplicationRecord>> {
        let sql = format!("{SELECT} WHERE a.name = $1");
        let row: Option<Row> = read!(self, db => sqlx::query_as(&sql).bind(name).fetch_optional(db).await)?;
        row.map(record_from_row).transpose()
    }

    /// One revision of an application, also of a deleted one.
    pub async fn get_application_revision(&self, name: &str, revision: i64) -> Result<Option<Application>> {
        let doc: Option<String> = read!(self, db => {
            sqlx::query_scalar("SELECT document FROM application_revisions WHERE name = $1 AND revision = $2")
                .bind(name)
                .bind(revision)
                .fetch_optional(db)
                .await
        })?;
        doc.map(|d| {
            Application::from_stored(json_of(&d)?).map_err(|e| StoreError::Corrupt(format!("stored application: {e}")))
        })
        .transpose()
    }

    pub async fn list_applications(&self) -> Result<Vec<ApplicationRecord>> {
        let sql = format!("{SELECT} ORDER BY a.name");
        let rows: Vec<Row> = read!(self, db => sqlx::query_as(&sql).fetch_all(db).await)?;
        rows.into_iter().map(record_from_row).collect()
    }

    /// Deletes an application and its sealed variables. Its revisions stay
    /// for the runs that refer to them.
    pub async fn delete_application(&self, name: &str) -> Result<()> {
        let scope = app_scope(name);
        let gone = write_tx!(self, tx => {
            lock_key!(self, tx, &scope);
            sqlx::query("DELETE FROM secrets WHERE scope = $1").bind(&scope).execute(&mut *tx).await?;
            // A deleted job never fires again.
            sqlx::query("DELETE FROM schedules WHERE application = $1").bind(name).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM triggers WHERE application = $1").bind(name).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM applications WHERE name = $1").bind(name).execute(&mut *tx).await?.rows_affected()
        });
        if gone == 0 {
            return Err(StoreError::NotFound(format!("application {name:?}")));
        }
        Ok(())
    }
}
