//! Web UI sign-in: `POST /api/v1/session` with an API token or a user's
//! password opens a session kept in an HttpOnly, SameSite=Strict cookie;
//! `GET` tells the page who is signed in (and the CSRF token its changes
//! must send); `DELETE` signs out. The page never holds a credential.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use junction_core::role::Role;
use junction_core::Invalid;
use junction_store::{SessionInfo, SESSION_TTL_MS};
use serde::{Deserialize, Serialize};

use crate::auth::{session_cookie, CSRF_HEADER, SESSION_COOKIE};
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/session", get(current).post(sign_in).delete(sign_out))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: Option<String>,
    user: Option<String>,
    password: Option<String>,
}

#[derive(Serialize)]
struct Session {
    user: String,
    role: Role,
    csrf_token: String,
}

fn answer(info: SessionInfo) -> Session {
    Session { user: info.subject, role: info.role, csrf_token: info.csrf }
}

fn bad_credentials() -> ApiError {
    ApiError::unauthorized("the token, or the user name and password, are not valid")
}

async fn sign_in(State(state): State<AppState>, JsonBody(body): JsonBody<SignIn>) -> ApiResult<Response> {
    let store = state.engine.store();
    let (subject, role, token_id) = match (body.token, body.user, body.password) {
        (Some(token), None, None) => {
            let info = store.authenticate(token.trim()).await?.ok_or_else(bad_credentials)?;
            if info.company_id.is_some() {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "a company's token reaches its company's routes only; it cannot sign in to the web UI",
                ));
            }
            (info.name, info.role, Some(info.id))
        }
        (None, Some(user), Some(password)) => {
            let role = store.check_password(&user, &password).await?.ok_or_else(bad_credentials)?;
            (user, role, None)
        }
        _ => {
            return Err(Invalid::one("body", "one_of", "send {\"token\"} or {\"user\", \"password\"}").into());
        }
    };
    let (secret, info) = store.create_session(&subject, role, token_id.as_deref()).await?;
    let cookie =
        format!("{SESSION_COOKIE}={secret}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}", SESSION_TTL_MS / 1000);
    Ok(([(header::SET_COOKIE, cookie)], Json(answer(info))).into_response())
}

async fn current(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Json<Session>> {
    let secret = session_cookie(&headers).ok_or_else(|| ApiError::unauthorized("not signed in"))?;
    let info = state.engine.store().session(&secret).await?.ok_or_else(|| ApiError::unauthorized("not signed in"))?;
    Ok(Json(answer(info)))
}

/// Signing out is a change: it needs the session's CSRF token too.
async fn sign_out(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let expired = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    if let Some(secret) = session_cookie(&headers) {
        let store = state.engine.store();
        if let Some(info) = store.session(&secret).await? {
            crate::auth::check_csrf(headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()), &info)?;
            store.delete_session(&secret).await?;
        }
    }
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, expired)]).into_response())
}
