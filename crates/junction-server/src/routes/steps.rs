//! `/api/v1/steps`: uploaded code, versioned.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use junction_core::step::{StepSummary, StepUpload, StepVersion};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{JsonBody, PathParam};
use crate::routes::CommonErrors;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload_step, list_steps))
        .routes(routes!(get_step, delete_step))
        .routes(routes!(list_versions))
        .routes(routes!(get_version))
}

/// Add a step, or a new version of an existing one. The source is checked
/// by its interpreter; an upload identical to the latest version returns
/// that version.
#[utoipa::path(post, path = "/api/v1/steps", tag = "steps", request_body = StepUpload,
    responses(
        (status = 200, description = "Stored (or identical to the latest version)", body = StepVersion),
        (status = 400, description = "Invalid upload; details name the fields", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        CommonErrors))]
async fn upload_step(
    State(state): State<AppState>,
    JsonBody(upload): JsonBody<StepUpload>,
) -> ApiResult<Json<StepVersion>> {
    Ok(Json(state.engine.upload_step(upload).await?))
}

/// Every step at its latest version (without source).
#[utoipa::path(get, path = "/api/v1/steps", tag = "steps",
    responses((status = 200, body = [StepSummary]), CommonErrors))]
async fn list_steps(State(state): State<AppState>) -> ApiResult<Json<Vec<StepSummary>>> {
    Ok(Json(state.engine.store().list_steps().await?))
}

/// The latest version of a step, with its source in `data`.
#[utoipa::path(get, path = "/api/v1/steps/{name}", tag = "steps",
    params(("name" = String, Path, description = "Step name")),
    responses((status = 200, body = StepVersion), (status = 404, body = ErrorBody), CommonErrors))]
async fn get_step(State(state): State<AppState>, PathParam(name): PathParam<String>) -> ApiResult<Json<StepVersion>> {
    let step = state.engine.store().get_step(&name).await?;
    step.map(Json).ok_or_else(|| ApiError::not_found(format!("step {name:?}")))
}

/// Delete a step. Refused (409) while an application runs it. Versions stay
/// readable for the runs that used them.
#[utoipa::path(delete, path = "/api/v1/steps/{name}", tag = "steps",
    params(("name" = String, Path, description = "Step name")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody),
        (status = 409, description = "An application uses the step", body = ErrorBody), CommonErrors))]
async fn delete_step(State(state): State<AppState>, PathParam(name): PathParam<String>) -> ApiResult<StatusCode> {
    state.engine.delete_step(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// All versions of a step, newest first.
#[utoipa::path(get, path = "/api/v1/steps/{name}/versions", tag = "steps",
    params(("name" = String, Path, description = "Step name")),
    responses((status = 200, body = [StepSummary]), (status = 404, body = ErrorBody), CommonErrors))]
async fn list_versions(
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
) -> ApiResult<Json<Vec<StepSummary>>> {
    let versions = state.engine.store().list_step_versions(&name).await?;
    versions.map(Json).ok_or_else(|| ApiError::not_found(format!("step {name:?}")))
}

/// One version of a step, with its source.
#[utoipa::path(get, path = "/api/v1/steps/{name}/versions/{version}", tag = "steps",
    params(("name" = String, Path, description = "Step name"), ("version" = i64, Path, description = "Version number")),
    responses((status = 200, body = StepVersion), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), CommonErrors))]
async fn get_version(
    State(state): State<AppState>,
    PathParam((name, version)): PathParam<(String, i64)>,
) -> ApiResult<Json<StepVersion>> {
    let store = state.engine.store();
    if store.get_step(&name).await?.is_none() {
        return Err(ApiError::not_found(format!("step {name:?}")));
    }
    let step = store.get_step_version(&name, version).await?;
    step.map(Json).ok_or_else(|| ApiError::not_found(format!("version {version} of step {name:?}")))
}
