//! `/api/v1/global-parameters`: spec 000's Global Parameters.

use axum::extract::State;
use axum::Json;
use junction_core::parameter::{Parameter, ParameterType};
use junction_core::Invalid;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{JsonBody, PathParam};
use crate::routes::CommonErrors;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_parameters, put_parameters))
        .routes(routes!(put_parameter, delete_parameter))
}

/// The global parameters every script sees as `args.globalArguments`.
/// Masked values are always `null`.
#[utoipa::path(get, path = "/api/v1/global-parameters", tag = "parameters",
    responses((status = 200, body = [Parameter]), CommonErrors))]
async fn get_parameters(State(state): State<AppState>) -> ApiResult<Json<Vec<Parameter>>> {
    Ok(Json(state.engine.global_parameters().await?))
}

/// Replace the whole list. A masked parameter sent with `"value": null`
/// keeps its stored value; a masked parameter cannot become `string` again.
#[utoipa::path(put, path = "/api/v1/global-parameters", tag = "parameters", request_body = [Parameter],
    responses((status = 200, body = [Parameter]), (status = 400, body = ErrorBody), CommonErrors))]
async fn put_parameters(
    State(state): State<AppState>,
    JsonBody(params): JsonBody<Vec<Parameter>>,
) -> ApiResult<Json<Vec<Parameter>>> {
    Ok(Json(state.engine.set_global_parameters(&params).await?))
}

/// One parameter's new type and value; the name is in the path.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParameterBody {
    /// If given, must equal the name in the path.
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "type")]
    kind: ParameterType,
    #[serde(default)]
    value: Option<String>,
}

/// Add or change one parameter, leaving the others as they are (safe when
/// several people edit at once). Answers with the whole list.
#[utoipa::path(put, path = "/api/v1/global-parameters/{name}", tag = "parameters", request_body = ParameterBody,
    params(("name" = String, Path, description = "Parameter name")),
    responses((status = 200, body = [Parameter]), (status = 400, body = ErrorBody), CommonErrors))]
async fn put_parameter(
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
    JsonBody(body): JsonBody<ParameterBody>,
) -> ApiResult<Json<Vec<Parameter>>> {
    if body.name.as_deref().is_some_and(|n| n != name) {
        return Err(Invalid::one("name", "matches_path", "the body's name differs from the name in the path").into());
    }
    let param = Parameter { name, kind: body.kind, value: body.value };
    Ok(Json(state.engine.set_global_parameter(param).await?))
}

/// Remove one parameter. Answers with the remaining list.
#[utoipa::path(delete, path = "/api/v1/global-parameters/{name}", tag = "parameters",
    params(("name" = String, Path, description = "Parameter name")),
    responses((status = 200, body = [Parameter]), (status = 404, body = ErrorBody), CommonErrors))]
async fn delete_parameter(
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
) -> ApiResult<Json<Vec<Parameter>>> {
    Ok(Json(state.engine.delete_global_parameter(&name).await?))
}
