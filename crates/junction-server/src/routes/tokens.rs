//! `/api/v1/tokens`: API credentials (admin only).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use junction_core::role::Role;
use junction_core::token::TokenInfo;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{JsonBody, PathParam};
use crate::routes::CommonErrors;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_token, list_tokens)).routes(routes!(revoke_token))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    name: String,
    role: Role,
    /// Makes a personal access token of this company (spec 002): it reaches
    /// only `/api/v1/companies/{company_id}/...` and the company's webhook.
    #[serde(default)]
    company_id: Option<i64>,
}

/// A new token. `token` appears in this answer only; Junction keeps its
/// SHA-256 digest.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    id: String,
    name: String,
    role: Role,
    company_id: Option<i64>,
    token: String,
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody), CommonErrors))]
async fn create_token(
    State(state): State<AppState>,
    JsonBody(new): JsonBody<NewToken>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let (info, secret) = state.engine.store().create_company_token(&new.name, new.role, new.company_id).await?;
    let created = CreatedToken {
        id: info.id,
        name: info.name,
        role: info.role,
        company_id: info.company_id,
        token: secret.expose().to_string(),
    };
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", responses((status = 200, body = [TokenInfo]), CommonErrors))]
async fn list_tokens(State(state): State<AppState>) -> ApiResult<Json<Vec<TokenInfo>>> {
    Ok(Json(state.engine.store().list_tokens().await?))
}

/// Revoke a token. The last admin token cannot be revoked (409).
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 204, description = "Revoked"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), CommonErrors))]
async fn revoke_token(State(state): State<AppState>, PathParam(id): PathParam<String>) -> ApiResult<StatusCode> {
    state.engine.store().revoke_token(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}
