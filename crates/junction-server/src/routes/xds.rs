//! Extensible Data Sources (spec 003): sources (`/api/v1/xds/sources`),
//! spec 003's schema and activity APIs (`/api/1/schemas`,
//! `/api/1/activities`), and what arrived: activities with their
//! sub-events, the activity stream and the refused messages.
//!
//! The two message posts read the body themselves rather than through
//! `JsonBody`, so a body that is not even JSON is recorded as a rejection
//! too before it is refused.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::Json;
use junction_core::xds::{MessageKind, Schema};
use junction_core::{Invalid, Violation};
use junction_store::{
    XdsAccepted, XdsActivityFilter, XdsActivityRecord, XdsRegistration, XdsRejectionFilter, XdsRejectionRecord,
    XdsSchemaRecord, XdsSchemaSummary, XdsSourceRecord, XdsStreamEntry, XdsStreamFilter,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{refuse_nul, JsonBody, JsonBytes, PathParam, QueryParams};
use crate::routes::CommonErrors;
use crate::AppState;

/// The largest schema or activity message accepted.
pub const MESSAGE_BODY_LIMIT: usize = 1024 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_source, list_sources))
        .routes(routes!(get_source))
        .routes(routes!(list_schemas))
        .routes(routes!(get_schema))
        .routes(routes!(get_schema_version))
        .routes(routes!(list_activities))
        .routes(routes!(get_activity))
        .routes(routes!(stream))
        .routes(routes!(rejections))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(register_schema))
                .routes(routes!(post_activity))
                .layer(DefaultBodyLimit::max(MESSAGE_BODY_LIMIT)),
        )
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSource {
    /// 1-128 characters.
    name: String,
}

/// Create an XDS source; its random `source_association_key` goes into
/// the tool's schema and activity messages.
#[utoipa::path(post, path = "/api/v1/xds/sources", tag = "xds", request_body = NewSource,
    responses((status = 201, body = XdsSourceRecord), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), CommonErrors))]
async fn create_source(
    State(state): State<AppState>,
    JsonBody(new): JsonBody<NewSource>,
) -> ApiResult<(StatusCode, Json<XdsSourceRecord>)> {
    Ok((StatusCode::CREATED, Json(state.engine.create_xds_source(&new.name).await?)))
}

#[utoipa::path(get, path = "/api/v1/xds/sources", tag = "xds", responses((status = 200, body = [XdsSourceRecord]), CommonErrors))]
async fn list_sources(State(state): State<AppState>) -> ApiResult<Json<Vec<XdsSourceRecord>>> {
    Ok(Json(state.engine.store().list_xds_sources().await?))
}

#[utoipa::path(get, path = "/api/v1/xds/sources/{id}", tag = "xds", params(("id" = i64, Path, description = "Source id")),
    responses((status = 200, body = XdsSourceRecord), (status = 404, body = ErrorBody), CommonErrors))]
async fn get_source(State(state): State<AppState>, PathParam(id): PathParam<i64>) -> ApiResult<Json<XdsSourceRecord>> {
    Ok(Json(state.engine.xds_source(id).await?))
}

/// The body as JSON; a body that is not JSON (400 `malformed_json`) or
/// holds NUL (400 `validation_failed`, `extract::refuse_nul`) is recorded
/// as a rejection and refused.
async fn parse_message(state: &AppState, kind: MessageKind, raw: &[u8]) -> ApiResult<Value> {
    match serde_json::from_slice::<Value>(raw) {
        Ok(value) => match refuse_nul(raw, &value) {
            Ok(()) => Ok(value),
            Err(invalid) => Err(state.engine.refuse_xds_message(kind, raw, invalid).await.into()),
        },
        Err(e) => {
            let message = format!("the body is not valid JSON: {e}");
            state.engine.record_xds_malformed(kind, raw, 400, "malformed_json", &message).await;
            let mut err = ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", message);
            err.details.push(Violation::new("body", "json", e.to_string()));
            Err(err)
        }
    }
}

/// Spec 003's schema message (documentation of the body).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct SchemaMessageBody {
    /// "1".
    api_version: String,
    /// Associates the source with the schema.
    source_association_key: Option<String>,
    custom_schema: Schema,
}

/// Register a schema version (spec 003). Every violation is listed in one
/// 400. A new id or version is 201 `created`; an id and version registered
/// before is 200 `unchanged` and the submission is ignored (the first one
/// wins). A source that follows another schema refuses the registration
/// (409). Refusals are recorded (`/api/v1/xds/rejections`).
#[utoipa::path(post, path = "/api/1/schemas", tag = "xds", request_body = SchemaMessageBody,
    responses((status = 201, description = "A new version", body = XdsRegistration),
        (status = 200, description = "Registered before; ignored", body = XdsRegistration),
        (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), CommonErrors))]
async fn register_schema(
    State(state): State<AppState>,
    JsonBytes(raw): JsonBytes,
) -> ApiResult<(StatusCode, Json<XdsRegistration>)> {
    let body = parse_message(&state, MessageKind::Schema, &raw).await?;
    let registration = state.engine.register_xds_schema(&body, &raw).await?;
    let status = if registration.status == "created" { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(registration)))
}

#[utoipa::path(get, path = "/api/1/schemas", tag = "xds", responses((status = 200, body = [XdsSchemaSummary]), CommonErrors))]
async fn list_schemas(State(state): State<AppState>) -> ApiResult<Json<Vec<XdsSchemaSummary>>> {
    Ok(Json(state.engine.store().list_xds_schemas().await?))
}

/// A schema's latest version with the list of its versions.
#[derive(Serialize, ToSchema)]
pub struct SchemaWithVersions {
    #[serde(flatten)]
    latest: XdsSchemaRecord,
    /// Every registered version, ascending.
    versions: Vec<i64>,
}

#[utoipa::path(get, path = "/api/1/schemas/{schema_id}", tag = "xds", params(("schema_id" = String, Path)),
    responses((status = 200, body = SchemaWithVersions), (status = 404, body = ErrorBody), CommonErrors))]
async fn get_schema(
    State(state): State<AppState>,
    PathParam(schema_id): PathParam<String>,
) -> ApiResult<Json<SchemaWithVersions>> {
    let mut all = state.engine.xds_schema_versions(&schema_id).await?;
    let versions = all.iter().map(|r| r.schema.schema_version).collect();
    let latest = all.pop().ok_or_else(|| ApiError::not_found(format!("XDS schema {schema_id:?}")))?;
    Ok(Json(SchemaWithVersions { latest, versions }))
}

#[utoipa::path(get, path = "/api/1/schemas/{schema_id}/{version}", tag = "xds",
    params(("schema_id" = String, Path), ("version" = i64, Path)),
    responses((status = 200, body = XdsSchemaRecord), (status = 404, body = ErrorBody), CommonErrors))]
async fn get_schema_version(
    State(state): State<AppState>,
    PathParam((schema_id, version)): PathParam<(String, i64)>,
) -> ApiResult<Json<XdsSchemaRecord>> {
    let record = state.engine.store().get_xds_schema(&schema_id, version).await?;
    Ok(Json(record.ok_or_else(|| ApiError::not_found(format!("version {version} of XDS schema {schema_id:?}")))?))
}

/// Spec 003's activity message (documentation of the body).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ActivityMessageBody {
    /// "1".
    api_version: String,
    source_association_key: String,
    /// `schema_id`, `schema_version`, `event_time`, `remote_id` and the
    /// schema's other fields.
    #[schema(value_type = Object)]
    custom_data: Value,
}

/// Send an activity message (spec 003). It is checked against the schema
/// version it names; every violation is listed in one 400. Custom fields
/// the version does not declare are stored, named in `undeclared_fields`
/// and never rendered (like hidden ones). Messages with the same
/// `remote_id` (per source and schema) are one activity. A source without
/// a schema is associated with this one; a source that follows another
/// schema is 409. Refusals are recorded. 201 once stored.
#[utoipa::path(post, path = "/api/1/activities", tag = "xds", request_body = ActivityMessageBody,
    responses((status = 201, description = "Stored", body = XdsAccepted), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), CommonErrors))]
async fn post_activity(
    State(state): State<AppState>,
    JsonBytes(raw): JsonBytes,
) -> ApiResult<(StatusCode, Json<XdsAccepted>)> {
    let body = parse_message(&state, MessageKind::Activity, &raw).await?;
    Ok((StatusCode::CREATED, Json(state.engine.ingest_xds_activity(&body, &raw).await?)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ActivityQuery {
    source_id: Option<i64>,
    schema_id: Option<String>,
    /// `open`, `success` or `fail`.
    status_type: Option<String>,
    remote_id: Option<String>,
    /// 1-200, default 50.
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Activities, most recently updated first, each with its current values
/// and its sub-events in event-time order.
#[utoipa::path(get, path = "/api/v1/xds/activities", tag = "xds", params(ActivityQuery),
    responses((status = 200, body = [XdsActivityRecord]), (status = 400, body = ErrorBody), CommonErrors))]
async fn list_activities(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<ActivityQuery>,
) -> ApiResult<Json<Vec<XdsActivityRecord>>> {
    let (limit, offset) = crate::extract::page(q.limit, q.offset, 50, 200)?;
    let filter = XdsActivityFilter {
        source_id: q.source_id,
        schema_id: q.schema_id,
        status_type: q.status_type,
        remote_id: q.remote_id,
    };
    Ok(Json(state.engine.store().list_xds_activities(&filter, limit, offset).await?))
}

#[utoipa::path(get, path = "/api/v1/xds/activities/{id}", tag = "xds", params(("id" = i64, Path, description = "Activity id")),
    responses((status = 200, body = XdsActivityRecord), (status = 404, body = ErrorBody), CommonErrors))]
async fn get_activity(
    State(state): State<AppState>,
    PathParam(id): PathParam<i64>,
) -> ApiResult<Json<XdsActivityRecord>> {
    let activity = state.engine.store().get_xds_activity(id).await?;
    Ok(Json(activity.ok_or_else(|| ApiError::not_found(format!("XDS activity {id}")))?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    source_id: Option<i64>,
    schema_id: Option<String>,
    activity_id: Option<i64>,
    /// 1-500, default 100.
    limit: Option<i64>,
    offset: Option<i64>,
}

/// The activity stream, newest entry first: one entry per message that
/// set, changed or cleared an important field. Hidden fields are never in
/// it.
#[utoipa::path(get, path = "/api/v1/xds/stream", tag = "xds", params(StreamQuery),
    responses((status = 200, body = [XdsStreamEntry]), (status = 400, body = ErrorBody), CommonErrors))]
async fn stream(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<StreamQuery>,
) -> ApiResult<Json<Vec<XdsStreamEntry>>> {
    let (limit, offset) = crate::extract::page(q.limit, q.offset, 100, 500)?;
    let filter = XdsStreamFilter { source_id: q.source_id, schema_id: q.schema_id, activity_id: q.activity_id };
    Ok(Json(state.engine.store().list_xds_stream(&filter, limit, offset).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RejectionQuery {
    /// `schema` or `activity`.
    kind: Option<String>,
    source_id: Option<i64>,
    schema_id: Option<String>,
    /// 1-500, default 100.
    limit: Option<i64>,
    offset: Option<i64>,
}

/// Refused schema and activity messages, newest first, with the reason and
/// the body as received (cut to 64 KiB).
#[utoipa::path(get, path = "/api/v1/xds/rejections", tag = "xds", params(RejectionQuery),
    responses((status = 200, body = [XdsRejectionRecord]), (status = 400, body = ErrorBody), CommonErrors))]
async fn rejections(
    State(state): State<AppState>,
    QueryParams(q): QueryParams<RejectionQuery>,
) -> ApiResult<Json<Vec<XdsRejectionRecord>>> {
    let (limit, offset) = crate::extract::page(q.limit, q.offset, 100, 500)?;
    if let Some(kind) = &q.kind {
        if kind != "schema" && kind != "activity" {
            return Err(Invalid::one("kind", "one_of", "must be \"schema\" or \"activity\"").into());
        }
    }
    let filter = XdsRejectionFilter { kind: q.kind, source_id: q.source_id, schema_id: q.schema_id };
    Ok(Json(state.engine.store().list_xds_rejections(&filter, limit, offset).await?))
}
