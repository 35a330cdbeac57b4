//! Steps and their immutable versions.

use junction_core::step::{Language, StepParameter, StepSummary, StepVersion};
use sha2::{Digest, Sha256};

use crate::{json_of, lock_key, read, ts, write_tx, Result, Store, StoreError};

/// A step version to store.
#[derive(Debug, Clone)]
pub struct NewStepVersion<'a> {
    pub name: &'a str,
    pub language: Language,
    pub source: &'a str,
    pub description: Option<&'a str>,
    pub parameters: &'a [StepParameter],
    pub friendly_name: Option<&'a str>,
    pub declared_version: Option<&'a str>,
}

type VersionRow = (String, i64, String, String, String, Option<String>, String, i64, Option<String>, Option<String>);
const VERSION_COLUMNS: &str = "v.name, v.version, v.language, v.source, v.sha256, v.description, v.parameters, \
                               v.created_at, v.friendly_name, v.declared_version";

fn version_from_row(row: VersionRow) -> Result<StepVersion> {
    let (name, version, language, source, sha256, description, parameters, created_at, friendly_name, declared_version) =
        row;
    Ok(StepVersion {
        language: Language::parse(&language).ok_or_else(|| StoreError::Corrupt(format!("language {language:?}")))?,
        parameters: serde_json::from_value(json_of(&parameters)?)
            .map_err(|e| StoreError::Corrupt(format!("step parameters: {e}")))?,
        name,
        version,
        sha256,
        description,
        created_at: ts(created_at)?,
        friendly_name,
        declared_version,
        data: source,
    })
}

type SummaryRow = (String, i64, String, String, Option<String>, i64, i64);

fn summary_from_row(row: SummaryRow) -> Result<StepSummary> {
    let (name, version, language, sha256, description, created_at, updated_at) = row;
    Ok(StepSummary {
        language: Language::parse(&language).ok_or_else(|| StoreError::Corrupt(format!("language {language:?}")))?,
        name,
        version,
        sha256,
        description,
        created_at: ts(created_at)?,
        updated_at: ts(updated_at)?,
    })
}

impl Store {
    /// The current version of each named step that exists.
    pub async fn step_versions(&self, names: &[&str]) -> Result<std::collections::HashMap<String, i64>> {
        if names.is_empty() {
            return Ok(Default::default());
        }
        let sql = format!(
            "SELECT name, latest_version FROM steps WHERE name IN ({})",
            crate::runs::placeholders(1, names.len())
        );
        let rows: Vec<(String, i64)> = read!(self, db => {
            let mut q = sqlx::query_as(&sql);
            for n in names {
                q = q.bind(*n);
            }
            q.fetch_all(db).await
        })?;
        Ok(rows.into_iter().collect())
    }

    /// Stores a new version of a step, or returns the latest one unchanged
    /// when the upload is identical to it (so re-installing content does
    /// not inflate version numbers).
    pub async fn put_step(&self, new: &NewStepVersion<'_>) -> Result<StepVersion> {
        let sha256 = hex::encode(Sha256::digest(new.source.as_bytes()));
        let parameters = serde_json::to_string(new.parameters).expect("parameters serialize");
        let now = self.now_ms();
        let key = format!("step:{}", new.name);
        let version = write_tx!(self, tx => {
            lock_key!(self, tx, &key);
            let latest: Option<(i64, String, String, Option<String>, String)> = sqlx::query_as(
                "SELECT v.version, v.sha256, v.language, v.description, v.parameters FROM steps s \
                 JOIN step_versions v ON v.name = s.name AND v.version = s.latest_version WHERE s.name = $1",
            )
            .bind(new.name)
            .fetch_optional(&mut *tx)
            .await?;
            match latest {
                Some((v, sha, lang, desc, params))
                    if sha == sha256 && lang == new.language.as_str() && desc.as_deref() == new.description && params == parameters =>
                {
                    v
                }
                _ => {
                    let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) + 1 FROM step_versions WHERE name = $1")
                        .bind(new.name)
                        .fetch_one(&mut *tx)
                        .await?;
                    sqlx::query(
                        "INSERT INTO step_versions (name, version, language, source, sha256, description, parameters, created_at, \
                         friendly_name, declared_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    )
                    .bind(new.name)
                    .bind(next)
                    .bind(new.language.as_str())
                    .bind(new.source)
                    .bind(&sha256)
                    .bind(new.description)
                    .bind(&parameters)
                    .bind(now)
                    .bind(new.friendly_name)
                    .bind(new.declared_version)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO steps (name, latest_version, created_at, updated_at) VALUES ($1, $2, $3, $3) \
                         ON CONFLICT (name) DO UPDATE SET latest_version = excluded.latest_version, updated_at = excluded.updated_at",
                    )
                    .bind(new.name)
                    .bind(next)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    next
                }
            }
        });
        self.get_step_version(new.name, version)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("step {} version {version} vanished", new.name)))
    }

    /// The latest version of a step that exists (not deleted).
    pub async fn get_step(&self, name: &str) -> Result<Option<StepVersion>> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM steps s JOIN step_versions v ON v.name = s.name AND v.version = s.latest_version \
             WHERE s.name = $1"
        );
        let row: Option<VersionRow> = read!(self, db => sqlx::query_as(&sql).bind(name).fetch_optional(db).await)?;
        row.map(version_from_row).transpose()
    }

    /// One version of a step, also of a deleted step (runs refer to the
    /// version they ran).
    pub async fn get_step_version(&self, name: &str, version: i64) -> Result<Option<StepVersion>> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM step_versions v WHERE v.name = $1 AND v.version = $2");
        let row: Option<VersionRow> =
            read!(self, db => sqlx::query_as(&sql).bind(name).bind(version).fetch_optional(db).await)?;
        row.map(version_from_row).transpose()
    }

    /// Every existing step at its latest version, by name.
    pub async fn list_steps(&self) -> Result<Vec<StepSummary>> {
        let rows: Vec<SummaryRow> = read!(self, db => {
            sqlx::query_as(
                "SELECT s.name, v.version, v.language, v.sha256, v.description, s.created_at, s.updated_at \
                 FROM steps s JOIN step_versions v ON v.name = s.name AND v.version = s.latest_version ORDER BY s.name",
            )
            .fetch_all(db)
            .await
        })?;
        rows.into_iter().map(summary_from_row).collect()
    }

    /// All versions of an existing step, newest first; `None` if there is
    /// no such step.
    pub async fn list_step_versions(&self, name: &str) -> Result<Option<Vec<StepSummary>>> {
        if self.get_step(name).await?.is_none() {
            return Ok(None);
        }
        let rows: Vec<SummaryRow> = read!(self, db => {
            sqlx::query_as(
                "SELECT name, version, language, sha256, description, created_at, created_at \
                 FROM step_versions WHERE name = $1 ORDER BY version DESC",
            )
            .bind(name)
            .fetch_all(db)
            .await
        })?;
        rows.into_iter().map(summary_from_row).collect::<Result<_>>().map(Some)
    }

    /// Deletes a step. Its versions stay readable by number for the runs
    /// that used them; a later upload of the name continues the numbering.
    pub async fn delete_step(&self, name: &str) -> Result<()> {
        let gone = write_tx!(self, tx => {
            sqlx::query("DELETE FROM steps WHERE name = $1").bind(name).execute(&mut *tx).await?.rows_affected()
        });
        if gone == 0 {
            return Err(StoreError::NotFound(format!("step {name:?}")));
        }
        Ok(())
    }
}
