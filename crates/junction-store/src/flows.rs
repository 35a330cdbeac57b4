//! Record flows: immutable revisions of flow documents (the connections'
//! secrets sealed under `flow:NAME`), each run's checkpoint, the delta
//! times of exports, offline connections, and the per-record errors with
//! their retry data.

use junction_core::secret::{SecretString, SecretWrite, SecretWrites};
use junction_core::validation::{Invalid, Violations};
use serde_json::Value;

use crate::secrets::sync_secrets;
use crate::{lock_key, read, write_tx, Result, Store, StoreError};

/// The latest errors kept per flow step (integrator.io keeps 20,000).
pub const MAX_ERRORS_PER_STEP: i64 = 20_000;
/// Trace keys per auto-resolve statement (well under SQLite's parameter limit).
const RESOLVE_CHUNK: usize = 1_000;

pub(crate) fn flow_scope(name: &str) -> String {
    format!("flow:{name}")
}

#[derive(Debug, Clone, PartialEq)]
pub struct FlowRecord {
    pub name: String,
    pub revision: i64,
    /// As uploaded, with every connection secret shown as `********`.
    pub document: Value,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A new revision: the document with its secrets masked, and what to do
/// with each sealed entry (`CONNECTION.KEY`).
#[derive(Debug)]
pub struct NewFlowRevision<'a> {
    pub name: &'a str,
    pub document: &'a Value,
    pub secrets: SecretWrites,
}

/// Where a run is: the export being read, its state after the last
/// committed page, and the counters so far.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FlowProgress {
    pub generator: i64,
    pub state: Option<Value>,
    pub next_page: i64,
    pub counters: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewFlowError {
    pub step: String,
    pub source: String,
    pub code: String,
    pub message: String,
    pub trace_key: String,
    pub retry_data_key: Option<String>,
    pub o_index: i64,
}

/// One page's outcome, committed in one transaction with the checkpoint.
#[derive(Debug, Clone, Default)]
pub struct PageCommit {
    pub run_id: String,
    pub flow: String,
    pub progress: FlowProgress,
    pub errors: Vec<NewFlowError>,
    /// (retryDataKey, step, record) of the records that failed.
    pub retry_data: Vec<(String, String, Value)>,
    /// (step, traceKey) of records that succeeded: their open errors at that
    /// step are resolved.
    pub succeeded: Vec<(String, String)>,
    /// Retry data keys whose retry succeeded (resolved by `retry`).
    pub retried: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FlowErrorRecord {
    pub id: i64,
    pub step: String,
    pub run_id: String,
    pub occurred_at_ms: i64,
    pub source: String,
    pub code: String,
    pub message: String,
    pub trace_key: String,
    pub retry_data_key: Option<String>,
    pub o_index: i64,
    pub resolved_at_ms: Option<i64>,
    pub resolved_by: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct FlowErrorFilter<'a> {
    pub step: Option<&'a str>,
    pub include_resolved: bool,
    /// Errors with a smaller id (the next page of a newest-first listing).
    pub before_id: Option<i64>,
    pub limit: i64,
}

type FlowRow = (String, i64, String, i64, i64);
type ErrorRow =
    (i64, String, String, i64, String, String, String, String, Option<String>, i64, Option<i64>, Option<String>);

const FLOW_SELECT: &str = "SELECT f.name, r.revision, r.document, f.created_at, f.updated_at FROM flows f \
                           JOIN flow_revisions r ON r.name = f.name AND r.revision = f.latest_revision";
const ERROR_COLUMNS: &str = "id, step, run_id, occurred_at, source, code, message, trace_key, retry_data_key, \
                             o_index, resolved_at, resolved_by";

fn flow_from_row((name, revision, document, created_at_ms, updated_at_ms): FlowRow) -> Result<FlowRecord> {
    let document = serde_json::from_str(&document).map_err(|e| StoreError::Corrupt(format!("flow {name}: {e}")))?;
    Ok(FlowRecord { name, revision, document, created_at_ms, updated_at_ms })
}

fn error_from_row(r: ErrorRow) -> FlowErrorRecord {
    FlowErrorRecord {
        id: r.0,
        step: r.1,
        run_id: r.2,
        occurred_at_ms: r.3,
        source: r.4,
        code: r.5,
        message: r.6,
        trace_key: r.7,
        retry_data_key: r.8,
        o_index: r.9,
        resolved_at_ms: r.10,
        resolved_by: r.11,
    }
}

fn progress_json(p: &FlowProgress) -> (Option<String>, String) {
    (p.state.as_ref().map(Value::to_string), p.counters.to_string())
}

impl Store {
    /// Stores a new revision of a flow (the first creates it) and seals its
    /// connections' secrets. A `Keep` entry needs a value sealed already.
    pub async fn put_flow(&self, new: &NewFlowRevision<'_>) -> Result<FlowRecord> {
        let now = self.now().as_millisecond();
        let scope = flow_scope(new.name);
        let document = new.document.to_string();
        let row: FlowRow = write_tx!(self, tx => {
            lock_key!(self, tx, &scope);
            let latest: Option<i64> = sqlx::query_scalar("SELECT latest_revision FROM flows WHERE name = $1")
                .bind(new.name)
                .fetch_optional(&mut *tx)
                .await?;
            let check = |sealed: &[String]| -> std::result::Result<(), Invalid> {
                let mut v = Violations::default();
                for (entry, write) in &new.secrets {
                    if matches!(write, SecretWrite::Keep) && !sealed.contains(entry) {
                        let (owner, key) = entry.split_once('.').unwrap_or((entry, ""));
                        let field = match owner.strip_prefix('@') {
                            Some(export) => format!("pageGenerators({export}).encrypted.{key}"),
                            None => format!("connections.{owner}.encrypted.{key}"),
                        };
                        v.push(
                            field,
                            "value_required",
                            "nothing is stored for this secret yet; give its value",
                        );
                    }
                }
                v.finish(())
            };
            let _ = sync_secrets!(self, tx, &scope, &new.secrets, check);
            // A new revision is the user's answer to an offline connection.
            sqlx::query("DELETE FROM flow_connections WHERE flow = $1").bind(new.name).execute(&mut *tx).await?;
            let revision = latest.unwrap_or(0) + 1;
            sqlx::query("INSERT INTO flow_revisions (name, revision, document, created_at) VALUES ($1, $2, $3, $4)")
                .bind(new.name)
                .bind(revision)
                .bind(&document)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            if latest.is_some() {
                sqlx::query("UPDATE flows SET latest_revision = $2, updated_at = $3 WHERE name = $1")
                    .bind(new.name)
                    .bind(revision)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            } else {
                sqlx::query("INSERT INTO flows (name, latest_revision, created_at, updated_at) VALUES ($1, $2, $3, $3)")
                    .bind(new.name)
                    .bind(revision)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query_as(&format!("{FLOW_SELECT} WHERE f.name = $1")).bind(new.name).fetch_one(&mut *tx).await?
        });
        flow_from_row(row)
    }

    /// A flow at its latest revision.
    pub async fn get_flow(&self, name: &str) -> Result<Option<FlowRecord>> {
        let sql = format!("{FLOW_SELECT} WHERE f.name = $1");
        let row: Option<FlowRow> = read!(self, db => sqlx::query_as(&sql).bind(name).fetch_optional(db).await)?;
        row.map(flow_from_row).transpose()
    }

    /// One revision of a flow (also of a deleted one, while it is stored).
    pub async fn get_flow_revision(&self, name: &str, revision: i64) -> Result<Option<FlowRecord>> {
        let sql = "SELECT name, revision, document, created_at, created_at FROM flow_revisions \
                   WHERE name = $1 AND revision = $2";
        let row: Option<FlowRow> =
            read!(self, db => sqlx::query_as(sql).bind(name).bind(revision).fetch_optional(db).await)?;
        row.map(flow_from_row).transpose()
    }

    pub async fn list_flows(&self) -> Result<Vec<FlowRecord>> {
        let sql = format!("{FLOW_SELECT} ORDER BY f.name");
        let rows: Vec<FlowRow> = read!(self, db => sqlx::query_as(&sql).fetch_all(db).await)?;
        rows.into_iter().map(flow_from_row).collect()
    }

    /// Deletes a flow with its revisions, secrets, delta times, errors and
    /// retry data. Its past runs stay in the history.
    pub async fn delete_flow(&self, name: &str) -> Result<bool> {
        let scope = flow_scope(name);
        write_tx!(self, tx => {
            lock_key!(self, tx, &scope);
            let gone = sqlx::query("DELETE FROM flows WHERE name = $1").bind(name).execute(&mut *tx).await?;
            for sql in [
                "DELETE FROM flow_revisions WHERE name = $1",
                "DELETE FROM flow_exports WHERE flow = $1",
                "DELETE FROM flow_connections WHERE flow = $1",
                "DELETE FROM flow_errors WHERE flow = $1",
                "DELETE FROM flow_retry_data WHERE flow = $1",
            ] {
                sqlx::query(sql).bind(name).execute(&mut *tx).await?;
            }
            sqlx::query("DELETE FROM secrets WHERE scope = $1").bind(&scope).execute(&mut *tx).await?;
            Ok::<bool, StoreError>(gone.rows_affected() > 0)
        })
    }

    /// The flow's sealed connection values, by `CONNECTION.KEY`.
    pub async fn flow_secrets(&self, name: &str) -> Result<Vec<(String, SecretString)>> {
        self.unseal_scope(&flow_scope(name)).await
    }

    /// The start time (ms) of each export's last successful run.
    pub async fn flow_last_exports(&self, flow: &str) -> Result<Vec<(String, i64)>> {
        let sql = "SELECT export, last_export_at FROM flow_exports WHERE flow = $1";
        read!(self, db => sqlx::query_as(sql).bind(flow).fetch_all(db).await).map_err(StoreError::from)
    }

    pub async fn set_flow_last_exports(&self, flow: &str, exports: &[(String, i64)]) -> Result<()> {
        write_tx!(self, tx => {
            for (export, at) in exports {
                sqlx::query(
                    "INSERT INTO flow_exports (flow, export, last_export_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (flow, export) DO UPDATE SET last_export_at = excluded.last_export_at",
                )
                .bind(flow)
                .bind(export)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
        });
        Ok(())
    }

    /// (connection, offline since ms, reason) of the flow's offline connections.
    pub async fn flow_offline_connections(&self, flow: &str) -> Result<Vec<(String, i64, String)>> {
        let sql = "SELECT connection, offline_at, reason FROM flow_connections WHERE flow = $1 ORDER BY connection";
        read!(self, db => sqlx::query_as(sql).bind(flow).fetch_all(db).await).map_err(StoreError::from)
    }

    /// Marks a connection offline (`Some(reason)`) or back online (`None`).
    pub async fn set_flow_connection_offline(&self, flow: &str, connection: &str, reason: Option<&str>) -> Result<()> {
        let now = self.now().as_millisecond();
        write_tx!(self, tx => {
            match reason {
                Some(reason) => sqlx::query(
                    "INSERT INTO flow_connections (flow, connection, offline_at, reason) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (flow, connection) DO UPDATE SET offline_at = excluded.offline_at, reason = excluded.reason",
                )
                .bind(flow)
                .bind(connection)
                .bind(now)
                .bind(reason)
                .execute(&mut *tx)
                .await?,
                None => sqlx::query("DELETE FROM flow_connections WHERE flow = $1 AND connection = $2")
                    .bind(flow)
                    .bind(connection)
                    .execute(&mut *tx)
                    .await?,
            };
        });
        Ok(())
    }

    /// A run's checkpoint, if it committed a page (or started) already.
    pub async fn flow_progress(&self, run_id: &str) -> Result<Option<FlowProgress>> {
        let sql = "SELECT generator, state, next_page, counters FROM flow_progress WHERE run_id = $1";
        let row: Option<(i64, Option<String>, i64, String)> =
            read!(self, db => sqlx::query_as(sql).bind(run_id).fetch_optional(db).await)?;
        let parse = |text: &str| {
            serde_json::from_str::<Value>(text).map_err(|e| StoreError::Corrupt(format!("flow progress {run_id}: {e}")))
        };
        row.map(|(generator, state, next_page, counters)| {
            Ok(FlowProgress {
                generator,
                state: state.as_deref().map(parse).transpose()?,
                next_page,
                counters: parse(&counters)?,
            })
        })
        .transpose()
    }

    /// Commits one page: its errors and retry data, the errors it resolved,
    /// and the run's checkpoint after it, all or nothing. Each step keeps
    /// its latest [`MAX_ERRORS_PER_STEP`] errors.
    pub async fn commit_flow_page(&self, page: &PageCommit) -> Result<()> {
        let now = self.now().as_millisecond();
        let (state, counters) = progress_json(&page.progress);
        write_tx!(self, tx => {
            sqlx::query(
                "INSERT INTO flow_progress (run_id, flow, generator, state, next_page, counters, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (run_id) DO UPDATE SET generator = excluded.generator, \
                 state = excluded.state, next_page = excluded.next_page, counters = excluded.counters, \
                 updated_at = excluded.updated_at",
            )
            .bind(&page.run_id)
            .bind(&page.flow)
            .bind(page.progress.generator)
            .bind(&state)
            .bind(page.progress.next_page)
            .bind(&counters)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            // Records that succeeded resolve their step's open errors: one
            // statement per step and chunk of trace keys, none at all for a
            // step with nothing open (the common case).
            let mut steps: Vec<&str> = page.succeeded.iter().map(|(s, _)| s.as_str()).collect();
            steps.sort_unstable();
            steps.dedup();
            for step in steps {
                let open: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM flow_errors WHERE flow = $1 AND step = $2 AND resolved_at IS NULL LIMIT 1",
                )
                .bind(&page.flow)
                .bind(step)
                .fetch_optional(&mut *tx)
                .await?;
                if open.is_none() {
                    continue;
                }
                let keys: Vec<&str> =
                    page.succeeded.iter().filter(|(s, _)| s == step).map(|(_, k)| k.as_str()).collect();
                for chunk in keys.chunks(RESOLVE_CHUNK) {
                    let sql = format!(
                        "UPDATE flow_errors SET resolved_at = $3, resolved_by = 'auto' WHERE flow = $1 AND step = $2 \
                         AND resolved_at IS NULL AND trace_key IN ({})",
                        crate::runs::placeholders(4, chunk.len())
                    );
                    let mut q = sqlx::query(&sql).bind(&page.flow).bind(step).bind(now);
                    for key in chunk {
                        q = q.bind(*key);
                    }
                    q.execute(&mut *tx).await?;
                }
            }
            for key in &page.retried {
                sqlx::query(
                    "UPDATE flow_errors SET resolved_at = $3, resolved_by = 'retry' \
                     WHERE flow = $1 AND retry_data_key = $2 AND resolved_at IS NULL",
                )
                .bind(&page.flow)
                .bind(key)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            for (key, step, data) in &page.retry_data {
                sqlx::query(
                    "INSERT INTO flow_retry_data (retry_data_key, flow, step, data, updated_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (retry_data_key) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
                )
                .bind(key)
                .bind(&page.flow)
                .bind(step)
                .bind(data.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            let mut steps: Vec<&str> = Vec::new();
            for e in &page.errors {
                sqlx::query(
                    "INSERT INTO flow_errors (flow, step, run_id, occurred_at, source, code, message, trace_key, \
                     retry_data_key, o_index) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&page.flow)
                .bind(&e.step)
                .bind(&page.run_id)
                .bind(now)
                .bind(&e.source)
                .bind(&e.code)
                .bind(&e.message)
                .bind(&e.trace_key)
                .bind(&e.retry_data_key)
                .bind(e.o_index)
                .execute(&mut *tx)
                .await?;
                if !steps.contains(&e.step.as_str()) {
                    steps.push(&e.step);
                }
            }
            for step in steps {
                let cut: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM flow_errors WHERE flow = $1 AND step = $2 ORDER BY id DESC LIMIT 1 OFFSET $3",
                )
                .bind(&page.flow)
                .bind(step)
                .bind(MAX_ERRORS_PER_STEP)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(cut) = cut {
                    sqlx::query("DELETE FROM flow_errors WHERE flow = $1 AND step = $2 AND id <= $3")
                        .bind(&page.flow)
                        .bind(step)
                        .bind(cut)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(
                        "DELETE FROM flow_retry_data WHERE flow = $1 AND step = $2 AND retry_data_key NOT IN \
                         (SELECT retry_data_key FROM flow_errors WHERE flow = $1 AND step = $2 \
                          AND retry_data_key IS NOT NULL)",
                    )
                    .bind(&page.flow)
                    .bind(step)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        });
        Ok(())
    }

    /// A flow's errors, newest first.
    pub async fn list_flow_errors(&self, flow: &str, filter: &FlowErrorFilter<'_>) -> Result<Vec<FlowErrorRecord>> {
        let sql = format!(
            "SELECT {ERROR_COLUMNS} FROM flow_errors WHERE flow = $1 AND ($2 IS NULL OR step = $2) \
             AND ($3 OR resolved_at IS NULL) AND ($4 IS NULL OR id < $4) ORDER BY id DESC LIMIT $5"
        );
        let rows: Vec<ErrorRow> = read!(self, db => sqlx::query_as(&sql)
            .bind(flow)
            .bind(filter.step)
            .bind(filter.include_resolved)
            .bind(filter.before_id)
            .bind(filter.limit)
            .fetch_all(db)
            .await)?;
        Ok(rows.into_iter().map(error_from_row).collect())
    }

    /// Resolves open errors: those with the given retry data keys, or (with
    /// `keys: None`) every open error of `step` (or of the whole flow).
    pub async fn resolve_flow_errors(
        &self,
        flow: &str,
        keys: Option<&[String]>,
        step: Option<&str>,
        who: &str,
    ) -> Result<u64> {
        let now = self.now().as_millisecond();
        write_tx!(self, tx => {
            let mut n = 0;
            match keys {
                Some(keys) => {
                    for key in keys {
                        n += sqlx::query(
                            "UPDATE flow_errors SET resolved_at = $3, resolved_by = $4 \
                             WHERE flow = $1 AND retry_data_key = $2 AND resolved_at IS NULL",
                        )
                        .bind(flow)
                        .bind(key)
                        .bind(now)
                        .bind(who)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    }
                }
                None => {
                    n = sqlx::query(
                        "UPDATE flow_errors SET resolved_at = $3, resolved_by = $4 \
                         WHERE flow = $1 AND ($2 IS NULL OR step = $2) AND resolved_at IS NULL",
                    )
                    .bind(flow)
                    .bind(step)
                    .bind(now)
                    .bind(who)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                }
            }
            Ok::<u64, StoreError>(n)
        })
    }

    /// (retryDataKey, step, record) of open errors: the given keys, or all
    /// of `step` when `keys` is `None`, in the order they failed.
    pub async fn flow_retry_data(
        &self,
        flow: &str,
        keys: Option<&[String]>,
        step: Option<&str>,
    ) -> Result<Vec<(String, String, Value)>> {
        let rows: Vec<(String, String, String)> = match keys {
            Some(keys) => {
                let mut out = Vec::new();
                for key in keys {
                    let sql = "SELECT retry_data_key, step, data FROM flow_retry_data WHERE flow = $1 AND retry_data_key = $2";
                    let row: Option<(String, String, String)> =
                        read!(self, db => sqlx::query_as(sql).bind(flow).bind(key).fetch_optional(db).await)?;
                    out.extend(row);
                }
                out
            }
            None => {
                let sql = "SELECT d.retry_data_key, d.step, d.data FROM flow_retry_data d WHERE d.flow = $1 \
                           AND ($2 IS NULL OR d.step = $2) AND EXISTS (SELECT 1 FROM flow_errors e \
                           WHERE e.retry_data_key = d.retry_data_key AND e.resolved_at IS NULL) \
                           ORDER BY d.updated_at, d.retry_data_key";
                read!(self, db => sqlx::query_as(sql).bind(flow).bind(step).fetch_all(db).await)?
            }
        };
        rows.into_iter()
            .map(|(key, step, data)| {
                let data =
                    serde_json::from_str(&data).map_err(|e| StoreError::Corrupt(format!("retry data {key}: {e}")))?;
                Ok((key, step, data))
            })
            .collect()
    }

    /// Replaces the record a retry will start from; false for an unknown key.
    pub async fn put_flow_retry_data(&self, flow: &str, key: &str, data: &Value) -> Result<bool> {
        let now = self.now().as_millisecond();
        let done = write_tx!(self, tx => {
            sqlx::query("UPDATE flow_retry_data SET data = $3, updated_at = $4 WHERE flow = $1 AND retry_data_key = $2")
                .bind(flow)
                .bind(key)
                .bind(data.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }
}
