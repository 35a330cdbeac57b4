//! Record flows (spec 001): flow documents, their runs (tasks like any
//! other, with per-step counters), and the per-record errors with retry and
//! resolve.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use junction_core::validation::{Invalid, Violations};
use junction_engine::FlowRunRequest;
use junction_store::{FlowErrorFilter, FlowErrorRecord, FlowRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Caller, JsonBody, PathParam, QueryParams};
use crate::routes::runs::{run_view, wait_of, RunView};
use crate::routes::CommonErrors;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_flow, list_flows))
        .routes(routes!(get_flow, delete_flow))
        .routes(routes!(run_flow))
        .routes(routes!(list_errors))
        .routes(routes!(retry_errors))
        .routes(routes!(resolve_errors))
        .routes(routes!(get_retry_data, put_retry_data))
}

/// A webhook export's own URL: no Junction token; the export's token or
/// HMAC signature. A page is at most 5 MB of records.
pub fn webhook_router() -> axum::Router<AppState> {
    let receive = axum::routing::post(receive_webhook)
        .layer(axum::extract::DefaultBodyLimit::max(junction_core::flow::document::MAX_PAGE_BYTES + 64 * 1024));
    axum::Router::new().route("/flows/{name}/webhooks/{export}", receive)
}

/// Takes one post: 202 with the run that carries it as its page, once
/// that run is stored.
async fn receive_webhook(
    State(state): State<AppState>,
    axum::extract::Path((name, export)): axum::extract::Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let content_type = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    match state.engine.receive_flow_webhook(&name, &export, content_type, header, &body).await? {
        Ok(run) => {
            let body = serde_json::json!({"id": run.id, "href": format!("/api/v1/tasks/{}", run.id)});
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
        Err(refused) => {
            let (status, code) = match refused.status {
                401 => (StatusCode::UNAUTHORIZED, "unauthorized"),
                415 => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
                _ => (StatusCode::BAD_REQUEST, "invalid"),
            };
            Err(crate::error::ApiError::new(status, code, &refused.message))
        }
    }
}

fn millis(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_default()
}

/// A stored flow: its latest revision (connection secrets shown as
/// `********`), offline connections and delta times.
#[derive(Debug, Serialize, ToSchema)]
struct FlowView {
    name: String,
    revision: i64,
    #[schema(value_type = Object)]
    document: Value,
    created_at: String,
    updated_at: String,
    /// Connections a source or target took offline, with the reason.
    #[schema(value_type = Object)]
    offline_connections: Value,
    /// Per export: the start of its last successful run (`lastExportDateTime`).
    #[schema(value_type = Object)]
    last_export: Value,
}

fn flow_view(record: FlowRecord, offline: &[(String, i64, String)], last: &[(String, i64)]) -> FlowView {
    FlowView {
        offline_connections: offline
            .iter()
            .map(|(c, at, reason)| (c.clone(), serde_json::json!({"since": millis(*at), "reason": reason})))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        last_export: last
            .iter()
            .map(|(e, at)| (e.clone(), Value::String(millis(*at))))
            .collect::<serde_json::Map<_, _>>()
            .into(),
        name: record.name,
        revision: record.revision,
        document: record.document,
        created_at: millis(record.created_at_ms),
        updated_at: millis(record.updated_at_ms),
    }
}

/// Store a flow document as the flow's next revision (the first creates
/// it). Every hook and wrapper must be a function its stack exports; each
/// problem is a 400 naming its field.
#[utoipa::path(post, path = "/api/v1/flows", tag = "flows",
    request_body(content = Object, content_type = "application/json"),
    responses((status = 201, body = FlowView), (status = 400, body = ErrorBody), (status = 415, body = ErrorBody),
        CommonErrors))]
async fn put_flow(State(state): State<AppState>, JsonBody(document): JsonBody<Value>) -> ApiResult<Response> {
    let record = state.engine.put_flow(&document).await?;
    Ok((StatusCode::CREATED, Json(flow_view(record, &[], &[]))).into_response())
}

/// Every flow at its latest revision.
#[utoipa::path(get, path = "/api/v1/flows", tag = "flows",
    responses((status = 200, body = [FlowView]), CommonErrors))]
async fn list_flows(State(state): State<AppState>) -> ApiResult<Json<Vec<FlowView>>> {
    let flows = state.engine.list_flows().await?;
    Ok(Json(flows.into_iter().map(|f| flow_view(f, &[], &[])).collect()))
}

#[utoipa::path(get, path = "/api/v1/flows/{name}", tag = "flows",
    params(("name" = String, Path, description = "Flow name")),
    responses((status = 200, body = FlowView), (status = 404, body = ErrorBody), CommonErrors))]
async fn get_flow(State(state): State<AppState>, PathParam(name): PathParam<String>) -> ApiResult<Json<FlowView>> {
    let view = state.engine.get_flow(&name).await?;
    Ok(Json(flow_view(view.record, &view.offline, &view.last_exports)))
}

/// Delete a flow with its revisions, secrets, errors and retry data; its
/// runs stay in the history.
#[utoipa::path(delete, path = "/api/v1/flows/{name}", tag = "flows",
    params(("name" = String, Path, description = "Flow name")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody), CommonErrors))]
async fn delete_flow(State(state): State<AppState>, PathParam(name): PathParam<String>) -> ApiResult<StatusCode> {
    state.engine.delete_flow(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RunQuery {
    /// Seconds to wait for the run to end (at most 30).
    wait: Option<f64>,
}

async fn answer_run(state: &AppState, run: junction_store::RunRecord) -> ApiResult<Response> {
    let status = if run.state.is_final() { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, Json(run_view(state, run).await?)).into_response())
}

/// Run a flow. `?wait=N` (≤ 30 s): 200 with the run when it ended in time,
/// else 202; the run is at `/api/v1/tasks/{id}` with `counters` per step.
#[utoipa::path(post, path = "/api/v1/flows/{name}/run", tag = "flows",
    params(("name" = String, Path, description = "Flow name"), RunQuery),
    responses((status = 200, description = "The run ended within the wait", body = RunView),
        (status = 202, description = "The run is queued or going", body = RunView),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody), CommonErrors))]
async fn run_flow(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(name): PathParam<String>,
    QueryParams(q): QueryParams<RunQuery>,
) -> ApiResult<Response> {
    let wait = wait_of(q.wait)?;
    let request = FlowRunRequest { triggered_by: Some(caller.0.name.clone()), ..Default::default() };
    let run = state.engine.run_flow(&name, request, wait).await?;
    answer_run(&state, run).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ErrorsQuery {
    /// Only errors of this flow step.
    step: Option<String>,
    /// Also resolved errors.
    include_resolved: Option<bool>,
    /// Errors older than this id (the next page).
    before: Option<i64>,
    /// 1 to 1,000, default 100.
    limit: Option<i64>,
}

/// One stored record error (integrator.io's fields).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct ErrorView {
    id: i64,
    step: String,
    run_id: String,
    occurred_at: String,
    source: String,
    code: String,
    message: String,
    trace_key: String,
    retry_data_key: Option<String>,
    o_index: i64,
    resolved_at: Option<String>,
    resolved_by: Option<String>,
}

fn error_view(e: FlowErrorRecord) -> ErrorView {
    ErrorView {
        id: e.id,
        step: e.step,
        run_id: e.run_id,
        occurred_at: millis(e.occurred_at_ms),
        source: e.source,
        code: e.code,
        message: e.message,
        trace_key: e.trace_key,
        retry_data_key: e.retry_data_key,
        o_index: e.o_index,
        resolved_at: e.resolved_at_ms.map(millis),
        resolved_by: e.resolved_by,
    }
}

/// A flow's record errors, newest first (open ones unless
/// `include_resolved`).
#[utoipa::path(get, path = "/api/v1/flows/{name}/errors", tag = "flows",
    params(("name" = String, Path, description = "Flow name"), ErrorsQuery),
    responses((status = 200, body = [ErrorView]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        CommonErrors))]
async fn list_errors(
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
    QueryParams(q): QueryParams<ErrorsQuery>,
) -> ApiResult<Json<Vec<ErrorView>>> {
    if q.limit.is_some_and(|l| !(1..=junction_engine::MAX_ERRORS_LISTED).contains(&l)) {
        return Err(Invalid::one("limit", "range", "must be between 1 and 1000").into());
    }
    let filter = FlowErrorFilter {
        step: q.step.as_deref(),
        include_resolved: q.include_resolved.unwrap_or(false),
        before_id: q.before,
        limit: q.limit.unwrap_or(100),
    };
    let errors = state.engine.flow_errors(&name, &filter).await?;
    Ok(Json(errors.into_iter().map(error_view).collect()))
}

/// Which errors: `{"retryDataKeys": [...]}`, or `{"all": true}` with an
/// optional `step`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ErrorSelection {
    #[serde(default)]
    retry_data_keys: Option<Vec<String>>,
    #[serde(default)]
    all: Option<bool>,
    #[serde(default)]
    step: Option<String>,
}

impl ErrorSelection {
    fn keys(&self) -> ApiResult<Option<&[String]>> {
        let mut v = Violations::default();
        match (&self.retry_data_keys, self.all) {
            (Some(keys), None | Some(false)) if !keys.is_empty() => {
                if self.step.is_some() {
                    v.push("step", "conflict", "step goes with all: true");
                }
                if keys.len() > 10_000 {
                    v.push("retryDataKeys", "too_many", "at most 10,000 keys at once");
                }
                v.finish(())?;
                Ok(Some(keys.as_slice()))
            }
            (None, Some(true)) => Ok(None),
            (Some(_), Some(true)) => {
                Err(Invalid::one("all", "conflict", "give retryDataKeys or all: true, not both").into())
            }
            _ => Err(Invalid::one("retryDataKeys", "required", "give retryDataKeys (not empty) or all: true").into()),
        }
    }
}

/// Retry stored errors: their retry data re-enters the step that failed
/// them and goes on through the rest of the flow, as a new run.
#[utoipa::path(post, path = "/api/v1/flows/{name}/errors/retry", tag = "flows",
    params(("name" = String, Path, description = "Flow name"), RunQuery), request_body = ErrorSelection,
    responses((status = 200, description = "The retry run ended within the wait", body = RunView),
        (status = 202, description = "The retry run is queued or going", body = RunView),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 415, body = ErrorBody), CommonErrors))]
async fn retry_errors(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(name): PathParam<String>,
    QueryParams(q): QueryParams<RunQuery>,
    JsonBody(selection): JsonBody<ErrorSelection>,
) -> ApiResult<Response> {
    let wait = wait_of(q.wait)?;
    let keys = selection.keys()?;
    let run = state.engine.retry_flow_errors(&name, keys, selection.step.as_deref(), &caller.0.name).await?;
    let run = if wait.is_zero() { run } else { state.engine.wait_run(&run.id, wait).await? };
    answer_run(&state, run).await
}

#[derive(Debug, Serialize, ToSchema)]
struct Resolved {
    resolved: u64,
}

/// Mark errors resolved.
#[utoipa::path(post, path = "/api/v1/flows/{name}/errors/resolve", tag = "flows",
    params(("name" = String, Path, description = "Flow name")), request_body = ErrorSelection,
    responses((status = 200, body = Resolved), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 415, body = ErrorBody), CommonErrors))]
async fn resolve_errors(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(name): PathParam<String>,
    JsonBody(selection): JsonBody<ErrorSelection>,
) -> ApiResult<Json<Resolved>> {
    let keys = selection.keys()?;
    let resolved = state.engine.resolve_flow_errors(&name, keys, selection.step.as_deref(), &caller.0.name).await?;
    Ok(Json(Resolved { resolved }))
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
struct RetryRecord {
    /// The step the record re-enters.
    #[serde(default, skip_deserializing)]
    step: String,
    /// The record as it entered that step.
    #[schema(value_type = Object)]
    data: Value,
}

/// The record a retry of this key starts from.
#[utoipa::path(get, path = "/api/v1/flows/{name}/errors/{retryDataKey}", tag = "flows",
    params(("name" = String, Path, description = "Flow name"), ("retryDataKey" = String, Path, description = "Retry data key")),
    responses((status = 200, body = RetryRecord), (status = 404, body = ErrorBody), CommonErrors))]
async fn get_retry_data(
    State(state): State<AppState>,
    PathParam((name, key)): PathParam<(String, String)>,
) -> ApiResult<Json<RetryRecord>> {
    let (step, data) = state.engine.flow_retry_record(&name, &key).await?;
    Ok(Json(RetryRecord { step, data }))
}

/// Edit the record a retry starts from: `{"data": ...}`.
#[utoipa::path(put, path = "/api/v1/flows/{name}/errors/{retryDataKey}", tag = "flows",
    params(("name" = String, Path, description = "Flow name"), ("retryDataKey" = String, Path, description = "Retry data key")),
    request_body = RetryRecord,
    responses((status = 200, body = RetryRecord), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 415, body = ErrorBody), CommonErrors))]
async fn put_retry_data(
    State(state): State<AppState>,
    PathParam((name, key)): PathParam<(String, String)>,
    JsonBody(record): JsonBody<RetryRecord>,
) -> ApiResult<Json<RetryRecord>> {
    state.engine.put_flow_retry_record(&name, &key, &record.data).await?;
    let (step, data) = state.engine.flow_retry_record(&name, &key).await?;
    Ok(Json(RetryRecord { step, data }))
}
