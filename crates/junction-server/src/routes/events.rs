//! Inbound events: companies, Custom CD services, and spec 002's CI/CD job
//! webhook with the listing of what arrived.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::Json;
use junction_store::{CicdJobFilter, CicdJobRecord, CompanyRecord, ServiceRecord, TriggerRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{JsonBody, PathParam, QueryParams};
use crate::routes::CommonErrors;
use crate::AppState;

/// Spec 002 limits a CI/CD job message to 1 MiB.
pub const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_company, list_companies))
        .routes(routes!(create_service, list_services))
        .routes(routes!(list_jobs))
        .routes(routes!(get_job))
        .routes(routes!(put_trigger, list_triggers))
        .routes(routes!(get_trigger, delete_trigger))
        .merge(OpenApiRouter::new().routes(routes!(cicd_job)).layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNamed {
    name: String,
}

/// Create a company (administrators). Its id is what tokens, services and
/// the webhook path name.
#[utoipa::path(post, path = "/api/v1/companies", tag = "events", request_body = NewNamed,
    responses((status = 201, body = CompanyRecord), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), CommonErrors))]
async fn create_company(
    State(state): State<AppState>,
    JsonBody(new): JsonBody<NewNamed>,
) -> ApiResult<(StatusCode, Json<CompanyRecord>)> {
    Ok((StatusCode::CREATED, Json(state.engine.create_company(&new.name).await?)))
}

#[utoipa::path(get, path = "/api/v1/companies", tag = "events", responses((status = 200, body = [CompanyRecord]), CommonErrors))]
async fn list_companies(State(state): State<AppState>) -> ApiResult<Json<Vec<CompanyRecord>>> {
    Ok(Json(state.engine.list_companies().await?))
}

/// Create a Custom CD service of a company; its `id` is the `service_id` of
/// the jobs its agent posts.
#[utoipa::path(post, path = "/api/v1/companies/{id}/cicd_services", tag = "events", request_body = NewNamed,
    params(("id" = i64, Path, description = "Company id")),
    responses((status = 201, body = ServiceRecord), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), CommonErrors))]
async fn create_service(
    State(state): State<AppState>,
    PathParam(id): PathParam<i64>,
    JsonBody(new): JsonBody<NewNamed>,
) -> ApiResult<(StatusCode, Json<ServiceRecord>)> {
    Ok((StatusCode::CREATED, Json(state.engine.create_cicd_service(id, &new.name).await?)))
}

#[utoipa::path(get, path = "/api/v1/companies/{id}/cicd_services", tag = "events",
    params(("id" = i64, Path, description = "Company id")),
    responses((status = 200, body = [ServiceRecord]), (status = 404, body = ErrorBody), CommonErrors))]
async fn list_services(
    State(state): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> ApiResult<Json<Vec<ServiceRecord>>> {
    Ok(Json(state.engine.list_cicd_services(id).await?))
}

/// The answer to an accepted job: the stored item and the runs its
/// triggers started.
#[derive(Serialize, ToSchema)]
pub struct AcceptedJob {
    #[serde(flatten)]
    item: CicdJobRecord,
    triggered_runs: Vec<String>,
}

/// Report a CI/CD job (spec 002), with a token of the company (or a
/// server-wide operator token). Every violation is listed in one 400; a
/// `service_id` that is not a Custom CD service of the company is 422.
/// Each accepted post is a new item with its own `id`, stored before the
/// answer.
#[utoipa::path(post, path = "/webhook/company/{company_id}/cicd_job", tag = "events", request_body = CicdJobRecord,
    params(("company_id" = i64, Path, description = "Company id")),
    responses((status = 201, description = "Stored", body = AcceptedJob), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 422, body = ErrorBody), CommonErrors))]
async fn cicd_job(
    State(state): State<AppState>,
    PathParam(company_id): PathParam<i64>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, Json<AcceptedJob>)> {
    let (item, triggered_runs) = state.engine.ingest_cicd_job(company_id, &body).await?;
    Ok((StatusCode::CREATED, Json(AcceptedJob { item, triggered_runs })))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    service_id: Option<i64>,
    /// `repo_id` or `repo_name`.
    repo: Option<String>,
    status: Option<String>,
    /// `job_start_time` at or after (epoch seconds).
    from: Option<i64>,
    /// `job_start_time` before (epoch seconds).
    to: Option<i64>,
    /// 1-500, default 100.
    limit: Option<i64>,
    offset: Option<i64>,
}

/// The CI/CD jobs a company received, newest start first.
#[utoipa::path(get, path = "/api/v1/companies/{id}/cicd_jobs", tag = "events", operation_id = "list_cicd_jobs",
    params(("id" = i64, Path, description = "Company id"), JobQuery),
    responses((status = 200, body = [CicdJobRecord]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), CommonErrors))]
async fn list_jobs(
    State(state): State<AppState>,
    PathParam(id): PathParam<i64>,
    QueryParams(q): QueryParams<JobQuery>,
) -> ApiResult<Json<Vec<CicdJobRecord>>> {
    let (limit, offset) = crate::extract::page(q.limit, q.offset, 100, 500)?;
    state.engine.company(id).await?;
    let filter = CicdJobFilter { service_id: q.service_id, repo: q.repo, status: q.status, from: q.from, to: q.to };
    let jobs = state.engine.store().list_cicd_jobs(id, &filter, limit, offset).await?;
    Ok(Json(jobs))
}

#[utoipa::path(get, path = "/api/v1/companies/{id}/cicd_jobs/{item_id}", tag = "events",
    params(("id" = i64, Path, description = "Company id"), ("item_id" = i64, Path, description = "Junction's item id")),
    responses((status = 200, body = CicdJobRecord), (status = 404, body = ErrorBody), CommonErrors))]
async fn get_job(
    State(state): State<AppState>,
    PathParam((id, item)): PathParam<(i64, i64)>,
) -> ApiResult<Json<CicdJobRecord>> {
    state.engine.company(id).await?;
    let job = state.engine.store().get_cicd_job(id, item).await?;
    Ok(Json(job.ok_or_else(|| crate::error::ApiError::not_found(format!("CI/CD job {item} of company {id}")))?))
}

/// Create or replace (by name) an event trigger: when an event of kind
/// `cicd_job` matching `filter` (service_id, status, job_type, repo; each a
/// value or a list) arrives — for `company_id`, or any company — run
/// `application` as an automated job with the event as `args.plutoraValues`
/// and `arguments` as parameter values. Runs start only while the setting
/// `automated_jobs_enabled` is on; the run is stored in the transaction
/// that stores the event.
#[utoipa::path(post, path = "/api/v1/triggers", tag = "events", request_body = Object,
    responses((status = 201, body = TriggerRecord), (status = 200, description = "Replaced", body = TriggerRecord),
        (status = 400, body = ErrorBody), CommonErrors))]
async fn put_trigger(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<(StatusCode, Json<TriggerRecord>)> {
    let (record, created) = state.engine.put_trigger(&body).await?;
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(record)))
}

#[utoipa::path(get, path = "/api/v1/triggers", tag = "events", responses((status = 200, body = [TriggerRecord]), CommonErrors))]
async fn list_triggers(State(state): State<AppState>) -> ApiResult<Json<Vec<TriggerRecord>>> {
    Ok(Json(state.engine.list_triggers().await?))
}

#[utoipa::path(get, path = "/api/v1/triggers/{name}", tag = "events",
    params(("name" = String, Path, description = "Trigger name")),
    responses((status = 200, body = TriggerRecord), (status = 404, body = ErrorBody), CommonErrors))]
async fn get_trigger(
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
) -> ApiResult<Json<TriggerRecord>> {
    Ok(Json(state.engine.get_trigger(&name).await?))
}

#[utoipa::path(delete, path = "/api/v1/triggers/{name}", tag = "events",
    params(("name" = String, Path, description = "Trigger name")),
    responses((status = 204), (status = 404, body = ErrorBody), CommonErrors))]
async fn delete_trigger(State(state): State<AppState>, PathParam(name): PathParam<String>) -> ApiResult<StatusCode> {
    state.engine.delete_trigger(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
