//! Extension stacks (spec 001): `/api/v1/stacks` manages them with
//! Junction's tokens; `/stacks/{name}/...` is the extension host itself,
//! with `express-integrator-extension`'s contract (its own auth — the
//! stack's system token — and its own error shape), see
//! `docs/stacks-contract.md`.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use junction_core::stack::{CallOutcome, Stack, StackCall, StackEnv, StackVersion};
use junction_core::Invalid;
use junction_engine::{ArchiveFormat, CallAnswer, NewStack, StackChange, StackDetail, StackRequest, StackUpload};
use junction_store::CallFilter;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{parse_json, refuse_nul, JsonBody, PathParam, QueryParams};
use crate::routes::CommonErrors;
use crate::AppState;

/// Largest stack upload (a package with its sources; dependencies are
/// installed here, not uploaded).
pub const UPLOAD_BODY_LIMIT: usize = 64 * 1024 * 1024;
/// The extension host's JSON limit (body-parser's `50mb`).
pub const FUNCTION_BODY_LIMIT: usize = 50 * 1024 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(
            OpenApiRouter::new()
                .routes(routes!(upload_stack, list_stacks))
                .layer(DefaultBodyLimit::max(UPLOAD_BODY_LIMIT)),
        )
        .routes(routes!(get_stack, delete_stack, update_stack))
        .routes(routes!(rotate_token))
        .routes(routes!(list_calls))
        .routes(routes!(get_call))
}

/// The extension host's routes: no Junction token, the stack's system token.
pub fn host_router() -> Router<AppState> {
    let function = post(call_function).layer(DefaultBodyLimit::max(FUNCTION_BODY_LIMIT));
    Router::new()
        .route("/stacks/{name}/function", function)
        .route("/stacks/{name}", get(success))
        .route("/stacks/{name}/", get(success))
        .route("/stacks/{name}/healthCheck", get(success))
        .route("/stacks/{name}/livez", get(live))
        .route("/stacks/{name}/readyz", get(ready))
        .route("/stacks/{name}/openConnections", get(open_connections))
}

/// `POST /api/v1/stacks` as JSON.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct JsonUpload {
    name: String,
    /// The source of one `.js` file.
    data: String,
    /// `{"diy": FILE}` or `{"connectors": {ID: FILE}}`; default: the file's
    /// exports as DIY.
    #[serde(default)]
    #[schema(value_type = Object)]
    config: Option<Value>,
    #[serde(default)]
    timeout_seconds: Option<u32>,
    #[serde(default)]
    max_concurrency: Option<u32>,
    /// Values the module reads from `process.env`; encrypted ones are
    /// sealed and never shown again.
    #[serde(default)]
    env: Option<Vec<StackEnv>>,
}

/// `POST /api/v1/stacks` with a raw archive body.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ArchiveQuery {
    /// The stack's name (required with an archive body).
    name: Option<String>,
    /// The configuration as JSON text; default `{"diy": <package.json main, else index.js>}`.
    config: Option<String>,
    timeout_seconds: Option<u32>,
    max_concurrency: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Uploaded {
    version: StackVersion,
    /// Only when the upload created the stack: shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    system_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct RotatedToken {
    system_token: String,
}

fn archive_format(headers: &HeaderMap) -> Result<Option<ArchiveFormat>, ApiError> {
    let mime = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match mime.as_str() {
        "application/json" => Ok(None),
        "application/zip" | "application/x-zip-compressed" => Ok(Some(ArchiveFormat::Zip)),
        "application/gzip" | "application/x-gzip" | "application/x-tgz" | "application/x-compressed-tar" => {
            Ok(Some(ArchiveFormat::Tgz))
        }
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send JSON {\"name\", \"data\"} (Content-Type: application/json), or a package as \
             application/zip or application/gzip with ?name=",
        )),
    }
}

/// Add a stack, or a new version of one. One `.js` file as JSON, or a
/// package (`.zip` / `.tgz` with `package.json`, and its lock file when it
/// has dependencies, which are installed with `npm ci`). The modules are
/// loaded once; an upload that does not load is refused. A new stack's
/// system token is in the answer, once.
#[utoipa::path(post, path = "/api/v1/stacks", tag = "stacks", params(ArchiveQuery),
    request_body(content(
        (JsonUpload = "application/json"),
        (Vec<u8> = "application/zip"),
        (Vec<u8> = "application/gzip"))),
    responses(
        (status = 201, description = "Stored (or identical to the current version)", body = Uploaded),
        (status = 400, description = "Invalid upload; details name the problem", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Neither JSON nor an archive", body = ErrorBody),
        CommonErrors))]
async fn upload_stack(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<ArchiveQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Uploaded>)> {
    let new = match archive_format(&headers)? {
        None => {
            let upload: JsonUpload = parse_json(&body)?;
            if let Ok(value) = serde_json::from_slice::<Value>(&body) {
                refuse_nul(&body, &value)?;
            }
            NewStack {
                name: upload.name,
                upload: StackUpload::Source(upload.data),
                config: upload.config,
                settings: StackChange {
                    timeout_seconds: upload.timeout_seconds,
                    max_concurrency: upload.max_concurrency,
                    env: upload.env,
                },
            }
        }
        Some(format) => {
            let name = query
                .name
                .ok_or_else(|| ApiError::invalid(Invalid::one("name", "required", "?name= names the stack")))?;
            let config = query
                .config
                .map(|text| serde_json::from_str::<Value>(&text))
                .transpose()
                .map_err(|e| ApiError::invalid(Invalid::one("config", "json", e.to_string())))?;
            NewStack {
                name,
                upload: StackUpload::Archive { format, bytes: body.to_vec() },
                config,
                settings: StackChange {
                    timeout_seconds: query.timeout_seconds,
                    max_concurrency: query.max_concurrency,
                    env: None,
                },
            }
        }
    };
    let (version, token) = state.engine.upload_stack(new).await?;
    let system_token = token.map(|t| t.expose().to_string());
    Ok((StatusCode::CREATED, Json(Uploaded { version, system_token })))
}

/// Every stack at its current version.
#[utoipa::path(get, path = "/api/v1/stacks", tag = "stacks",
    responses((status = 200, body = [Stack]), CommonErrors))]
async fn list_stacks(State(state): State<AppState>) -> ApiResult<Json<Vec<Stack>>> {
    Ok(Json(state.engine.stacks().await?))
}

/// A stack with its versions (and what each one's modules export).
#[utoipa::path(get, path = "/api/v1/stacks/{name}", tag = "stacks",
    params(("name" = String, Path, description = "Stack name")),
    responses((status = 200, body = StackDetail), (status = 404, body = ErrorBody), CommonErrors))]
async fn get_stack(State(state): State<AppState>, PathParam(name): PathParam<String>) -> ApiResult<Json<StackDetail>> {
    Ok(Json(state.engine.stack(&name).await?))
}

/// Delete a stack: its token stops working at once. Versions and call
/// records stay; re-creating the name continues the numbering with a new
/// token.
#[utoipa::path(delete, path = "/api/v1/stacks/{name}", tag = "stacks",
    params(("name" = String, Path, description = "Stack name")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody), CommonErrors))]
async fn delete_stack(State(state): State<AppState>, PathParam(name): PathParam<String>) -> ApiResult<StatusCode> {
    state.engine.delete_stack(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change a stack's settings: `timeout_seconds`, `max_concurrency`, `env`
/// (the whole list; an encrypted entry without `value` keeps its sealed
/// value).
#[utoipa::path(patch, path = "/api/v1/stacks/{name}", tag = "stacks",
    params(("name" = String, Path, description = "Stack name")),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, body = Stack), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 415, body = ErrorBody), CommonErrors))]
async fn update_stack(
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
    JsonBody(change): JsonBody<StackChange>,
) -> ApiResult<Json<Stack>> {
    Ok(Json(state.engine.update_stack(&name, &change).await?))
}

/// A new system token, shown once; the old one is refused from now on.
#[utoipa::path(post, path = "/api/v1/stacks/{name}/token", tag = "stacks",
    params(("name" = String, Path, description = "Stack name")),
    responses((status = 200, body = RotatedToken), (status = 404, body = ErrorBody), CommonErrors))]
async fn rotate_token(
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
) -> ApiResult<Json<RotatedToken>> {
    let token = state.engine.rotate_stack_token(&name).await?;
    Ok(Json(RotatedToken { system_token: token.expose().to_string() }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct CallsQuery {
    /// Only calls of this function.
    function: Option<String>,
    /// Only calls of this `type` (`hook`, `wrapper`, ...).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    kind: Option<String>,
    /// `succeeded`, `failed` or `timed_out`.
    outcome: Option<String>,
    /// Only calls started at or after this time (RFC 3339).
    since: Option<String>,
    /// Only calls older than this id (the next page).
    before: Option<i64>,
    /// 1 to 500, default 50.
    limit: Option<u32>,
}

/// A stack's calls, newest first (without their logs).
#[utoipa::path(get, path = "/api/v1/stacks/{name}/calls", tag = "stacks",
    params(("name" = String, Path, description = "Stack name"), CallsQuery),
    responses((status = 200, body = [StackCall]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        CommonErrors))]
async fn list_calls(
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
    QueryParams(q): QueryParams<CallsQuery>,
) -> ApiResult<Json<Vec<StackCall>>> {
    let mut v = junction_core::validation::Violations::default();
    let outcome = q.outcome.as_deref().and_then(|o| {
        let parsed = CallOutcome::parse(o);
        if parsed.is_none() {
            v.push("outcome", "one_of", "must be succeeded, failed or timed_out");
        }
        parsed
    });
    let since_ms = q.since.as_deref().and_then(|s| match s.parse::<jiff::Timestamp>() {
        Ok(t) => Some(t.as_millisecond()),
        Err(e) => {
            v.push("since", "timestamp", format!("must be an RFC 3339 time: {e}"));
            None
        }
    });
    if q.limit.is_some_and(|l| !(1..=junction_store::MAX_CALLS_LIMIT).contains(&l)) {
        v.push("limit", "range", format!("must be between 1 and {}", junction_store::MAX_CALLS_LIMIT));
    }
    v.finish(())?;
    let filter = CallFilter {
        function: q.function,
        kind: q.kind,
        outcome,
        since_ms,
        before_id: q.before,
        limit: q.limit.unwrap_or(junction_store::DEFAULT_CALLS_LIMIT),
    };
    Ok(Json(state.engine.stack_calls(&name, &filter).await?))
}

/// One call with its log.
#[utoipa::path(get, path = "/api/v1/stacks/{name}/calls/{id}", tag = "stacks",
    params(("name" = String, Path, description = "Stack name"), ("id" = i64, Path, description = "Call id")),
    responses((status = 200, body = StackCall), (status = 404, body = ErrorBody), CommonErrors))]
async fn get_call(
    State(state): State<AppState>,
    PathParam((name, id)): PathParam<(String, i64)>,
) -> ApiResult<Json<StackCall>> {
    Ok(Json(state.engine.stack_call(&name, id).await?))
}

// --- the extension host -----------------------------------------------------

/// An answer in the contract's shape, `{"errors":[{code, message}]}`.
fn contract_errors(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]}).to_string();
    json_response(status, Some(body))
}

fn json_response(status: StatusCode, body: Option<String>) -> Response {
    let mut response = match body {
        Some(body) => (status, body).into_response(),
        None => status.into_response(),
    };
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    response
}

fn unauthorized() -> Response {
    let mut response = contract_errors(StatusCode::UNAUTHORIZED, "unauthorized", "Invalid system token.");
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("invalid system token"));
    response
}

/// JavaScript truthiness of a token value: the library compares with `===`
/// to its string token, so only a non-empty string can match.
fn token_text(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// express-integrator-extension's `findToken`: an `Authorization` header,
/// when there is one, is the only place looked at (`Bearer <token>`, the
/// scheme in any case, exactly one space); without it `access_token` in the
/// body, then in the query.
fn find_token(headers: &HeaderMap, body: &StackRequest, query: &[(String, String)]) -> Option<String> {
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        let text = auth.to_str().ok()?;
        let parts: Vec<&str> = text.split(' ').collect();
        return match parts.as_slice() {
            [scheme, token] if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() => Some(token.to_string()),
            _ => None,
        };
    }
    token_text(body.field("access_token"))
        .or_else(|| query.iter().find(|(k, _)| k == "access_token").map(|(_, v)| v.clone()).filter(|v| !v.is_empty()))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

async fn call_function(
    State(state): State<AppState>,
    PathParam(name): PathParam<String>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return contract_errors(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request entity too large: the body is over 50 MB",
            )
        }
        Err(e) => {
            return contract_errors(StatusCode::BAD_REQUEST, "bad_request", &format!("the body could not be read: {e}"))
        }
    };
    // body-parser reads JSON bodies only; any other body is `{}`.
    let request = if is_json(&headers) && !body.is_empty() {
        match StackRequest::parse(&body) {
            Ok(r) => r,
            Err(e) => {
                return contract_errors(
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    &format!("the body is not valid JSON: {e}"),
                )
            }
        }
    } else {
        StackRequest::from_value(Value::Object(Default::default()))
    };
    let token = find_token(&headers, &request, &query);
    let trace_id = headers.get("traceid").and_then(|v| v.to_str().ok());
    match state.engine.call_stack_with_token(&name, token.as_deref(), &request, trace_id).await {
        Ok(None) => unauthorized(),
        Ok(Some(CallAnswer { status, body, retry_after })) => {
            let mut response = json_response(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body);
            if let Some(seconds) = retry_after {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            response
        }
        Err(e) => {
            tracing::error!(error = %e, stack = %name, "stack call failed");
            let mut response = contract_errors(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the extension host cannot serve calls now",
            );
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(5));
            response
        }
    }
}

/// `GET /` and `/healthCheck` of the host (any name: the host does not
/// reveal which stacks exist).
async fn success() -> Json<Value> {
    Json(serde_json::json!({"success": true}))
}

async fn live() -> &'static str {
    "OK"
}

async fn ready(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.engine.runtime_health().ok {
        (StatusCode::OK, "OK")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
    }
}

async fn open_connections(State(state): State<AppState>) -> String {
    state.engine.stack_calls_in_flight().to_string()
}
