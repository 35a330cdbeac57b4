//! Authentication and authorization of `/api/v1`.
//!
//! The capability a request needs is derived from its method and route
//! template in one function, so a new route cannot forget its check:
//! reads need `Read`; starting or stopping work needs `Operate`; other
//! changes need `Edit`; tokens and roles need `Administer`.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use junction_core::role::Capability;
use junction_core::token::TokenInfo;

use crate::error::ApiError;
use crate::extract::Caller;
use crate::AppState;

/// Route-template suffixes that start or stop work.
// A flow's errors are retried (a run) and resolved by whoever operates it.
const OPERATE_SUFFIXES: [&str; 7] =
    ["/run", "/stop", "/replay", "/revoke", "/trigger", "/errors/retry", "/errors/resolve"];

/// The one route a signed link (from a job's history) may read without a
/// token.
const SIGNED_LOG_ROUTE: &str = "/api/v1/tasks/{id}/log";

pub fn capability(method: &Method, route: &str) -> Capability {
    let reading = method == Method::GET || method == Method::HEAD;
    if route.starts_with("/api/v1/tokens")
        || route.starts_with("/api/v1/roles")
        || (route == "/api/v1/settings" && !reading)
        || (route == "/api/v1/companies" && !reading)
    {
        Capability::Administer
    } else if route.starts_with("/webhook/") {
        // Reporting an event is operating: it may start runs.
        Capability::Operate
    } else if route.starts_with("/api/1/") && !reading {
        Capability::Operate
    } else if reading {
        Capability::Read
    } else if route == "/api/v1/tasks" || OPERATE_SUFFIXES.iter().any(|s| route.ends_with(s)) {
        Capability::Operate
    } else {
        Capability::Edit
    }
}

pub fn check(token: &TokenInfo, need: Capability) -> Result<(), ApiError> {
    if token.role.allows(need) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("the {} role may not do this (needs {:?})", token.role, need),
        ))
    }
}

/// Middleware on every `/api/v1` route: 401 without a valid bearer token,
/// 403 when the token's role lacks the route's capability.
pub async fn require_token(
    State(state): State<AppState>,
    route: Option<MatchedPath>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    if let Some(presented) = presented.filter(|p| p.starts_with(junction_engine::FLOW_RUN_TOKEN_PREFIX)) {
        let (flow, run) = state
            .engine
            .flow_run_of_token(presented)
            .await?
            .ok_or_else(|| ApiError::unauthorized("the flow run's token is not valid, or its run has ended"))?;
        let route = route.as_ref().map_or_else(|| req.uri().path().to_string(), |r| r.as_str().to_string());
        check_flow_run(req.method(), &route, req.uri().path(), &flow, &run)?;
        req.extensions_mut().insert(Caller(TokenInfo {
            id: format!("flow-run:{run}"),
            name: format!("flow run {run}"),
            role: junction_core::role::Role::Viewer,
            company_id: None,
            created_at: state.engine.store().now(),
            last_used_at: None,
        }));
        return Ok(next.run(req).await);
    }
    let token = match presented {
        Some(presented) => state
            .engine
            .store()
            .authenticate(presented)
            .await?
            .ok_or_else(|| ApiError::unauthorized("the bearer token is not valid"))?,
        None => {
            let route = route.as_ref().map(MatchedPath::as_str);
            if req.method() == Method::GET && route == Some(SIGNED_LOG_ROUTE) && signed_link_valid(&state, &req) {
                return Ok(next.run(req).await);
            }
            match session_cookie(req.headers()) {
                Some(secret) => {
                    let changes = req.method() != Method::GET && req.method() != Method::HEAD;
                    let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
                    session_caller(&state, &secret, changes, sent).await?
                }
                None => {
                    return Err(ApiError::unauthorized("a bearer token is required: Authorization: Bearer <token>"))
                }
            }
        }
    };
    let route = route.as_ref().map_or_else(|| req.uri().path(), MatchedPath::as_str);
    check(&token, capability(req.method(), route))?;
    if let Some(company) = token.company_id {
        check_company(company, route, req.uri().path())?;
    }
    req.extensions_mut().insert(Caller(token));
    Ok(next.run(req).await)
}

/// A flow run's `bearerToken` (spec 001) reads its own flow (document,
/// errors, retry data) and its own run, nothing else.
fn check_flow_run(method: &Method, route: &str, path: &str, flow: &str, run: &str) -> Result<(), ApiError> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let allowed = *method == Method::GET
        && match route {
            "/api/v1/flows/{name}" | "/api/v1/flows/{name}/errors" | "/api/v1/flows/{name}/errors/{retryDataKey}" => {
                parts.get(3) == Some(&flow)
            }
            "/api/v1/tasks/{id}" | "/api/v1/tasks/{id}/log" => parts.get(3) == Some(&run),
            _ => false,
        };
    match allowed {
        true => Ok(()),
        false => {
            Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "a flow run's token reads only its own flow and run"))
        }
    }
}

/// The name of the web UI's session cookie (HttpOnly, SameSite=Strict).
pub const SESSION_COOKIE: &str = "junction_session";
/// The header a browser session sends its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The session cookie's value, if the request has one.
pub fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// The caller of a browser session. A request that changes something must
/// carry the session's CSRF token in `X-CSRF-Token` (a page of another
/// site can make the browser send the cookie, never read the token); the
/// cookie is also SameSite=Strict.
async fn session_caller(
    state: &AppState,
    secret: &str,
    changes: bool,
    sent: Option<String>,
) -> Result<TokenInfo, ApiError> {
    let session = state
        .engine
        .store()
        .session(secret)
        .await?
        .ok_or_else(|| ApiError::unauthorized("the session has ended; sign in again"))?;
    if changes {
        check_csrf(sent.as_deref(), &session)?;
    }
    Ok(TokenInfo {
        id: session.token_id.clone().unwrap_or_else(|| format!("user:{}", session.subject)),
        name: session.subject,
        role: session.role,
        company_id: None,
        created_at: state.engine.store().now(),
        last_used_at: None,
    })
}

/// A change by a browser session must send the session's CSRF token.
pub fn check_csrf(sent: Option<&str>, session: &junction_store::SessionInfo) -> Result<(), ApiError> {
    if constant_time_eq(sent.unwrap_or_default().as_bytes(), session.csrf.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "csrf", "the X-CSRF-Token header is missing or wrong"))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A company's personal access token reaches that company's routes only:
/// `/api/v1/companies/{id}/...` and `/webhook/company/{company_id}/...`
/// with its own id.
fn check_company(company: i64, route: &str, path: &str) -> Result<(), ApiError> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let named = if route.starts_with("/api/v1/companies/{id}") {
        segments.get(3)
    } else if route.starts_with("/webhook/company/{company_id}") {
        segments.get(2)
    } else {
        None
    };
    match named.and_then(|s| s.parse::<i64>().ok()) {
        Some(id) if id == company => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this token belongs to company {company} and may only reach that company's routes"),
        )),
    }
}

/// A log link from a job's history: `?expires=SECONDS&sig=HEX`, signed by
/// the server for this run id, not expired. It opens in a browser tab
/// without putting a token in a URL (where history and proxies keep it),
/// and grants nothing but this one read.
fn signed_link_valid(state: &AppState, req: &Request) -> bool {
    #[derive(serde::Deserialize)]
    struct Link {
        expires: i64,
        sig: String,
    }
    let Ok(axum::extract::Query(Link { expires, sig })) = axum::extract::Query::<Link>::try_from_uri(req.uri()) else {
        return false;
    };
    let store = state.engine.store();
    if expires < store.now().as_second() {
        return false;
    }
    let Some(id) = req.uri().path().strip_prefix("/api/v1/tasks/").and_then(|p| p.strip_suffix("/log")) else {
        return false;
    };
    store.verify_signature(&crate::routes::jobs::log_link_message(id, expires), &sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_follows_method_and_route_template() {
        let cases = [
            (Method::GET, "/api/v1/steps", Capability::Read),
            (Method::GET, "/api/v1/steps/{name}", Capability::Read),
            (Method::POST, "/api/v1/steps", Capability::Edit),
            (Method::DELETE, "/api/v1/steps/{name}", Capability::Edit),
            (Method::PUT, "/api/v1/global-parameters", Capability::Edit),
            (Method::POST, "/api/v1/applications/{name}/run", Capability::Operate),
            (Method::POST, "/api/v1/jobs/{name}/stop", Capability::Operate),
            (Method::POST, "/api/v1/flows/{name}/run", Capability::Operate),
            (Method::POST, "/api/v1/flows/{name}/errors/retry", Capability::Operate),
            (Method::POST, "/api/v1/flows/{name}/errors/resolve", Capability::Operate),
            (Method::PUT, "/api/v1/flows/{name}/errors/{retryDataKey}", Capability::Edit),
            (Method::POST, "/api/v1/applications/{name}/trigger", Capability::Operate),
            (Method::PATCH, "/api/v1/jobs/{name}", Capability::Edit),
            (Method::POST, "/api/v1/schedule", Capability::Edit),
            (Method::GET, "/api/v1/settings", Capability::Read),
            (Method::PUT, "/api/v1/settings", Capability::Administer),
            (Method::POST, "/api/v1/companies", Capability::Administer),
            (Method::POST, "/api/v1/companies/{id}/cicd_services", Capability::Edit),
            (Method::POST, "/webhook/company/{company_id}/cicd_job", Capability::Operate),
            (Method::POST, "/api/1/activities", Capability::Operate),
            (Method::GET, "/api/1/schemas/{schema_id}", Capability::Read),
            (Method::GET, "/api/v1/tokens", Capability::Administer),
            (Method::DELETE, "/api/v1/tokens/{id}", Capability::Administer),
        ];
        for (method, route, want) in cases {
            assert_eq!(capability(&method, route), want, "{method} {route}");
        }
    }
}
