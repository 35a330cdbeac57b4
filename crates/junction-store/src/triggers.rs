//! Event triggers: stored definitions (the matching is core's, the firing
//! happens in the transaction that stores the event — `insert_cicd_jobs`).

use jiff::Timestamp;
use junction_core::trigger::TriggerSpec;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::secrets::app_scope;
use crate::{json_of, lock_key, read, ts, write_tx, Result, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TriggerRecord {
    #[serde(flatten)]
    pub spec: TriggerSpec,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

type Row = (String, String, String, Option<i64>, String, String, bool, i64, i64);
const COLUMNS: &str = "name, application, event, company_id, filter, arguments, enabled, created_at, updated_at";

fn from_row(r: Row) -> Result<TriggerRecord> {
    let object = |text: &str| match json_of(text)? {
        Value::Object(m) => Ok(m),
        _ => Err(StoreError::Corrupt("trigger JSON".into())),
    };
    Ok(TriggerRecord {
        spec: TriggerSpec {
            name: r.0,
            application: r.1,
            event: r.2,
            company_id: r.3,
            filter: object(&r.4)?,
            arguments: object(&r.5)?,
            enabled: r.6,
        },
        created_at: ts(r.7)?,
        updated_at: ts(r.8)?,
    })
}

impl Store {
    /// Creates or replaces (by name) a trigger; the application must exist
    /// (checked under its lock). Returns whether it was created.
    pub async fn put_trigger(&self, spec: &TriggerSpec) -> Result<(TriggerRecord, bool)> {
        let now = self.now_ms();
        let created = write_tx!(self, tx => {
            lock_key!(self, tx, &app_scope(&spec.application));
            let app: Option<String> = match spec.application.strip_prefix(junction_core::trigger::FLOW_PREFIX) {
                Some(flow) => sqlx::query_scalar("SELECT name FROM flows WHERE name = $1").bind(flow),
                None => sqlx::query_scalar("SELECT name FROM applications WHERE name = $1").bind(&spec.application),
            }
            .fetch_optional(&mut *tx)
            .await?;
            if app.is_none() {
                return Err(junction_core::Invalid::one(
                    "application",
                    "exists",
                    format!("no application named {:?} is stored", spec.application),
                )
                .into());
            }
            let old: Option<String> = sqlx::query_scalar("SELECT name FROM triggers WHERE name = $1")
                .bind(&spec.name)
                .fetch_optional(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO triggers (name, application, event, company_id, filter, arguments, enabled, created_at, \
                 updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (name) DO UPDATE SET \
                 application = excluded.application, event = excluded.event, company_id = excluded.company_id, \
                 filter = excluded.filter, arguments = excluded.arguments, enabled = excluded.enabled, \
                 updated_at = excluded.updated_at",
            )
            .bind(&spec.name)
            .bind(&spec.application)
            .bind(&spec.event)
            .bind(spec.company_id)
            .bind(Value::Object(spec.filter.clone()).to_string())
            .bind(Value::Object(spec.arguments.clone()).to_string())
            .bind(spec.enabled)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            old.is_none()
        });
        let record =
            self.get_trigger(&spec.name).await?.ok_or_else(|| StoreError::Corrupt("trigger vanished".into()))?;
        Ok((record, created))
    }

    pub async fn get_trigger(&self, name: &str) -> Result<Option<TriggerRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM triggers WHERE name = $1");
        let row: Option<Row> = read!(self, db => sqlx::query_as(&sql).bind(name).fetch_optional(db).await)?;
        row.map(from_row).transpose()
    }

    pub async fn list_triggers(&self) -> Result<Vec<TriggerRecord>> {
        let sql = format!("SELECT {COLUMNS} FROM triggers ORDER BY name");
        let rows: Vec<Row> = read!(self, db => sqlx::query_as(&sql).fetch_all(db).await)?;
        rows.into_iter().map(from_row).collect()
    }

    pub async fn delete_trigger(&self, name: &str) -> Result<bool> {
        let n = write_tx!(self, tx => {
            sqlx::query("DELETE FROM triggers WHERE name = $1").bind(name).execute(&mut *tx).await?.rows_affected()
        });
        Ok(n > 0)
    }
}
