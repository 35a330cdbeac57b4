//! Health and the API's own description.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` when the store does not answer.
    status: &'static str,
    version: &'static str,
    /// `sqlite` or `postgres`.
    store: &'static str,
    /// How scripts are isolated: `sandbox` is `bubblewrap`, `user` or
    /// `none`; `ok` false (and `status` `degraded`) when it is broken.
    #[schema(value_type = Object)]
    sandbox: junction_engine::RuntimeHealth,
}

/// `GET /healthz`: no authentication; 503 when the store does not answer
/// (`unavailable`) or the script sandbox is broken (`degraded`).
pub fn public_router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz))
}

async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let store = state.engine.store();
    let sandbox = state.engine.runtime_health();
    let (code, status) = match store.ping().await {
        Ok(()) if sandbox.ok => (StatusCode::OK, "ok"),
        Ok(()) => (StatusCode::SERVICE_UNAVAILABLE, "degraded"),
        Err(e) => {
            tracing::warn!(error = %e, "health check: store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
    };
    (code, Json(Health { status, version: env!("CARGO_PKG_VERSION"), store: store.backend_name(), sandbox }))
}

pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 description of every route", body = Object), crate::routes::CommonErrors))]
async fn openapi_json(State(state): State<AppState>) -> Json<utoipa::openapi::OpenApi> {
    Json(state.openapi.as_ref().clone())
}
