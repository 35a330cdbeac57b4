//! Extensible Data Sources (spec 003): sources, the schema registry,
//! activities aggregated from activity messages, the activity stream, and
//! the refused messages.
//!
//! Activity messages arrive in batches (the engine group-commits). One
//! transaction stores a batch; per message it (1) associates the source
//! with the message's schema if it has none yet, (2) creates the activity
//! of `(source, schema_id, remote_id)` or lays the message over its current
//! values, (3) adds the sub-event, and (4) adds an activity-stream entry
//! when an important field was set, changed or cleared. On PostgreSQL the
//! batch first takes a transaction-scoped advisory lock per activity, in
//! one sorted order, so two servers never interleave the read-modify-write
//! of one activity and never deadlock; SQLite's single writer gives the
//! same order.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use junction_core::xds::{important_changes, overlay, render, Activity, Rendered, Schema, Urls};
use junction_core::Violation;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::runs::{insert_runs, notify_work, placeholders, NewRun, NewTask};
use crate::{json_of, read, ts, write_tx, Result, Store, StoreError};

/// Inserts a sub-event inside `write_tx!`, yielding its id.
macro_rules! insert_sub_event {
    ($tx:ident, $activity:expr, $version:expr, $event_time:expr, $fields:expr, $rendered:expr, $now:expr) => {{
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO xds_sub_events (activity_id, schema_version, event_time, fields, rendered, received_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind($activity)
        .bind($version)
        .bind($event_time)
        .bind($fields)
        .bind($rendered)
        .bind($now)
        .fetch_one(&mut *$tx)
        .await?;
        id
    }};
}

/// A tool instance sending activities; its key ties messages to it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct XdsSourceRecord {
    pub id: i64,
    pub name: String,
    /// Sent with every activity message (and optionally with a schema).
    pub source_association_key: String,
    /// The schema this source's activities follow, once associated.
    pub schema_id: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub associated_at: Option<Timestamp>,
}

/// One registered schema version.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct XdsSchemaRecord {
    #[serde(flatten)]
    pub schema: Schema,
    #[schema(value_type = String, format = DateTime)]
    pub registered_at: Timestamp,
}

/// A schema id with its versions.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct XdsSchemaSummary {
    pub schema_id: String,
    /// The name of the latest version.
    pub name: String,
    pub latest_version: i64,
    /// Every registered version, ascending.
    pub versions: Vec<i64>,
    /// When the latest version was registered.
    #[schema(value_type = String, format = DateTime)]
    pub registered_at: Timestamp,
}

/// The answer to a schema registration.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct XdsRegistration {
    /// `created`: a new version. `unchanged`: this id and version were
    /// registered before; the submission was ignored and `schema` is the
    /// stored (first) one.
    pub status: String,
    /// Whether the submission equals the stored version (`event_time`
    /// aside).
    pub identical: bool,
    /// The source the message's key named, now associated with the schema.
    pub source_id: Option<i64>,
    pub schema: XdsSchemaRecord,
}

/// A validated activity message to store.
#[derive(Debug, Clone)]
pub struct NewXdsActivity {
    pub source_id: i64,
    pub activity: Activity,
    /// The schema version the message names.
    pub schema: Arc<Schema>,
    /// A queue message's id: a message whose id is already stored is a
    /// redelivery and is not stored again.
    pub message_id: Option<String>,
    /// Runs of the event triggers the message matches, inserted in its
    /// transaction; a run marked `true` only when the message set, changed
    /// or cleared an important field. Each run's context gets the
    /// activity's id (`EventId`) and the sub-event's (`SubEventId`).
    pub runs: Vec<(NewRun, bool)>,
}

/// A stored activity message.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct XdsAccepted {
    pub activity_id: i64,
    pub sub_event_id: i64,
    /// `created` (the first message of this remote_id) or `aggregated`
    /// (a sub-event of an existing activity).
    pub status: String,
    pub source_id: i64,
    pub schema_id: String,
    pub schema_version: i64,
    pub remote_id: String,
    /// Important fields this message set, changed or cleared.
    pub changed: Vec<String>,
    /// Fields of this message its schema version does not declare: stored
    /// (and returned in `fields`) but never rendered, like hidden ones.
    pub undeclared_fields: Vec<String>,
    /// The activity-stream entry the change made, if any.
    pub stream_entry_id: Option<i64>,
    /// Runs started by event triggers.
    pub triggered_runs: Vec<String>,
}

/// Why one message of a batch was not stored while the others were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XdsRefusal {
    /// The source follows another schema.
    SourceSchema {
        source_id: i64,
        schema_id: String,
    },
    NoSource(i64),
    /// A message with this id was stored before (a redelivery).
    Duplicate(String),
}

/// A sub-event: one message of an activity, as sent (mandatory fields
/// aside) and rendered.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct XdsSubEvent {
    pub id: i64,
    pub schema_version: i64,
    #[schema(value_type = String, format = DateTime)]
    pub event_time: Timestamp,
    #[schema(value_type = Object)]
    pub fields: Map<String, Value>,
    /// Keys of `fields` the sub-event's schema version does not declare.
    pub undeclared_fields: Vec<String>,
    pub rendered: Rendered,
    #[schema(value_type = String, format = DateTime)]
    pub received_at: Timestamp,
}

/// An activity: its current values (the latest message's, by event time,
/// for every field any message set) and its sub-events in event-time order.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct XdsActivityRecord {
    pub id: i64,
    pub source_id: i64,
    pub schema_id: String,
    /// The version of the latest message.
    pub schema_version: i64,
    pub remote_id: String,
    pub status_type: Option<String>,
    /// Current raw values, hidden and undeclared fields included.
    #[schema(value_type = Object)]
    pub fields: Map<String, Value>,
    /// Keys of `fields` that `schema_version` does not declare (custom
    /// data the schema does not know of): stored and returned, never
    /// rendered.
    pub undeclared_fields: Vec<String>,
    /// Current values for people: no hidden or undeclared fields.
    pub rendered: Rendered,
    #[schema(value_type = String, format = DateTime)]
    pub first_event_time: Timestamp,
    /// The latest message's event time.
    #[schema(value_type = String, format = DateTime)]
    pub event_time: Timestamp,
    pub sub_event_count: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    pub sub_events: Vec<XdsSubEvent>,
}

/// An activity-stream entry: an important field of an activity was set,
/// changed or cleared. `rendered` is the activity as it was then.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct XdsStreamEntry {
    pub id: i64,
    pub activity_id: i64,
    pub sub_event_id: i64,
    pub source_id: i64,
    pub schema_id: String,
    pub schema_version: i64,
    pub remote_id: String,
    #[schema(value_type = String, format = DateTime)]
    pub event_time: Timestamp,
    pub changed: Vec<String>,
    pub rendered: Rendered,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// A refused schema or activity message to record.
#[derive(Debug, Clone)]
pub struct NewXdsRejection {
    /// `schema` or `activity`.
    pub kind: &'static str,
    pub status: u16,
    pub code: String,
    pub reason: String,
    pub details: Vec<Violation>,
    pub source_id: Option<i64>,
    pub schema_id: Option<String>,
    pub schema_version: Option<i64>,
    /// The body as received; cut to [`MAX_REJECTED_BODY`] bytes.
    pub body: Vec<u8>,
}

/// The most of a refused body kept.
pub const MAX_REJECTED_BODY: usize = 64 * 1024;

/// A refused message.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct XdsRejectionRecord {
    pub id: i64,
    /// `schema` or `activity`.
    pub kind: String,
    /// The HTTP status the sender got.
    pub status: i64,
    pub code: String,
    pub reason: String,
    pub details: Vec<XdsViolation>,
    pub source_id: Option<i64>,
    pub schema_id: Option<String>,
    pub schema_version: Option<i64>,
    /// The body as received (invalid UTF-8 and NUL as U+FFFD), cut to
    /// 64 KiB.
    pub body: String,
    pub body_truncated: bool,
    /// The size of the body as received.
    pub body_bytes: i64,
    #[schema(value_type = String, format = DateTime)]
    pub received_at: Timestamp,
}

/// A violation as recorded with a rejection.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, ToSchema)]
pub struct XdsViolation {
    pub field: String,
    pub rule: String,
    pub message: String,
}

#[derive(Debug, Clone, Default)]
pub struct XdsActivityFilter {
    pub source_id: Option<i64>,
    pub schema_id: Option<String>,
    pub status_type: Option<String>,
    pub remote_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct XdsStreamFilter {
    pub source_id: Option<i64>,
    pub schema_id: Option<String>,
    pub activity_id: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct XdsRejectionFilter {
    pub kind: Option<String>,
    pub source_id: Option<i64>,
    pub schema_id: Option<String>,
}

type SourceRow = (i64, String, String, Option<String>, i64, Option<i64>);
const SOURCE_COLUMNS: &str = "id, name, association_key, schema_id, created_at, associated_at";

fn source_from_row(r: SourceRow) -> Result<XdsSourceRecord> {
    Ok(XdsSourceRecord {
        id: r.0,
        name: r.1,
        source_association_key: r.2,
        schema_id: r.3,
        created_at: ts(r.4)?,
        associated_at: r.5.map(ts).transpose()?,
    })
}

fn schema_from_row((doc, registered_at): (String, i64)) -> Result<XdsSchemaRecord> {
    Ok(XdsSchemaRecord { schema: schema_of(&doc)?, registered_at: ts(registered_at)? })
}

fn schema_of(doc: &str) -> Result<Schema> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(format!("stored XDS schema: {e}")))
}

fn object_of(text: &str) -> Result<Map<String, Value>> {
    match json_of(text)? {
        Value::Object(m) => Ok(m),
        _ => Err(StoreError::Corrupt("stored XDS fields are not an object".into())),
    }
}

fn rendered_of(text: &str) -> Result<Rendered> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stored XDS rendering: {e}")))
}

fn to_json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

type ActivityRow = (i64, i64, String, String, i64, Option<String>, String, String, i64, i64, i64, i64, i64);
const ACTIVITY_COLUMNS: &str = "id, source_id, schema_id, remote_id, schema_version, status_type, fields, rendered, \
                                first_event_time, event_time, sub_event_count, created_at, updated_at";

fn activity_from_row(r: ActivityRow) -> Result<XdsActivityRecord> {
    Ok(XdsActivityRecord {
        id: r.0,
        source_id: r.1,
        schema_id: r.2,
        remote_id: r.3,
        schema_version: r.4,
        status_type: r.5,
        fields: object_of(&r.6)?,
        undeclared_fields: Vec::new(),
        rendered: rendered_of(&r.7)?,
        first_event_time: ts(r.8)?,
        event_time: ts(r.9)?,
        sub_event_count: r.10,
        created_at: ts(r.11)?,
        updated_at: ts(r.12)?,
        sub_events: Vec::new(),
    })
}

type SubEventRow = (i64, i64, i64, i64, String, String, i64);

fn sub_event_from_row(r: SubEventRow) -> Result<(i64, XdsSubEvent)> {
    Ok((
        r.1,
        XdsSubEvent {
            id: r.0,
            schema_version: r.2,
            event_time: ts(r.3)?,
            fields: object_of(&r.4)?,
            undeclared_fields: Vec::new(),
            rendered: rendered_of(&r.5)?,
            received_at: ts(r.6)?,
        },
    ))
}

type StreamRow = (i64, i64, i64, i64, String, i64, String, i64, String, String, i64);
const STREAM_COLUMNS: &str = "id, activity_id, sub_event_id, source_id, schema_id, schema_version, remote_id, \
                              event_time, changed, rendered, created_at";

fn stream_from_row(r: StreamRow) -> Result<XdsStreamEntry> {
    Ok(XdsStreamEntry {
        id: r.0,
        activity_id: r.1,
        sub_event_id: r.2,
        source_id: r.3,
        schema_id: r.4,
        schema_version: r.5,
        remote_id: r.6,
        event_time: ts(r.7)?,
        changed: serde_json::from_str(&r.8).map_err(|e| StoreError::Corrupt(format!("stream changes: {e}")))?,
        rendered: rendered_of(&r.9)?,
        created_at: ts(r.10)?,
    })
}

type RejectionRow =
    (i64, String, i64, String, String, String, Option<i64>, Option<String>, Option<i64>, String, i64, i64);
const REJECTION_COLUMNS: &str = "id, kind, status, code, reason, details, source_id, schema_id, schema_version, body, \
                                 body_bytes, received_at";

fn rejection_from_row(r: RejectionRow) -> Result<XdsRejectionRecord> {
    Ok(XdsRejectionRecord {
        id: r.0,
        kind: r.1,
        status: r.2,
        code: r.3,
        reason: r.4,
        details: serde_json::from_str(&r.5).map_err(|e| StoreError::Corrupt(format!("rejection details: {e}")))?,
        source_id: r.6,
        schema_id: r.7,
        schema_version: r.8,
        body_truncated: r.10 > r.9.len() as i64,
        body: r.9,
        body_bytes: r.10,
        received_at: ts(r.11)?,
    })
}

/// Text safe for any column: no NUL (PostgreSQL refuses it in `TEXT`).
fn storable(s: &str) -> String {
    s.replace('\0', "\u{fffd}")
}

/// The body as text: lossy UTF-8, NUL replaced, at most
/// [`MAX_REJECTED_BODY`] bytes (cut at a character boundary).
fn rejected_body(body: &[u8]) -> String {
    let cut = &body[..body.len().min(MAX_REJECTED_BODY)];
    let mut text = storable(&String::from_utf8_lossy(cut));
    if text.len() > MAX_REJECTED_BODY {
        let mut end = MAX_REJECTED_BODY;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// The advisory-lock key of one activity: 64 bits of a SHA-256, the same
/// in every server.
fn activity_lock(source_id: i64, schema_id: &str, remote_id: &str) -> i64 {
    let digest = Sha256::digest(format!("xds:{source_id}:{schema_id}:{remote_id}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

impl Store {
    pub async fn create_xds_source(&self, name: &str, key: &str) -> Result<XdsSourceRecord> {
        let now = self.now_ms();
        let id: i64 = write_tx!(self, tx => {
            sqlx::query_scalar(
                "INSERT INTO xds_sources (name, association_key, created_at) VALUES ($1, $2, $3) RETURNING id",
            )
            .bind(name)
            .bind(key)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!("an XDS source named {name:?} exists")),
                other => other,
            })?
        });
        Ok(XdsSourceRecord {
            id,
            name: name.to_string(),
            source_association_key: key.to_string(),
            schema_id: None,
            created_at: ts(now)?,
            associated_at: None,
        })
    }

    pub async fn list_xds_sources(&self) -> Result<Vec<XdsSourceRecord>> {
        let sql = format!("SELECT {SOURCE_COLUMNS} FROM xds_sources ORDER BY id");
        let rows: Vec<SourceRow> = read!(self, db => sqlx::query_as(&sql).fetch_all(db).await)?;
        rows.into_iter().map(source_from_row).collect()
    }

    pub async fn get_xds_source(&self, id: i64) -> Result<Option<XdsSourceRecord>> {
        let sql = format!("SELECT {SOURCE_COLUMNS} FROM xds_sources WHERE id = $1");
        let row: Option<SourceRow> = read!(self, db => sqlx::query_as(&sql).bind(id).fetch_optional(db).await)?;
        row.map(source_from_row).transpose()
    }

    pub async fn xds_source_by_key(&self, key: &str) -> Result<Option<XdsSourceRecord>> {
        let sql = format!("SELECT {SOURCE_COLUMNS} FROM xds_sources WHERE association_key = $1");
        let row: Option<SourceRow> = read!(self, db => sqlx::query_as(&sql).bind(key).fetch_optional(db).await)?;
        row.map(source_from_row).transpose()
    }

    /// Registers a schema version; the first registration of an id and
    /// version wins and later ones change nothing. With `source`, the
    /// source is associated with the schema in the same transaction, or
    /// the whole registration is refused (Conflict) when the source
    /// follows another schema.
    pub async fn register_xds_schema(&self, schema: &Schema, source: Option<i64>) -> Result<XdsRegistration> {
        let now = self.now_ms();
        let doc = to_json(schema)?;
        let (created, stored): (bool, (String, i64)) = write_tx!(self, tx => {
            if let Some(source) = source {
                let current: Option<Option<String>> =
                    sqlx::query_scalar("SELECT schema_id FROM xds_sources WHERE id = $1")
                        .bind(source)
                        .fetch_optional(&mut *tx)
                        .await?;
                match current {
                    None => return Err(StoreError::NotFound(format!("XDS source {source}"))),
                    Some(Some(other)) if other != schema.schema_id => {
                        return Err(StoreError::Conflict(format!(
                            "XDS source {source} is associated with schema {other}, not {}",
                            schema.schema_id
                        )))
                    }
                    Some(Some(_)) => {}
                    Some(None) => {
                        let n = sqlx::query(
                            "UPDATE xds_sources SET schema_id = $2, associated_at = $3 WHERE id = $1 AND schema_id IS NULL",
                        )
                        .bind(source)
                        .bind(&schema.schema_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                        if n == 0 {
                            return Err(StoreError::Conflict(format!(
                                "XDS source {source} was just associated with another schema"
                            )));
                        }
                    }
                }
            }
            let inserted = sqlx::query(
                "INSERT INTO xds_schemas (schema_id, version, name, event_time, doc, registered_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (schema_id, version) DO NOTHING",
            )
            .bind(&schema.schema_id)
            .bind(schema.schema_version)
            .bind(&schema.name)
            .bind(schema.event_time.as_millisecond())
            .bind(&doc)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            let stored: (String, i64) =
                sqlx::query_as("SELECT doc, registered_at FROM xds_schemas WHERE schema_id = $1 AND version = $2")
                    .bind(&schema.schema_id)
                    .bind(schema.schema_version)
                    .fetch_one(&mut *tx)
                    .await?;
            (inserted, stored)
        });
        let record = schema_from_row(stored)?;
        let identical = Schema { event_time: schema.event_time, ..record.schema.clone() } == *schema;
        Ok(XdsRegistration {
            status: if created { "created" } else { "unchanged" }.to_string(),
            identical,
            source_id: source,
            schema: record,
        })
    }

    pub async fn get_xds_schema(&self, schema_id: &str, version: i64) -> Result<Option<XdsSchemaRecord>> {
        let row: Option<(String, i64)> = read!(self, db => {
            sqlx::query_as("SELECT doc, registered_at FROM xds_schemas WHERE schema_id = $1 AND version = $2")
                .bind(schema_id)
                .bind(version)
                .fetch_optional(db)
                .await
        })?;
        row.map(schema_from_row).transpose()
    }

    /// Every version of a schema, ascending; empty when it is unknown.
    pub async fn xds_schema_versions(&self, schema_id: &str) -> Result<Vec<XdsSchemaRecord>> {
        let rows: Vec<(String, i64)> = read!(self, db => {
            sqlx::query_as("SELECT doc, registered_at FROM xds_schemas WHERE schema_id = $1 ORDER BY version")
                .bind(schema_id)
                .fetch_all(db)
                .await
        })?;
        rows.into_iter().map(schema_from_row).collect()
    }

    /// Every schema id, sorted, with its versions.
    pub async fn list_xds_schemas(&self) -> Result<Vec<XdsSchemaSummary>> {
        let rows: Vec<(String, i64, String, i64)> = read!(self, db => {
            sqlx::query_as("SELECT schema_id, version, name, registered_at FROM xds_schemas ORDER BY schema_id, version")
                .fetch_all(db)
                .await
        })?;
        let mut out: Vec<XdsSchemaSummary> = Vec::new();
        for (schema_id, version, name, at) in rows {
            let at = ts(at)?;
            match out.last_mut() {
                Some(s) if s.schema_id == schema_id => {
                    s.versions.push(version);
                    s.latest_version = version;
                    s.name = name;
                    s.registered_at = at;
                }
                _ => out.push(XdsSchemaSummary {
                    schema_id,
                    name,
                    latest_version: version,
                    versions: vec![version],
                    registered_at: at,
                }),
            }
        }
        Ok(out)
    }

    /// Stores a batch of activity messages in one transaction (see the
    /// module documentation). A message whose source follows another
    /// schema is refused alone; the others are stored.
    pub async fn insert_xds_activities(
        &self,
        items: &[NewXdsActivity],
        urls: &Urls,
    ) -> Result<Vec<std::result::Result<XdsAccepted, XdsRefusal>>> {
        let now = self.now_ms();
        let mut locks: Vec<i64> =
            items.iter().map(|i| activity_lock(i.source_id, &i.activity.schema_id, &i.activity.remote_id)).collect();
        locks.sort_unstable();
        locks.dedup();
        let lock_sql = format!(
            "SELECT pg_advisory_xact_lock(k) FROM (SELECT unnest(ARRAY[{}]::bigint[]) AS k ORDER BY k) AS keys",
            placeholders(1, locks.len())
        );
        let postgres = self.is_postgres();
        let out = write_tx!(self, tx => {
            if postgres && !locks.is_empty() {
                let mut q = sqlx::query(&lock_sql);
                for k in &locks {
                    q = q.bind(*k);
                }
                q.execute(&mut *tx).await?;
            }
            // Sources whose association this batch has checked.
            let mut associated: HashMap<i64, Option<String>> = HashMap::new();
            let mut out = Vec::with_capacity(items.len());
            // The triggered runs of the whole batch, inserted together.
            let mut pending: Vec<(NewRun, Option<Vec<u8>>)> = Vec::new();
            for NewXdsActivity { source_id, activity, schema, message_id, runs } in items {
                let source_id = *source_id;
                // (1) The source's schema.
                let current = match associated.get(&source_id) {
                    Some(s) => s.clone(),
                    None => {
                        let row: Option<Option<String>> =
                            sqlx::query_scalar("SELECT schema_id FROM xds_sources WHERE id = $1")
                                .bind(source_id)
                                .fetch_optional(&mut *tx)
                                .await?;
                        let Some(mut current) = row else {
                            out.push(Err(XdsRefusal::NoSource(source_id)));
                            continue;
                        };
                        if current.is_none() {
                            sqlx::query(
                                "UPDATE xds_sources SET schema_id = $2, associated_at = $3 \
                                 WHERE id = $1 AND schema_id IS NULL",
                            )
                            .bind(source_id)
                            .bind(&activity.schema_id)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                            current = sqlx::query_scalar("SELECT schema_id FROM xds_sources WHERE id = $1")
                                .bind(source_id)
                                .fetch_one(&mut *tx)
                                .await?;
                        }
                        associated.insert(source_id, current.clone());
                        current
                    }
                };
                if current.as_deref() != Some(activity.schema_id.as_str()) {
                    out.push(Err(XdsRefusal::SourceSchema {
                        source_id,
                        schema_id: current.unwrap_or_default(),
                    }));
                    continue;
                }
                // A redelivered queue message is stored once; only a message
                // that gets stored claims its id (a refused one may be
                // judged again).
                if let Some(id) = message_id {
                    let fresh = sqlx::query(
                        "INSERT INTO inbound_messages (message_id, received_at) VALUES ($1, $2) \
                         ON CONFLICT (message_id) DO NOTHING",
                    )
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if fresh == 0 {
                        out.push(Err(XdsRefusal::Duplicate(id.clone())));
                        continue;
                    }
                }
                // (2) The activity as it is.
                let existing: Option<(i64, i64, String, i64, i64)> = sqlx::query_as(
                    "SELECT id, schema_version, fields, event_time, first_event_time FROM xds_activities \
                     WHERE source_id = $1 AND schema_id = $2 AND remote_id = $3",
                )
                .bind(source_id)
                .bind(&activity.schema_id)
                .bind(&activity.remote_id)
                .fetch_optional(&mut *tx)
                .await?;
                let event_time = activity.event_time.as_millisecond();
                let sub_fields = to_json(&activity.fields)?;
                let sub_render = render(schema, &activity.fields, urls);
                let sub_rendered = to_json(&sub_render)?;
                let (activity_id, sub_event_id, status, changed, rendered) = match existing {
                    None => {
                        // A new activity is its first message: one rendering serves both.
                        let fields = &activity.fields;
                        let changed = important_changes(schema, &Map::new(), fields);
                        let activity_id: i64 = sqlx::query_scalar(
                            "INSERT INTO xds_activities (source_id, schema_id, remote_id, schema_version, status_type, \
                             fields, rendered, first_event_time, event_time, sub_event_count, created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 1, $9, $9) RETURNING id",
                        )
                        .bind(source_id)
                        .bind(&activity.schema_id)
                        .bind(&activity.remote_id)
                        .bind(activity.schema_version)
                        .bind(status_type(fields))
                        .bind(&sub_fields)
                        .bind(&sub_rendered)
                        .bind(event_time)
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await?;
                        let sub_event_id = insert_sub_event!(tx, activity_id, activity.schema_version, event_time, &sub_fields, &sub_rendered, now);
                        (activity_id, sub_event_id, "created", changed, sub_render)
                    }
                    Some((activity_id, version, fields, latest, first)) => {
                        let before = object_of(&fields)?;
                        let sub_event_id = insert_sub_event!(tx, activity_id, activity.schema_version, event_time, &sub_fields, &sub_rendered, now);
                        // The latest message (by event time, then arrival)
                        // gives the version; an older one arriving late
                        // only fills in what no later message set.
                        let (after, version, latest, view) = if event_time >= latest {
                            let mut after = before.clone();
                            overlay(&mut after, &activity.fields);
                            (after, activity.schema_version, event_time, schema.clone())
                        } else {
                            let all: Vec<(String,)> = sqlx::query_as(
                                "SELECT fields FROM xds_sub_events WHERE activity_id = $1 ORDER BY event_time, id",
                            )
                            .bind(activity_id)
                            .fetch_all(&mut *tx)
                            .await?;
                            let mut after = Map::new();
                            for (f,) in all {
                                overlay(&mut after, &object_of(&f)?);
                            }
                            let view = if version == activity.schema_version {
                                schema.clone()
                            } else {
                                let doc: String = sqlx::query_scalar(
                                    "SELECT doc FROM xds_schemas WHERE schema_id = $1 AND version = $2",
                                )
                                .bind(&activity.schema_id)
                                .bind(version)
                                .fetch_one(&mut *tx)
                                .await?;
                                Arc::new(schema_of(&doc)?)
                            };
                            (after, version, latest, view)
                        };
                        let changed = important_changes(&view, &before, &after);
                        let rendered = render(&view, &after, urls);
                        sqlx::query(
                            "UPDATE xds_activities SET schema_version = $2, status_type = $3, fields = $4, rendered = $5, \
                             event_time = $6, first_event_time = $7, sub_event_count = sub_event_count + 1, updated_at = $8 \
                             WHERE id = $1",
                        )
                        .bind(activity_id)
                        .bind(version)
                        .bind(status_type(&after))
                        .bind(to_json(&after)?)
                        .bind(to_json(&rendered)?)
                        .bind(latest)
                        .bind(first.min(event_time))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        (activity_id, sub_event_id, "aggregated", changed, rendered)
                    }
                };
                // (4) The stream entry.
                let stream_entry_id: Option<i64> = if changed.is_empty() {
                    None
                } else {
                    Some(
                        sqlx::query_scalar(
                            "INSERT INTO xds_stream (activity_id, sub_event_id, source_id, schema_id, schema_version, \
                             remote_id, event_time, changed, rendered, created_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                        )
                        .bind(activity_id)
                        .bind(sub_event_id)
                        .bind(source_id)
                        .bind(&activity.schema_id)
                        .bind(activity.schema_version)
                        .bind(&activity.remote_id)
                        .bind(event_time)
                        .bind(to_json(&changed)?)
                        .bind(to_json(&rendered)?)
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await?,
                    )
                };
                let mut triggered_runs = Vec::new();
                for (run, on_change) in runs {
                    if *on_change && changed.is_empty() {
                        continue;
                    }
                    let mut run = run.clone();
                    if let Some(Value::Object(ctx)) = &mut run.context {
                        ctx.insert("EventId".into(), Value::from(activity_id));
                        ctx.insert("SubEventId".into(), Value::from(sub_event_id));
                    }
                    let sealed = self.seal_run_params(&run);
                    triggered_runs.push(run.id.clone());
                    pending.push((run, sealed));
                }
                out.push(Ok(XdsAccepted {
                    activity_id,
                    sub_event_id,
                    status: status.to_string(),
                    source_id,
                    schema_id: activity.schema_id.clone(),
                    schema_version: activity.schema_version,
                    remote_id: activity.remote_id.clone(),
                    undeclared_fields: schema.undeclared(&activity.fields),
                    changed,
                    stream_entry_id,
                    triggered_runs,
                }));
            }
            if !pending.is_empty() {
                insert_runs!(tx, pending.iter().map(|(r, s)| (r, s)).collect(), now);
                notify_work!(self, tx);
            }
            out
        });
        Ok(out)
    }

    /// Activities, most recently updated first, each with its sub-events.
    pub async fn list_xds_activities(
        &self,
        filter: &XdsActivityFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<XdsActivityRecord>> {
        let sql = format!(
            "SELECT {ACTIVITY_COLUMNS} FROM xds_activities WHERE ($1 IS NULL OR source_id = $1) \
             AND ($2 IS NULL OR schema_id = $2) AND ($3 IS NULL OR status_type = $3) \
             AND ($4 IS NULL OR remote_id = $4) ORDER BY updated_at DESC, id DESC LIMIT $5 OFFSET $6"
        );
        let rows: Vec<ActivityRow> = read!(self, db => {
            sqlx::query_as(&sql)
                .bind(filter.source_id)
                .bind(&filter.schema_id)
                .bind(&filter.status_type)
                .bind(&filter.remote_id)
                .bind(limit)
                .bind(offset)
                .fetch_all(db)
                .await
        })?;
        let mut activities = rows.into_iter().map(activity_from_row).collect::<Result<Vec<_>>>()?;
        self.attach_sub_events(&mut activities).await?;
        self.mark_undeclared(&mut activities).await?;
        Ok(activities)
    }

    pub async fn get_xds_activity(&self, id: i64) -> Result<Option<XdsActivityRecord>> {
        let sql = format!("SELECT {ACTIVITY_COLUMNS} FROM xds_activities WHERE id = $1");
        let row: Option<ActivityRow> = read!(self, db => sqlx::query_as(&sql).bind(id).fetch_optional(db).await)?;
        let Some(activity) = row.map(activity_from_row).transpose()? else { return Ok(None) };
        let mut one = vec![activity];
        self.attach_sub_events(&mut one).await?;
        self.mark_undeclared(&mut one).await?;
        Ok(one.pop())
    }

    /// Fills in each activity's and sub-event's `undeclared_fields` from
    /// the schema version it is shown by (the activity's latest, each
    /// sub-event's own), read in one query. Derived on read, so it always
    /// agrees with the rendering, which leaves the same fields out.
    async fn mark_undeclared(&self, activities: &mut [XdsActivityRecord]) -> Result<()> {
        let mut ids: Vec<&str> = activities.iter().map(|a| a.schema_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "SELECT schema_id, version, doc FROM xds_schemas WHERE schema_id IN ({})",
            placeholders(1, ids.len())
        );
        let rows: Vec<(String, i64, String)> = read!(self, db => {
            let mut q = sqlx::query_as(&sql);
            for id in &ids {
                q = q.bind(*id);
            }
            q.fetch_all(db).await
        })?;
        let mut schemas: HashMap<(String, i64), Schema> = HashMap::with_capacity(rows.len());
        for (id, version, doc) in rows {
            schemas.insert((id, version), schema_of(&doc)?);
        }
        let schema = |id: &str, version: i64| {
            schemas
                .get(&(id.to_string(), version))
                .ok_or_else(|| StoreError::Corrupt(format!("XDS schema {id:?} version {version} is gone")))
        };
        for a in activities.iter_mut() {
            a.undeclared_fields = schema(&a.schema_id, a.schema_version)?.undeclared(&a.fields);
            for sub in &mut a.sub_events {
                sub.undeclared_fields = schema(&a.schema_id, sub.schema_version)?.undeclared(&sub.fields);
            }
        }
        Ok(())
    }

    async fn attach_sub_events(&self, activities: &mut [XdsActivityRecord]) -> Result<()> {
        if activities.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "SELECT id, activity_id, schema_version, event_time, fields, rendered, received_at FROM xds_sub_events \
             WHERE activity_id IN ({}) ORDER BY activity_id, event_time, id",
            placeholders(1, activities.len())
        );
        let rows: Vec<SubEventRow> = read!(self, db => {
            let mut q = sqlx::query_as(&sql);
            for a in activities.iter() {
                q = q.bind(a.id);
            }
            q.fetch_all(db).await
        })?;
        let index: HashMap<i64, usize> = activities.iter().enumerate().map(|(i, a)| (a.id, i)).collect();
        for row in rows {
            let (activity_id, sub) = sub_event_from_row(row)?;
            if let Some(i) = index.get(&activity_id) {
                activities[*i].sub_events.push(sub);
            }
        }
        Ok(())
    }

    /// The activity stream, newest entry first.
    pub async fn list_xds_stream(
        &self,
        filter: &XdsStreamFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<XdsStreamEntry>> {
        let sql = format!(
            "SELECT {STREAM_COLUMNS} FROM xds_stream WHERE ($1 IS NULL OR source_id = $1) \
             AND ($2 IS NULL OR schema_id = $2) AND ($3 IS NULL OR activity_id = $3) \
             ORDER BY id DESC LIMIT $4 OFFSET $5"
        );
        let rows: Vec<StreamRow> = read!(self, db => {
            sqlx::query_as(&sql)
                .bind(filter.source_id)
                .bind(&filter.schema_id)
                .bind(filter.activity_id)
                .bind(limit)
                .bind(offset)
                .fetch_all(db)
                .await
        })?;
        rows.into_iter().map(stream_from_row).collect()
    }

    pub async fn insert_xds_rejection(&self, r: &NewXdsRejection) -> Result<i64> {
        let now = self.now_ms();
        // As answered: at most the first 100 and an entry counting the rest.
        let details: Vec<XdsViolation> = junction_core::validation::listed(&r.details)
            .into_iter()
            .map(|v| XdsViolation { field: v.field, rule: v.rule, message: v.message })
            .collect();
        let id: i64 = write_tx!(self, tx => {
            sqlx::query_scalar(
                "INSERT INTO xds_rejections (kind, status, code, reason, details, source_id, schema_id, schema_version, \
                 body, body_bytes, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            )
            .bind(r.kind)
            .bind(i64::from(r.status))
            .bind(storable(&r.code))
            .bind(storable(&r.reason))
            .bind(storable(&to_json(&details)?))
            .bind(r.source_id)
            .bind(r.schema_id.as_deref().map(storable))
            .bind(r.schema_version)
            .bind(rejected_body(&r.body))
            .bind(r.body.len() as i64)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?
        });
        Ok(id)
    }

    /// Refused messages, newest first.
    pub async fn list_xds_rejections(
        &self,
        filter: &XdsRejectionFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<XdsRejectionRecord>> {
        let sql = format!(
            "SELECT {REJECTION_COLUMNS} FROM xds_rejections WHERE ($1 IS NULL OR kind = $1) \
             AND ($2 IS NULL OR source_id = $2) AND ($3 IS NULL OR schema_id = $3) \
             ORDER BY id DESC LIMIT $4 OFFSET $5"
        );
        let rows: Vec<RejectionRow> = read!(self, db => {
            sqlx::query_as(&sql)
                .bind(&filter.kind)
                .bind(filter.source_id)
                .bind(&filter.schema_id)
                .bind(limit)
                .bind(offset)
                .fetch_all(db)
                .await
        })?;
        rows.into_iter().map(rejection_from_row).collect()
    }
}

fn status_type(fields: &Map<String, Value>) -> Option<String> {
    fields.get("status_type").and_then(Value::as_str).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_bodies_are_kept_as_safe_text_within_the_cap() {
        assert_eq!(rejected_body(b"a\0b\xffc"), "a\u{fffd}b\u{fffd}c");
        let big = "é".repeat(MAX_REJECTED_BODY);
        let kept = rejected_body(big.as_bytes());
        assert!(kept.len() <= MAX_REJECTED_BODY && kept.chars().all(|c| c == 'é'));
        // A multi-byte character cut by the byte cap becomes U+FFFD, and
        // the text still fits.
        let mut odd = vec![b'a'];
        odd.extend(big.as_bytes());
        assert!(rejected_body(&odd).len() <= MAX_REJECTED_BODY);
    }

    #[test]
    fn activity_locks_are_stable_and_distinct() {
        assert_eq!(activity_lock(1, "s", "r"), activity_lock(1, "s", "r"));
        assert_ne!(activity_lock(1, "s", "r"), activity_lock(2, "s", "r"));
        assert_eq!(placeholders(3, 3), "$3, $4, $5");
    }
}
