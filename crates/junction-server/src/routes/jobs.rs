//! Schedules (spec 004's `/schedule`), spec 000's jobs (grid, history,
//! stop, the Enabled toggle), automated triggers and server settings.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use junction_core::Invalid;
use junction_engine::{Job, JobRun, Schedule};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Caller, JsonBody, PathParam, QueryParams};
use crate::routes::runs::{run_view, Page, RunView};
use crate::routes::CommonErrors;
use crate::AppState;

/// How long a log link in a history answer works without a token.
const LOG_LINK_TTL_SECS: i64 = 3600;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_schedules, put_schedule))
        .routes(routes!(get_schedule, delete_schedule))
        .routes(routes!(list_jobs))
        .routes(routes!(patch_job))
        .routes(routes!(stop_job))
        .routes(routes!(job_history))
        .routes(routes!(trigger))
        .routes(routes!(get_settings, put_settings))
}

fn schedule_json(state: &AppState, s: &Schedule) -> Value {
    s.to_json(state.engine.store().now())
}

/// Every schedule.
#[utoipa::path(get, path = "/api/v1/schedule", tag = "schedules",
    responses((status = 200, description = "Schedule entries (spec 004 meta.json shape) with id, next_fire_at, next_run", body = [Object]), CommonErrors))]
async fn list_schedules(State(state): State<AppState>) -> ApiResult<Json<Vec<Value>>> {
    let list = state.engine.list_schedules(None).await?;
    Ok(Json(list.iter().map(|s| schedule_json(&state, s)).collect()))
}

/// Create a schedule, or replace the one whose `id` the body gives. The body
/// is a schedule entry of spec 004's meta.json: `application_id`, optional
/// `entry_id`, `params`, `enabled`, `timezone` (IANA, default UTC) and
/// `schedule: {schedule_type: frequency|crontab|interval|cron, schedule_info}`.
#[utoipa::path(post, path = "/api/v1/schedule", tag = "schedules", request_body = Object,
    responses((status = 201, description = "Created", body = Object), (status = 200, description = "Replaced", body = Object),
        (status = 400, body = ErrorBody), CommonErrors))]
async fn put_schedule(State(state): State<AppState>, JsonBody(body): JsonBody<Value>) -> ApiResult<Response> {
    let (schedule, created) = state.engine.put_schedule(&body).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(schedule_json(&state, &schedule))).into_response())
}

/// One schedule.
#[utoipa::path(get, path = "/api/v1/schedule/{id}", tag = "schedules",
    params(("id" = String, Path, description = "Schedule id")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody), CommonErrors))]
async fn get_schedule(State(state): State<AppState>, PathParam(id): PathParam<String>) -> ApiResult<Json<Value>> {
    let s = state.engine.get_schedule(&id).await?;
    Ok(Json(schedule_json(&state, &s)))
}

/// Delete a schedule. A tick due at this moment does not fire afterwards.
#[utoipa::path(delete, path = "/api/v1/schedule/{id}", tag = "schedules",
    params(("id" = String, Path, description = "Schedule id")),
    responses((status = 204), (status = 404, body = ErrorBody), CommonErrors))]
async fn delete_schedule(State(state): State<AppState>, PathParam(id): PathParam<String>) -> ApiResult<StatusCode> {
    state.engine.delete_schedule(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The Integration Hub grid (spec 000): every application as a job with its
/// trigger, schedule in words, last run and next run.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", responses((status = 200, body = [Job]), CommonErrors))]
async fn list_jobs(State(state): State<AppState>) -> ApiResult<Json<Vec<Job>>> {
    Ok(Json(state.engine.jobs().await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobPatch {
    /// The Enabled toggle of a scheduled job.
    enabled: bool,
}

/// Turn a scheduled job's schedule on or off. A schedule turned on waits for
/// its next tick (missed ones are not caught up). 409 if the job has no
/// schedule.
#[utoipa::path(patch, path = "/api/v1/jobs/{name}", tag = "jobs", request_body = JobPatch,
    params(("name" = String, Path, description = "Job (application) name")),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), CommonErrors))]
async fn patch_job(
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
    JsonBody(patch): JsonBody<JobPatch>,
) -> ApiResult<Json<Job>> {
    state.engine.set_job_enabled(&name, patch.enabled).await?;
    let job = state.engine.jobs().await?.into_iter().find(|j| j.name == name);
    Ok(Json(job.ok_or_else(|| crate::error::ApiError::not_found(format!("job {name:?}")))?))
}

#[derive(Serialize, ToSchema)]
pub struct Stopped {
    /// The runs stopped.
    stopped: Vec<String>,
}

/// Stop every running instance of a job; each run's log ends with "Job was
/// stopped by user".
#[utoipa::path(post, path = "/api/v1/jobs/{name}/stop", tag = "jobs",
    params(("name" = String, Path, description = "Job (application) name")),
    responses((status = 200, body = Stopped), (status = 404, body = ErrorBody), CommonErrors))]
async fn stop_job(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(name): PathParam<String>,
) -> ApiResult<Json<Stopped>> {
    let stopped = state.engine.stop_job(&name, &caller.0.name).await?;
    Ok(Json(Stopped { stopped }))
}

/// One run of a job's history.
#[derive(Serialize, ToSchema)]
pub struct HistoryEntry {
    #[serde(flatten)]
    run: JobRun,
    /// The run's log as text/plain: a link that works for an hour without a
    /// token (signed; it grants reading this one log only), so it can open
    /// in a new browser tab.
    log_href: String,
}

/// A job's runs, newest first (spec 000's execution history).
#[utoipa::path(get, path = "/api/v1/jobs/{name}/history", tag = "jobs",
    params(("name" = String, Path, description = "Job (application) name"), Page),
    responses((status = 200, body = [HistoryEntry]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), CommonErrors))]
async fn job_history(
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
    QueryParams(p): QueryParams<Page>,
) -> ApiResult<Json<Vec<HistoryEntry>>> {
    let (limit, offset) = p.checked()?;
    let runs = state.engine.job_history(&name, limit, offset).await?;
    let expires = state.engine.store().now().as_second() + LOG_LINK_TTL_SECS;
    Ok(Json(runs.into_iter().map(|run| HistoryEntry { log_href: log_link(&state, &run.id, expires), run }).collect()))
}

/// The message a log link signs.
pub fn log_link_message(id: &str, expires: i64) -> String {
    format!("log\0{id}\0{expires}")
}

fn log_link(state: &AppState, id: &str, expires: i64) -> String {
    let sig = state.engine.store().sign(&log_link_message(id, expires));
    format!("/api/v1/tasks/{id}/log?expires={expires}&sig={sig}")
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct TriggerBody {
    /// What triggered the job (spec 000's plutoraValues: `Build`, `Tecr`,
    /// `DeploymentPlan`, `System`, `Environment`...); `JobName` is added
    /// when absent.
    #[serde(default)]
    #[schema(value_type = Object)]
    context: Map<String, Value>,
    /// New values for the job's declared parameters.
    #[serde(default)]
    #[schema(value_type = Object)]
    arguments: Map<String, Value>,
}

/// Run a job as an automated job (spec 000). 403 while the setting
/// `automated_jobs_enabled` is off; 400 for a parameter the job does not
/// declare; 429 when the job's `max_concurrency` automated runs are going.
#[utoipa::path(post, path = "/api/v1/applications/{name}/trigger", tag = "jobs", request_body = TriggerBody,
    params(("name" = String, Path, description = "Job (application) name")),
    responses((status = 202, body = RunView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), CommonErrors))]
async fn trigger(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(name): PathParam<String>,
    body: Option<JsonBody<TriggerBody>>,
) -> ApiResult<Response> {
    let body = body.map(|b| b.0).unwrap_or_default();
    let run = state.engine.trigger(&name, body.context, body.arguments, &caller.0.name).await?;
    Ok((StatusCode::ACCEPTED, Json(run_view(&state, run).await?)).into_response())
}

/// Server settings.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// "Enable Automated Jobs using Integration Hub" (spec 000); off by default.
    automated_jobs_enabled: bool,
}

#[utoipa::path(get, path = "/api/v1/settings", tag = "settings", responses((status = 200, body = Settings), CommonErrors))]
async fn get_settings(State(state): State<AppState>) -> ApiResult<Json<Settings>> {
    Ok(Json(Settings { automated_jobs_enabled: state.engine.automated_jobs_enabled().await? }))
}

/// Change server settings (administrators).
#[utoipa::path(put, path = "/api/v1/settings", tag = "settings", request_body = Settings,
    responses((status = 200, body = Settings), (status = 400, body = ErrorBody), CommonErrors))]
async fn put_settings(State(state): State<AppState>, JsonBody(s): JsonBody<Settings>) -> ApiResult<Json<Settings>> {
    state.engine.set_automated_jobs_enabled(s.automated_jobs_enabled).await?;
    get_settings(State(state)).await
}

impl Page {
    /// `(limit, offset)`: limit 1-200 (default 50), offset ≥ 0.
    pub fn checked(&self) -> Result<(i64, i64), Invalid> {
        crate::extract::page(self.limit, self.offset, 50, 200)
    }
}
