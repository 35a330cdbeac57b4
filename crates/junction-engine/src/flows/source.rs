//! The exports a flow reads (a wrapper's stack function, or the built-in
//! HTTP and database adapters of `junction-adapters`) behind one
//! `next_page`, and the built-in imports and lookups. The engine itself
//! speaks neither HTTP nor SQL: the adapters do.

use junction_adapters::{AdapterError, DatabaseSource, Databases, HttpSource, ImportResult};
use junction_core::flow::adapters::{Connection, DatabaseImport, HttpExport, HttpImport};
use junction_core::flow::document::{Export, ExportAdapter, ExportType, HookRef, Processor, MAX_IDENTICAL_RESPONSES};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::page::SubmitError;
use super::run::RunCtx;

/// What the flows share in one process: one HTTP client, one pool per
/// target database.
pub(crate) struct FlowIo {
    pub http: reqwest::Client,
    pub databases: Databases,
}

impl FlowIo {
    pub fn new() -> FlowIo {
        FlowIo { http: junction_adapters::http_client(), databases: Databases::default() }
    }
}

/// Boxes a future as `Send`, proven here with this call's own lifetimes.
/// Without it, futures that borrow across an await inside the adapters
/// (sqlx executors, streams of closures) make the task's whole future
/// `Send` only for one lifetime (rust#102211), and a spawned task must be
/// `Send` for all.
pub(crate) fn boxed<'a, T>(
    f: impl std::future::Future<Output = T> + Send + 'a,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>> {
    Box::pin(f)
}

pub(crate) enum SourceError {
    /// 401/403 or `connectionOffline`: the connection goes offline.
    Offline(String),
    Failed(String),
}

impl From<AdapterError> for SourceError {
    fn from(e: AdapterError) -> Self {
        match e {
            AdapterError::Offline(m) => SourceError::Offline(m),
            AdapterError::Failed(m) => SourceError::Failed(m),
        }
    }
}

/// One page from an export, with the state to resume after it.
pub(crate) struct Page {
    pub records: Vec<Value>,
    pub errors: Vec<Value>,
    pub state: Option<Value>,
    pub last: bool,
}

pub(crate) enum Exporter {
    Wrapper(Box<WrapperExport>),
    Http(Box<HttpSource>),
    Database(Box<DatabaseSource>),
    /// A webhook export: the page its post brought, or nothing (a run not
    /// started by a post).
    Fixed(Option<Vec<Value>>),
    /// The export cannot start (a connection of the wrong kind).
    Broken(String),
}

pub(crate) struct WrapperExport {
    function: HookRef,
    options: Map<String, Value>,
    state: Option<Value>,
    /// Digest of the last answer and how many times in a row it came.
    last: Option<[u8; 32]>,
    repeats: usize,
    done: bool,
}

impl Exporter {
    /// `last_ms`: the delta time (lag already subtracted); `state`: where a
    /// resumed run left off.
    pub fn open(
        ctx: &RunCtx,
        export: &Export,
        last_ms: Option<i64>,
        state: Option<Value>,
        posted: Option<Vec<Value>>,
    ) -> Exporter {
        let connection = export.connection.as_deref().and_then(|c| ctx.flow.connections.get(c));
        match &export.adapter {
            ExportAdapter::Wrapper { function, configuration } => {
                let mut o = Map::new();
                match &export.export_type {
                    ExportType::All => {}
                    ExportType::Delta { date_field, .. } => {
                        o.insert("type".into(), json!("delta"));
                        o.insert("delta".into(), json!({"dateField": date_field, "lastExecutionTime": last_ms}));
                    }
                    ExportType::Once { boolean_field } => {
                        o.insert("type".into(), json!("once"));
                        o.insert("once".into(), json!({"booleanField": boolean_field}));
                    }
                    ExportType::Test { limit } => {
                        o.insert("type".into(), json!("test"));
                        o.insert("test".into(), json!({"limit": limit}));
                    }
                }
                o.insert("connection".into(), ctx.connection_options(export.connection.as_deref()));
                o.insert("_exportId".into(), json!(export.name));
                o.insert("_flowId".into(), json!(ctx.flow_name));
                o.insert("_integrationId".into(), json!(ctx.flow_name));
                o.insert("settings".into(), Value::Object(ctx.flow.settings.clone()));
                o.insert("configuration".into(), configuration.clone());
                if let Some(event) = &ctx.event {
                    o.insert("event".into(), event.clone());
                }
                o.insert("bearerToken".into(), json!(ctx.bearer));
                let (state, last, repeats, done) = match state {
                    Some(s) => (
                        s.get("state").cloned().filter(|v| !v.is_null()),
                        s.get("digest")
                            .and_then(Value::as_str)
                            .and_then(|d| hex::decode(d).ok())
                            .and_then(|d| d.try_into().ok()),
                        s.get("repeats").and_then(Value::as_u64).unwrap_or(0) as usize,
                        s.get("done").and_then(Value::as_bool).unwrap_or(false),
                    ),
                    None => (None, None, 0, false),
                };
                Exporter::Wrapper(Box::new(WrapperExport {
                    function: function.clone(),
                    options: o,
                    state,
                    last,
                    repeats,
                    done,
                }))
            }
            ExportAdapter::Http(http) => match connection {
                Some(Connection::Http(conn)) => Exporter::Http(Box::new(HttpSource::new(
                    &ctx.engine.flow_io.http,
                    conn,
                    http,
                    ctx.vars(),
                    export.page_size,
                    state,
                ))),
                _ => Exporter::Broken(format!("{}: an http export needs an http connection", export.name)),
            },
            // A resumed run whose page was committed has nothing left.
            ExportAdapter::Webhook(_) => Exporter::Fixed(posted.filter(|_| state.is_none())),
            ExportAdapter::Database(db) => match connection {
                Some(Connection::Database(conn)) => {
                    Exporter::Database(Box::new(DatabaseSource::new(conn, db, ctx.vars(), export.page_size, state)))
                }
                _ => Exporter::Broken(format!("{}: a database export needs a database connection", export.name)),
            },
        }
    }

    pub async fn next_page(&mut self, ctx: &RunCtx) -> Result<Option<Page>, SourceError> {
        match self {
            Exporter::Broken(m) => Err(SourceError::Failed(m.clone())),
            Exporter::Fixed(records) => Ok(records.take().map(|records| Page {
                records,
                errors: Vec::new(),
                state: Some(json!({"done": true})),
                last: true,
            })),
            Exporter::Http(source) => Ok(boxed(source.next_page()).await?.map(|p| Page {
                records: p.records,
                errors: Vec::new(),
                state: Some(p.state),
                last: p.last,
            })),
            Exporter::Database(source) => Ok(boxed(source.next_page()).await?.map(|p| Page {
                records: p.records,
                errors: Vec::new(),
                state: Some(p.state),
                last: p.last,
            })),
            Exporter::Wrapper(w) => boxed(w.next_page(ctx)).await,
        }
    }
}

impl WrapperExport {
    /// Calls the export function with the state its last answer gave,
    /// until it says `lastPage`.
    async fn next_page(&mut self, ctx: &RunCtx) -> Result<Option<Page>, SourceError> {
        if self.done {
            return Ok(None);
        }
        let mut options = self.options.clone();
        if let Some(state) = &self.state {
            options.insert("state".into(), state.clone());
        }
        let answer = ctx
            .call_kind(self.function.clone(), "wrapper", Value::Object(options))
            .await
            .map_err(|m| SourceError::Failed(format!("the wrapper export failed: {m}")))?;
        let digest: [u8; 32] = Sha256::digest(answer.to_string().as_bytes()).into();
        if self.last == Some(digest) {
            self.repeats += 1;
        } else {
            self.repeats = 1;
        }
        self.last = Some(digest);
        if self.repeats > MAX_IDENTICAL_RESPONSES {
            return Err(SourceError::Failed(format!(
                "the wrapper export answered the same response {} times in a row: taken as an infinite loop, the export stops",
                self.repeats
            )));
        }
        let Some(answer) = answer.as_object() else {
            return Err(SourceError::Failed(format!(
                "a wrapper export answers {{data, errors, lastPage, state}}; it answered {}",
                super::page::shape(&answer)
            )));
        };
        if answer.get("connectionOffline").and_then(Value::as_bool) == Some(true) {
            let reason = answer
                .get("errors")
                .and_then(|e| e[0]["message"].as_str())
                .unwrap_or("the wrapper export said connectionOffline")
                .to_string();
            return Err(SourceError::Offline(reason));
        }
        let records = match answer.get("data") {
            Some(Value::Array(items)) => items.clone(),
            None | Some(Value::Null) => Vec::new(),
            Some(other) => vec![other.clone()],
        };
        let errors = match answer.get("errors") {
            Some(Value::Array(e)) => e.clone(),
            _ => Vec::new(),
        };
        let last = answer.get("lastPage").and_then(Value::as_bool).unwrap_or(false);
        self.state = answer.get("state").cloned().filter(|s| !s.is_null());
        self.done = last;
        let state = json!({
            "state": self.state,
            "digest": hex::encode(digest),
            "repeats": self.repeats,
            "done": last,
        });
        Ok(Some(Page { records, errors, state: Some(state), last }))
    }
}

fn results(results: Vec<ImportResult>) -> Vec<Value> {
    results
        .into_iter()
        .map(|r| {
            json!({"statusCode": r.status_code, "errors": r.errors, "ignored": r.ignored, "id": r.id, "_json": r.json})
        })
        .collect()
}

fn submit_error(e: AdapterError) -> SubmitError {
    match e {
        AdapterError::Offline(m) => SubmitError::Offline(m),
        AdapterError::Failed(m) => SubmitError::Failed(m),
    }
}

pub(crate) async fn http_import(
    ctx: &RunCtx,
    p: &Processor,
    import: &HttpImport,
    records: &[Value],
) -> Result<Vec<Value>, SubmitError> {
    let Some(Connection::Http(conn)) = p.connection.as_deref().and_then(|c| ctx.flow.connections.get(c)) else {
        return Err(SubmitError::Failed(format!("{}: an http import needs an http connection", p.name)));
    };
    let vars = ctx.vars();
    boxed(junction_adapters::http_import(&ctx.engine.flow_io.http, conn, import, &vars, records))
        .await
        .map(results)
        .map_err(submit_error)
}

pub(crate) async fn database_import(
    ctx: &RunCtx,
    p: &Processor,
    import: &DatabaseImport,
    records: &[Value],
) -> Result<Vec<Value>, SubmitError> {
    let Some(Connection::Database(conn)) = p.connection.as_deref().and_then(|c| ctx.flow.connections.get(c)) else {
        return Err(SubmitError::Failed(format!("{}: a database import needs a database connection", p.name)));
    };
    boxed(ctx.engine.flow_io.databases.database_import(conn, import, records)).await.map(results).map_err(submit_error)
}

/// An HTTP lookup for one record: the records of the answer's first page.
pub(crate) async fn http_lookup(
    ctx: &RunCtx,
    p: &Processor,
    export: &HttpExport,
    record: &Value,
) -> Result<Vec<Value>, SourceError> {
    let Some(Connection::Http(conn)) = p.connection.as_deref().and_then(|c| ctx.flow.connections.get(c)) else {
        return Err(SourceError::Failed(format!("{}: an http lookup needs an http connection", p.name)));
    };
    let mut vars = ctx.vars();
    vars["record"] = record.clone();
    let mut source = HttpSource::new(&ctx.engine.flow_io.http, conn, export, vars, 1_000, None);
    Ok(boxed(source.next_page()).await?.map(|p| p.records).unwrap_or_default())
}
