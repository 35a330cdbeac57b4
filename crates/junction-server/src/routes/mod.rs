//! The routes, one module per resource. Each handler carries its OpenAPI
//! description, so the published document covers every route by
//! construction.

pub mod applications;
pub mod configurations;
pub mod events;
pub mod flows;
pub mod jobs;
pub mod meta;
pub mod parameters;
pub mod runs;
pub mod session;
pub mod stacks;
pub mod steps;
pub mod tokens;
pub mod ui;
pub mod xds;

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Junction", description = "Self-hosted integration hub: steps, applications, configurations, runs."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(crate::error::ErrorBody))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// Every authenticated route.
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(steps::router())
        .merge(applications::router())
        .merge(configurations::router())
        .merge(parameters::router())
        .merge(tokens::router())
        .merge(runs::router())
        .merge(jobs::router())
        .merge(events::router())
        .merge(xds::router())
        .merge(stacks::router())
        .merge(flows::router())
        .merge(meta::api_router())
}

/// The answers every route may give besides its own.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum CommonErrors {
    /// Missing or invalid bearer token.
    #[response(status = 401)]
    Unauthorized(#[to_schema] crate::error::ErrorBody),
    /// The token's role may not do this.
    #[response(status = 403)]
    Forbidden(crate::error::ErrorBody),
}
