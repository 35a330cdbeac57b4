//! `/api/v1/configurations`: named variable sets (spec 004).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use jiff::Timestamp;
use junction_store::ConfigurationRecord;
use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{JsonBody, PathParam};
use crate::routes::CommonErrors;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_configuration, list_configurations))
        .routes(routes!(get_configuration, delete_configuration))
}

/// A configuration as stored. Encrypted entries show `"value": null,
/// "encrypted": true`; sending that back keeps the sealed value.
#[derive(Serialize, ToSchema)]
pub struct ConfigurationView {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    document: Map<String, Value>,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Timestamp,
}

impl From<ConfigurationRecord> for ConfigurationView {
    fn from(r: ConfigurationRecord) -> Self {
        ConfigurationView {
            document: r.configuration.document().clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ConfigurationSummary {
    name: String,
    friendly_name: Option<String>,
    description: Option<String>,
    entries: usize,
    encrypted_entries: usize,
    #[schema(value_type = String, format = DateTime)]
    updated_at: Timestamp,
}

/// Add or replace a configuration. An encrypted entry is sealed; it can
/// never be turned back to plain text.
#[utoipa::path(post, path = "/api/v1/configurations", tag = "configurations", request_body = Object,
    responses(
        (status = 200, description = "Stored", body = ConfigurationView),
        (status = 400, description = "Invalid document; details name the fields", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), CommonErrors))]
async fn put_configuration(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<Value>,
) -> ApiResult<Json<ConfigurationView>> {
    Ok(Json(state.engine.put_configuration(body).await?.into()))
}

#[utoipa::path(get, path = "/api/v1/configurations", tag = "configurations",
    responses((status = 200, body = [ConfigurationSummary]), CommonErrors))]
async fn list_configurations(State(state): State<AppState>) -> ApiResult<Json<Vec<ConfigurationSummary>>> {
    let configs = state.engine.store().list_configurations().await?;
    Ok(Json(
        configs
            .into_iter()
            .map(|r| {
                let c = &r.configuration;
                ConfigurationSummary {
                    name: c.name().to_string(),
                    friendly_name: c.friendly_name().map(str::to_string),
                    description: c.description().map(str::to_string),
                    entries: c.entries().len(),
                    encrypted_entries: c.entries().iter().filter(|e| e.encrypted).count(),
                    updated_at: r.updated_at,
                }
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/configurations/{name}", tag = "configurations",
    params(("name" = String, Path, description = "Configuration name")),
    responses((status = 200, body = ConfigurationView), (status = 404, body = ErrorBody), CommonErrors))]
async fn get_configuration(
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
) -> ApiResult<Json<ConfigurationView>> {
    let record = state.engine.store().get_configuration(&name).await?;
    record.map(|r| Json(r.into())).ok_or_else(|| ApiError::not_found(format!("configuration {name:?}")))
}

/// Delete a configuration and its sealed values. `global` cannot be
/// deleted (409).
#[utoipa::path(delete, path = "/api/v1/configurations/{name}", tag = "configurations",
    params(("name" = String, Path, description = "Configuration name")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), CommonErrors))]
async fn delete_configuration(
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
) -> ApiResult<StatusCode> {
    state.engine.delete_configuration(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
