//! `/api/v1/applications`: application documents (spec 004).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use jiff::Timestamp;
use junction_core::Violation;
use junction_engine::StoredApplication;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{JsonBody, PathParam};
use crate::routes::CommonErrors;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_application, list_applications))
        .routes(routes!(get_application, delete_application))
}

/// An application as stored: the document as uploaded (encrypted variable
/// values shown as `null`) plus Junction's bookkeeping keys, which are
/// ignored when the document is uploaded again.
#[derive(Serialize, ToSchema)]
pub struct ApplicationView {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    document: Map<String, Value>,
    /// Junction's revision counter (the document's `version` is the author's).
    revision: i64,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Timestamp,
    /// What the application refers to that is not stored yet.
    warnings: Vec<Violation>,
}

impl From<StoredApplication> for ApplicationView {
    fn from(s: StoredApplication) -> Self {
        ApplicationView {
            document: s.record.application.document().clone(),
            revision: s.record.revision,
            created_at: s.record.created_at,
            updated_at: s.record.updated_at,
            warnings: s.warnings,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ApplicationSummary {
    name: String,
    friendly_name: Option<String>,
    description: Option<String>,
    configuration: Option<String>,
    queue: Option<String>,
    steps: usize,
    revision: i64,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Timestamp,
}

/// Add or replace an application (spec 004 JSON). Validated whole: name,
/// unique step names, `output_to` targets, no cycle, typed retry options,
/// well-formed `app_variables` (`"encrypted": true` values are sealed).
#[utoipa::path(post, path = "/api/v1/applications", tag = "applications", request_body = Object,
    responses(
        (status = 200, description = "Stored", body = ApplicationView),
        (status = 400, description = "Invalid document; details name the fields", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), CommonErrors))]
async fn put_application(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<ApplicationView>> {
    Ok(Json(state.engine.put_application(body).await?.into()))
}

#[utoipa::path(get, path = "/api/v1/applications", tag = "applications",
    responses((status = 200, body = [ApplicationSummary]), CommonErrors))]
async fn list_applications(State(state): State<AppState>) -> ApiResult<Json<Vec<ApplicationSummary>>> {
    let apps = state.engine.store().list_applications().await?;
    Ok(Json(
        apps.into_iter()
            .map(|r| {
                let a = &r.application;
                ApplicationSummary {
                    name: a.name().to_string(),
                    friendly_name: a.friendly_name().map(str::to_string),
                    description: a.description().map(str::to_string),
                    configuration: a.configuration().map(str::to_string),
                    queue: a.queue().map(str::to_string),
                    steps: a.steps().len(),
                    revision: r.revision,
                    updated_at: r.updated_at,
                }
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/applications/{name}", tag = "applications",
    params(("name" = String, Path, description = "Application name")),
    responses((status = 200, body = ApplicationView), (status = 404, body = ErrorBody), CommonErrors))]
async fn get_application(
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
) -> ApiResult<Json<ApplicationView>> {
    Ok(Json(state.engine.get_application(&name).await?.into()))
}

/// Delete an application and its sealed variables. Its revisions stay for
/// the runs that refer to them.
#[utoipa::path(delete, path = "/api/v1/applications/{name}", tag = "applications",
    params(("name" = String, Path, description = "Application name")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody), CommonErrors))]
async fn delete_application(
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
) -> ApiResult<StatusCode> {
    state.engine.store().delete_application(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
