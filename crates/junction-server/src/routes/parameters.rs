//! `/api/v1/global-parameters`: spec 000's Global Parameters.

use axum::extract::State;
use axum::Json;
use junction_core::parameter::Parameter;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::JsonBody;
use crate::routes::CommonErrors;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_parameters, put_parameters))
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
async fn put_parameters(State(state): State<AppState>, JsonBody(params): JsonBody<Vec<Parameter>>) -> ApiResult<Json<Vec<Parameter>>> {
    Ok(Json(state.engine.set_global_parameters(&params).await?))
}
