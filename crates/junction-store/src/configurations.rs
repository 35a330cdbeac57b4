//! Configurations, including the reserved `global` one.

use jiff::Timestamp;
use junction_core::configuration::{Configuration, ConfigurationUpload};

use crate::secrets::{config_scope, sync_secrets};
use crate::{json_of, read, ts, write_tx, Result, Store, StoreError};

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
    /// Adds or replaces a configuration, sealing its encrypted entries in
    /// the same transaction.
    pub async fn put_configuration(&self, upload: &ConfigurationUpload) -> Result<ConfigurationRecord> {
        let config = &upload.configuration;
        let name = config.name();
        let document = serde_json::to_string(config.document()).expect("JSON document serializes");
        let now = self.now_ms();
        write_tx!(self, tx => {
            sync_secrets!(self, tx, &config_scope(name), &upload.secrets, |prev: &[String]| config.check_unmasking(prev));
            sqlx::query(
                "INSERT INTO configurations (name, document, created_at, updated_at) VALUES ($1, $2, $3, $3) \
                 ON CONFLICT (name) DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(&document)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        });
        self.get_configuration(name)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("configuration {name:?} vanished after being stored")))
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
        let gone = write_tx!(self, tx => {
            sqlx::query("DELETE FROM secrets WHERE scope = $1").bind(config_scope(name)).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM configurations WHERE name = $1").bind(name).execute(&mut *tx).await?.rows_affected()
        });
        if gone == 0 {
            return Err(StoreError::NotFound(format!("configuration {name:?}")));
        }
        Ok(())
    }
}
