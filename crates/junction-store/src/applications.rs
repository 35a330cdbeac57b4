//! Applications and their revisions.

use jiff::Timestamp;
use junction_core::application::{Application, ApplicationUpload};

use crate::secrets::{app_scope, sets_any, sync_secrets};
use crate::{json_of, read, ts, write_tx, Result, Store, StoreError};

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

const SELECT: &str = "SELECT r.document, a.latest_revision, a.created_at, a.updated_at FROM applications a \
                      JOIN application_revisions r ON r.name = a.name AND r.revision = a.latest_revision";

impl Store {
    /// Stores an application, sealing its encrypted variables in the same
    /// transaction. An upload identical to the latest revision (and setting
    /// no secret) changes nothing.
    pub async fn put_application(&self, upload: &ApplicationUpload) -> Result<ApplicationRecord> {
        let app = &upload.application;
        let name = app.name();
        let document = serde_json::to_string(app.document()).expect("JSON document serializes");
        let now = self.now_ms();
        write_tx!(self, tx => {
            let secrets_changed = sync_secrets!(self, tx, &app_scope(name), &upload.secrets, |prev: &[String]| app.check_unmasking(prev));
            let latest: Option<String> = sqlx::query_scalar(
                "SELECT r.document FROM applications a JOIN application_revisions r \
                 ON r.name = a.name AND r.revision = a.latest_revision WHERE a.name = $1",
            )
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?;
            let unchanged = latest.as_deref() == Some(document.as_str()) && !secrets_changed && !sets_any(&upload.secrets);
            if !unchanged {
                let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(revision), 0) + 1 FROM application_revisions WHERE name = $1")
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO application_revisions (name, revision, document, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(name)
                    .bind(next)
                    .bind(&document)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
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
        });
        self.get_application(name)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("application {name:?} vanished after being stored")))
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
        let gone = write_tx!(self, tx => {
            sqlx::query("DELETE FROM secrets WHERE scope = $1").bind(app_scope(name)).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM applications WHERE name = $1").bind(name).execute(&mut *tx).await?.rows_affected()
        });
        if gone == 0 {
            return Err(StoreError::NotFound(format!("application {name:?}")));
        }
        Ok(())
    }
}
