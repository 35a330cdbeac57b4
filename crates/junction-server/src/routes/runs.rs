//! Runs and tasks (spec 004): start with `?wait=`, inspect, read logs,
//! revoke, replay.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jiff::Timestamp;
use junction_core::Invalid;
use junction_engine::{masked_vars, RunRequest};
use junction_store::{RunRecord, TaskRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Caller, JsonBody, PathParam, QueryParams};
use crate::routes::CommonErrors;
use crate::AppState;

/// Longest `?wait=` (spec 004).
pub(crate) const MAX_WAIT_SECS: u64 = 30;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(run_named))
        .routes(routes!(run_by_body))
        .routes(routes!(get_task))
        .routes(routes!(task_log))
        .routes(routes!(last_run))
        .routes(routes!(list_runs))
        .routes(routes!(revoke))
        .routes(routes!(revoke_all))
        .routes(routes!(replay))
        .routes(routes!(run_step))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Seconds to wait for the run to end (at most 30).
    wait: Option<f64>,
}

/// Body of a run request. `params` are variable values for this run; they
/// may also carry `queue`, `configuration` and `log_level`.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// Application name (`POST /applications/run` only).
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    params: Map<String, Value>,
    #[serde(default)]
    configuration: Option<String>,
    #[serde(default)]
    queue: Option<String>,
    /// 10 debug, 20 info, 30 warning, 40 error.
    #[serde(default)]
    log_level: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct StepView {
    id: String,
    href: String,
    name: String,
    state: String,
    attempts: i64,
    result: Option<String>,
    traceback: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TriggeredBy {
    application_id: String,
    triggered_by: String,
}

/// A run, in spec 004's shape.
#[derive(Serialize, ToSchema)]
pub struct RunView {
    id: String,
    href: String,
    app_name: String,
    /// Variables of the run; encrypted ones masked.
    #[schema(value_type = Object)]
    app_vars: Value,
    state: String,
    queue: String,
    configuration: Option<String>,
    log_level: i64,
    /// Seconds since the epoch (spec 004), when the first step started.
    start_time: Option<i64>,
    end_time: Option<i64>,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    error: Option<String>,
    steps: Vec<StepView>,
    triggered_by: Vec<TriggeredBy>,
    /// Flow runs only: per flow step `success`, `error`, `ignore` and
    /// `pagesGenerated` / `pagesProcessed`, live while the run goes.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    counters: Option<Value>,
    /// Flow runs only, once ended: `completed`, `completed_with_errors`,
    /// `failed` or `canceled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<String>,
}

/// A step task of a run.
#[derive(Serialize, ToSchema)]
pub struct TaskView {
    id: String,
    href: String,
    run_id: String,
    run_href: String,
    name: String,
    step: String,
    step_version: Option<i64>,
    state: String,
    attempts: i64,
    result: Option<String>,
    traceback: Option<String>,
    /// What the step saved for the next steps.
    #[schema(value_type = Object)]
    data: Option<Value>,
    log: Vec<String>,
}

fn step_view(t: &TaskRecord) -> StepView {
    StepView {
        href: format!("/api/v1/tasks/{}", t.id),
        id: t.id.clone(),
        name: t.step_name.clone(),
        state: t.state.public().as_str().to_string(),
        attempts: t.attempts,
        result: t.result.clone(),
        traceback: t.traceback.clone(),
    }
}

pub(crate) async fn run_view(state: &AppState, run: RunRecord) -> ApiResult<RunView> {
    let store = state.engine.store();
    let tasks = store.run_tasks(&run.id).await?;
    let secret_names: Vec<String> = store.run_secret_params(&run.id).await?.into_iter().map(|(n, _)| n).collect();
    let (counters, outcome) = match junction_engine::flow_of_run(&run) {
        None => (None, None),
        Some(_) => {
            let counters = state.engine.flow_run_progress(&run).await?;
            let outcome = match run.state.public().as_str() {
                "SUCCESS" => tasks.first().and_then(|t| t.result.clone()),
                "FAILURE" => Some("failed".to_string()),
                "REVOKED" => Some("canceled".to_string()),
                _ => None,
            };
            (Some(counters), outcome)
        }
    };
    Ok(RunView {
        counters,
        outcome,
        href: format!("/api/v1/tasks/{}", run.id),
        app_name: run.application.clone(),
        app_vars: masked_vars(&run, &secret_names),
        state: run.state.public().as_str().to_string(),
        queue: run.queue.clone(),
        configuration: run.configuration.clone(),
        log_level: run.log_level,
        start_time: run.started_at.map(|t| t.as_second()),
        end_time: run.finished_at.map(|t| t.as_second()),
        created_at: run.created_at,
        error: run.error.clone(),
        steps: tasks.iter().map(step_view).collect(),
        triggered_by: vec![TriggeredBy {
            application_id: run.id.clone(),
            triggered_by: run.triggered_by.clone().unwrap_or_else(|| run.trigger_kind.to_uppercase()),
        }],
        id: run.id,
    })
}

/// `?wait=` checked: 0 to 30 seconds.
pub(crate) fn wait_of(wait: Option<f64>) -> ApiResult<Duration> {
    match wait {
        None => Ok(Duration::ZERO),
        Some(w) if w.is_finite() && (0.0..=MAX_WAIT_SECS as f64).contains(&w) => Ok(Duration::from_secs_f64(w)),
        Some(_) => Err(Invalid::one("wait", "range", format!("must be between 0 and {MAX_WAIT_SECS} seconds")).into()),
    }
}

async fn start(
    state: AppState,
    caller: Caller,
    name: String,
    body: RunBody,
    wait: Duration,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let idempotency_key = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str().map(str::to_string).map_err(|_| Invalid::one("Idempotency-Key", "text", "must be visible ASCII"))
        })
        .transpose()?;
    let request = RunRequest {
        params: body.params,
        configuration: body.configuration,
        queue: body.queue,
        log_level: body.log_level,
        trigger_kind: "manual".into(),
        triggered_by: Some(caller.0.name.clone()),
        context: None,
        idempotency_key,
        secret_params: Vec::new(),
        max_active: None,
    };
    let run = state.engine.start_run(&name, request).await?;
    let run = if wait > Duration::ZERO { state.engine.wait_run(&run.id, wait).await? } else { run };
    let status = if run.state.is_final() { StatusCode::OK } else { StatusCode::ACCEPTED };
    let view = run_view(&state, run).await?;
    Ok((status, Json(view)).into_response())
}

/// Start a run of an application. `?wait=N` (≤ 30 s): 200 with the final
/// state if it ends in time, else 202 with the run to poll.
#[utoipa::path(post, path = "/api/v1/applications/{name}/run", tag = "runs", request_body = RunBody,
    params(("name" = String, Path, description = "Application name"), WaitQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "The same key within 24 h returns the same run")),
    responses((status = 200, description = "The run ended within the wait", body = RunView),
        (status = 202, description = "The run is queued or running", body = RunView),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), CommonErrors))]
async fn run_named(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(name): PathParam<String>,
    QueryParams(q): QueryParams<WaitQuery>,
    headers: HeaderMap,
    body: Option<JsonBody<RunBody>>,
) -> ApiResult<Response> {
    let body = body.map(|b| b.0).unwrap_or_default();
    if body.name.as_deref().is_some_and(|n| n != name) {
        return Err(Invalid::one("name", "matches_path", "the body's name differs from the name in the path").into());
    }
    let wait = wait_of(q.wait)?;
    start(state, caller, name, body, wait, &headers).await
}

/// Start a run of the application named in the body (spec 004).
#[utoipa::path(post, path = "/api/v1/applications/run", tag = "runs", request_body = RunBody,
    params(WaitQuery, ("Idempotency-Key" = Option<String>, Header, description = "The same key within 24 h returns the same run")),
    responses((status = 200, body = RunView), (status = 202, body = RunView),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), CommonErrors))]
async fn run_by_body(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<WaitQuery>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<RunBody>,
) -> ApiResult<Response> {
    let name = body.name.clone().ok_or_else(|| Invalid::one("name", "required", "name the application to run"))?;
    let wait = wait_of(q.wait)?;
    start(state, caller, name, body, wait, &headers).await
}

/// A run (spec 004's shape) or one step task of a run.
#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "runs",
    params(("id" = String, Path, description = "Run id (isapp-...) or task id")),
    responses((status = 200, description = "A RunView for a run id, a TaskView for a task id", body = RunView),
        (status = 404, body = ErrorBody), CommonErrors))]
async fn get_task(State(state): State<AppState>, PathParam(id): PathParam<String>) -> ApiResult<Response> {
    let (run, task) = state.engine.find_run(&id).await?;
    match task {
        None => Ok(Json(run_view(&state, run).await?).into_response()),
        Some(t) => {
            let log = state.engine.store().logs(&run.id, Some(&t.id), 0, 100_000).await?;
            Ok(Json(TaskView {
                href: format!("/api/v1/tasks/{}", t.id),
                run_href: format!("/api/v1/tasks/{}", run.id),
                run_id: run.id,
                name: t.step_name.clone(),
                step: t.step_file.clone(),
                step_version: t.step_version,
                state: t.state.public().as_str().to_string(),
                attempts: t.attempts,
                result: t.result.clone(),
                traceback: t.traceback.clone(),
                data: t.output.clone(),
                log: log.into_iter().map(|(_, l)| l.line).collect(),
                id: t.id,
            })
            .into_response())
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Only lines after this line number (for following a live log; the
    /// `X-Last-Line` header of the previous answer).
    after: Option<i64>,
    /// With `sig`: a signed link from a job's history, which reads this
    /// one log without a token until this time (seconds since the epoch).
    #[allow(dead_code)]
    pub expires: Option<i64>,
    #[allow(dead_code)]
    pub sig: Option<String>,
}

/// The log of a run or of one step task, as plain text.
#[utoipa::path(get, path = "/api/v1/tasks/{id}/log", tag = "runs",
    params(("id" = String, Path, description = "Run or task id"), LogQuery),
    responses((status = 200, description = "The log, one line per line; header X-Last-Line", content_type = "text/plain", body = String),
        (status = 404, body = ErrorBody), CommonErrors))]
async fn task_log(
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
    QueryParams(q): QueryParams<LogQuery>,
) -> ApiResult<Response> {
    let (run, task) = state.engine.find_run(&id).await?;
    let lines =
        state.engine.store().logs(&run.id, task.as_ref().map(|t| t.id.as_str()), q.after.unwrap_or(0), 100_000).await?;
    let last = lines.last().map(|(n, _)| *n).unwrap_or(q.after.unwrap_or(0));
    let mut text = String::new();
    for (_, l) in &lines {
        text.push_str(&l.line);
        text.push('\n');
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_string()),
            (header::HeaderName::from_static("x-last-line"), last.to_string()),
        ],
        [(header::HeaderName::from_static("x-run-state"), run.state.public().as_str().to_string())],
        text,
    )
        .into_response())
}

/// The last run of an application (spec 004's `/logs`).
#[utoipa::path(get, path = "/api/v1/applications/{name}/logs", tag = "runs",
    params(("name" = String, Path, description = "Application name")),
    responses((status = 200, body = RunView), (status = 404, body = ErrorBody), CommonErrors))]
async fn last_run(State(state): State<AppState>, PathParam(name): PathParam<String>) -> ApiResult<Json<RunView>> {
    let run = state.engine.store().list_runs(&name, 1, 0).await?.into_iter().next();
    let run = run.ok_or_else(|| ApiError::not_found(format!("a run of application {name:?}")))?;
    Ok(Json(run_view(&state, run).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// At most this many (1-200, default 50).
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

/// Run history of an application, newest first.
#[utoipa::path(get, path = "/api/v1/applications/{name}/runs", tag = "runs",
    params(("name" = String, Path, description = "Application name"), Page),
    responses((status = 200, body = [RunView]), (status = 400, body = ErrorBody), CommonErrors))]
async fn list_runs(
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
    QueryParams(p): QueryParams<Page>,
) -> ApiResult<Json<Vec<RunView>>> {
    let (limit, offset) = p.checked()?;
    let runs = state.engine.store().list_runs(&name, limit, offset).await?;
    let mut out = Vec::with_capacity(runs.len());
    for r in runs {
        out.push(run_view(&state, r).await?);
    }
    Ok(Json(out))
}

/// Stop a run (or the run of a step task): running steps are killed,
/// waiting ones cancelled; state `REVOKED`. 409 if it has ended.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/revoke", tag = "runs",
    params(("id" = String, Path, description = "Run or task id")),
    responses((status = 200, body = RunView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), CommonErrors))]
async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> ApiResult<Json<RunView>> {
    let (run, _) = state.engine.find_run(&id).await?;
    state.engine.revoke_run(&run.id, &caller.0.name).await?;
    let run = state.engine.store().get_run(&run.id).await?.ok_or_else(|| ApiError::not_found("run"))?;
    Ok(Json(run_view(&state, run).await?))
}

#[derive(Serialize, ToSchema)]
pub struct Revoked {
    revoked: usize,
}

/// Revoke every run that has not ended.
#[utoipa::path(delete, path = "/api/v1/tasks", tag = "runs", responses((status = 200, body = Revoked), CommonErrors))]
async fn revoke_all(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Revoked>> {
    Ok(Json(Revoked { revoked: state.engine.revoke_all(&caller.0.name).await? }))
}

/// A new run with the same variables, configuration and queue. 409 when the
/// application was deleted.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/replay", tag = "runs",
    params(("id" = String, Path, description = "Run or task id")),
    responses((status = 202, body = RunView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), CommonErrors))]
async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    let (run, _) = state.engine.find_run(&id).await?;
    let new = state.engine.replay_run(&run.id, &caller.0.name).await?;
    Ok((StatusCode::ACCEPTED, Json(run_view(&state, new).await?)))
}

/// What a lone step run answers when it ended in time.
#[derive(Serialize, ToSchema)]
pub struct StepRunView {
    #[serde(flatten)]
    run: RunView,
    /// The step's log lines.
    logs: Vec<String>,
    /// What the step saved.
    #[schema(value_type = Object)]
    output: Option<Value>,
    /// The step's result message (JavaScript: the resolve value).
    result: Option<String>,
}

/// Run one stored step alone (spec 004): the body names the step and gives
/// its parameters at the top level (a JavaScript step gets them as
/// `args.arguments`). Waits 5 s by default (`?wait=` up to 30): 200 with
/// logs, output and result when done, else 202 with the task to poll.
#[utoipa::path(post, path = "/api/v1/steps/run", tag = "runs", request_body = Object,
    params(WaitQuery),
    responses((status = 200, body = StepRunView), (status = 202, body = RunView),
        (status = 400, description = "A required parameter is missing", body = ErrorBody),
        (status = 404, body = ErrorBody), CommonErrors))]
async fn run_step(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(q): QueryParams<WaitQuery>,
    JsonBody(mut body): JsonBody<Map<String, Value>>,
) -> ApiResult<Response> {
    let name = match body.remove("name") {
        Some(Value::String(n)) => n,
        _ => return Err(Invalid::one("name", "required", "name the step to run").into()),
    };
    let wait = if q.wait.is_none() { Duration::from_secs(5) } else { wait_of(q.wait)? };
    let run = state.engine.run_step(&name, body, &caller.0.name).await?;
    let run = state.engine.wait_run(&run.id, wait).await?;
    if !run.state.is_final() {
        return Ok((StatusCode::ACCEPTED, Json(run_view(&state, run).await?)).into_response());
    }
    let store = state.engine.store();
    let task = store.run_tasks(&run.id).await?.into_iter().next();
    let logs = store.logs(&run.id, None, 0, 100_000).await?.into_iter().map(|(_, l)| l.line).collect();
    let (output, result) = task.map(|t| (t.output, t.result)).unwrap_or_default();
    let view = run_view(&state, run).await?;
    Ok(Json(StepRunView { run: view, logs, output, result }).into_response())
}
