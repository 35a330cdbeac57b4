//! The one place where failures become HTTP answers. Every error body has
//! the shape `{"error": {"code", "message", "details"}}`; a database or
//! other internal fault is logged in full and answered with a generic
//! message, never with its text.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use junction_core::{Invalid, Violation};
use junction_engine::EngineError;
use junction_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<Violation>,
}

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorInfo,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorInfo {
    /// Stable snake_case code, e.g. `validation_failed`, `not_found`.
    code: String,
    message: String,
    /// One entry per broken rule, naming the field; at most 100, then
    /// one entry (rule `more_violations`) counting the rest.
    details: Vec<Violation>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: Vec::new() }
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    pub fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// A 400 listing the violations: at most the first 100 and an entry
    /// counting the rest (`Invalid::listed`), so no refusal is unbounded.
    pub fn invalid(invalid: Invalid) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "validation_failed",
            message: invalid.to_string(),
            details: invalid.listed(),
        }
    }

    fn internal(detail: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; the server log has the details")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorInfo { code: self.code.to_string(), message: self.message, details: self.details },
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"junction\""),
            );
        }
        response
    }
}

impl From<Invalid> for ApiError {
    fn from(i: Invalid) -> Self {
        ApiError::invalid(i)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Invalid(i) => ApiError::invalid(i),
            EngineError::NotFound(what) => ApiError::not_found(what),
            EngineError::Conflict(why) => ApiError::new(StatusCode::CONFLICT, "conflict", why),
            EngineError::Unavailable(why) => {
                tracing::error!(error = %why, "a dependency is unavailable");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why)
            }
            EngineError::Unprocessable(i) => {
                let mut e = ApiError::invalid(i);
                e.status = StatusCode::UNPROCESSABLE_ENTITY;
                e.code = "unprocessable";
                e
            }
            EngineError::Forbidden(why) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", why),
            EngineError::Busy(why) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", why),
            EngineError::Store(e) => ApiError::internal(&e),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        EngineError::from(e).into()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
