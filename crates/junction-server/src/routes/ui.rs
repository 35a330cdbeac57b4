//! The web UI's files, embedded in the binary (no build step): one page
//! and its script modules and styles, served with a strict
//! Content-Security-Policy (only this server's own script and style; no
//! inline code, no frames).

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::ApiError;
use crate::extract::PathParam;
use crate::AppState;

const INDEX: &str = include_str!("../../assets/ui/index.html");

/// Everything under `/ui/`: name, content type, body.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("../../assets/ui/app.js")),
    ("core.js", JS, include_str!("../../assets/ui/core.js")),
    ("apps.js", JS, include_str!("../../assets/ui/apps.js")),
    ("editor.js", JS, include_str!("../../assets/ui/editor.js")),
    ("configs.js", JS, include_str!("../../assets/ui/configs.js")),
    ("stacks.js", JS, include_str!("../../assets/ui/stacks.js")),
    ("flows.js", JS, include_str!("../../assets/ui/flows.js")),
    ("app.css", CSS, include_str!("../../assets/ui/app.css")),
    ("apps.css", CSS, include_str!("../../assets/ui/apps.css")),
];
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(|| async { file("text/html; charset=utf-8", INDEX) })).route("/ui/{file}", get(asset))
}

async fn asset(PathParam(name): PathParam<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => file(content_type, body).into_response(),
        None => ApiError::not_found(format!("UI file {name:?}")).into_response(),
    }
}

fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "same-origin"),
            (header::X_FRAME_OPTIONS, "DENY"),
        ],
        body,
    )
}
