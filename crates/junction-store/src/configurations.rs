//! Configurations, including the reserved `global` one.

use jiff::Timestamp;
use junction_core::configuration::{Configuration, ConfigurationUpload};

use crate::secrets::{config_scope, sync_secrets};
use junction_core::Invalid;

use crate::{json_of, lock_key, read, ts, write_tx, Result, Store, StoreError};

#[derive(Debug, Clone)]
pub struct ConfigurationRecord {
    pub configuration: Configuration,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

type Row = (String, i64, i64);

fn record_from_row((document, created_at, updated_at): Row) -> Result<ConfigurationRecord> {
    let configuration = Configuration::from_stored(json_of(&document)?)
        .map_err(|e| StoreError::Corrupt(format!("stored configuration: {e}")))?;
    Ok(ConfigurationRecord { configuration, created_at: ts(created_at)?, updated_at: ts(updated_at)? })
}

impl Store {
    /// Which of the named configurations exist.
    pub async fn configuration_names(&self, names: &[&str]) -> Result<std::collections::HashSet<String>> {
        if names.is_empty() {
            return Ok(Default::default());
        }
        let sql =
            format!("SELECT name FROM configurations WHERE name IN ({})", crate::runs::placeholders(1, names.len()));
        let rows: Vec<String> = read!(self, db => {
            let mut q = sqlx::query_scalar(&sql);
            for n in names {
                q = q.bind(*n);
            }
            q.fetch_all(db).await
        })?;
        Ok(rows.into_iter().collect())
    }

    /// Adds or replaces a configuration, sealing its encrypted entries in
    /// the same transaction.
    pub async fn put_configuration(&self, upload: &ConfigurationUpload) -> Result<ConfigurationRecord> {
        self.update_configuration(upload.configuration.name(), |_| Ok(upload.clone())).await
    }

    /// Read-modify-write of one configuration, atomic against other
    /// writers of the same name: `change` sees the stored configuration
    /// (if any) and returns the upload to store. The upload must keep the
    /// name.
    pub async fn update_configuration<F>(&self, name: &str, change: F) -> Result<ConfigurationRecord>
    where
        F: FnOnce(Option<&Configuration>) -> std::result::Result<ConfigurationUpload, Invalid>,
    {
        let scope = config_scope(name);
        let now = self.now_ms();
        let row = write_tx!(self, tx => {
            lock_key!(self, tx, &scope);
            let current: Option<String> = sqlx::query_scalar("SELECT document FROM configurations WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            let current = current
                .map(|d| Configuration::from_stored(json_of(&d)?).map_err(|e| StoreError::Corrupt(format!("stored configuration: {e}"))))
                .transpose()?;
            let upload = change(current.as_ref())?;
            let config = &upload.configuration;
            if config.name() != name {
                return Err(StoreError::Corrupt(format!("an update of {name:?} renamed it to {:?}", config.name())));
            }
            let document = serde_json::to_string(config.document()).expect("JSON document serializes");
            sync_secrets!(self, tx, &scope, &upload.secrets, |sealed: &[String]| config.check_against_sealed(sealed, &upload.secrets));
            sqlx::query(
                "INSERT INTO configurations (name, document, created_at, updated_at) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (name) DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(&document)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            // Read back inside the transaction (see put_application).
            let row: Row = sqlx::query_as("SELECT document, created_at, updated_at FROM configurations WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
            row
        });
        record_from_row(row)
    }

    pub async fn get_configuration(&self, name: &str) -> Result<Option<ConfigurationRecord>> {
        let row: Option<Row> = read!(self, db => {
            sqlx::query_as("SELECT document, created_at, updated_at FROM configurations WHERE name = $1")
                .bind(name)
                .fetch_optional(db)
                .await
        })?;
        row.map(record_from_row).transpose()
    }

    pub async fn list_configurations(&self) -> Result<Vec<ConfigurationRecord>> {
        let rows: Vec<Row> = read!(self, db => {
            sqlx::query_as("SELECT document, created_at, updated_at FROM configurations ORDER BY name").fetch_all(db).await
        })?;
        rows.into_iter().map(record_from_row).collect()
    }

    pub async fn delete_configuration(&self, name: &str) -> Result<()> {
        let scope = config_scope(name);
        let gone = write_tx!(self, tx => {
            lock_key!(self, tx, &scope);
            sqlx::query("DELETE FROM secrets WHERE scope = $1").bind(&scope).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM configurations WHERE name = $1").bind(name).execute(&mut *tx).await?.rows_affected()
        });
        if gone == 0 {
            return Err(StoreError::NotFound(format!("configuration {name:?}")));
        }
        Ok(())
    }
}
