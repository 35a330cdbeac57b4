//! Extensible Data Sources (spec 003): sources, the schema registry and
//! activity messages.
//!
//! Every refused schema or activity message is recorded with its reason
//! and (a capped copy of) its body before the refusal is answered, so the
//! sender's operator can see what arrived and why it was not taken. An
//! accepted activity is durable before it is answered: requests hand their
//! validated message to one writer that stores whatever has accumulated in
//! one transaction (group commit), like the CI/CD events.

use std::sync::Arc;

use junction_core::xds::{message_hints, ActivityEnvelope, MessageKind, Schema, SchemaMessage, Urls};
use junction_core::{Invalid, Violation};
use junction_store::{
    NewXdsActivity, NewXdsRejection, Store, StoreError, XdsAccepted, XdsRefusal, XdsRegistration, XdsSchemaRecord,
    XdsSourceRecord,
};
use serde_json::Value;

use crate::memo::Memo;
use crate::{Engine, EngineError, Result};

/// Messages stored per transaction at most.
const BATCH: usize = 256;
/// Where Junction is reached when `JUNCTION_BASE_URL` is not set.
pub const DEFAULT_BASE_URL: &str = "http://127.0.0.1:8080";
/// Schema versions a process remembers (they never change once stored).
const MAX_CACHED_SCHEMAS: usize = 4096;
/// Association keys a process remembers the source of.
const MAX_CACHED_SOURCES: usize = 4096;

type Stored = std::result::Result<XdsAccepted, XdsRefusal>;

/// The engine's XDS state: the base URL for placeholders and links, the
/// activity writer (group commit, see `batch`), and what never changes
/// once stored (schema versions, the source of an association key).
#[derive(Clone, Debug)]
pub(crate) struct Xds {
    urls: Arc<Urls>,
    writer: crate::batch::Batcher<NewXdsActivity, Stored>,
    schemas: Memo<(String, i64), Arc<Schema>>,
    sources: Memo<String, i64>,
}

impl Xds {
    /// Reads `JUNCTION_BASE_URL` (once) and starts the activity writer.
    pub fn start(store: Store) -> Xds {
        let base = match std::env::var("JUNCTION_BASE_URL") {
            Ok(url) if junction_core::xds::is_http_url(url.trim()) => url.trim().to_string(),
            Ok(url) => {
                tracing::warn!(%url, "JUNCTION_BASE_URL is not an http(s) URL; using {DEFAULT_BASE_URL}");
                DEFAULT_BASE_URL.to_string()
            }
            Err(_) => DEFAULT_BASE_URL.to_string(),
        };
        let urls = Arc::new(Urls::new(&base));
        let writer_urls = urls.clone();
        let writer = crate::batch::Batcher::start(
            BATCH,
            crate::batch::Split::OnDataErrors,
            move |items: Arc<Vec<NewXdsActivity>>| {
                let (store, urls) = (store.clone(), writer_urls.clone());
                async move { store.insert_xds_activities(&items, &urls).await }
            },
        );
        Xds { urls, writer, schemas: Memo::new(MAX_CACHED_SCHEMAS), sources: Memo::new(MAX_CACHED_SOURCES) }
    }

    async fn store_activity(&self, item: NewXdsActivity) -> Result<Stored> {
        self.writer.submit(item).await.map_err(|e| {
            tracing::error!(error = %e, "storing an XDS activity failed");
            EngineError::Unavailable("the activity could not be stored; retry".into())
        })
    }
}

/// What became of a queue message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueOutcome {
    Stored,
    /// Stored before (same message id): acknowledge, store nothing.
    Duplicate,
    /// Can never be stored (recorded as a rejection): dead-letter it.
    Refused(String),
    /// Could not be stored now: try again later.
    Failed(String),
}

/// Where a refused message came from, as far as it could be read.
#[derive(Default)]
struct Hints {
    source_id: Option<i64>,
    schema_id: Option<String>,
    schema_version: Option<i64>,
}

impl Engine {
    /// The base URL placeholders and reference links use.
    pub fn xds_base_url(&self) -> &str {
        &self.xds.urls.base
    }

    /// A new source with a random association key.
    pub async fn create_xds_source(&self, name: &str) -> Result<XdsSourceRecord> {
        crate::events::check_label("name", name)?;
        let key = uuid::Uuid::new_v4().to_string();
        Ok(self.store.create_xds_source(name, &key).await?)
    }

    pub async fn xds_source(&self, id: i64) -> Result<XdsSourceRecord> {
        self.store.get_xds_source(id).await?.ok_or_else(|| EngineError::NotFound(format!("XDS source {id}")))
    }

    /// The source of an association key (sources and keys never change).
    async fn xds_source_id(&self, key: &str) -> Result<Option<i64>> {
        let fetch = async { Ok::<_, EngineError>(self.store.xds_source_by_key(key).await?.map(|s| s.id)) };
        self.xds.sources.get_or_fetch(key.to_string(), fetch).await
    }

    /// A registered schema version; stored versions never change.
    async fn xds_schema(&self, schema_id: &str, version: i64) -> Result<Option<Arc<Schema>>> {
        let fetch = async {
            Ok::<_, EngineError>(self.store.get_xds_schema(schema_id, version).await?.map(|r| Arc::new(r.schema)))
        };
        self.xds.schemas.get_or_fetch((schema_id.to_string(), version), fetch).await
    }

    /// The latest version of a schema and the list of its versions.
    pub async fn xds_schema_versions(&self, schema_id: &str) -> Result<Vec<XdsSchemaRecord>> {
        let versions = self.store.xds_schema_versions(schema_id).await?;
        if versions.is_empty() {
            return Err(EngineError::NotFound(format!("XDS schema {schema_id:?}")));
        }
        Ok(versions)
    }

    /// `POST /api/1/schemas`: validates the message (400 with every
    /// violation) and registers the version. The same id and version again
    /// changes nothing (`status: unchanged`). With a source key, the source
    /// is associated with the schema; a source that follows another schema
    /// refuses the whole registration (409). Refusals are recorded.
    pub async fn register_xds_schema(&self, body: &Value, raw: &[u8]) -> Result<XdsRegistration> {
        let (schema_id, schema_version) = message_hints(body);
        let mut hints = Hints { schema_id, schema_version, ..Hints::default() };
        let parsed = SchemaMessage::parse(body);
        let key_reported =
            parsed.as_ref().err().is_some_and(|e| e.0.iter().any(|v| v.field == "source_association_key"));
        let key = body.get("source_association_key").and_then(Value::as_str).filter(|_| !key_reported);
        let mut unknown_key = None;
        if let Some(key) = key {
            match self.xds_source_id(key).await? {
                Some(id) => hints.source_id = Some(id),
                None => unknown_key = Some(unknown_source()),
            }
        }
        let message = match (parsed, unknown_key) {
            (Ok(message), None) => message,
            (Ok(_), Some(v)) => return Err(self.refuse(MessageKind::Schema, raw, hints, Invalid(vec![v])).await),
            (Err(mut invalid), v) => {
                invalid.0.extend(v);
                return Err(self.refuse(MessageKind::Schema, raw, hints, invalid).await);
            }
        };
        match self.store.register_xds_schema(&message.schema, hints.source_id).await {
            Ok(registration) => Ok(registration),
            Err(StoreError::Conflict(why)) => Err(self.refuse_conflict(MessageKind::Schema, raw, hints, why).await),
            Err(e) => Err(e.into()),
        }
    }

    /// `POST /api/1/activities`: validates the message against the schema
    /// version it names (400 with every violation: unknown source, schema
    /// or version, missing required fields, wrong types; fields the version
    /// does not declare are kept as custom data, never rendered),
    /// associates a source that has no schema yet, and stores it as a
    /// sub-event of its activity; a source that follows another schema is
    /// 409. Refusals are recorded. Answers once stored.
    pub async fn ingest_xds_activity(&self, body: &Value, raw: &[u8]) -> Result<XdsAccepted> {
        match self.ingest_activity(body, raw, None).await? {
            Some(accepted) => Ok(accepted),
            None => Err(EngineError::Conflict("the message was stored before".into())),
        }
    }

    /// A schema or activity message from the queue (`amqp`): its kind read
    /// from its shape (`custom_schema` / `custom_data`). A message whose
    /// `message_id` was stored before is a redelivery: `Duplicate`, not
    /// stored again.
    pub async fn ingest_queue_message(&self, raw: &[u8], message_id: Option<&str>) -> QueueOutcome {
        let body: Value = match serde_json::from_slice(raw) {
            Ok(v) => v,
            Err(e) => {
                let why = format!("the message is not JSON: {e}");
                let kind = if String::from_utf8_lossy(raw).contains("custom_schema") {
                    MessageKind::Schema
                } else {
                    MessageKind::Activity
                };
                self.record_xds_malformed(kind, raw, 400, "malformed_json", &why).await;
                return QueueOutcome::Refused(why);
            }
        };
        let nul = junction_core::document::nul_violations(&body);
        if !nul.is_empty() {
            // The HTTP routes' rule (the server's `refuse_nul`), for queue messages.
            let kind = if body.get("custom_schema").is_some() { MessageKind::Schema } else { MessageKind::Activity };
            return QueueOutcome::Refused(self.refuse_xds_message(kind, raw, Invalid(nul)).await.to_string());
        }
        let answer = if body.get("custom_schema").is_some() {
            self.register_xds_schema(&body, raw).await.map(|_| true)
        } else {
            self.ingest_activity(&body, raw, message_id).await.map(|stored| stored.is_some())
        };
        match answer {
            Ok(true) => QueueOutcome::Stored,
            Ok(false) => QueueOutcome::Duplicate,
            // Refusals were recorded as rejections.
            Err(e @ (EngineError::Invalid(_) | EngineError::Conflict(_) | EngineError::NotFound(_))) => {
                QueueOutcome::Refused(e.to_string())
            }
            Err(e) => QueueOutcome::Failed(e.to_string()),
        }
    }

    /// None: a redelivered queue message already stored.
    async fn ingest_activity(&self, body: &Value, raw: &[u8], message_id: Option<&str>) -> Result<Option<XdsAccepted>> {
        let mut envelope = ActivityEnvelope::read(body);
        let mut hints = Hints {
            schema_id: envelope.schema_id.clone(),
            schema_version: envelope.schema_version,
            ..Hints::default()
        };
        if let Some(key) = envelope.source_association_key.clone() {
            match self.xds_source_id(&key).await? {
                Some(id) => hints.source_id = Some(id),
                None => envelope.refuse(unknown_source()),
            }
        }
        let mut schema = None;
        if let (Some(id), Some(version)) = (envelope.schema_id.clone(), envelope.schema_version) {
            schema = self.xds_schema(&id, version).await?;
            if schema.is_none() {
                if self.store.xds_schema_versions(&id).await?.is_empty() {
                    envelope.refuse(Violation::new(
                        "custom_data.schema_id",
                        "unknown_schema",
                        format!("no schema {id:?} is registered"),
                    ));
                } else {
                    envelope.refuse(Violation::new(
                        "custom_data.schema_version",
                        "unknown_version",
                        format!("schema {id:?} has no version {version}"),
                    ));
                }
            }
        }
        let activity = match envelope.validate(schema.as_deref(), &self.xds.urls) {
            Ok(activity) => activity,
            Err(invalid) => return Err(self.refuse(MessageKind::Activity, raw, hints, invalid).await),
        };
        let (Some(source_id), Some(schema)) = (hints.source_id, schema) else {
            // validate() refuses a message without both.
            return Err(EngineError::Unavailable("activity without source or schema".into()));
        };
        let message_id = message_id.map(str::to_string);
        let runs = self.xds_trigger_runs(source_id, &activity).await?;
        let started = !runs.is_empty();
        let stored = self.xds.store_activity(NewXdsActivity { source_id, activity, schema, message_id, runs }).await?;
        if started {
            self.signals.work_available.notify_waiters();
        }
        match stored {
            Ok(accepted) => Ok(Some(accepted)),
            Err(XdsRefusal::Duplicate(_)) => Ok(None),
            Err(XdsRefusal::SourceSchema { source_id, schema_id }) => {
                let why = format!(
                    "XDS source {source_id} is associated with schema {schema_id:?}; its activities must follow it"
                );
                Err(self.refuse_conflict(MessageKind::Activity, raw, hints, why).await)
            }
            Err(XdsRefusal::NoSource(id)) => {
                Err(self.refuse_conflict(MessageKind::Activity, raw, hints, format!("XDS source {id} is gone")).await)
            }
        }
    }

    /// Runs for the enabled `xds_activity` triggers the message matches
    /// (while automated jobs are on), each with the message as its context
    /// and whether it waits for an important field to change.
    async fn xds_trigger_runs(
        &self,
        source_id: i64,
        activity: &junction_core::xds::Activity,
    ) -> Result<Vec<(junction_store::NewRun, bool)>> {
        let status_type = activity.fields.get("status_type").and_then(Value::as_str);
        let triggers = self.active_triggers().await?;
        let matched: Vec<(&junction_core::trigger::TriggerSpec, bool)> = triggers
            .iter()
            .filter_map(|t| t.matches_xds(source_id, &activity.schema_id, status_type).map(|on_change| (t, on_change)))
            .collect();
        let specs: Vec<&junction_core::trigger::TriggerSpec> = matched.iter().map(|(t, _)| *t).collect();
        let runs = self
            .trigger_runs(&specs, |trigger| {
                serde_json::json!({
                    "JobName": trigger.application,
                    "Trigger": trigger.name,
                    "XdsActivity": {
                        "source_id": source_id,
                        "schema_id": activity.schema_id,
                        "schema_version": activity.schema_version,
                        "remote_id": activity.remote_id,
                        "event_time": activity.event_time,
                        "fields": activity.fields,
                    },
                })
            })
            .await?;
        Ok(runs.into_iter().map(|(i, run)| (run, matched[i].1)).collect())
    }

    /// Records a message refused before it could be read as JSON (the
    /// server parses the body), so every refused post leaves a trace.
    pub async fn record_xds_malformed(&self, kind: MessageKind, raw: &[u8], status: u16, code: &str, message: &str) {
        let rejection = NewXdsRejection {
            kind: kind.as_str(),
            status,
            code: code.to_string(),
            reason: message.to_string(),
            details: vec![Violation::new("body", "json", message)],
            source_id: None,
            schema_id: None,
            schema_version: None,
            body: raw.to_vec(),
        };
        self.record_rejection(rejection).await;
    }

    /// Records a message refused before it was read (the server's NUL
    /// check), as a validation failure; the error to answer with.
    pub async fn refuse_xds_message(&self, kind: MessageKind, raw: &[u8], invalid: Invalid) -> EngineError {
        self.refuse(kind, raw, Hints::default(), invalid).await
    }

    async fn refuse(&self, kind: MessageKind, raw: &[u8], hints: Hints, invalid: Invalid) -> EngineError {
        let rejection = NewXdsRejection {
            kind: kind.as_str(),
            status: 400,
            code: "validation_failed".into(),
            reason: invalid.to_string(),
            details: invalid.0.clone(),
            source_id: hints.source_id,
            schema_id: hints.schema_id,
            schema_version: hints.schema_version,
            body: raw.to_vec(),
        };
        self.record_rejection(rejection).await;
        EngineError::Invalid(invalid)
    }

    async fn refuse_conflict(&self, kind: MessageKind, raw: &[u8], hints: Hints, why: String) -> EngineError {
        let rejection = NewXdsRejection {
            kind: kind.as_str(),
            status: 409,
            code: "conflict".into(),
            reason: why.clone(),
            details: vec![Violation::new("source_association_key", "source_schema", why.clone())],
            source_id: hints.source_id,
            schema_id: hints.schema_id,
            schema_version: hints.schema_version,
            body: raw.to_vec(),
        };
        self.record_rejection(rejection).await;
        EngineError::Conflict(why)
    }

    /// A rejection that cannot be recorded is logged; the sender still
    /// gets its refusal (never a 500 for its bad message).
    async fn record_rejection(&self, rejection: NewXdsRejection) {
        if let Err(e) = self.store.insert_xds_rejection(&rejection).await {
            tracing::error!(error = %e, kind = rejection.kind, reason = %rejection.reason, "recording a refused XDS message failed");
        }
    }
}

fn unknown_source() -> Violation {
    Violation::new("source_association_key", "unknown", "no XDS source has this association key")
}
