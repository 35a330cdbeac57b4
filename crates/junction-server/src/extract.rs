//! Request extractors whose failures answer in Junction's error shape
//! (axum's own answer in plain text).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use junction_core::role::Capability;
use junction_core::token::TokenInfo;
use junction_core::{Invalid, Violation};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

/// Largest accepted request body.
pub const BODY_LIMIT: usize = 10 * 1024 * 1024;

/// A JSON body. 415 unless the content type is JSON, 413 over
/// [`BODY_LIMIT`] (or the route's own limit), 400 naming the offending
/// field for anything else.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let JsonBytes(bytes) = JsonBytes::from_request(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A body sent as JSON, not parsed yet (for routes that keep the raw
/// bytes, such as refused messages recorded as they came): 415 unless the
/// content type is JSON, 413 over the route's limit.
pub struct JsonBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON, sent with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e: BytesRejection| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the body is larger than this route accepts",
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_body", format!("the body could not be read: {e}"))
            }
        })?;
        Ok(JsonBytes(bytes))
    }
}

/// Parses a JSON body already read (routes that take JSON or another
/// content type), with [`JsonBody`]'s answers.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let malformed = |e: serde_json::Error| {
        let mut err =
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("the body is not valid JSON: {e}"));
        err.details.push(Violation::new("body", "json", e.to_string()));
        err
    };
    if may_hold_nul(bytes) {
        // A body that is not JSON is answered below as malformed.
        if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
            refuse_nul_in(&value)?;
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() || inner.is_io() {
            malformed(inner)
        } else {
            ApiError::invalid(Invalid(vec![data_violation(&path, &inner.to_string())]))
        }
    })?;
    de.end().map_err(malformed)?;
    Ok(value)
}

/// NUL reaches a parsed string only as the escape `\u0000` (a raw control
/// byte is not JSON), so a body without one needs no walk.
fn may_hold_nul(raw: &[u8]) -> bool {
    raw.split(|&b| b == b'\\').skip(1).any(|rest| rest.starts_with(b"u0000"))
}

/// The one NUL rule of every JSON body (the routes that parse their body
/// themselves call it too): a NUL (U+0000) in any string or object key is
/// a 400 `validation_failed` naming each place (rule `no_nul`), on both
/// backends alike (PostgreSQL cannot store NUL in text). `raw` is the body
/// `value` was parsed from.
pub fn refuse_nul(raw: &[u8], value: &Value) -> Result<(), Invalid> {
    if may_hold_nul(raw) {
        refuse_nul_in(value)
    } else {
        Ok(())
    }
}

/// [`refuse_nul`] once `may_hold_nul` said the body may hold a NUL.
fn refuse_nul_in(value: &Value) -> Result<(), Invalid> {
    let found = junction_core::document::nul_violations(value);
    if found.is_empty() {
        Ok(())
    } else {
        Err(Invalid(found))
    }
}

/// An optional JSON body: no body at all is `None`; anything else must be
/// JSON as for [`JsonBody`].
impl<S: Send + Sync, T: DeserializeOwned> axum::extract::OptionalFromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        let headers = req.headers();
        let empty = headers.get(header::CONTENT_TYPE).is_none()
            && headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_none_or(|v| v.trim() == "0");
        if empty {
            return Ok(None);
        }
        <JsonBody<T> as FromRequest<S>>::from_request(req, state).await.map(Some)
    }
}

/// Names the field of a serde data error. serde reports a missing or
/// unknown key at the path of the object that holds it, with the key in
/// the message; the field named is the key itself.
fn data_violation(path: &str, message: &str) -> Violation {
    let base = if path == "." { "" } else { path };
    let join = |key: &str| {
        if base.is_empty() {
            key.to_string()
        } else {
            format!("{base}.{key}")
        }
    };
    let quoted = |prefix: &str| message.strip_prefix(prefix).and_then(|rest| rest.split('`').next());
    if let Some(key) = quoted("missing field `") {
        return Violation::new(join(key), "required", message);
    }
    if let Some(key) = quoted("unknown field `") {
        // Here serde_path_to_error has already put the key in the path.
        let field = if base.ends_with(key) { base.to_string() } else { join(key) };
        return Violation::new(field, "unknown_field", message);
    }
    let field = if base.is_empty() { "body".to_string() } else { base.to_string() };
    Violation::new(field, "type", without_quoted_values(message))
}

/// serde quotes the offending value ("invalid type: string `hunter2`,
/// expected ..."); the value may be a secret, so it is left out.
fn without_quoted_values(message: &str) -> String {
    if !(message.starts_with("invalid type")
        || message.starts_with("invalid value")
        || message.starts_with("invalid length"))
    {
        return message.to_string();
    }
    let mut out = String::with_capacity(message.len());
    let mut parts = message.split('`');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    // Odd pieces are inside backticks.
    for (i, piece) in parts.enumerate() {
        if i % 2 == 1 {
            out.push_str(piece);
        }
    }
    out.replace("  ", " ").replace(" ,", ",")
}

/// A path parameter whose rejection is a JSON 400.
pub struct PathParam<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // No stored name has control characters; refusing them here keeps
        // bytes such as NUL away from the database.
        let raw = axum::extract::RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid(Invalid::one("path", "path_syntax", e.body_text())))?;
        if let Some((key, _)) = raw.iter().find(|(_, v)| v.chars().any(char::is_control)) {
            return Err(ApiError::invalid(Invalid::one(key, "name_syntax", "must not contain control characters")));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParam(p.0))
            .map_err(|e| ApiError::invalid(Invalid::one("path", "path_syntax", e.body_text())))
    }
}

/// `limit` (default `default`, 1 to `max`) and `offset` (default 0, not
/// negative) of a listing; anything else is a 400 naming the field.
pub fn page(limit: Option<i64>, offset: Option<i64>, default: i64, max: i64) -> Result<(i64, i64), Invalid> {
    let limit = limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(Invalid::one("limit", "range", format!("must be between 1 and {max}")));
    }
    let offset = offset.unwrap_or(0);
    if offset < 0 {
        return Err(Invalid::one("offset", "range", "must not be negative"));
    }
    Ok((limit, offset))
}

/// Query parameters whose rejection is a JSON 400.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // No stored value has control characters (and PostgreSQL refuses
        // NUL in text): a filter with one is refused before the store.
        let raw = axum::extract::Query::<Vec<(String, String)>>::from_request_parts(parts, state).await;
        if let Ok(pairs) = &raw {
            if let Some((key, _)) = pairs.0.iter().find(|(k, v)| k.chars().chain(v.chars()).any(char::is_control)) {
                return Err(ApiError::invalid(Invalid::one(key, "text", "must not contain control characters")));
            }
        }
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|e| ApiError::invalid(Invalid::one("query", "query_syntax", e.body_text())))
    }
}

/// The authenticated caller, put in place by the auth middleware.
#[derive(Debug, Clone)]
pub struct Caller(pub TokenInfo);

impl Caller {
    pub fn require(&self, need: Capability) -> Result<(), ApiError> {
        crate::auth::check(&self.0, need)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| ApiError::unauthorized("a bearer token is required"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_nul_escape_makes_a_body_worth_walking() {
        assert!(may_hold_nul(br#"{"a": "x\u0000"}"#));
        assert!(may_hold_nul(br#"{"a\u0000": 1}"#));
        assert!(!may_hold_nul(br#"{"a": "x\u0001\n"}"#));
        // An escaped backslash followed by "u0000" is walked, and found clean.
        let raw = br#"{"a": "\\u0000"}"#;
        assert!(may_hold_nul(raw));
        assert!(refuse_nul(raw, &serde_json::from_slice(raw).unwrap()).is_ok());
    }

    #[test]
    fn values_quoted_by_serde_are_left_out_of_messages() {
        assert_eq!(
            without_quoted_values("invalid type: string `hunter2`, expected u32"),
            "invalid type: string, expected u32"
        );
        assert_eq!(
            without_quoted_values("unknown field `extra`, expected `name`"),
            "unknown field `extra`, expected `name`"
        );
    }
}
