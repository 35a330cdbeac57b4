//! Junction's HTTP interface: the REST API under `/api/v1`, `/healthz`,
//! and (later) webhooks and the web UI.
//!
//! Architecture invariant: this crate translates HTTP to engine calls and
//! back; it runs no SQL and starts no process. Status codes are decided in
//! one place ([`error`]); who may call what is decided in one place
//! ([`auth`]).

pub mod auth;
pub mod error;
pub mod extract;
mod routes;

use std::future::Future;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use junction_engine::Engine;
use tokio::net::TcpListener;
use utoipa::openapi::OpenApi;

use crate::error::ApiError;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    openapi: Arc<OpenApi>,
}

/// Builds the whole HTTP application.
pub fn app(engine: Engine) -> Router {
    let (api, openapi) = routes::api_router().split_for_parts();
    let state = AppState { engine, openapi: Arc::new(openapi) };
    let api = api.route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token));
    Router::new()
        .merge(api)
        .merge(routes::meta::public_router())
        .merge(routes::session::router())
        .merge(routes::stacks::host_router())
        .merge(routes::flows::webhook_router())
        .merge(routes::ui::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(extract::BODY_LIMIT))
        // Spans name the path only: a query may carry a log link's
        // signature, which logs must not keep.
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(
            |req: &axum::http::Request<axum::body::Body>| {
                tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
            },
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method")
}

/// Serves `engine` on `listener` until `shutdown` completes, then lets
/// in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(engine)).with_graceful_shutdown(shutdown).await
}
